/* Helpers shared by the cmocka tests. */
#ifndef PUSHGW_TESTUTIL_H
#define PUSHGW_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* Creates a fresh temporary folder; the caller frees the path. */
char *tu_mkdtemp(void);
/* Removes |path| and everything below it. */
void tu_rm_rf(const char *path);
/* Writes |content| to |dir|/|name| with |mode|; returns the full path. */
char *tu_write_file(const char *dir, const char *name, const char *content,
                    int mode);
/* Reads a whole file; NULL if it cannot. */
char *tu_read_file(const char *path);

/*
 * Runs the pushgw binary ($PUSHGW_BIN) with |argv| (NULL-terminated, not
 * including the program), extra environment |env| (NULL-terminated
 * "K=V" strings or NULL). Captures stdout and stderr into *ret_out and
 * *ret_err (may be NULL). Returns the exit status, or -1.
 */
int tu_run_pushgw(const char *const *argv, const char *const *env,
                  char **ret_out, char **ret_err);

/*
 * The test Postgres: $PUSHGW_TEST_DATABASE_URL names a server where the
 * tests may create databases. tu_db_create() makes a new empty database
 * and returns its conninfo; tu_db_drop() drops it. When the variable is
 * unset the test is skipped, unless PUSHGW_TEST_REQUIRE_DB=1 (CI), where
 * it fails.
 */
char *tu_db_create(const char *prefix);
void tu_db_drop(const char *conninfo);
/* Runs one SQL statement against |conninfo|; returns the first value of
 * the first row (malloc'd, "" when none), or NULL on error. */
char *tu_db_query(const char *conninfo, const char *sql);

/*
 * Starts |argv[0]| (a path) with |argv| in the background, stdout and
 * stderr appended to |log_path| (NULL: inherited). Returns the pid or -1.
 */
int tu_spawn(const char *const *argv, const char *log_path);
/* Waits up to |timeout_ms| for |path| to hold a port number; returns it,
 * or -1. */
int tu_wait_port_file(const char *path, int timeout_ms);
/* Sends |sig| to |pid| and waits for it (up to 10 s, then SIGKILL).
 * Returns the exit status (128+signal when killed by a signal). */
int tu_stop(int pid, int sig);

#endif
