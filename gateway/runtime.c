/*
 * The runtime (see runtime.h): built in one pass over the config's apps,
 * loading each team's key into the APNs sender and each app's service
 * account into the FCM sender. A problem does not stop the pass, so one
 * run of check-config or one failed reload names every broken file.
 */
#include "runtime.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apns.h"
#include "curlmulti.h"
#include "fcm.h"
#include "h2client.h"
#include "template.h"
#include "tls_identity.h"
#include "util/clock.h"

static void on_reap(evutil_socket_t fd, short what, void *arg);

/* The keys [apns] and [fcm] share, as their pools take them. */
static void pool_options(struct pgw_h2_pool_options *po,
                         const struct pgw_runtime_options *o, int connections,
                         int max_connections, int idle_close_ms,
                         int request_timeout_ms, const char *proxy,
                         const char *proxy_password)
{
    memset(po, 0, sizeof(*po));
    po->connections = (unsigned)connections;
    po->max_connections = (unsigned)max_connections;
    po->idle_close_ms = (unsigned)idle_close_ms;
    po->request_timeout_ms = (unsigned)request_timeout_ms;
    po->backoff_initial_ms = o->backoff_initial_ms;
    po->backoff_max_ms = o->backoff_max_ms;
    po->proxy = proxy;
    po->proxy_password = proxy_password;
}

static int make_senders(struct pgw_runtime *rt,
                        const struct pgw_runtime_options *o,
                        struct pgw_diag *diag)
{
    const struct pgw_config *cfg = rt->cfg;
    struct pgw_apns_options ao;
    struct pgw_fcm_options fo;
    int rc;

    memset(&ao, 0, sizeof(ao));
    ao.production_url = cfg->apns.production_url;
    ao.development_url = cfg->apns.development_url;
    ao.ca_file = cfg->apns.ca_file;
    pool_options(&ao.pool, o, cfg->apns.connections, cfg->apns.max_connections,
                 cfg->apns.idle_close_ms, cfg->apns.request_timeout_ms,
                 cfg->apns.proxy, cfg->apns.proxy_password);
    rc = pgw_apns_new(o->base, o->dns, &ao, &rt->apns);
    if (rc < 0) {
        pgw_diag_add(diag, "cannot set up APNs: %s", pgw_strerror(rc));
        return rc;
    }
    memset(&fo, 0, sizeof(fo));
    fo.url = cfg->fcm.url;
    fo.token_url = cfg->fcm.token_url;
    fo.ca_file = cfg->fcm.ca_file;
    pool_options(&fo.pool, o, cfg->fcm.connections, cfg->fcm.max_connections,
                 cfg->fcm.idle_close_ms, cfg->fcm.request_timeout_ms,
                 cfg->fcm.proxy, cfg->fcm.proxy_password);
    rc = pgw_fcm_new(o->base, o->dns, o->cm, &fo, &rt->fcm);
    if (rc < 0) {
        pgw_diag_add(diag, "cannot set up FCM: %s", pgw_strerror(rc));
        return rc;
    }
    return 0;
}

static bool unreadable(const struct pgw_runtime_options *o, const char *path)
{
    return o->skip_unreadable && access(path, R_OK) != 0;
}

/* Loads one certificate of |ra|'s app into |*ret_id|; 0 or an error,
 * reported to |diag|. An expired certificate is a problem too. */
static int load_cert(struct pgw_runtime_app *ra, const char *file,
                     const char *password, const char *what, int env,
                     struct pgw_diag *diag, struct pgw_tls_identity **ret_id)
{
    const struct pgw_app *app = ra->app;
    char err[PGW_TLS_IDENTITY_ERR_MAX];
    int rc;

    rc = pgw_tls_identity_load(file, password, ret_id, err, sizeof(err));
    if (rc < 0) {
        pgw_diag_add(diag, "[app:%s] %s cannot be used: %s", app->id, what,
                     err);
        return rc;
    }
    ra->apns_cert_not_after[env] = pgw_tls_identity_not_after(*ret_id);
    if (ra->apns_cert_not_after[env] <= pgw_clock_wall_ms() / 1000) {
        pgw_diag_add(diag, "[app:%s] %s '%s' has expired", app->id, what, file);
        return PGW_ERR_CRYPTO;
    }
    return 0;
}

/*
 * The app's APNs certificates: loaded (and checked) whenever configured;
 * registered with the sender only when the app has no token key.
 */
static int load_certs(struct pgw_runtime *rt, struct pgw_runtime_app *ra,
                      const struct pgw_runtime_options *o,
                      struct pgw_diag *diag)
{
    const struct pgw_app *app = ra->app;
    struct pgw_tls_identity *prod = NULL, *dev = NULL;
    const char *uid;
    int rc = 0;

    if (!app->apns_cert_file || unreadable(o, app->apns_cert_file))
        return 0;
    if (app->apns_dev_cert_file && !unreadable(o, app->apns_dev_cert_file))
        rc = load_cert(ra, app->apns_dev_cert_file, app->apns_dev_cert_password,
                       "APNs development certificate", 1, diag, &dev);
    if (load_cert(ra, app->apns_cert_file, app->apns_cert_password,
                  "APNs certificate", 0, diag, &prod) < 0 ||
        rc < 0) {
        rc = PGW_ERR_CRYPTO;
        goto out;
    }
    uid = pgw_tls_identity_uid(prod);
    if (!app->apns_topic && !uid) {
        pgw_diag_add(diag,
                     "[app:%s] APNs certificate '%s' names no bundle id "
                     "(UID): set apns_topic",
                     app->id, app->apns_cert_file);
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    if (app->n_apns_teams > 0)
        goto out; /* the token key wins */
    snprintf(ra->cert_identity, sizeof(ra->cert_identity), "%s%s",
             PGW_RUNTIME_CERT_ID_PREFIX, app->id);
    if (!app->apns_topic) {
        snprintf(ra->cert_topic, sizeof(ra->cert_topic), "%s", uid);
        ra->apns_topic = ra->cert_topic;
    }
    rc = pgw_apns_add_cert(rt->apns, ra->cert_identity, prod, dev);
    prod = dev = NULL; /* owned by the sender, also on failure */
    if (rc < 0) {
        pgw_diag_add(diag, "[app:%s] cannot use its APNs certificates: %s",
                     app->id, pgw_strerror(rc));
        goto out;
    }
    ra->apns_identity = ra->cert_identity;
out:
    pgw_tls_identity_free(prod);
    pgw_tls_identity_free(dev);
    return rc;
}

/* Loads the keys and the account of |ra|'s app; 0 or the last error. */
static int load_app(struct pgw_runtime *rt, struct pgw_runtime_app *ra,
                    const struct pgw_runtime_options *o, struct pgw_diag *diag)
{
    const struct pgw_app *app = ra->app;
    int ret = 0, rc;

    ra->apns_identity = app->apns_team_id;
    ra->apns_topic = app->apns_topic;
    rc = load_certs(rt, ra, o, diag);
    if (rc < 0)
        ret = rc;
    for (size_t t = 0; t < app->n_apns_teams; t++) {
        const struct pgw_apns_team *team = &app->apns_teams[t];

        if (unreadable(o, team->key_file))
            continue;
        rc = pgw_apns_add_team(rt->apns, team->team_id, team->key_id,
                               team->key_file);
        /* Two apps of one team share its key. */
        if (rc == PGW_ERR_CONFLICT)
            continue;
        if (rc < 0) {
            pgw_diag_add(diag,
                         "[app:%s] cannot load the APNs key '%s' of team "
                         "'%s': %s",
                         app->id, team->key_file, team->team_id,
                         pgw_strerror(rc));
            ret = rc;
        }
    }
    if (app->fcm_service_account_file &&
        !unreadable(o, app->fcm_service_account_file)) {
        rc = pgw_fcm_account(rt->fcm, app->fcm_service_account_file, diag,
                             &ra->fcm_account);
        if (rc < 0) {
            pgw_diag_add(diag,
                         "[app:%s] cannot load the FCM service account "
                         "'%s': %s",
                         app->id, app->fcm_service_account_file,
                         pgw_strerror(rc));
            ret = rc;
        }
    }
    return ret;
}

int pgw_runtime_new(const struct pgw_runtime_options *opts,
                    struct pgw_config *cfg, struct pgw_template_set *templates,
                    struct pgw_diag *diag, struct pgw_runtime **ret_rt)
{
    struct pgw_runtime *rt = calloc(1, sizeof(*rt));
    int failed = 0, rc;

    if (!rt)
        return PGW_ERR_NOMEM;
    pgw_list_init(&rt->node);
    rt->refs = 1;
    rt->reaper = event_new(opts->base, -1, 0, on_reap, rt);
    if (!rt->reaper) {
        free(rt);
        return PGW_ERR_NOMEM;
    }
    rt->cfg = pgw_config_ref(cfg);
    rt->templates = templates ? pgw_template_set_ref(templates) : NULL;
    pgw_event_limits_from_config(cfg, &rt->limits);
    rc = make_senders(rt, opts, diag);
    if (rc < 0)
        goto fail;
    rt->apps = calloc(cfg->n_apps ? cfg->n_apps : 1, sizeof(*rt->apps));
    if (!rt->apps) {
        rc = PGW_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_apps; i++) {
        struct pgw_runtime_app *ra = &rt->apps[rt->n_apps++];

        ra->app = &cfg->apps[i];
        rc = load_app(rt, ra, opts, diag);
        if (rc == PGW_ERR_NOMEM)
            goto fail;
        if (rc < 0)
            failed = 1;
    }
    if (failed) {
        rc = PGW_ERR_CONFIG;
        goto fail;
    }
    if (opts->list)
        pgw_list_push_front(opts->list, &rt->node);
    *ret_rt = rt;
    return 0;
fail:
    pgw_runtime_free(rt);
    return rc == PGW_ERR_NOMEM ? rc : PGW_ERR_CONFIG;
}

const struct pgw_runtime_app *pgw_runtime_find_app(const struct pgw_runtime *rt,
                                                   const char *id)
{
    for (size_t i = 0; i < rt->n_apps; i++) {
        if (strcmp(rt->apps[i].app->id, id) == 0)
            return &rt->apps[i];
    }
    return NULL;
}

/* The outcome of a push its sender refused (|rc|). */
static void refused(int rc, struct pgw_outcome *ret_err)
{
    memset(ret_err, 0, sizeof(*ret_err));
    if (rc == PGW_ERR_BUSY || rc == PGW_ERR_NOMEM || rc == PGW_ERR_CLOSED) {
        ret_err->kind = PGW_OUTCOME_RETRY;
        pgw_copy_str(ret_err->reason, sizeof(ret_err->reason), "busy");
        return;
    }
    ret_err->kind = PGW_OUTCOME_FINAL;
    pgw_copy_str(ret_err->reason, sizeof(ret_err->reason),
                 rc == PGW_ERR_NOTFOUND ? "unknown_team"
                 : rc == PGW_ERR_INVAL  ? "bad_request"
                                        : "local_error");
}

int pgw_runtime_send(struct pgw_runtime *rt, const struct pgw_runtime_app *app,
                     const struct pgw_push *p, pgw_apns_cb cb, void *arg,
                     struct pgw_outcome *ret_err)
{
    int rc;

    if (p->provider == PGW_PROVIDER_APNS) {
        struct pgw_apns_push ap = {
            .env = p->env,
            .team_id = p->team,
            .device_token = p->token,
            .topic = p->topic,
            .push_type = p->push_type,
            .priority = p->priority,
            .expiration = p->expiration,
            .collapse_id = p->collapse_id,
            .apns_id = p->apns_id,
            .body = p->body,
            .body_len = p->body_len,
        };
        rc = pgw_apns_send(rt->apns, &ap, cb, arg);
    } else {
        struct pgw_fcm_request fr = {
            .account = app ? app->fcm_account : NULL,
            .device_token = p->token,
            .body = p->body,
            .body_len = p->body_len,
        };
        if (!fr.account) {
            memset(ret_err, 0, sizeof(*ret_err));
            ret_err->kind = PGW_OUTCOME_FINAL;
            pgw_copy_str(ret_err->reason, sizeof(ret_err->reason),
                         "no_fcm_account");
            return -1;
        }
        rc = pgw_fcm_send(rt->fcm, &fr, cb, arg);
    }
    if (rc == 0)
        return 0;
    refused(rc, ret_err);
    return -1;
}

void pgw_runtime_cancel_senders(struct pgw_runtime *rt)
{
    pgw_apns_free(rt->apns);
    rt->apns = NULL;
    pgw_fcm_free(rt->fcm);
    rt->fcm = NULL;
}

/* Fires from the loop after the last reference went. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pgw_runtime_free(arg);
}

void pgw_runtime_unref(struct pgw_runtime *rt)
{
    if (rt && --rt->refs == 0)
        event_active(rt->reaper, EV_TIMEOUT, 0);
}

void pgw_runtime_add_stats(const struct pgw_runtime *rt,
                           struct pgw_h2_pool_stats acc[PGW_PROVIDER_COUNT])
{
    for (int p = 0; p < PGW_PROVIDER_COUNT; p++) {
        struct pgw_h2_pool_stats s;

        memset(&s, 0, sizeof(s));
        if (p == PGW_PROVIDER_APNS && rt->apns)
            pgw_apns_stats(rt->apns, &s);
        else if (p == PGW_PROVIDER_FCM && rt->fcm)
            pgw_fcm_stats(rt->fcm, &s);
        acc[p].conns_connecting += s.conns_connecting;
        acc[p].conns_ready += s.conns_ready;
        acc[p].conns_draining += s.conns_draining;
        acc[p].slots_backoff += s.slots_backoff;
    }
}

void pgw_runtime_free(struct pgw_runtime *rt)
{
    if (!rt)
        return;
    pgw_list_remove(&rt->node);
    if (rt->reaper)
        event_free(rt->reaper);
    pgw_runtime_cancel_senders(rt);
    free(rt->apps);
    pgw_template_set_unref(rt->templates);
    pgw_config_free(rt->cfg);
    free(rt);
}

void pgw_runtime_app_describe(const struct pgw_app *app,
                              struct pgw_runtime_app *ret_ra)
{
    struct pgw_tls_identity *id = NULL;
    const char *uid;

    memset(ret_ra, 0, sizeof(*ret_ra));
    ret_ra->app = app;
    ret_ra->apns_identity = app->apns_team_id;
    ret_ra->apns_topic = app->apns_topic;
    /* As load_certs(): the token key wins. */
    if (app->n_apns_teams > 0 || !app->apns_cert_file)
        return;
    snprintf(ret_ra->cert_identity, sizeof(ret_ra->cert_identity), "%s%s",
             PGW_RUNTIME_CERT_ID_PREFIX, app->id);
    ret_ra->apns_identity = ret_ra->cert_identity;
    if (app->apns_topic)
        return;
    if (pgw_tls_identity_load(app->apns_cert_file, app->apns_cert_password, &id,
                              NULL, 0) == 0 &&
        (uid = pgw_tls_identity_uid(id)) != NULL) {
        snprintf(ret_ra->cert_topic, sizeof(ret_ra->cert_topic), "%s", uid);
        ret_ra->apns_topic = ret_ra->cert_topic;
    }
    pgw_tls_identity_free(id);
}

int pgw_runtime_check(struct pgw_config *cfg, struct pgw_diag *diag)
{
    struct pgw_runtime_options o;
    struct pgw_template_set *tmpl = NULL;
    struct pgw_runtime *rt = NULL;
    size_t before = diag->n;
    struct stat st;
    int rc = 0;

    memset(&o, 0, sizeof(o));
    o.skip_unreadable = true;
    /* A folder that is not there is reported by the file checks. */
    if (stat(cfg->templates.dir, &st) == 0 && S_ISDIR(st.st_mode) &&
        pgw_template_set_load(cfg->templates.dir, diag, &tmpl) < 0 &&
        diag->n == before)
        pgw_diag_add(diag, "templates dir '%s': cannot be loaded",
                     cfg->templates.dir);
    o.base = event_base_new();
    o.dns = o.base ? pgw_h2_dns_new(o.base) : NULL;
    if (o.dns)
        rc = pgw_curlmulti_new(o.base, 0, &o.cm);
    if (!o.base || !o.dns || rc < 0) {
        pgw_diag_add(diag, "cannot check the keys and accounts: %s",
                     pgw_strerror(o.dns ? rc : PGW_ERR_NOMEM));
        goto out;
    }
    pgw_runtime_new(&o, cfg, tmpl, diag, &rt);
out:
    pgw_runtime_free(rt);
    pgw_template_set_unref(tmpl);
    pgw_curlmulti_free(o.cm);
    if (o.dns)
        evdns_base_free(o.dns, 0);
    if (o.base)
        event_base_free(o.base);
    return (int)(diag->n - before);
}

void pgw_runtime_describe_certs(const struct pgw_config *cfg, FILE *out)
{
    int64_t now = pgw_clock_wall_ms() / 1000;

    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct pgw_app *app = &cfg->apps[a];
        const char *const files[2] = {app->apns_cert_file,
                                      app->apns_dev_cert_file};
        const char *const passwords[2] = {app->apns_cert_password,
                                          app->apns_dev_cert_password};

        for (int i = 0; i < 2; i++) {
            struct pgw_tls_identity *id = NULL;
            const char *uid;
            char day[32] = "?";
            time_t t;
            struct tm tm;

            if (!files[i] ||
                pgw_tls_identity_load(files[i], passwords[i], &id, NULL, 0) < 0)
                continue;
            t = (time_t)pgw_tls_identity_not_after(id);
            if (gmtime_r(&t, &tm))
                strftime(day, sizeof(day), "%Y-%m-%d", &tm);
            uid = pgw_tls_identity_uid(id);
            fprintf(out,
                    "[app:%s] %s '%s' (topic '%s'): expires %s, in %lld "
                    "days%s\n",
                    app->id,
                    i ? "APNs development certificate" : "APNs certificate",
                    files[i], uid ? uid : "?", day,
                    (long long)((pgw_tls_identity_not_after(id) - now) / 86400),
                    app->n_apns_teams > 0 ? " (not used: the token key wins)"
                                          : "");
            pgw_tls_identity_free(id);
        }
    }
}
