/* Types shared by every module: error codes and a list of diagnostics. */
#ifndef PUSHGW_H
#define PUSHGW_H

#include <stddef.h>
#include <stdint.h>

#ifndef PUSHGW_VERSION
#define PUSHGW_VERSION "0.0.0"
#endif

#if defined(__GNUC__)
#define PGW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PGW_PRINTF(fmt, args)
#endif

#define PGW_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Fallible functions return 0 or one of these (always negative). */
enum pgw_err {
    PGW_OK = 0,
    PGW_ERR_NOMEM = -1,        /* allocation failed */
    PGW_ERR_INVAL = -2,        /* invalid argument or input */
    PGW_ERR_IO = -3,           /* file or socket I/O failed */
    PGW_ERR_CONFIG = -4,       /* configuration is invalid */
    PGW_ERR_DB = -5,           /* database error */
    PGW_ERR_TIMEOUT = -6,      /* timed out */
    PGW_ERR_PROTO = -7,        /* peer broke the protocol */
    PGW_ERR_TLS = -8,          /* TLS handshake or verification failed */
    PGW_ERR_NOTFOUND = -9,     /* no such thing */
    PGW_ERR_BUSY = -10,        /* a bounded queue is full */
    PGW_ERR_TOO_LARGE = -11,   /* over a size limit */
    PGW_ERR_UNSUPPORTED = -12, /* not supported or not built */
    PGW_ERR_CLOSED = -13,      /* connection closed */
    PGW_ERR_AUTH = -14,        /* authentication failed */
    PGW_ERR_CRYPTO = -15,      /* key loading or signing failed */
    PGW_ERR_CONFLICT = -16,    /* state conflict (e.g. changed migration) */
};

/* A static, lowercase description of |err|; never NULL. */
const char *pgw_strerror(int err);

/*
 * A growable list of one-line diagnostics, for operations that report every
 * problem they find (config loading, check-config). Embedded: init/release.
 */
struct pgw_diag {
    char **msgs;
    size_t n;
    size_t cap;
    int oom; /* set when a message could not be stored */
};

void pgw_diag_init(struct pgw_diag *self);
void pgw_diag_release(struct pgw_diag *self);
/* Appends a formatted message; on OOM sets |self->oom| instead. */
void pgw_diag_add(struct pgw_diag *self, const char *fmt, ...) PGW_PRINTF(2, 3);

/* strdup that accepts NULL (returns NULL). */
char *pgw_strdup0(const char *s);

/* Copies |src| (NULL: "") into |dst| of |size| bytes, cut to fit (on a
 * UTF-8 character boundary) and always terminated. snprintf("%s") without the
 * format machinery: these run for every push. */
void pgw_copy_str(char *dst, size_t size, const char *src);

/* Writes |v| in decimal and a NUL into |buf| (21 bytes at least); returns
 * the length. */
size_t pgw_fmt_i64(char *buf, int64_t v);

#endif
