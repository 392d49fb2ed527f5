/*
 * All SQL of pushgw. For now: the schema migrator used by `pushgw migrate`
 * (blocking libpq; it runs before any event loop exists).
 */
#ifndef PUSHGW_STORE_H
#define PUSHGW_STORE_H

#include <stdio.h>

#include "pushgw.h"

/* The advisory lock key `migrate` holds: ASCII "pushgwmg". */
#define PGW_STORE_MIGRATE_LOCK 0x7075736867776d67LL

#define PGW_STORE_MAX_MIGRATIONS 10000
#define PGW_STORE_MAX_MIGRATION_BYTES (16 * 1024 * 1024)

/*
 * Applies the pending NNNN_name.sql files of |dir| to the database at
 * |conninfo| in order, each in its own transaction, under an advisory lock.
 * Prints one line per applied file and a summary to |out|; adds problems
 * to |diag|. Returns 0; PGW_ERR_DB (connection or SQL failure);
 * PGW_ERR_CONFLICT (an applied file changed or is missing, or the folder
 * holds a badly named or duplicate file); PGW_ERR_IO (folder unreadable);
 * PGW_ERR_NOMEM.
 */
int pgw_store_migrate(const char *conninfo, const char *dir, FILE *out,
                      struct pgw_diag *diag);

/* SHA-256 of |len| bytes as 64 lowercase hex characters plus NUL. */
void pgw_store_sha256_hex(const void *data, size_t len, char ret_hex[65]);

#endif
