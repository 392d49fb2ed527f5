/*
 * The runtime the dispatcher is built from (DESIGN §10): the config, the
 * templates, and what they give at send time — an APNs sender holding
 * every team's signing key, an FCM sender holding every service account,
 * each app with its FCM account. It is made as a whole from one config
 * and replaced as a whole on reload; events already being worked finish
 * with the runtime they started with (the dispatcher counts references).
 *
 * `check-config` builds the same runtime, on a private loop, to report
 * every problem serve would meet at start-up (pgw_runtime_check()). The
 * senders open no connection before their first push, so building one
 * sends nothing.
 */
#ifndef PUSHGW_RUNTIME_H
#define PUSHGW_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "apns.h"
#include "event.h"
#include "h2client.h"
#include "outcome.h"
#include "push.h"
#include "pushgw.h"
#include "util/list.h"

struct event_base;
struct evdns_base;
struct pgw_curlmulti;
struct pgw_template_set;
struct pgw_apns;
struct pgw_fcm;
struct pgw_fcm_account;

#define PGW_RUNTIME_CERT_ID_PREFIX "cert:"

/* What an app needs at send time, resolved once per runtime. */
struct pgw_runtime_app {
    const struct pgw_app *app;           /* in the runtime's cfg */
    struct pgw_fcm_account *fcm_account; /* NULL: no FCM for this app */
    /* The APNs identity of the app's pushes when neither the content nor
     * the installation names a team: the default team's key, else its
     * certificates ("cert:<app id>"); NULL: the app cannot send to APNs.
     * Token authentication wins where both are configured. */
    const char *apns_identity;
    /* apns_topic, else the bundle id of the app's certificate; NULL: none. */
    const char *apns_topic;
    /* When the app's certificates expire (Unix s; 0: no such certificate):
     * [0] production, [1] development. */
    int64_t apns_cert_not_after[2];
    char cert_identity[80];
    char cert_topic[256];
};

struct pgw_runtime {
    /* References: pgw_runtime_ref() / pgw_runtime_unref(). */
    int refs;
    /* In the owner's list of live runtimes (pgw_runtime_options.list)
     * from its creation to its free: for stats and stopping. */
    struct pgw_list node;
    struct event *reaper;   /* the deferred free of the last unref */
    struct pgw_config *cfg; /* a reference */
    struct pgw_template_set *templates; /* a reference */
    struct pgw_apns *apns;        /* NULL after pgw_runtime_cancel_senders() */
    struct pgw_fcm *fcm;          /* NULL after pgw_runtime_cancel_senders() */
    struct pgw_runtime_app *apps; /* one per configured app, in order */
    size_t n_apps;
    struct pgw_event_limits limits; /* from cfg */
};

struct pgw_runtime_options {
    struct event_base *base;  /* the senders' loop; must outlive them */
    struct evdns_base *dns;   /* their resolver; must outlive them */
    struct pgw_curlmulti *cm; /* FCM's token requests; must outlive them */
    /* The providers' reconnect backoff (0: defaults; tests shorten it). */
    unsigned backoff_initial_ms;
    unsigned backoff_max_ms;
    /* Key and account files that cannot be read are skipped, not
     * reported: check-config reports them once with the file checks. */
    bool skip_unreadable;
    /* The owner's list of live runtimes (struct pgw_runtime by |node|;
     * NULL: none): the runtime is in it until it is freed. */
    struct pgw_list *list;
};

/*
 * Builds a runtime from |cfg| and |templates| (a reference is taken on
 * each) with refs = 1. Every problem (a key or a service account that
 * cannot be loaded, a sender that cannot be set up) is added to |diag|;
 * any problem fails the whole runtime. Errors: PGW_ERR_CONFIG,
 * PGW_ERR_NOMEM.
 */
int pgw_runtime_new(const struct pgw_runtime_options *opts,
                    struct pgw_config *cfg, struct pgw_template_set *templates,
                    struct pgw_diag *diag, struct pgw_runtime **ret_rt);

/*
 * Hands |p| (of |app|, NULL when it is no longer configured) to the
 * sender of its provider, which copies what it needs. |cb|(|arg|, outcome)
 * then runs exactly once, later, from the loop (pgw_apns_send(),
 * pgw_fcm_send()). Returns 0, or -1 when the push could not be handed
 * over, with the outcome to record in |*ret_err| and |cb| never called:
 * RETRY "busy" (the sender is full or closing), FINAL "no_fcm_account",
 * "unknown_team", "bad_request" or "local_error".
 */
int pgw_runtime_send(struct pgw_runtime *rt, const struct pgw_runtime_app *app,
                     const struct pgw_push *p, pgw_apns_cb cb, void *arg,
                     struct pgw_outcome *ret_err);

/* The app |id| of |rt|, or NULL when it is not configured. */
const struct pgw_runtime_app *pgw_runtime_find_app(const struct pgw_runtime *rt,
                                                   const char *id);

/*
 * Frees the senders now: every push in flight is answered (RETRY
 * "cancelled") from inside this call. The runtime stays usable for
 * reading its config; no push may be sent with it afterwards.
 */
void pgw_runtime_cancel_senders(struct pgw_runtime *rt);

/* Takes a reference to |rt| (for an event or a retry worked with it). */
static inline struct pgw_runtime *pgw_runtime_ref(struct pgw_runtime *rt)
{
    rt->refs++;
    return rt;
}

/* Drops a reference; after the last one |rt| is freed from the loop, in
 * a later iteration: never inside a callback of its own senders. NULL is
 * a no-op. */
void pgw_runtime_unref(struct pgw_runtime *rt);

/* Frees |rt| now, whatever its references; not from inside a callback of
 * its senders. NULL is a no-op. */
void pgw_runtime_free(struct pgw_runtime *rt);

/* Adds the pools' stats of |rt|'s senders to |acc| (index: enum
 * pgw_provider): connections by state and slots in backoff. */
void pgw_runtime_add_stats(const struct pgw_runtime *rt,
                           struct pgw_h2_pool_stats acc[PGW_PROVIDER_COUNT]);

/*
 * render: fills |ret_ra| with |app|'s APNs identity and default topic as
 * a runtime would hold them, without a sender: the default team, else the
 * app's certificates (whose bundle id is read when apns_topic is not set;
 * a certificate that cannot be read gives no topic). |ret_ra| points into
 * itself: it must not be copied. No FCM account is loaded.
 */
void pgw_runtime_app_describe(const struct pgw_app *app,
                              struct pgw_runtime_app *ret_ra);

/*
 * check-config: loads |cfg|'s templates and builds the runtime serve
 * would build, on a private loop, adding every problem to |diag|.
 * Returns the number of problems added (0: serve would start).
 */
int pgw_runtime_check(struct pgw_config *cfg, struct pgw_diag *diag);

/*
 * check-config: one line per APNs certificate of |cfg| on |out|, with its
 * topic and when it expires (in days), and whether the app's token key
 * makes it unused. Certificates that cannot be loaded are left out
 * (pgw_runtime_check() reports them).
 */
void pgw_runtime_describe_certs(const struct pgw_config *cfg, FILE *out);

#endif
