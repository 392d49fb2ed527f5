/*
 * apns_blast: sends N pushes through the apns module (h2client, jwt) to an
 * APNs endpoint (the mock) as fast as the window allows; prints pushes/s.
 *   apns_blast --origin https://127.0.0.1:PORT --ca ca.pem --key K.p8
 *              --team T --kid K [--topic B] [-n N] [-c CONNS] [-w WINDOW]
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "apns.h"
#include "log.h"
#include "outcome.h"
#include "pushgw.h"

struct blast {
    struct event_base *base;
    struct pgw_apns *apns;
    const char *team, *topic;
    uint64_t total, sent, done, delivered, failed;
    char reason[PGW_OUTCOME_REASON_MAX];
};

static int send_one(struct blast *b);

static void on_outcome(void *arg, const struct pgw_outcome *o)
{
    struct blast *b = arg;

    b->done++;
    if (o->kind == PGW_OUTCOME_DELIVERED)
        b->delivered++;
    else {
        b->failed++;
        snprintf(b->reason, sizeof(b->reason), "%s", o->reason);
    }
    if (b->sent < b->total) {
        if (send_one(b) != 0)
            event_base_loopbreak(b->base);
    } else if (b->done == b->total) {
        event_base_loopbreak(b->base);
    }
}

static int send_one(struct blast *b)
{
    static const char body[] = "{\"aps\":{\"alert\":{\"title\":\"Jerry\","
                               "\"body\":\"hello from the benchmark\"},"
                               "\"badge\":1,\"sound\":\"default\"}}";
    struct pgw_apns_push p;
    char token[65];

    memset(&p, 0, sizeof(p));
    snprintf(token, sizeof(token), "%048x%016llx", 0,
             (unsigned long long)b->sent + 1);
    p.env = PGW_APNS_PRODUCTION;
    p.team_id = b->team;
    p.device_token = token;
    p.topic = b->topic;
    p.push_type = "alert";
    p.priority = 10;
    p.expiration = (int64_t)time(NULL) + 86400;
    p.body = body;
    p.body_len = sizeof(body) - 1;
    b->sent++;
    return pgw_apns_send(b->apns, &p, on_outcome, b);
}

int main(int argc, char **argv)
{
    struct pgw_apns_options o;
    struct blast b;
    struct evdns_base *dns;
    const char *origin = NULL, *ca = NULL, *key = NULL, *kid = NULL;
    unsigned long window = 5000;
    struct timespec t0, t1;
    double secs;
    int opt, ret;
    uint64_t i;

    memset(&o, 0, sizeof(o));
    memset(&b, 0, sizeof(b));
    b.total = 200000;
    b.topic = "com.example.app";
    o.pool.connections = 2;
    while ((opt = getopt(argc, argv, "o:a:k:t:i:p:n:c:w:")) != -1) {
        switch (opt) {
        case 'o':
            origin = optarg;
            break;
        case 'a':
            ca = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 't':
            b.team = optarg;
            break;
        case 'i':
            kid = optarg;
            break;
        case 'p':
            b.topic = optarg;
            break;
        case 'n':
            b.total = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            o.pool.connections = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            window = strtoul(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: apns_blast -o ORIGIN -a CA -k KEY.p8 -t "
                            "TEAM -i KID [-p TOPIC] [-n N] [-c CONNS] "
                            "[-w WINDOW]\n");
            return 2;
        }
    }
    if (!origin || !ca || !key || !b.team || !kid || b.total == 0 ||
        window == 0) {
        fprintf(stderr, "apns_blast: -o, -a, -k, -t and -i are required\n");
        return 2;
    }
    pgw_log_set_level(PGW_LOG_WARN);
    o.production_url = origin;
    o.development_url = origin;
    o.ca_file = ca;
    o.pool.max_pending = window + 1;
    b.base = event_base_new();
    dns = b.base ? evdns_base_new(b.base, 0) : NULL;
    if (!dns) {
        fprintf(stderr, "apns_blast: could not create the event loop\n");
        return 1;
    }
    ret = pgw_apns_new(b.base, dns, &o, &b.apns);
    if (ret == 0)
        ret = pgw_apns_add_team(b.apns, b.team, kid, key);
    if (ret != 0) {
        fprintf(stderr, "apns_blast: setup failed: %s\n", pgw_strerror(ret));
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < window && b.sent < b.total; i++) {
        if (send_one(&b) != 0) {
            fprintf(stderr, "apns_blast: send failed\n");
            return 1;
        }
    }
    event_base_dispatch(b.base);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("apns_blast pushes=%llu delivered=%llu failed=%llu seconds=%.3f "
           "pushes_per_s=%.0f%s%s\n",
           (unsigned long long)b.done, (unsigned long long)b.delivered,
           (unsigned long long)b.failed, secs, (double)b.done / secs,
           b.failed ? " last_failure=" : "", b.failed ? b.reason : "");
    pgw_apns_free(b.apns);
    evdns_base_free(dns, 0);
    event_base_free(b.base);
    return b.failed || b.done != b.total ? 1 : 0;
}
