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

/*
 * Room for one more item in the array |items| of |n| items of |size|
 * bytes, |*cap| allocated: |items| itself while there is room, else the
 * array reallocated to twice |*cap| (|first| when empty) and |*cap|
 * updated. NULL when the memory cannot be had: |items| and |*cap| are
 * left as they were.
 */
void *pgw_array_grow(void *items, size_t *cap, size_t n, size_t size,
                     size_t first);

/* The value of the hexadecimal digit |c|, or -1. */
static inline int pgw_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
