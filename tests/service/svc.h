/*
 * The end-to-end harness: a fresh database, two mock APNs (production and
 * development endpoints), a mock FCM, the test hook server, and the real
 * `pushgw serve` binary configured against all of them on loopback.
 */
#ifndef PUSHGW_SVC_H
#define PUSHGW_SVC_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct svc_proc {
    int pid;
    int port;
    char *record; /* its record file, or NULL */
    char *log;
};

struct svc {
    char *dir;
    char *db;                 /* conninfo of the fresh database */
    char *ini;                /* the gateway's config */
    struct svc_proc apns;     /* production endpoint */
    struct svc_proc apns_dev; /* development endpoint */
    struct svc_proc fcm;
    struct svc_proc hook;
    struct svc_proc gw; /* pushgw serve; port = webhook listener */
    int admin_port;
    int own_db; /* created here: dropped by svc_stop() */
};

struct svc_options {
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

/* The mock APNs / FCM command lines (program first) without --listen,
 * --port-file and --record: the test PKI, teams, service account. */
extern const char *const svc_mock_apns_args[];
extern const char *const svc_mock_fcm_args[];

/* Starts everything; fails the test on any problem. */
void svc_start(struct svc *s, const struct svc_options *opts);
/* Stops every process still running and drops the database. */
void svc_stop(struct svc *s);

/* (Re)starts only the gateway of |s| (after svc_kill_gateway). */
void svc_start_gateway(struct svc *s);
/* Kills the gateway with |sig| and waits; returns the exit status. */
int svc_kill_gateway(struct svc *s, int sig);

/*
 * POSTs |body| to the gateway's |path| with the hook key |key| (NULL:
 * none) and content type |ctype| (NULL: application/json). Returns the
 * HTTP status (0 when no answer); the body in |*ret_body| (free()).
 */
int svc_post(struct svc *s, const char *path, const char *key,
             const char *ctype, const char *body, char **ret_body);
/* GET on the admin listener. */
int svc_admin_get(struct svc *s, const char *path, char **ret_body);

/* Waits up to |timeout_ms| until |record| holds at least |n| lines;
 * returns the number of lines then. */
size_t svc_wait_lines(const char *record, size_t n, int timeout_ms);
/* The record file's lines parsed, as a JSON array (cJSON_Delete()). */
cJSON *svc_read_records(const char *record);
/*
 * A private Postgres cluster for tests that stop and start the server:
 * initdb in |dir| (as 'postgres' when root), listening on a free
 * loopback port. Returns a conninfo for its 'postgres' database
 * (free()); svc_pg_ctl(dir, "stop"|"start") controls it.
 */
char *svc_pg_create(const char *dir);
void svc_pg_ctl(const char *dir, const char *action);

/* Inserts an installation; returns its id. */
long long svc_add_device(struct svc *s, const char *app, const char *type,
                         const char *token, const char *channels,
                         const char *team);
/* The first value of |sql| on the test database (free()). */
char *svc_query(struct svc *s, const char *sql);
/* Polls |sql| until it returns |want| (up to |timeout_ms|); true if so. */
int svc_wait_query(struct svc *s, const char *sql, const char *want,
                   int timeout_ms);

#endif
