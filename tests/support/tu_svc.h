/*
 * The whole service for end-to-end tests: a fresh database, two mock APNs
 * (production and development endpoints), a mock FCM, the test hook
 * server, and the real `pushgw serve` binary configured against all of
 * them on loopback.
 */
#ifndef PUSHGW_TU_SVC_H
#define PUSHGW_TU_SVC_H

#include "tu_mock.h"

struct tu_svc_gateway {
    int pid;  /* 0 when not running */
    int port; /* the webhook listener */
    char *log;
};

struct tu_svc {
    char *dir;
    char *db;                /* conninfo of the fresh database */
    char *ini;               /* the gateway's config */
    struct tu_mock apns;     /* production endpoint */
    struct tu_mock apns_dev; /* development endpoint */
    struct tu_mock fcm;
    struct tu_mock hook;
    struct tu_svc_gateway gw;
    int admin_port;
    int own_db; /* created here: dropped by tu_svc_stop() */
};

struct tu_svc_options {
    /* Extra arguments for the mocks (NULL-terminated lists or NULL). */
    const char *const *apns_args;
    const char *const *fcm_args;
    /* The hook server's answers (JSON text) or NULL for "{}". */
    const char *hook_answers;
    /* Lines appended to the [delivery] section, and extra sections. */
    const char *delivery_ini;
    const char *extra_ini;
    /* A second gateway on the same database: reuse |db| (do not create,
     * migrate or drop it). */
    const char *reuse_db;
    /* A database of the caller's (e.g. on a private cluster): migrated,
     * not dropped. */
    const char *db;
};

/* Starts everything; fails the test on any problem. */
void tu_svc_start(struct tu_svc *s, const struct tu_svc_options *opts);
/* Stops every process still running and drops the database. */
void tu_svc_stop(struct tu_svc *s);

/* (Re)starts only the gateway of |s| (after tu_svc_kill_gateway) and
 * waits until /readyz answers 200. */
void tu_svc_start_gateway(struct tu_svc *s);
/* Kills the gateway with |sig| and waits; returns the exit status. */
int tu_svc_kill_gateway(struct tu_svc *s, int sig);

/*
 * POSTs |body| to the gateway's |path| with the hook key |key| (NULL:
 * none) and content type |ctype| (NULL: application/json). Returns the
 * HTTP status (0 when no answer); the body in |*ret_body| (free()).
 */
int tu_svc_post(struct tu_svc *s, const char *path, const char *key,
                const char *ctype, const char *body, char **ret_body);
/* GET on the admin listener. */
int tu_svc_admin_get(struct tu_svc *s, const char *path, char **ret_body);

/* Inserts an installation with the SQL array literal |channels| and the
 * APNs team |team| (NULL: none); returns its id. */
long long tu_svc_add_device(struct tu_svc *s, const char *app, const char *type,
                            const char *token, const char *channels,
                            const char *team);
/* Inserts an installation on the one channel |channel| (any text, quoted
 * here); returns its id. */
long long tu_svc_add_device_on(struct tu_svc *s, const char *app,
                               const char *type, const char *token,
                               const char *channel);
/* The first value of |sql| on the test database (free()). */
char *tu_svc_query(struct tu_svc *s, const char *sql);
/* Polls |sql| until it returns |want| (up to |timeout_ms|); true if so. */
bool tu_svc_wait_query(struct tu_svc *s, const char *sql, const char *want,
                       int timeout_ms);
/* Waits up to |timeout_ms| until |n| events are done; else fails the
 * test, listing every event's id, state, result and lease owner. */
void tu_svc_wait_events_done(struct tu_svc *s, int n, int timeout_ms);

#endif
