/* JSON-lines logger. One write(2)-sized fputs per line keeps lines whole. */
#include "log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"

enum pgw_log_level pgw_log_current_level = PGW_LOG_INFO;
static FILE *log_stream;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void pgw_log_set_level(enum pgw_log_level level)
{
    pgw_log_current_level = level;
}

int pgw_log_level_parse(const char *s, enum pgw_log_level *ret_level)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *ret_level = (enum pgw_log_level)i;
            return 0;
        }
    }
    return PGW_ERR_INVAL;
}

const char *pgw_log_level_name(enum pgw_log_level level)
{
    if ((unsigned)level >= PGW_ARRAY_SIZE(level_names))
        return "unknown";
    return level_names[level];
}

void pgw_log_set_stream(FILE *stream)
{
    log_stream = stream;
}

/* Appends to a bounded buffer, counting what the whole output needs. */
struct sbuf {
    char *buf;
    size_t size;
    size_t len;
};

static void sb_putc(struct sbuf *sb, char c)
{
    if (sb->len + 1 < sb->size)
        sb->buf[sb->len] = c;
    sb->len++;
}

static void sb_puts(struct sbuf *sb, const char *s)
{
    while (*s)
        sb_putc(sb, *s++);
}

static void sb_json_string(struct sbuf *sb, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    if (!s) {
        sb_puts(sb, "null");
        return;
    }
    sb_putc(sb, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            sb_puts(sb, "\\\"");
            break;
        case '\\':
            sb_puts(sb, "\\\\");
            break;
        case '\n':
            sb_puts(sb, "\\n");
            break;
        case '\r':
            sb_puts(sb, "\\r");
            break;
        case '\t':
            sb_puts(sb, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                sb_puts(sb, "\\u00");
                sb_putc(sb, hex[*p >> 4]);
                sb_putc(sb, hex[*p & 0xf]);
            } else {
                sb_putc(sb, (char)*p);
            }
        }
    }
    sb_putc(sb, '"');
}

static void sb_finish(struct sbuf *sb)
{
    if (sb->size == 0)
        return;
    sb->buf[sb->len < sb->size ? sb->len : sb->size - 1] = '\0';
}

size_t pgw_log_json_string(char *buf, size_t size, const char *s)
{
    struct sbuf sb = {buf, size, 0};

    sb_json_string(&sb, s);
    sb_finish(&sb);
    return sb.len;
}

size_t pgw_log_format(char *buf, size_t size, long long ts_ms,
                      enum pgw_log_level level,
                      const struct pgw_log_field *fields, size_t n_fields,
                      const char *fmt, va_list ap)
{
    struct sbuf sb = {buf, size, 0};
    char msg[2048];
    char ts[64];
    char num[32];
    time_t secs = (time_t)(ts_ms / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ts_ms % 1000));
    vsnprintf(msg, sizeof(msg), fmt, ap);

    sb_puts(&sb, "{\"ts\":\"");
    sb_puts(&sb, ts);
    sb_puts(&sb, "\",\"level\":\"");
    sb_puts(&sb, pgw_log_level_name(level));
    sb_puts(&sb, "\",\"msg\":");
    sb_json_string(&sb, msg);
    for (size_t i = 0; i < n_fields; i++) {
        sb_putc(&sb, ',');
        sb_json_string(&sb, fields[i].key);
        sb_putc(&sb, ':');
        if (fields[i].is_num) {
            snprintf(num, sizeof(num), "%lld", fields[i].num);
            sb_puts(&sb, num);
        } else {
            sb_json_string(&sb, fields[i].str);
        }
    }
    sb_puts(&sb, "}\n");
    sb_finish(&sb);
    return sb.len;
}

void pgw_log_emit(enum pgw_log_level level, const struct pgw_log_field *fields,
                  size_t n_fields, const char *fmt, ...)
{
    char line[4096];
    char *big = NULL;
    long long ts_ms;
    va_list ap;
    size_t len;
    FILE *out = log_stream ? log_stream : stderr;

    if (level > pgw_log_current_level)
        return;
    ts_ms = pgw_clock_wall_ms();
    va_start(ap, fmt);
    len = pgw_log_format(line, sizeof(line), ts_ms, level, fields, n_fields,
                         fmt, ap);
    va_end(ap);
    if (len >= sizeof(line)) {
        /* Rare long line (long fields): format again on the heap so the
         * line stays valid JSON rather than cut. */
        big = malloc(len + 1);
        if (big) {
            va_start(ap, fmt);
            pgw_log_format(big, len + 1, ts_ms, level, fields, n_fields, fmt,
                           ap);
            va_end(ap);
        } else {
            line[sizeof(line) - 2] = '\n';
        }
    }
    fputs(big ? big : line, out);
    fflush(out);
    free(big);
}

const char *pgw_log_mask_token(char *buf, size_t size, const char *token)
{
    size_t n = token ? strnlen(token, 8) : 0;

    if (size == 0)
        return buf;
    if (!token) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    snprintf(buf, size, "%.*s%s", (int)n, token,
             strlen(token) > 8 ? "\xe2\x80\xa6" : "");
    return buf;
}
