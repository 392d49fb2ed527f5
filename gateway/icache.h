/*
 * The installation cache of the store: for an (app, recipient name), the
 * valid installations whose channels hold that name, as the last lookup
 * in Postgres found them (none is an answer too). Bounded in bytes, least
 * recently used entries go first; an entry older than the time to live is
 * not returned. Pure: no I/O, no logging, no clock (the caller passes the
 * time). The store keeps it right through the notifications of migration
 * 0007's trigger (docs/SERVICE.md, "Installation cache").
 */
#ifndef PUSHGW_ICACHE_H
#define PUSHGW_ICACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "installation.h"

struct pgw_icache;

struct pgw_icache_stats {
    uint64_t hits, misses; /* pgw_icache_get() answers */
    uint64_t evicted;      /* entries dropped to stay within the bound */
    size_t entries;
    size_t bytes; /* accounted: entries, their devices and strings */
};

/* A cache of at most |max_bytes| (> 0) whose entries live |ttl_ms| (> 0).
 * Returns NULL on bad arguments or no memory. */
struct pgw_icache *pgw_icache_new(size_t max_bytes, int64_t ttl_ms);
void pgw_icache_free(struct pgw_icache *self);

/*
 * The devices cached for |name| of |app| at |now_ms|: true, with them in
 * *|ret_dev| (in id order) and their number, possibly 0, in *|ret_n|;
 * false when not cached or expired (a miss, never an error: nothing is
 * written then). The devices stay valid until the next call that changes
 * the cache (put, evict, clear).
 */
bool pgw_icache_get(struct pgw_icache *self, const char *app, const char *name,
                    int64_t now_ms, const struct pgw_installation **ret_dev,
                    size_t *ret_n);

/*
 * Caches |devs| (|n| pointers, copied deeply; the badge is not kept) as
 * the devices of |name| of |app|, replacing what was there. Evicts least
 * recently used entries to stay within the bound; an entry larger than
 * the bound is not cached. Returns 0, PGW_ERR_INVAL, PGW_ERR_NOMEM (the
 * old entry is dropped then).
 */
int pgw_icache_put(struct pgw_icache *self, const char *app, const char *name,
                   const struct pgw_installation *const *devs, size_t n,
                   int64_t now_ms);

/* Drops |name| of |app|; NULL |name|: every name of |app|. */
void pgw_icache_evict(struct pgw_icache *self, const char *app,
                      const char *name);
void pgw_icache_clear(struct pgw_icache *self);

void pgw_icache_get_stats(const struct pgw_icache *self,
                          struct pgw_icache_stats *ret_stats);

/*
 * Deep copies of devices, into one allocation: pgw_icache_dev_size() is
 * what |d|'s channel pointers and strings take; pgw_icache_dev_copy()
 * copies |src| to |dst| with its channel pointers at *|chan| and its
 * strings at *|text| (both advanced past what it wrote; the pointers
 * first in the allocation, as they need its alignment). The badge is
 * not copied (0).
 */
size_t pgw_icache_dev_size(const struct pgw_installation *d);
void pgw_icache_dev_copy(struct pgw_installation *dst,
                         const struct pgw_installation *src, const char ***chan,
                         char **text);

#endif
