/*
 * The installations of the LeanCloud /1.1/ API (DESIGN §15.3): the rows a
 * registration could touch, and the one statement that writes a
 * registration. Asynchronous, with the contract of store.h (callbacks run
 * once, later, from the loop; PGW_ERR_BUSY, PGW_ERR_CLOSED,
 * PGW_ERR_NOMEM from the call itself).
 *
 * A registration is read, decided in C (lc_installation's rules), then
 * written by one statement that checks the row is still the one read (its
 * xmin): nothing is half-written, and a write that raced another answers
 * PGW_ERR_CONFLICT so the caller reads again. Each write forgets the
 * cached names of the rows it changed at once (and migration 0007's
 * notification does so for every other process).
 */
#ifndef PUSHGW_STORE_INSTALLATION_H
#define PUSHGW_STORE_INSTALLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lc_installation.h"
#include "store.h"

/* Rows one read returns at most (the target and the token's holders). */
#define PGW_STORE_LC_MAX_ROWS 16

struct pgw_store_lc_row {
    struct pgw_lc_installation inst; /* id, object_id, … as stored */
    char version[24];                /* what the write checks */
    bool invalidated;                /* invalid_reason set: pushgw's doing */
};

/* |rows| (|n|, in id order) are valid during the call. */
typedef void (*pgw_store_lc_rows_cb)(void *arg, int err,
                                     const struct pgw_store_lc_row *rows,
                                     size_t n);

/*
 * The rows of |app_id| whose object_id, installation_id or device_token is
 * |object_id|, |installation_id| or |device_token| (each NULL: not
 * matched on), in id order.
 */
int pgw_store_lc_find(struct pgw_store *self, const char *app_id,
                      const char *object_id, const char *installation_id,
                      const char *device_token, pgw_store_lc_rows_cb cb,
                      void *arg);

/* The saved row's objectId and times (ms), and whether it was created. */
typedef void (*pgw_store_lc_saved_cb)(void *arg, int err, const char *object_id,
                                      int64_t created_at_ms,
                                      int64_t updated_at_ms, bool created);

/*
 * Writes |row| for |app_id|, in one statement: every other row of the app
 * holding |row|'s device_token is deleted (the token moved to this
 * installation), then the row |row->id| is updated if it still has
 * |version|, or, for |row->id| 0, |row| is inserted (with
 * |row->object_id|, else a new one). |revive|: the row is valid again
 * (pushgw's invalidation is cleared). Errors in the callback: PGW_ERR_DB;
 * PGW_ERR_CONFLICT (the row changed since it was read, or another holds
 * its token or objectId now: read again).
 */
int pgw_store_lc_save(struct pgw_store *self, const char *app_id,
                      const struct pgw_lc_installation *row,
                      const char *version, bool revive,
                      pgw_store_lc_saved_cb cb, void *arg);

/* |found|: a row was deleted. */
typedef void (*pgw_store_lc_deleted_cb)(void *arg, int err, bool found);

/* Deletes the row of |app_id| whose object_id is |object_id|. */
int pgw_store_lc_delete(struct pgw_store *self, const char *app_id,
                        const char *object_id, pgw_store_lc_deleted_cb cb,
                        void *arg);

#endif
