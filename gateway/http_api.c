/* Webhook and admin HTTP listeners of `serve`; see http_api.h. */
#include "http_api.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "config.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#define MAX_APP_ID_BYTES 256
#define RETRY_AFTER_BUSY "1"
#define RETRY_AFTER_DOWN "5"

/* Results of pushgw_events_total. */
enum result {
    R_ACCEPTED,
    R_DUPLICATE,
    R_INVALID,
    R_UNAUTHORIZED,
    R_UNKNOWN_APP,
    R_TOO_LARGE,
    R_UNSUPPORTED_MEDIA,
    R_BACKLOG_FULL,
    R_UNAVAILABLE,
    R_COUNT,
};

static const char *const result_names[R_COUNT] = {
    "accepted",          "duplicate",    "invalid",
    "unauthorized",      "unknown_app",  "too_large",
    "unsupported_media", "backlog_full", "unavailable",
};

struct intake;

struct item {
    struct pgw_event *ev; /* owned until handed to the dispatcher */
    bool reserved;        /* a dispatcher slot is held for it */
    bool done;
    int err;
    int64_t id;
    bool duplicate;
    struct intake *intake;
};

/* One request waiting for the store. Freed when its last insert callback
 * ran, even if the api or the request is gone by then. */
struct intake {
    struct pgw_http_api *api;   /* NULL once the api is freed */
    struct evhttp_request *req; /* NULL once answered or abandoned */
    struct intake *prev, *next;
    char *app_id;
    bool batch;
    size_t n;
    size_t waiting; /* callbacks still to come */
    int queue_err;  /* an insert could not even be queued */
    struct item items[];
};

/* A message between the loop thread and the intake thread (see the
 * "intake thread" section). Requests without content (apply the limits,
 * stop, quit) are bits of pgw_http_api.ctl instead. */
enum xkind {
    X_REQUEST, /* to the loop: events parsed, to admit and insert */
    X_COUNT,   /* to the loop: a pushgw_events_total result */
    X_REPLY,   /* to the intake thread: the answer to a request */
};

/* pgw_http_api.ctl: what the loop thread asks of the intake thread. */
enum {
    CTL_LIMITS = 1, /* apply the config's limits */
    CTL_STOP = 2,   /* close the listener, then set stop_acked */
    CTL_QUIT = 4,   /* leave the loop */
};

struct xmsg {
    struct xmsg *next;
    enum xkind kind;
    struct evhttp_request *req;
    /* X_REQUEST: the events and the text stored for each (a batch:
     * |n_texts| texts of its own, owned here; one event: the request's
     * body). */
    struct intake *in;
    char **texts;
    size_t *lens;
    size_t n_texts;
    const char *body;
    size_t body_len;
    /* X_COUNT */
    char *app;
    enum result result;
    double n;
    /* X_REPLY: |json| as the body, or an error body from |why| and
     * |field| (both owned); |reason| and |retry_after| are static. */
    int code;
    const char *reason;
    struct evbuffer *json;
    char *why;
    char *field;
    const char *retry_after;
    bool close;
};

struct xqueue {
    struct xmsg *head, *tail;
    int efd; /* eventfd, written when a message goes into an empty queue */
    struct event *ev;
};

/* One backlog count in flight; detached when the api is freed. */
struct count_req {
    struct pgw_http_api *api;
    int64_t accepted_at_send;
};

struct pgw_http_api {
    struct event_base *base;
    struct pgw_config *cfg;
    struct pgw_store *store;
    struct pgw_metrics *metrics;
    struct pgw_http_api_dispatch dispatch;
    pgw_http_api_ready_fn ready;
    void *ready_arg;
    unsigned lease_ms;
    size_t max_inflight;
    unsigned backlog_refresh_ms;

    /* The webhook listener runs on its own thread and event_base (see
     * "intake thread"): http, bound, ssl_ctx, the guards and i_stopped
     * belong to it once it started. */
    struct event_base *ibase;
    pthread_t thread;
    bool threaded;          /* the intake thread runs */
    pthread_mutex_t mu;     /* the queues, ctl, stop_acked */
    pthread_cond_t cond;    /* stop_acked set */
    pthread_mutex_t cfg_mu; /* cfg, key digests, mac: held by the
                               intake thread per request */
    bool sync_init;         /* mu, cond and cfg_mu initialised */
    struct xqueue to_main, to_intake;
    unsigned ctl; /* CTL_* bits for the intake thread */
    bool stop_acked;
    bool i_stopped; /* the intake thread's view of intake_stopped */

    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct evhttp *admin;
    struct evhttp_bound_socket *admin_bound;
    SSL_CTX *ssl_ctx;
    bool intake_stopped;

    unsigned char hmac_key[32];
    /* HMAC-SHA256 under hmac_key, ready to be copied per digest: the
     * one-shot HMAC() fetched the algorithm and took OpenSSL's locks for
     * every call, two calls per request (7 % of a chat event's CPU). */
    EVP_MAC_CTX *mac;
    /* The digests of cfg's apps' hook keys, index as in cfg->apps. */
    unsigned char (*key_digests)[32];
    size_t n_key_digests;

    struct intake *intakes; /* waiting for the store */
    size_t inflight_events;

    /* Per-connection request deadline (slowloris): see guard_in(). */
    unsigned request_deadline_ms;
    struct conn_guard **guards; /* open addressing, keyed by bufferevent */
    size_t guards_cap;
    size_t guards_n;
    struct event *guard_timer;

    struct event *backlog_timer;
    struct count_req *count_req; /* outstanding count, or NULL */
    int64_t backlog_last;        /* last count from the store */
    int64_t accepted_total;      /* new events accepted, ever */
    int64_t accepted_at_count;   /* accepted_total when it was sent */
    struct pgw_metric_series *backlog_gauge;
};

static void guard_request_done(struct pgw_http_api *api,
                               struct evhttp_request *req);

/* ---- small helpers ------------------------------------------------------ */

static void count_result(struct pgw_http_api *api, const char *app,
                         enum result r, double n)
{
    if (api->metrics == NULL)
        return;
    pgw_metric_add(
        pgw_metrics_series2(pgw_metrics_std(api->metrics, PGW_M_EVENTS_TOTAL),
                            app, result_names[r]),
        n);
}

static void update_backlog_gauge(struct pgw_http_api *api)
{
    pgw_metric_set(api->backlog_gauge, (double)pgw_http_api_backlog(api));
}

/* Appends |s| as a JSON string (quotes included). */
static int add_json_string(struct evbuffer *buf, const char *s)
{
    char small[512];
    size_t need = pgw_log_json_string(small, sizeof(small), s);
    if (need < sizeof(small))
        return evbuffer_add(buf, small, need);
    char *big = malloc(need + 1);
    if (big == NULL)
        return -1;
    pgw_log_json_string(big, need + 1, s);
    int r = evbuffer_add(buf, big, need);
    free(big);
    return r;
}

static void send_json(struct evhttp_request *req, int code, const char *reason,
                      struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, body);
}

/* {"error":…,"field":…} with |code|; |retry_after| may be NULL. */
static void send_error(struct evhttp_request *req, int code, const char *reason,
                       const char *error, const char *field,
                       const char *retry_after)
{
    struct evbuffer *body = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (retry_after != NULL)
        evhttp_add_header(h, "Retry-After", retry_after);
    if (body == NULL || evbuffer_add_printf(body, "{\"error\":") < 0 ||
        add_json_string(body, error) < 0 ||
        evbuffer_add_printf(body, ",\"field\":") < 0 ||
        add_json_string(body, field != NULL ? field : "") < 0 ||
        evbuffer_add(body, "}", 1) < 0) {
        /* Out of memory: the status alone still tells the broker. */
        if (body != NULL)
            evbuffer_drain(body, evbuffer_get_length(body));
    }
    send_json(req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* The reader of |q| reads its eventfd before taking the queue, so what is
 * posted meanwhile is either taken or wakes it again. */
static void wake(struct xqueue *q)
{
    uint64_t one = 1;

    if (write(q->efd, &one, sizeof(one)) < 0)
        pgw_log_error("could not wake a thread: %s", strerror(errno));
}

/* Appends |m| to |q| and wakes its thread if |q| was empty. */
static void post(struct pgw_http_api *api, struct xqueue *q, struct xmsg *m)
{
    bool was_empty;

    m->next = NULL;
    pthread_mutex_lock(&api->mu);
    if (q->tail != NULL)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    was_empty = q->head == m;
    pthread_mutex_unlock(&api->mu);
    if (was_empty)
        wake(q);
}

/* Asks the intake thread for |bit| (CTL_*). */
static void post_ctl(struct pgw_http_api *api, unsigned bit)
{
    pthread_mutex_lock(&api->mu);
    api->ctl |= bit;
    pthread_mutex_unlock(&api->mu);
    wake(&api->to_intake);
}

/* Takes every message of |q|, oldest first, and (|ret_ctl| not NULL) the
 * CTL_* bits asked for. */
static struct xmsg *take_all(struct pgw_http_api *api, struct xqueue *q,
                             unsigned *ret_ctl)
{
    struct xmsg *m;
    uint64_t v;

    if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        pgw_log_error("could not read a wake-up: %s", strerror(errno));
    pthread_mutex_lock(&api->mu);
    m = q->head;
    q->head = q->tail = NULL;
    if (ret_ctl) {
        *ret_ctl = api->ctl;
        api->ctl = 0;
    }
    pthread_mutex_unlock(&api->mu);
    return m;
}

static void intake_free(struct intake *in);

static void xmsg_free(struct xmsg *m)
{
    for (size_t i = 0; i < m->n_texts; i++)
        cJSON_free(m->texts[i]);
    if (m->in != NULL)
        intake_free(m->in);
    free(m->texts);
    free(m->lens);
    free(m->app);
    if (m->json != NULL)
        evbuffer_free(m->json);
    free(m->why);
    free(m->field);
    free(m);
}

/* Sends the answer |m| carries (on the thread that owns the request). */
static void do_reply(struct xmsg *m)
{
    if (m->close)
        evhttp_add_header(evhttp_request_get_output_headers(m->req),
                          "Connection", "close");
    if (m->json != NULL)
        send_json(m->req, m->code, m->reason, m->json);
    else
        send_error(m->req, m->code, m->reason, m->why ? m->why : "",
                   m->field ? m->field : "", m->retry_after);
}

/* The loop thread's answers, sent by the intake thread (it owns the
 * request). |json| (owned from here) is the body, or NULL for an error
 * body from |error| and |field|. */
static void reply(struct pgw_http_api *api, struct evhttp_request *req,
                  int code, const char *reason, struct evbuffer *json,
                  const char *error, const char *field, const char *retry_after,
                  bool close)
{
    struct xmsg *m = calloc(1, sizeof(*m));

    if (m != NULL && json == NULL) {
        m->why = strdup(error != NULL ? error : "");
        m->field = strdup(field != NULL ? field : "");
    }
    if (m == NULL || (json == NULL && (m->why == NULL || m->field == NULL))) {
        /* Nothing reaches the intake thread without memory: the request
         * is left to its connection's timeout. */
        pgw_log_error("out of memory answering a request");
        if (m != NULL)
            xmsg_free(m);
        if (json != NULL)
            evbuffer_free(json);
        return;
    }
    m->kind = X_REPLY;
    m->req = req;
    m->code = code;
    m->reason = reason;
    m->json = json;
    m->retry_after = retry_after;
    m->close = close;
    post(api, &api->to_intake, m);
}

static void reply_error(struct pgw_http_api *api, struct evhttp_request *req,
                        int code, const char *reason, const char *error,
                        const char *field, const char *retry_after)
{
    reply(api, req, code, reason, NULL, error, field, retry_after, false);
}

/* The intake thread's results: counted on the loop thread, which owns the
 * metrics. */
static void icount(struct pgw_http_api *api, const char *app, enum result r,
                   double n)
{
    struct xmsg *m;

    if (api->metrics == NULL)
        return;
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->app = strdup(app)) == NULL) {
        free(m);
        return; /* a count lost for want of memory */
    }
    m->kind = X_COUNT;
    m->result = r;
    m->n = n;
    post(api, &api->to_main, m);
}

/* HMAC-SHA256 of |s| under the process key; false if it failed. */
static bool digest(const struct pgw_http_api *api, const char *s,
                   unsigned char out[32])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(api->mac);
    size_t len = 0;
    bool ok = c != NULL &&
              EVP_MAC_update(c, (const unsigned char *)s, strlen(s)) == 1 &&
              EVP_MAC_final(c, out, &len, 32) == 1 && len == 32;

    EVP_MAC_CTX_free(c);
    return ok;
}

/* The digests of the hook keys of |api|'s config, once per config. */
static int digest_keys(struct pgw_http_api *api)
{
    const struct pgw_config *cfg = api->cfg;
    unsigned char(*d)[32] = calloc(cfg->n_apps ? cfg->n_apps : 1, 32);

    if (d == NULL)
        return PGW_ERR_NOMEM;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const char *k = cfg->apps[i].hook_key;
        /* A missing key or a failed digest stays all zero: refused. */
        if (k != NULL && k[0] != '\0' && !digest(api, k, d[i]))
            memset(d[i], 0, 32);
    }
    if (api->key_digests != NULL)
        OPENSSL_cleanse(api->key_digests, api->n_key_digests * 32);
    free(api->key_digests);
    api->key_digests = d;
    api->n_key_digests = cfg->n_apps;
    return 0;
}

/* Constant-time: the digests have the same length whatever the inputs. */
static bool key_matches(const struct pgw_http_api *api,
                        const struct pgw_app *app, const char *given)
{
    static const unsigned char zero[32];
    const unsigned char *want = api->key_digests[app - api->cfg->apps];
    unsigned char got[32];

    if (given == NULL || CRYPTO_memcmp(want, zero, 32) == 0 ||
        !digest(api, given, got))
        return false;
    return CRYPTO_memcmp(want, got, sizeof(got)) == 0;
}

/* application/json, case-insensitive, parameters after ';' allowed. */
static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    ct += sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* ---- routing ------------------------------------------------------------ */

enum route {
    ROUTE_NONE,
    ROUTE_SINGLE, /* app in the path */
    ROUTE_ALIAS,  /* app in X-LC-Id */
    ROUTE_BATCH,
};

/*
 * Matches |path|; for the /v1 routes stores the decoded app id (malloc'd)
 * in |*ret_app| (NULL when it is unusable: too long, NUL inside).
 */
static enum route match_route(const char *path, char **ret_app)
{
    static const char prefix[] = "/v1/apps/";
    static const char single[] = "/receivers-offline";
    static const char batch[] = "/receivers-offline/batch";

    *ret_app = NULL;
    if (path == NULL)
        return ROUTE_NONE;
    if (strcmp(path, "/1.1/functions/_receiversOffline") == 0)
        return ROUTE_ALIAS;
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return ROUTE_NONE;
    const char *seg = path + sizeof(prefix) - 1;
    const char *slash = strchr(seg, '/');
    if (slash == NULL || slash == seg)
        return ROUTE_NONE;
    enum route r;
    if (strcmp(slash, single) == 0)
        r = ROUTE_SINGLE;
    else if (strcmp(slash, batch) == 0)
        r = ROUTE_BATCH;
    else
        return ROUTE_NONE;
    size_t seg_len = (size_t)(slash - seg);
    if (seg_len <= MAX_APP_ID_BYTES * 3) {
        char raw[MAX_APP_ID_BYTES * 3 + 1];
        memcpy(raw, seg, seg_len);
        raw[seg_len] = '\0';
        size_t len = 0;
        char *dec = evhttp_uridecode(raw, 0, &len);
        if (dec != NULL &&
            (len == 0 || len > MAX_APP_ID_BYTES || strlen(dec) != len)) {
            free(dec);
            dec = NULL;
        }
        *ret_app = dec;
    }
    return r;
}

/* ---- intake ------------------------------------------------------------- */

static void intake_unlink(struct intake *in)
{
    struct pgw_http_api *api = in->api;
    if (api == NULL)
        return;
    if (in->prev != NULL)
        in->prev->next = in->next;
    else
        api->intakes = in->next;
    if (in->next != NULL)
        in->next->prev = in->prev;
    in->prev = in->next = NULL;
    api->inflight_events -= in->n;
}

static void intake_free(struct intake *in)
{
    for (size_t i = 0; i < in->n; i++)
        pgw_event_free(in->items[i].ev);
    free(in->app_id);
    free(in);
}

/* Every callback ran: answer, hand new events over, free. */
static void intake_finish(struct intake *in)
{
    struct pgw_http_api *api = in->api;
    size_t n_failed = 0, n_new = 0, n_dup = 0, n_unleased = 0;
    struct evbuffer *body = NULL;

    intake_unlink(in);
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
        if (api != NULL && it->reserved && api->dispatch.accepted != NULL) {
            /* the count the reservation was made with */
            size_t recipients = it->ev->n_offline_peers;

            if (fresh) {
                struct pgw_event *ev = it->ev;
                it->ev = NULL;
                api->dispatch.accepted(api->dispatch.arg, it->id, in->app_id,
                                       ev, recipients);
            } else {
                api->dispatch.accepted(api->dispatch.arg, 0, in->app_id, NULL,
                                       recipients);
            }
        }
    }
    if (api != NULL && n_unleased > 0 && api->dispatch.stored != NULL)
        api->dispatch.stored(api->dispatch.arg);
    if (api != NULL) {
        api->accepted_total += (int64_t)n_new;
        count_result(api, in->app_id, R_ACCEPTED, (double)n_new);
        count_result(api, in->app_id, R_DUPLICATE, (double)n_dup);
        count_result(api, in->app_id, R_UNAVAILABLE, (double)n_failed);
        update_backlog_gauge(api);
    }
    /* A request still to answer implies the api (see free). */
    if (in->req == NULL || api == NULL)
        goto out;
    if (n_failed > 0 || in->queue_err != 0) {
        reply_error(api, in->req, 503, "Service Unavailable",
                    "database unavailable", "", RETRY_AFTER_DOWN);
        goto out;
    }
    body = evbuffer_new();
    if (body == NULL)
        goto oom;
    if (in->batch && evbuffer_add_printf(body, "{\"events\":[") < 0)
        goto oom;
    for (size_t i = 0; i < in->n; i++) {
        const struct item *it = &in->items[i];
        if (evbuffer_add_printf(body,
                                "%s{\"eventId\":\"%lld\",\"duplicate\":%s}",
                                i > 0 ? "," : "", (long long)it->id,
                                it->duplicate ? "true" : "false") < 0)
            goto oom;
    }
    if (in->batch && evbuffer_add_printf(body, "]}") < 0)
        goto oom;
    reply(api, in->req, 202, "Accepted", body, NULL, NULL, NULL, false);
    body = NULL;
    goto out;
oom:
    /* The events are stored; a 503 makes the broker retry, and msgIds (if
     * any) deduplicate. Nothing better is possible without memory. */
    reply_error(api, in->req, 503, "Service Unavailable", "out of memory", "",
                RETRY_AFTER_DOWN);
out:
    if (body != NULL)
        evbuffer_free(body);
    in->req = NULL;
    intake_free(in);
}

/* Fires once per insert, after the commit or the failure; frees the intake
 * with its last item. */
static void on_inserted(void *arg, int err, int64_t event_id, bool duplicate)
{
    struct item *it = arg;
    struct intake *in = it->intake;

    it->done = true;
    it->err = err;
    it->id = event_id;
    it->duplicate = duplicate;
    if (--in->waiting == 0)
        intake_finish(in);
}

/*
 * Queues the inserts of |in| (its events parsed, |bodies| the JSON text of
 * each). Answers the request itself when nothing could be queued.
 */
static void intake_start(struct pgw_http_api *api, struct intake *in,
                         const char *const *bodies, const size_t *body_lens)
{
    in->api = api;
    in->next = api->intakes;
    if (api->intakes != NULL)
        api->intakes->prev = in;
    api->intakes = in;
    api->inflight_events += in->n;
    /* One extra count held while queueing, so a callback cannot finish the
     * intake before every insert is queued. */
    in->waiting = 1;
    for (size_t i = 0; i < in->n; i++) {
        struct item *it = &in->items[i];
        struct pgw_store_new_event ne = {
            .app_id = in->app_id,
            .conv_id = it->ev->conv_id,
            .msg_id = it->ev->msg_id,
            .body = bodies[i],
            .body_len = body_lens[i],
            .event_ts_ms = it->ev->timestamp_ms,
        };
        it->intake = in;
        if (api->dispatch.accepted != NULL &&
            (api->dispatch.reserve == NULL ||
             api->dispatch.reserve(api->dispatch.arg,
                                   it->ev->n_offline_peers))) {
            it->reserved = true;
            ne.lease = true;
            ne.lease_ms = api->lease_ms;
        }
        in->waiting++;
        int err = pgw_store_insert_event(api->store, &ne, on_inserted, it);
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
    if (--in->waiting == 0)
        intake_finish(in);
}

/* Reads the body into one contiguous block; NULL when empty. */
static const char *request_body(struct evhttp_request *req, size_t *ret_len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    *ret_len = len;
    if (len == 0)
        return "";
    return (const char *)evbuffer_pullup(in, -1);
}

static struct intake *intake_new(const char *app_id, size_t n, bool batch)
{
    struct intake *in = calloc(1, sizeof(*in) + n * sizeof(struct item));
    if (in == NULL)
        return NULL;
    in->app_id = strdup(app_id);
    if (in->app_id == NULL) {
        free(in);
        return NULL;
    }
    in->n = n;
    in->batch = batch;
    return in;
}

/* Admission control shared by both kinds: 0 to go on, or answered. */
static int admit(struct pgw_http_api *api, struct evhttp_request *req,
                 const char *app_id, size_t n)
{
    long long bound = api->cfg->server.max_backlog_events;
    if (bound > 0 && pgw_http_api_backlog(api) + (int64_t)n > bound) {
        count_result(api, app_id, R_BACKLOG_FULL, 1);
        reply_error(api, req, 429, "Too Many Requests", "backlog full", "",
                    RETRY_AFTER_BUSY);
        return -1;
    }
    if (api->inflight_events + n > api->max_inflight) {
        count_result(api, app_id, R_BACKLOG_FULL, 1);
        reply_error(api, req, 429, "Too Many Requests",
                    "too many events waiting for the database", "",
                    RETRY_AFTER_BUSY);
        return -1;
    }
    if (!pgw_store_is_up(api->store)) {
        count_result(api, app_id, R_UNAVAILABLE, 1);
        reply_error(api, req, 503, "Service Unavailable",
                    "database unavailable", "", RETRY_AFTER_DOWN);
        return -1;
    }
    return 0;
}

static void answer_invalid(struct pgw_http_api *api, struct evhttp_request *req,
                           const char *app_id, int err,
                           const struct pgw_event_error *e)
{
    if (err == PGW_ERR_TOO_LARGE) {
        icount(api, app_id, R_TOO_LARGE, 1);
        send_error(req, 413, "Payload Too Large", e->reason, e->field, NULL);
    } else if (err == PGW_ERR_NOMEM) {
        icount(api, app_id, R_UNAVAILABLE, 1);
        send_error(req, 503, "Service Unavailable", "out of memory", "",
                   RETRY_AFTER_BUSY);
    } else {
        icount(api, app_id, R_INVALID, 1);
        send_error(req, 400, "Bad Request", e->reason, e->field, NULL);
    }
}

/* On the loop thread: admits the events of |m| (a request the intake
 * thread parsed) and queues their inserts, or answers. */
static void admit_request(struct pgw_http_api *api, struct xmsg *m)
{
    struct intake *in = m->in;

    m->in = NULL;
    if (api->intake_stopped) {
        reply(api, m->req, 503, "Service Unavailable", NULL, "shutting down",
              "", RETRY_AFTER_DOWN, true);
    } else if (admit(api, m->req, in->app_id, in->n) == 0) {
        in->req = m->req;
        if (m->texts != NULL) {
            intake_start(api, in, (const char *const *)m->texts, m->lens);
        } else {
            const char *bodies[1] = {m->body};
            size_t lens[1] = {m->body_len};
            intake_start(api, in, bodies, lens);
        }
        in = NULL; /* owned by its callbacks now */
    }
    if (in != NULL)
        intake_free(in);
}

/* On the intake thread: hands the parsed events of |in| (|texts| and
 * |lens|, owned from here, or the request's |body|) to the loop thread,
 * which admits them (admit_request). */
static void hand_over(struct pgw_http_api *api, struct evhttp_request *req,
                      struct intake *in, char **texts, size_t *lens,
                      const char *body, size_t body_len)
{
    struct xmsg *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        icount(api, in->app_id, R_UNAVAILABLE, 1);
        send_error(req, 503, "Service Unavailable", "out of memory", "",
                   RETRY_AFTER_BUSY);
        if (texts != NULL)
            for (size_t i = 0; i < in->n; i++)
                cJSON_free(texts[i]);
        free(texts);
        free(lens);
        intake_free(in);
        return;
    }
    m->kind = X_REQUEST;
    m->req = req;
    m->in = in;
    m->texts = texts;
    m->lens = lens;
    m->n_texts = texts != NULL ? in->n : 0;
    m->body = body;
    m->body_len = body_len;
    post(api, &api->to_main, m);
}

static void handle_single(struct pgw_http_api *api, struct evhttp_request *req,
                          const char *app_id, const char *body, size_t len,
                          const struct pgw_event_limits *lim)
{
    struct pgw_event *ev = NULL;
    struct pgw_event_error e = {{0}, {0}};
    int err = pgw_event_parse(body, len, lim, &ev, &e);
    if (err < 0) {
        answer_invalid(api, req, app_id, err, &e);
        return;
    }
    struct intake *in = intake_new(app_id, 1, false);
    if (in == NULL) {
        pgw_event_free(ev);
        icount(api, app_id, R_UNAVAILABLE, 1);
        send_error(req, 503, "Service Unavailable", "out of memory", "",
                   RETRY_AFTER_BUSY);
        return;
    }
    in->items[0].ev = ev;
    hand_over(api, req, in, NULL, NULL, body, len);
}

static void handle_batch(struct pgw_http_api *api, struct evhttp_request *req,
                         const char *app_id, const char *body, size_t len,
                         const struct pgw_event_limits *lim)
{
    cJSON *root = NULL;
    struct intake *in = NULL;
    char **texts = NULL;
    size_t *lens = NULL;
    struct pgw_event_error e = {{0}, {0}};
    size_t off = 0;
    const char *why = NULL;
    size_t n = 0;
    int err;

    err = pgw_event_json_parse(body, len, NULL, &root, &off, &why);
    if (err < 0) {
        if (err != PGW_ERR_NOMEM)
            snprintf(e.reason, sizeof(e.reason), "invalid JSON at byte %zu: %s",
                     off, why != NULL ? why : "malformed");
        answer_invalid(api, req, app_id, err, &e);
        goto out;
    }
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
    err = PGW_ERR_INVAL;
    snprintf(e.field, sizeof(e.field), "events");
    if (!cJSON_IsObject(root)) {
        snprintf(e.reason, sizeof(e.reason), "body must be a JSON object");
        e.field[0] = '\0';
    } else if (events == NULL) {
        snprintf(e.reason, sizeof(e.reason), "required");
    } else if (!cJSON_IsArray(events)) {
        snprintf(e.reason, sizeof(e.reason), "must be an array");
    } else if ((n = (size_t)cJSON_GetArraySize(events)) == 0) {
        snprintf(e.reason, sizeof(e.reason), "must not be empty");
    } else if (n > PGW_HTTP_API_MAX_BATCH) {
        snprintf(e.reason, sizeof(e.reason), "more than %d events",
                 PGW_HTTP_API_MAX_BATCH);
    } else {
        err = 0;
    }
    if (err < 0) {
        answer_invalid(api, req, app_id, err, &e);
        goto out;
    }

    in = intake_new(app_id, n, true);
    texts = calloc(n, sizeof(*texts));
    lens = calloc(n, sizeof(*lens));
    if (in == NULL || texts == NULL || lens == NULL) {
        answer_invalid(api, req, app_id, PGW_ERR_NOMEM, &e);
        goto out;
    }
    size_t i = 0;
    const cJSON *elem;
    cJSON_ArrayForEach(elem, events)
    {
        struct pgw_event_error ee = {{0}, {0}};
        err = pgw_event_from_json(elem, lim, &in->items[i].ev, &ee);
        if (err < 0) {
            /* "events[3].convId", cut to the field's size. */
            int k = snprintf(e.field, sizeof(e.field), "events[%zu]", i);
            size_t at = k > 0 ? (size_t)k : 0;
            if (ee.field[0] != '\0' && at + 2 < sizeof(e.field)) {
                size_t m = strnlen(ee.field, sizeof(e.field) - at - 2);
                e.field[at] = '.';
                memcpy(e.field + at + 1, ee.field, m);
                e.field[at + 1 + m] = '\0';
            }
            memcpy(e.reason, ee.reason, sizeof(e.reason));
            answer_invalid(api, req, app_id, err, &e);
            goto out;
        }
        /* The body stored for each event is its own JSON text. */
        texts[i] = cJSON_PrintUnformatted(elem);
        if (texts[i] == NULL) {
            answer_invalid(api, req, app_id, PGW_ERR_NOMEM, &e);
            goto out;
        }
        lens[i] = strlen(texts[i]);
        i++;
    }
    hand_over(api, req, in, texts, lens, NULL, 0);
    in = NULL;
    texts = NULL;
    lens = NULL;
out:
    if (texts != NULL) {
        for (size_t j = 0; j < n; j++)
            cJSON_free(texts[j]);
    }
    free(texts);
    free(lens);
    if (in != NULL)
        intake_free(in);
    cJSON_Delete(root);
}

/* A request on the webhook listener, on the intake thread with cfg_mu
 * held: answered now, or handed over to the loop thread. */
static void webhook(struct pgw_http_api *api, struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct evkeyvalq *hdr = evhttp_request_get_input_headers(req);
    char *path_app = NULL;
    const char *app_id;
    enum route route;

    guard_request_done(api, req);
    if (api->i_stopped) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                          "close");
        send_error(req, 503, "Service Unavailable", "shutting down", "",
                   RETRY_AFTER_DOWN);
        return;
    }
    route =
        match_route(uri != NULL ? evhttp_uri_get_path(uri) : NULL, &path_app);
    if (route == ROUTE_NONE) {
        send_error(req, 404, "Not Found", "not found", "", NULL);
        goto out;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "POST");
        send_error(req, 405, "Method Not Allowed", "method not allowed", "",
                   NULL);
        goto out;
    }

    const struct pgw_config *cfg = api->cfg;
    const struct pgw_app *app = NULL;
    const char *app_field = "appId";
    if (route == ROUTE_ALIAS) {
        app_id = evhttp_find_header(hdr, "X-LC-Id");
        app_field = "X-LC-Id";
        if (app_id != NULL && strlen(app_id) > MAX_APP_ID_BYTES)
            app_id = NULL;
    } else {
        app_id = path_app;
    }
    if (app_id != NULL)
        app = pgw_config_find_app(cfg, app_id);
    if (app == NULL) {
        /* The id is the client's: never a label value. */
        icount(api, "", R_UNKNOWN_APP, 1);
        send_error(req, 404, "Not Found", "unknown app", app_field, NULL);
        goto out;
    }
    app_id = app->id;

    if (!key_matches(api, app, evhttp_find_header(hdr, "X-LC-Hook-Key"))) {
        icount(api, app_id, R_UNAUTHORIZED, 1);
        send_error(req, 401, "Unauthorized", "invalid or missing hook key",
                   "X-LC-Hook-Key", NULL);
        goto out;
    }
    if (!is_json_type(evhttp_find_header(hdr, "Content-Type"))) {
        icount(api, app_id, R_UNSUPPORTED_MEDIA, 1);
        send_error(req, 415, "Unsupported Media Type",
                   "content type must be application/json", "Content-Type",
                   NULL);
        goto out;
    }

    struct pgw_event_limits lim;
    pgw_event_limits_from_config(cfg, &lim);
    size_t len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (len > lim.max_body_bytes) {
        char why[96];
        snprintf(why, sizeof(why), "body over %zu bytes", lim.max_body_bytes);
        icount(api, app_id, R_TOO_LARGE, 1);
        send_error(req, 413, "Payload Too Large", why, "", NULL);
        goto out;
    }
    const char *body = request_body(req, &len);
    if (body == NULL) {
        icount(api, app_id, R_UNAVAILABLE, 1);
        send_error(req, 503, "Service Unavailable", "out of memory", "",
                   RETRY_AFTER_BUSY);
        goto out;
    }
    if (route == ROUTE_BATCH)
        handle_batch(api, req, app_id, body, len, &lim);
    else
        handle_single(api, req, app_id, body, len, &lim);
out:
    free(path_app);
}

/* Fires for every request on the webhook listener (the intake thread);
 * answers now or from the insert callbacks. Frees nothing the caller
 * uses. */
static void on_webhook(struct evhttp_request *req, void *arg)
{
    struct pgw_http_api *api = arg;

    pthread_mutex_lock(&api->cfg_mu);
    webhook(api, req);
    pthread_mutex_unlock(&api->cfg_mu);
}

/* ---- admin -------------------------------------------------------------- */

static void send_status(struct evhttp_request *req, int code,
                        const char *reason, const char *why)
{
    struct evbuffer *body = evbuffer_new();
    if (body != NULL) {
        if (why == NULL) {
            evbuffer_add_printf(body, "{\"status\":\"ok\"}");
        } else {
            evbuffer_add_printf(body,
                                "{\"status\":\"unavailable\",\"reason\":");
            add_json_string(body, why);
            evbuffer_add(body, "}", 1);
        }
    }
    send_json(req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* Fires for every request on the admin listener; answers at once. */
static void on_admin(struct evhttp_request *req, void *arg)
{
    struct pgw_http_api *api = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bool metrics =
        path != NULL && strcmp(path, "/metrics") == 0 && api->metrics != NULL;
    bool health = path != NULL && strcmp(path, "/healthz") == 0;
    bool ready = path != NULL && strcmp(path, "/readyz") == 0;

    if (!metrics && !health && !ready) {
        send_error(req, 404, "Not Found", "not found", "", NULL);
        return;
    }
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        send_error(req, 405, "Method Not Allowed", "method not allowed", "",
                   NULL);
        return;
    }
    if (health) {
        send_status(req, 200, "OK", NULL);
        return;
    }
    if (ready) {
        const char *why = NULL;
        if (!pgw_store_is_up(api->store)) {
            why = pgw_store_last_error(api->store);
            if (why == NULL || why[0] == '\0')
                why = "database unavailable";
        } else if (api->ready != NULL && !api->ready(api->ready_arg, &why)) {
            if (why == NULL)
                why = "not ready";
        }
        if (why != NULL)
            send_status(req, 503, "Service Unavailable", why);
        else
            send_status(req, 200, "OK", NULL);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    update_backlog_gauge(api);
    struct evbuffer *body = evbuffer_new();
    if (body == NULL || pgw_metrics_render(api->metrics, &text, &len) < 0 ||
        evbuffer_add(body, text, len) < 0) {
        evhttp_send_error(req, 503, "out of memory");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", body);
    }
    free(text);
    if (body != NULL)
        evbuffer_free(body);
}

/* ---- backlog ------------------------------------------------------------ */

/* Fires when a backlog count finished; frees its request. */
static void on_backlog_count(void *arg, int err, int64_t count)
{
    struct count_req *cr = arg;
    struct pgw_http_api *api = cr->api;
    if (api != NULL) {
        api->count_req = NULL;
        if (err == 0) {
            api->backlog_last = count;
            api->accepted_at_count = cr->accepted_at_send;
            update_backlog_gauge(api);
        }
    }
    free(cr);
}

/* Fires every backlog_refresh_ms; one count at a time. */
static void on_backlog_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_http_api *api = arg;
    (void)fd;
    (void)what;
    if (api->count_req != NULL || !pgw_store_is_up(api->store))
        return;
    struct count_req *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return;
    cr->api = api;
    cr->accepted_at_send = api->accepted_total;
    if (pgw_store_count_backlog(api->store, on_backlog_count, cr) < 0) {
        free(cr);
        return;
    }
    api->count_req = cr;
}

int64_t pgw_http_api_backlog(const struct pgw_http_api *self)
{
    return self->backlog_last +
           (self->accepted_total - self->accepted_at_count);
}

size_t pgw_http_api_pending(const struct pgw_http_api *self)
{
    return self->inflight_events;
}

/* ---- intake thread ------------------------------------------------------
 *
 * The webhook listener has a thread and event_base of its own: reading
 * and parsing requests, checking keys, parsing and validating events and
 * writing the answers (evhttp, cJSON, HMAC, the sockets) was two fifths
 * of the loop thread's time per chat event, and the loop thread was the
 * critical path (docs/BENCHMARKS.md). The intake thread hands parsed
 * events to the loop thread (X_REQUEST), which admits them, inserts them
 * and passes the answer back (X_REPLY); results counted on the intake
 * thread go to the loop thread's metrics (X_COUNT). Each side owns its
 * objects: the intake thread the webhook evhttp, its connections and
 * requests, the guards and TLS; the loop thread everything else. A
 * request's pointer crosses over but only the intake thread touches it
 * (evhttp keeps a request until it is answered, even if its client went
 * away). The config and the hook-key digests are swapped under cfg_mu,
 * which the intake thread holds while it works on a request.
 */

static void apply_limits(struct pgw_http_api *api);

/* The loop thread's queue: requests to admit, counts. */
static void on_main_wake(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_http_api *api = arg;
    struct xmsg *m = take_all(api, &api->to_main, NULL);
    (void)fd;
    (void)what;

    while (m != NULL) {
        struct xmsg *next = m->next;

        if (m->kind == X_REQUEST)
            admit_request(api, m);
        else if (m->kind == X_COUNT)
            count_result(api, m->app, m->result, m->n);
        xmsg_free(m);
        m = next;
    }
}

/* Closes the listener (on the intake thread). */
static void close_listener(struct pgw_http_api *api)
{
    api->i_stopped = true;
    if (api->bound != NULL) {
        evhttp_del_accept_socket(api->http, api->bound);
        api->bound = NULL;
    }
}

/* The intake thread's queue: answers, then what the loop thread asked
 * (limits, stop, quit: after the answers queued before it). */
static void on_intake_wake(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_http_api *api = arg;
    unsigned ctl;
    struct xmsg *m = take_all(api, &api->to_intake, &ctl);
    (void)fd;
    (void)what;

    while (m != NULL) {
        struct xmsg *next = m->next;

        do_reply(m); /* only X_REPLY comes this way */
        xmsg_free(m);
        m = next;
    }
    if (ctl & CTL_LIMITS) {
        pthread_mutex_lock(&api->cfg_mu);
        apply_limits(api);
        pthread_mutex_unlock(&api->cfg_mu);
    }
    if (ctl & CTL_STOP) {
        close_listener(api);
        pthread_mutex_lock(&api->mu);
        api->stop_acked = true;
        pthread_cond_broadcast(&api->cond);
        pthread_mutex_unlock(&api->mu);
    }
    if (ctl & CTL_QUIT)
        event_base_loopbreak(api->ibase);
}

static void *intake_main(void *arg)
{
    struct pgw_http_api *api = arg;

    event_base_dispatch(api->ibase);
    return NULL;
}

static int queue_init(struct pgw_http_api *api, struct xqueue *q,
                      struct event_base *base, event_callback_fn cb)
{
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        pgw_log_error("eventfd: %s", strerror(errno));
        return PGW_ERR_IO;
    }
    q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, cb, api);
    if (q->ev == NULL || event_add(q->ev, NULL) < 0)
        return PGW_ERR_NOMEM;
    return 0;
}

static void queue_free(struct xqueue *q)
{
    struct xmsg *m = q->head;

    while (m != NULL) {
        struct xmsg *next = m->next;
        xmsg_free(m);
        m = next;
    }
    q->head = q->tail = NULL;
    if (q->ev != NULL)
        event_free(q->ev);
    q->ev = NULL;
    if (q->efd >= 0)
        close(q->efd);
    q->efd = -1;
}

/* Starts the intake thread, signals blocked in it (the loop thread takes
 * them). */
static int start_intake_thread(struct pgw_http_api *api)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&api->thread, NULL, intake_main, api);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pgw_log_error("could not start the intake thread: %s", strerror(rc));
        return PGW_ERR_NOMEM;
    }
    api->threaded = true;
    return 0;
}

/* Stops the intake thread and takes back what it owned: the requests
 * handed over and not admitted are answered, the answers not sent yet
 * are sent, by this thread from now on. */
static void stop_intake_thread(struct pgw_http_api *api)
{
    struct xmsg *m;

    if (!api->threaded)
        return;
    post_ctl(api, CTL_QUIT);
    pthread_join(api->thread, NULL);
    api->threaded = false;
    m = take_all(api, &api->to_main, NULL);
    while (m != NULL) {
        struct xmsg *next = m->next;

        if (m->kind == X_REQUEST) {
            evhttp_add_header(evhttp_request_get_output_headers(m->req),
                              "Connection", "close");
            send_error(m->req, 503, "Service Unavailable", "shutting down", "",
                       RETRY_AFTER_DOWN);
        } else if (m->kind == X_COUNT) {
            count_result(api, m->app, m->result, m->n);
        }
        xmsg_free(m);
        m = next;
    }
    m = take_all(api, &api->to_intake, NULL);
    while (m != NULL) {
        struct xmsg *next = m->next;

        do_reply(m);
        xmsg_free(m);
        m = next;
    }
}

/* ---- set-up ------------------------------------------------------------- */

/* Splits "host:port" or "[v6]:port" into |host| and |*ret_port|. */
static int parse_listen(const char *addr, char *host, size_t host_size,
                        unsigned short *ret_port)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t hl;
    if (colon == NULL || colon[1] == '\0')
        return PGW_ERR_CONFIG;
    hl = (size_t)(colon - addr);
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return PGW_ERR_CONFIG;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        return PGW_ERR_CONFIG;
    *ret_port = (unsigned short)port;
    return 0;
}

#define LISTEN_BACKLOG 4096

static int bind_listener(struct evhttp *http, const char *what,
                         const char *addr, struct evhttp_bound_socket **ret)
{
    char host[256];
    unsigned short port = 0;
    if (parse_listen(addr, host, sizeof(host), &port) < 0) {
        pgw_log_error("invalid %s address '%s': expected host:port", what,
                      addr);
        return PGW_ERR_CONFIG;
    }
    struct evhttp_bound_socket *b =
        evhttp_bind_socket_with_handle(http, host, port);
    if (b == NULL) {
        pgw_log_error("could not listen on '%s': %s", addr, strerror(errno));
        return PGW_ERR_IO;
    }
    /* libevent listens with a backlog of 128: a broker opening more
     * connections at once while the loop is busy had the SYNs beyond it
     * dropped and retried a second later (a second with no intake in the
     * benchmark). listen() again sets the backlog of the bound socket;
     * the kernel caps it at net.core.somaxconn. */
    if (listen(evhttp_bound_socket_get_fd(b), LISTEN_BACKLOG) < 0)
        pgw_log_warn("could not raise the listen backlog of '%s': %s", addr,
                     strerror(errno));
    *ret = b;
    return 0;
}

static int bound_port(const struct evhttp_bound_socket *b)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (b == NULL)
        return -1;
    evutil_socket_t fd =
        evhttp_bound_socket_get_fd((struct evhttp_bound_socket *)b);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int pgw_http_api_port(const struct pgw_http_api *self, bool admin)
{
    return bound_port(admin ? self->admin_bound : self->bound);
}

/* ---- request deadline ---------------------------------------------------
 *
 * libevent 2.1 restarts a connection's read timeout at every byte, so a
 * client trickling its headers one byte at a time is never timed out and
 * holds its socket forever (slowloris). Each webhook connection gets a
 * guard: a callback on its input buffer notes when a request's first
 * byte arrives, the handlers mark the request complete, and a sweep every
 * |request_deadline_ms| / 4 hands a request still incomplete after
 * |request_deadline_ms| to evhttp's own timeout path, which closes it. A
 * client that stops sending altogether meets the read timeout instead.
 *
 * The guard holds a reference on the bufferevent (bufferevent_incref), so
 * it stays valid after evhttp frees it; the sweep sees the callbacks
 * cleared by bufferevent_free() and drops the reference (the socket then
 * closes). Guards are found by bufferevent in a small hash.
 */
struct conn_guard {
    struct pgw_http_api *api;
    struct bufferevent *bev;
    struct timespec started;
    bool in_request;
};

static size_t guard_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static bool guard_grow(struct pgw_http_api *api)
{
    size_t cap = api->guards_cap ? api->guards_cap * 2 : 64;
    struct conn_guard **slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return false;
    for (size_t i = 0; i < api->guards_cap; i++) {
        struct conn_guard *g = api->guards[i];
        if (g == NULL)
            continue;
        size_t j = guard_hash(g->bev, cap);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = g;
    }
    free(api->guards);
    api->guards = slots;
    api->guards_cap = cap;
    return true;
}

static bool guard_add(struct pgw_http_api *api, struct conn_guard *g)
{
    size_t j;

    if ((api->guards_n + 1) * 2 > api->guards_cap && !guard_grow(api))
        return false;
    j = guard_hash(g->bev, api->guards_cap);
    while (api->guards[j] != NULL)
        j = (j + 1) & (api->guards_cap - 1);
    api->guards[j] = g;
    api->guards_n++;
    return true;
}

static size_t guard_slot(const struct pgw_http_api *api,
                         const struct bufferevent *bev)
{
    size_t j;

    if (api->guards_cap == 0 || bev == NULL)
        return SIZE_MAX;
    j = guard_hash(bev, api->guards_cap);
    while (api->guards[j] != NULL) {
        if (api->guards[j]->bev == bev)
            return j;
        j = (j + 1) & (api->guards_cap - 1);
    }
    return SIZE_MAX;
}

/* Empties slot |j|, moving back the entries that probed past it. */
static void guard_remove_slot(struct pgw_http_api *api, size_t j)
{
    size_t mask = api->guards_cap - 1;

    api->guards[j] = NULL;
    api->guards_n--;
    for (size_t i = (j + 1) & mask; api->guards[i] != NULL;
         i = (i + 1) & mask) {
        struct conn_guard *g = api->guards[i];
        size_t home = guard_hash(g->bev, api->guards_cap);
        /* |g| may fill the hole unless its home lies cyclically in
         * (j, i]. */
        bool stays = j < i ? (home > j && home <= i) : (home > j || home <= i);
        if (!stays) {
            api->guards[j] = g;
            api->guards[i] = NULL;
            j = i;
        }
    }
}

/* The request on |req|'s connection was read whole: stop its clock. */
static void guard_request_done(struct pgw_http_api *api,
                               struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    size_t j = guard_slot(
        api, evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL);

    if (j != SIZE_MAX)
        api->guards[j]->in_request = false;
}

static long long guard_elapsed_ms(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000LL +
           (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Fires when bytes are added to or drained from a connection's input. */
static void guard_input_cb(struct evbuffer *buf,
                           const struct evbuffer_cb_info *info, void *arg)
{
    struct conn_guard *g = arg;
    (void)buf;

    if (info->n_added > 0 && !g->in_request) {
        g->in_request = true;
        clock_gettime(CLOCK_MONOTONIC, &g->started);
    }
}

/* Fires every quarter deadline: closes overdue requests, forgets
 * connections evhttp has freed. */
static void guard_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_http_api *api = arg;
    (void)fd;
    (void)what;

    for (size_t j = 0; j < api->guards_cap; j++) {
        struct conn_guard *g = api->guards[j];
        bufferevent_event_cb ecb = NULL;
        void *cbarg = NULL;

        if (g == NULL)
            continue;
        bufferevent_getcb(g->bev, NULL, NULL, &ecb, &cbarg);
        if (ecb == NULL) {
            /* Freed by evhttp: drop our reference (closes the socket). */
            guard_remove_slot(api, j);
            bufferevent_decref(g->bev);
            free(g);
            j--; /* the slot may have been refilled by the shift */
            continue;
        }
        if (g->in_request && guard_elapsed_ms(&g->started) >
                                 (long long)api->request_deadline_ms) {
            g->in_request = false;
            /* evhttp's own read-timeout path: it frees the connection. */
            ecb(g->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, cbarg);
        }
    }
}

/* Guards the new connection bufferevent |bev|. On failure the connection
 * simply goes unguarded. */
static struct bufferevent *guard_wrap(struct pgw_http_api *api,
                                      struct bufferevent *bev)
{
    struct conn_guard *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return bev;
    g->api = api;
    g->bev = bev;
    if (!guard_add(api, g)) {
        free(g);
        return bev;
    }
    if (evbuffer_add_cb(bufferevent_get_input(bev), guard_input_cb, g) ==
        NULL) {
        guard_remove_slot(api, guard_slot(api, bev));
        free(g);
        return bev;
    }
    bufferevent_incref(bev);
    return bev;
}

/* Drops every guard (after evhttp_free(): their connections are gone). */
static void guard_free_all(struct pgw_http_api *api)
{
    for (size_t j = 0; j < api->guards_cap; j++) {
        struct conn_guard *g = api->guards[j];
        if (g == NULL)
            continue;
        api->guards[j] = NULL;
        bufferevent_decref(g->bev);
        free(g);
    }
    free(api->guards);
    api->guards = NULL;
    api->guards_cap = api->guards_n = 0;
}

/* Creates each plain connection's bufferevent, guarded. */
static struct bufferevent *plain_bevcb(struct event_base *base, void *arg)
{
    struct bufferevent *bev =
        bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    return bev ? guard_wrap(arg, bev) : NULL;
}

/* Creates each TLS connection's bufferevent. A NULL return makes evhttp
 * fall back to plain TCP, which a TLS client fails on at once. */
static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    struct pgw_http_api *api = arg;
    SSL *ssl = SSL_new(api->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return guard_wrap(api, bev);
}

static int load_tls(struct pgw_http_api *api, const struct pgw_config *cfg)
{
    unsigned long e;
    api->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (api->ssl_ctx == NULL)
        return PGW_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(api->ssl_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(api->ssl_ctx,
                                           cfg->server.tls_cert_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(api->ssl_ctx, cfg->server.tls_key_file,
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(api->ssl_ctx) != 1) {
        e = ERR_get_error();
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        ERR_clear_error();
        pgw_log_error("could not load the TLS certificate '%s' or key '%s': %s",
                      cfg->server.tls_cert_file, cfg->server.tls_key_file, buf);
        return PGW_ERR_TLS;
    }
    return 0;
}

/* evhttp's own limits, from the current config. */
static void apply_limits(struct pgw_http_api *api)
{
    long long max = api->cfg->server.max_body_bytes;
    if (max <= 0)
        max = 1048576;
    evhttp_set_max_body_size(api->http, max + PGW_HTTP_API_BODY_SLACK);
}

int pgw_http_api_new(const struct pgw_http_api_options *opts,
                     struct pgw_http_api **ret_api)
{
    struct pgw_http_api *api = NULL;
    const struct pgw_config *cfg = opts->cfg;
    int err = PGW_ERR_INVAL;

    if (opts->base == NULL || cfg == NULL || opts->store == NULL ||
        cfg->server.listen == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    api = calloc(1, sizeof(*api));
    if (api == NULL)
        goto out;
    api->to_main.efd = api->to_intake.efd = -1;
    if (pthread_mutex_init(&api->mu, NULL) != 0 ||
        pthread_mutex_init(&api->cfg_mu, NULL) != 0 ||
        pthread_cond_init(&api->cond, NULL) != 0) {
        free(api);
        api = NULL;
        goto out;
    }
    api->sync_init = true;
    api->base = opts->base;
    api->cfg = pgw_config_ref(opts->cfg);
    api->store = opts->store;
    api->metrics = opts->metrics;
    api->dispatch = opts->dispatch;
    api->ready = opts->ready;
    api->ready_arg = opts->ready_arg;
    api->lease_ms = opts->lease_ms ? opts->lease_ms : 60000;
    api->max_inflight =
        opts->max_inflight_events ? opts->max_inflight_events : 10000;
    api->backlog_refresh_ms =
        opts->backlog_refresh_ms ? opts->backlog_refresh_ms : 1000;
    api->request_deadline_ms = opts->timeout_ms ? opts->timeout_ms : 15000;
    if (api->metrics != NULL)
        api->backlog_gauge = pgw_metrics_series(
            pgw_metrics_std(api->metrics, PGW_M_BACKLOG_EVENTS), NULL);
    if (RAND_bytes(api->hmac_key, sizeof(api->hmac_key)) != 1) {
        err = PGW_ERR_CRYPTO;
        pgw_log_error("could not draw a random key: openssl rand failed");
        goto out;
    }
    {
        EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};

        api->mac = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
        EVP_MAC_free(hmac); /* the context holds its own reference */
        if (api->mac == NULL ||
            EVP_MAC_init(api->mac, api->hmac_key, sizeof(api->hmac_key),
                         params) != 1) {
            err = PGW_ERR_CRYPTO;
            pgw_log_error("could not set up HMAC-SHA256: openssl failed");
            goto out;
        }
    }
    err = digest_keys(api);
    if (err < 0)
        goto out;
    err = PGW_ERR_NOMEM;

    struct timeval tv = {
        .tv_sec = (opts->timeout_ms ? opts->timeout_ms : 15000) / 1000,
        .tv_usec = (opts->timeout_ms ? opts->timeout_ms : 15000) % 1000 * 1000,
    };
    ev_ssize_t max_hdr =
        (ev_ssize_t)(opts->max_header_bytes ? opts->max_header_bytes : 16384);

    {
        struct event_config *ec = event_config_new();

        if (ec == NULL)
            goto out;
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        api->ibase = event_base_new_with_config(ec);
        event_config_free(ec);
        if (api->ibase == NULL)
            goto out;
    }
    if (queue_init(api, &api->to_main, api->base, on_main_wake) < 0 ||
        queue_init(api, &api->to_intake, api->ibase, on_intake_wake) < 0)
        goto out;
    api->http = evhttp_new(api->ibase);
    if (api->http == NULL)
        goto out;
    evhttp_set_timeout_tv(api->http, &tv);
    evhttp_set_max_headers_size(api->http, max_hdr);
    evhttp_set_allowed_methods(
        api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                       EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(api->http, on_webhook, api);
    apply_limits(api);
    if (cfg->server.tls_cert_file != NULL && cfg->server.tls_cert_file[0]) {
        err = load_tls(api, cfg);
        if (err < 0)
            goto out;
        evhttp_set_bevcb(api->http, tls_bevcb, api);
    } else {
        evhttp_set_bevcb(api->http, plain_bevcb, api);
    }
    api->guard_timer = event_new(api->ibase, -1, EV_PERSIST, guard_sweep, api);
    if (api->guard_timer == NULL)
        goto out;
    {
        unsigned every = api->request_deadline_ms / 4;
        every = every < 50 ? 50 : every > 1000 ? 1000 : every;
        struct timeval gtv = {every / 1000, (every % 1000) * 1000};
        event_add(api->guard_timer, &gtv);
    }
    err = bind_listener(api->http, "listen", cfg->server.listen, &api->bound);
    if (err < 0)
        goto out;
    pgw_log_infof(PGW_FIELDS(PGW_LF_STR("address", cfg->server.listen),
                             PGW_LF_INT("port", bound_port(api->bound)),
                             PGW_LF_STR("tls", api->ssl_ctx ? "on" : "off")),
                  "webhook listener started");

    if (cfg->server.admin_listen != NULL && cfg->server.admin_listen[0]) {
        err = PGW_ERR_NOMEM;
        api->admin = evhttp_new(api->base);
        if (api->admin == NULL)
            goto out;
        evhttp_set_timeout_tv(api->admin, &tv);
        evhttp_set_max_headers_size(api->admin, max_hdr);
        evhttp_set_max_body_size(api->admin, 4096);
        evhttp_set_gencb(api->admin, on_admin, api);
        err = bind_listener(api->admin, "admin_listen",
                            cfg->server.admin_listen, &api->admin_bound);
        if (err < 0)
            goto out;
        pgw_log_infof(
            PGW_FIELDS(PGW_LF_STR("address", cfg->server.admin_listen),
                       PGW_LF_INT("port", bound_port(api->admin_bound))),
            "admin listener started");
    }

    err = PGW_ERR_NOMEM;
    api->backlog_timer =
        event_new(api->base, -1, EV_PERSIST, on_backlog_timer, api);
    if (api->backlog_timer == NULL)
        goto out;
    struct timeval rt = {
        .tv_sec = api->backlog_refresh_ms / 1000,
        .tv_usec = api->backlog_refresh_ms % 1000 * 1000,
    };
    if (event_add(api->backlog_timer, &rt) < 0)
        goto out;
    /* A first count at once, so the bound holds from the start. */
    on_backlog_timer(-1, 0, api);
    err = start_intake_thread(api);
    if (err < 0)
        goto out;

    *ret_api = api;
    api = NULL;
    err = 0;
out:
    pgw_http_api_free(api);
    return err;
}

void pgw_http_api_set_config(struct pgw_http_api *self, struct pgw_config *cfg)
{
    struct pgw_config *old;

    pthread_mutex_lock(&self->cfg_mu);
    old = self->cfg;
    self->cfg = pgw_config_ref(cfg);
    if (digest_keys(self) < 0) {
        /* Keep serving with the old config rather than without keys. */
        pgw_log_error("out of memory: the new config's hook keys are not "
                      "taken; the old config stays");
        pgw_config_free(self->cfg);
        self->cfg = old;
        pthread_mutex_unlock(&self->cfg_mu);
        return;
    }
    pthread_mutex_unlock(&self->cfg_mu);
    /* The intake thread sees the new config from its next request on, and
     * applies its limits to evhttp, which it owns. */
    pgw_config_free(old);
    post_ctl(self, CTL_LIMITS);
}

void pgw_http_api_stop_intake(struct pgw_http_api *self)
{
    if (self->intake_stopped)
        return;
    self->intake_stopped = true;
    post_ctl(self, CTL_STOP);
    /* Synchronous: the listener is closed when this returns. */
    pthread_mutex_lock(&self->mu);
    while (!self->stop_acked)
        pthread_cond_wait(&self->cond, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

void pgw_http_api_free(struct pgw_http_api *self)
{
    if (self == NULL)
        return;
    /* From here this thread owns everything. */
    stop_intake_thread(self);
    /* Answer and detach what still waits: the store's callbacks free the
     * intakes later. evhttp_free() below frees their requests. */
    while (self->intakes != NULL) {
        struct intake *in = self->intakes;
        if (in->req != NULL) {
            evhttp_add_header(evhttp_request_get_output_headers(in->req),
                              "Connection", "close");
            send_error(in->req, 503, "Service Unavailable", "shutting down", "",
                       RETRY_AFTER_DOWN);
            in->req = NULL;
        }
        intake_unlink(in);
        in->api = NULL;
    }
    if (self->count_req != NULL)
        self->count_req->api = NULL;
    if (self->backlog_timer != NULL)
        event_free(self->backlog_timer);
    if (self->http != NULL)
        evhttp_free(self->http);
    if (self->admin != NULL)
        evhttp_free(self->admin);
    if (self->ssl_ctx != NULL)
        SSL_CTX_free(self->ssl_ctx);
    if (self->guard_timer != NULL)
        event_free(self->guard_timer);
    guard_free_all(self);
    queue_free(&self->to_main);
    queue_free(&self->to_intake);
    if (self->ibase != NULL)
        event_base_free(self->ibase);
    if (self->sync_init) {
        pthread_mutex_destroy(&self->mu);
        pthread_mutex_destroy(&self->cfg_mu);
        pthread_cond_destroy(&self->cond);
    }
    pgw_config_free(self->cfg);
    EVP_MAC_CTX_free(self->mac);
    if (self->key_digests != NULL)
        OPENSSL_cleanse(self->key_digests, self->n_key_digests * 32);
    free(self->key_digests);
    OPENSSL_cleanse(self->hmac_key, sizeof(self->hmac_key));
    free(self);
}
