/*
 * The configuration of DESIGN §5: an INI file read with libinih, then
 * PUSHGW_<SECTION>_<KEY> environment overrides, then typed validation.
 * Every problem found is reported (file, line or variable, key, why).
 */
#ifndef PUSHGW_CONFIG_H
#define PUSHGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"
#include "pushgw.h"

#define PGW_CONFIG_MAX_APPS 1024
/* A hook key shorter than this is guessable: a configuration error. */
#define PGW_CONFIG_MIN_HOOK_KEY 16
/* deploy/pushgw.ini.example's hook_key: refused, so it never goes live. */
#define PGW_CONFIG_PLACEHOLDER_KEY "change-me-to-a-long-random-secret"
#define PGW_CONFIG_MAX_TEAMS 32

struct pgw_apns_team {
    char *team_id;
    char *key_id;
    char *key_file; /* absolute or relative to the working directory */
};

struct pgw_app {
    char *id;
    char *hook_key;      /* secret: from hook_key or the hook_key_file */
    char *hook_key_file; /* NULL when hook_key is given inline */
    char *server_hook_url;
    char *server_hook_key; /* secret */
    int server_hook_timeout_ms;
    int server_hook_connections; /* per hook host; calls beyond wait */
    char *apns_topic;
    char *apns_team_id; /* default team; NULL when the app has no APNs key */
    char *apns_key_id;
    char *apns_key_file;
    /* Every team with a key: the default team first, then apns_team.* */
    struct pgw_apns_team *apns_teams;
    size_t n_apns_teams;
    char *fcm_service_account_file;
    /* LeanCloud identity (DESIGN §15): the X-LC-Id of this app (default:
     * |id|), its keys (secrets; NULL when not set) */
    char *leancloud_app_id;
    char *app_key;
    char *app_key_file;
    char *master_key;
    char *master_key_file;
    bool allow_client_push; /* POST /1.1/push with the app key */
    /* APNs certificates (PEM with the key, or PKCS#12), used when the app
     * has no token key: token authentication wins where both are set. The
     * development certificate is optional (the production one serves both
     * endpoints then, as Apple's universal certificates do). Passwords are
     * secrets, read from the _file forms when given so. */
    char *apns_cert_file;
    char *apns_cert_password;
    char *apns_cert_password_file;
    char *apns_dev_cert_file;
    char *apns_dev_cert_password;
    char *apns_dev_cert_password_file;
};

struct pgw_config {
    int refs;   /* pgw_config_ref() / pgw_config_free() */
    char *path; /* the file read, as given */
    char *dir;  /* its folder, absolute: relative paths resolve here */

    struct {
        char *listen;
        char *admin_listen;
        long long max_body_bytes;
        int max_peers_per_event;
        int shutdown_timeout_ms;
        enum pgw_log_level log_level;
        long long max_backlog_events;
        char *tls_cert_file;
        char *tls_key_file;
        char *client_listen; /* the /1.1/ API; NULL: not served */
        int max_connections; /* per listener */
    } server;

    struct {
        char *url; /* secret-bearing: may hold a password */
        int pool_size;
        char *migrations_dir;
        /* the store's installation cache; 0 MiB: none */
        int installation_cache_mb;
        int installation_cache_ttl_s;
    } database;

    struct {
        char *dir;
    } templates;

    struct {
        char *production_url;
        char *development_url;
        char *ca_file;
        int connections;     /* per pool, kept open: the minimum */
        int max_connections; /* opened while saturated, up to it */
        int idle_close_ms;   /* an unneeded one above the minimum closes */
        int request_timeout_ms;
        /* HTTP CONNECT proxy (proxy.h), secret-bearing; NULL: direct */
        char *proxy;
        char *proxy_password_file;
        char *proxy_password; /* secret: read from the file; NULL: none */
    } apns;

    struct {
        char *url;
        char *token_url;
        char *ca_file;
        int connections;     /* per pool, kept open: the minimum */
        int max_connections; /* opened while saturated, up to it */
        int idle_close_ms;   /* an unneeded one above the minimum closes */
        int request_timeout_ms;
        /* the same for FCM and its OAuth token endpoint */
        char *proxy;
        char *proxy_password_file;
        char *proxy_password;
    } fcm;

    struct {
        int max_attempts;
        long long retry_base_ms;
        long long retry_max_ms;
        long long validity_s;
        int lease_ms;          /* how long an event is held by one process */
        int claim_interval_ms; /* how often events left by others are taken */
        int events_in_memory;  /* events worked on at once by this process */
    } delivery;

    struct pgw_app *apps;
    size_t n_apps;
};

/*
 * Reads |path| (NULL: ./pushgw.ini, else /etc/pushgw/pushgw.ini) with the
 * environment overrides of |envp| (NULL: the process environment).
 * On success stores a new config in |*ret_cfg| (free with
 * pgw_config_free()). On failure every problem is added to |diag| and
 * PGW_ERR_CONFIG (or PGW_ERR_NOMEM, PGW_ERR_IO) is returned.
 */
int pgw_config_load(const char *path, char *const *envp, struct pgw_diag *diag,
                    struct pgw_config **ret_cfg);

/* Drops a reference; the config is freed with the last one. A loaded
 * config has one reference. NULL is a no-op. Single-threaded. */
void pgw_config_free(struct pgw_config *cfg);

/* Takes another reference; returns |cfg|. */
struct pgw_config *pgw_config_ref(struct pgw_config *cfg);

/*
 * The deeper checks of `check-config` that look at files: key files exist,
 * are readable and not accessible to others; the templates and migrations
 * folders exist. Adds each problem to |diag|; returns the number added.
 */
int pgw_config_check_files(const struct pgw_config *cfg, struct pgw_diag *diag);

/*
 * The secret files alone (keys, certificates, service accounts, the files
 * of secrets): each must be a readable regular file that neither the group
 * nor other users can use. `serve` refuses to start on any problem;
 * check-config reports them with pgw_config_check_files(). Adds each
 * problem to |diag|; returns the number added.
 */
int pgw_config_check_secret_files(const struct pgw_config *cfg,
                                  struct pgw_diag *diag);

/*
 * What is allowed but unwise, one line each in |diag|: a config file the
 * group or others can read that holds a secret inline; a plain-http
 * server hook on a host other than this machine. Returns the number.
 */
int pgw_config_warnings(const struct pgw_config *cfg, struct pgw_diag *diag);

/* The app named |id|, or NULL. */
const struct pgw_app *pgw_config_find_app(const struct pgw_config *cfg,
                                          const char *id);

/* The app whose leancloud_app_id is |lc_id| (an X-LC-Id), or NULL. */
const struct pgw_app *
pgw_config_find_leancloud_app(const struct pgw_config *cfg, const char *lc_id);

/* The default config path: ./pushgw.ini if it exists, else /etc/…. */
const char *pgw_config_default_path(void);

#endif
