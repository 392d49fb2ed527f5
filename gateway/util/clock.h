/*
 * The gateway's two clocks, in milliseconds (the monotonic one in
 * microseconds too). Pure modules never read a
 * clock: their callers pass the time in, so their policies are testable.
 */
#ifndef PUSHGW_UTIL_CLOCK_H
#define PUSHGW_UTIL_CLOCK_H

#include <stdint.h>

/*
 * Milliseconds since an arbitrary point (boot); never goes back and does
 * not follow changes of the system time. For timeouts, deadlines,
 * durations and ages.
 */
int64_t pgw_clock_mono_ms(void);

/* The same clock in microseconds: for durations shorter than a few ms. */
int64_t pgw_clock_mono_us(void);

/*
 * Milliseconds since the Unix epoch, as the system time says; may jump.
 * For times shared with peers and stored: expiries, Retry-After dates,
 * token lifetimes, log and database timestamps.
 */
int64_t pgw_clock_wall_ms(void);

#endif
