/*
 * The text form of Postgres arrays (see pgarray.h): the element writers
 * (onto util/buf), then the parser of one-dimensional text arrays as
 * the server prints them (elements quoted when they need it, backslash
 * escapes inside quotes, unquoted NULL for a NULL element).
 */
#include "pgarray.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pushgw.h"

void pgw_pgarray_put_text(struct pgw_buf *b, const char *s, size_t n)
{
    char *o;

    if (!s) {
        pgw_buf_add(b, "NULL", 4);
        return;
    }
    /* Written in one pass into room for the worst case (every byte
     * escaped): a JSON body has a quote every few bytes, and two appends
     * per quote cost more than the copy. */
    if (n > ((size_t)-1 - 2) / 2 || !pgw_buf_reserve(b, 2 * n + 2)) {
        b->oom = true;
        return;
    }
    o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *o++ = '\\';
        *o++ = s[i];
    }
    *o++ = '"';
    *o = '\0';
    b->len = (size_t)(o - b->p);
}

void pgw_pgarray_put_str(struct pgw_buf *b, const char *s)
{
    pgw_pgarray_put_text(b, s, s ? strlen(s) : 0);
}

/* pgw_fmt_i64(), not snprintf: this runs for every id, count and
 * timestamp of every batch the store sends, where snprintf's format
 * parsing costs more than the digits. */
void pgw_pgarray_put_int(struct pgw_buf *b, long long v)
{
    char tmp[24];

    pgw_buf_add(b, tmp, pgw_fmt_i64(tmp, (int64_t)v));
}

void pgw_pgarray_put_sep(struct pgw_buf *b, size_t start)
{
    if (b->len > start)
        pgw_buf_add(b, ",", 1);
}

int pgw_pgarray_parse(const char *in, char *out, const char **ret_items,
                      size_t max_items, size_t *ret_n)
{
    const char *p = in;
    size_t n = 0;

    if (*p == '[') { /* dimension decoration: [0:1]={…} */
        p = strchr(p, '=');
        if (!p)
            return PGW_ERR_INVAL;
        p++;
    }
    if (*p++ != '{')
        return PGW_ERR_INVAL;
    if (*p == '}') {
        *ret_n = 0;
        return 0;
    }
    for (;;) {
        char *start = out;
        bool quoted = false;

        if (*p == '"') {
            quoted = true;
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                *out++ = *p++;
            }
            if (*p != '"')
                return PGW_ERR_INVAL;
            p++;
        } else {
            while (*p && *p != ',' && *p != '}')
                *out++ = *p++;
        }
        *out++ = '\0';
        if (!quoted && strcasecmp(start, "NULL") == 0) {
            out = start;
        } else {
            if (n >= max_items)
                return PGW_ERR_INVAL;
            ret_items[n++] = start;
        }
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}') {
            *ret_n = n;
            return 0;
        }
        return PGW_ERR_INVAL;
    }
}
