/* Helpers of the reliability tests (see rel.h). */
#include "rel.h"

#include "testutil.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int rel_long(void)
{
    const char *v = getenv("PUSHGW_RELIABILITY_LONG");
    return v && strcmp(v, "1") == 0;
}

unsigned rel_seed(void)
{
    static unsigned seed;
    const char *v = getenv("PUSHGW_RELIABILITY_SEED");

    if (seed == 0) {
        seed = v && *v ? (unsigned)strtoul(v, NULL, 10)
                       : (unsigned)time(NULL) ^ (unsigned)getpid();
        if (seed == 0)
            seed = 1;
        printf("# PUSHGW_RELIABILITY_SEED=%u\n", seed);
    }
    return seed;
}

long long rel_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long rel_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct rel_http {
    CURL *c;
    char *body;
    size_t len;
    int retry_after;
    double last_us;
};

struct rel_http *rel_http_new(void)
{
    struct rel_http *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    h->c = curl_easy_init();
    assert_non_null(h->c);
    return h;
}

void rel_http_free(struct rel_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->c);
    free(h->body);
    free(h);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct rel_http *h = arg;
    size_t n = size * nmemb;
    char *p;

    if (h->len + n > (1u << 20)) /* answers are small: cap them */
        return 0;
    p = realloc(h->body, h->len + n + 1);
    if (!p)
        return 0;
    memcpy(p + h->len, data, n);
    h->len += n;
    p[h->len] = '\0';
    h->body = p;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct rel_http *h = arg;
    size_t n = size * nmemb;

    if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        h->retry_after = atoi(data + 12);
    return n;
}

int rel_http_post(struct rel_http *h, int port, const char *path,
                  const char *key, const char *ctype, const char *body,
                  size_t len, int timeout_ms, char **ret_body,
                  int *ret_retry_after)
{
    struct curl_slist *hd = NULL;
    char line[512];
    char url[256];
    long status = 0;

    free(h->body);
    h->body = NULL;
    h->len = 0;
    h->retry_after = -1;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(h->c, CURLOPT_URL, url);
    curl_easy_setopt(h->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h->c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->c, CURLOPT_POST, 1L);
    curl_easy_setopt(h->c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    snprintf(line, sizeof(line), "Content-Type: %s",
             ctype ? ctype : "application/json");
    hd = curl_slist_append(hd, line);
    if (key) {
        snprintf(line, sizeof(line), "X-LC-Hook-Key: %s", key);
        hd = curl_slist_append(hd, line);
    }
    hd = curl_slist_append(hd, "Expect:");
    assert_non_null(hd);
    curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, hd);
    if (curl_easy_perform(h->c) == CURLE_OK)
        curl_easy_getinfo(h->c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h->c, CURLINFO_TOTAL_TIME, &h->last_us);
    h->last_us *= 1e6;
    curl_slist_free_all(hd);
    if (ret_body) {
        *ret_body = h->body;
        h->body = NULL;
        h->len = 0;
    }
    if (ret_retry_after)
        *ret_retry_after = h->retry_after;
    return (int)status;
}

double rel_http_last_us(const struct rel_http *h)
{
    return h->last_us;
}

static const char *jpath(const cJSON *j, const char *a, const char *b,
                         const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    x = b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
    x = c ? cJSON_GetObjectItemCaseSensitive(x, c) : x;
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void tally_line(struct rel_tally *t, const char *line,
                       const char *const *tokens)
{
    cJSON *j = cJSON_Parse(line);
    const cJSON *st;
    const char *tok, *text;
    size_t d;
    char *end;
    unsigned long i;
    long long ts;

    if (!j)
        return;
    t->records++;
    st = cJSON_GetObjectItemCaseSensitive(j, "status");
    tok = jpath(j, "token", NULL, NULL);
    text = jpath(j, "body", "aps", "alert");
    if (!text) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "body"), "message");
        text = jpath(m, "notification", "body", NULL);
    }
    if (!cJSON_IsNumber(st) || st->valueint != 200) {
        t->non_200++;
        goto out;
    }
    if (!tok || !text || strncmp(text, "message ", 8) != 0)
        goto out;
    i = strtoul(text + 8, &end, 10);
    if (*end != '\0' || i >= t->n_events)
        goto out;
    for (d = 0; d < t->n_tokens; d++)
        if (strcmp(tokens[d], tok) == 0)
            break;
    if (d == t->n_tokens)
        goto out;
    t->counts[i * t->n_tokens + d]++;
    ts = (long long)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(j, "ts_ms"));
    if (t->first_ms[i * t->n_tokens + d] == 0 ||
        ts < t->first_ms[i * t->n_tokens + d])
        t->first_ms[i * t->n_tokens + d] = ts;
out:
    cJSON_Delete(j);
}

void rel_tally(struct rel_tally *t, const char *const *records, size_t n_events,
               const char *const *tokens, size_t n_tokens)
{
    memset(t, 0, sizeof(*t));
    t->n_events = n_events;
    t->n_tokens = n_tokens;
    t->counts = calloc(n_events * n_tokens, sizeof(*t->counts));
    t->first_ms = calloc(n_events * n_tokens, sizeof(*t->first_ms));
    assert_non_null(t->counts);
    assert_non_null(t->first_ms);
    for (size_t r = 0; records[r]; r++) {
        FILE *fp = fopen(records[r], "r");
        char *line = NULL;
        size_t cap = 0;

        if (!fp)
            continue; /* a mock that never got a request */
        while (getline(&line, &cap, fp) > 0)
            tally_line(t, line, tokens);
        free(line);
        fclose(fp);
    }
}

void rel_tally_free(struct rel_tally *t)
{
    free(t->counts);
    free(t->first_ms);
    memset(t, 0, sizeof(*t));
}

void rel_mock_stop(struct svc_proc *p)
{
    if (p->pid > 0)
        tu_stop(p->pid, SIGKILL);
    p->pid = 0;
}

void rel_mock_start(struct svc *s, struct svc_proc *p, int fcm, int port,
                    const char *const *extra)
{
    const char *argv[64];
    size_t n = 0;
    char listen[64], pf[1024];
    const char *const *base = fcm ? svc_mock_fcm_args : svc_mock_apns_args;

    rel_mock_stop(p);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(pf, sizeof(pf), "%s/restart-%d.port", s->dir, port);
    unlink(pf);
    for (size_t i = 0; base[i]; i++)
        argv[n++] = base[i];
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--port-file";
    argv[n++] = pf;
    argv[n++] = "--record";
    argv[n++] = p->record;
    for (size_t i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* The port was just released by the killed mock: retry the bind. */
    for (int attempt = 0; attempt < 50; attempt++) {
        p->pid = tu_spawn(argv, p->log);
        if (tu_wait_port_file(pf, 2000) == port)
            return;
        tu_stop(p->pid, SIGKILL);
        p->pid = 0;
        usleep(100000);
    }
    fail_msg("mock did not restart on port %d", port);
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

long rel_rss_kib(int pid)
{
    return status_kib(pid, "VmRSS");
}

long rel_hwm_kib(int pid)
{
    return status_kib(pid, "VmHWM");
}

#if defined(__SANITIZE_ADDRESS__)
#define REL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REL_ASAN 1
#endif
#endif

long rel_check_memory(int pid, long base_kib, long max_kib, const char *what)
{
    long hwm = rel_hwm_kib(pid);
    long grew = hwm - base_kib;

#ifdef REL_ASAN
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

long long rel_add_device(struct svc *s, const char *app, const char *type,
                         const char *token, const char *channel)
{
    char q[1024];
    size_t n = 0;
    char *sql = NULL, *r;
    long long id;

    /* The channel as an SQL literal: quotes doubled, in an E'' string
     * with backslashes doubled. */
    for (const char *c = channel; *c && n < sizeof(q) - 3; c++) {
        if (*c == '\'' || *c == '\\')
            q[n++] = *c;
        q[n++] = *c;
    }
    q[n] = '\0';
    assert_int_equal(
        asprintf(&sql,
                 "INSERT INTO installations (app_id, device_type, "
                 "device_token, channels) VALUES ('%s', '%s', '%s', "
                 "ARRAY[E'%s']) RETURNING id",
                 app, type, token, q) > 0,
        1);
    r = svc_query(s, sql);
    free(sql);
    assert_non_null(r);
    id = atoll(r);
    free(r);
    return id;
}
