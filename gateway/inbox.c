/*
 * Admission, inserts and answers of webhook events, on the loop thread;
 * see inbox.h.
 *
 * A request arrives as a pgw_inbox_req posted by the intake thread
 * (submit → admit_run), is admitted or refused (admit), has its inserts
 * queued (intake_start), and is answered when the last insert callback
 * ran (on_inserted → intake_finish), which also hands the new events to
 * the dispatcher. A request waiting for the store is on the |waiting|
 * list until then; it is freed by its last callback, even if the inbox
 * is gone by then.
 */
#include "inbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "event.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "pushgw.h"
#include "store.h"
#include "util/list.h"
#include "xqueue.h"

static const char *const result_names[PGW_INBOX_RESULT_COUNT] = {
    "accepted",          "duplicate",    "invalid",
    "unauthorized",      "unknown_app",  "too_large",
    "unsupported_media", "backlog_full", "unavailable",
};

struct item {
    struct pgw_event *ev; /* owned until handed to the dispatcher */
    char *text;           /* stored JSON; owned when |own| */
    size_t len;
    bool own;
    bool reserved; /* a dispatcher slot is held for it */
    bool done;
    int err;
    int64_t id;
    bool duplicate;
    struct pgw_inbox_req *intake;
};

/* One request on its way to the store. */
struct pgw_inbox_req {
    struct pgw_xmsg msg;        /* first: the hand-over to the loop */
    struct pgw_inbox *inbox;    /* NULL once the inbox is freed */
    struct pgw_listener *l;     /* answers go through it */
    struct evhttp_request *req; /* NULL once answered or abandoned */
    struct pgw_list node;       /* on the inbox's |waiting| */
    char *app_id;
    bool batch;
    size_t n;
    size_t waiting; /* callbacks still to come */
    int queue_err;  /* an insert could not even be queued */
    struct item items[];
};

/* A result counted on another thread. */
struct count_msg {
    struct pgw_xmsg msg; /* first */
    struct pgw_inbox *inbox;
    enum pgw_inbox_result result;
    double n;
    char app[];
};

/* One backlog count in flight; detached when the inbox is freed. */
struct count_req {
    struct pgw_inbox *inbox;
    int64_t accepted_at_send;
};

struct pgw_inbox {
    struct event_base *base;
    struct pgw_config *cfg;
    struct pgw_store *store;
    struct pgw_metrics *metrics;
    struct pgw_inbox_dispatch dispatch;
    unsigned lease_ms;
    size_t max_inflight;
    unsigned backlog_refresh_ms;
    struct pgw_xqueue *mailbox; /* from the intake thread */
    bool stopped;

    struct pgw_list waiting; /* struct pgw_inbox_req, for the store */
    size_t inflight_events;

    struct event *backlog_timer;
    struct count_req *count_req; /* outstanding count, or NULL */
    int64_t backlog_last;        /* last count from the store */
    int64_t accepted_total;      /* new events accepted, ever */
    int64_t accepted_at_count;   /* accepted_total when it was sent */
    uint64_t backlog_counted;    /* counts the store answered */
    struct pgw_metric_series *backlog_gauge;
};

static void count_result(struct pgw_inbox *ib, const char *app,
                         enum pgw_inbox_result r, double n)
{
    if (ib->metrics == NULL)
        return;
    pgw_metric_add(
        pgw_metrics_series2(pgw_metrics_std(ib->metrics, PGW_M_EVENTS_TOTAL),
                            app, result_names[r]),
        n);
}

void pgw_inbox_update_gauge(struct pgw_inbox *self)
{
    pgw_metric_set(self->backlog_gauge, (double)pgw_inbox_backlog(self));
}

/* ---- requests ----------------------------------------------------------- */

struct pgw_inbox_req *pgw_inbox_req_new(const char *app_id, size_t n,
                                        bool batch)
{
    struct pgw_inbox_req *r = calloc(1, sizeof(*r) + n * sizeof(struct item));

    if (r == NULL)
        return NULL;
    pgw_list_init(&r->node);
    r->app_id = strdup(app_id);
    if (r->app_id == NULL) {
        free(r);
        return NULL;
    }
    r->n = n;
    r->batch = batch;
    return r;
}

void pgw_inbox_req_set(struct pgw_inbox_req *r, size_t i, struct pgw_event *ev,
                       char *text, size_t len, bool own)
{
    r->items[i].ev = ev;
    r->items[i].text = text;
    r->items[i].len = len;
    r->items[i].own = own;
}

static void drop_texts(struct pgw_inbox_req *r)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->items[i].own)
            cJSON_free(r->items[i].text);
        r->items[i].text = NULL;
        r->items[i].own = false;
    }
}

void pgw_inbox_req_free(struct pgw_inbox_req *r)
{
    if (r == NULL)
        return;
    drop_texts(r);
    for (size_t i = 0; i < r->n; i++)
        pgw_event_free(r->items[i].ev);
    free(r->app_id);
    free(r);
}

static void reply_error(struct pgw_inbox_req *in, int code, const char *error,
                        const char *retry_after, bool close)
{
    pgw_listener_reply_error(in->l, in->req, code, error, "", retry_after,
                             close);
    in->req = NULL;
}

/* ---- the store ---------------------------------------------------------- */

static void intake_unlink(struct pgw_inbox_req *in)
{
    struct pgw_inbox *ib = in->inbox;
    if (ib == NULL)
        return;
    pgw_list_remove(&in->node);
    ib->inflight_events -= in->n;
}

/* The new events go to the dispatcher; the results are counted. */
static void hand_to_dispatcher(struct pgw_inbox *ib, struct pgw_inbox_req *in,
                               size_t *ret_failed)
{
    size_t n_failed = 0, n_new = 0, n_dup = 0, n_unleased = 0;

    for (size_t i = 0; i < in->n; i++) {
        struct item *it = &in->items[i];
        bool fresh = it->err == 0 && !it->duplicate;
        if (it->err != 0)
            n_failed++;
        else if (it->duplicate)
            n_dup++;
        else
            n_new++;
        if (fresh && !it->reserved)
            n_unleased++;
        if (it->reserved && ib->dispatch.accepted != NULL) {
            /* the count the reservation was made with */
            size_t recipients = it->ev->n_offline_peers;

            if (fresh) {
                struct pgw_event *ev = it->ev;
                it->ev = NULL;
                ib->dispatch.accepted(ib->dispatch.arg, it->id, in->app_id, ev,
                                      recipients);
            } else {
                ib->dispatch.accepted(ib->dispatch.arg, 0, in->app_id, NULL,
                                      recipients);
            }
        }
    }
    if (n_unleased > 0 && ib->dispatch.stored != NULL)
        ib->dispatch.stored(ib->dispatch.arg);
    ib->accepted_total += (int64_t)n_new;
    count_result(ib, in->app_id, PGW_INBOX_ACCEPTED, (double)n_new);
    count_result(ib, in->app_id, PGW_INBOX_DUPLICATE, (double)n_dup);
    count_result(ib, in->app_id, PGW_INBOX_UNAVAILABLE, (double)n_failed);
    pgw_inbox_update_gauge(ib);
    *ret_failed = n_failed;
}

/* One event's part of the answer, {"eventId":"…","duplicate":…} after a
 * comma when |comma|, into |out| (80 bytes); returns its length. Without
 * printf: it runs for every event accepted, where printf's format
 * parsing costs more than the text. */
static size_t format_result(char *out, bool comma, int64_t id, bool duplicate)
{
    static const char head[] = "{\"eventId\":\"";
    static const char mid[] = "\",\"duplicate\":";
    char digits[24];
    size_t n = 0, nd = pgw_fmt_i64(digits, id);

    if (comma)
        out[n++] = ',';
    memcpy(out + n, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    memcpy(out + n, digits, nd);
    n += nd;
    memcpy(out + n, mid, sizeof(mid) - 1);
    n += sizeof(mid) - 1;
    memcpy(out + n, duplicate ? "true}" : "false}", duplicate ? 5 : 6);
    return n + (duplicate ? 5 : 6);
}

/* Every callback ran: hand new events over, answer, free. */
static void intake_finish(struct pgw_inbox_req *in)
{
    struct pgw_inbox *ib = in->inbox;
    size_t n_failed = 0;
    struct evbuffer *body = NULL;

    intake_unlink(in);
    if (ib != NULL)
        hand_to_dispatcher(ib, in, &n_failed);
    /* A request still to answer implies the inbox (see free). */
    if (in->req == NULL || ib == NULL)
        goto out;
    if (n_failed > 0 || in->queue_err != 0) {
        reply_error(in, 503, "database unavailable", PGW_INBOX_RETRY_AFTER_DOWN,
                    false);
        goto out;
    }
    body = evbuffer_new();
    if (body == NULL)
        goto oom;
    if (in->batch && evbuffer_add_printf(body, "{\"events\":[") < 0)
        goto oom;
    for (size_t i = 0; i < in->n; i++) {
        const struct item *it = &in->items[i];
        char one[80];
        size_t len = format_result(one, i > 0, it->id, it->duplicate);

        if (evbuffer_add(body, one, len) < 0)
            goto oom;
    }
    if (in->batch && evbuffer_add_printf(body, "]}") < 0)
        goto oom;
    pgw_listener_reply_json(in->l, in->req, 202, body, false);
    in->req = NULL;
    body = NULL;
    goto out;
oom:
    /* The events are stored; a 503 makes the broker retry, and msgIds (if
     * any) deduplicate. Nothing better is possible without memory. */
    reply_error(in, 503, "out of memory", PGW_INBOX_RETRY_AFTER_DOWN, false);
out:
    if (body != NULL)
        evbuffer_free(body);
    in->req = NULL;
    pgw_inbox_req_free(in);
}

/* Fires once per insert, after the commit or the failure; frees the
 * request with its last item. */
static void on_inserted(void *arg, int err, int64_t event_id, bool duplicate)
{
    struct item *it = arg;
    struct pgw_inbox_req *in = it->intake;

    it->done = true;
    it->err = err;
    it->id = event_id;
    it->duplicate = duplicate;
    if (--in->waiting == 0)
        intake_finish(in);
}

/* Queues the inserts of |in|; its answer comes from the callbacks. */
static void intake_start(struct pgw_inbox *ib, struct pgw_inbox_req *in)
{
    pgw_list_push_front(&ib->waiting, &in->node);
    ib->inflight_events += in->n;
    /* One extra count held while queueing, so a callback cannot finish the
     * request before every insert is queued. */
    in->waiting = 1;
    for (size_t i = 0; i < in->n; i++) {
        struct item *it = &in->items[i];
        struct pgw_store_new_event ne = {
            .app_id = in->app_id,
            .conv_id = it->ev->conv_id,
            .msg_id = it->ev->msg_id,
            .body = it->text,
            .body_len = it->len,
            .event_ts_ms = it->ev->timestamp_ms,
        };
        it->intake = in;
        if (ib->dispatch.accepted != NULL &&
            (ib->dispatch.reserve == NULL ||
             ib->dispatch.reserve(ib->dispatch.arg, it->ev->n_offline_peers))) {
            it->reserved = true;
            ne.lease = true;
            ne.lease_ms = ib->lease_ms;
        }
        in->waiting++;
        int err = pgw_store_insert_event(ib->store, &ne, on_inserted, it);
        if (err < 0) {
            /* This one and the rest are not stored; the queued ones finish
             * normally and the answer is an error. */
            in->waiting--;
            in->queue_err = err;
            it->err = err;
            it->done = true;
            for (size_t j = i + 1; j < in->n; j++) {
                in->items[j].err = err;
                in->items[j].done = true;
            }
            break;
        }
    }
    /* The store copied the texts. */
    drop_texts(in);
    if (--in->waiting == 0)
        intake_finish(in);
}

/* Admission control: 0 to go on, or answered. */
static int admit(struct pgw_inbox *ib, struct pgw_inbox_req *in)
{
    long long bound = ib->cfg->server.max_backlog_events;
    if (bound > 0 && pgw_inbox_backlog(ib) + (int64_t)in->n > bound) {
        count_result(ib, in->app_id, PGW_INBOX_BACKLOG_FULL, 1);
        reply_error(in, 429, "backlog full", PGW_INBOX_RETRY_AFTER_BUSY, false);
        return -1;
    }
    if (ib->inflight_events + in->n > ib->max_inflight) {
        count_result(ib, in->app_id, PGW_INBOX_BACKLOG_FULL, 1);
        reply_error(in, 429, "too many events waiting for the database",
                    PGW_INBOX_RETRY_AFTER_BUSY, false);
        return -1;
    }
    if (!pgw_store_is_up(ib->store)) {
        count_result(ib, in->app_id, PGW_INBOX_UNAVAILABLE, 1);
        reply_error(in, 503, "database unavailable", PGW_INBOX_RETRY_AFTER_DOWN,
                    false);
        return -1;
    }
    return 0;
}

/* Runs on the loop thread for a submitted request: admits its events and
 * queues their inserts, or answers. */
static void admit_run(struct pgw_xmsg *m)
{
    struct pgw_inbox_req *in = (struct pgw_inbox_req *)m;
    struct pgw_inbox *ib = in->inbox;

    if (ib->stopped) {
        reply_error(in, 503, "shutting down", PGW_INBOX_RETRY_AFTER_DOWN, true);
    } else if (admit(ib, in) == 0) {
        intake_start(ib, in);
        return; /* owned by its callbacks now */
    }
    pgw_inbox_req_free(in);
}

void pgw_inbox_submit(struct pgw_inbox *self, struct pgw_inbox_req *r,
                      struct pgw_listener *l, struct evhttp_request *req)
{
    r->msg.run = admit_run;
    r->inbox = self;
    r->l = l;
    r->req = req;
    pgw_xqueue_post(self->mailbox, &r->msg);
}

/* Runs on the loop thread: a result counted elsewhere. */
static void count_run(struct pgw_xmsg *m)
{
    struct count_msg *c = (struct count_msg *)m;

    count_result(c->inbox, c->app, c->result, c->n);
    free(c);
}

void pgw_inbox_count(struct pgw_inbox *self, const char *app,
                     enum pgw_inbox_result result, double n)
{
    size_t len = strlen(app);
    struct count_msg *c;

    if (self->metrics == NULL)
        return;
    c = malloc(sizeof(*c) + len + 1);
    if (c == NULL)
        return; /* a count lost for want of memory */
    c->msg.run = count_run;
    c->inbox = self;
    c->result = result;
    c->n = n;
    memcpy(c->app, app, len + 1);
    pgw_xqueue_post(self->mailbox, &c->msg);
}

/* ---- backlog ------------------------------------------------------------ */

/* Fires when a backlog count finished; frees its request. */
static void on_backlog_count(void *arg, int err, int64_t count)
{
    struct count_req *cr = arg;
    struct pgw_inbox *ib = cr->inbox;
    if (ib != NULL) {
        ib->count_req = NULL;
        if (err == 0) {
            ib->backlog_last = count;
            ib->accepted_at_count = cr->accepted_at_send;
            ib->backlog_counted++;
            pgw_inbox_update_gauge(ib);
        }
    }
    free(cr);
}

/* Fires every backlog_refresh_ms; one count at a time. */
static void on_backlog_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_inbox *ib = arg;
    (void)fd;
    (void)what;
    if (ib->count_req != NULL || !pgw_store_is_up(ib->store))
        return;
    struct count_req *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return;
    cr->inbox = ib;
    cr->accepted_at_send = ib->accepted_total;
    if (pgw_store_count_backlog(ib->store, on_backlog_count, cr) < 0) {
        free(cr);
        return;
    }
    ib->count_req = cr;
}

int64_t pgw_inbox_backlog(const struct pgw_inbox *self)
{
    return self->backlog_last +
           (self->accepted_total - self->accepted_at_count);
}

uint64_t pgw_inbox_backlog_counted(const struct pgw_inbox *self)
{
    return self->backlog_counted;
}

size_t pgw_inbox_pending(const struct pgw_inbox *self)
{
    return self->inflight_events;
}

/* ---- set-up ------------------------------------------------------------- */

int pgw_inbox_new(const struct pgw_inbox_options *opts,
                  struct pgw_inbox **ret_inbox)
{
    struct pgw_inbox *ib = NULL;
    int err = PGW_ERR_INVAL;

    if (opts->base == NULL || opts->cfg == NULL || opts->store == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    ib = calloc(1, sizeof(*ib));
    if (ib == NULL)
        goto out;
    pgw_list_init(&ib->waiting);
    ib->base = opts->base;
    ib->cfg = pgw_config_ref(opts->cfg);
    ib->store = opts->store;
    ib->metrics = opts->metrics;
    ib->dispatch = opts->dispatch;
    ib->lease_ms = opts->lease_ms ? opts->lease_ms : 60000;
    ib->max_inflight =
        opts->max_inflight_events ? opts->max_inflight_events : 10000;
    ib->backlog_refresh_ms =
        opts->backlog_refresh_ms ? opts->backlog_refresh_ms : 1000;
    if (ib->metrics != NULL)
        ib->backlog_gauge = pgw_metrics_series(
            pgw_metrics_std(ib->metrics, PGW_M_BACKLOG_EVENTS), NULL);
    err = pgw_xqueue_new(ib->base, NULL, NULL, &ib->mailbox);
    if (err < 0)
        goto out;
    err = PGW_ERR_NOMEM;
    ib->backlog_timer =
        event_new(ib->base, -1, EV_PERSIST, on_backlog_timer, ib);
    if (ib->backlog_timer == NULL)
        goto out;
    struct timeval rt = {
        .tv_sec = ib->backlog_refresh_ms / 1000,
        .tv_usec = ib->backlog_refresh_ms % 1000 * 1000,
    };
    if (event_add(ib->backlog_timer, &rt) < 0)
        goto out;
    /* A first count at once, so the bound holds from the start. */
    on_backlog_timer(-1, 0, ib);
    *ret_inbox = ib;
    ib = NULL;
    err = 0;
out:
    pgw_inbox_free(ib);
    return err;
}

void pgw_inbox_set_config(struct pgw_inbox *self, struct pgw_config *cfg)
{
    struct pgw_config *old = self->cfg;

    self->cfg = pgw_config_ref(cfg);
    pgw_config_free(old);
}

void pgw_inbox_stop(struct pgw_inbox *self)
{
    self->stopped = true;
}

void pgw_inbox_free(struct pgw_inbox *self)
{
    if (self == NULL)
        return;
    /* What is still submitted is answered 503; then what waits for the
     * store, detached: the store's callbacks free it later. */
    self->stopped = true;
    pgw_xqueue_free(self->mailbox);
    while (!pgw_list_empty(&self->waiting)) {
        struct pgw_inbox_req *in =
            pgw_list_entry(self->waiting.next, struct pgw_inbox_req, node);
        if (in->req != NULL)
            reply_error(in, 503, "shutting down", PGW_INBOX_RETRY_AFTER_DOWN,
                        true);
        intake_unlink(in);
        in->inbox = NULL;
    }
    if (self->count_req != NULL)
        self->count_req->inbox = NULL;
    if (self->backlog_timer != NULL)
        event_free(self->backlog_timer);
    pgw_config_free(self->cfg);
    free(self);
}
