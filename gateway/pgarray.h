/*
 * The text form of Postgres arrays ('{"a","b",NULL}', the one libpq
 * exchanges), as the store writes its array parameters and reads text[]
 * columns. Pure: no I/O, no logging.
 *
 * Writing appends to a util/buf buffer. A failed allocation sets |oom|,
 * after which appends do nothing: a caller builds a whole value, then
 * checks |oom| once. The caller writes the braces and separators itself
 * (pgw_buf_add()), so one value can be put together from fragments built
 * at different times (the store merges the elements of many operations).
 */
#ifndef PUSHGW_PGARRAY_H
#define PUSHGW_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Appends one text element: NULL for a NULL |s|, else the |n| bytes of
 * |s| double-quoted with quotes and backslashes escaped, so no content
 * (commas, braces, spaces, the word NULL) can change the array's shape.
 * |s| must hold no NUL (Postgres text cannot). */
void pgw_pgarray_put_text(struct pgw_buf *b, const char *s, size_t n);

/* pgw_pgarray_put_text() of the string |s| (NULL: a NULL element). */
void pgw_pgarray_put_str(struct pgw_buf *b, const char *s);

/* Appends one integer element. */
void pgw_pgarray_put_int(struct pgw_buf *b, long long v);

/* Appends a comma unless nothing was written since offset |start|: the
 * separator before every element but the first of a fragment. */
void pgw_pgarray_put_sep(struct pgw_buf *b, size_t start);

/*
 * Parses the one-dimensional text-array output value |in| (NUL-terminated;
 * a leading dimension decoration "[0:1]=" is skipped) into NUL-terminated
 * strings written to |out|, which must hold strlen(in) + 1 bytes, and
 * pointers to them in |ret_items| (|max_items| of them at most); NULL
 * elements are left out. Stores the number of strings in |*ret_n| and
 * returns 0; PGW_ERR_INVAL when |in| is not such an array or has more
 * than |max_items| strings (|out| and |ret_items| may then have been
 * written). Postgres prints an array of k elements in at least 2k + 1
 * characters, so strlen(in) / 2 + 1 items suffice for its output.
 */
int pgw_pgarray_parse(const char *in, char *out, const char **ret_items,
                      size_t max_items, size_t *ret_n);

#endif
