/*
 * A mock HTTP CONNECT proxy for the tests (libevent, plain TCP): it reads
 * one CONNECT request per connection, checks it, and either answers an
 * error and closes, or connects to the target and relays bytes both ways
 * until either side closes. Targets must be loopback (127.0.0.0/8,
 * localhost, [::1]): a test never reaches further. Every CONNECT is
 * appended to --record as one JSON line
 *   {"conn":N,"ts_ms":T,"method":M,"target":"host:port","host":H,
 *    "auth":"user:password" | null,"status":S}
 * with |auth| the decoded Basic credentials of Proxy-Authorization and
 * |status| the answer given (200 once the target is connected).
 *
 * usage: connect_proxy --port-file FILE [--listen HOST:PORT] [--record F]
 *                      [--auth USER:PASSWORD]  (else 407)
 *                      [--status N]            (answer N to every CONNECT)
 *                      [--hang]                (never answer; status 0)
 *                      [--raw TEXT]            (answer TEXT, not HTTP)
 */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_HEAD 8192

struct pconn {
    long id;
    struct bufferevent *client, *up;
    struct pconn *next;
};

static struct event_base *base;
static FILE *record;
static const char *want_auth;
static int fixed_status;
static int hang;
static const char *raw_answer;
static long next_id;
static struct pconn *conns;

static void pconn_free(struct pconn *p)
{
    for (struct pconn **q = &conns; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    if (p->client)
        bufferevent_free(p->client);
    if (p->up)
        bufferevent_free(p->up);
    free(p);
}

static void record_line(const struct pconn *p, const char *method,
                        const char *target, const char *host, const char *auth,
                        int status)
{
    cJSON *o = cJSON_CreateObject();
    struct timeval tv;
    char *s;

    if (!record || !o)
        goto out;
    gettimeofday(&tv, NULL);
    cJSON_AddNumberToObject(o, "conn", (double)p->id);
    cJSON_AddNumberToObject(o, "ts_ms",
                            (double)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    cJSON_AddStringToObject(o, "method", method);
    cJSON_AddStringToObject(o, "target", target);
    if (host)
        cJSON_AddStringToObject(o, "host", host);
    else
        cJSON_AddNullToObject(o, "host");
    if (auth)
        cJSON_AddStringToObject(o, "auth", auth);
    else
        cJSON_AddNullToObject(o, "auth");
    cJSON_AddNumberToObject(o, "status", status);
    s = cJSON_PrintUnformatted(o);
    if (s) {
        fprintf(record, "%s\n", s);
        fflush(record);
        free(s);
    }
out:
    cJSON_Delete(o);
}

/* Fires once an error answer is written: the connection ends. */
static void close_when_written(struct bufferevent *bev, void *arg)
{
    (void)bev;
    pconn_free(arg);
}

static void answer_error(struct pconn *p, int status)
{
    const char *reason = status == 407   ? "Proxy Authentication Required"
                         : status == 403 ? "Forbidden"
                         : status == 405 ? "Method Not Allowed"
                         : status == 502 ? "Bad Gateway"
                                         : "Refused";

    evbuffer_add_printf(
        bufferevent_get_output(p->client),
        "HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\n"
        "Connection: close\r\n\r\n",
        status, reason,
        status == 407 ? "Proxy-Authenticate: Basic realm=\"mock\"\r\n" : "");
    bufferevent_disable(p->client, EV_READ);
    bufferevent_setcb(p->client, NULL, close_when_written, NULL, p);
}

/* Relays what arrived on one side to the other. */
static void relay_read(struct bufferevent *bev, void *arg)
{
    struct pconn *p = arg;
    struct bufferevent *other = bev == p->client ? p->up : p->client;

    evbuffer_add_buffer(bufferevent_get_output(other),
                        bufferevent_get_input(bev));
}

/* Either side closed: the other gets what is left, then both close. */
static void relay_event(struct bufferevent *bev, short what, void *arg)
{
    struct pconn *p = arg;
    struct bufferevent *other = bev == p->client ? p->up : p->client;

    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
        pconn_free(p);
        return;
    }
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    bufferevent_setcb(bev, NULL, NULL, NULL, p);
    bufferevent_disable(other, EV_READ);
    bufferevent_setcb(other, NULL, close_when_written, NULL, p);
}

static void up_event(struct bufferevent *bev, short what, void *arg)
{
    struct pconn *p = arg;
    struct evbuffer *in = bufferevent_get_input(p->client);

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        evbuffer_add_printf(bufferevent_get_output(p->client),
                            "HTTP/1.1 200 Connection established\r\n\r\n");
        bufferevent_setcb(p->client, relay_read, NULL, relay_event, p);
        bufferevent_setcb(p->up, relay_read, NULL, relay_event, p);
        bufferevent_enable(p->up, EV_READ | EV_WRITE);
        bufferevent_enable(p->client, EV_READ | EV_WRITE);
        if (evbuffer_get_length(in) > 0)
            relay_read(p->client, p);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(p->up);
        p->up = NULL;
        answer_error(p, 502);
    }
}

/* |target| "127.0.0.1:P", "localhost:P" or "[::1]:P" as an address. */
static int loopback_addr(const char *target, struct sockaddr_storage *ss,
                         int *len)
{
    char buf[300];

    if (strncasecmp(target, "localhost:", 10) == 0) {
        snprintf(buf, sizeof(buf), "127.0.0.1:%s", target + 10);
        target = buf;
    }
    *len = (int)sizeof(*ss);
    if (evutil_parse_sockaddr_port(target, (struct sockaddr *)ss, len) != 0)
        return -1;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127 ? 0 : -1;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ? 0 : -1;
    }
    return -1;
}

/* The decoded "user:password" of a "Basic …" value, or NULL. */
static char *basic_credentials(const char *value)
{
    size_t n;
    unsigned char *out;
    int len;

    if (strncasecmp(value, "Basic ", 6) != 0)
        return NULL;
    value += 6;
    n = strlen(value);
    if (n == 0 || n % 4 != 0)
        return NULL;
    out = malloc(n);
    if (!out)
        return NULL;
    len = EVP_DecodeBlock(out, (const unsigned char *)value, (int)n);
    if (len < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    if (value[n - 1] == '=')
        len--;
    if (value[n - 2] == '=')
        len--;
    out[len] = '\0';
    return (char *)out;
}

/* Fires while the request head comes in. */
static void client_head(struct bufferevent *bev, void *arg)
{
    struct pconn *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    char *head, *line, *save = NULL, *save2 = NULL, *method, *target;
    char *version;
    char *host = NULL, *auth = NULL;
    struct sockaddr_storage ss;
    int sslen, status = 0;

    if (end.pos < 0) {
        if (evbuffer_get_length(in) > MAX_HEAD)
            pconn_free(p);
        return;
    }
    head = malloc((size_t)end.pos + 1);
    if (!head) {
        pconn_free(p);
        return;
    }
    evbuffer_remove(in, head, (size_t)end.pos);
    head[end.pos] = '\0';
    evbuffer_drain(in, 4);
    line = strtok_r(head, "\r\n", &save);
    method = line ? strtok_r(line, " ", &save2) : NULL;
    target = method ? strtok_r(NULL, " ", &save2) : NULL;
    version = target ? strtok_r(NULL, " ", &save2) : NULL;
    if (!version) {
        pconn_free(p);
        free(head);
        return;
    }
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        char *v;

        if (!colon)
            continue;
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
            ;
        if (strcasecmp(line, "Host") == 0)
            host = v;
        else if (strcasecmp(line, "Proxy-Authorization") == 0) {
            free(auth);
            auth = basic_credentials(v);
        }
    }
    if (strcmp(method, "CONNECT") != 0)
        status = 405;
    else if (want_auth && (!auth || strcmp(auth, want_auth) != 0))
        status = 407;
    else if (fixed_status)
        status = fixed_status;
    else if (loopback_addr(target, &ss, &sslen) != 0)
        status = 403;
    if (!status && (hang || raw_answer))
        status = -1;
    record_line(p, method, target, host, auth,
                status > 0   ? status
                : status < 0 ? 0
                             : 200);
    free(auth);
    free(head);
    if (status < 0 && hang) {
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (status < 0) {
        evbuffer_add(bufferevent_get_output(bev), raw_answer,
                     strlen(raw_answer));
        bufferevent_disable(bev, EV_READ);
        bufferevent_setcb(bev, NULL, close_when_written, NULL, p);
        return;
    }
    if (status) {
        answer_error(p, status);
        return;
    }
    bufferevent_disable(bev, EV_READ);
    p->up = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!p->up) {
        answer_error(p, 502);
        return;
    }
    bufferevent_setcb(p->up, NULL, NULL, up_event, p);
    if (bufferevent_socket_connect(p->up, (struct sockaddr *)&ss, sslen) != 0) {
        bufferevent_free(p->up);
        p->up = NULL;
        answer_error(p, 502);
    }
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        pconn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct pconn *p = calloc(1, sizeof(*p));

    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    if (!p) {
        evutil_closesocket(fd);
        return;
    }
    p->id = ++next_id;
    p->client = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!p->client) {
        evutil_closesocket(fd);
        free(p);
        return;
    }
    p->next = conns;
    conns = p;
    bufferevent_setcb(p->client, client_head, NULL, client_event, p);
    bufferevent_enable(p->client, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(base);
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* "127.0.0.1:P" or "[::1]:P", P may be 0 (libevent's parser refuses 0). */
static int parse_listen(const char *s, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    size_t hl;
    long port;

    if (!colon)
        return -1;
    port = strtol(colon + 1, NULL, 10);
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(host) || port < 0 || port > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (strchr(host, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)port);
        *len = (int)sizeof(*in6);
        return evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;

    in->sin_family = AF_INET;
    in->sin_port = htons((unsigned short)port);
    *len = (int)sizeof(*in);
    return evutil_inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'p'},
        {"record", required_argument, NULL, 'r'},
        {"auth", required_argument, NULL, 'a'},
        {"status", required_argument, NULL, 's'},
        {"hang", no_argument, NULL, 'h'},
        {"raw", required_argument, NULL, 'w'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_on = "127.0.0.1:0", *port_file = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int len = (int)sizeof(ss), c, port;
    struct evconnlistener *l;
    struct event *sigterm, *sigint;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_on = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'r':
            record = fopen(optarg, "a");
            if (!record) {
                perror(optarg);
                return 2;
            }
            break;
        case 'a':
            want_auth = optarg;
            break;
        case 's':
            fixed_status = atoi(optarg);
            break;
        case 'h':
            hang = 1;
            break;
        case 'w':
            raw_answer = optarg;
            break;
        case 'q':
            break;
        default:
            fprintf(stderr, "usage: connect_proxy --port-file FILE "
                            "[--listen H:P] [--record F] [--auth U:P] "
                            "[--status N]\n");
            return 2;
        }
    }
    if (!port_file) {
        fprintf(stderr, "connect_proxy: --port-file is required\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (!base || parse_listen(listen_on, &ss, &len) != 0) {
        fprintf(stderr, "connect_proxy: bad --listen '%s'\n", listen_on);
        return 2;
    }
    l = evconnlistener_new_bind(base, on_accept, NULL,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                                (struct sockaddr *)&ss, len);
    if (!l) {
        perror("connect_proxy: listen");
        return 1;
    }
    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sslen) !=
        0) {
        perror("getsockname");
        return 1;
    }
    port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    if (write_port_file(port_file, port) != 0) {
        perror(port_file);
        return 1;
    }
    sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(base, SIGINT, on_signal, NULL);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    event_base_dispatch(base);
    while (conns)
        pconn_free(conns);
    evconnlistener_free(l);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(base);
    if (record)
        fclose(record);
    return 0;
}
