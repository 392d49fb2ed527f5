/*
 * mock_fcm: an FCM HTTP v1 server (messages:send) plus an OAuth2 token
 * endpoint for service-account JWT assertions, over HTTP/2 and TLS, that
 * validates like Google's (PROTOCOLS.md Part B), with fault injection.
 * See README.md.
 */
#include "h2server.h"
#include "mockjwt.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKENS 4096
#define MAX_ISSUED 4096
#define FORM_MAX 16384
#define IAT_SKEW_S 60
#define MAX_TTL_S 2419200
#define SCOPE_FCM "https://www.googleapis.com/auth/firebase.messaging"
#define SCOPE_CLOUD "https://www.googleapis.com/auth/cloud-platform"
#define FCM_ERROR "type.googleapis.com/google.firebase.fcm.v1.FcmError"
#define BAD_REQUEST "type.googleapis.com/google.rpc.BadRequest"

struct issued {
    char tok[64];
    int64_t exp_ms;
    bool revoked;
};

struct fcm {
    EVP_PKEY *pub;
    const char *client_email;
    const char *project;
    long ttl_s;
    uint64_t expire_after;
    const char *unreg[MAX_TOKENS];
    int nunreg;
    const char *invalid[MAX_TOKENS]; /* not FCM tokens at all */
    int ninvalid;
    const char *mismatch[MAX_TOKENS];
    int nmismatch;
    struct issued issued[MAX_ISSUED]; /* ring, newest at issued_next - 1 */
    int issued_next, nissued;
    uint64_t issued_total, token_requests, sends, expirations;
};

/* The answer being built, with what the record line needs. */
struct verdict {
    int status;
    const char *error; /* FCM errorCode / google status / oauth error */
    cJSON *body;       /* parsed request body, or NULL */
};

static const char *rpc_status(int code)
{
    switch (code) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 500:
        return "INTERNAL";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return "UNKNOWN";
    }
}

static void respond_json(struct mock_req *req, int status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;

    mock_req_add_header(req, "content-type", "application/json; charset=UTF-8");
    if (s)
        mock_req_respond(req, status, s, strlen(s));
    else
        mock_req_respond(req, 500, NULL, 0);
    free(s);
    cJSON_Delete(o);
}

/*
 * Google's error JSON: {"error":{"code","message","status","details"}}
 * with an FcmError detail when |fcm_code| is set and a BadRequest field
 * violation when |field| is set.
 */
static void google_error(struct mock_req *req, struct verdict *v, int code,
                         const char *fcm_code, const char *message,
                         const char *field)
{
    cJSON *o = cJSON_CreateObject(), *e, *details, *d, *fv, *viol;

    v->status = code;
    v->error = fcm_code ? fcm_code : rpc_status(code);
    if (!o || !(e = cJSON_AddObjectToObject(o, "error")))
        goto out;
    cJSON_AddNumberToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "status", rpc_status(code));
    if (!fcm_code && !field)
        goto out;
    details = cJSON_AddArrayToObject(e, "details");
    if (fcm_code && details && (d = cJSON_CreateObject())) {
        cJSON_AddStringToObject(d, "@type", FCM_ERROR);
        cJSON_AddStringToObject(d, "errorCode", fcm_code);
        cJSON_AddItemToArray(details, d);
    }
    if (field && details && (d = cJSON_CreateObject())) {
        cJSON_AddStringToObject(d, "@type", BAD_REQUEST);
        fv = cJSON_AddArrayToObject(d, "fieldViolations");
        if (fv && (viol = cJSON_CreateObject())) {
            cJSON_AddStringToObject(viol, "field", field);
            cJSON_AddStringToObject(viol, "description", message);
            cJSON_AddItemToArray(fv, viol);
        }
        cJSON_AddItemToArray(details, d);
    }
out:
    respond_json(req, code, o);
}

static void oauth_error(struct mock_req *req, struct verdict *v,
                        const char *error, const char *desc)
{
    cJSON *o = cJSON_CreateObject();

    v->status = 400;
    v->error = error;
    if (o) {
        cJSON_AddStringToObject(o, "error", error);
        cJSON_AddStringToObject(o, "error_description", desc);
    }
    respond_json(req, 400, o);
}

static bool listed(const char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

/* URL-decodes form value |s| (|len| bytes) into |out|; -1 if too long. */
static int form_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len &&
                   isxdigit((unsigned char)s[i + 1]) &&
                   isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            c = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* Finds form field |name| in |body| and decodes it into |out|. */
static int form_get(const char *body, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = body;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t flen = amp ? (size_t)(amp - p) : strlen(p);
        if (flen > nl && !strncmp(p, name, nl) && p[nl] == '=')
            return form_decode(p + nl + 1, flen - nl - 1, out, cap);
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static bool aud_ok(struct mock_req *req, const char *aud)
{
    static const char *const hosts[] = {"127.0.0.1", "localhost", "[::1]",
                                        NULL};
    char want[512];
    unsigned port = mock_server_port(req->server);

    snprintf(want, sizeof(want), "https://%s/token", req->authority);
    if (*req->authority && !strcmp(aud, want))
        return true;
    for (int i = 0; hosts[i]; i++) {
        snprintf(want, sizeof(want), "https://%s:%u/token", hosts[i], port);
        if (!strcmp(aud, want))
            return true;
    }
    return false;
}

static bool scope_ok(const char *scope)
{
    char buf[1024], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", scope);
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
        if (!strcmp(t, SCOPE_FCM) || !strcmp(t, SCOPE_CLOUD))
            return true;
    return false;
}

static void handle_token(struct fcm *f, struct mock_req *req, struct verdict *v)
{
    static char form[FORM_MAX];
    struct mock_jwt jwt = {0};
    const char *alg, *iss, *aud, *scope;
    const cJSON *iat, *exp;
    int64_t now = req->ts_us / 1000000;
    struct issued *is;
    cJSON *o;

    f->token_requests++;
    if (strcmp(req->method, "POST")) {
        oauth_error(req, v, "invalid_request", "Method must be POST.");
        return;
    }
    if (req->body_overflow ||
        form_get(req->body, "grant_type", form, sizeof(form)) < 0) {
        oauth_error(req, v, "invalid_request",
                    "Missing required parameter: grant_type");
        return;
    }
    if (strcmp(form, "urn:ietf:params:oauth:grant-type:jwt-bearer")) {
        oauth_error(req, v, "unsupported_grant_type", "Invalid grant_type");
        return;
    }
    if (form_get(req->body, "assertion", form, sizeof(form)) < 0 ||
        mock_jwt_parse(form, strlen(form), &jwt) < 0) {
        oauth_error(req, v, "invalid_grant", "Invalid JWT: malformed");
        return;
    }
    alg = mock_json_str(jwt.header, "alg");
    iss = mock_json_str(jwt.claims, "iss");
    aud = mock_json_str(jwt.claims, "aud");
    scope = mock_json_str(jwt.claims, "scope");
    iat = cJSON_GetObjectItemCaseSensitive(jwt.claims, "iat");
    exp = cJSON_GetObjectItemCaseSensitive(jwt.claims, "exp");
    if (!alg || strcmp(alg, "RS256") || mock_jwt_verify_rs256(&jwt, f->pub))
        oauth_error(req, v, "invalid_grant", "Invalid JWT Signature.");
    else if (!iss || strcmp(iss, f->client_email))
        oauth_error(req, v, "invalid_grant", "Invalid email or User ID");
    else if (!aud || !aud_ok(req, aud))
        oauth_error(req, v, "invalid_grant",
                    "Invalid JWT: audience is not the token URL");
    else if (!scope || !scope_ok(scope))
        oauth_error(req, v, "invalid_grant",
                    "Invalid JWT: scope does not allow firebase.messaging");
    else if (!cJSON_IsNumber(iat) || !cJSON_IsNumber(exp) ||
             exp->valuedouble - iat->valuedouble > 3600 ||
             exp->valuedouble <= iat->valuedouble ||
             exp->valuedouble <= (double)now ||
             iat->valuedouble > (double)(now + IAT_SKEW_S))
        oauth_error(req, v, "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token (60 "
                    "minutes) and in a reasonable timeframe. Check your iat "
                    "and exp values in the JWT claim.");
    else
        v->status = 200;
    mock_jwt_release(&jwt);
    if (v->status != 200)
        return;
    is = &f->issued[f->issued_next];
    f->issued_next = (f->issued_next + 1) % MAX_ISSUED;
    if (f->nissued < MAX_ISSUED)
        f->nissued++;
    f->issued_total++;
    {
        char id[37];
        mock_uuid(req->server, id);
        snprintf(is->tok, sizeof(is->tok), "ya29.mock-%" PRIu64 "-%.8s%.4s",
                 f->issued_total, id, id + 9);
    }
    is->exp_ms = req->ts_us / 1000 + (int64_t)f->ttl_s * 1000;
    is->revoked = false;
    o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "access_token", is->tok);
        cJSON_AddNumberToObject(o, "expires_in", (double)f->ttl_s);
        cJSON_AddStringToObject(o, "token_type", "Bearer");
    }
    respond_json(req, 200, o);
}

/* 1: valid, 0: unknown, -1: expired. */
static int access_token_state(struct fcm *f, const char *tok, int64_t now_ms)
{
    for (int i = 0; i < f->nissued; i++) {
        int k = (f->issued_next - 1 - i + MAX_ISSUED) % MAX_ISSUED;
        struct issued *is = &f->issued[k];
        if (!strcmp(is->tok, tok))
            return is->revoked || is->exp_ms <= now_ms ? -1 : 1;
    }
    return 0;
}

/* ^\d+(\.\d{1,9})?s$ and at most MAX_TTL_S seconds. */
static bool ttl_ok(const char *s)
{
    const char *p = s;
    unsigned long long secs = 0;
    int ndig = 0;
    bool frac = false;

    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        secs = secs * 10 + (unsigned)(*p - '0');
        if (secs > 1000000000000ULL)
            return false;
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++, ndig++)
            frac |= *p != '0';
        if (ndig < 1 || ndig > 9)
            return false;
    }
    if (strcmp(p, "s"))
        return false;
    return secs < MAX_TTL_S || (secs == MAX_TTL_S && !frac);
}

/* Checks that every value of |obj| is a string; returns the bad index. */
static int non_string_value(const cJSON *obj, const cJSON **ret_item)
{
    int i = 0;
    const cJSON *it;

    cJSON_ArrayForEach(it, obj)
    {
        if (!cJSON_IsString(it)) {
            *ret_item = it;
            return i;
        }
        i++;
    }
    return -1;
}

static bool reserved_key(const char *k)
{
    return !strcmp(k, "from") || !strcmp(k, "message_type") ||
           !strncmp(k, "google", 6) || !strncmp(k, "gcm", 3);
}

/*
 * Validates |msg| (the "message" object). Returns NULL when valid, else
 * the error message and *ret_field.
 */
static const char *check_message(const cJSON *msg, char *buf, size_t cap,
                                 const char **ret_field)
{
    static char field[128];
    const char *targets[] = {"token", "topic", "condition"};
    const cJSON *data, *android, *it, *bad = NULL;
    int ntargets = 0, idx;
    char *printed;
    size_t size;

    *ret_field = NULL;
    for (int i = 0; i < 3; i++) {
        it = cJSON_GetObjectItemCaseSensitive(msg, targets[i]);
        if (!it)
            continue;
        if (!cJSON_IsString(it) || !*it->valuestring) {
            snprintf(field, sizeof(field), "message.%s", targets[i]);
            *ret_field = field;
            snprintf(buf, cap, "Invalid value at '%s' (TYPE_STRING)", field);
            return buf;
        }
        ntargets++;
    }
    if (ntargets == 0)
        return "Recipient of the message is not set.";
    if (ntargets > 1) {
        *ret_field = "message";
        return "Invalid value at 'message' (oneof), oneof field 'target' is "
               "already set.";
    }
    data = cJSON_GetObjectItemCaseSensitive(msg, "data");
    if (data) {
        if (!cJSON_IsObject(data)) {
            *ret_field = "message.data";
            return "Invalid value at 'message.data' (type.googleapis.com/"
                   "google.protobuf.Struct)";
        }
        idx = non_string_value(data, &bad);
        if (idx >= 0) {
            char *v = cJSON_PrintUnformatted(bad);
            snprintf(field, sizeof(field), "message.data[%d].value", idx);
            *ret_field = field;
            snprintf(buf, cap, "Invalid value at '%s' (TYPE_STRING), %.64s",
                     field, v ? v : "");
            free(v);
            return buf;
        }
        cJSON_ArrayForEach(it, data)
        {
            if (reserved_key(it->string)) {
                snprintf(buf, cap, "Invalid data payload key: %.64s",
                         it->string);
                *ret_field = "message.data";
                return buf;
            }
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(msg, "notification");
    if (it && !cJSON_IsObject(it)) {
        *ret_field = "message.notification";
        return "Invalid value at 'message.notification'";
    }
    android = cJSON_GetObjectItemCaseSensitive(msg, "android");
    if (android) {
        if (!cJSON_IsObject(android)) {
            *ret_field = "message.android";
            return "Invalid value at 'message.android'";
        }
        it = cJSON_GetObjectItemCaseSensitive(android, "ttl");
        if (it && (!cJSON_IsString(it) || !ttl_ok(it->valuestring))) {
            *ret_field = "message.android.ttl";
            return "Invalid value at 'message.android.ttl' "
                   "(type.googleapis.com/google.protobuf.Duration)";
        }
        it = cJSON_GetObjectItemCaseSensitive(android, "priority");
        if (it &&
            (!cJSON_IsString(it) || (strcasecmp(it->valuestring, "HIGH") &&
                                     strcasecmp(it->valuestring, "NORMAL")))) {
            *ret_field = "message.android.priority";
            return "Invalid value at 'message.android.priority' "
                   "(type.googleapis.com/"
                   "google.firebase.fcm.v1.AndroidMessagePriority)";
        }
        it = cJSON_GetObjectItemCaseSensitive(android, "collapse_key");
        if (it && !cJSON_IsString(it)) {
            *ret_field = "message.android.collapse_key";
            return "Invalid value at 'message.android.collapse_key' "
                   "(TYPE_STRING)";
        }
        it = cJSON_GetObjectItemCaseSensitive(android, "notification");
        if (it && !cJSON_IsObject(it)) {
            *ret_field = "message.android.notification";
            return "Invalid value at 'message.android.notification'";
        }
        it = cJSON_GetObjectItemCaseSensitive(android, "data");
        if (it && (!cJSON_IsObject(it) || non_string_value(it, &bad) >= 0)) {
            *ret_field = "message.android.data";
            return "Invalid value at 'message.android.data' (TYPE_STRING)";
        }
    }
    printed = cJSON_PrintUnformatted(msg);
    size = printed ? strlen(printed) : 0;
    free(printed);
    if (size > 4096)
        return "Message is too big. The maximum is 4096 bytes.";
    return NULL;
}

static void handle_send(struct fcm *f, struct mock_req *req, struct verdict *v,
                        const char *project)
{
    const char *auth, *fault_reason = NULL, *err, *field;
    char buf[512];
    const cJSON *msg, *tok, *it;
    int fault, st;

    f->sends++;
    fault = mock_server_fault(req->server, &fault_reason);
    if (req->body_len && !req->body_overflow)
        v->body = cJSON_ParseWithLength(req->body, req->body_len);
    if (fault) {
        snprintf(buf, sizeof(buf), "injected fault %d", fault);
        google_error(req, v, fault, fault_reason, buf, NULL);
        goto out;
    }
    auth = mock_req_header(req, "authorization", NULL);
    if (!auth || strncasecmp(auth, "bearer ", 7) || !auth[7]) {
        google_error(req, v, 401, NULL,
                     "Request is missing required authentication credential. "
                     "Expected OAuth 2 access token, login cookie or other "
                     "valid authentication credential.",
                     NULL);
        goto out;
    }
    st = access_token_state(f, auth + 7, req->ts_us / 1000);
    if (st <= 0) {
        google_error(req, v, 401, NULL,
                     "Request had invalid authentication credentials. "
                     "Expected OAuth 2 access token, login cookie or other "
                     "valid authentication credential.",
                     NULL);
        goto out;
    }
    if (strcmp(project, f->project)) {
        snprintf(buf, sizeof(buf),
                 "Permission 'cloudmessaging.messages.create' denied on "
                 "resource '//cloudresourcemanager.googleapis.com/projects/"
                 "%.64s' (or it may not exist).",
                 project);
        google_error(req, v, 403, NULL, buf, NULL);
        goto out;
    }
    if (req->body_overflow || !v->body || !cJSON_IsObject(v->body)) {
        google_error(req, v, 400, "INVALID_ARGUMENT",
                     "Invalid JSON payload received.", "");
        goto out;
    }
    cJSON_ArrayForEach(it, v->body)
    {
        if (strcmp(it->string, "message") &&
            strcmp(it->string, "validate_only") &&
            strcmp(it->string, "validateOnly")) {
            snprintf(buf, sizeof(buf),
                     "Invalid JSON payload received. Unknown name \"%.64s\": "
                     "Cannot find field.",
                     it->string);
            google_error(req, v, 400, "INVALID_ARGUMENT", buf, "");
            goto out;
        }
    }
    msg = cJSON_GetObjectItemCaseSensitive(v->body, "message");
    if (!cJSON_IsObject(msg)) {
        google_error(req, v, 400, "INVALID_ARGUMENT",
                     "Invalid value at 'message'", "message");
        goto out;
    }
    err = check_message(msg, buf, sizeof(buf), &field);
    if (err) {
        google_error(req, v, 400, "INVALID_ARGUMENT", err, field);
        goto out;
    }
    tok = cJSON_GetObjectItemCaseSensitive(msg, "token");
    if (cJSON_IsString(tok) &&
        listed(f->invalid, f->ninvalid, tok->valuestring)) {
        google_error(req, v, 400, "INVALID_ARGUMENT",
                     "The registration token is not a valid FCM registration "
                     "token",
                     "message.token");
        goto out;
    }
    if (cJSON_IsString(tok) && listed(f->unreg, f->nunreg, tok->valuestring)) {
        google_error(req, v, 404, "UNREGISTERED",
                     "Requested entity was not found.", NULL);
        goto out;
    }
    if (cJSON_IsString(tok) &&
        listed(f->mismatch, f->nmismatch, tok->valuestring)) {
        google_error(req, v, 403, "SENDER_ID_MISMATCH", "SenderId mismatch",
                     NULL);
        goto out;
    }
    {
        char id[37];
        int n;
        mock_uuid(req->server, id);
        n = snprintf(buf, sizeof(buf),
                     "{\"name\":\"projects/%s/messages/0:%" PRId64
                     "%%%.8s%.4s\"}",
                     f->project, req->ts_us / 1000, id, id + 9);
        mock_req_add_header(req, "content-type",
                            "application/json; charset=UTF-8");
        mock_req_respond(req, 200, buf, (size_t)n);
        v->status = 200;
    }
out:
    if (f->expire_after && f->sends == f->expire_after) {
        /* Every token issued so far expires now; later ones are fine. */
        for (int i = 0; i < f->nissued; i++)
            f->issued[i].revoked = true;
        f->expirations++;
    }
}

static void record(struct mock_req *req, struct verdict *v)
{
    cJSON *o = cJSON_CreateObject(), *msg;
    const cJSON *tok = NULL;

    if (!o)
        return;
    cJSON_AddNumberToObject(o, "conn", (double)req->conn_id);
    cJSON_AddNumberToObject(o, "stream", req->stream_id);
    cJSON_AddNumberToObject(o, "ts_ms", (double)req->ts_us / 1000.0);
    cJSON_AddStringToObject(o, "method", req->method);
    cJSON_AddStringToObject(o, "path", req->path);
    msg = v->body ? cJSON_GetObjectItemCaseSensitive(v->body, "message") : NULL;
    if (msg)
        tok = cJSON_GetObjectItemCaseSensitive(msg, "token");
    if (cJSON_IsString(tok))
        cJSON_AddStringToObject(o, "token", tok->valuestring);
    else
        cJSON_AddNullToObject(o, "token");
    cJSON_AddNumberToObject(o, "status", req->status);
    if (req->status != 200 && v->error)
        cJSON_AddStringToObject(o, "error", v->error);
    else
        cJSON_AddNullToObject(o, "error");
    mock_req_record_json(req, o, v->body);
}

static void handle(void *ctx, struct mock_req *req)
{
    struct fcm *f = ctx;
    struct verdict v = {0};
    static const char pfx[] = "/v1/projects/", sfx[] = "/messages:send";
    char project[128];

    if (!strcmp(req->path, "/token")) {
        handle_token(f, req, &v);
    } else if (!strncmp(req->path, pfx, sizeof(pfx) - 1)) {
        const char *p = req->path + sizeof(pfx) - 1;
        const char *slash = strchr(p, '/');
        if (!slash || strcmp(slash, sfx) || slash == p ||
            (size_t)(slash - p) >= sizeof(project) ||
            strcmp(req->method, "POST")) {
            google_error(req, &v, 404, NULL, "Requested entity was not found.",
                         NULL);
        } else {
            memcpy(project, p, (size_t)(slash - p));
            project[slash - p] = '\0';
            handle_send(f, req, &v, project);
        }
    } else {
        google_error(req, &v, 404, NULL, "Requested entity was not found.",
                     NULL);
    }
    if (mock_server_recording(req->server)) {
        if (!v.body && req->body_len && !req->body_overflow &&
            strcmp(req->path, "/token"))
            v.body = cJSON_ParseWithLength(req->body, req->body_len);
        record(req, &v);
    }
    cJSON_Delete(v.body);
}

static int stats(void *ctx, char *buf, size_t len)
{
    struct fcm *f = ctx;
    int n =
        snprintf(buf, len,
                 ",\"token_requests\":%" PRIu64 ",\"tokens_issued\":%" PRIu64
                 ",\"sends\":%" PRIu64 ",\"token_expirations\":%" PRIu64,
                 f->token_requests, f->issued_total, f->sends, f->expirations);
    return n > 0 && (size_t)n < len ? n : 0;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: mock_fcm [options]\n%s"
        "  --service-account-pub PUB.pem  key verifying the assertions\n"
        "  --client-email EMAIL        expected iss of the assertion\n"
        "  --project ID                expected project\n"
        "  --token-ttl-s N             access token lifetime (3600)\n"
        "  --expire-tokens-after N     after N sends, expire all tokens "
        "issued so far\n"
        "  --unregistered TOKEN        404 UNREGISTERED (repeatable)\n"
        "  --invalid-token TOKEN       400 INVALID_ARGUMENT: not a valid\n"
        "                              FCM registration token (repeatable)\n"
        "  --sender-mismatch TOKEN     403 SENDER_ID_MISMATCH "
        "(repeatable)\n",
        mock_opts_usage);
}

int main(int argc, char **argv)
{
    static struct fcm f;
    struct mock_opts o;
    struct mock_app app = {"mock_fcm", &f, handle, stats};
    const char *pub = NULL;
    int rc = 2;

    mock_opts_init(&o, "mock_fcm");
    f.ttl_s = 3600;
    f.client_email = "pushgw@pushgw-test.iam.gserviceaccount.com";
    f.project = "pushgw-test";
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        char *end;
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            usage();
            rc = 0;
            goto out;
        }
        if (val) {
            r = 2;
            if (!strcmp(name, "--service-account-pub"))
                pub = val;
            else if (!strcmp(name, "--client-email"))
                f.client_email = val;
            else if (!strcmp(name, "--project"))
                f.project = val;
            else if (!strcmp(name, "--token-ttl-s")) {
                f.ttl_s = strtol(val, &end, 10);
                if (*end || f.ttl_s <= 0)
                    r = -1;
            } else if (!strcmp(name, "--expire-tokens-after")) {
                f.expire_after = strtoull(val, &end, 10);
                if (*end || !f.expire_after)
                    r = -1;
            } else if (!strcmp(name, "--unregistered")) {
                if (f.nunreg >= MAX_TOKENS)
                    r = -1;
                else
                    f.unreg[f.nunreg++] = val;
            } else if (!strcmp(name, "--invalid-token")) {
                if (f.ninvalid >= MAX_TOKENS)
                    r = -1;
                else
                    f.invalid[f.ninvalid++] = val;
            } else if (!strcmp(name, "--sender-mismatch")) {
                if (f.nmismatch >= MAX_TOKENS)
                    r = -1;
                else
                    f.mismatch[f.nmismatch++] = val;
            } else
                r = 0;
        }
        if (r == 0)
            r = mock_opts_parse(&o, name, val);
        if (r <= 0) {
            fprintf(stderr, "mock_fcm: %s option '%s'\n",
                    r == 0 ? "unknown" : "bad value for", name);
            usage();
            goto out;
        }
        i += r - 1;
    }
    if (!pub) {
        fprintf(stderr, "mock_fcm: --service-account-pub is required\n");
        goto out;
    }
    f.pub = mock_pem_load_pub(pub);
    if (!f.pub || EVP_PKEY_base_id(f.pub) != EVP_PKEY_RSA) {
        fprintf(stderr, "mock_fcm: cannot load RSA public key '%s'\n", pub);
        goto out;
    }
    rc = mock_server_run(&o, &app);
out:
    EVP_PKEY_free(f.pub);
    return rc;
}
