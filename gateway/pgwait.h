/*
 * Waiting, at start-up, for a database that is not up yet (`pushgw migrate
 * --wait`): a blocking poll with libpq's PQping(), which neither
 * authenticates nor runs SQL. For command-line use only: it blocks.
 */
#ifndef PUSHGW_PGWAIT_H
#define PUSHGW_PGWAIT_H

/* Pause between two pings: the first, and the longest. */
#define PGW_PGWAIT_FIRST_PAUSE_MS 250
#define PGW_PGWAIT_MAX_PAUSE_MS 5000

/*
 * Returns 0 as soon as the server at |conninfo| accepts connections, or
 * after |timeout_s| seconds of trying PGW_ERR_TIMEOUT (0: one try). Logs
 * one line when it starts waiting and one every 30 s (never the
 * conninfo: it may hold a password). Errors: PGW_ERR_CONFIG (|conninfo|
 * cannot be parsed), PGW_ERR_TIMEOUT.
 */
int pgw_pgwait_reachable(const char *conninfo, unsigned timeout_s);

#endif
