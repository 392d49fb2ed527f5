/*
 * Readiness and watchdog notifications to the service manager: systemd's
 * sd_notify(3) protocol, spoken without libsystemd. One datagram per
 * message on the unix socket named by $NOTIFY_SOCKET (a path, or an
 * abstract name written with a leading '@'); without the variable every
 * call does nothing, so `pushgw serve` run by hand or in a container is
 * unaffected. Does I/O; never logs (its caller does, once).
 */
#ifndef PUSHGW_SDNOTIFY_H
#define PUSHGW_SDNOTIFY_H

#include <stdint.h>

/* The longest message sent (newline-separated VAR=value lines). */
#define PGW_SDNOTIFY_MAX_BYTES 1024

/*
 * Sends |state| (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET.
 * Returns 1 when sent, 0 when there is no socket to send to, or
 * PGW_ERR_INVAL (a socket name too long, or |state| over
 * PGW_SDNOTIFY_MAX_BYTES), PGW_ERR_IO (the send failed; errno is set).
 */
int pgw_sdnotify_send(const char *state);

/*
 * The watchdog interval the service manager asks of this process
 * ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or names this process), in
 * microseconds; 0 when there is none. Send "WATCHDOG=1" at least twice
 * per interval.
 */
uint64_t pgw_sdnotify_watchdog_usec(void);

#endif
