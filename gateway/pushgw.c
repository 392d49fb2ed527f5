/* Error strings and diagnostics lists shared by all modules. */
#include "pushgw.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/utf8.h"

const char *pgw_strerror(int err)
{
    switch (err) {
    case PGW_OK:
        return "success";
    case PGW_ERR_NOMEM:
        return "out of memory";
    case PGW_ERR_INVAL:
        return "invalid input";
    case PGW_ERR_IO:
        return "input/output error";
    case PGW_ERR_CONFIG:
        return "invalid configuration";
    case PGW_ERR_DB:
        return "database error";
    case PGW_ERR_TIMEOUT:
        return "timed out";
    case PGW_ERR_PROTO:
        return "protocol error";
    case PGW_ERR_TLS:
        return "TLS error";
    case PGW_ERR_NOTFOUND:
        return "not found";
    case PGW_ERR_BUSY:
        return "queue full";
    case PGW_ERR_TOO_LARGE:
        return "too large";
    case PGW_ERR_UNSUPPORTED:
        return "not supported";
    case PGW_ERR_CLOSED:
        return "connection closed";
    case PGW_ERR_AUTH:
        return "authentication failed";
    case PGW_ERR_CRYPTO:
        return "cryptographic operation failed";
    case PGW_ERR_CONFLICT:
        return "conflict";
    default:
        return "unknown error";
    }
}

void pgw_diag_init(struct pgw_diag *self)
{
    memset(self, 0, sizeof(*self));
}

void pgw_diag_release(struct pgw_diag *self)
{
    for (size_t i = 0; i < self->n; i++)
        free(self->msgs[i]);
    free(self->msgs);
    memset(self, 0, sizeof(*self));
}

void pgw_diag_add(struct pgw_diag *self, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    int len;

    {
        char **m =
            pgw_array_grow(self->msgs, &self->cap, self->n, sizeof(*m), 8);
        if (!m) {
            self->oom = 1;
            return;
        }
        self->msgs = m;
    }
    va_start(ap, fmt);
    len = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (len < 0) {
        self->oom = 1;
        return;
    }
    self->msgs[self->n++] = msg;
}

char *pgw_strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

void pgw_copy_str(char *dst, size_t size, const char *src)
{
    size_t n;

    if (size == 0)
        return;
    n = src ? strnlen(src, size - 1) : 0;
    /* cut: never inside a character (provider messages are UTF-8) */
    if (src && n == size - 1 && src[n] != '\0')
        n = pgw_utf8_truncate(src, n + 1, n);
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

size_t pgw_fmt_i64(char *buf, int64_t v)
{
    char tmp[20];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}
