/* The server hook call: request body, libcurl request, answer parsing. */
#include "hook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A hook answer larger than this is refused (fail open). */
#define HOOK_MAX_ANSWER_BYTES (256 * 1024)

struct hook_call {
    pgw_hook_cb cb;
    void *arg;
    struct pgw_event_limits lim;
};

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
    call->cb(call->arg, result, answer, detail);
    free(call);
}

int pgw_hook_call(struct pgw_curlmulti *cm, const struct pgw_app *app,
                  const struct pgw_event *ev,
                  const struct pgw_event_limits *lim, const char *ca_file,
                  pgw_hook_cb cb, void *arg)
{
    struct hook_call *call = NULL;
    char *body = NULL;
    char *key_header = NULL;
    const char *headers[4];
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
    headers[nh] = NULL;
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = app->server_hook_url;
    req.headers = headers;
    req.body = body;
    req.body_len = strlen(body);
    req.timeout_ms = app->server_hook_timeout_ms;
    req.ca_file = ca_file;
    req.max_response_bytes = HOOK_MAX_ANSWER_BYTES;
    rc = pgw_curlmulti_submit(cm, &req, on_done, call, NULL);
    if (rc == 0)
        call = NULL; /* owned by on_done now */
out:
    if (key_header) {
        explicit_bzero(key_header, strlen(key_header));
        free(key_header);
    }
    free(body);
    free(call);
    return rc;
}
