/*
 * curl_multi on libevent. curl tells us, through the socket callback,
 * which sockets to watch and how; we keep one persistent event per socket
 * and hand readiness back with curl_multi_socket_action(). curl's single
 * timeout is one evtimer. Completed transfers are collected after each
 * socket_action call, outside curl's own stack, so completion callbacks
 * may add or remove transfers freely.
 */
#include "curlmulti.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    struct pgw_list node; /* on pgw_curlmulti.reqs */
};

struct pgw_curlmulti {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct pgw_list reqs; /* submitted, callback not run yet */
    size_t n_reqs;
    size_t max_reqs;
    int closing;
    int global_inited;
};

static void check_done(struct pgw_curlmulti *cm);

static void link_req(struct pgw_curlmulti *cm, struct pgw_curl_req *r)
{
    pgw_list_push_front(&cm->reqs, &r->node);
    cm->n_reqs++;
}

static void unlink_req(struct pgw_curlmulti *cm, struct pgw_curl_req *r)
{
    pgw_list_remove(&r->node);
    cm->n_reqs--;
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
    int left;

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
    cm->base = base;
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
    if (!cm->timer)
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
    if (self->global_inited)
        curl_global_cleanup();
    free(self);
}

/* The tail of a submit: |r->easy| is configured by the caller. */
static int start(struct pgw_curlmulti *self, struct pgw_curl_req *r,
                 size_t max_response_bytes)
{
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
    if (curl_multi_add_handle(self->multi, r->easy) != CURLM_OK)
        return PGW_ERR_IO;
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

int pgw_curlmulti_submit(struct pgw_curlmulti *self,
                         const struct pgw_curl_request *req,
                         pgw_curlmulti_done_cb cb, void *arg,
                         struct pgw_curl_req **ret_req)
{
    struct pgw_curl_req *r = NULL;
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
        curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 1L) ||
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms) ||
        curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
                         timeout_ms < 10000 ? timeout_ms : 10000L) ||
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers))
        goto out;
    if (req->ca_file && req->ca_file[0] &&
        curl_easy_setopt(r->easy, CURLOPT_CAINFO, req->ca_file))
        goto out;
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
    ret = start(self, r, req->max_response_bytes);
    if (ret)
        goto out;
    if (ret_req)
        *ret_req = r;
    r = NULL;
out:
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
