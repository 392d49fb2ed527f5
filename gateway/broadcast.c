/*
 * The sender of API pushes (see broadcast.h), a second kind of work of
 * the dispatcher beside events, as claimed retries are (retry.c).
 *
 * A claimed request is a `struct bcast`: its content resolved once
 * (resolve.c, as an event's), its audience compiled once (lc_where.c)
 * into the statement of its pages (store_broadcast.c), and a few small
 * pages in memory: a window of pages being sent and answered, and pages
 * read ahead of it (with their badge increments). Pages are committed in
 * order, a few together once every push of them has an outcome, and the
 * window holds at most BC_WINDOW pages not committed, so a crash sends at
 * most that many pages' devices twice; their badges are not incremented
 * twice (migration 0010). A page goes
 *   fetch → build (push.c) → send, paced → answers (outcome.c) → commit
 * and the last one commits the request's end. Requests are claimed by the
 * dispatcher's claim timer, by pgw_broadcast_kick() after an insert, and
 * by a timer set for the next scheduled one; their leases are renewed
 * here, and a lease found lost stops the request (another process took it
 * over).
 *
 * Read top-down: claims, a request's start, pages, sends and answers,
 * commits and the end, leases, then the dispatcher's hooks.
 */
#include "broadcast.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "lc_where.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "resolve.h"
#include "store_broadcast.h"
#include "util/buf.h"
#include "util/clock.h"

/* Requests sent at once by one process: a long broadcast does not hold
 * back a small request claimed after it, and each one in memory is at
 * most BC_RING pages. */
#define BC_MAX_ACTIVE 4
/* Devices per page, the unit of committing: a page is built in one loop
 * iteration (about a millisecond). The window: pages sent and not
 * committed yet, at most BC_WINDOW, so a crash sends at most BC_WINDOW ×
 * BC_PAGE = 6,000 devices a second time; as pages are committed the
 * window slides, so the answers to a page's last pushes and its commit
 * hold back no sends. A commit (a durable transaction, its statement
 * planned each time) covers BC_COMMIT_PAGES answered pages, fewer only
 * when nothing else in the window can be sent or the request ends: one
 * commit per page cost Postgres about as much as a page's reads. Up to
 * BC_AHEAD pages are read (with their badge increments) ahead of the
 * window, so reading takes none of the senders' time either; a read is
 * BC_READ_PAGES pages, one statement: the reads follow one another
 * (keyset), and each one's round trip, queueing on the pool and planning
 * took as long as a page's rows. The next read goes once BC_AHEAD -
 * BC_READ_PAGES pages are left to send, more than a read takes to come
 * back at full rate. A crash after a read sends nothing twice for the
 * pages read and not sent (their increments are not made twice:
 * migration 0010). */
#define BC_PAGE 500
#define BC_WINDOW 12
#define BC_COMMIT_PAGES 4
#define BC_READ_PAGES 4
#define BC_AHEAD 12
/* A statement that failed (database down) is tried again after this. */
#define BC_RETRY_MS 1000
/* flow_control: sends are let through in steps of this many ms. */
#define BC_FLOW_TICK_MS 20

struct bcast;

/* One push of a page: its address is the sender's callback argument. */
struct bpush {
    struct bcast *b;
    struct page *pg;
    int64_t sent_us; /* handed to its sender (0: answered at once) */
    struct pgw_push p;
};

struct bfail {
    struct pgw_store_failure f;
    char reason[PGW_OUTCOME_REASON_MAX];
};

struct bretry {
    struct pgw_store_retry_new r;
    char *request;
    char reason[PGW_OUTCOME_REASON_MAX];
};

struct page {
    struct bpush *v; /* the pushes built, |n| */
    size_t n, next_send, answered;
    bool fetching;   /* its rows are being read (the read's first page) */
    bool final;      /* no page follows: its commit ends the request */
    int64_t last_id; /* of the rows read (0: none) */
    int devices, successes, invalid_tokens, errors, expired;
    struct bfail *fails;
    size_t n_fails, cap_fails;
    struct bretry *retries;
    size_t n_retries, cap_retries;
};

/* Pages in memory: the window being sent and answered, and those read
 * ahead of it. */
#define BC_RING (BC_WINDOW + BC_AHEAD)

struct bcast {
    struct pgw_broadcast *bc;
    struct pgw_list node; /* on bc->active */
    struct pgw_runtime *rt;
    const struct pgw_runtime_app *app;
    int64_t id;
    char id_str[32]; /* seeds the apns-ids: "api-<id>" */
    char *app_id;
    struct pgw_where where;
    bool increment;
    struct pgw_installation_match match; /* team and badge rules */
    struct pgw_resolved *res;
    struct pgw_push_event pe;
    struct pgw_push_app papp;
    int64_t expires_at_ms;
    int flow_control;
    int64_t flow_t0_ms;
    uint64_t flow_sent;
    struct event *timer; /* flow control and BC_RETRY_MS */
    int64_t cursor;      /* committed */
    int64_t fetched_to;  /* the last id read so far */
    /* committed counters, for the result */
    int64_t devices, successes;
    /* The pages, oldest (the next to commit) first: ring[(head + i) %
     * BC_RING] for i < count. */
    struct page ring[BC_RING];
    unsigned head, count;
    bool fetching;                /* a page's rows are being read */
    bool fetched_all;             /* the last page is in the ring */
    unsigned committing;          /* pages in the commit out (0: none) */
    bool wait_fetch, wait_commit; /* a statement failed: again later */
    const char *forced_end;       /* ends before any push (end_early) */
    bool expired;                 /* its validity ended while sending */
    size_t inflight;              /* its pushes handed to a sender */
    unsigned out;                 /* store calls out (a fetch, a commit) */
    bool lost;                    /* the lease is gone: stop, write nothing */
    bool flow_waiting;            /* the timer is set for flow control */
};

struct pgw_broadcast {
    struct pgw_dispatch *d;
    struct pgw_list active; /* struct bcast */
    size_t n_active;
    size_t inflight; /* its pushes handed to a sender, not answered */
    struct pgw_broadcast_pace pace;
    bool claiming, claim_again, renewing, asking_next;
    struct event *due_timer;   /* the next scheduled request */
    struct event *lease_timer; /* renewals */
    struct pgw_metric_family *m_requests;
};

static void claim(struct pgw_broadcast *bc);
static void on_claimed(void *arg, int err, const struct pgw_store_api_push *p,
                       size_t n);
static void ask_next_due(struct pgw_broadcast *bc);
static void on_next_due(void *arg, int err, int64_t ms);
static void on_due_timer(evutil_socket_t fd, short what, void *arg);
static void bcast_start(struct pgw_broadcast *bc,
                        const struct pgw_store_api_push *row);
static void fetch_more(struct bcast *b);
static void on_page(void *arg, int err, const struct pgw_installation *rows,
                    size_t n);
static void add_final_page(struct bcast *b);
static void build_page(struct bcast *b, struct page *pg,
                       const struct pgw_installation *rows, size_t n);
static void send_some(struct bcast *b);
static void on_answer(void *arg, const struct pgw_outcome *o);
static void try_commit(struct bcast *b);
static void commit(struct bcast *b, unsigned n);
static void on_committed(void *arg, int err, bool held);
static void after_commit(struct bcast *b);
static void wait_retry(struct bcast *b, bool commit_again);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void bcast_free(struct bcast *b);
static void page_release(struct page *pg);
static void on_lease_timer(evutil_socket_t fd, short what, void *arg);
static void on_renewed(void *arg, int err, const int64_t *held, size_t n);
static void on_released(void *arg, int err);

/* A request whose sending stopped (the dispatcher stops, or another
 * process took it over) is freed once nothing refers to it: no store call
 * out, every push sent answered. True when freed. */
static bool free_if_dead(struct bcast *b)
{
    if (!b->bc->d->closing && !b->lost)
        return false;
    if (b->out == 0 && b->inflight == 0)
        bcast_free(b);
    return true;
}

/* ---- claims ------------------------------------------------------------ */

static void claim(struct pgw_broadcast *bc)
{
    struct pgw_dispatch *d = bc->d;

    if (!d->rt || d->draining || bc->n_active >= BC_MAX_ACTIVE)
        return;
    if (bc->claiming) {
        bc->claim_again = true;
        return;
    }
    if (pgw_store_claim_api_pushes(d->o.store,
                                   (unsigned)(BC_MAX_ACTIVE - bc->n_active),
                                   d->o.lease_ms, on_claimed, bc) == 0)
        bc->claiming = true;
}

static void on_claimed(void *arg, int err, const struct pgw_store_api_push *p,
                       size_t n)
{
    struct pgw_broadcast *bc = arg;
    struct pgw_dispatch *d = bc->d;

    bc->claiming = false;
    if (d->closing)
        return;
    if (err < 0) {
        pgw_log_warn("could not claim push requests: %s", pgw_strerror(err));
        return;
    }
    for (size_t i = 0; i < n; i++)
        bcast_start(bc, &p[i]);
    if (bc->claim_again) {
        bc->claim_again = false;
        claim(bc);
    }
    ask_next_due(bc);
}

/* Sets the due timer for the next scheduled request, so push_time is
 * kept to the statement's round trip rather than to the claim timer. */
static void ask_next_due(struct pgw_broadcast *bc)
{
    if (bc->asking_next || bc->d->draining)
        return;
    if (pgw_store_next_api_push(bc->d->o.store, on_next_due, bc) == 0)
        bc->asking_next = true;
}

static void on_next_due(void *arg, int err, int64_t ms)
{
    struct pgw_broadcast *bc = arg;
    struct timeval tv;

    bc->asking_next = false;
    if (err < 0 || ms < 0 || bc->d->closing)
        return;
    /* Past the claim timer's tick the tick claims it anyway. */
    if (ms > (int64_t)bc->d->o.claim_interval_ms)
        return;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(bc->due_timer, &tv);
}

static void on_due_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    claim(arg);
}

/* ---- a request's start -------------------------------------------------- */

/* The result of a request that ends before a push is sent, counted and
 * committed. */
static void end_early(struct bcast *b, const char *result)
{
    b->forced_end = result;
    b->fetched_all = true;
    add_final_page(b);
    try_commit(b);
}

static void bcast_start(struct pgw_broadcast *bc,
                        const struct pgw_store_api_push *row)
{
    struct pgw_dispatch *d = bc->d;
    struct bcast *b = calloc(1, sizeof(*b));
    cJSON *data = NULL, *query = NULL;
    struct pgw_lc_error lerr;
    struct pgw_json_error jerr;
    int64_t now_ms = pgw_clock_wall_ms();
    struct pgw_list *pos;

    /* Claimed again while this process still sends it (its renewals
     * failed for a lease's length): the one in memory goes on. */
    pgw_list_for_each(pos, &bc->active)
    {
        if (pgw_list_entry(pos, struct bcast, node)->id == row->id) {
            free(b);
            return;
        }
    }
    if (!b || !(b->app_id = strdup(row->app_id)) ||
        !(b->timer = evtimer_new(d->o.base, on_timer, b))) {
        /* Its lease expires and it is claimed again. */
        pgw_log_error("out of memory starting push request '%" PRId64 "'",
                      row->id);
        if (b)
            free(b->app_id);
        free(b);
        return;
    }
    b->bc = bc;
    b->id = row->id;
    snprintf(b->id_str, sizeof(b->id_str), "api-%" PRId64, row->id);
    b->rt = pgw_runtime_ref(d->rt);
    b->cursor = row->cursor_id;
    b->devices = row->devices;
    b->successes = row->successes;
    b->expires_at_ms = row->expires_at_ms;
    b->flow_control = row->flow_control;
    pgw_list_push_back(&bc->active, &b->node);
    bc->n_active++;

    b->app = pgw_runtime_find_app(b->rt, b->app_id);
    if (!b->app) {
        pgw_log_warn("push request '%" PRId64 "' is for app '%s', which is "
                     "not configured",
                     b->id, b->app_id);
        end_early(b, "unknown_app");
        return;
    }
    if (now_ms >= b->expires_at_ms) {
        end_early(b, "expired");
        return;
    }
    data = cJSON_Parse(row->data);
    query = cJSON_Parse(row->query);
    if (!data || !query) {
        end_early(b, "invalid_content");
        goto out;
    }
    /* The query was compiled when the request was accepted; compiled
     * again here, so the compiler is the one place that decides. */
    if (pgw_where_compile(query, NULL, PGW_STORE_PAGE_FIRST_PARAM, &b->where,
                          &lerr) < 0) {
        pgw_log_warn("push request '%" PRId64 "': its query is refused: %s",
                     b->id, lerr.error);
        end_early(b, "invalid_query");
        goto out;
    }
    if (pgw_resolve_api_push(data, row->profile, row->push_at_ms / 1000,
                             b->expires_at_ms / 1000, &b->res, &jerr) < 0) {
        pgw_log_warn("push request '%" PRId64 "': cannot resolve the push: "
                     "%s: %s",
                     b->id, jerr.field, jerr.reason);
        end_early(b, "invalid_content");
        goto out;
    }
    b->papp.cfg = b->rt->cfg;
    b->papp.app = b->app->app;
    b->papp.apns_identity = b->app->apns_identity;
    b->papp.apns_topic = b->app->apns_topic;
    b->papp.has_fcm_account = b->app->fcm_account != NULL;
    /* Whether the iOS content increments the badge decides the page's
     * statement: built once here, again per page (its clock). */
    pgw_push_event_init(&b->pe, b->res, b->id_str, now_ms / 1000,
                        b->rt->cfg->delivery.validity_s);
    pgw_push_event_build(&b->pe, PGW_PLATFORM_IOS);
    b->increment = pgw_push_event_increments(&b->pe);
    /* The team and badge rules, as an event's lookup has them. */
    pgw_push_event_match(&b->pe, b->papp.app, &b->match);
    b->flow_t0_ms = pgw_clock_mono_ms();
    pgw_log_infof(PGW_FIELDS(PGW_LF_INT("api_push", b->id),
                             PGW_LF_STR("app", b->app_id),
                             PGW_LF_STR("object_id", row->object_id),
                             PGW_LF_INT("cursor", b->cursor)),
                  "push request sending");
    b->fetched_to = b->cursor;
    fetch_more(b);
out:
    cJSON_Delete(data);
    cJSON_Delete(query);
}

/* ---- pages ----------------------------------------------------------------
 */

static struct page *page_at(struct bcast *b, unsigned i)
{
    return &b->ring[(b->head + i) % BC_RING];
}

/* Pages read but not sent in full yet, beyond the window's first. */
static unsigned pages_ahead(struct bcast *b)
{
    unsigned n = 0;

    for (unsigned i = 0; i < b->count; i++) {
        struct page *pg = page_at(b, i);

        if (pg->fetching || pg->next_send < pg->n)
            n++;
    }
    return n;
}

/* Reads the next BC_READ_PAGES pages after what was read so far, when
 * the ring has room for them and they keep at most BC_AHEAD pages waiting
 * to be sent. Stops reading at the request's expiry (its last page then
 * ends it 'expired'), and while draining. */
static void fetch_more(struct bcast *b)
{
    struct pgw_dispatch *d = b->bc->d;
    struct pgw_store_page_query q;
    struct page *pg;
    int rc;

    if (b->fetching || b->fetched_all || b->lost || b->wait_fetch ||
        d->closing || d->draining || b->count + BC_READ_PAGES > BC_RING ||
        pages_ahead(b) + BC_READ_PAGES > BC_AHEAD)
        return;
    if (pgw_clock_wall_ms() >= b->expires_at_ms) {
        /* The rest is not sent: its validity is over. */
        b->expired = true;
        b->fetched_all = true;
        if (b->count)
            page_at(b, b->count - 1)->final = true;
        else
            add_final_page(b);
        try_commit(b);
        return;
    }
    memset(&q, 0, sizeof(q));
    q.api_push_id = b->id;
    q.app_id = b->app_id;
    q.after_id = b->fetched_to;
    q.limit = BC_PAGE * BC_READ_PAGES;
    q.match = &b->match;
    q.increment = b->increment;
    q.where_sql = b->where.sql;
    q.where_params = (const char *const *)b->where.params;
    q.n_where_params = b->where.n_params;
    rc = pgw_store_api_push_page(d->o.store, &q, on_page, b);
    if (rc < 0) {
        pgw_log_warn("could not read the devices of push request '%" PRId64
                     "': %s: trying again",
                     b->id, pgw_strerror(rc));
        wait_retry(b, false);
        return;
    }
    pg = page_at(b, b->count++);
    memset(pg, 0, sizeof(*pg));
    pg->fetching = true;
    b->fetching = true;
    b->out++;
}

static void on_page(void *arg, int err, const struct pgw_installation *rows,
                    size_t n)
{
    struct bcast *b = arg;
    struct page *pg = page_at(b, b->count - 1);

    b->out--;
    b->fetching = false;
    if (free_if_dead(b))
        return;
    if (err < 0) {
        pgw_log_warn("could not read the devices of push request '%" PRId64
                     "': %s: trying again",
                     b->id, pgw_strerror(err));
        b->count--; /* the page is read again */
        wait_retry(b, false);
        return;
    }
    /* The read's pages, in the slots after its first (room was checked by
     * fetch_more); fewer rows than asked: its last page is the last. */
    for (size_t at = 0;;) {
        size_t k = n - at < BC_PAGE ? n - at : BC_PAGE;

        build_page(b, pg, rows + at, k);
        at += k;
        pg->final = at == n && n < BC_PAGE * BC_READ_PAGES;
        if (b->lost) {
            free_if_dead(b);
            return;
        }
        if (pg->last_id)
            b->fetched_to = pg->last_id;
        if (pg->final)
            b->fetched_all = true;
        if (at == n)
            break;
        pg = page_at(b, b->count++);
    }
    try_commit(b);
    fetch_more(b);
    event_active(b->bc->d->pump_ev, EV_TIMEOUT, 0);
}

/* An empty last page: the commit that ends the request. */
static void add_final_page(struct bcast *b)
{
    struct page *pg = page_at(b, b->count++);

    memset(pg, 0, sizeof(*pg));
    pg->final = true;
}

static struct bfail *add_fail(struct page *pg)
{
    struct bfail *nf =
        pgw_array_grow(pg->fails, &pg->cap_fails, pg->n_fails, sizeof(*nf), 8);

    if (!nf)
        return NULL;
    pg->fails = nf;
    memset(&pg->fails[pg->n_fails], 0, sizeof(*pg->fails));
    return &pg->fails[pg->n_fails++];
}

/* Builds the pushes of |rows| into |pg| (push.c, as an event's devices). */
static void build_page(struct bcast *b, struct page *pg,
                       const struct pgw_installation *rows, size_t n)
{
    struct pgw_dispatch *d = b->bc->d;

    memset(pg, 0, sizeof(*pg));
    if (n == 0)
        return;
    pg->v = calloc(n, sizeof(*pg->v));
    if (!pg->v) {
        /* Nothing sent: the cursor stays, and the rest goes after a
         * takeover (this process stops reading). */
        pgw_log_error("out of memory building a page of push request "
                      "'%" PRId64 "'",
                      b->id);
        b->lost = true;
        pg->final = false;
        return;
    }
    pg->last_id = rows[n - 1].id;
    pg->devices = (int)n;
    /* A page's pushes are built with the clock of now: the payloads'
     * ttl and the check of the validity. */
    pgw_push_event_release(&b->pe);
    pgw_push_event_init(&b->pe, b->res, b->id_str, pgw_clock_wall_ms() / 1000,
                        b->rt->cfg->delivery.validity_s);
    for (size_t i = 0; i < n; i++) {
        struct bpush *bp = &pg->v[pg->n];
        struct pgw_push_failure f;
        struct bfail *fl;

        switch (pgw_push_make(&b->pe, &b->papp, &rows[i], rows[i].badge, &bp->p,
                              &f)) {
        case PGW_PUSH_SEND:
            bp->b = b;
            bp->pg = pg;
            pg->n++;
            break;
        case PGW_PUSH_FAIL:
            dispatch_count_push(d, f.provider, f.expired ? "expired" : "failed",
                                f.reason);
            if (f.expired)
                pg->expired++;
            else
                pg->errors++;
            /* recorded as an event's are, in push_failures */
            if ((fl = add_fail(pg))) {
                fl->f.installation_id = rows[i].id;
                fl->f.provider = pgw_provider_names[f.provider];
                fl->f.kind =
                    f.expired ? PGW_STORE_FAIL_EXPIRED : PGW_STORE_FAIL_FAILED;
                pgw_copy_str(fl->reason, sizeof(fl->reason), f.reason);
            }
            break;
        case PGW_PUSH_NONE:
            break;
        }
    }
}

/* ---- sends and answers ----------------------------------------------------
 */

/* Whether the events in memory want the providers: a chat push then finds
 * room at once, however large the broadcast. */
static bool events_waiting(const struct pgw_dispatch *d)
{
    return d->n_jobs + d->reserved > 0 || d->backlog_hint ||
           !pgw_list_empty(&d->lookup_wait);
}

/*
 * Fairness between events and broadcasts (DESIGN §15.5: a broadcast must
 * not starve 1:1 chat pushes). The in-flight cap follows the providers'
 * streams (pgw_dispatch_pacing_cap), so what is in flight is what the
 * providers are working on. While events are in memory, broadcasts leave
 * a reserve of the cap free (an eighth): a chat push that comes finds a
 * slot at once, waiting for no broadcast answer. Beyond the reserve the
 * room freed by answers goes to events first (dispatch_pump works the
 * jobs before broadcast_pump), so events take as much as they need, down
 * to a floor kept for broadcasts (a quarter), so that a steady fan-out
 * does not starve them either. Work-conserving: a trickle of chat costs a
 * broadcast only the reserve, where a fixed half would halve it for as
 * long as any event is in memory.
 */
#define BC_EVENT_RESERVE_DIV 8
#define BC_FLOOR_DIV 4

/*
 * A free slot is not all a chat push needs: on the providers' connections
 * it goes behind every push sent before it, and its answer comes after
 * theirs. A broadcast that keeps the whole cap in flight keeps that queue
 * as long as the providers' streams allow (hundreds of ms at a mock's
 * pace), and every chat push that arrives waits it out. So broadcasts
 * keep their pushes in flight only as deep as the providers need to stay
 * busy, as a background flow does (LEDBAT, RFC 6817): the limit of
 * pgw_broadcast_pace_answer() (broadcast.h) keeps their answers within
 * PGW_BROADCAST_PACE_TARGET_US of the fastest lately. Far providers (a
 * longer base) get a deeper limit by the same rule, at the same queueing
 * delay.
 */
void pgw_broadcast_pace_init(struct pgw_broadcast_pace *pc)
{
    memset(pc, 0, sizeof(*pc));
    pc->limit = PGW_BROADCAST_PACE_START;
}

void pgw_broadcast_pace_answer(struct pgw_broadcast_pace *pc, int64_t rtt_us,
                               size_t max)
{
    int64_t base, mean;

    if (pc->round_n == 0 || rtt_us < pc->round_min_us)
        pc->round_min_us = rtt_us;
    pc->round_sum_us += rtt_us;
    if (++pc->round_n < pc->limit / 2 + 64)
        return;
    pc->base_us[pc->next_base] = pc->round_min_us;
    pc->next_base = (pc->next_base + 1) % PGW_BROADCAST_PACE_BASES;
    if (pc->n_bases < PGW_BROADCAST_PACE_BASES)
        pc->n_bases++;
    base = pc->base_us[0];
    for (unsigned i = 1; i < pc->n_bases; i++)
        if (pc->base_us[i] < base)
            base = pc->base_us[i];
    mean = pc->round_sum_us / (int64_t)pc->round_n;
    if (mean - base > PGW_BROADCAST_PACE_TARGET_US)
        pc->limit -= pc->limit / 4;
    else if (pc->limited)
        pc->limit += pc->limit / 8;
    if (pc->limit < PGW_BROADCAST_PACE_MIN)
        pc->limit = PGW_BROADCAST_PACE_MIN;
    if (max >= PGW_BROADCAST_PACE_MIN && pc->limit > max)
        pc->limit = max;
    pc->limited = false;
    pc->round_n = 0;
    pc->round_sum_us = 0;
}

/*
 * Once the pace limit is reached, broadcasts send again only when a batch
 * of it is free: their pushes then leave, and their answers come back,
 * many to a TLS write and a read, where one or two answers freeing a slot
 * each sent one or two pushes, a system call at every end (pushgw's, the
 * providers'). The batch grows with the limit, so that a deep limit costs
 * no more calls per push than a shallow one; the queue a chat push finds
 * is still at most the limit. Events do not wait for it.
 */
size_t pgw_broadcast_pace_batch(const struct pgw_broadcast_pace *pc)
{
    size_t b = pc->limit / PGW_BROADCAST_PACE_BATCH_DIV;

    return b > PGW_BROADCAST_PACE_BATCH ? b : PGW_BROADCAST_PACE_BATCH;
}

bool pgw_broadcast_pace_may_send(struct pgw_broadcast_pace *pc, size_t inflight)
{
    if (inflight >= pc->limit) {
        pc->limited = true;
        pc->batching = true;
        return false;
    }
    if (pc->batching && inflight + pgw_broadcast_pace_batch(pc) > pc->limit)
        return false;
    pc->batching = false;
    return true;
}

static bool room(struct pgw_broadcast *bc)
{
    const struct pgw_dispatch *d = bc->d;
    size_t cap = dispatch_bulk_cap(d);
    size_t total = d->inflight[0] + d->inflight[1];

    if (!dispatch_inflight_room(d) || bc->inflight >= cap)
        return false;
    if (!pgw_broadcast_pace_may_send(&bc->pace, bc->inflight))
        return false;
    if (!events_waiting(d))
        return true;
    return bc->inflight < cap / BC_FLOOR_DIV ||
           total + cap / BC_EVENT_RESERVE_DIV < cap;
}

/* flow_control: may one more push go now? Else the timer is set. */
static bool flow_allows(struct bcast *b)
{
    int64_t elapsed;
    uint64_t allowed;

    if (b->flow_control <= 0)
        return true;
    elapsed = pgw_clock_mono_ms() - b->flow_t0_ms;
    /* What the rate allows since the start, plus one tick's worth. */
    allowed = (uint64_t)(elapsed + BC_FLOW_TICK_MS) *
              (uint64_t)b->flow_control / 1000;
    if (b->flow_sent < allowed)
        return true;
    if (!b->flow_waiting) {
        struct timeval tv = {0, BC_FLOW_TICK_MS * 1000};

        b->flow_waiting = true;
        evtimer_add(b->timer, &tv);
    }
    return false;
}

/*
 * Sends the pages of the window in order: pages not yet committed, at
 * most BC_WINDOW of them, so that at most BC_WINDOW × BC_PAGE devices
 * have been sent a push that a crash would leave uncommitted. The window
 * slides as each page is committed: its last answers and its commit do
 * not hold back the next pages' sends.
 */
static void send_some(struct bcast *b)
{
    struct pgw_broadcast *bc = b->bc;
    struct pgw_dispatch *d = bc->d;

    for (unsigned i = 0; i < b->count && i < BC_WINDOW; i++) {
        struct page *pg = page_at(b, i);

        if (pg->fetching)
            return;
        while (pg->next_send < pg->n) {
            struct bpush *bp;
            struct pgw_outcome err_o;

            if (b->lost || d->closing || !room(bc) || !flow_allows(b))
                return;
            bp = &pg->v[pg->next_send++];
            bp->sent_us = pgw_clock_mono_us();
            b->flow_sent++;
            b->inflight++;
            bc->inflight++;
            dispatch_count_send(d, bp->p.provider);
            if (pgw_runtime_send(b->rt, b->app, &bp->p, on_answer, bp, &err_o) <
                0) {
                /* answered at once: its page may commit, never freeing
                 * |b| synchronously (the commit goes through the store) */
                bp->sent_us = 0;
                on_answer(bp, &err_o);
                if (b->lost || d->closing)
                    return;
            }
        }
    }
}

static bool add_retry(struct bcast *b, struct page *pg,
                      const struct pgw_push *p, int64_t at, const char *reason)
{
    struct bretry *r;

    r = pgw_array_grow(pg->retries, &pg->cap_retries, pg->n_retries, sizeof(*r),
                       8);
    if (!r)
        return false;
    pg->retries = r;
    r = &pg->retries[pg->n_retries];
    memset(r, 0, sizeof(*r));
    r->request = pgw_push_encode(p, b->app_id);
    if (!r->request)
        return false;
    r->r.installation_id = p->installation_id;
    r->r.provider = pgw_provider_names[p->provider];
    r->r.attempts = p->attempts;
    r->r.not_before_ms = at;
    r->r.expires_at_ms = p->expires_at_ms;
    pgw_copy_str(r->reason, sizeof(r->reason), reason);
    pg->n_retries++;
    return true;
}

/* Runs once per push handed to a sender, from the loop (or from inside
 * pgw_runtime_cancel_senders() when the dispatcher stops). */
static void on_answer(void *arg, const struct pgw_outcome *o)
{
    struct bpush *bp = arg;
    struct bcast *b = bp->b;
    struct pgw_broadcast *bc = b->bc;
    struct pgw_dispatch *d = bc->d;
    struct page *pg = bp->pg;
    struct pgw_push *p = &bp->p;
    enum pgw_store_failure_kind kind = PGW_STORE_FAIL_FAILED;
    enum dispatch_fate fate;
    struct bfail *f;
    int64_t at = 0;

    d->inflight[p->provider]--;
    bc->inflight--;
    b->inflight--;
    pg->answered++;
    if (d->closing) {
        /* Cancelled (pgw_dispatch_stop): nothing is recorded. */
        pgw_push_release(p);
        free_if_dead(b);
        return;
    }
    if (bp->sent_us)
        pgw_broadcast_pace_answer(&bc->pace, pgw_clock_mono_us() - bp->sent_us,
                                  dispatch_bulk_cap(d));
    fate = dispatch_answer(d, b->rt, b->app_id, 0, p, o, &kind, &at);
    /* a retry row that cannot be kept is recorded as failed */
    if (fate == DISPATCH_RETRY && !add_retry(b, pg, p, at, o->reason)) {
        fate = DISPATCH_FAILED;
        kind = PGW_STORE_FAIL_FAILED;
    }
    switch (fate) {
    case DISPATCH_DELIVERED:
        pg->successes++;
        break;
    case DISPATCH_RETRY:
        break;
    case DISPATCH_FAILED:
        if (kind == PGW_STORE_FAIL_INVALIDATED)
            pg->invalid_tokens++;
        else if (kind == PGW_STORE_FAIL_EXPIRED)
            pg->expired++;
        else
            pg->errors++;
        if ((f = add_fail(pg))) {
            f->f.installation_id = p->installation_id;
            f->f.provider = pgw_provider_names[p->provider];
            f->f.kind = kind;
            f->f.status = o->status;
            f->f.invalid_since_ms =
                kind == PGW_STORE_FAIL_INVALIDATED ? o->invalid_since_ms : 0;
            pgw_copy_str(f->reason, sizeof(f->reason), o->reason);
        }
        break;
    }
    pgw_push_release(p);
    if (free_if_dead(b))
        return;
    if (pg->answered == pg->n)
        try_commit(b);
    event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* ---- commits and the end --------------------------------------------------
 */

/* The oldest pages whose pushes all have an outcome, in order, at most
 * to the first one that ends the request: what the next commit covers. */
static unsigned answered_pages(struct bcast *b)
{
    unsigned n = 0;

    while (n < b->count) {
        struct page *pg = page_at(b, n);

        if (pg->fetching || pg->answered < pg->n)
            break;
        n++;
        if (pg->final)
            break;
    }
    return n;
}

/* Whether a page of the window still has pushes to send (or rows to
 * come): its answers, or its read, call try_commit() again. */
static bool window_sending(struct bcast *b)
{
    for (unsigned i = 0; i < b->count && i < BC_WINDOW; i++) {
        struct page *pg = page_at(b, i);

        if (pg->fetching || pg->next_send < pg->n)
            return true;
    }
    return false;
}

/* The oldest pages, once every push of them has an outcome, are committed
 * (one commit at a time, in page order: the cursor only moves forward
 * over devices whose pushes all have an outcome): BC_COMMIT_PAGES of
 * them, or fewer when they end the request, when nothing more of the
 * window can be sent before they are, or while draining. */
static void try_commit(struct bcast *b)
{
    unsigned n;

    if (b->committing || b->wait_commit || b->count == 0 || b->lost ||
        b->bc->d->closing)
        return;
    n = answered_pages(b);
    if (n == 0)
        return;
    if (n < BC_COMMIT_PAGES && !page_at(b, n - 1)->final &&
        !b->bc->d->draining && window_sending(b))
        return;
    commit(b, n);
}

/* The result the request ends with, every page committed so far and the
 * |n| pages of this commit counted. */
static const char *end_result(struct bcast *b, unsigned n)
{
    int64_t devices = b->devices, delivered = b->successes;

    for (unsigned i = 0; i < n; i++) {
        devices += page_at(b, i)->devices;
        delivered += page_at(b, i)->successes;
    }
    if (b->forced_end)
        return b->forced_end;
    if (b->expired)
        return "expired";
    if (devices == 0)
        return "no_devices";
    return dispatch_sent_result((size_t)devices, (size_t)delivered);
}

/*
 * Commits the |n| oldest pages, whose pushes all have an outcome
 * (answered_pages(), counted by try_commit()), together:
 * one durable commit (a WAL flush) for as many pages as were answered
 * while the last one was on its way, so the flushes do not bound the
 * rate, and the window keeps sending meanwhile.
 */
static void commit(struct bcast *b, unsigned n)
{
    struct pgw_dispatch *d = b->bc->d;
    struct pgw_store_api_page sp;
    struct pgw_store_failure *fs = NULL;
    struct pgw_store_retry_new *rs = NULL;
    size_t n_fails = 0, n_retries = 0;
    int rc = PGW_ERR_NOMEM;

    memset(&sp, 0, sizeof(sp));
    sp.cursor_id = b->cursor;
    for (unsigned i = 0; i < n; i++) {
        n_fails += page_at(b, i)->n_fails;
        n_retries += page_at(b, i)->n_retries;
    }
    fs = calloc(n_fails + 1, sizeof(*fs));
    rs = calloc(n_retries + 1, sizeof(*rs));
    if (!fs || !rs)
        goto out;
    for (unsigned i = 0; i < n; i++) {
        struct page *pg = page_at(b, i);

        for (size_t k = 0; k < pg->n_fails; k++) {
            fs[sp.n_failures] = pg->fails[k].f;
            fs[sp.n_failures++].reason = pg->fails[k].reason;
        }
        for (size_t k = 0; k < pg->n_retries; k++) {
            rs[sp.n_retries] = pg->retries[k].r;
            rs[sp.n_retries].request = pg->retries[k].request;
            rs[sp.n_retries++].last_reason = pg->retries[k].reason;
        }
        if (pg->last_id)
            sp.cursor_id = pg->last_id;
        sp.devices += pg->devices;
        sp.successes += pg->successes;
        sp.invalid_tokens += pg->invalid_tokens;
        sp.errors += pg->errors;
        sp.expired += pg->expired;
    }
    sp.api_push_id = b->id;
    sp.lease_ms = d->o.lease_ms;
    sp.failures = fs;
    sp.retries = rs;
    sp.result = page_at(b, n - 1)->final ? end_result(b, n) : NULL;
    rc = pgw_store_commit_api_page(d->o.store, &sp, on_committed, b);
    if (rc == 0) {
        b->out++;
        b->committing = n;
    }
out:
    free(fs);
    free(rs);
    if (rc < 0) {
        pgw_log_warn("could not record a page of push request '%" PRId64
                     "': %s: trying again",
                     b->id, pgw_strerror(rc));
        wait_retry(b, true);
    }
}

static void on_committed(void *arg, int err, bool held)
{
    struct bcast *b = arg;

    b->out--;
    if (free_if_dead(b))
        return;
    if (err < 0) {
        pgw_log_warn("could not record a page of push request '%" PRId64
                     "': %s: trying again",
                     b->id, pgw_strerror(err));
        b->committing = 0;
        wait_retry(b, true);
        return;
    }
    if (!held) {
        /* Another process holds it now (this one's lease expired): its
         * pushes not committed go again from there. */
        pgw_log_warn("push request '%" PRId64 "' was taken over by another "
                     "process: this one stops sending it",
                     b->id);
        b->lost = true;
        free_if_dead(b);
        return;
    }
    after_commit(b);
}

static void after_commit(struct bcast *b)
{
    struct pgw_broadcast *bc = b->bc;
    struct pgw_dispatch *d = bc->d;
    unsigned n = b->committing;
    const char *end = page_at(b, n - 1)->final ? end_result(b, n) : NULL;

    b->committing = 0;
    for (unsigned i = 0; i < n; i++) {
        struct page *pg = page_at(b, 0);

        if (pg->last_id)
            b->cursor = pg->last_id;
        b->devices += pg->devices;
        b->successes += pg->successes;
        page_release(pg);
        b->head = (b->head + 1) % BC_RING;
        b->count--;
    }
    if (end) {
        if (bc->m_requests)
            pgw_metric_inc(pgw_metrics_series2(bc->m_requests, b->app_id, end));
        pgw_log_infof(PGW_FIELDS(PGW_LF_INT("api_push", b->id),
                                 PGW_LF_STR("app", b->app_id),
                                 PGW_LF_STR("result", end),
                                 PGW_LF_INT("devices", b->devices),
                                 PGW_LF_INT("successes", b->successes)),
                      "push request finished");
        bcast_free(b);
        claim(bc);
        return;
    }
    if (d->draining && b->count == 0 && !b->fetching) {
        /* Given back: another process (or the next start) goes on from
         * the cursor at once. */
        if (pgw_store_release_api_push(d->o.store, b->id, on_released, NULL) <
            0)
            pgw_log_warn("could not give back push request '%" PRId64 "'",
                         b->id);
        bcast_free(b);
        return;
    }
    try_commit(b);
    fetch_more(b);
    event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* A statement failed: the same step again after BC_RETRY_MS (the lease is
 * renewed meanwhile). */
static void wait_retry(struct bcast *b, bool commit_again)
{
    struct timeval tv = {BC_RETRY_MS / 1000, (BC_RETRY_MS % 1000) * 1000};

    if (commit_again)
        b->wait_commit = true;
    else
        b->wait_fetch = true;
    evtimer_add(b->timer, &tv);
}

/* Fires for flow control, or after a failed statement. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct bcast *b = arg;
    (void)fd;
    (void)what;

    if (b->bc->d->closing)
        return;
    b->flow_waiting = false;
    if (b->wait_commit) {
        b->wait_commit = false;
        try_commit(b);
    }
    if (b->wait_fetch) {
        b->wait_fetch = false;
        fetch_more(b);
    }
    send_some(b);
}

static void page_release(struct page *pg)
{
    for (size_t i = pg->next_send; i < pg->n; i++)
        pgw_push_release(&pg->v[i].p);
    free(pg->v);
    free(pg->fails);
    for (size_t i = 0; i < pg->n_retries; i++)
        free(pg->retries[i].request);
    free(pg->retries);
    memset(pg, 0, sizeof(*pg));
}

static void bcast_free(struct bcast *b)
{
    struct pgw_broadcast *bc = b->bc;

    pgw_list_remove(&b->node);
    bc->n_active--;
    for (unsigned i = 0; i < BC_RING; i++)
        page_release(&b->ring[i]);
    pgw_push_event_release(&b->pe);
    pgw_resolve_free(b->res);
    pgw_where_release(&b->where);
    if (b->timer)
        event_free(b->timer);
    pgw_runtime_unref(b->rt);
    free(b->app_id);
    free(b);
}

/* ---- leases -----------------------------------------------------------------
 */

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_broadcast *bc = arg;
    struct pgw_list *pos;
    int64_t ids[BC_MAX_ACTIVE];
    size_t n = 0;
    (void)fd;
    (void)what;

    if (bc->renewing || bc->n_active == 0)
        return;
    pgw_list_for_each(pos, &bc->active)
    {
        if (n < BC_MAX_ACTIVE)
            ids[n++] = pgw_list_entry(pos, struct bcast, node)->id;
    }
    if (pgw_store_renew_api_pushes(bc->d->o.store, ids, n, bc->d->o.lease_ms,
                                   on_renewed, bc) == 0)
        bc->renewing = true;
}

/* The requests not renewed are no longer this process's: they stop. A
 * request that ended meanwhile is no longer in the list. */
static void on_renewed(void *arg, int err, const int64_t *held, size_t n)
{
    struct pgw_broadcast *bc = arg;
    struct pgw_list *pos, *next;

    bc->renewing = false;
    if (err < 0) {
        pgw_log_warn("could not renew the leases of push requests: %s",
                     pgw_strerror(err));
        return;
    }
    if (bc->d->closing)
        return;
    pgw_list_for_each_safe(pos, next, &bc->active)
    {
        struct bcast *b = pgw_list_entry(pos, struct bcast, node);
        bool kept = false;

        for (size_t i = 0; i < n && !kept; i++)
            kept = held[i] == b->id;
        /* a request whose end was being committed with this renewal */
        if (kept || (b->committing && page_at(b, b->committing - 1)->final))
            continue;
        pgw_log_warn("push request '%" PRId64 "': lease lost: this "
                     "process stops sending it",
                     b->id);
        b->lost = true;
        free_if_dead(b);
    }
}

static void on_released(void *arg, int err)
{
    (void)arg;
    if (err < 0)
        pgw_log_warn("could not give back a push request: %s: it is taken "
                     "over after its lease",
                     pgw_strerror(err));
}

/* ---- the dispatcher's hooks (dispatch_int.h) --------------------------------
 */

int broadcast_new(struct pgw_dispatch *d)
{
    static const char *const labels[] = {"app", "result"};
    struct pgw_broadcast *bc = calloc(1, sizeof(*bc));
    struct timeval lease_tv;

    if (!bc)
        return PGW_ERR_NOMEM;
    bc->d = d;
    pgw_broadcast_pace_init(&bc->pace);
    pgw_list_init(&bc->active);
    bc->due_timer = evtimer_new(d->o.base, on_due_timer, bc);
    bc->lease_timer = event_new(d->o.base, -1, EV_PERSIST, on_lease_timer, bc);
    if (!bc->due_timer || !bc->lease_timer) {
        d->bc = bc;
        broadcast_free(d);
        return PGW_ERR_NOMEM;
    }
    lease_tv.tv_sec = d->o.lease_ms / 3000;
    lease_tv.tv_usec = ((d->o.lease_ms / 3) % 1000) * 1000;
    event_add(bc->lease_timer, &lease_tv);
    /* How push requests end (pushgw_events_finished_total's sibling: the
     * intake of requests is the push API's). */
    if (d->o.metrics &&
        pgw_metrics_register(d->o.metrics, PGW_METRIC_COUNTER,
                             "pushgw_push_requests_finished_total",
                             "Push API requests whose sending ended, by "
                             "result (sent, partly_sent, none_delivered, "
                             "no_devices, expired, invalid_query, "
                             "invalid_content, unknown_app)",
                             labels, 2, 0, NULL, 0, &bc->m_requests) < 0)
        bc->m_requests = NULL;
    d->bc = bc;
    return 0;
}

void broadcast_tick(struct pgw_dispatch *d)
{
    if (d->bc)
        claim(d->bc);
}

void broadcast_pump(struct pgw_dispatch *d)
{
    struct pgw_broadcast *bc = d->bc;
    struct pgw_list *pos, *next;

    if (!bc || d->closing)
        return;
    /* Oldest request first; each send_some stops when room runs out. */
    pgw_list_for_each_safe(pos, next, &bc->active)
    {
        struct bcast *b = pgw_list_entry(pos, struct bcast, node);

        if (!room(bc))
            break;
        if (!b->flow_waiting)
            send_some(b);
    }
}

bool broadcast_idle(const struct pgw_dispatch *d)
{
    return !d->bc || (d->bc->n_active == 0 && !d->bc->claiming);
}

void broadcast_stop(struct pgw_dispatch *d)
{
    struct pgw_broadcast *bc = d->bc;
    struct pgw_list *pos, *next;

    if (!bc)
        return;
    event_del(bc->due_timer);
    event_del(bc->lease_timer);
    /* The senders were cancelled: every push is answered. Requests
     * waiting on the store are freed by its callback. */
    pgw_list_for_each_safe(pos, next, &bc->active)
    {
        struct bcast *b = pgw_list_entry(pos, struct bcast, node);

        if (b->out == 0)
            bcast_free(b);
    }
}

void broadcast_free(struct pgw_dispatch *d)
{
    struct pgw_broadcast *bc = d->bc;

    if (!bc)
        return;
    while (!pgw_list_empty(&bc->active))
        bcast_free(pgw_list_entry(bc->active.next, struct bcast, node));
    if (bc->due_timer)
        event_free(bc->due_timer);
    if (bc->lease_timer)
        event_free(bc->lease_timer);
    free(bc);
    d->bc = NULL;
}

void pgw_broadcast_kick(struct pgw_dispatch *d)
{
    if (!d || !d->bc || d->closing || d->draining)
        return;
    claim(d->bc);
    ask_next_due(d->bc);
}
