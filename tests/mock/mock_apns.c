/*
 * mock_apns: an APNs provider API server (HTTP/2 over TLS) that validates
 * requests like Apple's (PROTOCOLS.md Part A), with fault injection for
 * the tests and a fast path for benchmarks. See README.md.
 */
#include "h2server.h"
#include "mockjwt.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TEAMS 32
#define MAX_TOPICS 64
#define MAX_TOKENS 4096
#define JWT_CACHE 32
/* Accepted clock skew for an iat in the future. */
#define IAT_SKEW_S 60

struct team {
    char team[64];
    char kid[64];
    EVP_PKEY *pub;
};

struct listed_token {
    const char *token;
    int64_t ts_ms; /* 0: now */
};

struct cached_jwt {
    char *tok;
    size_t len;
    int team;
    int64_t iat;
};

/* Per-connection state kept in the server's conn_tag bytes. */
struct apns_conn {
    char team[40];
    int64_t last_iat;
};

struct apns {
    struct team teams[MAX_TEAMS];
    int nteams;
    const char *topics[MAX_TOPICS];
    int ntopics;
    struct listed_token unreg[MAX_TOKENS];
    int nunreg;
    const char *bad[MAX_TOKENS];
    int nbad;
    /* Per-environment token rules: this mock's environment, and tokens
     * known to belong to production (prod) or development (dev); a token
     * of the other environment is answered 400 BadDeviceToken, as Apple
     * does. Tokens in neither list are of both. */
    bool development;
    const char *prod[MAX_TOKENS], *dev[MAX_TOKENS];
    int nprod, ndev;
    long max_age_s;
    long min_update_s;
    const char *second_team_reason;
    struct cached_jwt cache[JWT_CACHE];
    int cache_next;
    uint64_t jwt_verifications;
};

_Static_assert(sizeof(struct apns_conn) <= MOCK_CONN_TAG, "conn tag size");

/* The topic suffix Apple requires for |ptype| (NULL: the bundle id). */
static const char *topic_suffix(const char *ptype)
{
    static const char *const map[][2] = {
        {"voip", ".voip"},
        {"complication", ".complication"},
        {"fileprovider", ".pushkit.fileprovider"},
        {"location", ".location-query"},
        {"liveactivity", ".push-type.liveactivity"},
        {"pushtotalk", ".voip-ptt"},
    };

    for (size_t i = 0; ptype && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(ptype, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static const char *const push_types[] = {
    "alert",        "background", "voip",     "complication",
    "fileprovider", "mdm",        "location", "liveactivity",
    "pushtotalk",   "controls",   "widgets",  NULL};

static bool is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool is_uuid(const char *s)
{
    static const int groups[5] = {8, 4, 4, 4, 12};

    for (int g = 0; g < 5; g++) {
        if (!is_hex(s, (size_t)groups[g]) || strnlen(s, 13) < (size_t)groups[g])
            return false;
        s += groups[g];
        if (g < 4 && *s++ != '-')
            return false;
    }
    return *s == '\0';
}

static bool is_uint(const char *s)
{
    if (!*s || strlen(s) > 19)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/*
 * Verifies the provider token |tok| (|len| bytes). Returns NULL when
 * valid (*ret_team = team index, *ret_iat), else the APNs reason.
 */
static const char *check_jwt(struct apns *a, struct mock_req *req,
                             const char *tok, size_t len, int *ret_team,
                             int64_t *ret_iat)
{
    struct mock_jwt jwt;
    const char *alg, *kid, *iss, *reason = "InvalidProviderToken";
    const cJSON *iat;
    int64_t now = req->ts_us / 1000000, iatv;
    int t, i;

    for (i = 0; i < JWT_CACHE; i++) {
        struct cached_jwt *c = &a->cache[i];
        if (c->tok && c->len == len && !memcmp(c->tok, tok, len)) {
            t = c->team;
            iatv = c->iat;
            goto times;
        }
    }
    if (mock_jwt_parse(tok, len, &jwt) < 0)
        return "InvalidProviderToken";
    alg = mock_json_str(jwt.header, "alg");
    kid = mock_json_str(jwt.header, "kid");
    iss = mock_json_str(jwt.claims, "iss");
    iat = cJSON_GetObjectItemCaseSensitive(jwt.claims, "iat");
    if (!alg || strcmp(alg, "ES256") || !kid || !iss || !cJSON_IsNumber(iat))
        goto out;
    for (t = 0; t < a->nteams; t++)
        if (!strcmp(a->teams[t].kid, kid))
            break;
    if (t == a->nteams || strcmp(a->teams[t].team, iss))
        goto out;
    a->jwt_verifications++;
    if (mock_jwt_verify_es256(&jwt, a->teams[t].pub) < 0)
        goto out;
    iatv = (int64_t)iat->valuedouble;
    mock_jwt_release(&jwt);
    {
        struct cached_jwt *c = &a->cache[a->cache_next];
        char *copy = malloc(len);
        if (copy) {
            memcpy(copy, tok, len);
            free(c->tok);
            c->tok = copy;
            c->len = len;
            c->team = t;
            c->iat = iatv;
            a->cache_next = (a->cache_next + 1) % JWT_CACHE;
        }
    }
times:
    if (iatv > now + IAT_SKEW_S)
        return "InvalidProviderToken";
    if (now - iatv > a->max_age_s)
        return "ExpiredProviderToken";
    *ret_team = t;
    *ret_iat = iatv;
    return NULL;
out:
    mock_jwt_release(&jwt);
    return reason;
}

static bool listed(const char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

/* A record line built by hand (cJSON prints only the body): at the
 * benchmark's latency runs' rate a cJSON object of every field per
 * request cost the mock more than the request itself (6.5 us a request
 * recorded against 2.9 not). */
struct line {
    char *buf; /* kept from line to line */
    size_t n, cap;
    bool oom;
};

/* Appends |n| bytes, and room for a NUL, growing the buffer. */
static void put(struct line *l, const char *s, size_t n)
{
    if (l->oom)
        return;
    if (l->n + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        char *b;

        while (l->n + n + 1 > cap)
            cap *= 2;
        b = realloc(l->buf, cap);
        if (!b) {
            l->oom = true;
            return;
        }
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->n, s, n);
    l->n += n;
}

static void put_s(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* "value" (JSON-escaped) or null */
static void put_str(struct line *l, const char *v)
{
    char esc[8];

    if (!v) {
        put_s(l, "null");
        return;
    }
    put_s(l, "\"");
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            put(l, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *c);
            put(l, esc, 6);
        } else {
            put(l, (const char *)c, 1);
        }
    }
    put_s(l, "\"");
}

/* ,"key":"value" or ,"key":null */
static void put_field(struct line *l, const char *key, const char *v)
{
    put_s(l, ",\"");
    put_s(l, key);
    put_s(l, "\":");
    put_str(l, v);
}

static void record(struct apns *a, struct mock_req *req, const char *token,
                   const char *team, const char *kid, cJSON *body,
                   const char *reason, const char *apns_id)
{
    static struct line l;
    char num[96];
    bool first = true;

    (void)a;
    l.n = 0;
    l.oom = false;
    /* ts_ms fractional: the benchmark's latencies are below a millisecond */
    snprintf(num, sizeof(num),
             "{\"conn\":%" PRIu64 ",\"stream\":%d,\"ts_ms\":%.4f", req->conn_id,
             (int)req->stream_id, (double)req->ts_us / 1000.0);
    put_s(&l, num);
    put_field(&l, "method", req->method);
    put_field(&l, "path", req->path);
    put_field(&l, "token", token);
    put_field(&l, "topic", mock_req_header(req, "apns-topic", NULL));
    put_field(&l, "push_type", mock_req_header(req, "apns-push-type", NULL));
    put_field(&l, "priority", mock_req_header(req, "apns-priority", NULL));
    put_field(&l, "expiration", mock_req_header(req, "apns-expiration", NULL));
    put_field(&l, "collapse_id",
              mock_req_header(req, "apns-collapse-id", NULL));
    put_field(&l, "apns_id", apns_id);
    put_field(&l, "team", team);
    put_field(&l, "kid", kid);
    /* how the client encoded its headers: Apple asks for some to be
     * literals without indexing */
    put_s(&l, ",\"never_indexed\":[");
    for (int i = 0; i < req->nhdrs; i++) {
        if (!req->hdrs[i].never_indexed)
            continue;
        if (!first)
            put_s(&l, ",");
        first = false;
        put_str(&l, req->hdrs[i].name);
    }
    put_s(&l, "]");
    snprintf(num, sizeof(num), ",\"status\":%d", req->status);
    put_s(&l, num);
    put_field(&l, "reason", reason);
    put_s(&l, ",\"body\":");
    if (body) {
        /* into the buffer's room when it fits, else through an allocation */
        char *b = NULL;

        if (!l.oom && l.cap - l.n > 2 &&
            cJSON_PrintPreallocated(body, l.buf + l.n, (int)(l.cap - l.n - 1),
                                    0))
            l.n += strlen(l.buf + l.n);
        else if ((b = cJSON_PrintUnformatted(body)) != NULL)
            put_s(&l, b);
        else
            l.oom = true;
        free(b);
    } else if (req->body_len) {
        put_str(&l, req->body);
    } else {
        put_s(&l, "null");
    }
    put_s(&l, "}");
    if (l.oom)
        return; /* out of memory: the line is not recorded */
    l.buf[l.n] = '\0';
    mock_server_record(req->server, l.buf);
}

static void handle(void *ctx, struct mock_req *req)
{
    struct apns *a = ctx;
    struct apns_conn cs;
    const char *reason = NULL, *token = NULL, *h, *auth, *ptype, *prio;
    const char *fault_reason = NULL;
    char tokbuf[512], apns_id[40], resp[160];
    int status = 200, team = -1, n, fault;
    int64_t iat = 0, ts410 = 0;
    cJSON *body = NULL;
    size_t limit;

    memcpy(&cs, req->conn_tag, sizeof(cs));
    h = mock_req_header(req, "apns-id", NULL);
    if (h && is_uuid(h))
        snprintf(apns_id, sizeof(apns_id), "%s", h);
    else
        mock_uuid(req->server, apns_id);

    fault = mock_server_fault(req->server, &fault_reason);
    if (fault) {
        status = fault;
        reason = fault_reason;
    }
#define FAIL(S, R)                                                             \
    do {                                                                       \
        if (!reason) {                                                         \
            status = (S);                                                      \
            reason = (R);                                                      \
        }                                                                      \
        goto answer;                                                           \
    } while (0)
    if (strncmp(req->path, "/3/device/", 10) == 0) {
        const char *t = req->path + 10;
        size_t len = strlen(t);
        if (len < sizeof(tokbuf)) {
            memcpy(tokbuf, t, len + 1);
            token = tokbuf;
        }
    }
    if (reason)
        goto answer;
    if (strcmp(req->method, "POST"))
        FAIL(405, "MethodNotAllowed");
    if (strncmp(req->path, "/3/device/", 10))
        FAIL(404, "BadPath");
    if (req->path[10] == '\0')
        FAIL(400, "MissingDeviceToken");
    if (strpbrk(req->path + 10, "/?#"))
        FAIL(404, "BadPath");
    n = (int)strlen(req->path + 10);
    if (!token || n % 2 || n < 16 || n > 200 ||
        !is_hex(req->path + 10, (size_t)n))
        FAIL(400, "BadDeviceToken");
    if (req->hdr_overflow)
        FAIL(400, "BadHeaders");
    for (int i = 0; i < req->nhdrs; i++) {
        const char *nm = req->hdrs[i].name;
        if ((!strncmp(nm, "apns-", 5) || !strcmp(nm, "authorization"))) {
            mock_req_header(req, nm, &n);
            if (n > 1)
                FAIL(400, "DuplicateHeaders");
        }
    }
    auth = mock_req_header(req, "authorization", NULL);
    if (!auth && req->client_uid[0]) {
        /* Certificate authentication: the certificate's bundle id is the
         * topic (its default when the header is absent), or the bundle
         * id with the suffix of a push type (…voip, …complication). */
        h = mock_req_header(req, "apns-topic", NULL);
        if (h && *h && strcmp(h, req->client_uid) &&
            !(strncmp(h, req->client_uid, strlen(req->client_uid)) == 0 &&
              h[strlen(req->client_uid)] == '.'))
            FAIL(400, "TopicDisallowed");
        goto authenticated;
    }
    if (!auth || strncasecmp(auth, "bearer ", 7) || !auth[7])
        FAIL(403, "MissingProviderToken");
    h = check_jwt(a, req, auth + 7, strlen(auth + 7), &team, &iat);
    if (h)
        FAIL(403, h);
    if (!cs.team[0]) {
        snprintf(cs.team, sizeof(cs.team), "%s", a->teams[team].team);
        cs.last_iat = iat;
    } else if (strcmp(cs.team, a->teams[team].team)) {
        FAIL(403, a->second_team_reason);
    } else if (iat != cs.last_iat) {
        if (a->min_update_s > 0 && iat - cs.last_iat < a->min_update_s)
            FAIL(429, "TooManyProviderTokenUpdates");
        cs.last_iat = iat;
    }
authenticated:
    h = mock_req_header(req, "apns-id", NULL);
    if (h && !is_uuid(h))
        FAIL(400, "BadMessageId");
    h = mock_req_header(req, "apns-topic", NULL);
    if ((!h || !*h) && req->client_uid[0] && !auth)
        h = req->client_uid;
    if (!h || !*h)
        FAIL(400, "MissingTopic");
    ptype = mock_req_header(req, "apns-push-type", NULL);
    if (ptype && !listed(push_types, 11, ptype))
        FAIL(400, "InvalidPushType");
    {
        /* Push types Apple routes by a suffixed topic: <bundle>.voip … */
        const char *suffix = topic_suffix(ptype);
        size_t tl = strlen(h), sl = suffix ? strlen(suffix) : 0;
        char base[256];

        if (suffix && (tl <= sl || strcmp(h + tl - sl, suffix) != 0))
            FAIL(400, "TopicDisallowed");
        snprintf(base, sizeof(base), "%.*s", (int)(tl - sl), h);
        if (a->ntopics && !listed(a->topics, a->ntopics, base))
            FAIL(400, "TopicDisallowed");
    }
    prio = mock_req_header(req, "apns-priority", NULL);
    if (prio && strcmp(prio, "10") && strcmp(prio, "5") && strcmp(prio, "1"))
        FAIL(400, "BadPriority");
    if (prio && ptype && !strcmp(ptype, "background") && !strcmp(prio, "10"))
        FAIL(400, "BadPriority");
    h = mock_req_header(req, "apns-expiration", NULL);
    if (h && !is_uint(h))
        FAIL(400, "BadExpirationDate");
    h = mock_req_header(req, "apns-collapse-id", NULL);
    if (h && strlen(h) > 64)
        FAIL(400, "BadCollapseId");
    if (req->body_len == 0)
        FAIL(400, "PayloadEmpty");
    limit = ptype && !strcmp(ptype, "voip") ? 5120 : 4096;
    if (req->body_len > limit)
        FAIL(413, "PayloadTooLarge");
    body = cJSON_ParseWithLength(req->body, req->body_len);
    if (!body || !cJSON_IsObject(body) ||
        !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(body, "aps")))
        FAIL(400, "PayloadEmpty");
    if (listed(a->bad, a->nbad, token))
        FAIL(400, "BadDeviceToken");
    if (a->development ? listed(a->prod, a->nprod, token)
                       : listed(a->dev, a->ndev, token))
        FAIL(400, "BadDeviceToken");
    for (int i = 0; i < a->nunreg; i++) {
        if (!strcmp(a->unreg[i].token, token)) {
            ts410 = a->unreg[i].ts_ms ? a->unreg[i].ts_ms : req->ts_us / 1000;
            FAIL(410, "Unregistered");
        }
    }
#undef FAIL
answer:
    memcpy(req->conn_tag, &cs, sizeof(cs));
    if (!body && req->body_len && mock_server_recording(req->server))
        body = cJSON_ParseWithLength(req->body, req->body_len);
    mock_req_add_header(req, "apns-id", apns_id);
    if (status == 200) {
        mock_req_respond(req, 200, NULL, 0);
    } else {
        if (status == 410)
            n = snprintf(resp, sizeof(resp),
                         "{\"reason\":\"%s\",\"timestamp\":%" PRId64 "}",
                         reason, ts410);
        else
            n = snprintf(resp, sizeof(resp), "{\"reason\":\"%s\"}", reason);
        mock_req_add_header(req, "content-type", "application/json");
        mock_req_respond(req, status, resp,
                         n > 0 && (size_t)n < sizeof(resp) ? (size_t)n : 0);
    }
    if (mock_server_recording(req->server)) {
        const char *kid = team >= 0 ? a->teams[team].kid : NULL;
        record(a, req, token, team >= 0 ? a->teams[team].team : NULL, kid, body,
               status == 200 ? NULL : reason, apns_id);
    }
    cJSON_Delete(body);
}

static int stats(void *ctx, char *buf, size_t len)
{
    struct apns *a = ctx;
    int n = snprintf(buf, len, ",\"jwt_verifications\":%" PRIu64,
                     a->jwt_verifications);
    return n > 0 && (size_t)n < len ? n : 0;
}

static int add_team(struct apns *a, const char *v)
{
    const char *c1 = strchr(v, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    struct team *t;

    if (!c2 || a->nteams >= MAX_TEAMS || c1 - v >= 63 || c2 - c1 - 1 >= 63 ||
        c1 == v || c2 == c1 + 1)
        return -1;
    t = &a->teams[a->nteams];
    memcpy(t->team, v, (size_t)(c1 - v));
    t->team[c1 - v] = '\0';
    memcpy(t->kid, c1 + 1, (size_t)(c2 - c1 - 1));
    t->kid[c2 - c1 - 1] = '\0';
    t->pub = mock_pem_load_pub(c2 + 1);
    if (!t->pub || EVP_PKEY_base_id(t->pub) != EVP_PKEY_EC) {
        fprintf(stderr, "mock_apns: cannot load EC public key '%s'\n", c2 + 1);
        EVP_PKEY_free(t->pub);
        t->pub = NULL;
        return -1;
    }
    a->nteams++;
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mock_apns [options]\n%s"
            "  --team TEAM:KID:PUB.pem     accepted provider-token key "
            "(repeatable)\n"
            "  --token-max-age-s N         iat older -> "
            "ExpiredProviderToken (3600)\n"
            "  --topic BUNDLE              allowed topic (repeatable; none: "
            "any)\n"
            "  --unregistered TOKEN[:TS_MS]  answer 410 Unregistered\n"
            "  --bad-token TOKEN           answer 400 BadDeviceToken\n"
            "  --environment ENV           production (default) or "
            "development\n"
            "  --token-env TOKEN:ENV       TOKEN belongs to ENV: 400 "
            "BadDeviceToken\n"
            "                              from the other environment "
            "(repeatable)\n"
            "  --second-team-reason R      403 reason for another team on a "
            "connection\n"
            "                              (InvalidProviderToken)\n"
            "  --min-token-update-s N      a new token whose iat is less than "
            "N s after\n"
            "                              the connection's previous one -> "
            "429\n"
            "                              TooManyProviderTokenUpdates (0: "
            "off)\n",
            mock_opts_usage);
}

int main(int argc, char **argv)
{
    static struct apns a;
    struct mock_opts o;
    struct mock_app app = {"mock_apns", &a, handle, stats};
    int rc = 2;

    mock_opts_init(&o, "mock_apns");
    a.max_age_s = 3600;
    a.second_team_reason = "InvalidProviderToken";
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            usage();
            rc = 0;
            goto out;
        }
        if (val) {
            r = 2;
            if (!strcmp(name, "--team")) {
                if (add_team(&a, val) < 0)
                    r = -1;
            } else if (!strcmp(name, "--token-max-age-s")) {
                char *end;
                a.max_age_s = strtol(val, &end, 10);
                if (*end || a.max_age_s < 0)
                    r = -1;
            } else if (!strcmp(name, "--min-token-update-s")) {
                char *end;
                a.min_update_s = strtol(val, &end, 10);
                if (*end || a.min_update_s < 0)
                    r = -1;
            } else if (!strcmp(name, "--topic")) {
                if (a.ntopics >= MAX_TOPICS)
                    r = -1;
                else
                    a.topics[a.ntopics++] = val;
            } else if (!strcmp(name, "--bad-token")) {
                if (a.nbad >= MAX_TOKENS)
                    r = -1;
                else
                    a.bad[a.nbad++] = val;
            } else if (!strcmp(name, "--environment")) {
                if (!strcmp(val, "development"))
                    a.development = true;
                else if (strcmp(val, "production"))
                    r = -1;
            } else if (!strcmp(name, "--token-env")) {
                const char *colon = strchr(val, ':');
                if (!colon || a.nprod >= MAX_TOKENS || a.ndev >= MAX_TOKENS)
                    r = -1;
                else if (!strcmp(colon + 1, "production"))
                    a.prod[a.nprod++] = strndup(val, (size_t)(colon - val));
                else if (!strcmp(colon + 1, "development"))
                    a.dev[a.ndev++] = strndup(val, (size_t)(colon - val));
                else
                    r = -1;
            } else if (!strcmp(name, "--second-team-reason")) {
                a.second_team_reason = val;
            } else if (!strcmp(name, "--unregistered")) {
                char *colon = strchr(argv[i + 1], ':');
                if (a.nunreg >= MAX_TOKENS) {
                    r = -1;
                } else {
                    if (colon) {
                        char *end;
                        *colon = '\0';
                        a.unreg[a.nunreg].ts_ms = strtoll(colon + 1, &end, 10);
                        if (*end)
                            r = -1;
                    }
                    a.unreg[a.nunreg++].token = argv[i + 1];
                }
            } else {
                r = 0;
            }
        }
        if (r == 0)
            r = mock_opts_parse(&o, name, val);
        if (r <= 0) {
            fprintf(stderr, "mock_apns: %s option '%s'\n",
                    r == 0 ? "unknown" : "bad value for", name);
            usage();
            goto out;
        }
        i += r - 1;
    }
    rc = mock_server_run(&o, &app);
out:
    for (int i = 0; i < a.nteams; i++)
        EVP_PKEY_free(a.teams[i].pub);
    for (int i = 0; i < JWT_CACHE; i++)
        free(a.cache[i].tok);
    return rc;
}
