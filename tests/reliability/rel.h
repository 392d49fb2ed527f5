/*
 * Helpers of the reliability tests (tests/reliability/, docs/RELIABILITY.md)
 * on top of the end-to-end harness of tests/service/svc.h: a reusable HTTP
 * client, the mocks' record files tallied per (event, device), restarts of
 * a mock on a fixed port, the gateway's memory from /proc.
 */
#ifndef PUSHGW_REL_H
#define PUSHGW_REL_H

#include <stddef.h>

#include "svc.h"

/* true when PUSHGW_RELIABILITY_LONG=1: the long forms, run by hand. */
int rel_long(void);
/* The random seed (PUSHGW_RELIABILITY_SEED, else the time), printed. */
unsigned rel_seed(void);
/* CLOCK_MONOTONIC / CLOCK_REALTIME in ms. */
long long rel_mono_ms(void);
long long rel_wall_ms(void);
/* A keep-alive HTTP client (one per thread). */
struct rel_http;
struct rel_http *rel_http_new(void);
void rel_http_free(struct rel_http *h);
/*
 * POSTs |body| (|len| bytes) to http://127.0.0.1:|port||path| with the
 * hook key |key| (NULL: none) and |ctype| (NULL: application/json).
 * Returns the status (0: no answer within |timeout_ms|); the answer body
 * in |*ret_body| (free(), may be NULL) and the Retry-After header value
 * in |*ret_retry_after| (-1 when absent; may be NULL).
 */
int rel_http_post(struct rel_http *h, int port, const char *path,
                  const char *key, const char *ctype, const char *body,
                  size_t len, int timeout_ms, char **ret_body,
                  int *ret_retry_after);
/* The time of the last transfer in microseconds (curl's total time). */
double rel_http_last_us(const struct rel_http *h);

/*
 * The pushes of events "message <i>" (i < n_events) to |n_tokens| device
 * tokens, tallied from the APNs and FCM record files: counts[i * n_tokens
 * + d] = number of status-200 records; first_ms likewise, the ts_ms of the
 * first such record (0 when none). Records of other tokens or texts are
 * ignored. Fails the test when a file cannot be read.
 */
struct rel_tally {
    size_t n_events;
    size_t n_tokens;
    int *counts;
    long long *first_ms;
    size_t records; /* lines read */
    size_t non_200; /* records with another status */
};
void rel_tally(struct rel_tally *t, const char *const *records, size_t n_events,
               const char *const *tokens, size_t n_tokens);
void rel_tally_free(struct rel_tally *t);

/*
 * Restarts the mock |p| of |s| (kills it with SIGKILL if running, then
 * starts the same program again on port |port| with the same record file
 * and |extra| arguments). |fcm| selects mock_fcm, else mock_apns.
 */
void rel_mock_start(struct svc *s, struct svc_proc *p, int fcm, int port,
                    const char *const *extra);
void rel_mock_stop(struct svc_proc *p);

/*
 * Checks that the gateway's memory grew by less than |max_kib| over
 * |base_kib| (VmHWM of |pid|); prints and returns the growth. Under
 * AddressSanitizer (quarantine, shadow memory) RSS says nothing about the
 * gateway, so the check is skipped there (reported only).
 */
long rel_check_memory(int pid, long base_kib, long max_kib, const char *what);

/* VmRSS and VmHWM of |pid| in KiB (-1 when unreadable). */
long rel_rss_kib(int pid);
long rel_hwm_kib(int pid);

/* The installation id of a new device, with |channel| quoted for SQL. */
long long rel_add_device(struct svc *s, const char *app, const char *type,
                         const char *token, const char *channel);

#endif
