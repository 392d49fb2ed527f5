/*
 * `pushgw import` (DESIGN §15.4): loads LeanCloud/Parse `_Installation`
 * exports into the installations of one app. Files are read as a stream
 * (lc_export), each object is mapped as the /1.1/ API maps it
 * (lc_installation), and rows are written in batches (store_import), so
 * memory stays bounded whatever the size of the files.
 *
 * Every row is accounted for: created, updated, unchanged, or skipped with
 * its file, line and reason, one line each on |out| in the order of the
 * file:
 *
 *     export.jsonl:4: skipped (unsupported_vendor): vendor 'hms' is ...
 *
 * then a summary:
 *
 *     import 'demo': 9 rows in 2 files: 4 created, 1 updated, 0
 *     unchanged, 4 skipped (2 unsupported_vendor, 1 missing_token, ...)
 */
#ifndef PUSHGW_IMPORT_H
#define PUSHGW_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A batch: one transaction and a few statements of this many rows. */
#define PGW_IMPORT_BATCH_ROWS 5000
/* Distinct skip reasons counted in the summary (lc_installation's and
 * the import's own keys: a fixed set, well under this). */
#define PGW_IMPORT_MAX_REASONS 32

struct pgw_import_opts {
    const char *app_id;
    const char *conninfo; /* not used with |dry_run| */
    bool dry_run;         /* read, map and report; connect to nothing */
    size_t batch_rows;    /* 0: PGW_IMPORT_BATCH_ROWS */
    FILE *out;            /* skipped rows and the summary */
    FILE *progress;       /* NULL, or a terminal for a progress line */
};

struct pgw_import_reason {
    char key[32]; /* "unsupported_vendor", "malformed", ... */
    uint64_t count;
};

struct pgw_import_summary {
    uint64_t rows; /* records and malformed lines read */
    uint64_t created, updated, unchanged;
    uint64_t importable; /* dry run: rows that would be written */
    uint64_t skipped;
    struct pgw_import_reason reasons[PGW_IMPORT_MAX_REASONS];
    size_t n_reasons;
};

/*
 * Imports the |n_paths| files |paths| ("-": standard input) as |opts|
 * says, and fills |*ret_summary| (also on failure: what was done). All
 * files are opened before anything is written. Returns 0 when every row
 * was imported or skipped for a stated reason; PGW_ERR_IO (a file could
 * not be opened or read, or a JSON array breaks off: rows after it are not
 * read), PGW_ERR_DB (the batch being written is not written; earlier
 * ones are), PGW_ERR_NOMEM; then |err| says what failed, on one line.
 */
int pgw_import_run(const struct pgw_import_opts *opts, const char *const *paths,
                   size_t n_paths, struct pgw_import_summary *ret_summary,
                   char *err, size_t err_size);

#endif
