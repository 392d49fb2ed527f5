/* PQping() until the database answers: see pgwait.h. */
#include "pgwait.h"

#include <libpq-fe.h>
#include <time.h>

#include "log.h"
#include "pushgw.h"
#include "util/clock.h"

#define LOG_EVERY_MS 30000

static const char *ping_name(PGPing p)
{
    switch (p) {
    case PQPING_OK:
        return "accepting connections";
    case PQPING_REJECT:
        return "not accepting connections yet";
    case PQPING_NO_RESPONSE:
        return "no response";
    case PQPING_NO_ATTEMPT:
        break;
    }
    return "invalid connection parameters";
}

int pgw_pgwait_reachable(const char *conninfo, unsigned timeout_s)
{
    long long start = pgw_clock_mono_ms(),
              deadline = start + timeout_s * 1000LL;
    long long logged = 0;
    unsigned pause_ms = PGW_PGWAIT_FIRST_PAUSE_MS;

    for (;;) {
        PGPing p = PQping(conninfo);
        long long now = pgw_clock_mono_ms();
        struct timespec ts;

        if (p == PQPING_OK)
            return 0;
        if (p == PQPING_NO_ATTEMPT) {
            pgw_log_error("cannot connect to the database: %s", ping_name(p));
            return PGW_ERR_CONFIG;
        }
        if (now >= deadline) {
            pgw_log_error("the database did not accept connections within "
                          "%u s (%s)",
                          timeout_s, ping_name(p));
            return PGW_ERR_TIMEOUT;
        }
        if (!logged || now - logged >= LOG_EVERY_MS) {
            pgw_log_warn("waiting for the database (%s): %lld s of %u s",
                         ping_name(p), (now - start) / 1000, timeout_s);
            logged = now;
        }
        if (now + pause_ms > deadline)
            pause_ms = (unsigned)(deadline - now);
        ts.tv_sec = pause_ms / 1000;
        ts.tv_nsec = (long)(pause_ms % 1000) * 1000000L;
        nanosleep(&ts, NULL);
        pause_ms = pause_ms * 2 > PGW_PGWAIT_MAX_PAUSE_MS
                       ? PGW_PGWAIT_MAX_PAUSE_MS
                       : pause_ms * 2;
    }
}
