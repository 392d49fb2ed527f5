/*
 * The admission policy of requests pooled per host (curlmulti's
 * max_host_connections): at most |limit| requests of one host run at a
 * time (so at most that many connections are open to it), the others
 * wait in arrival order, up to |queue_max| of them; past that a request
 * is not admitted (the caller fails it at once). Pure: no I/O, no
 * logging, one thread.
 */
#ifndef PUSHGW_HOSTPOOL_H
#define PUSHGW_HOSTPOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "util/list.h"

struct pgw_hostpool;
struct pgw_hostpool_host;

/* Embedded in each pooled request; zero it before admit. */
struct pgw_hostpool_slot {
    struct pgw_hostpool_host *host; /* NULL: not admitted (or released) */
    struct pgw_list node;           /* on the host's queue while waiting */
    bool running;
};

enum pgw_hostpool_admit {
    PGW_HOSTPOOL_RUN = 0, /* counted as running: start it now */
    PGW_HOSTPOOL_WAIT,    /* queued: released slots hand it its turn */
    PGW_HOSTPOOL_FULL,    /* the host's queue is full: not admitted */
};

/* Returns 0 or PGW_ERR_NOMEM. */
int pgw_hostpool_new(struct pgw_hostpool **ret_pool);
/* Frees |self| and its hosts; slots still admitted are left dangling, so
 * release them first. NULL is a no-op. */
void pgw_hostpool_free(struct pgw_hostpool *self);

/*
 * Admits |slot| for host |key| (any string naming the host, e.g.
 * "http://h:80") with at most |limit| (>= 1) running and |queue_max|
 * waiting. The host's limits are the ones of its latest admit. Returns an
 * enum pgw_hostpool_admit, or PGW_ERR_NOMEM / PGW_ERR_INVAL.
 */
int pgw_hostpool_admit(struct pgw_hostpool *self,
                       struct pgw_hostpool_slot *slot, const char *key,
                       unsigned limit, size_t queue_max);

/*
 * |slot| (running or waiting) is done or abandoned. Returns the waiting
 * slot that now runs in its place (already counted as running), or NULL.
 * A slot that was never admitted is a no-op.
 */
struct pgw_hostpool_slot *pgw_hostpool_release(struct pgw_hostpool *self,
                                               struct pgw_hostpool_slot *slot);

/* Running and waiting slots of host |key| (0 when unknown). */
size_t pgw_hostpool_running(const struct pgw_hostpool *self, const char *key);
size_t pgw_hostpool_waiting(const struct pgw_hostpool *self, const char *key);

#endif
