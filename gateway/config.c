/*
 * Config loading in three passes: collect every (section, key, value, line)
 * from the file, lay the environment over it, then convert and validate
 * with one table per section. Collecting first lets an environment variable
 * override a key the file does not have, and lets errors name their origin.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"
#include "util/buf.h"
#include "util/url.h"

extern char **environ;

#define MAX_VALUE_LEN 4096
#define MAX_ENTRIES 65536

enum ktype {
    K_STR,   /* any non-empty string */
    K_PATH,  /* resolved against the config folder */
    K_INT,   /* integer within [min, max] */
    K_LEVEL, /* log level */
    K_ADDR,  /* host:port */
    K_URL,   /* http:// or https:// URL */
    K_BOOL,  /* true/false, yes/no, on/off, 1/0 into a bool */
};

struct keydef {
    const char *key;
    enum ktype type;
    const char *def; /* NULL: no default (optional or required) */
    long long min;
    long long max;
    size_t off;
    size_t size; /* sizeof the int field for K_INT */
};

#define KD_STR(k, d, s, f)                                                     \
    {                                                                          \
        k, K_STR, d, 0, 0, offsetof(s, f), 0                                   \
    }
#define KD_PATH(k, d, s, f)                                                    \
    {                                                                          \
        k, K_PATH, d, 0, 0, offsetof(s, f), 0                                  \
    }
#define KD_URL(k, d, s, f)                                                     \
    {                                                                          \
        k, K_URL, d, 0, 0, offsetof(s, f), 0                                   \
    }
#define KD_ADDR(k, d, s, f)                                                    \
    {                                                                          \
        k, K_ADDR, d, 0, 0, offsetof(s, f), 0                                  \
    }
#define KD_BOOL(k, d, s, f)                                                    \
    {                                                                          \
        k, K_BOOL, d, 0, 0, offsetof(s, f), 0                                  \
    }
#define KD_INT(k, d, lo, hi, s, f)                                             \
    {                                                                          \
        k, K_INT, d, lo, hi, offsetof(s, f), sizeof(((s *)0)->f)               \
    }

#define C struct pgw_config
static const struct keydef server_keys[] = {
    KD_ADDR("listen", "127.0.0.1:8080", C, server.listen),
    KD_ADDR("admin_listen", "127.0.0.1:9090", C, server.admin_listen),
    KD_INT("max_body_bytes", "1048576", 1024, 1LL << 30, C,
           server.max_body_bytes),
    KD_INT("max_peers_per_event", "10000", 1, 1000000, C,
           server.max_peers_per_event),
    KD_INT("shutdown_timeout_ms", "10000", 0, 3600000, C,
           server.shutdown_timeout_ms),
    {"log_level", K_LEVEL, "info", 0, 0, offsetof(C, server.log_level), 0},
    KD_INT("max_backlog_events", "1000000", 1, 1LL << 40, C,
           server.max_backlog_events),
    KD_PATH("tls_cert_file", NULL, C, server.tls_cert_file),
    KD_PATH("tls_key_file", NULL, C, server.tls_key_file),
    KD_ADDR("client_listen", NULL, C, server.client_listen),
    KD_INT("max_connections", "10000", 16, 1000000, C, server.max_connections),
};

static const struct keydef database_keys[] = {
    KD_STR("url", "postgresql:///pushgw", C, database.url),
    KD_INT("pool_size", "4", 1, 256, C, database.pool_size),
    KD_PATH("migrations_dir", "migrations", C, database.migrations_dir),
    KD_INT("installation_cache_mb", "16", 0, 65536, C,
           database.installation_cache_mb),
    KD_INT("installation_cache_ttl_s", "60", 1, 86400, C,
           database.installation_cache_ttl_s),
};

static const struct keydef templates_keys[] = {
    KD_PATH("dir", "templates", C, templates.dir),
};

static const struct keydef apns_keys[] = {
    KD_URL("production_url", "https://api.push.apple.com", C,
           apns.production_url),
    KD_URL("development_url", "https://api.sandbox.push.apple.com", C,
           apns.development_url),
    KD_PATH("ca_file", NULL, C, apns.ca_file),
    KD_INT("connections", "2", 1, 1000, C, apns.connections),
    KD_INT("max_connections", "16", 1, 1000, C, apns.max_connections),
    KD_INT("idle_close_ms", "60000", 100, 86400000, C, apns.idle_close_ms),
    KD_INT("request_timeout_ms", "10000", 100, 600000, C,
           apns.request_timeout_ms),
    KD_STR("proxy", NULL, C, apns.proxy),
    KD_PATH("proxy_password_file", NULL, C, apns.proxy_password_file),
};

static const struct keydef fcm_keys[] = {
    KD_URL("url", "https://fcm.googleapis.com", C, fcm.url),
    KD_URL("token_url", "https://oauth2.googleapis.com/token", C,
           fcm.token_url),
    KD_PATH("ca_file", NULL, C, fcm.ca_file),
    KD_INT("connections", "2", 1, 1000, C, fcm.connections),
    KD_INT("max_connections", "64", 1, 1000, C, fcm.max_connections),
    KD_INT("idle_close_ms", "60000", 100, 86400000, C, fcm.idle_close_ms),
    KD_INT("request_timeout_ms", "10000", 100, 600000, C,
           fcm.request_timeout_ms),
    KD_STR("proxy", NULL, C, fcm.proxy),
    KD_PATH("proxy_password_file", NULL, C, fcm.proxy_password_file),
};

static const struct keydef delivery_keys[] = {
    KD_INT("max_attempts", "8", 1, 1000, C, delivery.max_attempts),
    KD_INT("retry_base_ms", "1000", 1, 86400000, C, delivery.retry_base_ms),
    KD_INT("retry_max_ms", "300000", 1, 604800000, C, delivery.retry_max_ms),
    /* FCM keeps a message at most 28 days (android.ttl). */
    KD_INT("validity_s", "604800", 1, 2419200, C, delivery.validity_s),
    KD_INT("lease_ms", "30000", 500, 3600000, C, delivery.lease_ms),
    KD_INT("claim_interval_ms", "1000", 10, 600000, C,
           delivery.claim_interval_ms),
    KD_INT("events_in_memory", "2000", 1, 1000000, C,
           delivery.events_in_memory),
};
#undef C

#define A struct pgw_app
static const struct keydef app_keys[] = {
    KD_STR("hook_key", NULL, A, hook_key),
    KD_PATH("hook_key_file", NULL, A, hook_key_file),
    KD_URL("server_hook_url", NULL, A, server_hook_url),
    KD_STR("server_hook_key", NULL, A, server_hook_key),
    KD_INT("server_hook_timeout_ms", "3000", 10, 600000, A,
           server_hook_timeout_ms),
    KD_INT("server_hook_connections", "64", 1, 1024, A,
           server_hook_connections),
    KD_STR("apns_topic", NULL, A, apns_topic),
    KD_STR("apns_team_id", NULL, A, apns_team_id),
    KD_STR("apns_key_id", NULL, A, apns_key_id),
    KD_PATH("apns_key_file", NULL, A, apns_key_file),
    KD_PATH("fcm_service_account_file", NULL, A, fcm_service_account_file),
    KD_STR("leancloud_app_id", NULL, A, leancloud_app_id),
    KD_STR("app_key", NULL, A, app_key),
    KD_PATH("app_key_file", NULL, A, app_key_file),
    KD_STR("master_key", NULL, A, master_key),
    KD_PATH("master_key_file", NULL, A, master_key_file),
    KD_BOOL("allow_client_push", "false", A, allow_client_push),
    KD_PATH("apns_cert_file", NULL, A, apns_cert_file),
    KD_STR("apns_cert_password", NULL, A, apns_cert_password),
    KD_PATH("apns_cert_password_file", NULL, A, apns_cert_password_file),
    KD_PATH("apns_dev_cert_file", NULL, A, apns_dev_cert_file),
    KD_STR("apns_dev_cert_password", NULL, A, apns_dev_cert_password),
    KD_PATH("apns_dev_cert_password_file", NULL, A,
            apns_dev_cert_password_file),
};
#undef A

struct section_def {
    const char *name;
    const struct keydef *keys;
    size_t n_keys;
};

static const struct section_def sections[] = {
    {"server", server_keys, PGW_ARRAY_SIZE(server_keys)},
    {"database", database_keys, PGW_ARRAY_SIZE(database_keys)},
    {"templates", templates_keys, PGW_ARRAY_SIZE(templates_keys)},
    {"apns", apns_keys, PGW_ARRAY_SIZE(apns_keys)},
    {"fcm", fcm_keys, PGW_ARRAY_SIZE(fcm_keys)},
    {"delivery", delivery_keys, PGW_ARRAY_SIZE(delivery_keys)},
};

/* Keys whose values are secrets: never echoed in an error. */
static int is_secret_key(const char *key)
{
    return strcmp(key, "hook_key") == 0 ||
           strcmp(key, "server_hook_key") == 0 || strcmp(key, "url") == 0 ||
           strcmp(key, "app_key") == 0 || strcmp(key, "master_key") == 0 ||
           strcmp(key, "proxy") == 0;
}

/* One value from the file or the environment. */
struct entry {
    char *section;
    char *key;
    char *value;
    int line;      /* 0 when from the environment */
    char *envname; /* set when from the environment */
    int used;
};

struct loader {
    const char *path;
    struct pgw_diag *diag;
    struct entry *entries;
    size_t n_entries;
    size_t cap_entries;
    int line; /* the line inih is on */
    FILE *fp;
    int oom;
    int errors;
};

static void lerr(struct loader *l, const struct entry *e, const char *fmt, ...)
    PGW_PRINTF(3, 4);

static void lerr(struct loader *l, const struct entry *e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (e && e->envname)
        pgw_diag_add(l->diag, "environment '%s': [%s] %s: %s", e->envname,
                     e->section, e->key, msg);
    else if (e)
        pgw_diag_add(l->diag, "'%s' line %d: [%s] %s: %s", l->path, e->line,
                     e->section, e->key, msg);
    else
        pgw_diag_add(l->diag, "'%s': %s", l->path, msg);
    l->errors++;
}

static struct entry *find_entry(struct loader *l, const char *section,
                                const char *key)
{
    for (size_t i = 0; i < l->n_entries; i++) {
        if (strcmp(l->entries[i].section, section) == 0 &&
            strcmp(l->entries[i].key, key) == 0)
            return &l->entries[i];
    }
    return NULL;
}

static struct entry *add_entry(struct loader *l, const char *section,
                               const char *key, const char *value, int line,
                               const char *envname)
{
    struct entry *e;

    e = pgw_array_grow(l->entries, &l->cap_entries, l->n_entries, sizeof(*e),
                       64);
    if (!e)
        goto oom;
    l->entries = e;
    e = &l->entries[l->n_entries];
    memset(e, 0, sizeof(*e));
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->envname = pgw_strdup0(envname);
    e->line = line;
    if (!e->section || !e->key || !e->value || (envname && !e->envname)) {
        free(e->section);
        free(e->key);
        free(e->value);
        free(e->envname);
        goto oom;
    }
    l->n_entries++;
    return e;
oom:
    l->oom = 1;
    return NULL;
}

static int is_app_section(const char *section)
{
    return strncmp(section, "app:", 4) == 0;
}

/* Reads one line for inih, counting lines so errors can name them. */
static char *read_line(char *str, int num, void *stream)
{
    struct loader *l = stream;
    char *r = fgets(str, num, l->fp);

    if (r)
        l->line++;
    return r;
}

static int on_ini_value(void *user, const char *section, const char *name,
                        const char *value)
{
    struct loader *l = user;
    struct entry tmp = {
        .section = (char *)section, .key = (char *)name, .line = l->line};
    struct entry *prev;

    if (!name) /* a section header alone */
        return 1;
    if (l->n_entries >= MAX_ENTRIES) {
        lerr(l, &tmp, "too many keys (limit %d)", MAX_ENTRIES);
        return 0;
    }
    if (strlen(value) > MAX_VALUE_LEN) {
        lerr(l, &tmp, "value longer than %d bytes", MAX_VALUE_LEN);
        return 1;
    }
    prev = find_entry(l, section, name);
    if (prev) {
        lerr(l, &tmp, "duplicate key (first set on line %d)", prev->line);
        return 1;
    }
    if (!add_entry(l, section, name, value, l->line, NULL))
        return 0;
    return 1;
}

/* PUSHGW_<SECTION>_<KEY>: upper-cased, '.', '-' and ':' turned into '_'. */
static void env_name(char *buf, size_t size, const char *section,
                     const char *key)
{
    size_t n = (size_t)snprintf(buf, size, "PUSHGW_%s_%s", section, key);

    for (size_t i = 0; i < n && i < size; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '.' || c == '-' || c == ':')
            buf[i] = '_';
        else
            buf[i] = (char)toupper(c);
    }
}

static const char *env_lookup(char *const *envp, const char *name)
{
    size_t n = strlen(name);

    for (; envp && *envp; envp++) {
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return *envp + n + 1;
    }
    return NULL;
}

static void apply_env_key(struct loader *l, char *const *envp,
                          const char *section, const char *key)
{
    char name[512];
    const char *v;
    struct entry *e;

    env_name(name, sizeof(name), section, key);
    v = env_lookup(envp, name);
    if (!v)
        return;
    e = find_entry(l, section, key);
    if (e) {
        char *nv = strdup(v);
        char *nn = strdup(name);
        if (!nv || !nn) {
            free(nv);
            free(nn);
            l->oom = 1;
            return;
        }
        free(e->value);
        free(e->envname);
        e->value = nv;
        e->envname = nn;
        e->line = 0;
    } else {
        add_entry(l, section, key, v, 0, name);
    }
}

static int parse_ll(const char *s, long long *ret)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0')
        return PGW_ERR_INVAL;
    *ret = v;
    return 0;
}

/* host:port or [v6]:port with a port in 1..65535. */
static int valid_addr(const char *s)
{
    const char *colon = strrchr(s, ':');
    long long port;

    if (!colon || colon == s)
        return 0;
    if (s[0] == '[' && colon[-1] != ']')
        return 0;
    if (parse_ll(colon + 1, &port) < 0 || port < 1 || port > 65535)
        return 0;
    return 1;
}

static int valid_url(const char *s)
{
    const char *rest;

    if (strncmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        rest = s + 7;
    else
        return 0;
    return *rest != '\0' && *rest != '/';
}

static char *resolve_path(const char *dir, const char *p)
{
    char *out = NULL;

    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&out, "%s/%s", dir, p) < 0)
        return NULL;
    return out;
}

/* Converts |e| (or the default) into the field |kd| of |base|. */
static void apply_key(struct loader *l, const char *dir, void *base,
                      const struct keydef *kd, struct entry *e)
{
    const char *v = e ? e->value : kd->def;
    char *field_p = (char *)base + kd->off;
    long long n;

    if (e)
        e->used = 1;
    /* An empty value means "not set": the default applies. */
    if (e && *v == '\0')
        v = kd->def;
    if (!v)
        return;
    switch (kd->type) {
    case K_INT:
        if (parse_ll(v, &n) < 0) {
            lerr(l, e, "invalid value '%s': not an integer", v);
            return;
        }
        if (n < kd->min || n > kd->max) {
            lerr(l, e, "value '%s' out of range %lld..%lld", v, kd->min,
                 kd->max);
            return;
        }
        if (kd->size == sizeof(int))
            *(int *)field_p = (int)n;
        else
            *(long long *)field_p = n;
        return;
    case K_LEVEL: {
        enum pgw_log_level lvl;
        if (pgw_log_level_parse(v, &lvl) < 0) {
            lerr(l, e,
                 "invalid value '%s': expected error, warn, info "
                 "or debug",
                 v);
            return;
        }
        *(enum pgw_log_level *)field_p = lvl;
        return;
    }
    case K_BOOL:
        if (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
            strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0) {
            *(bool *)field_p = true;
        } else if (strcasecmp(v, "false") == 0 || strcasecmp(v, "no") == 0 ||
                   strcasecmp(v, "off") == 0 || strcmp(v, "0") == 0) {
            *(bool *)field_p = false;
        } else {
            lerr(l, e, "invalid value '%s': expected true or false", v);
        }
        return;
    case K_ADDR:
        if (!valid_addr(v)) {
            lerr(l, e, "invalid value '%s': expected host:port", v);
            return;
        }
        break;
    case K_URL:
        if (!valid_url(v)) {
            char shown[512];

            lerr(l, e,
                 "invalid value '%s': expected an http:// or "
                 "https:// URL",
                 pgw_url_redact(v, shown, sizeof(shown)));
            return;
        }
        break;
    case K_STR:
    case K_PATH:
        break;
    }
    char **sp = (char **)field_p;
    free(*sp);
    *sp = kd->type == K_PATH ? resolve_path(dir, v) : strdup(v);
    if (!*sp)
        l->oom = 1;
}

static void apply_section(struct loader *l, const char *dir, void *base,
                          const char *section, const struct keydef *keys,
                          size_t n_keys)
{
    for (size_t i = 0; i < n_keys; i++)
        apply_key(l, dir, base, &keys[i], find_entry(l, section, keys[i].key));
}

static int valid_app_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)id[i]) && id[i] != '_' && id[i] != '-' &&
            id[i] != '.')
            return 0;
    }
    return 1;
}

/* Reads a secret from a file: the first line, without trailing space. */
static char *read_secret_file(const char *path, char *why, size_t why_size)
{
    char buf[1024];
    FILE *fp = fopen(path, "r");
    size_t n;

    if (!fp) {
        snprintf(why, why_size, "%s", strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    n = strlen(buf);
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    if (n == 0) {
        snprintf(why, why_size, "the file is empty");
        return NULL;
    }
    return strdup(buf);
}

static int add_team(struct pgw_app *app, const char *team_id,
                    struct pgw_apns_team **ret)
{
    struct pgw_apns_team *t;

    for (size_t i = 0; i < app->n_apns_teams; i++) {
        if (strcmp(app->apns_teams[i].team_id, team_id) == 0) {
            *ret = &app->apns_teams[i];
            return 0;
        }
    }
    if (app->n_apns_teams >= PGW_CONFIG_MAX_TEAMS)
        return PGW_ERR_TOO_LARGE;
    t = realloc(app->apns_teams, (app->n_apns_teams + 1) * sizeof(*t));
    if (!t)
        return PGW_ERR_NOMEM;
    app->apns_teams = t;
    t = &t[app->n_apns_teams];
    memset(t, 0, sizeof(*t));
    t->team_id = strdup(team_id);
    if (!t->team_id)
        return PGW_ERR_NOMEM;
    app->n_apns_teams++;
    *ret = t;
    return 0;
}

/* apns_team.<TEAMID>.key_id / .key_file */
static void apply_team_key(struct loader *l, const char *dir,
                           struct pgw_app *app, struct entry *e)
{
    const char *team = e->key + strlen("apns_team.");
    const char *dot = strrchr(team, '.');
    char team_id[128];
    struct pgw_apns_team *t;
    int rc;

    e->used = 1;
    if (!dot || dot == team || (size_t)(dot - team) >= sizeof(team_id) ||
        (strcmp(dot, ".key_id") != 0 && strcmp(dot, ".key_file") != 0)) {
        lerr(l, e,
             "unknown key: expected apns_team.<TEAMID>.key_id or "
             "apns_team.<TEAMID>.key_file");
        return;
    }
    memcpy(team_id, team, (size_t)(dot - team));
    team_id[dot - team] = '\0';
    if (*e->value == '\0')
        return;
    rc = add_team(app, team_id, &t);
    if (rc == PGW_ERR_TOO_LARGE) {
        lerr(l, e, "too many APNs teams (limit %d)", PGW_CONFIG_MAX_TEAMS);
        return;
    }
    if (rc < 0) {
        l->oom = 1;
        return;
    }
    if (strcmp(dot, ".key_id") == 0) {
        free(t->key_id);
        t->key_id = strdup(e->value);
        if (!t->key_id)
            l->oom = 1;
    } else {
        free(t->key_file);
        t->key_file = resolve_path(dir, e->value);
        if (!t->key_file)
            l->oom = 1;
    }
}

/* |key| of |section| inline or from |file| (key_file), not both. */
static void load_secret(struct loader *l, const char *section, const char *key,
                        char **value, const char *file)
{
    char fkey[64], why[256];
    struct entry *kfe;

    if (!file)
        return;
    snprintf(fkey, sizeof(fkey), "%s_file", key);
    kfe = find_entry(l, section, fkey);
    if (*value) {
        lerr(l, kfe, "set either %s or %s, not both", key, fkey);
        return;
    }
    *value = read_secret_file(file, why, sizeof(why));
    if (!*value)
        lerr(l, kfe, "cannot read '%s': %s", file, why);
}

static void finish_app_certs(struct loader *l, struct pgw_app *app,
                             const char *section)
{
    load_secret(l, section, "apns_cert_password", &app->apns_cert_password,
                app->apns_cert_password_file);
    load_secret(l, section, "apns_dev_cert_password",
                &app->apns_dev_cert_password, app->apns_dev_cert_password_file);
    if (app->apns_dev_cert_file && !app->apns_cert_file) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: apns_dev_cert_file needs apns_cert_file "
                     "(the production certificate)",
                     l->path, section);
        l->errors++;
    }
    if ((app->apns_cert_password && !app->apns_cert_file) ||
        (app->apns_dev_cert_password && !app->apns_dev_cert_file)) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: a certificate password is set without "
                     "its certificate file",
                     l->path, section);
        l->errors++;
    }
}

static void finish_app(struct loader *l, struct pgw_app *app,
                       const char *section)
{
    load_secret(l, section, "hook_key", &app->hook_key, app->hook_key_file);
    if (app->hook_key &&
        strcmp(app->hook_key, PGW_CONFIG_PLACEHOLDER_KEY) == 0) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: hook_key is the example's placeholder: set "
                     "a secret of your own (e.g. openssl rand -hex 32)",
                     l->path, section);
        l->errors++;
    } else if (app->hook_key &&
               strlen(app->hook_key) < PGW_CONFIG_MIN_HOOK_KEY) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: hook_key is too short (%zu bytes): use at "
                     "least %d random bytes (e.g. openssl rand -hex 32)",
                     l->path, section, strlen(app->hook_key),
                     PGW_CONFIG_MIN_HOOK_KEY);
        l->errors++;
    }
    if (!app->hook_key && !app->hook_key_file) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: missing required key 'hook_key' "
                     "(or 'hook_key_file')",
                     l->path, section);
        l->errors++;
    }

    load_secret(l, section, "app_key", &app->app_key, app->app_key_file);
    load_secret(l, section, "master_key", &app->master_key,
                app->master_key_file);
    if (!app->leancloud_app_id) {
        app->leancloud_app_id = strdup(app->id);
        if (!app->leancloud_app_id)
            l->oom = 1;
    }

    /* The default team: all of team, key id and key file, or none. */
    int have = !!app->apns_team_id + !!app->apns_key_id + !!app->apns_key_file;
    if (have > 0 && have < 3) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: apns_team_id, apns_key_id and "
                     "apns_key_file must be set together",
                     l->path, section);
        l->errors++;
    } else if (have == 3) {
        struct pgw_apns_team *t;
        int rc = add_team(app, app->apns_team_id, &t);
        if (rc < 0) {
            l->oom = 1;
        } else if (t->key_id || t->key_file) {
            pgw_diag_add(l->diag,
                         "'%s': [%s]: team '%s' is both the "
                         "default team and an apns_team entry",
                         l->path, section, app->apns_team_id);
            l->errors++;
        } else {
            t->key_id = strdup(app->apns_key_id);
            t->key_file = strdup(app->apns_key_file);
            if (!t->key_id || !t->key_file)
                l->oom = 1;
            /* Keep the default team first. */
            if (t != &app->apns_teams[0]) {
                struct pgw_apns_team tmp = *t;
                memmove(&app->apns_teams[1], &app->apns_teams[0],
                        (size_t)(t - app->apns_teams) * sizeof(*t));
                app->apns_teams[0] = tmp;
            }
        }
    }
    for (size_t i = 0; i < app->n_apns_teams; i++) {
        struct pgw_apns_team *t = &app->apns_teams[i];
        if (!t->key_id || !t->key_file) {
            pgw_diag_add(l->diag,
                         "'%s': [%s]: team '%s' needs both "
                         "apns_team.%s.key_id and "
                         "apns_team.%s.key_file",
                         l->path, section, t->team_id, t->team_id, t->team_id);
            l->errors++;
        }
    }
    finish_app_certs(l, app, section);
    /* A certificate names its bundle id: the topic can default to it. */
    if (app->n_apns_teams > 0 && !app->apns_topic) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: missing required key "
                     "'apns_topic' (an APNs key is configured)",
                     l->path, section);
        l->errors++;
    }
    if (app->server_hook_key && !app->server_hook_url) {
        pgw_diag_add(l->diag,
                     "'%s': [%s]: server_hook_key is set but "
                     "server_hook_url is not",
                     l->path, section);
        l->errors++;
    }
}

/* [section] proxy: a valid URL, with the password of proxy_password_file
 * when that is set. Errors show the URL with its password hidden. */
static void finish_proxy(struct loader *l, const char *section, const char *url,
                         const char *password_file, char **ret_password)
{
    char why[PGW_PROXY_WHY_MAX], shown[512];
    struct pgw_proxy *proxy = NULL;
    struct entry *e = find_entry(l, section, "proxy");
    int rc;

    if (password_file) {
        if (!url) {
            lerr(l, find_entry(l, section, "proxy_password_file"),
                 "set only with proxy");
            return;
        }
        *ret_password = read_secret_file(password_file, why, sizeof(why));
        if (!*ret_password) {
            lerr(l, find_entry(l, section, "proxy_password_file"),
                 "cannot read '%s': %s", password_file, why);
            return;
        }
    }
    if (!url)
        return;
    rc = pgw_proxy_parse(url, *ret_password, &proxy, why, sizeof(why));
    if (rc == PGW_ERR_NOMEM)
        l->oom = 1;
    else if (rc < 0)
        lerr(l, e,
             "invalid value '%s': %s (expected "
             "http://[user[:password]@]host:port)",
             pgw_url_redact(url, shown, sizeof(shown)), why);
    pgw_proxy_free(proxy);
}

static void app_release(struct pgw_app *app)
{
    free(app->id);
    for (size_t i = 0; i < PGW_ARRAY_SIZE(app_keys); i++) {
        if (app_keys[i].type != K_INT && app_keys[i].type != K_BOOL)
            free(*(char **)((char *)app + app_keys[i].off));
    }
    for (size_t i = 0; i < app->n_apns_teams; i++) {
        free(app->apns_teams[i].team_id);
        free(app->apns_teams[i].key_id);
        free(app->apns_teams[i].key_file);
    }
    free(app->apns_teams);
}

struct pgw_config *pgw_config_ref(struct pgw_config *cfg)
{
    cfg->refs++;
    return cfg;
}

void pgw_config_free(struct pgw_config *cfg)
{
    if (!cfg || --cfg->refs > 0)
        return;
    for (size_t s = 0; s < PGW_ARRAY_SIZE(sections); s++) {
        for (size_t i = 0; i < sections[s].n_keys; i++) {
            const struct keydef *kd = &sections[s].keys[i];
            if (kd->type != K_INT && kd->type != K_LEVEL && kd->type != K_BOOL)
                free(*(char **)((char *)cfg + kd->off));
        }
    }
    for (size_t i = 0; i < cfg->n_apps; i++)
        app_release(&cfg->apps[i]);
    free(cfg->apps);
    pgw_proxy_free_secret(cfg->apns.proxy_password);
    pgw_proxy_free_secret(cfg->fcm.proxy_password);
    free(cfg->path);
    free(cfg->dir);
    free(cfg);
}

static const struct section_def *find_section(const char *name)
{
    for (size_t s = 0; s < PGW_ARRAY_SIZE(sections); s++) {
        if (strcmp(sections[s].name, name) == 0)
            return &sections[s];
    }
    return NULL;
}

static int is_app_key(const char *key)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(app_keys); i++) {
        if (strcmp(app_keys[i].key, key) == 0)
            return 1;
    }
    return strncmp(key, "apns_team.", 10) == 0;
}

const char *pgw_config_default_path(void)
{
    if (access("pushgw.ini", F_OK) == 0)
        return "pushgw.ini";
    return "/etc/pushgw/pushgw.ini";
}

static char *dir_of(const char *path)
{
    char *copy = strdup(path);
    char *slash;
    char *abs = NULL;
    char cwd[PATH_MAX];

    if (!copy)
        return NULL;
    slash = strrchr(copy, '/');
    if (slash == copy)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(copy, ".");
    abs = realpath(copy, NULL);
    if (!abs && copy[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
        asprintf(&abs, "%s/%s", cwd, copy) < 0)
        abs = NULL;
    free(copy);
    return abs;
}

int pgw_config_load(const char *path, char *const *envp, struct pgw_diag *diag,
                    struct pgw_config **ret_cfg)
{
    struct loader l = {.diag = diag};
    struct pgw_config *cfg = NULL;
    int rc = PGW_ERR_CONFIG;
    int perr;

    if (!path)
        path = pgw_config_default_path();
    if (!envp)
        envp = environ;
    l.path = path;

    cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return PGW_ERR_NOMEM;
    cfg->refs = 1;
    cfg->path = strdup(path);
    cfg->dir = dir_of(path);
    if (!cfg->path || !cfg->dir) {
        if (cfg->path && !cfg->dir) {
            pgw_diag_add(diag, "cannot read config '%s': %s", path,
                         strerror(errno));
            rc = PGW_ERR_IO;
            goto out;
        }
        rc = PGW_ERR_NOMEM;
        goto out;
    }

    l.fp = fopen(path, "r");
    if (!l.fp) {
        pgw_diag_add(diag, "cannot read config '%s': %s", path,
                     strerror(errno));
        rc = PGW_ERR_IO;
        goto out;
    }
    perr = ini_parse_stream(read_line, &l, on_ini_value, &l);
    fclose(l.fp);
    if (l.oom) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    if (perr > 0 && !l.errors) {
        pgw_diag_add(diag, "'%s' line %d: syntax error", path, perr);
        l.errors++;
    }

    /* Validate section names and collect apps, in file order. */
    for (size_t i = 0; i < l.n_entries; i++) {
        const char *sec = l.entries[i].section;
        int known = find_section(sec) != NULL;
        if (is_app_section(sec)) {
            int seen = 0;
            for (size_t a = 0; a < cfg->n_apps; a++)
                seen |= strcmp(cfg->apps[a].id, sec + 4) == 0;
            if (seen)
                continue;
            if (!valid_app_id(sec + 4)) {
                lerr(&l, &l.entries[i],
                     "invalid app id '%s': use 1 to 64 "
                     "letters, digits, '_', '-' or '.'",
                     sec + 4);
                continue;
            }
            if (cfg->n_apps >= PGW_CONFIG_MAX_APPS) {
                lerr(&l, &l.entries[i], "too many apps (limit %d)",
                     PGW_CONFIG_MAX_APPS);
                continue;
            }
            struct pgw_app *apps =
                realloc(cfg->apps, (cfg->n_apps + 1) * sizeof(*apps));
            if (!apps) {
                rc = PGW_ERR_NOMEM;
                goto out;
            }
            cfg->apps = apps;
            memset(&apps[cfg->n_apps], 0, sizeof(*apps));
            apps[cfg->n_apps].id = strdup(sec + 4);
            if (!apps[cfg->n_apps].id) {
                rc = PGW_ERR_NOMEM;
                goto out;
            }
            cfg->n_apps++;
        } else if (!known) {
            int first = 1;
            for (size_t j = 0; j < i; j++)
                first &= strcmp(l.entries[j].section, sec) != 0;
            if (first)
                pgw_diag_add(diag,
                             "'%s' line %d: key '%s' is in unknown "
                             "section '[%s]'",
                             path, l.entries[i].line, l.entries[i].key, sec);
            if (first)
                l.errors++;
            l.entries[i].used = 1;
        }
    }

    /* Environment overrides, for every key that could be set. */
    for (size_t s = 0; s < PGW_ARRAY_SIZE(sections); s++)
        for (size_t i = 0; i < sections[s].n_keys; i++)
            apply_env_key(&l, envp, sections[s].name, sections[s].keys[i].key);
    for (size_t a = 0; a < cfg->n_apps; a++) {
        char sec[128];
        snprintf(sec, sizeof(sec), "app:%s", cfg->apps[a].id);
        for (size_t i = 0; i < PGW_ARRAY_SIZE(app_keys); i++)
            apply_env_key(&l, envp, sec, app_keys[i].key);
        /* Team keys: for the teams the file names. */
        size_t n = l.n_entries;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(l.entries[i].section, sec) == 0 &&
                strncmp(l.entries[i].key, "apns_team.", 10) == 0) {
                char key[256];
                snprintf(key, sizeof(key), "%s", l.entries[i].key);
                apply_env_key(&l, envp, sec, key);
            }
        }
    }
    if (l.oom) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }

    for (size_t s = 0; s < PGW_ARRAY_SIZE(sections); s++)
        apply_section(&l, cfg->dir, cfg, sections[s].name, sections[s].keys,
                      sections[s].n_keys);
    for (size_t a = 0; a < cfg->n_apps; a++) {
        struct pgw_app *app = &cfg->apps[a];
        char sec[128];
        snprintf(sec, sizeof(sec), "app:%s", app->id);
        apply_section(&l, cfg->dir, app, sec, app_keys,
                      PGW_ARRAY_SIZE(app_keys));
        for (size_t i = 0; i < l.n_entries; i++) {
            if (strcmp(l.entries[i].section, sec) == 0 &&
                strncmp(l.entries[i].key, "apns_team.", 10) == 0)
                apply_team_key(&l, cfg->dir, app, &l.entries[i]);
        }
        finish_app(&l, app, sec);
    }
    /* /1.1/ requests find their app by X-LC-Id */
    for (size_t a = 0; a < cfg->n_apps; a++) {
        for (size_t b = 0; b < a; b++) {
            if (cfg->apps[a].leancloud_app_id &&
                cfg->apps[b].leancloud_app_id &&
                strcmp(cfg->apps[a].leancloud_app_id,
                       cfg->apps[b].leancloud_app_id) == 0) {
                pgw_diag_add(l.diag,
                             "'%s': [app:%s] and [app:%s] have the same "
                             "leancloud_app_id '%s'",
                             l.path, cfg->apps[b].id, cfg->apps[a].id,
                             cfg->apps[a].leancloud_app_id);
                l.errors++;
            }
        }
    }

    /* Whatever was not consumed is unknown. */
    for (size_t i = 0; i < l.n_entries; i++) {
        struct entry *e = &l.entries[i];
        if (e->used)
            continue;
        if (is_app_section(e->section) && !is_app_key(e->key))
            lerr(&l, e, "unknown key '%s'", e->key);
        else if (!is_app_section(e->section))
            lerr(&l, e, "unknown key '%s'", e->key);
    }

    finish_proxy(&l, "apns", cfg->apns.proxy, cfg->apns.proxy_password_file,
                 &cfg->apns.proxy_password);
    finish_proxy(&l, "fcm", cfg->fcm.proxy, cfg->fcm.proxy_password_file,
                 &cfg->fcm.proxy_password);
    if (cfg->delivery.retry_base_ms > cfg->delivery.retry_max_ms) {
        pgw_diag_add(diag,
                     "'%s': [delivery] retry_base_ms (%lld) is larger "
                     "than retry_max_ms (%lld)",
                     path, cfg->delivery.retry_base_ms,
                     cfg->delivery.retry_max_ms);
        l.errors++;
    }
    if (!!cfg->server.tls_cert_file != !!cfg->server.tls_key_file) {
        pgw_diag_add(diag,
                     "'%s': [server] tls_cert_file and tls_key_file "
                     "must be set together",
                     path);
        l.errors++;
    }

    if (l.oom || diag->oom) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    if (l.errors) {
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    *ret_cfg = cfg;
    cfg = NULL;
    rc = 0;
out:
    for (size_t i = 0; i < l.n_entries; i++) {
        if (is_secret_key(l.entries[i].key))
            explicit_bzero(l.entries[i].value, strlen(l.entries[i].value));
        free(l.entries[i].section);
        free(l.entries[i].key);
        free(l.entries[i].value);
        free(l.entries[i].envname);
    }
    free(l.entries);
    pgw_config_free(cfg);
    return rc;
}

const struct pgw_app *pgw_config_find_app(const struct pgw_config *cfg,
                                          const char *id)
{
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (strcmp(cfg->apps[i].id, id) == 0)
            return &cfg->apps[i];
    }
    return NULL;
}

const struct pgw_app *
pgw_config_find_leancloud_app(const struct pgw_config *cfg, const char *lc_id)
{
    for (size_t i = 0; i < cfg->n_apps; i++) {
        if (cfg->apps[i].leancloud_app_id &&
            strcmp(cfg->apps[i].leancloud_app_id, lc_id) == 0)
            return &cfg->apps[i];
    }
    return NULL;
}

/* A key or secret file: must exist, be readable, not be open to others. */
static int check_secret_file(struct pgw_diag *diag, const char *what,
                             const char *path)
{
    struct stat st;
    int fd;

    if (!path)
        return 0;
    if (stat(path, &st) < 0) {
        pgw_diag_add(diag, "%s '%s': %s", what, path, strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        pgw_diag_add(diag, "%s '%s': not a regular file", what, path);
        return 1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pgw_diag_add(diag, "%s '%s': not readable: %s", what, path,
                     strerror(errno));
        return 1;
    }
    close(fd);
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        pgw_diag_add(diag,
                     "%s '%s': the group or other users can use it "
                     "(mode %04o): make it readable only by the "
                     "service user (chmod 600)",
                     what, path, (unsigned)(st.st_mode & 07777));
        return 1;
    }
    return 0;
}

static int check_dir(struct pgw_diag *diag, const char *what, const char *path)
{
    struct stat st;

    if (stat(path, &st) < 0) {
        pgw_diag_add(diag, "%s '%s': %s", what, path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        pgw_diag_add(diag, "%s '%s': not a directory", what, path);
        return 1;
    }
    return 0;
}

int pgw_config_check_files(const struct pgw_config *cfg, struct pgw_diag *diag)
{
    int n = 0;

    n += check_dir(diag, "templates dir", cfg->templates.dir);
    n += check_dir(diag, "migrations dir", cfg->database.migrations_dir);
    return n + pgw_config_check_secret_files(cfg, diag);
}

int pgw_config_check_secret_files(const struct pgw_config *cfg,
                                  struct pgw_diag *diag)
{
    int n = 0;

    n += check_secret_file(diag, "[server] tls_key_file",
                           cfg->server.tls_key_file);
    n += check_secret_file(diag, "[apns] proxy_password_file",
                           cfg->apns.proxy_password_file);
    n += check_secret_file(diag, "[fcm] proxy_password_file",
                           cfg->fcm.proxy_password_file);
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct pgw_app *app = &cfg->apps[a];
        char what[256];

        snprintf(what, sizeof(what), "[app:%s] hook_key_file", app->id);
        n += check_secret_file(diag, what, app->hook_key_file);
        for (size_t t = 0; t < app->n_apns_teams; t++) {
            snprintf(what, sizeof(what), "[app:%s] APNs key of team '%s'",
                     app->id, app->apns_teams[t].team_id);
            n += check_secret_file(diag, what, app->apns_teams[t].key_file);
        }
        snprintf(what, sizeof(what), "[app:%s] app_key_file", app->id);
        n += check_secret_file(diag, what, app->app_key_file);
        snprintf(what, sizeof(what), "[app:%s] master_key_file", app->id);
        n += check_secret_file(diag, what, app->master_key_file);
        snprintf(what, sizeof(what), "[app:%s] fcm_service_account_file",
                 app->id);
        n += check_secret_file(diag, what, app->fcm_service_account_file);
        snprintf(what, sizeof(what), "[app:%s] apns_cert_file", app->id);
        n += check_secret_file(diag, what, app->apns_cert_file);
        snprintf(what, sizeof(what), "[app:%s] apns_dev_cert_file", app->id);
        n += check_secret_file(diag, what, app->apns_dev_cert_file);
        snprintf(what, sizeof(what), "[app:%s] apns_cert_password_file",
                 app->id);
        n += check_secret_file(diag, what, app->apns_cert_password_file);
        snprintf(what, sizeof(what), "[app:%s] apns_dev_cert_password_file",
                 app->id);
        n += check_secret_file(diag, what, app->apns_dev_cert_password_file);
    }
    return n;
}

/* Whether the file itself holds a secret (not only names a file of one). */
static const char *inline_secret(const struct pgw_config *cfg)
{
    const char *at, *colon;

    for (size_t a = 0; a < cfg->n_apps; a++) {
        const struct pgw_app *app = &cfg->apps[a];

        if (app->hook_key && !app->hook_key_file)
            return "hook_key";
        if (app->server_hook_key)
            return "server_hook_key";
        if (app->app_key && !app->app_key_file)
            return "app_key";
        if (app->master_key && !app->master_key_file)
            return "master_key";
        if ((app->apns_cert_password && !app->apns_cert_password_file) ||
            (app->apns_dev_cert_password && !app->apns_dev_cert_password_file))
            return "a certificate password";
    }
    for (int i = 0; i < 2; i++) {
        const char *p = i ? cfg->fcm.proxy : cfg->apns.proxy;
        char shown[512];

        /* the redaction hides a password: when it changed, there is one */
        if (p && strcmp(pgw_url_redact(p, shown, sizeof(shown)), p) != 0)
            return "a proxy password";
    }
    at = strchr(cfg->database.url, '@');
    colon = strstr(cfg->database.url, "://");
    if (strstr(cfg->database.url, "password=") ||
        (at && colon && memchr(colon + 3, ':', (size_t)(at - colon - 3))))
        return "the database password";
    return NULL;
}

int pgw_config_warnings(const struct pgw_config *cfg, struct pgw_diag *diag)
{
    const char *secret = inline_secret(cfg);
    struct stat st;
    int n = 0;

    if (secret && stat(cfg->path, &st) == 0 &&
        (st.st_mode & (S_IRWXG | S_IRWXO))) {
        pgw_diag_add(diag,
                     "config '%s' holds %s and the group or other users can "
                     "read it (mode %04o): chmod 600 it, or move the secret "
                     "into a *_file key",
                     cfg->path, secret, (unsigned)(st.st_mode & 07777));
        n++;
    }
    for (size_t a = 0; a < cfg->n_apps; a++) {
        const char *url = cfg->apps[a].server_hook_url;
        char shown[512];

        if (!url || strncasecmp(url, "http://", 7) != 0 ||
            pgw_url_is_loopback(url))
            continue;
        pgw_diag_add(diag,
                     "[app:%s] server_hook_url '%s' is plain HTTP to another "
                     "host: the hook key and every message cross the network "
                     "in clear; use https://",
                     cfg->apps[a].id,
                     pgw_url_redact(url, shown, sizeof(shown)));
        n++;
    }
    return n;
}
