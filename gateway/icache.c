/*
 * The installation cache: a chained hash table of (app, name) entries, each
 * one allocation holding its devices and their strings, on a doubly linked
 * least-recently-used list. The hash is seeded per process: the names are
 * the broker's client ids, which a client could choose to collide.
 */
#include "icache.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pushgw.h"
#include "util/list.h"

#define ICACHE_MIN_BUCKETS 1024

struct entry {
    struct entry *hnext; /* bucket chain */
    struct pgw_list lru; /* on pgw_icache.lru */
    uint64_t hash;
    int64_t born_ms;
    size_t bytes;
    size_t n;
    struct pgw_installation *dev;
    const char *app, *name;
    alignas(max_align_t) char mem[];
};

struct pgw_icache {
    struct entry **buckets;
    size_t n_buckets;    /* a power of two */
    struct pgw_list lru; /* struct entry, the most recent first */
    size_t max_bytes;
    int64_t ttl_ms;
    uint64_t seed;
    struct pgw_icache_stats st;
};

static uint64_t hash_key(uint64_t seed, const char *app, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (const unsigned char *p = (const unsigned char *)app; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h = (h ^ 0xff) * 0x100000001b3ULL; /* no byte of UTF-8 text */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    /* murmur3's finaliser: every input bit reaches the bucket bits */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

struct pgw_icache *pgw_icache_new(size_t max_bytes, int64_t ttl_ms)
{
    struct pgw_icache *self;

    if (max_bytes == 0 || ttl_ms <= 0)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    pgw_list_init(&self->lru);
    self->buckets = calloc(ICACHE_MIN_BUCKETS, sizeof(*self->buckets));
    if (!self->buckets) {
        free(self);
        return NULL;
    }
    self->n_buckets = ICACHE_MIN_BUCKETS;
    self->max_bytes = max_bytes;
    self->ttl_ms = ttl_ms;
    self->seed = ((uint64_t)arc4random() << 32) | arc4random();
    return self;
}

static struct entry *entry_of(struct pgw_list *node)
{
    return pgw_list_entry(node, struct entry, lru);
}

static struct entry **find_slot(struct pgw_icache *self, uint64_t hash,
                                const char *app, const char *name)
{
    struct entry **slot = &self->buckets[hash & (self->n_buckets - 1)];

    for (; *slot; slot = &(*slot)->hnext) {
        const struct entry *e = *slot;

        if (e->hash == hash && strcmp(e->app, app) == 0 &&
            strcmp(e->name, name) == 0)
            break;
    }
    return slot;
}

/* Unlinks |e| (found at |*slot|) and frees it. */
static void drop(struct pgw_icache *self, struct entry **slot)
{
    struct entry *e = *slot;

    *slot = e->hnext;
    pgw_list_remove(&e->lru);
    self->st.entries--;
    self->st.bytes -= e->bytes;
    free(e);
}

static void drop_entry(struct pgw_icache *self, struct entry *e)
{
    drop(self, find_slot(self, e->hash, e->app, e->name));
}

void pgw_icache_clear(struct pgw_icache *self)
{
    if (!self)
        return;
    while (!pgw_list_empty(&self->lru))
        drop_entry(self, entry_of(self->lru.next));
}

void pgw_icache_free(struct pgw_icache *self)
{
    if (!self)
        return;
    pgw_icache_clear(self);
    free(self->buckets);
    free(self);
}

bool pgw_icache_get(struct pgw_icache *self, const char *app, const char *name,
                    int64_t now_ms, const struct pgw_installation **ret_dev,
                    size_t *ret_n)
{
    struct entry **slot =
        find_slot(self, hash_key(self->seed, app, name), app, name);
    struct entry *e = *slot;

    if (e && now_ms - e->born_ms >= self->ttl_ms) {
        drop(self, slot);
        e = NULL;
    }
    if (!e) {
        self->st.misses++;
        return false;
    }
    self->st.hits++;
    if (self->lru.next != &e->lru) {
        pgw_list_remove(&e->lru);
        pgw_list_push_front(&self->lru, &e->lru);
    }
    *ret_dev = e->dev;
    *ret_n = e->n;
    return true;
}

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies |s| (NULL stays NULL) to |*cur|, advancing it. */
static const char *put_str(char **cur, const char *s)
{
    size_t len;
    char *d = *cur;

    if (!s)
        return NULL;
    len = strlen(s) + 1;
    memcpy(d, s, len);
    *cur += len;
    return d;
}

size_t pgw_icache_dev_size(const struct pgw_installation *d)
{
    size_t size = d->n_channels * sizeof(char *);

    size += str_size(d->installation_id) + str_size(d->device_token) +
            +str_size(d->apns_topic) + str_size(d->apns_team_id);
    for (size_t k = 0; k < d->n_channels; k++)
        size += str_size(d->channels[k]);
    return size;
}

void pgw_icache_dev_copy(struct pgw_installation *dst,
                         const struct pgw_installation *src, const char ***chan,
                         char **text)
{
    dst->id = src->id;
    dst->badge = 0;
    dst->installation_id = put_str(text, src->installation_id);
    dst->platform = src->platform;
    dst->device_token = put_str(text, src->device_token);
    dst->apns_topic = put_str(text, src->apns_topic);
    dst->apns_team_id = put_str(text, src->apns_team_id);
    dst->channels = *chan;
    dst->n_channels = src->n_channels;
    for (size_t k = 0; k < src->n_channels; k++)
        *(*chan)++ = put_str(text, src->channels[k]);
}

/* Doubles the table when it holds more entries than buckets; a failed
 * allocation only leaves the chains longer. */
static void maybe_grow(struct pgw_icache *self)
{
    size_t nb = self->n_buckets * 2;
    struct entry **b;

    if (self->st.entries <= self->n_buckets || nb > SIZE_MAX / sizeof(*b))
        return;
    b = calloc(nb, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < self->n_buckets; i++) {
        struct entry *e = self->buckets[i], *next;

        for (; e; e = next) {
            next = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(self->buckets);
    self->buckets = b;
    self->n_buckets = nb;
}

int pgw_icache_put(struct pgw_icache *self, const char *app, const char *name,
                   const struct pgw_installation *const *devs, size_t n,
                   int64_t now_ms)
{
    uint64_t hash;
    struct entry **slot, *e;
    size_t size, n_chan = 0, text;
    char *cur;
    const char **chan;

    if (!self || !app || !name || (n && !devs))
        return PGW_ERR_INVAL;
    hash = hash_key(self->seed, app, name);
    slot = find_slot(self, hash, app, name);
    if (*slot)
        drop(self, slot);

    text = str_size(app) + str_size(name);
    for (size_t i = 0; i < n; i++) {
        n_chan += devs[i]->n_channels;
        text += pgw_icache_dev_size(devs[i]);
    }
    size = sizeof(*e) + n * sizeof(*e->dev) + text;
    if (size > self->max_bytes)
        return 0;
    while (!pgw_list_empty(&self->lru) &&
           self->st.bytes + size > self->max_bytes) {
        drop_entry(self, entry_of(self->lru.prev));
        self->st.evicted++;
    }
    e = calloc(1, size);
    if (!e)
        return PGW_ERR_NOMEM;
    e->hash = hash;
    e->born_ms = now_ms;
    e->bytes = size;
    e->n = n;
    e->dev = (struct pgw_installation *)(void *)e->mem;
    chan = (const char **)(void *)(e->dev + n);
    cur = (char *)(chan + n_chan);
    e->app = put_str(&cur, app);
    e->name = put_str(&cur, name);
    for (size_t i = 0; i < n; i++)
        pgw_icache_dev_copy(&e->dev[i], devs[i], &chan, &cur);
    e->hnext = self->buckets[hash & (self->n_buckets - 1)];
    self->buckets[hash & (self->n_buckets - 1)] = e;
    pgw_list_push_front(&self->lru, &e->lru);
    self->st.entries++;
    self->st.bytes += size;
    maybe_grow(self);
    return 0;
}

void pgw_icache_evict(struct pgw_icache *self, const char *app,
                      const char *name)
{
    struct pgw_list *pos, *next;

    if (!self || !app)
        return;
    if (name) {
        struct entry **slot =
            find_slot(self, hash_key(self->seed, app, name), app, name);

        if (*slot)
            drop(self, slot);
        return;
    }
    pgw_list_for_each_safe(pos, next, &self->lru)
    {
        struct entry *e = entry_of(pos);

        if (strcmp(e->app, app) == 0)
            drop_entry(self, e);
    }
}

void pgw_icache_get_stats(const struct pgw_icache *self,
                          struct pgw_icache_stats *ret_stats)
{
    if (self)
        *ret_stats = self->st;
    else
        *ret_stats = (struct pgw_icache_stats){0};
}
