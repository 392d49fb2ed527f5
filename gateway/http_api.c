/* The inbound side of `serve`, wired together; see http_api.h. */
#include "http_api.h"

#include <stdlib.h>

#include "config.h"
#include "webhook.h"

struct pgw_http_api {
    struct pgw_inbox *inbox;
    struct pgw_webhook *webhook;
    struct pgw_admin *admin;
};

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
            .ready = opts->ready,
            .ready_arg = opts->ready_arg,
            .refresh = refresh_gauges,
            .refresh_arg = api->inbox,
            .timeout_ms = opts->timeout_ms,
            .max_header_bytes = opts->max_header_bytes,
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
