/*
 * The SQL of `pushgw import` (DESIGN §15.4): batches of mapped
 * `_Installation` objects written into `installations` of one app, over a
 * blocking connection of its own (the command runs no event loop).
 *
 * A batch is one transaction: COPY into a temporary table, then a few
 * set-based statements. The rules, LeanCloud's and Parse's:
 * - a row is the installation with its objectId, else the device with its
 *   deviceToken (unique per app); the newer registration (updatedAt)
 *   wins, the export on a tie;
 * - an installation whose objectId is stored with another deviceToken
 *   moved to the new token: the row of the old one goes;
 * - a deviceToken stored for another installation goes to the export's
 *   (the row takes its objectId), unless the stored one is newer;
 * - objectId, createdAt and updatedAt are kept as the export has them
 *   (now() when it has none), so a second run finds every row unchanged.
 * Every change reaches the installation cache through migration 0007's
 * triggers, as any SQL change does.
 */
#ifndef PUSHGW_STORE_IMPORT_H
#define PUSHGW_STORE_IMPORT_H

#include <stddef.h>

#include "lc_installation.h"

/* What became of one row of a batch. */
enum pgw_store_import_outcome {
    PGW_STORE_IMPORT_CREATED,
    PGW_STORE_IMPORT_UPDATED,
    PGW_STORE_IMPORT_UNCHANGED,
    /* Not written: the stored registration of this installation (or of
     * this device) is newer. */
    PGW_STORE_IMPORT_STORED_NEWER,
    /* Not written: a newer installation holds this deviceToken, or this
     * objectId is stored with a newer deviceToken. */
    PGW_STORE_IMPORT_DUPLICATE,
};

struct pgw_store_import;

/*
 * Connects to |conninfo| to import rows of |app_id|. Returns 0 and
 * *|ret_self| (free with pgw_store_import_close()); PGW_ERR_DB (the
 * reason in |err|, one line), PGW_ERR_NOMEM.
 */
int pgw_store_import_open(const char *conninfo, const char *app_id,
                          struct pgw_store_import **ret_self, char *err,
                          size_t err_size);
void pgw_store_import_close(struct pgw_store_import *self);

/*
 * Writes the |n| checked rows |rows| (no two with the same deviceToken or
 * objectId) in one transaction, and the outcome of each into
 * |ret_outcomes| (|n| of them). Returns 0; PGW_ERR_DB with the reason in
 * |err| (nothing of the batch is written); PGW_ERR_NOMEM.
 */
int pgw_store_import_write(struct pgw_store_import *self,
                           const struct pgw_lc_installation *const *rows,
                           size_t n,
                           enum pgw_store_import_outcome *ret_outcomes,
                           char *err, size_t err_size);

#endif
