/*
 * The store's side of the installation cache (icache.h holds the cache
 * itself, pure): the LISTEN connection that keeps it right (setup, up,
 * down, notifications), filling it from the rows of lookups that went to
 * Postgres, answering lookups from it (their iOS increments still go to
 * Postgres, as OP_BATCH_INC), and parking a lookup while another one is
 * about to cache its names.
 */
#include "store_int.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "icache.h"
#include "log.h"
#include "util/clock.h"

/* |op| is a lookup whose rows will fill the cache. */
void store_cache_filling_add(struct pgw_store *self, struct op *op)
{
    op->filling = self;
    op->fill_prev = NULL;
    op->fill_next = self->filling;
    if (self->filling)
        self->filling->fill_prev = op;
    self->filling = op;
}

/* |op| ended (its rows cached or not): the lookups parked for it look at
 * the cache again. */
void store_cache_filling_remove(struct op *op)
{
    struct pgw_store *self = op->filling;

    if (op->fill_prev)
        op->fill_prev->fill_next = op->fill_next;
    else
        self->filling = op->fill_next;
    if (op->fill_next)
        op->fill_next->fill_prev = op->fill_prev;
    op->filling = NULL;
    if (self->parked.head) {
        self->recheck_parked = true;
        store_schedule_kick(self);
    }
}

/* The cache's connection is down: notifications may be missed from now
 * on, so the cache is emptied and left unused until it is back. */
static void cache_off(struct pgw_store *self, const char *what, const char *msg)
{
    char line[200];

    self->cache_live = false;
    self->cache_gen++;
    pgw_icache_clear(self->cache);
    if (self->parked.head) {
        self->recheck_parked = true;
        store_schedule_kick(self);
    }
    if (!self->cache_warned && !self->closing) {
        self->cache_warned = true;
        pgw_log_warn("installation cache off until its connection is back: "
                     "%s%s",
                     what, pgw_pgconn_one_line(line, sizeof(line), msg));
    }
}

/* The cache's connection: LISTEN, and a check of the triggers. */
static const char *listen_setup(void *arg, PGconn *pg)
{
    (void)arg;
    /* Listening is not enough: the triggers must be there (and on) to
     * announce anything, else the cache would never be told of a
     * change. Division by zero when they are not. */
    if (!PQsendQueryParams(pg, "LISTEN pushgw_installations", 0, NULL, NULL,
                           NULL, NULL, 0) ||
        !PQsendQueryParams(
            pg,
            "SELECT 1 / (count(*) = 3)::int FROM pg_trigger WHERE "
            "tgrelid = 'installations'::regclass AND tgenabled <> 'D' "
            "AND tgname IN ('installations_changed_update', "
            "'installations_changed_insert_delete', "
            "'installations_changed_truncate')",
            0, NULL, NULL, NULL, NULL, 0)) {
        return "could not listen: ";
    }
    return NULL;
}

/* Changes made while nobody listened were not heard of: what was cached
 * before is forgotten, lookups in flight do not fill. */
static void listen_up(void *arg, struct pgw_pgconn *c)
{
    struct pgw_store *self = arg;

    (void)c;
    pgw_icache_clear(self->cache);
    self->cache_gen++;
    self->cache_live = true;
    if (self->cache_warned) {
        self->cache_warned = false;
        pgw_log_info("installation cache on again");
    }
}

static void listen_down(void *arg, struct pgw_pgconn *c, bool was_up,
                        const char *what, const char *msg)
{
    (void)c;
    (void)was_up;
    cache_off(arg, what, msg);
}

/*
 * One notification of migration 0007's trigger: {"app": A, "channels":
 * [...]} evicts those names of A, {"app": A} every name of A, anything
 * else (TRUNCATE's {}) everything. Lookups in flight do not fill the
 * cache with what they read (|cache_gen|): they may have read before the
 * change.
 */
static void forget(struct pgw_store *self, const char *payload)
{
    cJSON *j = cJSON_Parse(payload);
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(j, "app");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "channels");
    const cJSON *name;

    self->cache_gen++;
    if (!cJSON_IsString(app)) {
        pgw_icache_clear(self->cache);
    } else if (!cJSON_IsArray(ch)) {
        pgw_icache_evict(self->cache, app->valuestring, NULL);
    } else {
        cJSON_ArrayForEach(name, ch)
        {
            if (cJSON_IsString(name))
                pgw_icache_evict(self->cache, app->valuestring,
                                 name->valuestring);
        }
    }
    cJSON_Delete(j);
}

static void on_notify(struct pgw_store *self, const char *payload)
{
    self->notifications++;
    forget(self, payload);
}

void pgw_store_forget_installations(struct pgw_store *self, const char *payload)
{
    if (self && self->cache && payload)
        forget(self, payload);
}

static void listen_notify(void *arg, const char *payload)
{
    on_notify(arg, payload);
}

static const struct pgw_pgconn_callbacks listen_callbacks = {
    .setup = listen_setup,
    .up = listen_up,
    .down = listen_down,
    /* never sent units: no result, done or fail */
    .notify = listen_notify,
};

struct chan_ref {
    const char *name;
    size_t row;
};

static int cmp_chan_ref(const void *a, const void *b)
{
    const struct chan_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c)
        return c;
    return x->row < y->row ? -1 : x->row > y->row;
}

/*
 * Caches the rows of lookup |m| (|inst|, |n|, in id order: every valid
 * installation of its app whose channels hold one of its names) as one
 * entry per name: the rows whose channels hold that name. Runs only when
 * no notification came since the lookup was queued; one that comes later
 * evicts what this wrote, if the change was one it missed. Out of memory:
 * nothing more is cached.
 */
void store_cache_fill(struct pgw_store *self, const struct op *m,
                      const struct pgw_installation *inst, size_t n)
{
    const char *app = m->data + m->names_off, *name;
    struct chan_ref *refs = NULL;
    const struct pgw_installation **devs = NULL;
    size_t n_refs = 0;
    int64_t now = pgw_clock_mono_ms();

    for (size_t i = 0; i < n; i++)
        n_refs += inst[i].n_channels;
    refs = malloc((n_refs ? n_refs : 1) * sizeof(*refs));
    devs = malloc((n ? n : 1) * sizeof(*devs));
    if (!refs || !devs)
        goto out;
    n_refs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < inst[i].n_channels; k++)
            refs[n_refs++] = (struct chan_ref){inst[i].channels[k], i};
    qsort(refs, n_refs, sizeof(*refs), cmp_chan_ref);
    name = app + strlen(app) + 1;
    for (size_t j = 0; j < m->n_names; j++, name += strlen(name) + 1) {
        size_t lo = 0, hi = n_refs, k = 0;

        while (lo < hi) { /* the first reference >= name */
            size_t mid = lo + (hi - lo) / 2;

            if (strcmp(refs[mid].name, name) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n_refs && strcmp(refs[lo].name, name) == 0; lo++)
            if (k == 0 || devs[k - 1] != &inst[refs[lo].row])
                devs[k++] = &inst[refs[lo].row];
        if (pgw_icache_put(self->cache, app, name, devs, k, now) < 0)
            break;
    }
out:
    free(refs);
    free(devs);
}

struct inc_res {
    int64_t id;
    int badge;
};

static int cmp_inc_res(const void *a, const void *b)
{
    const struct inc_res *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * The increments of cached lookups: rows (id, new badge). The callers of
 * one id (|op->ents|, in caller order) get the new badge minus its number
 * of increments, plus the rank of theirs (1, 2, ...; callers of one event
 * share one); a row not returned (not a valid iOS installation any more)
 * is left out of every caller's rows.
 */
void store_cache_complete_incs(struct op *op)
{
    const PGresult *r = op->n_results ? op->res[op->n_results - 1] : NULL;
    size_t nr = r ? (size_t)PQntuples(r) : 0, row = 0, j;
    struct inc_res *res = malloc((nr ? nr : 1) * sizeof(*res));
    struct op **mem = calloc(op->n_members ? op->n_members : 1, sizeof(*mem));
    struct op *m;
    size_t k = 0;
    bool sorted = true;

    if (!res || !mem) {
        free(res);
        free(mem);
        while ((m = op->members)) {
            op->members = m->next;
            store_op_fail(m, PGW_ERR_NOMEM);
        }
        return;
    }
    for (m = op->members; m && k < op->n_members; m = m->next)
        mem[k++] = m;
    for (size_t i = 0; i < nr; i++) {
        res[i].id = store_get_i64(r, (int)i, 0);
        res[i].badge = (int)store_get_i64(r, (int)i, 1);
        if (i > 0 && res[i].id < res[i - 1].id)
            sorted = false;
    }
    if (!sorted)
        qsort(res, nr, sizeof(*res), cmp_inc_res);
    for (size_t i = 0; i < op->n_ents; i = j) {
        const struct inc_ent *e = &op->ents[i];

        for (j = i + 1; j < op->n_ents && op->ents[j].id == e->id; j++)
            ;
        while (row < nr && res[row].id < e->id)
            row++;
        for (size_t x = i; x < j; x++) {
            const struct inc_ent *ex = &op->ents[x];
            struct pgw_installation *d = &mem[ex->k]->inst[ex->i];

            if (row < nr && res[row].id == e->id)
                d->badge = res[row].badge - (int)ex->n + (int)ex->r + 1;
            else
                d->id = 0; /* left out below */
        }
    }
    while ((m = op->members)) {
        size_t kept = 0;

        op->members = m->next;
        for (size_t i = 0; i < m->n_inst; i++)
            if (m->inst[i].id != 0)
                m->inst[kept++] = m->inst[i];
        m->cb.inst(m->arg, 0, m->inst, kept);
        store_op_free(m);
    }
    free(res);
    free(mem);
}

void pgw_store_get_cache_stats(const struct pgw_store *self,
                               struct pgw_store_cache_stats *ret_stats)
{
    struct pgw_icache_stats st;

    *ret_stats = (struct pgw_store_cache_stats){0};
    if (!self || !self->cache)
        return;
    pgw_icache_get_stats(self->cache, &st);
    ret_stats->live = self->cache_live;
    ret_stats->hits = self->cache_hits;
    ret_stats->misses = self->cache_misses;
    ret_stats->notifications = self->notifications;
    ret_stats->entries = st.entries;
    ret_stats->bytes = st.bytes;
}

static int cmp_dev_ptr(const void *a, const void *b)
{
    const struct pgw_installation *x =
        *(const struct pgw_installation *const *)a;
    const struct pgw_installation *y =
        *(const struct pgw_installation *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * A lookup from the cache: STORE_NOT_CACHED when a name is not cached
 * (Postgres it is); else 0, queued as an OP_CACHED operation holding a
 * copy of its rows, on |incs| when iOS rows need their increments, else
 * on |ready|; or PGW_ERR_NOMEM.
 */
int store_cache_find(struct pgw_store *self, const char *app_id,
                     const char *const *recipients, size_t n, int64_t event_id,
                     unsigned flags, pgw_store_installations_cb cb, void *arg)
{
    const struct pgw_installation **all = NULL, *dev;
    size_t n_all = 0, cap = 0, n_u = 0, size, n_ios = 0, n_dev;
    int64_t now = pgw_clock_mono_ms();
    struct op *op;
    const char **chan;
    char *cur;

    for (size_t i = 0; i < n; i++) {
        if (!pgw_icache_get(self->cache, app_id, recipients[i], now, &dev,
                            &n_dev)) {
            free(all);
            return STORE_NOT_CACHED;
        }
        if (n_all + n_dev > cap) {
            size_t nc = cap ? cap * 2 : 64;
            const struct pgw_installation **na;

            while (nc < n_all + n_dev)
                nc *= 2;
            na = realloc(all, nc * sizeof(*all));
            if (!na) {
                free(all);
                return PGW_ERR_NOMEM;
            }
            all = na;
            cap = nc;
        }
        for (size_t k = 0; k < n_dev; k++)
            all[n_all++] = &dev[k];
    }
    /* one row per installation, in id order, as from Postgres;
     * qsort(NULL, 0, …) is undefined behaviour */
    if (n_all > 1)
        qsort(all, n_all, sizeof(*all), cmp_dev_ptr);
    size = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (n_u && all[n_u - 1]->id == all[i]->id)
            continue;
        all[n_u++] = all[i];
        size += sizeof(struct pgw_installation) + pgw_icache_dev_size(all[i]);
        n_ios += all[i]->platform == PGW_PLATFORM_IOS;
    }
    op = calloc(1, sizeof(*op) + size);
    if (!op) {
        free(all);
        return PGW_ERR_NOMEM;
    }
    op->kind = OP_CACHED;
    op->inst = (struct pgw_installation *)(void *)op->data;
    op->n_inst = n_u;
    chan = (const char **)(void *)(op->inst + n_u);
    for (size_t i = 0; i < n_u; i++)
        chan += all[i]->n_channels;
    cur = (char *)chan;
    chan = (const char **)(void *)(op->inst + n_u);
    for (size_t i = 0; i < n_u; i++)
        pgw_icache_dev_copy(&op->inst[i], all[i], &chan, &cur);
    free(all);
    op->flag = (flags & PGW_STORE_FIND_INCREMENT) && n_ios > 0;
    op->solo = (flags & PGW_STORE_FIND_ALONE) != 0;
    op->event_id = event_id;
    op->n_names = op->flag ? n_ios : 0;
    op->cb.inst = cb;
    op->arg = arg;
    store_enqueue(self, op->flag ? &self->incs : &self->ready, op);
    self->cache_hits += n;
    return 0;
}

/*
 * True when a lookup queued or in flight will cache the names of |op|
 * (same app, same number of names, same first name: the parts of a group's
 * events, the events of one chat peer): without waiting for it, a fresh
 * process sends the lookups of a group's first events to Postgres until
 * the first of them comes back.
 */
bool store_cache_fill_pending(const struct pgw_store *self, const struct op *op)
{
    const char *app = op->data + op->names_off;
    const char *first = app + strlen(app) + 1;

    for (const struct op *f = self->filling; f; f = f->fill_next) {
        const char *fa = f->data + f->names_off;

        if (f->n_names == op->n_names && strcmp(fa, app) == 0 &&
            strcmp(fa + strlen(fa) + 1, first) == 0)
            return true;
    }
    return false;
}

/* store_cache_find() for a parked lookup, with its app and names. */
static int find_cached_op(struct pgw_store *self, const struct op *op)
{
    const char *app = op->data + op->names_off, *cur;
    const char **names =
        malloc((op->n_names ? op->n_names : 1) * sizeof(*names));
    unsigned flags = (op->flag ? PGW_STORE_FIND_INCREMENT : 0) |
                     (op->solo ? PGW_STORE_FIND_ALONE : 0);
    int rc;

    if (!names)
        return PGW_ERR_NOMEM;
    cur = app + strlen(app) + 1;
    for (size_t i = 0; i < op->n_names; i++, cur += strlen(cur) + 1)
        names[i] = cur;
    rc = store_cache_find(self, app, names, op->n_names, op->event_id, flags,
                          op->cb.inst, op->arg);
    free(names);
    return rc;
}

/*
 * The parked lookups after a fill ended (or the cache went off): answered
 * from the cache now, parked again while another fill of their names is
 * on its way, else sent to Postgres (filling the cache themselves).
 */
void store_cache_recheck_parked(struct pgw_store *self)
{
    struct op_list l = self->parked;
    struct op *op;

    self->parked = (struct op_list){0};
    self->recheck_parked = false;
    while ((op = store_list_pop(&l))) {
        int rc = self->cache_live ? find_cached_op(self, op) : STORE_NOT_CACHED;

        if (rc != STORE_NOT_CACHED) {
            /* answered (a new operation is queued) or failed */
            self->n_queued--;
            if (rc < 0)
                store_op_fail(op, rc);
            else
                store_op_free(op);
            continue;
        }
        if (self->cache_live && store_cache_fill_pending(self, op)) {
            store_list_push(&self->parked, op);
            continue;
        }
        op->fill = self->cache_live;
        op->fill_gen = self->cache_gen;
        if (op->fill) {
            store_cache_filling_add(self, op);
            self->cache_misses += op->n_names;
        }
        store_list_push(&self->finds, op);
    }
}

int store_cache_new(struct pgw_store *self,
                    const struct pgw_store_options *opts)
{
    /* It only ever reads: keepalives tell it the server went away
     * without a word (a failover, a cut network) after about a minute
     * instead of two hours. */
    const struct pgw_pgconn_options listen_opts = {
        .conninfo = opts->conninfo,
        .keepalives = true,
        .setup_what = "could not listen for installation changes: ",
        .setup_why = "migration 0007's triggers missing or disabled (run "
                     "'pushgw migrate')",
    };

    self->cache = pgw_icache_new(
        opts->cache_bytes, opts->cache_ttl_ms ? opts->cache_ttl_ms : 60000);
    if (!self->cache)
        return PGW_ERR_NOMEM;
    return pgw_pgconn_new(self->base, &listen_opts, &listen_callbacks, self,
                          &self->listen);
}

void store_cache_free(struct pgw_store *self)
{
    pgw_pgconn_free(self->listen);
    pgw_icache_free(self->cache);
}

void store_cache_pool_lost(struct pgw_store *self)
{
    if (self->listen && !pgw_pgconn_is_down(self->listen))
        pgw_pgconn_fail(self->listen, "", "the database connections are down");
}
