/* Processes of tests: the pushgw binary, background children, their
 * memory (see testutil.h). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tu_pushgw_bin(void)
{
    const char *bin = getenv("PUSHGW_BIN");

    return bin && *bin ? bin : PUSHGW_BINARY_DIR "/pushgw";
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
    const char *bin = tu_pushgw_bin();
    int po[2], pe[2];
    char *out = NULL, *err = NULL;
    pid_t pid;
    int status;
    size_t argc = 0;

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
    /* A test that dies without exit() (a sanitizer's abort, a signal)
     * runs no atexit handler: children of the main thread also die with
     * the test. (Not those of helper threads: PR_SET_PDEATHSIG fires when
     * the spawning thread ends.) */
    bool main_thread = gettid() == getpid();
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid > 0)
        remember_spawned(pid);
    if (pid != 0)
        return (int)pid;
    if (main_thread &&
        (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
        _exit(127);
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

static int read_port(const char *path)
{
    char *text = tu_read_file(path);
    int port = -1;

    /* The writer may be half way: only a whole line counts. */
    if (text && strchr(text, '\n'))
        port = atoi(text);
    free(text);
    return port > 0 ? port : -1;
}

int tu_wait_port_file(const char *path, int timeout_ms)
{
    int port = -1;

    TU_POLL_UNTIL((port = read_port(path)) > 0, timeout_ms);
    return port;
}

/* Ports handed to programs that bind them later: below the kernel's
 * ephemeral range (32768 and up by default), so no outgoing connection of
 * the test (libpq, curl) takes one between the check and the bind, and
 * random, so concurrent test programs rarely pick the same. */
#define FREE_PORT_MIN 20000
#define FREE_PORT_SPAN 12000
#define FREE_PORT_TRIES 1000

/* true when |port| can be bound on loopback now. */
static bool port_free(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    assert_true(fd >= 0);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

int tu_free_port(void)
{
    static unsigned seed;

    if (seed == 0)
        seed = (unsigned)tu_mono_ms() ^ ((unsigned)getpid() << 16);
    for (int i = 0; i < FREE_PORT_TRIES; i++) {
        int port = FREE_PORT_MIN + (int)(rand_r(&seed) % FREE_PORT_SPAN);
        if (port_free(port))
            return port;
    }
    fail_msg("no free loopback port in %d..%d", FREE_PORT_MIN,
             FREE_PORT_MIN + FREE_PORT_SPAN - 1);
    return -1;
}

int tu_stop(int pid, int sig)
{
    int status = 0;

    if (pid <= 0)
        return -1;
    kill(pid, sig);
    TU_POLL_UNTIL(waitpid(pid, &status, WNOHANG) == pid, 10000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static long status_kib(int pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long v = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    fp = fopen(path, "r");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(fp);
    return v;
}

long tu_rss_kib(int pid)
{
    return status_kib(pid, "VmRSS");
}

long tu_hwm_kib(int pid)
{
    return status_kib(pid, "VmHWM");
}

#if defined(__SANITIZE_ADDRESS__)
#define TU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TU_ASAN 1
#endif
#endif

long tu_check_memory(int pid, long base_kib, long max_kib, const char *what)
{
    long hwm = tu_hwm_kib(pid);
    long grew = hwm - base_kib;

#ifdef TU_ASAN
    (void)max_kib;
    printf("# %s: VmHWM %ld KiB, grew %ld KiB (ASan build: not checked)\n",
           what, hwm, grew);
#else
    printf("# %s: VmHWM %ld KiB, grew %ld KiB (bound %ld KiB)\n", what, hwm,
           grew, max_kib);
    if (hwm < 0 || grew >= max_kib)
        fail_msg("%s: memory grew by %ld KiB (bound %ld KiB)", what, grew,
                 max_kib);
#endif
    return grew;
}
