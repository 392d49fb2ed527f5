/* libFuzzer target: the Postgres text-array codec (pgarray.h). The input
 * is parsed as an array value, then read as NUL-separated strings that
 * must survive a write and a parse unchanged. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses |in|; the items must lie in the output buffer, in order. */
static void parse_any(const char *in)
{
    size_t len = strlen(in), max = len / 2 + 1, n = 0;
    char *out = malloc(len + 1);
    const char **items = malloc(max * sizeof(*items));

    if (!out || !items)
        abort();
    if (pgw_pgarray_parse(in, out, items, max, &n) == 0) {
        if (n > max)
            abort();
        for (size_t i = 0; i < n; i++) {
            if (items[i] < out || items[i] + strlen(items[i]) >= out + len + 1)
                abort();
            if (i > 0 && items[i] <= items[i - 1])
                abort();
        }
    }
    free(items);
    free(out);
}

/* The length of the segment of |data| at |at|: up to the next NUL. */
static size_t seg_len(const uint8_t *data, size_t size, size_t at)
{
    const uint8_t *z = memchr(data + at, '\0', size - at);

    return z ? (size_t)(z - (data + at)) : size - at;
}

static bool seg_null(const uint8_t *data, size_t at, size_t len)
{
    return len == 1 && data[at] == 0xff;
}

/* The segments of |data| between NULs as text elements ("\xff" alone: a
 * NULL element), written then parsed back. */
static void round_trip(const uint8_t *data, size_t size)
{
    struct pgw_buf b = {0};
    size_t n_in = 0, n = 0, k = 0;
    const char **items = NULL;
    char *out = NULL;

    pgw_buf_add(&b, "{", 1);
    for (size_t at = 0; at <= size;) {
        size_t len = seg_len(data, size, at);
        bool null = seg_null(data, at, len);

        pgw_pgarray_put_sep(&b, 1);
        pgw_pgarray_put_text(&b, null ? NULL : (const char *)data + at, len);
        n_in += !null;
        at += len + 1;
    }
    pgw_buf_add(&b, "}", 1);
    if (b.oom)
        goto out;
    out = malloc(b.len + 1);
    items = malloc((n_in + 1) * sizeof(*items));
    if (!out || !items)
        abort();
    if (pgw_pgarray_parse(b.p, out, items, n_in + 1, &n) != 0 || n != n_in)
        abort();
    for (size_t at = 0; at <= size;) {
        size_t len = seg_len(data, size, at);

        if (!seg_null(data, at, len)) {
            if (strlen(items[k]) != len || memcmp(items[k], data + at, len))
                abort();
            k++;
        }
        at += len + 1;
    }
out:
    free(items);
    free(out);
    pgw_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);

    if (!in)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    parse_any(in);
    free(in);
    round_trip(data, size);
    return 0;
}
