/*
 * A small server hook for the tests: an HTTP/1.1 server (libevent evhttp)
 * standing in for an app's _receiversOffline hook. The answer depends on
 * the request's convId, from a JSON file:
 *   {"conv-a": {"status": 200, "body": {…}, "delay_ms": 0},
 *    "conv-b": {"status": 200, "raw": "not json"},
 *    "*": {…}}                              (the default; else 200 {})
 * Every request is appended to --record as one JSON line
 * {"key": <X-LC-Hook-Key>, "body": <the request body parsed>}.
 * GET /stats answers {"open": N, "max_open": N, "total": N}: the
 * connections open now, at most at once, and ever accepted (a connection
 * is counted from its first request; /stats's own is left out).
 *
 * usage: hook_server --port-file FILE --answers FILE [--record FILE]
 */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *answers;
static FILE *record;

/* An answer held back by "delay_ms"; listed so exit frees them. */
struct delayed {
    struct evhttp_request *req;
    int status;
    char *body;
    struct event *ev;
    struct delayed *next;
};

static struct delayed *delayed_list;

/* Connections that sent a request and are still open. */
struct conn {
    struct evhttp_connection *evcon;
    struct conn *next;
};

static struct conn *conns;
static long n_open, max_open, n_total;

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    (void)arg;
    for (struct conn **p = &conns; *p; p = &(*p)->next) {
        if ((*p)->evcon == evcon) {
            struct conn *c = *p;
            *p = c->next;
            free(c);
            n_open--;
            return;
        }
    }
}

static void conn_note(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct conn *c;

    if (!evcon)
        return;
    for (c = conns; c; c = c->next)
        if (c->evcon == evcon)
            return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->evcon = evcon;
    c->next = conns;
    conns = c;
    evhttp_connection_set_closecb(evcon, on_conn_close, NULL);
    n_total++;
    if (++n_open > max_open)
        max_open = n_open;
}

static void delayed_unlink(struct delayed *d)
{
    for (struct delayed **p = &delayed_list; *p; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            return;
        }
    }
}

static void send_answer(struct evhttp_request *req, int status,
                        const char *body)
{
    struct evbuffer *out = evbuffer_new();

    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, status, "Answer", out);
    evbuffer_free(out);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;
    (void)fd;
    (void)what;
    send_answer(d->req, d->status, d->body);
    delayed_unlink(d);
    event_free(d->ev);
    free(d->body);
    free(d);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct event_base *base = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *text = malloc(len + 1);
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "X-LC-Hook-Key");
    cJSON *body, *line, *ans, *conv;
    int status = 200;
    char *out;
    int delay_ms = 0;

    if (!text)
        return;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET &&
        strcmp(evhttp_request_get_uri(req), "/stats") == 0) {
        char stats[128];
        snprintf(stats, sizeof(stats),
                 "{\"open\":%ld,\"max_open\":%ld,\"total\":%ld}", n_open,
                 max_open, n_total);
        send_answer(req, 200, stats);
        free(text);
        return;
    }
    conn_note(req);
    evbuffer_remove(in, text, len);
    text[len] = '\0';
    body = cJSON_Parse(text);
    line = cJSON_CreateObject();
    cJSON_AddItemToObject(line, "key",
                          key ? cJSON_CreateString(key) : cJSON_CreateNull());
    cJSON_AddItemToObject(line, "body",
                          body ? cJSON_Duplicate(body, 1)
                               : cJSON_CreateString(text));
    if (record) {
        char *s = cJSON_PrintUnformatted(line);
        fprintf(record, "%s\n", s);
        fflush(record);
        free(s);
    }
    cJSON_Delete(line);

    conv = body ? cJSON_GetObjectItem(body, "convId") : NULL;
    ans = cJSON_IsString(conv) ? cJSON_GetObjectItem(answers, conv->valuestring)
                               : NULL;
    if (!ans)
        ans = cJSON_GetObjectItem(answers, "*");
    if (ans) {
        cJSON *s = cJSON_GetObjectItem(ans, "status");
        cJSON *b = cJSON_GetObjectItem(ans, "body");
        cJSON *r = cJSON_GetObjectItem(ans, "raw");
        cJSON *d = cJSON_GetObjectItem(ans, "delay_ms");
        if (cJSON_IsNumber(s))
            status = s->valueint;
        if (cJSON_IsNumber(d))
            delay_ms = d->valueint;
        out = cJSON_IsString(r) ? strdup(r->valuestring)
              : b               ? cJSON_PrintUnformatted(b)
                                : strdup("{}");
    } else {
        out = strdup("{}");
    }
    cJSON_Delete(body);
    free(text);
    if (delay_ms > 0) {
        struct delayed *dl = calloc(1, sizeof(*dl));
        struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
        dl->req = req;
        dl->status = status;
        dl->body = out;
        dl->ev = evtimer_new(base, on_delay, dl);
        evtimer_add(dl->ev, &tv);
        dl->next = delayed_list;
        delayed_list = dl;
        return;
    }
    send_answer(req, status, out);
    free(out);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port-file", required_argument, NULL, 'p'},
        {"answers", required_argument, NULL, 'a'},
        {"record", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *port_file = NULL, *answers_file = NULL;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct sockaddr_storage ss;
    ev_socklen_t sl = sizeof(ss);
    struct event *sig_term, *sig_int;
    char tmp[4096];
    FILE *fp;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            port_file = optarg;
            break;
        case 'a':
            answers_file = optarg;
            break;
        case 'r':
            record = fopen(optarg, "a");
            break;
        default:
            return 2;
        }
    }
    if (!port_file) {
        fprintf(stderr, "usage: hook_server --port-file FILE "
                        "[--answers FILE] [--record FILE]\n");
        return 2;
    }
    if (answers_file) {
        fp = fopen(answers_file, "r");
        if (fp) {
            size_t n = fread(tmp, 1, sizeof(tmp) - 1, fp);
            tmp[n] = '\0';
            fclose(fp);
            answers = cJSON_Parse(tmp);
        }
        if (!answers) {
            fprintf(stderr, "hook_server: bad answers file '%s'\n",
                    answers_file);
            return 2;
        }
    } else {
        answers = cJSON_CreateObject();
    }
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    http = evhttp_new(base);
    evhttp_set_gencb(http, on_request, base);
    sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!sock) {
        fprintf(stderr, "hook_server: cannot listen\n");
        return 1;
    }
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl);
    snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
    fp = fopen(tmp, "w");
    fprintf(fp, "%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fclose(fp);
    rename(tmp, port_file);
    sig_term = evsignal_new(base, SIGTERM, on_signal, base);
    sig_int = evsignal_new(base, SIGINT, on_signal, base);
    evsignal_add(sig_term, NULL);
    evsignal_add(sig_int, NULL);
    event_base_dispatch(base);
    event_free(sig_term);
    event_free(sig_int);
    while (delayed_list) {
        struct delayed *d = delayed_list;
        delayed_list = d->next;
        event_free(d->ev);
        free(d->body);
        free(d);
    }
    evhttp_free(http);
    while (conns) {
        struct conn *cn = conns;
        conns = cn->next;
        free(cn);
    }
    event_base_free(base);
    cJSON_Delete(answers);
    if (record)
        fclose(record);
    return 0;
}
