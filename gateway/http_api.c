/* The inbound side of `serve`, wired together; see http_api.h. */
#include "http_api.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "webhook.h"

struct pgw_http_api {
    struct pgw_inbox *inbox;
    struct pgw_webhook *webhook;
    struct pgw_admin *admin;
    pgw_admin_ready_fn ready;
    void *ready_arg;
};

/* libevent's own messages, as our log lines: at most LIBEVENT_LOG_BURST a
 * second, then one line saying how many were dropped (descriptor
 * exhaustion made libevent log millions of lines a second). Any
 * thread. */
#define LIBEVENT_LOG_BURST 10

static pthread_mutex_t libevent_log_mu = PTHREAD_MUTEX_INITIALIZER;
static long long libevent_log_second;
static unsigned libevent_log_n;
static unsigned long long libevent_log_dropped;

static void on_libevent_log(int severity, const char *msg)
{
    struct timespec t;
    unsigned long long dropped = 0;
    bool emit;

    clock_gettime(CLOCK_MONOTONIC, &t);
    pthread_mutex_lock(&libevent_log_mu);
    if (t.tv_sec != libevent_log_second) {
        libevent_log_second = t.tv_sec;
        libevent_log_n = 0;
        dropped = libevent_log_dropped;
        libevent_log_dropped = 0;
    }
    emit = libevent_log_n < LIBEVENT_LOG_BURST;
    if (emit)
        libevent_log_n++;
    else
        libevent_log_dropped++;
    pthread_mutex_unlock(&libevent_log_mu);
    if (dropped > 0)
        pgw_log_warnf(PGW_FIELDS(PGW_LF_INT("dropped", (long long)dropped)),
                      "libevent: messages dropped");
    if (!emit)
        return;
    if (severity >= EVENT_LOG_ERR)
        pgw_log_errorf(PGW_FIELDS(PGW_LF_STR("source", "libevent")), "%s", msg);
    else if (severity == EVENT_LOG_WARN)
        pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("source", "libevent")), "%s", msg);
    else
        pgw_log_debugf(PGW_FIELDS(PGW_LF_STR("source", "libevent")), "%s", msg);
}

/* /readyz: not ready while the webhook does not accept. */
static bool api_ready(void *arg, const char **ret_reason)
{
    struct pgw_http_api *api = arg;

    if (api->webhook != NULL && pgw_webhook_saturated(api->webhook)) {
        *ret_reason = "webhook listener saturated: at max_connections or "
                      "out of file descriptors";
        return false;
    }
    return api->ready == NULL || api->ready(api->ready_arg, ret_reason);
}

/* /metrics shows the backlog estimate as of now. */
static void refresh_gauges(void *arg)
{
    pgw_inbox_update_gauge(arg);
}

int pgw_http_api_new(const struct pgw_http_api_options *opts,
                     struct pgw_http_api **ret_api)
{
    const struct pgw_config *cfg = opts->cfg;
    struct pgw_http_api *api = NULL;
    int err = PGW_ERR_INVAL;

    if (opts->base == NULL || cfg == NULL || opts->store == NULL ||
        cfg->server.listen == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    api = calloc(1, sizeof(*api));
    if (api == NULL)
        goto out;
    api->ready = opts->ready;
    api->ready_arg = opts->ready_arg;
    event_set_log_callback(on_libevent_log);
    {
        struct pgw_inbox_options io = {
            .base = opts->base,
            .cfg = opts->cfg,
            .store = opts->store,
            .metrics = opts->metrics,
            .dispatch = opts->dispatch,
            .lease_ms = opts->lease_ms,
            .max_inflight_events = opts->max_inflight_events,
            .backlog_refresh_ms = opts->backlog_refresh_ms,
        };
        err = pgw_inbox_new(&io, &api->inbox);
        if (err < 0)
            goto out;
    }
    {
        struct pgw_webhook_options wo = {
            .cfg = opts->cfg,
            .inbox = api->inbox,
            .timeout_ms = opts->timeout_ms,
            .max_header_bytes = opts->max_header_bytes,
        };
        err = pgw_webhook_new(&wo, &api->webhook);
        if (err < 0)
            goto out;
    }
    if (cfg->server.admin_listen != NULL && cfg->server.admin_listen[0]) {
        struct pgw_admin_options ao = {
            .base = opts->base,
            .address = cfg->server.admin_listen,
            .store = opts->store,
            .metrics = opts->metrics,
            .ready = api_ready,
            .ready_arg = api,
            .refresh = refresh_gauges,
            .refresh_arg = api->inbox,
            .timeout_ms = opts->timeout_ms,
            .max_header_bytes = opts->max_header_bytes,
            .max_connections = (size_t)cfg->server.max_connections,
        };
        err = pgw_admin_new(&ao, &api->admin);
        if (err < 0)
            goto out;
    }
    *ret_api = api;
    api = NULL;
    err = 0;
out:
    pgw_http_api_free(api);
    return err;
}

int pgw_http_api_port(const struct pgw_http_api *self, bool admin)
{
    if (admin)
        return self->admin != NULL ? pgw_admin_port(self->admin) : -1;
    return pgw_webhook_port(self->webhook);
}

void pgw_http_api_set_config(struct pgw_http_api *self, struct pgw_config *cfg)
{
    pgw_inbox_set_config(self->inbox, cfg);
    pgw_webhook_set_config(self->webhook, cfg);
}

void pgw_http_api_stop_intake(struct pgw_http_api *self)
{
    pgw_inbox_stop(self->inbox);
    pgw_webhook_stop(self->webhook);
}

size_t pgw_http_api_pending(const struct pgw_http_api *self)
{
    return pgw_inbox_pending(self->inbox);
}

int64_t pgw_http_api_backlog(const struct pgw_http_api *self)
{
    return pgw_inbox_backlog(self->inbox);
}

uint64_t pgw_http_api_backlog_counted(const struct pgw_http_api *self)
{
    return pgw_inbox_backlog_counted(self->inbox);
}

void pgw_http_api_free(struct pgw_http_api *self)
{
    if (self == NULL)
        return;
    /* From here this thread owns the webhook's listener; the inbox answers
     * what it still holds through it, and the webhook sends those answers
     * before its connections close. */
    if (self->webhook != NULL)
        pgw_webhook_join(self->webhook);
    pgw_inbox_free(self->inbox);
    pgw_webhook_free(self->webhook);
    pgw_admin_free(self->admin);
    free(self);
}
