/*
 * A growable byte buffer whose allocation failure is sticky: a writer
 * appends without checking each step and looks at |oom| once at the end.
 */
#ifndef PUSHGW_UTIL_BUF_H
#define PUSHGW_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct pgw_buf {
    char *p;    /* |len| bytes and a NUL, or NULL while nothing was added */
    size_t len; /* without the NUL */
    size_t cap;
    bool oom; /* an allocation failed: what follows is not added */
};

/* A static initialiser: empty, nothing allocated. */
#define PGW_BUF_INIT                                                           \
    {                                                                          \
        NULL, 0, 0, false                                                      \
    }

/* Frees the memory of |b|, left empty and reusable. */
void pgw_buf_release(struct pgw_buf *b);

/* Empties |b| and clears |oom|; the memory is kept for reuse. */
void pgw_buf_reset(struct pgw_buf *b);

/* Makes room for |more| bytes (and the NUL) after |len|; false (and
 * |oom| set) when the memory cannot be had. */
bool pgw_buf_reserve(struct pgw_buf *b, size_t more);

/* Appends the |n| bytes at |s|, keeping the buffer NUL-terminated. */
void pgw_buf_add(struct pgw_buf *b, const char *s, size_t n);

/* Appends the string |s|. */
void pgw_buf_str(struct pgw_buf *b, const char *s);

#endif
