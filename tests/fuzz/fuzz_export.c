/*
 * libFuzzer target: the _Installation export reader (lc_export.h), which
 * reads files of any size and content from a LeanCloud or Parse account.
 * The first two bytes choose the record cap and the size of the pieces
 * the rest is fed in. Checks: the items are the same whether the file
 * comes whole or in pieces (the reader keeps its place across feeds);
 * lines never go back and never pass the file's last line; nothing comes
 * after a broken item; memory stays within the cap plus a piece. Each
 * record is then mapped as `pushgw import` maps it (lc_installation).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lc_export.h"
#include "lc_installation.h"
#include "pushgw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What is compared between the two readings: a digest of the items. */
struct trace {
    uint64_t hash;
    size_t n;
};

static void mix(struct trace *t, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 1099511628211ULL;
}

/* Each record goes on to the mapping the import makes of it. */
static void map_record(const cJSON *obj)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;

    memset(&err, 0, sizeof(err));
    if (pgw_lc_installation_from_export(obj, &row, &err) == 0) {
        if (!row.device_token || !row.device_type)
            abort();
        pgw_lc_installation_release(&row);
    } else if (!err.reason[0] || !err.error[0]) {
        abort(); /* a refusal always says why */
    }
}

static void read_file(const uint8_t *data, size_t size, size_t max, size_t step,
                      uint64_t last_line, struct trace *t)
{
    struct pgw_lc_export *r = pgw_lc_export_new(max);
    struct pgw_lc_export_item item;
    uint64_t prev = 1;
    size_t off = 0;
    bool broken = false;
    char *text;
    int rc;

    if (!r)
        abort();
    for (;;) {
        rc = pgw_lc_export_next(r, &item);
        if (rc < 0)
            abort();
        if (rc == 1) {
            if (broken || item.line < prev || item.line > last_line)
                abort();
            prev = item.line;
            broken = item.kind == PGW_LC_EXPORT_BROKEN;
            mix(t, &item.kind, sizeof(item.kind));
            mix(t, &item.line, sizeof(item.line));
            if (item.kind == PGW_LC_EXPORT_RECORD) {
                if (!cJSON_IsObject(item.object))
                    abort();
                map_record(item.object);
                text = cJSON_PrintUnformatted(item.object);
                if (text)
                    mix(t, text, strlen(text));
                free(text);
                cJSON_Delete(item.object);
            } else if (item.object || !item.reason[0]) {
                abort();
            }
            t->n++;
            continue;
        }
        if (pgw_lc_export_done(r))
            break;
        if (off == size) {
            pgw_lc_export_finish(r);
            continue;
        }
        size_t n = size - off < step ? size - off : step;
        if (pgw_lc_export_feed(r, data + off, n) != 0)
            abort();
        off += n;
        if (pgw_lc_export_buffered(r) > 2 * (max + 4096 + step))
            abort();
    }
    pgw_lc_export_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct trace whole = {14695981039346656037ULL, 0};
    struct trace pieces = whole;
    uint64_t lines = 1;
    size_t max, step;

    if (size < 2)
        return 0;
    max = 16 + (size_t)data[0] * 16;
    step = 1 + data[1] % 64;
    data += 2;
    size -= 2;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    read_file(data, size, max, size ? size : 1, lines, &whole);
    read_file(data, size, max, step, lines, &pieces);
    if (whole.n != pieces.n || whole.hash != pieces.hash)
        abort();
    return 0;
}
