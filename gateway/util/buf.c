/* The growable buffer (see buf.h). */
#include "util/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 256

void pgw_buf_release(struct pgw_buf *b)
{
    free(b->p);
    *b = (struct pgw_buf)PGW_BUF_INIT;
}

void pgw_buf_reset(struct pgw_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->p)
        b->p[0] = '\0';
}

bool pgw_buf_reserve(struct pgw_buf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    if (more > (size_t)-1 / 4 - b->len) {
        b->oom = true;
        return false;
    }
    cap = b->cap ? b->cap : FIRST_CAP;
    while (cap < b->len + more + 1)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pgw_buf_add(struct pgw_buf *b, const char *s, size_t n)
{
    if (!pgw_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void pgw_buf_str(struct pgw_buf *b, const char *s)
{
    pgw_buf_add(b, s, strlen(s));
}

void *pgw_array_grow(void *items, size_t *cap, size_t n, size_t size,
                     size_t first)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return items;
    ncap = *cap ? *cap * 2 : first;
    if (ncap < *cap || (size && ncap > SIZE_MAX / size))
        return NULL;
    p = realloc(items, ncap * size);
    if (p)
        *cap = ncap;
    return p;
}
