/*
 * A streaming reader of `_Installation` exports (DESIGN §15.4): LeanCloud's
 * JSON Lines (one object per line) and Parse's JSON (a top-level array, or
 * an object whose first member is "results": an array). The format is told
 * from the first non-blank byte: '[' is an array; '{' is Parse's wrapper
 * when its first member is "results" holding an array, else JSON Lines.
 *
 * Pure: no I/O, no logging. The caller feeds the bytes of the file as it
 * reads them and takes the records out one at a time, each with the line
 * it starts on; memory stays within about one record's cap however big the
 * file is. A record over the cap is skipped (reported, not kept); a line
 * or array element that is not a JSON object is reported and the reading
 * goes on. Only a broken array (a stray '}', the file ending inside it)
 * stops the reading of a Parse file: nothing after can be trusted. The
 * objects are mapped (their dates too) by lc_installation.
 *
 *     while ((rc = pgw_lc_export_next(r, &item)) >= 0) {
 *         if (rc == 1) { use item; continue; }
 *         if (at end of file) { if (finished) break; pgw_lc_export_finish(r);
 *                               continue; }
 *         read a chunk; pgw_lc_export_feed(r, chunk, n);
 *     }
 */
#ifndef PUSHGW_LC_EXPORT_H
#define PUSHGW_LC_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* One installation is well under a kilobyte; a quarter megabyte leaves
 * room for the custom fields of any app while keeping the reader small. */
#define PGW_LC_EXPORT_MAX_RECORD_BYTES (256 * 1024)

/* What the first bytes of the file said. */
enum pgw_lc_export_format {
    PGW_LC_EXPORT_UNKNOWN, /* nothing but blanks read yet */
    PGW_LC_EXPORT_JSONL,   /* LeanCloud: one object per line */
    PGW_LC_EXPORT_ARRAY,   /* Parse: [ {...}, ... ] */
    PGW_LC_EXPORT_RESULTS, /* Parse: {"results": [ {...}, ... ]} */
};

enum pgw_lc_export_kind {
    PGW_LC_EXPORT_RECORD,    /* |object| is a JSON object */
    PGW_LC_EXPORT_MALFORMED, /* not JSON, or not an object: |reason| */
    PGW_LC_EXPORT_TOO_LARGE, /* over the record cap: skipped, |reason| */
    PGW_LC_EXPORT_BROKEN,    /* the array is broken here: |reason|; no
                                item follows */
};

struct pgw_lc_export_item {
    enum pgw_lc_export_kind kind;
    uint64_t line;   /* 1-based line the record starts on */
    cJSON *object;   /* RECORD: the caller frees it with cJSON_Delete() */
    char reason[96]; /* not RECORD: lowercase, no trailing period */
};

struct pgw_lc_export;

/* A reader whose records may be up to |max_record_bytes| (0: the default
 * above). Returns NULL on no memory. */
struct pgw_lc_export *pgw_lc_export_new(size_t max_record_bytes);
void pgw_lc_export_free(struct pgw_lc_export *self);

/*
 * Appends the next |len| bytes of the file (copied). Call it only after
 * pgw_lc_export_next() returned 0, and not after pgw_lc_export_finish().
 * Returns 0; PGW_ERR_BUSY when called while records are still to be taken
 * out (nothing is appended); PGW_ERR_INVAL after finish; PGW_ERR_NOMEM.
 */
int pgw_lc_export_feed(struct pgw_lc_export *self, const void *data,
                       size_t len);

/* Says the file has ended: what is left is read as the last record. */
void pgw_lc_export_finish(struct pgw_lc_export *self);

/*
 * Takes out the next item. Returns 1 and fills |*ret_item|; 0 when more
 * input is needed, or after pgw_lc_export_finish() when the file is done;
 * PGW_ERR_NOMEM (the reader can be freed, not used).
 */
int pgw_lc_export_next(struct pgw_lc_export *self,
                       struct pgw_lc_export_item *ret_item);

/* True once pgw_lc_export_finish() was called and every item taken out. */
bool pgw_lc_export_done(const struct pgw_lc_export *self);

enum pgw_lc_export_format
pgw_lc_export_get_format(const struct pgw_lc_export *self);

/* Bytes held now (the memory bound is about the record cap plus the
 * largest chunk fed). */
size_t pgw_lc_export_buffered(const struct pgw_lc_export *self);

#endif
