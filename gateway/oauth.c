/*
 * Service accounts, RS256 assertions and the access token cache. The token
 * source is a small state machine: no token / fetching / have token
 * (possibly renewing in the background) / failed (backing off). Waiters
 * are only ever woken from the curl completion callback, so wait() never
 * calls back synchronously.
 */
#include "oauth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "proxy.h"
#include "util/clock.h"
#include "util/file.h"
#include "util/list.h"

#define MAX_TOKEN_LIFETIME_S 86400
#define FAIL_BACKOFF_INITIAL_MS 1000
#define FAIL_BACKOFF_MAX_MS 60000
#define DEFAULT_TIMEOUT_MS 10000

/* ---- service account ------------------------------------------------- */

void pgw_oauth_sa_free(struct pgw_oauth_sa *sa)
{
    if (!sa)
        return;
    free(sa->path);
    free(sa->client_email);
    free(sa->project_id);
    free(sa->private_key_id);
    free(sa->token_uri);
    EVP_PKEY_free(sa->key);
    free(sa);
}

/* Copies the string field |name| of |root|; problems go to |diag|. */
static int sa_field(const cJSON *root, const char *name, int required,
                    const char *origin, struct pgw_diag *diag, char **ret)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);

    if (!it) {
        if (!required)
            return 0;
        if (diag)
            pgw_diag_add(diag, "service account '%s': field '%s' is missing",
                         origin, name);
        return PGW_ERR_INVAL;
    }
    if (!cJSON_IsString(it) || !it->valuestring || !it->valuestring[0]) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field '%s' must be a "
                         "non-empty string",
                         origin, name);
        return PGW_ERR_INVAL;
    }
    *ret = strdup(it->valuestring);
    return *ret ? 0 : PGW_ERR_NOMEM;
}

static int load_key(const char *pem, const char *origin, struct pgw_diag *diag,
                    EVP_PKEY **ret_key)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    int ret = PGW_ERR_CRYPTO;

    bio = BIO_new_mem_buf(pem, -1);
    if (!bio) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!key) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field 'private_key' is not "
                         "a PEM private key",
                         origin);
        goto out;
    }
    if (!EVP_PKEY_is_a(key, "RSA")) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field 'private_key' is not "
                         "an RSA key (RS256 needs one)",
                         origin);
        goto out;
    }
    if (EVP_PKEY_get_bits(key) < 2048) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field 'private_key' is "
                         "shorter than 2048 bits",
                         origin);
        goto out;
    }
    *ret_key = key;
    key = NULL;
    ret = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    return ret;
}

int pgw_oauth_sa_parse(const char *json, size_t len, const char *origin,
                       struct pgw_diag *diag, struct pgw_oauth_sa **ret_sa)
{
    struct pgw_oauth_sa *sa = NULL;
    cJSON *root = NULL;
    const cJSON *type;
    char *pem = NULL;
    int ret, r;

    if (!json || !ret_sa)
        return PGW_ERR_INVAL;
    if (!origin)
        origin = "";
    if (len > PGW_OAUTH_SA_MAX_BYTES) {
        if (diag)
            pgw_diag_add(diag, "service account '%s': larger than %d bytes",
                         origin, PGW_OAUTH_SA_MAX_BYTES);
        return PGW_ERR_TOO_LARGE;
    }
    root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        if (diag)
            pgw_diag_add(diag, "service account '%s': not a JSON object",
                         origin);
        ret = PGW_ERR_INVAL;
        goto out;
    }
    ret = PGW_ERR_NOMEM;
    sa = calloc(1, sizeof(*sa));
    if (!sa)
        goto out;
    sa->path = strdup(origin);
    if (!sa->path)
        goto out;
    ret = 0;
    type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (type && (!cJSON_IsString(type) ||
                 strcmp(type->valuestring, "service_account") != 0)) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field 'type' is not "
                         "'service_account'",
                         origin);
        ret = PGW_ERR_INVAL;
    }
    /* Check every field so one run reports every problem. */
    r = sa_field(root, "client_email", 1, origin, diag, &sa->client_email);
    if (r && !ret)
        ret = r;
    r = sa_field(root, "project_id", 1, origin, diag, &sa->project_id);
    if (r && !ret)
        ret = r;
    r = sa_field(root, "private_key_id", 0, origin, diag, &sa->private_key_id);
    if (r && !ret)
        ret = r;
    r = sa_field(root, "token_uri", 0, origin, diag, &sa->token_uri);
    if (r && !ret)
        ret = r;
    r = sa_field(root, "private_key", 1, origin, diag, &pem);
    if (r && !ret)
        ret = r;
    if (pem) {
        r = load_key(pem, origin, diag, &sa->key);
        if (r && !ret)
            ret = r;
    }
    if (ret)
        goto out;
    *ret_sa = sa;
    sa = NULL;
out:
    if (pem) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    if (root) {
        /* The key is in the parsed tree too: wipe it before freeing. */
        cJSON *pk = cJSON_GetObjectItemCaseSensitive(root, "private_key");
        if (cJSON_IsString(pk) && pk->valuestring)
            OPENSSL_cleanse(pk->valuestring, strlen(pk->valuestring));
        cJSON_Delete(root);
    }
    if (ret == PGW_ERR_NOMEM && diag)
        pgw_diag_add(diag, "service account '%s': out of memory", origin);
    pgw_oauth_sa_free(sa);
    return ret;
}

int pgw_oauth_sa_load(const char *path, struct pgw_diag *diag,
                      struct pgw_oauth_sa **ret_sa)
{
    char *buf = NULL;
    size_t len = 0;
    int ret;

    if (!path || !ret_sa)
        return PGW_ERR_INVAL;
    ret = pgw_file_read(path, PGW_OAUTH_SA_MAX_BYTES, &buf, &len);
    if (ret == PGW_ERR_IO && diag)
        pgw_diag_add(diag, "service account '%s': cannot open: %s", path,
                     strerror(errno));
    else if (ret == PGW_ERR_TOO_LARGE && diag)
        pgw_diag_add(diag, "service account '%s': larger than %d bytes", path,
                     PGW_OAUTH_SA_MAX_BYTES);
    if (ret != 0)
        return ret;
    ret = pgw_oauth_sa_parse(buf, len, path, diag, ret_sa);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return ret;
}

/* ---- assertion ------------------------------------------------------- */

/* base64url without padding of |len| bytes; malloc'd. */
static char *b64url(const unsigned char *in, size_t len)
{
    size_t n = 4 * ((len + 2) / 3);
    char *out = malloc(n + 1);
    int w;

    if (!out)
        return NULL;
    w = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    if (w < 0) {
        free(out);
        return NULL;
    }
    while (w > 0 && out[w - 1] == '=')
        w--;
    out[w] = '\0';
    for (int i = 0; i < w; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return out;
}

static char *b64url_json(const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    char *out;

    if (!s)
        return NULL;
    out = b64url((const unsigned char *)s, strlen(s));
    cJSON_free(s);
    return out;
}

int pgw_oauth_make_assertion(const struct pgw_oauth_sa *sa, const char *aud,
                             const char *scope, int64_t now_s,
                             int64_t lifetime_s, char **ret_jwt)
{
    cJSON *hdr = NULL, *claims = NULL;
    char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *jwt = NULL;
    unsigned char *sig = NULL;
    size_t sig_len = 0, in_len;
    EVP_MD_CTX *md = NULL;
    int ret = PGW_ERR_NOMEM;

    if (!sa || !sa->key || !sa->client_email || !aud || !*aud || !scope ||
        !*scope || !ret_jwt || now_s <= 0 || lifetime_s < 1 ||
        lifetime_s > PGW_OAUTH_ASSERTION_LIFETIME_S)
        return PGW_ERR_INVAL;

    hdr = cJSON_CreateObject();
    claims = cJSON_CreateObject();
    if (!hdr || !claims || !cJSON_AddStringToObject(hdr, "alg", "RS256") ||
        !cJSON_AddStringToObject(hdr, "typ", "JWT") ||
        (sa->private_key_id &&
         !cJSON_AddStringToObject(hdr, "kid", sa->private_key_id)) ||
        !cJSON_AddStringToObject(claims, "iss", sa->client_email) ||
        !cJSON_AddStringToObject(claims, "scope", scope) ||
        !cJSON_AddStringToObject(claims, "aud", aud) ||
        !cJSON_AddNumberToObject(claims, "iat", (double)now_s) ||
        !cJSON_AddNumberToObject(claims, "exp", (double)(now_s + lifetime_s)))
        goto out;
    h64 = b64url_json(hdr);
    c64 = b64url_json(claims);
    if (!h64 || !c64)
        goto out;
    in_len = strlen(h64) + 1 + strlen(c64);
    input = malloc(in_len + 1);
    if (!input)
        goto out;
    snprintf(input, in_len + 1, "%s.%s", h64, c64);

    ret = PGW_ERR_CRYPTO;
    md = EVP_MD_CTX_new();
    if (!md)
        goto out;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, sa->key) != 1 ||
        EVP_DigestSign(md, NULL, &sig_len, (const unsigned char *)input,
                       in_len) != 1)
        goto out;
    sig = malloc(sig_len);
    if (!sig) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)input,
                       in_len) != 1)
        goto out;
    ret = PGW_ERR_NOMEM;
    s64 = b64url(sig, sig_len);
    if (!s64)
        goto out;
    jwt = malloc(in_len + 1 + strlen(s64) + 1);
    if (!jwt)
        goto out;
    sprintf(jwt, "%s.%s", input, s64);
    *ret_jwt = jwt;
    jwt = NULL;
    ret = 0;
out:
    EVP_MD_CTX_free(md);
    cJSON_Delete(hdr);
    cJSON_Delete(claims);
    free(h64);
    free(c64);
    free(s64);
    free(input);
    free(sig);
    free(jwt);
    return ret;
}

int pgw_oauth_parse_token_response(const char *body, size_t len,
                                   char **ret_token, int64_t *ret_expires_in_s)
{
    cJSON *root = NULL;
    const cJSON *tok, *exp, *type;
    int64_t expires_in = 3600;
    size_t tlen;
    char *copy;
    int ret = PGW_ERR_PROTO;

    if (!body || !ret_token || !ret_expires_in_s ||
        len > PGW_OAUTH_MAX_RESPONSE)
        return PGW_ERR_PROTO;
    root = cJSON_ParseWithLength(body, len);
    if (!root || !cJSON_IsObject(root))
        goto out;
    tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    if (!cJSON_IsString(tok) || !tok->valuestring)
        goto out;
    tlen = strlen(tok->valuestring);
    if (tlen == 0 || tlen > PGW_OAUTH_MAX_TOKEN_LEN)
        goto out;
    /* It goes into a header: visible ASCII only. */
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)tok->valuestring[i];
        if (c < 0x21 || c > 0x7e)
            goto out;
    }
    exp = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    if (exp) {
        if (!cJSON_IsNumber(exp) || exp->valuedouble < 1 ||
            exp->valuedouble > MAX_TOKEN_LIFETIME_S)
            goto out;
        expires_in = (int64_t)exp->valuedouble;
    }
    type = cJSON_GetObjectItemCaseSensitive(root, "token_type");
    if (type &&
        (!cJSON_IsString(type) || strcasecmp(type->valuestring, "Bearer") != 0))
        goto out;
    copy = strdup(tok->valuestring);
    if (!copy) {
        ret = PGW_ERR_NOMEM;
        goto out;
    }
    *ret_token = copy;
    *ret_expires_in_s = expires_in;
    ret = 0;
out:
    cJSON_Delete(root);
    return ret;
}

/* ---- token source ---------------------------------------------------- */

struct waiter {
    pgw_oauth_token_cb cb;
    void *arg;
    struct pgw_list node; /* on pgw_oauth.waiters */
};

struct pgw_oauth {
    struct pgw_curlmulti *cm;
    const struct pgw_oauth_sa *sa;
    char *token_url;
    char *ca_file;
    char *proxy, *proxy_password; /* secrets */
    char *scope;
    long timeout_ms;
    pgw_oauth_clock_fn clock;
    void *clock_arg;

    char *token;
    int64_t renew_at_ms; /* start a background renewal from here */
    int64_t usable_ms;   /* hand it out until here */
    struct pgw_curl_req *inflight;
    struct pgw_list waiters; /* FIFO */
    size_t n_waiters;
    int last_err;
    int64_t fail_until_ms;
    int64_t fail_backoff_ms;
    uint64_t requests;
};

static int64_t real_clock(void *arg)
{
    (void)arg;
    return pgw_clock_wall_ms();
}

static int64_t now_ms(const struct pgw_oauth *self)
{
    return self->clock(self->clock_arg);
}

int pgw_oauth_new(struct pgw_curlmulti *cm, const struct pgw_oauth_sa *sa,
                  const struct pgw_oauth_options *opts,
                  struct pgw_oauth **ret_oauth)
{
    struct pgw_oauth *o = NULL;
    int ret = PGW_ERR_NOMEM;

    if (!cm || !sa || !sa->key || !opts || !opts->token_url ||
        !opts->token_url[0] || opts->timeout_ms < 0 || !ret_oauth)
        return PGW_ERR_INVAL;
    o = calloc(1, sizeof(*o));
    if (!o)
        goto out;
    pgw_list_init(&o->waiters);
    o->cm = cm;
    o->sa = sa;
    o->token_url = strdup(opts->token_url);
    o->scope = strdup(opts->scope ? opts->scope : PGW_OAUTH_FCM_SCOPE);
    if (!o->token_url || !o->scope)
        goto out;
    if (opts->ca_file && opts->ca_file[0]) {
        o->ca_file = strdup(opts->ca_file);
        if (!o->ca_file)
            goto out;
    }
    o->proxy = pgw_strdup0(opts->proxy);
    o->proxy_password = pgw_strdup0(opts->proxy_password);
    if ((opts->proxy && !o->proxy) ||
        (opts->proxy_password && !o->proxy_password))
        goto out;
    o->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    o->clock = opts->clock ? opts->clock : real_clock;
    o->clock_arg = opts->clock_arg;
    *ret_oauth = o;
    o = NULL;
    ret = 0;
out:
    pgw_oauth_free(o);
    return ret;
}

/* Wakes every queued waiter with (|err|, |token|). New waits made from
 * the callbacks go to a fresh queue. */
static void wake_waiters(struct pgw_oauth *self, int err, const char *token)
{
    struct pgw_list queue = PGW_LIST_HEAD_INIT(queue);
    struct pgw_list *node;

    pgw_list_append_all(&queue, &self->waiters);
    self->n_waiters = 0;
    while ((node = pgw_list_pop_front(&queue))) {
        struct waiter *w = pgw_list_entry(node, struct waiter, node);
        pgw_oauth_token_cb cb = w->cb;
        void *arg = w->arg;

        free(w);
        cb(err, token, arg);
    }
}

void pgw_oauth_free(struct pgw_oauth *self)
{
    if (!self)
        return;
    if (self->inflight) {
        pgw_curlmulti_cancel(self->cm, self->inflight);
        self->inflight = NULL;
    }
    wake_waiters(self, PGW_ERR_CLOSED, NULL);
    if (self->token) {
        OPENSSL_cleanse(self->token, strlen(self->token));
        free(self->token);
    }
    free(self->token_url);
    free(self->ca_file);
    pgw_proxy_free_secret(self->proxy);
    pgw_proxy_free_secret(self->proxy_password);
    free(self->scope);
    free(self);
}

/* A short, log-safe description of a token endpoint refusal. */
static void describe_refusal(const struct pgw_curl_response *resp, char *buf,
                             size_t size)
{
    cJSON *root = cJSON_ParseWithLength(resp->body, resp->body_len);
    const cJSON *e =
        root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    const cJSON *d =
        root ? cJSON_GetObjectItemCaseSensitive(root, "error_description")
             : NULL;

    snprintf(
        buf, size, "HTTP %ld%s%.64s%s%.160s", resp->status,
        cJSON_IsString(e) ? ": " : "", cJSON_IsString(e) ? e->valuestring : "",
        cJSON_IsString(d) ? ": " : "", cJSON_IsString(d) ? d->valuestring : "");
    cJSON_Delete(root);
}

/* Fires when the token request ends; may wake (and so run) waiters. */
static void on_token_response(const struct pgw_curl_response *resp, void *arg)
{
    struct pgw_oauth *self = arg;
    char *token = NULL;
    int64_t expires_in = 0, now, margin;
    char why[256];
    int err;

    self->inflight = NULL;
    now = now_ms(self);
    why[0] = '\0';
    err = resp->err;
    if (err == PGW_ERR_CLOSED) {
        wake_waiters(self, err, NULL);
        return;
    }
    if (!err && resp->status != 200) {
        describe_refusal(resp, why, sizeof(why));
        err =
            (resp->status == 400 || resp->status == 401 || resp->status == 403)
                ? PGW_ERR_AUTH
                : PGW_ERR_PROTO;
    } else if (!err) {
        err = pgw_oauth_parse_token_response(resp->body, resp->body_len, &token,
                                             &expires_in);
        if (err)
            snprintf(why, sizeof(why), "malformed token response");
    } else {
        snprintf(why, sizeof(why), "%s", resp->error);
    }
    if (err) {
        self->last_err = err;
        self->fail_backoff_ms = self->fail_backoff_ms
                                    ? self->fail_backoff_ms * 2
                                    : FAIL_BACKOFF_INITIAL_MS;
        if (self->fail_backoff_ms > FAIL_BACKOFF_MAX_MS)
            self->fail_backoff_ms = FAIL_BACKOFF_MAX_MS;
        self->fail_until_ms = now + self->fail_backoff_ms;
        pgw_log_errorf(
            PGW_FIELDS(PGW_LF_STR("account", self->sa->client_email)),
            "could not get an access token from '%s': %s", self->token_url,
            why[0] ? why : pgw_strerror(err));
        wake_waiters(self, err, NULL);
        return;
    }
    self->last_err = 0;
    self->fail_backoff_ms = 0;
    self->fail_until_ms = 0;
    if (self->token) {
        OPENSSL_cleanse(self->token, strlen(self->token));
        free(self->token);
    }
    self->token = token;
    margin = expires_in < 2 * PGW_OAUTH_RENEW_BEFORE_S
                 ? expires_in / 2
                 : PGW_OAUTH_RENEW_BEFORE_S;
    self->renew_at_ms = now + (expires_in - margin) * 1000;
    /* Stop handing it out a little before Google would reject it. */
    self->usable_ms =
        now + (expires_in - (margin / 2 < 30 ? margin / 2 : 30)) * 1000;
    pgw_log_debugf(PGW_FIELDS(PGW_LF_STR("account", self->sa->client_email),
                              PGW_LF_INT("expires_in_s", expires_in)),
                   "new access token");
    wake_waiters(self, 0, self->token);
}

static int start_fetch(struct pgw_oauth *self)
{
    struct pgw_curl_request req;
    static const char *const headers[] = {
        "Content-Type: application/x-www-form-urlencoded",
        "Accept: application/json", NULL};
    char *jwt = NULL, *body = NULL;
    size_t n;
    int ret;

    ret = pgw_oauth_make_assertion(self->sa, self->token_url, self->scope,
                                   now_ms(self) / 1000,
                                   PGW_OAUTH_ASSERTION_LIFETIME_S, &jwt);
    if (ret)
        goto out;
    n = strlen("grant_type=" PGW_OAUTH_GRANT_TYPE "&assertion=") + strlen(jwt) +
        1;
    ret = PGW_ERR_NOMEM;
    body = malloc(n);
    if (!body)
        goto out;
    snprintf(body, n, "grant_type=%s&assertion=%s", PGW_OAUTH_GRANT_TYPE, jwt);
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = self->token_url;
    req.headers = headers;
    req.body = body;
    req.body_len = strlen(body);
    req.timeout_ms = self->timeout_ms;
    req.ca_file = self->ca_file;
    req.proxy = self->proxy;
    req.proxy_password = self->proxy_password;
    req.max_response_bytes = PGW_OAUTH_MAX_RESPONSE;
    ret = pgw_curlmulti_submit(self->cm, &req, on_token_response, self,
                               &self->inflight);
    if (ret)
        goto out;
    self->requests++;
out:
    if (ret)
        pgw_log_errorf(
            PGW_FIELDS(PGW_LF_STR("account", self->sa->client_email)),
            "could not start an access token request to '%s': %s",
            self->token_url, pgw_strerror(ret));
    free(jwt);
    free(body);
    return ret;
}

const char *pgw_oauth_token(struct pgw_oauth *self)
{
    int64_t now;

    if (!self || !self->token)
        return NULL;
    now = now_ms(self);
    if (now >= self->usable_ms)
        return NULL;
    if (now >= self->renew_at_ms && !self->inflight &&
        now >= self->fail_until_ms)
        (void)start_fetch(self);
    return self->token;
}

int pgw_oauth_wait(struct pgw_oauth *self, pgw_oauth_token_cb cb, void *arg)
{
    struct waiter *w;
    int ret;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    if (self->n_waiters >= PGW_OAUTH_MAX_WAITERS)
        return PGW_ERR_BUSY;
    if (!self->inflight) {
        if (self->last_err && now_ms(self) < self->fail_until_ms)
            return self->last_err;
        ret = start_fetch(self);
        if (ret)
            return ret;
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        return PGW_ERR_NOMEM; /* the fetch, if started, still runs */
    w->cb = cb;
    w->arg = arg;
    pgw_list_push_back(&self->waiters, &w->node);
    self->n_waiters++;
    return 0;
}

void pgw_oauth_invalidate(struct pgw_oauth *self, const char *token)
{
    if (!self || !self->token || !token || strcmp(self->token, token) != 0)
        return;
    OPENSSL_cleanse(self->token, strlen(self->token));
    free(self->token);
    self->token = NULL;
}

uint64_t pgw_oauth_requests(const struct pgw_oauth *self)
{
    return self ? self->requests : 0;
}
