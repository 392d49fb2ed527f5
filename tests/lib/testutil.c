/* Helpers shared by the cmocka tests: files, processes, the test DB. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = NULL;

    if (asprintf(&path, "%s/pushgw-test-XXXXXX", base ? base : "/tmp") < 0)
        return NULL;
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rm_rf(const char *path)
{
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_write_file(const char *dir, const char *name, const char *content,
                    int mode)
{
    char *path = NULL;
    FILE *fp;

    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return NULL;
    fp = fopen(path, "w");
    if (!fp) {
        free(path);
        return NULL;
    }
    fputs(content, fp);
    fclose(fp);
    chmod(path, (mode_t)mode);
    return path;
}

char *tu_read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!fp)
        return NULL;
    do {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, 4096, fp);
        len += n;
    } while (n > 0);
    fclose(fp);
    buf[len] = '\0';
    return buf;
}

/* Drains both pipes until the child closes them. */
static void drain(int fd_out, int fd_err, char **out, char **err)
{
    struct pollfd p[2] = {{fd_out, POLLIN, 0}, {fd_err, POLLIN, 0}};
    char **bufs[2] = {out, err};
    size_t lens[2] = {0, 0};
    int open_n = 2;

    *out = calloc(1, 1);
    *err = calloc(1, 1);
    while (open_n > 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            char chunk[4096];
            ssize_t n;
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            n = read(p[i].fd, chunk, sizeof(chunk));
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_n--;
                continue;
            }
            char *nb = realloc(*bufs[i], lens[i] + (size_t)n + 1);
            if (!nb)
                continue;
            memcpy(nb + lens[i], chunk, (size_t)n);
            lens[i] += (size_t)n;
            nb[lens[i]] = '\0';
            *bufs[i] = nb;
        }
    }
}

int tu_run_pushgw(const char *const *argv, const char *const *env,
                  char **ret_out, char **ret_err)
{
    const char *bin = getenv("PUSHGW_BIN");
    int po[2], pe[2];
    char *out = NULL, *err = NULL;
    pid_t pid;
    int status;
    size_t argc = 0;

    if (!bin)
        bin = PUSHGW_BINARY_DIR "/pushgw";
    while (argv[argc])
        argc++;
    if (pipe(po) < 0 || pipe(pe) < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        const char **args = calloc(argc + 2, sizeof(*args));
        if (!args)
            _exit(127);
        args[0] = bin;
        for (size_t i = 0; i < argc; i++)
            args[i + 1] = argv[i];
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        close(po[1]);
        close(pe[1]);
        execv(bin, (char *const *)args);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    drain(po[0], pe[0], &out, &err);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (ret_out)
        *ret_out = out;
    else
        free(out);
    if (ret_err)
        *ret_err = err;
    else
        free(err);
    if (!WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static const char *base_url(void)
{
    const char *url = getenv("PUSHGW_TEST_DATABASE_URL");
    const char *req = getenv("PUSHGW_TEST_REQUIRE_DB");

    if (url && *url)
        return url;
    if (req && strcmp(req, "1") == 0)
        fail_msg("PUSHGW_TEST_DATABASE_URL is not set but "
                 "PUSHGW_TEST_REQUIRE_DB=1: run the tests with "
                 "./tests/run.sh");
    skip();
    return NULL;
}

static int exec_sql(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r;
    int ok;

    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect to test database: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
         PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        print_error("sql '%s' failed: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

char *tu_db_create(const char *prefix)
{
    const char *base = base_url();
    char name[128];
    char sql[256];
    char *conninfo = NULL;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof(name), "%s_%d_%ld", prefix, (int)getpid(),
             (long)(ts.tv_nsec / 1000));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (exec_sql(base, sql) < 0)
        fail_msg("cannot create test database '%s'", name);
    /* In key=value conninfo strings the last dbname wins. */
    if (asprintf(&conninfo, "%s dbname=%s", base, name) < 0)
        fail_msg("out of memory");
    return conninfo;
}

void tu_db_drop(const char *conninfo)
{
    const char *base = getenv("PUSHGW_TEST_DATABASE_URL");
    const char *db;
    char sql[256];

    if (!conninfo || !base)
        return;
    db = strrchr(conninfo, '=');
    if (!db)
        return;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             db + 1);
    exec_sql(base, sql);
}

char *tu_db_query(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r;
    char *out = NULL;

    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        out = strdup(PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0)
                                                          : "");
    } else if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        out = strdup("");
    } else {
        print_error("sql '%s' failed: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    PQfinish(c);
    return out;
}

/* Every child tu_spawn() started, killed at exit if still running: a
 * failed assertion skips the test's own stop, and mocks and gateways were
 * left running after the suite. (PR_SET_PDEATHSIG cannot serve: it fires
 * when the spawning thread ends, and tests spawn from helper threads.) */
static pid_t *spawned;
static size_t n_spawned, cap_spawned;

static void kill_spawned(void)
{
    for (size_t i = 0; i < n_spawned; i++) {
        int status;
        /* Still our child and running: a reaped pid is never touched. */
        if (waitpid(spawned[i], &status, WNOHANG) == 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], &status, 0);
        }
    }
    free(spawned);
    spawned = NULL;
    n_spawned = cap_spawned = 0;
}

static void remember_spawned(pid_t pid)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

    pthread_mutex_lock(&mu);
    if (!spawned && !cap_spawned)
        atexit(kill_spawned);
    if (n_spawned == cap_spawned) {
        size_t cap = cap_spawned ? cap_spawned * 2 : 64;
        pid_t *n = realloc(spawned, cap * sizeof(*n));
        if (n) {
            spawned = n;
            cap_spawned = cap;
        }
    }
    if (n_spawned < cap_spawned)
        spawned[n_spawned++] = pid;
    pthread_mutex_unlock(&mu);
}

int tu_spawn(const char *const *argv, const char *log_path)
{
    pid_t pid = fork();

    if (pid > 0)
        remember_spawned(pid);
    if (pid != 0)
        return (int)pid;
    if (log_path) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

int tu_wait_port_file(const char *path, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        char *text = tu_read_file(path);
        if (text) {
            int port = atoi(text);
            free(text);
            if (port > 0)
                return port;
        }
        usleep(10000);
    }
    return -1;
}

int tu_stop(int pid, int sig)
{
    int status = 0;

    if (pid <= 0)
        return -1;
    kill(pid, sig);
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            goto done;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
done:
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
