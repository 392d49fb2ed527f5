/*
 * The import keeps one batch of entries: every item the reader gave, in
 * the order of the files, a mapped row or the reason it was skipped. A
 * full batch is written (store_import) and then reported, so the report
 * follows the files' order. Within a batch two rows with the same
 * deviceToken (or objectId) cannot both be written: the newer one stays,
 * the other is skipped naming it. Across batches the store's rules
 * decide, the same way, with one difference in the report: when the older
 * of the two comes first it is written, then replaced (counted created,
 * the newer one updated), and only a second run names it as skipped.
 */
#include "import.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lc_export.h"
#include "lc_installation.h"
#include "pushgw.h"
#include "store_import.h"

#define READ_BYTES 65536

struct entry {
    const char *file;
    uint64_t line;
    bool has_row; /* |row| holds a mapped installation */
    struct pgw_lc_installation row;
    enum pgw_store_import_outcome outcome;
    char key[32];      /* skipped: the reason's key; "" when not */
    char message[256]; /* skipped: why, naming the field */
};

struct import {
    const struct pgw_import_opts *o;
    struct pgw_import_summary *sum;
    struct pgw_store_import *store;
    struct entry *entries;
    size_t n, cap;
    size_t *order; /* scratch: entry indexes */
    const struct pgw_lc_installation **rows;
    enum pgw_store_import_outcome *outcomes;
    size_t n_files_read;
    char *err;
    size_t err_size;
};

static void count_reason(struct pgw_import_summary *sum, const char *key)
{
    size_t i;

    sum->skipped++;
    for (i = 0; i < sum->n_reasons; i++) {
        if (strcmp(sum->reasons[i].key, key) == 0) {
            sum->reasons[i].count++;
            return;
        }
    }
    if (i < PGW_IMPORT_MAX_REASONS) {
        pgw_copy_str(sum->reasons[i].key, sizeof(sum->reasons[i].key), key);
        sum->reasons[i].count = 1;
        sum->n_reasons++;
    }
}

static struct entry *add_entry(struct import *im, const char *file,
                               uint64_t line)
{
    struct entry *e = &im->entries[im->n++];

    memset(e, 0, sizeof(*e));
    e->file = file;
    e->line = line;
    return e;
}

static void skip_entry(struct entry *e, const char *key, const char *fmt, ...)
    PGW_PRINTF(3, 4);

static void skip_entry(struct entry *e, const char *key, const char *fmt, ...)
{
    va_list ap;

    if (e->has_row) {
        pgw_lc_installation_release(&e->row);
        e->has_row = false;
    }
    pgw_copy_str(e->key, sizeof(e->key), key);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* The entry of the pair |a|, |b| (same token or objectId) that loses: the
 * older registration, the earlier one on a tie. */
static struct entry *loser(struct entry *a, struct entry *b)
{
    int64_t ua = a->row.updated_at_ms, ub = b->row.updated_at_ms;

    if (ua != ub)
        return ua < ub ? a : b;
    return a < b ? a : b;
}

static struct entry *sort_entries;
static int sort_by_token;

static int cmp_entry(const void *pa, const void *pb)
{
    const struct entry *a = &sort_entries[*(const size_t *)pa];
    const struct entry *b = &sort_entries[*(const size_t *)pb];
    const char *ka = sort_by_token ? a->row.device_token : a->row.object_id;
    const char *kb = sort_by_token ? b->row.device_token : b->row.object_id;

    return strcmp(ka ? ka : "", kb ? kb : "");
}

/* Skips all but the newest of the rows sharing a deviceToken (|token|)
 * or an objectId. */
static void dedupe(struct import *im, int token)
{
    size_t m = 0;

    for (size_t i = 0; i < im->n; i++) {
        struct entry *e = &im->entries[i];

        if (e->has_row && (token || e->row.object_id))
            im->order[m++] = i;
    }
    sort_entries = im->entries;
    sort_by_token = token;
    qsort(im->order, m, sizeof(*im->order), cmp_entry);
    for (size_t i = 1; i < m; i++) {
        struct entry *a = &im->entries[im->order[i - 1]];
        struct entry *b = &im->entries[im->order[i]];
        struct entry *lost, *kept;

        if (cmp_entry(&im->order[i - 1], &im->order[i]) != 0)
            continue;
        lost = loser(a, b);
        kept = lost == a ? b : a;
        if (token)
            skip_entry(lost, "duplicate_token",
                       "%s:%llu has the same deviceToken and a registration "
                       "as new or newer",
                       kept->file, (unsigned long long)kept->line);
        else
            skip_entry(lost, "duplicate_object_id",
                       "%s:%llu has the same objectId and a registration "
                       "as new or newer",
                       kept->file, (unsigned long long)kept->line);
        /* The kept one goes on to be compared with the next. */
        im->order[i] = (size_t)(kept - im->entries);
    }
    sort_entries = NULL;
}

static void report(struct import *im)
{
    FILE *out = im->o->out;

    for (size_t i = 0; i < im->n; i++) {
        struct entry *e = &im->entries[i];

        if (e->has_row) {
            switch (e->outcome) {
            case PGW_STORE_IMPORT_CREATED:
                im->sum->created++;
                continue;
            case PGW_STORE_IMPORT_UPDATED:
                im->sum->updated++;
                continue;
            case PGW_STORE_IMPORT_UNCHANGED:
                im->sum->unchanged++;
                continue;
            case PGW_STORE_IMPORT_STORED_NEWER:
                skip_entry(e, "stored_is_newer",
                           "the stored registration of this installation is "
                           "newer than the export's");
                break;
            case PGW_STORE_IMPORT_DUPLICATE:
                skip_entry(e, "duplicate_token",
                           "a newer installation holds this deviceToken, or "
                           "this objectId with a newer deviceToken");
                break;
            }
        }
        if (!e->key[0])
            continue;
        count_reason(im->sum, e->key);
        fprintf(out, "%s:%llu: skipped (%s): %s\n", e->file,
                (unsigned long long)e->line, e->key, e->message);
    }
}

static void progress(struct import *im)
{
    const struct pgw_import_summary *s = im->sum;

    if (!im->o->progress)
        return;
    if (im->o->dry_run)
        fprintf(im->o->progress,
                "\rimporting (dry run): %llu rows, %llu to import, %llu "
                "skipped\033[K",
                (unsigned long long)s->rows, (unsigned long long)s->importable,
                (unsigned long long)s->skipped);
    else
        fprintf(im->o->progress,
                "\rimporting: %llu rows, %llu created, %llu updated, %llu "
                "unchanged, %llu skipped\033[K",
                (unsigned long long)s->rows, (unsigned long long)s->created,
                (unsigned long long)s->updated,
                (unsigned long long)s->unchanged,
                (unsigned long long)s->skipped);
    fflush(im->o->progress);
}

/* Writes and reports the batch, and empties it. */
static int flush(struct import *im)
{
    size_t m = 0;
    int rc = 0;

    if (im->n == 0)
        return 0;
    dedupe(im, 1);
    dedupe(im, 0);
    for (size_t i = 0; i < im->n; i++) {
        if (im->entries[i].has_row) {
            im->order[m] = i;
            im->rows[m++] = &im->entries[i].row;
        }
    }
    if (im->o->dry_run) {
        /* Each row counts as importable; nothing more to report. */
        im->sum->importable += m;
        for (size_t i = 0; i < m; i++) {
            struct entry *e = &im->entries[im->order[i]];

            pgw_lc_installation_release(&e->row);
            e->has_row = false;
        }
    } else if (m > 0) {
        rc = pgw_store_import_write(im->store, im->rows, m, im->outcomes,
                                    im->err, im->err_size);
        for (size_t i = 0; rc == 0 && i < m; i++)
            im->entries[im->order[i]].outcome = im->outcomes[i];
    }
    if (rc == 0) {
        /* The report's lines go where the progress line is (a terminal
         * shows both): it is wiped first, and written again after. */
        if (im->o->progress) {
            fputs("\r\033[K", im->o->progress);
            fflush(im->o->progress);
        }
        report(im);
        fflush(im->o->out);
        progress(im);
    }
    for (size_t i = 0; i < im->n; i++)
        if (im->entries[i].has_row)
            pgw_lc_installation_release(&im->entries[i].row);
    im->n = 0;
    return rc;
}

static int take_item(struct import *im, const char *file,
                     struct pgw_lc_export_item *item)
{
    struct pgw_lc_error lerr;
    struct entry *e;
    int rc;

    im->sum->rows++;
    e = add_entry(im, file, item->line);
    switch (item->kind) {
    case PGW_LC_EXPORT_RECORD:
        memset(&lerr, 0, sizeof(lerr));
        rc = pgw_lc_installation_from_export(item->object, &e->row, &lerr);
        cJSON_Delete(item->object);
        item->object = NULL;
        if (rc == PGW_ERR_NOMEM)
            return rc;
        if (rc < 0) {
            skip_entry(e, lerr.reason[0] ? lerr.reason : "invalid", "%s",
                       lerr.error);
            break;
        }
        e->has_row = true;
        break;
    case PGW_LC_EXPORT_TOO_LARGE:
        skip_entry(e, "too_large", "%s", item->reason);
        break;
    case PGW_LC_EXPORT_MALFORMED:
    case PGW_LC_EXPORT_BROKEN: /* import_file() stops before */
        skip_entry(e, "malformed", "%s", item->reason);
        break;
    }
    if (im->n == im->cap)
        return flush(im);
    return 0;
}

static int import_file(struct import *im, const char *name, FILE *f)
{
    struct pgw_lc_export *r = pgw_lc_export_new(0);
    struct pgw_lc_export_item item;
    char *chunk = malloc(READ_BYTES);
    int rc = 0;

    if (!r || !chunk) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        rc = pgw_lc_export_next(r, &item);
        if (rc < 0)
            goto out;
        if (rc == 1) {
            if (item.kind == PGW_LC_EXPORT_BROKEN) {
                rc = flush(im);
                if (rc == 0) {
                    snprintf(im->err, im->err_size,
                             "could not read '%s' past line %llu: %s", name,
                             (unsigned long long)item.line, item.reason);
                    rc = PGW_ERR_IO;
                }
                goto out;
            }
            rc = take_item(im, name, &item);
            if (rc < 0)
                goto out;
            continue;
        }
        if (pgw_lc_export_done(r))
            break;
        size_t n = fread(chunk, 1, READ_BYTES, f);
        if (n == 0) {
            if (ferror(f)) {
                snprintf(im->err, im->err_size, "could not read '%s': %s", name,
                         strerror(errno));
                rc = PGW_ERR_IO;
                goto out;
            }
            pgw_lc_export_finish(r);
            continue;
        }
        rc = pgw_lc_export_feed(r, chunk, n);
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    if (rc == PGW_ERR_NOMEM && !im->err[0])
        snprintf(im->err, im->err_size, "could not import '%s': %s", name,
                 pgw_strerror(rc));
    pgw_lc_export_free(r);
    free(chunk);
    return rc;
}

static void print_summary(const struct pgw_import_opts *o,
                          const struct pgw_import_summary *s, size_t n_files)
{
    FILE *out = o->out;

    fprintf(out, "import '%s'%s: %llu rows in %zu file%s: ", o->app_id,
            o->dry_run ? " (dry run, nothing written)" : "",
            (unsigned long long)s->rows, n_files, n_files == 1 ? "" : "s");
    if (o->dry_run)
        fprintf(out, "%llu to import, ", (unsigned long long)s->importable);
    else
        fprintf(out, "%llu created, %llu updated, %llu unchanged, ",
                (unsigned long long)s->created, (unsigned long long)s->updated,
                (unsigned long long)s->unchanged);
    fprintf(out, "%llu skipped", (unsigned long long)s->skipped);
    for (size_t i = 0; i < s->n_reasons; i++)
        fprintf(out, "%s%llu %s", i == 0 ? " (" : ", ",
                (unsigned long long)s->reasons[i].count, s->reasons[i].key);
    fputs(s->n_reasons ? ")\n" : "\n", out);
}

int pgw_import_run(const struct pgw_import_opts *opts, const char *const *paths,
                   size_t n_paths, struct pgw_import_summary *ret_summary,
                   char *err, size_t err_size)
{
    struct import im = {0};
    FILE **files = calloc(n_paths ? n_paths : 1, sizeof(*files));
    size_t cap = opts->batch_rows ? opts->batch_rows : PGW_IMPORT_BATCH_ROWS;
    int rc = 0;

    memset(ret_summary, 0, sizeof(*ret_summary));
    err[0] = '\0';
    im.o = opts;
    im.sum = ret_summary;
    im.err = err;
    im.err_size = err_size;
    im.cap = cap;
    im.entries = malloc(cap * sizeof(*im.entries));
    im.order = malloc(cap * sizeof(*im.order));
    im.rows = malloc(cap * sizeof(*im.rows));
    im.outcomes = malloc(cap * sizeof(*im.outcomes));
    if (!files || !im.entries || !im.order || !im.rows || !im.outcomes) {
        rc = PGW_ERR_NOMEM;
        snprintf(err, err_size, "could not import: %s", pgw_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < n_paths; i++) {
        files[i] = strcmp(paths[i], "-") == 0 ? stdin : fopen(paths[i], "rb");
        if (!files[i]) {
            snprintf(err, err_size, "could not open '%s': %s", paths[i],
                     strerror(errno));
            rc = PGW_ERR_IO;
            goto out;
        }
    }
    if (!opts->dry_run) {
        rc = pgw_store_import_open(opts->conninfo, opts->app_id, &im.store, err,
                                   err_size);
        if (rc < 0)
            goto out;
    }
    for (size_t i = 0; i < n_paths && rc == 0; i++)
        rc = import_file(&im, paths[i], files[i]);
    if (rc == 0)
        rc = flush(&im);
    if (opts->progress && ret_summary->rows > 0) {
        fputc('\n', opts->progress);
        fflush(opts->progress);
    }
    print_summary(opts, ret_summary, n_paths);
out:
    for (size_t i = 0; i < im.n; i++)
        if (im.entries[i].has_row)
            pgw_lc_installation_release(&im.entries[i].row);
    for (size_t i = 0; files && i < n_paths; i++)
        if (files[i] && files[i] != stdin)
            fclose(files[i]);
    pgw_store_import_close(im.store);
    free(files);
    free(im.entries);
    free(im.order);
    free(im.rows);
    free(im.outcomes);
    return rc;
}
