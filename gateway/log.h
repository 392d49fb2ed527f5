/*
 * JSON-lines logging to stderr: {"ts":"…","level":"…","msg":"…",fields…}.
 * The level is checked before any argument is formatted, so a disabled
 * pgw_log_debug() costs one comparison.
 */
#ifndef PUSHGW_LOG_H
#define PUSHGW_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "pushgw.h"

enum pgw_log_level {
    PGW_LOG_ERROR = 0,
    PGW_LOG_WARN = 1,
    PGW_LOG_INFO = 2,
    PGW_LOG_DEBUG = 3,
};

/* A structured field: a string (|str|, may be NULL → null) or an integer. */
struct pgw_log_field {
    const char *key;
    const char *str;
    long long num;
    int is_num;
};

#define PGW_LF_STR(k, v) ((struct pgw_log_field){.key = (k), .str = (v)})
#define PGW_LF_INT(k, v)                                                       \
    ((struct pgw_log_field){.key = (k), .num = (long long)(v), .is_num = 1})

/* The current level; read by the macros below. */
extern enum pgw_log_level pgw_log_current_level;

void pgw_log_set_level(enum pgw_log_level level);
/* Parses "error", "warn", "info" or "debug"; PGW_ERR_INVAL otherwise. */
int pgw_log_level_parse(const char *s, enum pgw_log_level *ret_level);
const char *pgw_log_level_name(enum pgw_log_level level);
/* Where lines go (default stderr). |stream| is not closed by the log. */
void pgw_log_set_stream(FILE *stream);

/* Emits one line if |level| is enabled. Prefer the macros. */
void pgw_log_emit(enum pgw_log_level level, const struct pgw_log_field *fields,
                  size_t n_fields, const char *fmt, ...) PGW_PRINTF(4, 5);

/*
 * Formats one line (with '\n') into |buf| of |size| bytes for a time of
 * |ts_ms| milliseconds since the epoch (UTC). Returns the length the full
 * line needs, like snprintf; a line longer than |size| is truncated but
 * stays NUL-terminated.
 */
size_t pgw_log_format(char *buf, size_t size, long long ts_ms,
                      enum pgw_log_level level,
                      const struct pgw_log_field *fields, size_t n_fields,
                      const char *fmt, va_list ap) PGW_PRINTF(7, 0);

/* Writes |s| as a JSON string (quotes included) into |buf|; see above. */
size_t pgw_log_json_string(char *buf, size_t size, const char *s);

/* Copies at most the first 8 characters of |token| then "…" into |buf|. */
const char *pgw_log_mask_token(char *buf, size_t size, const char *token);

#define PGW_LOG_(lvl, f, n, ...)                                               \
    do {                                                                       \
        if ((lvl) <= pgw_log_current_level)                                    \
            pgw_log_emit((lvl), (f), (n), __VA_ARGS__);                        \
    } while (0)

#define pgw_log_error(...) PGW_LOG_(PGW_LOG_ERROR, NULL, 0, __VA_ARGS__)
#define pgw_log_warn(...) PGW_LOG_(PGW_LOG_WARN, NULL, 0, __VA_ARGS__)
#define pgw_log_info(...) PGW_LOG_(PGW_LOG_INFO, NULL, 0, __VA_ARGS__)
#define pgw_log_debug(...) PGW_LOG_(PGW_LOG_DEBUG, NULL, 0, __VA_ARGS__)

/* With fields: pgw_log_infof(PGW_FIELDS(PGW_LF_STR("app", id)), "…"). */
#define PGW_FIELDS(...)                                                        \
    ((const struct pgw_log_field[]){__VA_ARGS__}),                             \
        (sizeof((const struct pgw_log_field[]){__VA_ARGS__}) /                 \
         sizeof(struct pgw_log_field))
#define pgw_log_errorf(fl, ...) PGW_LOG_F_(PGW_LOG_ERROR, fl, __VA_ARGS__)
#define pgw_log_warnf(fl, ...) PGW_LOG_F_(PGW_LOG_WARN, fl, __VA_ARGS__)
#define pgw_log_infof(fl, ...) PGW_LOG_F_(PGW_LOG_INFO, fl, __VA_ARGS__)
#define pgw_log_debugf(fl, ...) PGW_LOG_F_(PGW_LOG_DEBUG, fl, __VA_ARGS__)
#define PGW_LOG_F_(lvl, ...) PGW_LOG_(lvl, __VA_ARGS__)

#endif
