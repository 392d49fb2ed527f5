/*
 * The test support library (tests/support/): everything a test needs
 * around the code under test, in one place and with one prefix, tu_.
 *
 *   testutil.h   files, processes, the test database, clocks, waiting
 *   tu_http.h    plain HTTP/1.1 to the daemon (libcurl)
 *   tu_h2.h      HTTP/2 over TLS (a blocking client for the mocks)
 *   tu_mock.h    the mock APNs, mock FCM and hook server processes
 *   tu_records.h the mocks' record files
 *   tu_svc.h     the whole service: database, mocks and `pushgw serve`
 *
 * Helpers that can fail fail the running cmocka test, unless their
 * contract says they return an error. Every process started here is
 * killed when the test program exits, even after a failed assertion.
 */
#ifndef PUSHGW_TESTUTIL_H
#define PUSHGW_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- files --------------------------------------------------------- */

/* Creates a fresh temporary folder; the caller frees the path. */
char *tu_mkdtemp(void);
/* Removes |path| and everything below it. */
void tu_rm_rf(const char *path);
/* Writes |content| to |dir|/|name| with |mode|; returns the full path. */
char *tu_write_file(const char *dir, const char *name, const char *content,
                    int mode);
/* Reads a whole file; NULL if it cannot. */
char *tu_read_file(const char *path);
/* |dir|/|name|, malloc'd (fails the test when out of memory). */
char *tu_path(const char *dir, const char *name);

/* ---- processes ----------------------------------------------------- */

/*
 * Runs the pushgw binary ($PUSHGW_BIN) with |argv| (NULL-terminated, not
 * including the program), extra environment |env| (NULL-terminated
 * "K=V" strings or NULL). Captures stdout and stderr into *ret_out and
 * *ret_err (may be NULL). Returns the exit status, or -1.
 */
int tu_run_pushgw(const char *const *argv, const char *const *env,
                  char **ret_out, char **ret_err);
/* The pushgw binary: $PUSHGW_BIN, else the one of this build tree. */
const char *tu_pushgw_bin(void);

/*
 * Starts |argv[0]| (a path) with |argv| in the background, stdout and
 * stderr appended to |log_path| (NULL: inherited). Returns the pid or -1.
 * The child is killed at exit if it still runs then.
 */
int tu_spawn(const char *const *argv, const char *log_path);
/* Waits up to |timeout_ms| for |path| to hold a port number (a whole
 * line); returns it, or -1. */
int tu_wait_port_file(const char *path, int timeout_ms);
/* Sends |sig| to |pid| and waits for it (up to 10 s, then SIGKILL).
 * Returns the exit status (128+signal when killed by a signal). */
int tu_stop(int pid, int sig);
/* A loopback TCP port that is free now, for a program to bind later:
 * random, below the kernel's ephemeral range. */
int tu_free_port(void);

/* VmRSS and VmHWM of |pid| in KiB (-1 when unreadable). */
long tu_rss_kib(int pid);
long tu_hwm_kib(int pid);
/*
 * Checks that the VmHWM of |pid| grew by less than |max_kib| over
 * |base_kib|; prints and returns the growth. Under AddressSanitizer RSS
 * says nothing about the program, so the check is skipped there.
 */
long tu_check_memory(int pid, long base_kib, long max_kib, const char *what);

/* ---- the test database --------------------------------------------- */

/*
 * The test Postgres: $PUSHGW_TEST_DATABASE_URL names a server where the
 * tests may create databases. tu_db_create() makes a new empty database
 * and returns its conninfo; tu_db_drop() drops it. When the variable is
 * unset the test is skipped, unless PUSHGW_TEST_REQUIRE_DB=1 (CI), where
 * it fails.
 */
char *tu_db_create(const char *prefix);
/*
 * tu_db_create() with migrations/ applied: a copy of a template database
 * that the first caller builds with pgw_store_migrate() (named after the
 * migrations' hash, so a changed migration gets a fresh one; it stays on
 * the server for the next run). For tests of what runs on the schema,
 * not of migrating.
 */
char *tu_db_create_migrated(const char *prefix);
/* Applies migrations/ to the database of |conninfo| (in process). */
void tu_db_migrate(const char *conninfo);
void tu_db_drop(const char *conninfo);
/* Runs one SQL statement against |conninfo|; returns the first value of
 * the first row (malloc'd, "" when none), or NULL on error. */
char *tu_db_query(const char *conninfo, const char *sql);
/* Polls |sql| until it returns |want| (up to |timeout_ms|); true if so. */
bool tu_db_wait(const char *conninfo, const char *sql, const char *want,
                int timeout_ms);
/*
 * A private Postgres cluster for tests that stop and start the server:
 * initdb in |dir| (as 'postgres' when root), listening on a free loopback
 * port. Returns a conninfo for its 'postgres' database (free());
 * tu_pg_ctl(dir, "stop"|"start") controls it.
 */
char *tu_pg_create(const char *dir);
void tu_pg_ctl(const char *dir, const char *action);

/* ---- clocks and waiting -------------------------------------------- */

/* CLOCK_MONOTONIC / CLOCK_REALTIME in ms. */
long long tu_mono_ms(void);
long long tu_wall_ms(void);
void tu_sleep_ms(int ms);

/* How often the waits below look again: after TU_POLL_MS, then twice as
 * long each time up to TU_POLL_MAX_MS, so that a quick condition is seen
 * at once and a long wait costs little CPU (tests run side by side). */
#define TU_POLL_MS 5
#define TU_POLL_MAX_MS 20
/* How long a program started for a test (a mock, pushgw serve) may take
 * to listen or become ready: generous, since a deadline costs nothing
 * when things work, and sanitizer builds on a loaded machine are slow. */
#define TU_START_MS 30000

/*
 * Calls |cond|(|arg|) (at the pace above) until it returns true or
 * |timeout_ms| passed; returns its last answer. A test waits for a
 * condition, never for a guessed time.
 */
bool tu_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);
/*
 * The same as a loop header: runs the statement that follows (may be
 * empty: `;`) while |cond| is false and the deadline has not passed, then
 * after a pause evaluates |cond| again. Check |cond| after it.
 *
 *     TU_POLL_UNTIL(done == 3, 5000)
 *         event_base_loop(base, EVLOOP_NONBLOCK);
 *     assert_int_equal(done, 3);
 */
#define TU_POLL_UNTIL(cond, timeout_ms)                                        \
    for (long long tu_end_ = tu_mono_ms() + (timeout_ms), tu_ms_ = TU_POLL_MS; \
         !(cond) && tu_mono_ms() < tu_end_; tu_ms_ = tu_poll_pause(tu_ms_))
/* Sleeps |ms|; returns the next pause (TU_POLL_UNTIL's pace). */
long long tu_poll_pause(long long ms);

/* ---- a test program in parts ------------------------------------- */

/*
 * A long test program splits its tests into named parts, each a ctest
 * test of its own (pgw_add_test PARTS, tests/CMakeLists.txt) so that
 * ctest runs them side by side. A part is a cmocka group: its tests and
 * the group's setup and teardown (may be NULL).
 */
struct tu_part {
    const char *name;
    const struct CMUnitTest *tests;
    size_t count;
    CMFixtureFunction setup;
    CMFixtureFunction teardown;
};
#define TU_PART(name, tests, setup, teardown)                                  \
    {                                                                          \
        (name), (tests), sizeof(tests) / sizeof((tests)[0]), (setup),          \
            (teardown)                                                         \
    }
/*
 * The main() of a program in parts: runs the part named by argv[1], or
 * every part in order when there is no argument. Returns what cmocka
 * returns (the number of failed tests), or 2 for an unknown part.
 */
int tu_run_parts(int argc, char **argv, const struct tu_part *parts,
                 size_t count);

/* true when PUSHGW_RELIABILITY_LONG=1: the long forms, run by hand. */
bool tu_long(void);
/* The random seed (PUSHGW_RELIABILITY_SEED, else the time), printed. */
unsigned tu_seed(void);

#include "tu_http.h"
#include "tu_h2.h"
#include "tu_mock.h"
#include "tu_records.h"
#include "tu_svc.h"

#endif
