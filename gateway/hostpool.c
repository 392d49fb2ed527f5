/* Per-host admission: a running count and a FIFO per host key. */
#include "hostpool.h"

#include <stdlib.h>
#include <string.h>

#include "pushgw.h"

struct pgw_hostpool_host {
    struct pgw_list node; /* on pgw_hostpool.hosts */
    char *key;
    unsigned limit;
    size_t running;
    size_t n_waiting;
    struct pgw_list waiting;
};

struct pgw_hostpool {
    /* Few hosts (one per hook URL host), so a list is enough. */
    struct pgw_list hosts;
};

int pgw_hostpool_new(struct pgw_hostpool **ret_pool)
{
    struct pgw_hostpool *p = calloc(1, sizeof(*p));

    if (!p)
        return PGW_ERR_NOMEM;
    pgw_list_init(&p->hosts);
    *ret_pool = p;
    return 0;
}

static void host_free(struct pgw_hostpool_host *h)
{
    pgw_list_remove(&h->node);
    free(h->key);
    free(h);
}

void pgw_hostpool_free(struct pgw_hostpool *self)
{
    struct pgw_list *n;

    if (!self)
        return;
    while ((n = pgw_list_first(&self->hosts)))
        host_free(pgw_list_entry(n, struct pgw_hostpool_host, node));
    free(self);
}

static struct pgw_hostpool_host *find(const struct pgw_hostpool *self,
                                      const char *key)
{
    struct pgw_list *n;

    pgw_list_for_each(n, &self->hosts)
    {
        struct pgw_hostpool_host *h =
            pgw_list_entry(n, struct pgw_hostpool_host, node);
        if (strcmp(h->key, key) == 0)
            return h;
    }
    return NULL;
}

int pgw_hostpool_admit(struct pgw_hostpool *self,
                       struct pgw_hostpool_slot *slot, const char *key,
                       unsigned limit, size_t queue_max)
{
    struct pgw_hostpool_host *h;

    if (!self || !slot || !key || limit == 0)
        return PGW_ERR_INVAL;
    h = find(self, key);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h || !(h->key = strdup(key))) {
            free(h);
            return PGW_ERR_NOMEM;
        }
        pgw_list_init(&h->waiting);
        pgw_list_push_back(&self->hosts, &h->node);
    }
    h->limit = limit;
    pgw_list_init(&slot->node);
    /* Nobody overtakes a waiting request, even when a slot is free. */
    if (h->running < h->limit && h->n_waiting == 0) {
        h->running++;
        slot->host = h;
        slot->running = true;
        return PGW_HOSTPOOL_RUN;
    }
    if (h->n_waiting < queue_max) {
        pgw_list_push_back(&h->waiting, &slot->node);
        h->n_waiting++;
        slot->host = h;
        slot->running = false;
        return PGW_HOSTPOOL_WAIT;
    }
    if (h->running == 0 && h->n_waiting == 0)
        host_free(h);
    slot->host = NULL;
    return PGW_HOSTPOOL_FULL;
}

struct pgw_hostpool_slot *pgw_hostpool_release(struct pgw_hostpool *self,
                                               struct pgw_hostpool_slot *slot)
{
    struct pgw_hostpool_host *h;
    struct pgw_hostpool_slot *next = NULL;
    struct pgw_list *n;

    if (!self || !slot || !slot->host)
        return NULL;
    h = slot->host;
    slot->host = NULL;
    if (!slot->running) {
        pgw_list_remove(&slot->node);
        h->n_waiting--;
    } else {
        slot->running = false;
        h->running--;
    }
    /* A lowered limit takes effect as running requests end. */
    if (h->running < h->limit && (n = pgw_list_pop_front(&h->waiting))) {
        next = pgw_list_entry(n, struct pgw_hostpool_slot, node);
        h->n_waiting--;
        h->running++;
        next->running = true;
    }
    if (h->running == 0 && h->n_waiting == 0)
        host_free(h);
    return next;
}

size_t pgw_hostpool_running(const struct pgw_hostpool *self, const char *key)
{
    const struct pgw_hostpool_host *h = self ? find(self, key) : NULL;

    return h ? h->running : 0;
}

size_t pgw_hostpool_waiting(const struct pgw_hostpool *self, const char *key)
{
    const struct pgw_hostpool_host *h = self ? find(self, key) : NULL;

    return h ? h->n_waiting : 0;
}
