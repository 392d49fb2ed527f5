/* Clocks, waiting for a condition, the reliability knobs (see
 * testutil.h). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long long tu_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long tu_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

long long tu_poll_pause(long long ms)
{
    tu_sleep_ms((int)ms);
    return ms * 2 < TU_POLL_MAX_MS ? ms * 2 : TU_POLL_MAX_MS;
}

bool tu_wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    bool ok = false;

    TU_POLL_UNTIL((ok = cond(arg)), timeout_ms);
    return ok;
}

bool tu_long(void)
{
    const char *v = getenv("PUSHGW_RELIABILITY_LONG");

    return v && strcmp(v, "1") == 0;
}

unsigned tu_seed(void)
{
    static unsigned seed;
    const char *v = getenv("PUSHGW_RELIABILITY_SEED");

    if (seed == 0) {
        seed = v && *v ? (unsigned)strtoul(v, NULL, 10)
                       : (unsigned)time(NULL) ^ (unsigned)getpid();
        if (seed == 0)
            seed = 1;
        printf("# PUSHGW_RELIABILITY_SEED=%u\n", seed);
    }
    return seed;
}
