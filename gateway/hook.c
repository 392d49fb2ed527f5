/* The server hook call: request body, libcurl request, answer parsing. */
#include "hook.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_auth.h"
#include "util/clock.h"

/* A hook answer larger than this is refused (fail open). */
#define HOOK_MAX_ANSWER_BYTES (256 * 1024)

struct hook_call {
    pgw_hook_cb cb;
    void *arg;
    struct pgw_event_limits lim;
    struct hook_health *health;
};

/*
 * 401 answers in a row, per app id, shared by every thread that calls
 * hooks and read by the admin listener's thread. Entries are never freed
 * (at most one per app id ever configured), so a reason handed out stays
 * valid.
 */
struct hook_health {
    char app_id[80];
    unsigned unauthorized; /* in a row */
    char reason[256];
};

static pthread_mutex_t health_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hook_health health[PGW_CONFIG_MAX_APPS];
static size_t n_health;

/* The entry of |app_id|, made when first needed; NULL when full. */
static struct hook_health *health_of(const char *app_id)
{
    struct hook_health *h = NULL;

    pthread_mutex_lock(&health_mu);
    for (size_t i = 0; i < n_health; i++) {
        if (strcmp(health[i].app_id, app_id) == 0) {
            h = &health[i];
            goto out;
        }
    }
    if (n_health < PGW_ARRAY_SIZE(health)) {
        h = &health[n_health++];
        pgw_copy_str(h->app_id, sizeof(h->app_id), app_id);
        snprintf(h->reason, sizeof(h->reason),
                 "the server hook of app '%.64s' answers 401: check its "
                 "leancloud_app_id, master_key or app_key",
                 app_id);
    }
out:
    pthread_mutex_unlock(&health_mu);
    return h;
}

static void health_note(struct hook_health *h, enum pgw_hook_result r)
{
    if (!h)
        return;
    pthread_mutex_lock(&health_mu);
    if (r == PGW_HOOK_UNAUTHORIZED)
        h->unauthorized++;
    else if (r != PGW_HOOK_UNREACHABLE && r != PGW_HOOK_TIMEOUT)
        h->unauthorized = 0; /* the hook answered, and not 401 */
    pthread_mutex_unlock(&health_mu);
}

bool pgw_hook_authorized(const char **ret_reason)
{
    bool ok = true;

    pthread_mutex_lock(&health_mu);
    for (size_t i = 0; i < n_health && ok; i++) {
        if (health[i].unauthorized >= PGW_HOOK_UNAUTHORIZED_NOT_READY) {
            *ret_reason = health[i].reason;
            ok = false;
        }
    }
    pthread_mutex_unlock(&health_mu);
    return ok;
}

const char *pgw_hook_result_name(enum pgw_hook_result r)
{
    switch (r) {
    case PGW_HOOK_OK:
        return "ok";
    case PGW_HOOK_HTTP_ERROR:
        return "http_error";
    case PGW_HOOK_TIMEOUT:
        return "timeout";
    case PGW_HOOK_BAD_ANSWER:
        return "bad_answer";
    case PGW_HOOK_UNREACHABLE:
        return "unreachable";
    case PGW_HOOK_UNAUTHORIZED:
        return "unauthorized";
    case PGW_HOOK_QUEUE_FULL:
        return "queue_full";
    }
    return "unknown";
}

static void on_done(const struct pgw_curl_response *resp, void *arg)
{
    struct hook_call *call = arg;
    struct pgw_hook_answer *answer = NULL;
    struct pgw_json_error err;
    char detail[256] = "";
    enum pgw_hook_result result;

    if (resp->err == PGW_ERR_TIMEOUT) {
        result = PGW_HOOK_TIMEOUT;
        snprintf(detail, sizeof(detail), "timed out");
    } else if (resp->err == PGW_ERR_TOO_LARGE) {
        result = PGW_HOOK_BAD_ANSWER;
        snprintf(detail, sizeof(detail), "answer larger than %d bytes",
                 HOOK_MAX_ANSWER_BYTES);
    } else if (resp->err != 0) {
        result = PGW_HOOK_UNREACHABLE;
        snprintf(detail, sizeof(detail), "%s",
                 resp->error && *resp->error ? resp->error
                                             : pgw_strerror(resp->err));
    } else if (resp->status == 401) {
        result = PGW_HOOK_UNAUTHORIZED;
        snprintf(detail, sizeof(detail),
                 "status 401: the hook does not accept pushgw's LeanCloud "
                 "identity (leancloud_app_id, master_key or app_key)");
    } else if (resp->status < 200 || resp->status > 299) {
        result = PGW_HOOK_HTTP_ERROR;
        snprintf(detail, sizeof(detail), "status %ld", resp->status);
    } else if (pgw_resolve_parse_hook_answer(resp->body, resp->body_len,
                                             &call->lim, &answer, &err) < 0) {
        result = PGW_HOOK_BAD_ANSWER;
        snprintf(detail, sizeof(detail), "%s%s%s", err.field,
                 *err.field ? ": " : "", err.reason);
        answer = NULL;
    } else {
        result = PGW_HOOK_OK;
    }
    health_note(call->health, result);
    call->cb(call->arg, result, answer, detail);
    free(call);
}

/* X-LC-Id and the key LeanEngine checks: a master-key signature (made
 * now, so it is fresh at the hook), else the app key. */
static int lc_identity(const struct pgw_app *app, char **ret_id, char **ret_key)
{
    char sign[PGW_LC_AUTH_SIGN_BYTES];
    int rc;

    if (app->leancloud_app_id &&
        asprintf(ret_id, "X-LC-Id: %s", app->leancloud_app_id) < 0) {
        *ret_id = NULL;
        return PGW_ERR_NOMEM;
    }
    if (app->master_key) {
        rc = pgw_lc_auth_sign(app->master_key, pgw_clock_wall_ms(), true, sign,
                              sizeof(sign));
        if (rc < 0)
            return rc;
        if (asprintf(ret_key, "X-LC-Sign: %s", sign) < 0) {
            *ret_key = NULL;
            return PGW_ERR_NOMEM;
        }
    } else if (app->app_key) {
        if (asprintf(ret_key, "X-LC-Key: %s", app->app_key) < 0) {
            *ret_key = NULL;
            return PGW_ERR_NOMEM;
        }
    }
    return 0;
}

int pgw_hook_call(struct pgw_curlmulti *cm, const struct pgw_app *app,
                  const struct pgw_event *ev,
                  const struct pgw_event_limits *lim, const char *ca_file,
                  pgw_hook_cb cb, void *arg)
{
    struct hook_call *call = NULL;
    char *body = NULL;
    char *key_header = NULL;
    char *id_header = NULL;
    char *lc_header = NULL;
    const char *headers[6];
    size_t nh = 0;
    struct pgw_curl_request req;
    int rc;

    if (!app->server_hook_url)
        return PGW_ERR_INVAL;
    call = calloc(1, sizeof(*call));
    if (!call || pgw_event_hook_request(ev, &body) < 0) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    call->cb = cb;
    call->arg = arg;
    call->lim = *lim;
    headers[nh++] = "Content-Type: application/json";
    if (app->server_hook_key) {
        if (asprintf(&key_header, "X-LC-Hook-Key: %s", app->server_hook_key) <
            0) {
            key_header = NULL;
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        headers[nh++] = key_header;
    }
    if ((rc = lc_identity(app, &id_header, &lc_header)) < 0)
        goto out;
    if (id_header)
        headers[nh++] = id_header;
    if (lc_header)
        headers[nh++] = lc_header;
    headers[nh] = NULL;
    call->health = health_of(app->id);
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = app->server_hook_url;
    req.headers = headers;
    req.body = body;
    req.body_len = strlen(body);
    req.timeout_ms = app->server_hook_timeout_ms;
    req.ca_file = ca_file;
    req.max_response_bytes = HOOK_MAX_ANSWER_BYTES;
    req.max_host_connections = (unsigned)app->server_hook_connections;
    req.max_host_queue = PGW_HOOK_MAX_QUEUED;
    rc = pgw_curlmulti_submit(cm, &req, on_done, call, NULL);
    if (rc == 0)
        call = NULL; /* owned by on_done now */
out:
    if (key_header) {
        explicit_bzero(key_header, strlen(key_header));
        free(key_header);
    }
    if (lc_header) {
        explicit_bzero(lc_header, strlen(lc_header));
        free(lc_header);
    }
    free(id_header);
    free(body);
    free(call);
    return rc;
}
