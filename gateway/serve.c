/*
 * Wiring of `pushgw serve`: the event loop, DNS, the store, curlmulti, the
 * dispatcher (with its runtime: config, templates, keys), the HTTP API and
 * metrics; signals for reload and shutdown. No push logic lives here.
 */
#include "serve.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <malloc.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certexpiry.h"
#include "curlmulti.h"
#include "dispatch.h"
#include "h2client.h"
#include "hook.h"
#include "http_api.h"
#include "lc_api.h"
#include "broadcast.h"
#include "lc_push.h"
#include "log.h"
#include "metrics.h"
#include "sdnotify.h"
#include "selfmetrics.h"
#include "runtime.h"
#include "store.h"
#include "template.h"
#include "util/clock.h"
#include "util/url.h"

#define STOP_POLL_MS 20

struct serve {
    struct event_base *base;
    struct evdns_base *dns;
    struct pgw_config *cfg;
    const char *cfg_path;
    struct pgw_serve_options opts;
    struct pgw_template_set *templates;
    struct pgw_metrics *metrics;
    struct pgw_curlmulti *cm;
    struct pgw_store *store;
    struct pgw_dispatch *dispatch;
    struct pgw_http_api *api;
    struct pgw_lc_api *lc_api;   /* [server] client_listen; NULL: none */
    struct pgw_lc_push *lc_push; /* its /1.1/push routes */
    struct event *sig_hup, *sig_term, *sig_int;
    struct event *stop_timer;
    struct event *trim_timer;
    struct event *watchdog_timer; /* NULL: no watchdog asked for */
    bool notify_failed;           /* logged once */
    int64_t stop_started_ms;      /* pgw_clock_mono_ms() */
    bool stopping;
    bool drained;
    /* the store's installation cache, as metrics (NULL: no cache) */
    struct pgw_metric_family *m_cache_lookups, *m_cache_entries, *m_cache_bytes,
        *m_cache_live;
    struct pgw_store_cache_stats cache_seen; /* counted so far */
    struct pgw_selfmetrics self_metrics;
    struct pgw_certexpiry certs;
    /* the last (re)load of the config: 1 or 0, and when it last took */
    struct pgw_metric_series *m_reload_ok, *m_reload_ts;
    struct pgw_metric_series *m_ready; /* what /readyz would answer */
};

/* Sets the installation cache's metrics from the store's counters. */
static void collect_cache(void *arg, struct pgw_metrics *metrics)
{
    struct serve *s = arg;
    struct pgw_store_cache_stats st;

    (void)metrics;
    pgw_store_get_cache_stats(s->store, &st);
    pgw_metric_add(pgw_metrics_series1(s->m_cache_lookups, "hit"),
                   (double)(st.hits - s->cache_seen.hits));
    pgw_metric_add(pgw_metrics_series1(s->m_cache_lookups, "miss"),
                   (double)(st.misses - s->cache_seen.misses));
    pgw_metric_set(pgw_metrics_series(s->m_cache_entries, NULL),
                   (double)st.entries);
    pgw_metric_set(pgw_metrics_series(s->m_cache_bytes, NULL),
                   (double)st.bytes);
    pgw_metric_set(pgw_metrics_series(s->m_cache_live, NULL), st.live ? 1 : 0);
    s->cache_seen = st;
}

/* The installation cache's metric families, when it is on. */
static int register_cache_metrics(struct serve *s)
{
    static const char *const result[] = {"result"};
    int rc;

    rc = pgw_metrics_register(
        s->metrics, PGW_METRIC_COUNTER,
        "pushgw_installation_cache_lookups_total",
        "Recipient names looked up in the installation cache.", result, 1, 0,
        NULL, 0, &s->m_cache_lookups);
    if (rc == 0)
        rc = pgw_metrics_register(s->metrics, PGW_METRIC_GAUGE,
                                  "pushgw_installation_cache_entries",
                                  "Recipient names in the installation cache.",
                                  NULL, 0, 0, NULL, 0, &s->m_cache_entries);
    if (rc == 0)
        rc = pgw_metrics_register(s->metrics, PGW_METRIC_GAUGE,
                                  "pushgw_installation_cache_bytes",
                                  "Memory the installation cache holds.", NULL,
                                  0, 0, NULL, 0, &s->m_cache_bytes);
    if (rc == 0)
        rc = pgw_metrics_register(
            s->metrics, PGW_METRIC_GAUGE, "pushgw_installation_cache_live",
            "1 while the installation cache is used (its LISTEN connection "
            "is up), else 0.",
            NULL, 0, 0, NULL, 0, &s->m_cache_live);
    if (rc < 0)
        return rc;
    return pgw_metrics_add_collector(s->metrics, collect_cache, s);
}

static bool on_reserve(void *arg, size_t recipients)
{
    struct serve *s = arg;
    return pgw_dispatch_reserve(s->dispatch, recipients);
}

/* A push request was committed (lc_push): the sender takes it now. */
static void on_push_stored(void *arg, int64_t api_push_id)
{
    struct serve *s = arg;
    (void)api_push_id;

    pgw_broadcast_kick(s->dispatch);
}

static void on_stored(void *arg)
{
    struct serve *s = arg;
    pgw_dispatch_backlog_stored(s->dispatch);
}

static void on_accepted(void *arg, int64_t event_id, const char *app_id,
                        struct pgw_event *ev, size_t recipients)
{
    struct serve *s = arg;
    pgw_dispatch_accept(s->dispatch, event_id, app_id, ev, recipients);
}

static int64_t events_backlog(void *arg)
{
    struct serve *s = arg;
    return pgw_http_api_backlog(s->api);
}

static bool on_ready(void *arg, const char **ret_reason)
{
    struct serve *s = arg;

    if (!s->templates) {
        *ret_reason = "templates not loaded";
        return false;
    }
    if (s->stopping) {
        *ret_reason = "shutting down";
        return false;
    }
    if (!pgw_hook_authorized(ret_reason))
        return false;
    return true;
}

/* pushgw_ready: 1 when /readyz answers 200 (the store up, templates
 * loaded, not stopping), for alerts that cannot probe /readyz. */
static void collect_ready(void *arg, struct pgw_metrics *metrics)
{
    struct serve *s = arg;
    const char *why;

    (void)metrics;
    pgw_metric_set(
        s->m_ready,
        s->store && pgw_store_is_up(s->store) && on_ready(s, &why) ? 1 : 0);
}

/* Where provider connections go when through a proxy (password hidden):
 * once at start and after each reload, as the senders are made anew. */
static void log_proxies(const struct pgw_config *cfg)
{
    char shown[512];

    if (cfg->apns.proxy)
        pgw_log_info("apns connections go through proxy '%s'",
                     pgw_url_redact(cfg->apns.proxy, shown, sizeof(shown)));
    if (cfg->fcm.proxy)
        pgw_log_info("fcm connections and access token requests go through "
                     "proxy '%s'",
                     pgw_url_redact(cfg->fcm.proxy, shown, sizeof(shown)));
}

/* The outcome of loading the config, at start (a success) or on SIGHUP. */
static void note_reload(struct serve *s, bool ok)
{
    pgw_metric_set(s->m_reload_ok, ok ? 1 : 0);
    if (ok)
        pgw_metric_set(s->m_reload_ts, (double)pgw_clock_wall_ms() / 1000.0);
}

/* The certificates of |cfg| that expire, for
 * pushgw_certificate_expiry_days: the webhook's TLS certificate, and the
 * APNs certificates of each app as the dispatcher's runtime loaded them. */
static void list_certificates(struct serve *s, const struct pgw_config *cfg)
{
    const struct pgw_runtime *rt =
        s->dispatch ? pgw_dispatch_runtime(s->dispatch) : NULL;
    int rc;

    pgw_certexpiry_clear(&s->certs);
    for (size_t i = 0; rt && i < rt->n_apps; i++) {
        const struct pgw_runtime_app *ra = &rt->apps[i];

        if (ra->apns_cert_not_after[0])
            pgw_certexpiry_add(&s->certs, ra->app->id, "apns_production",
                               ra->apns_cert_not_after[0]);
        if (ra->apns_cert_not_after[1])
            pgw_certexpiry_add(&s->certs, ra->app->id, "apns_development",
                               ra->apns_cert_not_after[1]);
    }
    if (!cfg->server.tls_cert_file)
        return;
    rc = pgw_certexpiry_add_pem(&s->certs, "", "webhook_tls",
                                cfg->server.tls_cert_file);
    if (rc < 0)
        pgw_log_warn("cannot read the expiry of '%s': %s",
                     cfg->server.tls_cert_file, pgw_strerror(rc));
}

/* The families of the process, the build and the config's reloads. */
static int register_ops_metrics(struct serve *s)
{
    struct pgw_metric_family *f;
    int rc;

    rc = pgw_selfmetrics_init(&s->self_metrics, s->metrics, PUSHGW_VERSION,
                              s->opts.commit ? s->opts.commit : "unknown");
    if (rc < 0)
        return rc;
    rc = pgw_metrics_register(
        s->metrics, PGW_METRIC_GAUGE, "pushgw_config_reload_success",
        "1 if the last load of the configuration (start or SIGHUP) "
        "succeeded, 0 if it failed and the previous one still runs.",
        NULL, 0, 0, NULL, 0, &f);
    if (rc < 0)
        return rc;
    s->m_reload_ok = pgw_metrics_series(f, NULL);
    rc = pgw_metrics_register(
        s->metrics, PGW_METRIC_GAUGE,
        "pushgw_config_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully (Unix "
        "seconds).",
        NULL, 0, 0, NULL, 0, &f);
    if (rc < 0)
        return rc;
    s->m_reload_ts = pgw_metrics_series(f, NULL);
    note_reload(s, true);
    rc = pgw_metrics_register(s->metrics, PGW_METRIC_GAUGE, "pushgw_ready",
                              "1 when /readyz answers 200, else 0.", NULL, 0, 0,
                              NULL, 0, &f);
    if (rc < 0)
        return rc;
    s->m_ready = pgw_metrics_series(f, NULL);
    rc = pgw_metrics_add_collector(s->metrics, collect_ready, s);
    if (rc < 0)
        return rc;
    rc = pgw_certexpiry_init(&s->certs, s->metrics);
    if (rc < 0)
        return rc;
    list_certificates(s, s->cfg);
    return 0;
}

static void log_diag(const struct pgw_diag *diag, const char *what)
{
    for (size_t i = 0; i < diag->n; i++)
        pgw_log_error("%s: %s", what, diag->msgs[i]);
}

/* SIGHUP: a new config, templates and credentials as a whole, or none.
 * Returns whether the new one is running. */
static bool reload(struct serve *s)
{
    struct pgw_config *cfg = NULL;
    struct pgw_template_set *tmpl = NULL;
    struct pgw_diag diag;
    int rc;

    pgw_diag_init(&diag);
    rc = pgw_config_load(s->cfg_path, NULL, &diag, &cfg);
    if (rc < 0)
        goto fail;
    rc = pgw_template_set_load(cfg->templates.dir, &diag, &tmpl);
    if (rc < 0)
        goto fail;
    rc = pgw_dispatch_set_runtime(s->dispatch, cfg, tmpl, &diag);
    if (rc < 0)
        goto fail;
    if (strcmp(cfg->server.listen, s->cfg->server.listen) != 0 ||
        strcmp(cfg->server.admin_listen, s->cfg->server.admin_listen) != 0 ||
        strcmp(cfg->database.url, s->cfg->database.url) != 0 ||
        (cfg->server.client_listen == NULL) !=
            (s->cfg->server.client_listen == NULL) ||
        (cfg->server.client_listen &&
         strcmp(cfg->server.client_listen, s->cfg->server.client_listen) != 0))
        pgw_log_warn("reload: listen addresses and the database url take "
                     "effect only after a restart");
    pgw_http_api_set_config(s->api, cfg);
    if (s->lc_api)
        pgw_lc_api_set_config(s->lc_api, cfg);
    pgw_log_set_level(cfg->server.log_level);
    pgw_template_set_unref(s->templates);
    s->templates = tmpl;
    pgw_config_free(s->cfg);
    s->cfg = cfg;
    pgw_log_infof(
        PGW_FIELDS(
            PGW_LF_INT("apps", (long long)cfg->n_apps),
            PGW_LF_INT("templates", (long long)pgw_template_set_count(tmpl))),
        "reloaded the configuration");
    log_proxies(cfg);
    list_certificates(s, cfg);
    note_reload(s, true);
    pgw_diag_release(&diag);
    return true;
fail:
    log_diag(&diag, "reload failed, keeping the running configuration");
    if (rc == PGW_ERR_NOMEM)
        pgw_log_error("reload failed: %s", pgw_strerror(rc));
    pgw_template_set_unref(tmpl);
    pgw_config_free(cfg);
    pgw_diag_release(&diag);
    note_reload(s, false);
    return false;
}

/* Tells the service manager |state| (sdnotify.h). A failure is logged
 * once: a watchdog that cannot be fed will show it anyway. */
static void notify(struct serve *s, const char *state)
{
    int rc = pgw_sdnotify_send(state);

    if (rc < 0 && !s->notify_failed) {
        pgw_log_warn("could not notify the service manager: %s",
                     rc == PGW_ERR_IO ? strerror(errno) : pgw_strerror(rc));
        s->notify_failed = true;
    }
}

/* Fires every half watchdog interval, from the loop: a loop that is
 * stuck stops feeding it, and the service manager restarts the process. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    notify(arg, "WATCHDOG=1");
}

static void on_drained(void *arg)
{
    struct serve *s = arg;

    s->drained = true;
    event_base_loopexit(s->base, NULL);
}

/* Fires every STOP_POLL_MS during shutdown until intake has drained. */
static void on_stop_poll(evutil_socket_t fd, short what, void *arg)
{
    struct serve *s = arg;
    long long spent = pgw_clock_mono_ms() - s->stop_started_ms;
    long long budget = s->cfg->server.shutdown_timeout_ms;
    (void)fd;
    (void)what;

    if (pgw_http_api_pending(s->api) > 0 && spent < budget)
        return;
    event_del(s->stop_timer);
    pgw_dispatch_drain(s->dispatch,
                       (unsigned)(budget > spent ? budget - spent : 0),
                       on_drained, s);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct serve *s = arg;
    struct timeval tv = {0, STOP_POLL_MS * 1000};
    (void)what;

    if (sig == SIGHUP) {
        struct timespec now;
        char msg[64];

        pgw_log_info("SIGHUP: reloading '%s'", s->cfg_path);
        clock_gettime(CLOCK_MONOTONIC, &now);
        snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)now.tv_sec * 1000000ULL +
                     (unsigned long long)now.tv_nsec / 1000);
        notify(s, msg);
        notify(s, reload(s) ? "READY=1\nSTATUS=serving (reloaded)"
                            : "READY=1\nSTATUS=serving (the reload failed: "
                              "the running configuration is kept)");
        return;
    }
    if (s->stopping) {
        pgw_log_warn("second stop signal: exiting now");
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = true;
    notify(s, "STOPPING=1\nSTATUS=stopping: finishing the work in memory");
    pgw_log_info("stopping: intake closed, finishing work in memory "
                 "(up to %d ms)",
                 s->cfg->server.shutdown_timeout_ms);
    s->stop_started_ms = pgw_clock_mono_ms();
    pgw_http_api_stop_intake(s->api);
    pgw_lc_api_close(s->lc_api);
    event_add(s->stop_timer, &tv);
}

static char *owner_id(void)
{
    char host[256] = "unknown";
    unsigned char rnd[4] = {0};
    char *out = NULL;

    gethostname(host, sizeof(host) - 1);
    RAND_bytes(rnd, sizeof(rnd));
    if (asprintf(&out, "%s:%d:%02x%02x%02x%02x", host, (int)getpid(), rnd[0],
                 rnd[1], rnd[2], rnd[3]) < 0)
        return NULL;
    return out;
}

/* Every TRIM_INTERVAL_S, with glibc's malloc: the heap's free pages go
 * back to the system, which glibc does not do by itself for pages below
 * the top of the heap (a burst of large requests leaves them resident).
 * It walks the free chunks, well under a millisecond at these sizes.
 * jemalloc gives pages back from its own thread (main.c's malloc_conf),
 * and glibc's malloc_trim() has nothing to trim there. */
#define TRIM_INTERVAL_S 2

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    malloc_trim(0);
}

static int setup(struct serve *s)
{
    struct pgw_diag diag;
    struct pgw_store_options so;
    struct pgw_dispatch_options dopt;
    struct pgw_http_api_options ho;
    char *owner = NULL;
    int rc;

    pgw_diag_init(&diag);
    {
        /* epoll changes are gathered per loop iteration: evhttp turns
         * reading and writing on and off for every request, one
         * epoll_ctl(2) each otherwise (7 % of a chat event's CPU). No
         * descriptor here is dup()ed, the changelist's one caveat. */
        struct event_config *ec = event_config_new();

        if (!ec)
            return PGW_ERR_NOMEM;
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        s->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (!s->base)
        return PGW_ERR_NOMEM;
    s->dns = pgw_h2_dns_new(s->base);
    if (!s->dns)
        return PGW_ERR_NOMEM;

    rc = pgw_template_set_load(s->cfg->templates.dir, &diag, &s->templates);
    if (rc < 0) {
        log_diag(&diag, "cannot load templates");
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    rc = pgw_metrics_new(&s->metrics);
    if (rc < 0)
        goto out;
    rc = register_ops_metrics(s);
    if (rc < 0)
        goto out;
    rc = pgw_curlmulti_new(s->base, 0, &s->cm);
    if (rc < 0)
        goto out;

    owner = owner_id();
    if (!owner) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    memset(&so, 0, sizeof(so));
    so.conninfo = s->cfg->database.url;
    so.pool_size = (unsigned)s->cfg->database.pool_size;
    so.owner = owner;
    so.cache_bytes = (size_t)s->cfg->database.installation_cache_mb << 20;
    so.cache_ttl_ms =
        (unsigned)s->cfg->database.installation_cache_ttl_s * 1000;
    rc = pgw_store_new(s->base, &so, &s->store);
    if (rc < 0)
        goto out;
    if (so.cache_bytes) {
        rc = register_cache_metrics(s);
        if (rc < 0)
            goto out;
    }

    memset(&dopt, 0, sizeof(dopt));
    dopt.base = s->base;
    dopt.dns = s->dns;
    dopt.store = s->store;
    dopt.cm = s->cm;
    dopt.metrics = s->metrics;
    dopt.lease_ms = (unsigned)s->cfg->delivery.lease_ms;
    dopt.claim_interval_ms = (unsigned)s->cfg->delivery.claim_interval_ms;
    dopt.max_events = (size_t)s->cfg->delivery.events_in_memory;
    rc = pgw_dispatch_new(&dopt, &s->dispatch);
    if (rc < 0)
        goto out;
    rc = pgw_dispatch_set_runtime(s->dispatch, s->cfg, s->templates, &diag);
    if (rc < 0) {
        log_diag(&diag, "cannot start");
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    list_certificates(s, s->cfg);
    pgw_metrics_add_collector(s->metrics, pgw_dispatch_collect, s->dispatch);

    memset(&ho, 0, sizeof(ho));
    ho.base = s->base;
    ho.cfg = s->cfg;
    ho.store = s->store;
    ho.metrics = s->metrics;
    ho.dispatch.reserve = on_reserve;
    ho.dispatch.accepted = on_accepted;
    ho.dispatch.stored = on_stored;
    ho.dispatch.arg = s;
    ho.ready = on_ready;
    ho.ready_arg = s;
    ho.lease_ms = (unsigned)s->cfg->delivery.lease_ms;
    rc = pgw_http_api_new(&ho, &s->api);
    if (rc < 0) {
        rc = rc == PGW_ERR_NOMEM ? rc : PGW_ERR_CONFIG;
        goto out;
    }

    if (s->cfg->server.client_listen) {
        struct pgw_lc_api_options lo;
        struct pgw_lc_push_options po;

        memset(&lo, 0, sizeof(lo));
        lo.base = s->base;
        lo.store = s->store;
        lo.cfg = s->cfg;
        rc = pgw_lc_api_new(&lo, &s->lc_api);
        if (rc < 0) {
            rc = rc == PGW_ERR_NOMEM ? rc : PGW_ERR_CONFIG;
            goto out;
        }
        memset(&po, 0, sizeof(po));
        po.api = s->lc_api;
        po.store = s->store;
        po.metrics = s->metrics;
        po.backlog = events_backlog;
        po.stored = on_push_stored;
        po.arg = s;
        rc = pgw_lc_push_new(&po, &s->lc_push);
        if (rc < 0)
            goto out;
    }

    s->sig_hup = evsignal_new(s->base, SIGHUP, on_signal, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
    s->stop_timer = event_new(s->base, -1, EV_PERSIST, on_stop_poll, s);
    if (!s->sig_hup || !s->sig_term || !s->sig_int || !s->stop_timer) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    if (s->opts.trim_heap) {
        struct timeval tv = {TRIM_INTERVAL_S, 0};

        s->trim_timer = event_new(s->base, -1, EV_PERSIST, on_trim, s);
        if (!s->trim_timer) {
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        event_add(s->trim_timer, &tv);
    }
    {
        uint64_t usec = pgw_sdnotify_watchdog_usec();
        struct timeval tv = {(time_t)(usec / 2 / 1000000),
                             (suseconds_t)(usec / 2 % 1000000)};

        if (usec) {
            s->watchdog_timer =
                event_new(s->base, -1, EV_PERSIST, on_watchdog, s);
            if (!s->watchdog_timer) {
                rc = PGW_ERR_NOMEM;
                goto out;
            }
            event_add(s->watchdog_timer, &tv);
        }
    }
    evsignal_add(s->sig_hup, NULL);
    evsignal_add(s->sig_term, NULL);
    evsignal_add(s->sig_int, NULL);
    pgw_log_infof(PGW_FIELDS(PGW_LF_STR("version", PUSHGW_VERSION),
                             PGW_LF_STR("owner", owner),
                             PGW_LF_INT("apps", (long long)s->cfg->n_apps)),
                  "pushgw serving");
    log_proxies(s->cfg);
    rc = 0;
out:
    free(owner);
    pgw_diag_release(&diag);
    return rc;
}

static void teardown(struct serve *s)
{
    /* Order matters: the API stops calling the dispatcher; the
     * dispatcher stops its senders; the store and curlmulti complete what
     * still waits on them; then the rest. */
    pgw_http_api_free(s->api);
    pgw_lc_api_close(s->lc_api);
    pgw_dispatch_stop(s->dispatch);
    pgw_store_free(s->store);
    /* after the store: its last callbacks answer the API's requests */
    pgw_lc_push_free(s->lc_push);
    pgw_lc_api_free(s->lc_api);
    pgw_curlmulti_free(s->cm);
    pgw_dispatch_free(s->dispatch);
    pgw_metrics_free(s->metrics);
    pgw_certexpiry_release(&s->certs);
    pgw_template_set_unref(s->templates);
    if (s->sig_hup)
        event_free(s->sig_hup);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->stop_timer)
        event_free(s->stop_timer);
    if (s->trim_timer)
        event_free(s->trim_timer);
    if (s->watchdog_timer)
        event_free(s->watchdog_timer);
    if (s->dns)
        evdns_base_free(s->dns, 0);
    if (s->base)
        event_base_free(s->base);
    pgw_config_free(s->cfg);
}

/*
 * Before anything starts: a key, certificate or secret file that the group
 * or other users can read is refused (each one logged with its path); what
 * is unwise but allowed is logged as a warning.
 */
static int check_files(const struct pgw_config *cfg)
{
    struct pgw_diag diag;
    int bad;

    pgw_diag_init(&diag);
    bad = pgw_config_check_secret_files(cfg, &diag);
    for (size_t i = 0; i < diag.n; i++)
        pgw_log_error("cannot start: %s", diag.msgs[i]);
    pgw_diag_release(&diag);
    if (bad)
        return PGW_ERR_CONFIG;
    pgw_diag_init(&diag);
    pgw_config_warnings(cfg, &diag);
    for (size_t i = 0; i < diag.n; i++)
        pgw_log_warn("%s", diag.msgs[i]);
    pgw_diag_release(&diag);
    return 0;
}

int pgw_serve_run(struct pgw_config *cfg, const struct pgw_serve_options *opts)
{
    struct serve s;
    int rc;

    memset(&s, 0, sizeof(s));
    s.opts = *opts;
    s.cfg = pgw_config_ref(cfg);
    s.cfg_path = opts->cfg_path ? opts->cfg_path : cfg->path;
    signal(SIGPIPE, SIG_IGN);
    pgw_log_set_level(cfg->server.log_level);
    if (check_files(cfg) < 0) {
        pgw_config_free(s.cfg);
        return 2;
    }
    rc = setup(&s);
    if (rc < 0) {
        if (rc != PGW_ERR_CONFIG)
            pgw_log_error("cannot start: %s", pgw_strerror(rc));
        teardown(&s);
        return rc == PGW_ERR_CONFIG ? 2 : 1;
    }
    {
        char msg[96];

        snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving %zu app(s)",
                 s.cfg->n_apps);
        notify(&s, msg);
    }
    event_base_dispatch(s.base);
    pgw_log_info("stopped%s", s.drained ? "" : " (without draining)");
    teardown(&s);
    return 0;
}
