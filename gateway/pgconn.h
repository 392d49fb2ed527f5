/*
 * libpq helpers shared by the store's files.
 */
#ifndef PUSHGW_PGCONN_H
#define PUSHGW_PGCONN_H

#include <stddef.h>

/*
 * libpq's messages end in newlines and may span lines: copies |msg|
 * (NULL: "") into |buf| of |size| (> 0) bytes as one line, whitespace
 * runs folded to one space, cut to fit. Returns |buf|.
 */
const char *pgw_pgconn_one_line(char *buf, size_t size, const char *msg);

/* A PQsetNoticeProcessor() callback: server notices are logged at debug
 * level only (a migration's "already exists, skipping" is no news). */
void pgw_pgconn_log_notice(void *arg, const char *message);

#endif
