/* The checked JSON reader (see json.h). */
#include "util/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/utf8.h"

#define ELLIPSIS "\xe2\x80\xa6" /* U+2026 */
#define ELLIPSIS_LEN 3

void pgw_json_limits_default(struct pgw_json_limits *ret_lim)
{
    ret_lim->max_depth = PGW_JSON_MAX_DEPTH;
    ret_lim->max_array_items = PGW_JSON_MAX_ARRAY_ITEMS;
    ret_lim->max_string_bytes = PGW_JSON_MAX_STRING_BYTES;
}

size_t pgw_json_escaped_len(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
            c == '\r' || c == '\t')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n += 1;
    }
    return n;
}

size_t pgw_json_escape(char *dst, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = 0;

        switch (c) {
        case '"':
        case '\\':
            e = (char)c;
            break;
        case '\b':
            e = 'b';
            break;
        case '\f':
            e = 'f';
            break;
        case '\n':
            e = 'n';
            break;
        case '\r':
            e = 'r';
            break;
        case '\t':
            e = 't';
            break;
        default:
            break;
        }
        if (e) {
            dst[o++] = '\\';
            dst[o++] = e;
        } else if (c < 0x20) {
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[c >> 4];
            dst[o + 5] = hex[c & 0x0F];
            o += 6;
        } else {
            dst[o++] = (char)c;
        }
    }
    return o;
}

/* Reads 4 hex digits at |p|; -1 when they are not. */
static long hex4(const unsigned char *p, size_t left)
{
    long v = 0;

    if (left < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = pgw_hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/*
 * The raw-text checks cJSON does not make. Structure errors (missing
 * commas...) are left to cJSON; this only guarantees that what cJSON sees
 * is UTF-8 without NUL escapes and within the caps.
 */
static int prescan(const unsigned char *p, size_t len,
                   const struct pgw_json_limits *lim, size_t *ret_offset,
                   const char **ret_why)
{
    size_t items[PGW_JSON_MAX_DEPTH + 1];
    bool is_array[PGW_JSON_MAX_DEPTH + 1];
    bool empty[PGW_JSON_MAX_DEPTH + 1];
    int depth = 0;
    int max_depth = lim->max_depth;
    size_t i = 0;

    if (max_depth > PGW_JSON_MAX_DEPTH || max_depth < 1)
        max_depth = PGW_JSON_MAX_DEPTH;
    while (i < len) {
        unsigned char c = p[i];

        if (c == '"') {
            size_t start = ++i;
            for (;;) {
                if (i >= len) {
                    *ret_offset = start - 1;
                    *ret_why = "unterminated string";
                    return PGW_ERR_INVAL;
                }
                c = p[i];
                if (c == '"')
                    break;
                if (c < 0x20) {
                    *ret_offset = i;
                    *ret_why = "control character in string";
                    return PGW_ERR_INVAL;
                }
                if (c == '\\') {
                    if (i + 1 >= len) {
                        *ret_offset = i;
                        *ret_why = "unterminated string";
                        return PGW_ERR_INVAL;
                    }
                    if (p[i + 1] == 'u') {
                        long v = hex4(p + i + 2, len - i - 2);
                        if (v < 0) {
                            *ret_offset = i;
                            *ret_why = "invalid \\u escape";
                            return PGW_ERR_INVAL;
                        }
                        if (v == 0) {
                            *ret_offset = i;
                            *ret_why = "\\u0000 is not allowed";
                            return PGW_ERR_INVAL;
                        }
                        i += 6;
                    } else {
                        i += 2;
                    }
                    continue;
                }
                size_t n = pgw_utf8_seq_len((const char *)p + i, len - i);
                if (n == 0) {
                    *ret_offset = i;
                    *ret_why = "invalid UTF-8";
                    return PGW_ERR_INVAL;
                }
                i += n;
            }
            if (i - start > lim->max_string_bytes) {
                *ret_offset = start - 1;
                *ret_why = "string too long";
                return PGW_ERR_INVAL;
            }
            i++; /* closing quote */
            if (depth > 0 && empty[depth]) {
                empty[depth] = false;
                items[depth] = 1;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth > 0 && empty[depth]) {
                empty[depth] = false;
                items[depth] = 1;
            }
            if (depth >= max_depth) {
                *ret_offset = i;
                *ret_why = "nested too deeply";
                return PGW_ERR_INVAL;
            }
            depth++;
            is_array[depth] = c == '[';
            empty[depth] = true;
            items[depth] = 0;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',') {
            if (depth > 0 && is_array[depth] &&
                ++items[depth] > lim->max_array_items) {
                *ret_offset = i;
                *ret_why = "array too large";
                return PGW_ERR_INVAL;
            }
        } else if (c >= 0x80 || c == 0) {
            *ret_offset = i;
            *ret_why = c == 0 ? "NUL byte" : "invalid character";
            return PGW_ERR_INVAL;
        } else if (depth > 0 && empty[depth] && c != ' ' && c != '\t' &&
                   c != '\n' && c != '\r') {
            empty[depth] = false;
            items[depth] = 1;
        }
        i++;
    }
    return 0;
}

int pgw_json_parse(const char *buf, size_t len,
                   const struct pgw_json_limits *lim, cJSON **ret_json,
                   size_t *ret_offset, const char **ret_why)
{
    struct pgw_json_limits dlim;
    const char *end = NULL;
    size_t off = 0;
    const char *why = NULL;
    cJSON *json = NULL;
    int rc;

    if (!lim) {
        pgw_json_limits_default(&dlim);
        lim = &dlim;
    }
    rc = prescan((const unsigned char *)buf, len, lim, &off, &why);
    if (rc < 0)
        goto out;
    json = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!json) {
        /* cJSON reports OOM and syntax errors alike; the text was checked,
         * so this is almost always a syntax error. */
        off = end && end >= buf ? (size_t)(end - buf) : 0;
        why = "invalid JSON";
        rc = PGW_ERR_INVAL;
        goto out;
    }
    off = (size_t)(end - buf);
    while (off < len && (buf[off] == ' ' || buf[off] == '\t' ||
                         buf[off] == '\n' || buf[off] == '\r'))
        off++;
    if (off < len) {
        why = "trailing characters after JSON";
        rc = PGW_ERR_INVAL;
        goto out;
    }
    *ret_json = json;
    json = NULL;
    rc = 0;
out:
    cJSON_Delete(json);
    if (rc < 0) {
        if (off > len)
            off = len;
        if (ret_offset)
            *ret_offset = off;
        if (ret_why)
            *ret_why = why;
    }
    return rc;
}

int pgw_json_fail(struct pgw_json_error *err, int rc, const char *field,
                  const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return rc;
    pgw_copy_str(err->field, sizeof(err->field), field);
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return rc;
}

const cJSON *pgw_json_member(const cJSON *obj, const char *name)
{
    const cJSON *it;

    if (!cJSON_IsObject(obj))
        return NULL;
    it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNull(it) ? NULL : it;
}

bool pgw_json_has_key(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name) != NULL;
}

void pgw_json_delete_key(cJSON *obj, const char *name)
{
    while (pgw_json_has_key(obj, name))
        cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
}

/* The member |name|: 1 present, 0 absent and optional, or the error. */
static int member(const cJSON *obj, const char *name, unsigned flags,
                  const cJSON **ret, struct pgw_json_error *err)
{
    *ret = pgw_json_member(obj, name);
    if (*ret)
        return 1;
    if (flags & PGW_JSON_REQUIRED)
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "is required");
    return 0;
}

int pgw_json_get_string(const cJSON *obj, const char *name, unsigned flags,
                        size_t max_bytes, const char **ret,
                        struct pgw_json_error *err)
{
    const cJSON *it;
    size_t n;
    int rc = member(obj, name, flags, &it, err);

    if (rc <= 0)
        return rc;
    if (!cJSON_IsString(it) || !it->valuestring)
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "must be a string");
    n = strlen(it->valuestring);
    if ((flags & PGW_JSON_NONEMPTY) && n == 0)
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "must not be empty");
    if (n > max_bytes)
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "longer than %zu bytes",
                             max_bytes);
    *ret = it->valuestring;
    return 1;
}

bool pgw_json_int_value(const cJSON *it, int64_t min, int64_t max, int64_t *ret)
{
    double v;

    if (!cJSON_IsNumber(it))
        return false;
    v = it->valuedouble;
    if (!isfinite(v) || v != floor(v) || v < (double)min || v > (double)max)
        return false;
    *ret = (int64_t)v;
    return true;
}

int pgw_json_get_int(const cJSON *obj, const char *name, unsigned flags,
                     int64_t min, int64_t max, int64_t *ret,
                     struct pgw_json_error *err)
{
    const cJSON *it;
    int rc = member(obj, name, flags, &it, err);

    if (rc <= 0)
        return rc;
    if (!pgw_json_int_value(it, min, max, ret))
        return pgw_json_fail(err, PGW_ERR_INVAL, name,
                             "must be an integer from %lld to %lld",
                             (long long)min, (long long)max);
    return 1;
}

int pgw_json_get_bool(const cJSON *obj, const char *name, unsigned flags,
                      bool *ret, struct pgw_json_error *err)
{
    const cJSON *it;
    int rc = member(obj, name, flags, &it, err);

    if (rc <= 0)
        return rc;
    if (!cJSON_IsBool(it))
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "must be a boolean");
    *ret = cJSON_IsTrue(it);
    return 1;
}

int pgw_json_get_object(const cJSON *obj, const char *name, unsigned flags,
                        const cJSON **ret, struct pgw_json_error *err)
{
    const cJSON *it;
    int rc = member(obj, name, flags, &it, err);

    if (rc <= 0)
        return rc;
    if (!cJSON_IsObject(it))
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "must be an object");
    *ret = it;
    return 1;
}

int pgw_json_get_array(const cJSON *obj, const char *name, unsigned flags,
                       size_t max_items, const cJSON **ret,
                       struct pgw_json_error *err)
{
    const cJSON *it;
    int rc = member(obj, name, flags, &it, err);

    if (rc <= 0)
        return rc;
    if (!cJSON_IsArray(it))
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "must be an array");
    if ((size_t)cJSON_GetArraySize(it) > max_items)
        return pgw_json_fail(err, PGW_ERR_INVAL, name, "more than %zu items",
                             max_items);
    *ret = it;
    return 1;
}

int pgw_json_shorten(cJSON *str, size_t excess)
{
    const char *s = str->valuestring;
    size_t len = strlen(s);
    size_t esc = pgw_json_escaped_len(s, len);
    size_t want, acc = 0, cut = 0;
    char *n;

    if (esc < excess + ELLIPSIS_LEN)
        return PGW_ERR_TOO_LARGE;
    want = esc - excess - ELLIPSIS_LEN;
    /* The longest byte prefix whose printed length fits, then back to
     * the start of the character it would cut (every byte of a
     * multi-byte character prints as itself). */
    while (cut < len) {
        size_t ce = pgw_json_escaped_len(s + cut, 1);
        if (acc + ce > want)
            break;
        acc += ce;
        cut++;
    }
    cut = pgw_utf8_truncate(s, len, cut);
    n = malloc(cut + ELLIPSIS_LEN + 1);
    if (!n)
        return PGW_ERR_NOMEM;
    memcpy(n, s, cut);
    memcpy(n + cut, ELLIPSIS, ELLIPSIS_LEN + 1);
    free(str->valuestring);
    str->valuestring = n;
    return 0;
}
