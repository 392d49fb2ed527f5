/* The two clocks (see clock.h). */
#include "util/clock.h"

#include <time.h>

static int64_t read_ms(clockid_t id)
{
    struct timespec ts;

    /* cannot fail for these clocks on Linux; leaves zeros if it did */
    ts.tv_sec = 0;
    ts.tv_nsec = 0;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pgw_clock_mono_ms(void)
{
    return read_ms(CLOCK_MONOTONIC);
}

int64_t pgw_clock_wall_ms(void)
{
    return read_ms(CLOCK_REALTIME);
}

int64_t pgw_clock_mono_us(void)
{
    struct timespec ts;

    ts.tv_sec = 0;
    ts.tv_nsec = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
