/*
 * curl_multi on libevent. curl tells us, through the socket callback,
 * which sockets to watch and how; we keep one persistent event per socket
 * and hand readiness back with curl_multi_socket_action(). curl's single
 * timeout is one evtimer. Completed transfers are collected after each
 * socket_action call, outside curl's own stack, so completion callbacks
 * may add or remove transfers freely.
 *
 * Requests with a per-host limit are admitted by hostpool: curl sees
 * only the ones allowed to run, so its own timeout starts when a request
 * is sent. curl's CURLMOPT_MAX_HOST_CONNECTIONS would queue them inside
 * curl with the timeout already running, and CURLOPT_PIPEWAIT makes
 * every transfer wait for the first connection to learn whether it
 * multiplexes (an HTTP/1.1 host never does), so pooled requests use
 * neither.
 */
#include "curlmulti.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hostpool.h"
#include "proxy.h"
#include "util/list.h"

struct sock_ctx {
    curl_socket_t fd;
    struct event *ev;
};

struct pgw_curl_req {
    struct pgw_curlmulti *cm;
    CURL *easy;
    struct curl_slist *headers;
    char *resp;
    size_t resp_len;
    size_t resp_cap;
    size_t resp_max;
    int too_large;
    pgw_curlmulti_done_cb cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    struct pgw_list node;          /* on pgw_curlmulti.reqs */
    struct pgw_hostpool_slot slot; /* pooled requests only */
    int start_err;                 /* could not leave the queue */
    struct pgw_list failed;        /* on pgw_curlmulti.failed then */
};

struct pgw_curlmulti {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct event *kick;   /* completes the |failed| requests */
    struct pgw_list reqs; /* submitted, callback not run yet */
    size_t n_reqs;
    size_t max_reqs;
    struct pgw_hostpool *pool;
    struct pgw_list failed; /* dequeued but not started: to complete */
    int closing;
    int global_inited;
};

static void check_done(struct pgw_curlmulti *cm);
static void release_slot(struct pgw_curlmulti *cm, struct pgw_curl_req *r);

static void link_req(struct pgw_curlmulti *cm, struct pgw_curl_req *r)
{
    pgw_list_push_front(&cm->reqs, &r->node);
    cm->n_reqs++;
}

static void unlink_req(struct pgw_curlmulti *cm, struct pgw_curl_req *r)
{
    pgw_list_remove(&r->node);
    pgw_list_remove(&r->failed);
    cm->n_reqs--;
    release_slot(cm, r);
}

/*
 * Gives |r|'s place in its host's pool to the next waiting request and
 * starts that one. One that cannot start is completed from the loop
 * (never from the caller's stack) with its error.
 */
static void release_slot(struct pgw_curlmulti *cm, struct pgw_curl_req *r)
{
    struct pgw_hostpool_slot *next;

    while ((next = pgw_hostpool_release(cm->pool, &r->slot))) {
        r = pgw_list_entry(next, struct pgw_curl_req, slot);
        if (cm->closing) /* every request is being completed */
            continue;
        if (curl_multi_add_handle(cm->multi, r->easy) == CURLM_OK)
            return;
        r->start_err = PGW_ERR_IO;
        pgw_list_push_back(&cm->failed, &r->failed);
        event_active(cm->kick, EV_TIMEOUT, 0);
    }
}

/* Frees |r| after it left the multi and the list. */
static void req_destroy(struct pgw_curl_req *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->resp);
    free(r);
}

/*
 * Fires when a socket curl asked about is readable or writable. Frees
 * nothing itself; check_done() may free finished requests.
 */
static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_curlmulti *cm = arg;
    int flags = 0;
    int running = 0;

    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(cm->multi, fd, flags, &running);
    check_done(cm);
    if (running <= 0 && cm->n_reqs == 0)
        evtimer_del(cm->timer);
}

/* Fires when curl's timeout expires; may free finished requests. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_curlmulti *cm = arg;
    int running = 0;

    (void)fd;
    (void)what;
    curl_multi_socket_action(cm->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cm);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    check_done(arg);
}

/* curl's CURLMOPT_SOCKETFUNCTION: watch |s| for |what|, or stop. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
    struct pgw_curlmulti *cm = userp;
    struct sock_ctx *sc = socketp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            event_free(sc->ev);
            free(sc);
            curl_multi_assign(cm->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof(*sc));
        if (!sc)
            return -1;
        sc->fd = s;
        if (curl_multi_assign(cm->multi, s, sc) != CURLM_OK) {
            free(sc);
            return -1;
        }
    }
    kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (sc->ev) {
        event_free(sc->ev);
        sc->ev = NULL;
    }
    sc->ev = event_new(cm->base, s, kind, on_socket, cm);
    if (!sc->ev || event_add(sc->ev, NULL) != 0)
        return -1;
    return 0;
}

/* curl's CURLMOPT_TIMERFUNCTION: (re)arm or stop our one timer. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct pgw_curlmulti *cm = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(cm->timer);
        return 0;
    }
    /* 0 means "call socket_action now": from the loop, never from here. */
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(cm->timer, &tv) == 0 ? 0 : -1;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct pgw_curl_req *r = userdata;
    size_t n = size * nmemb;

    if (n > r->resp_max - r->resp_len) {
        r->too_large = 1;
        return 0;
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        char *p;
        while (cap < r->resp_len + n + 1)
            cap *= 2;
        if (cap > r->resp_max + 1)
            cap = r->resp_max + 1;
        p = realloc(r->resp, cap);
        if (!p)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, ptr, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static int translate(CURLcode rc, const struct pgw_curl_req *r)
{
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return PGW_ERR_TIMEOUT;
    case CURLE_WRITE_ERROR:
        return r->too_large ? PGW_ERR_TOO_LARGE : PGW_ERR_NOMEM;
    case CURLE_FILESIZE_EXCEEDED:
        return PGW_ERR_TOO_LARGE;
    case CURLE_OUT_OF_MEMORY:
        return PGW_ERR_NOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return PGW_ERR_TLS;
    default:
        return PGW_ERR_IO;
    }
}

/* Hands every finished transfer to its callback, then frees it. */
static void check_done(struct pgw_curlmulti *cm)
{
    CURLMsg *msg;
    struct pgw_list *n;
    int left;

    while ((n = pgw_list_first(&cm->failed))) {
        struct pgw_curl_req *r = pgw_list_entry(n, struct pgw_curl_req, failed);
        struct pgw_curl_response resp;

        unlink_req(cm, r);
        memset(&resp, 0, sizeof(resp));
        resp.err = r->start_err;
        resp.body = "";
        resp.error = "could not start the request";
        resp.easy = r->easy;
        r->cb(&resp, r->arg);
        req_destroy(r);
    }
    while ((msg = curl_multi_info_read(cm->multi, &left))) {
        struct pgw_curl_req *r = NULL;
        struct pgw_curl_response resp;
        long status = 0;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r)
            continue;
        memset(&resp, 0, sizeof(resp));
        resp.err = translate(msg->data.result, r);
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(cm->multi, r->easy);
        unlink_req(cm, r);
        resp.status = resp.err ? 0 : status;
        resp.body = r->resp ? r->resp : "";
        resp.body_len = r->resp_len;
        resp.error = resp.err
                         ? (r->errbuf[0] ? r->errbuf
                                         : curl_easy_strerror(msg->data.result))
                         : "";
        resp.easy = r->easy;
        /* |msg| may be invalid once the callback touches the multi. */
        msg = NULL;
        r->cb(&resp, r->arg);
        req_destroy(r);
    }
}

int pgw_curlmulti_new(struct event_base *base, size_t max_pending,
                      struct pgw_curlmulti **ret_cm)
{
    struct pgw_curlmulti *cm = NULL;
    int ret = PGW_ERR_NOMEM;

    if (!base || !ret_cm)
        return PGW_ERR_INVAL;
    cm = calloc(1, sizeof(*cm));
    if (!cm)
        goto out;
    pgw_list_init(&cm->reqs);
    pgw_list_init(&cm->failed);
    cm->base = base;
    if (pgw_hostpool_new(&cm->pool) < 0)
        goto out;
    cm->max_reqs =
        max_pending ? max_pending : PGW_CURLMULTI_DEFAULT_MAX_PENDING;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ret = PGW_ERR_IO;
        goto out;
    }
    cm->global_inited = 1;
    cm->multi = curl_multi_init();
    if (!cm->multi)
        goto out;
    cm->timer = evtimer_new(base, on_timer, cm);
    cm->kick = evtimer_new(base, on_kick, cm);
    if (!cm->timer || !cm->kick)
        goto out;
    if (curl_multi_setopt(cm->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) ||
        curl_multi_setopt(cm->multi, CURLMOPT_SOCKETDATA, cm) ||
        curl_multi_setopt(cm->multi, CURLMOPT_TIMERFUNCTION, timer_cb) ||
        curl_multi_setopt(cm->multi, CURLMOPT_TIMERDATA, cm) ||
        curl_multi_setopt(cm->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX)) {
        ret = PGW_ERR_IO;
        goto out;
    }
    *ret_cm = cm;
    cm = NULL;
    ret = 0;
out:
    pgw_curlmulti_free(cm);
    return ret;
}

void pgw_curlmulti_free(struct pgw_curlmulti *self)
{
    struct pgw_list *node;

    if (!self)
        return;
    self->closing = 1;
    while ((node = pgw_list_first(&self->reqs))) {
        struct pgw_curl_req *r =
            pgw_list_entry(node, struct pgw_curl_req, node);
        struct pgw_curl_response resp;

        curl_multi_remove_handle(self->multi, r->easy);
        unlink_req(self, r);
        memset(&resp, 0, sizeof(resp));
        resp.err = PGW_ERR_CLOSED;
        resp.body = "";
        resp.error = "request abandoned at shutdown";
        r->cb(&resp, r->arg);
        req_destroy(r);
    }
    /* Cleaning up the multi closes its sockets through socket_cb. */
    if (self->multi)
        curl_multi_cleanup(self->multi);
    if (self->timer)
        event_free(self->timer);
    if (self->kick)
        event_free(self->kick);
    if (self->global_inited)
        curl_global_cleanup();
    pgw_hostpool_free(self->pool);
    free(self);
}

/* The tail of a submit: |r->easy| is configured by the caller. */
static int start(struct pgw_curlmulti *self, struct pgw_curl_req *r,
                 size_t max_response_bytes, const char *host_key,
                 unsigned max_host, size_t max_queue)
{
    int admit = PGW_HOSTPOOL_RUN;

    if (max_response_bytes == 0)
        max_response_bytes = PGW_CURLMULTI_DEFAULT_MAX_RESPONSE;
    if (max_response_bytes > PGW_CURLMULTI_MAX_RESPONSE)
        return PGW_ERR_INVAL;
    r->resp_max = max_response_bytes;
    r->cm = self;
    if (curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r) ||
        curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb) ||
        curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r) ||
        curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf) ||
        curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L))
        return PGW_ERR_IO;
    if (host_key) {
        admit = pgw_hostpool_admit(self->pool, &r->slot, host_key, max_host,
                                   max_queue);
        if (admit < 0)
            return admit;
        if (admit == PGW_HOSTPOOL_FULL)
            return PGW_ERR_BUSY;
    }
    if (admit == PGW_HOSTPOOL_RUN &&
        curl_multi_add_handle(self->multi, r->easy) != CURLM_OK) {
        pgw_hostpool_release(self->pool, &r->slot); /* nobody waits */
        return PGW_ERR_IO;
    }
    link_req(self, r);
    return 0;
}

static int check_submit(struct pgw_curlmulti *self, pgw_curlmulti_done_cb cb)
{
    if (!self || !cb)
        return PGW_ERR_INVAL;
    if (self->closing)
        return PGW_ERR_CLOSED;
    if (self->n_reqs >= self->max_reqs)
        return PGW_ERR_BUSY;
    return 0;
}

static int valid_method(const char *m)
{
    size_t n = strlen(m);

    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return 0;
    return 1;
}

/* Sends |easy| through the proxy |url| in a CONNECT tunnel, with Basic
 * credentials when it names a user (|password|: the one from a file). */
static int set_proxy(CURL *easy, const char *url, const char *password)
{
    struct pgw_proxy *proxy = NULL;
    char *plain = NULL;
    int ret;

    ret = pgw_proxy_parse(url, password, &proxy, NULL, 0);
    if (ret)
        return ret;
    ret = PGW_ERR_NOMEM;
    if (asprintf(&plain, "http://%s", proxy->hostport) < 0) {
        plain = NULL;
        goto out;
    }
    ret = PGW_ERR_IO;
    if (curl_easy_setopt(easy, CURLOPT_PROXY, plain) ||
        curl_easy_setopt(easy, CURLOPT_PROXYTYPE, (long)CURLPROXY_HTTP) ||
        curl_easy_setopt(easy, CURLOPT_HTTPPROXYTUNNEL, 1L))
        goto out;
    if (proxy->user &&
        (curl_easy_setopt(easy, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC) ||
         curl_easy_setopt(easy, CURLOPT_PROXYUSERNAME, proxy->user) ||
         curl_easy_setopt(easy, CURLOPT_PROXYPASSWORD,
                          proxy->password ? proxy->password : "")))
        goto out;
    ret = 0;
out:
    free(plain);
    pgw_proxy_free(proxy);
    return ret;
}

/* "scheme://host:port" of |url| in |*ret_key| (free()). */
static int host_key_of(const char *url, char **ret_key)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int ret = PGW_ERR_NOMEM;

    if (!u)
        goto out;
    ret = PGW_ERR_INVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
        goto out;
    ret = PGW_ERR_NOMEM;
    if (asprintf(ret_key, "%s://%s:%s", scheme, host, port) < 0)
        goto out;
    ret = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ret;
}

int pgw_curlmulti_submit(struct pgw_curlmulti *self,
                         const struct pgw_curl_request *req,
                         pgw_curlmulti_done_cb cb, void *arg,
                         struct pgw_curl_req **ret_req)
{
    struct pgw_curl_req *r = NULL;
    char *host_key = NULL;
    const char *method;
    long timeout_ms;
    int ret;

    ret = check_submit(self, cb);
    if (ret)
        return ret;
    if (!req || !req->url || (req->body_len && !req->body) ||
        req->timeout_ms < 0)
        return PGW_ERR_INVAL;
    if (strncasecmp(req->url, "http://", 7) != 0 &&
        strncasecmp(req->url, "https://", 8) != 0)
        return PGW_ERR_INVAL;
    method = req->method ? req->method : (req->body ? "POST" : "GET");
    if (!valid_method(method))
        return PGW_ERR_INVAL;
    timeout_ms =
        req->timeout_ms ? req->timeout_ms : PGW_CURLMULTI_DEFAULT_TIMEOUT_MS;

    ret = PGW_ERR_NOMEM;
    r = calloc(1, sizeof(*r));
    if (!r)
        goto out;
    pgw_list_init(&r->node);
    pgw_list_init(&r->failed);
    r->cb = cb;
    r->arg = arg;
    r->easy = curl_easy_init();
    if (!r->easy)
        goto out;
    for (size_t i = 0; req->headers && req->headers[i]; i++) {
        struct curl_slist *l = curl_slist_append(r->headers, req->headers[i]);
        if (!l)
            goto out;
        r->headers = l;
    }
    ret = PGW_ERR_IO;
    if (curl_easy_setopt(r->easy, CURLOPT_URL, req->url) ||
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L) ||
        curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L) ||
        curl_easy_setopt(r->easy, CURLOPT_HTTP_VERSION,
                         (long)CURL_HTTP_VERSION_2TLS) ||
        curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT,
                         req->max_host_connections ? 0L : 1L) ||
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms) ||
        curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
                         timeout_ms < 10000 ? timeout_ms : 10000L) ||
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers))
        goto out;
    if (req->ca_file && req->ca_file[0] &&
        curl_easy_setopt(r->easy, CURLOPT_CAINFO, req->ca_file))
        goto out;
    if (req->proxy && req->proxy[0]) {
        ret = set_proxy(r->easy, req->proxy, req->proxy_password);
        if (ret)
            goto out;
        ret = PGW_ERR_IO;
    }
    if (req->body || strcmp(method, "POST") == 0) {
        /* COPYPOSTFIELDS copies, so |req->body| is borrowed only here. */
        if (curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)req->body_len) ||
            curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS,
                             req->body ? (const char *)req->body : ""))
            goto out;
    }
    if (strcmp(method, "GET") == 0) {
        if (curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L))
            goto out;
    } else if (strcmp(method, "HEAD") == 0) {
        if (curl_easy_setopt(r->easy, CURLOPT_NOBODY, 1L))
            goto out;
    } else if (strcmp(method, "POST") != 0) {
        if (curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, method))
            goto out;
    }
    if (req->max_host_connections) {
        ret = host_key_of(req->url, &host_key);
        if (ret)
            goto out;
    }
    ret = start(self, r, req->max_response_bytes, host_key,
                req->max_host_connections, req->max_host_queue);
    if (ret)
        goto out;
    if (ret_req)
        *ret_req = r;
    r = NULL;
out:
    free(host_key);
    req_destroy(r);
    return ret;
}

void pgw_curlmulti_cancel(struct pgw_curlmulti *self, struct pgw_curl_req *req)
{
    if (!self || !req)
        return;
    curl_multi_remove_handle(self->multi, req->easy);
    unlink_req(self, req);
    req_destroy(req);
}

size_t pgw_curlmulti_pending(const struct pgw_curlmulti *self)
{
    return self ? self->n_reqs : 0;
}

const char *pgw_curlmulti_header(const struct pgw_curl_response *resp,
                                 const char *name)
{
    struct curl_header *h = NULL;

    if (!resp || !resp->easy || !name)
        return NULL;
    if (curl_easy_header(resp->easy, name, 0, CURLH_HEADER, -1, &h) !=
            CURLHE_OK ||
        !h)
        return NULL;
    return h->value;
}
