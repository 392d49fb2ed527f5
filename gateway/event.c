/* The receiversOffline event and the checked JSON reader (see event.h). */
#include "event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define DEFAULT_MAX_BODY_BYTES 1048576
#define DEFAULT_MAX_PEERS 10000

void pgw_event_json_limits_default(struct pgw_json_limits *ret_lim)
{
    ret_lim->max_depth = PGW_JSON_MAX_DEPTH;
    ret_lim->max_array_items = PGW_JSON_MAX_ARRAY_ITEMS;
    ret_lim->max_string_bytes = PGW_JSON_MAX_STRING_BYTES;
}

/*
 * Length of the UTF-8 sequence starting at |s| (|len| bytes left), or 0 when
 * it is invalid: overlong, surrogate, above U+10FFFF, truncated.
 */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        if (len < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && s[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && s[1] >= 0xA0) /* surrogates */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
            (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && s[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

bool pgw_event_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t pgw_event_json_escaped_len(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
            c == '\r' || c == '\t')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n += 1;
    }
    return n;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at |p|; -1 when they are not. */
static long hex4(const unsigned char *p, size_t left)
{
    long v = 0;

    if (left < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/*
 * The raw-text checks cJSON does not make. Structure errors (missing
 * commas...) are left to cJSON; this only guarantees that what cJSON sees
 * is UTF-8 without NUL escapes and within the caps.
 */
static int prescan(const unsigned char *p, size_t len,
                   const struct pgw_json_limits *lim, size_t *ret_offset,
                   const char **ret_why)
{
    size_t items[PGW_JSON_MAX_DEPTH + 1];
    bool is_array[PGW_JSON_MAX_DEPTH + 1];
    bool empty[PGW_JSON_MAX_DEPTH + 1];
    int depth = 0;
    int max_depth = lim->max_depth;
    size_t i = 0;

    if (max_depth > PGW_JSON_MAX_DEPTH || max_depth < 1)
        max_depth = PGW_JSON_MAX_DEPTH;
    while (i < len) {
        unsigned char c = p[i];

        if (c == '"') {
            size_t start = ++i;
            for (;;) {
                if (i >= len) {
                    *ret_offset = start - 1;
                    *ret_why = "unterminated string";
                    return PGW_ERR_INVAL;
                }
                c = p[i];
                if (c == '"')
                    break;
                if (c < 0x20) {
                    *ret_offset = i;
                    *ret_why = "control character in string";
                    return PGW_ERR_INVAL;
                }
                if (c == '\\') {
                    if (i + 1 >= len) {
                        *ret_offset = i;
                        *ret_why = "unterminated string";
                        return PGW_ERR_INVAL;
                    }
                    if (p[i + 1] == 'u') {
                        long v = hex4(p + i + 2, len - i - 2);
                        if (v < 0) {
                            *ret_offset = i;
                            *ret_why = "invalid \\u escape";
                            return PGW_ERR_INVAL;
                        }
                        if (v == 0) {
                            *ret_offset = i;
                            *ret_why = "\\u0000 is not allowed";
                            return PGW_ERR_INVAL;
                        }
                        i += 6;
                    } else {
                        i += 2;
                    }
                    continue;
                }
                size_t n = utf8_seq(p + i, len - i);
                if (n == 0) {
                    *ret_offset = i;
                    *ret_why = "invalid UTF-8";
                    return PGW_ERR_INVAL;
                }
                i += n;
            }
            if (i - start > lim->max_string_bytes) {
                *ret_offset = start - 1;
                *ret_why = "string too long";
                return PGW_ERR_INVAL;
            }
            i++; /* closing quote */
            if (depth > 0 && empty[depth]) {
                empty[depth] = false;
                items[depth] = 1;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth > 0 && empty[depth]) {
                empty[depth] = false;
                items[depth] = 1;
            }
            if (depth >= max_depth) {
                *ret_offset = i;
                *ret_why = "nested too deeply";
                return PGW_ERR_INVAL;
            }
            depth++;
            is_array[depth] = c == '[';
            empty[depth] = true;
            items[depth] = 0;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',') {
            if (depth > 0 && is_array[depth] &&
                ++items[depth] > lim->max_array_items) {
                *ret_offset = i;
                *ret_why = "array too large";
                return PGW_ERR_INVAL;
            }
        } else if (c >= 0x80 || c == 0) {
            *ret_offset = i;
            *ret_why = c == 0 ? "NUL byte" : "invalid character";
            return PGW_ERR_INVAL;
        } else if (depth > 0 && empty[depth] && c != ' ' && c != '\t' &&
                   c != '\n' && c != '\r') {
            empty[depth] = false;
            items[depth] = 1;
        }
        i++;
    }
    return 0;
}

int pgw_event_json_parse(const char *buf, size_t len,
                         const struct pgw_json_limits *lim, cJSON **ret_json,
                         size_t *ret_offset, const char **ret_why)
{
    struct pgw_json_limits dlim;
    const char *end = NULL;
    size_t off = 0;
    const char *why = NULL;
    cJSON *json = NULL;
    int rc;

    if (!lim) {
        pgw_event_json_limits_default(&dlim);
        lim = &dlim;
    }
    rc = prescan((const unsigned char *)buf, len, lim, &off, &why);
    if (rc < 0)
        goto out;
    json = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!json) {
        /* cJSON reports OOM and syntax errors alike; the text was checked,
         * so this is almost always a syntax error. */
        off = end && end >= buf ? (size_t)(end - buf) : 0;
        why = "invalid JSON";
        rc = PGW_ERR_INVAL;
        goto out;
    }
    off = (size_t)(end - buf);
    while (off < len && (buf[off] == ' ' || buf[off] == '\t' ||
                         buf[off] == '\n' || buf[off] == '\r'))
        off++;
    if (off < len) {
        why = "trailing characters after JSON";
        rc = PGW_ERR_INVAL;
        goto out;
    }
    *ret_json = json;
    json = NULL;
    rc = 0;
out:
    cJSON_Delete(json);
    if (rc < 0) {
        if (off > len)
            off = len;
        if (ret_offset)
            *ret_offset = off;
        if (ret_why)
            *ret_why = why;
    }
    return rc;
}

void pgw_event_limits_from_config(const struct pgw_config *cfg,
                                  struct pgw_event_limits *ret_lim)
{
    ret_lim->max_peers = DEFAULT_MAX_PEERS;
    ret_lim->max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    if (cfg) {
        if (cfg->server.max_peers_per_event > 0)
            ret_lim->max_peers = (size_t)cfg->server.max_peers_per_event;
        if (cfg->server.max_body_bytes > 0)
            ret_lim->max_body_bytes = (size_t)cfg->server.max_body_bytes;
    }
}

/* ---- peer sets ---- */

void pgw_event_peerset_init(struct pgw_event_peerset *self)
{
    memset(self, 0, sizeof(*self));
}

void pgw_event_peerset_release(struct pgw_event_peerset *self)
{
    free(self->slots);
    memset(self, 0, sizeof(*self));
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t peerset_find(const struct pgw_event_peerset *self,
                           const char *name)
{
    size_t mask = self->cap - 1;
    size_t i = (size_t)fnv1a(name) & mask;

    while (self->slots[i] && strcmp(self->slots[i], name) != 0)
        i = (i + 1) & mask;
    return i;
}

static int peerset_grow(struct pgw_event_peerset *self)
{
    size_t ncap = self->cap ? self->cap * 2 : 16;
    struct pgw_event_peerset n = {NULL, ncap, 0};

    n.slots = calloc(ncap, sizeof(*n.slots));
    if (!n.slots)
        return PGW_ERR_NOMEM;
    for (size_t i = 0; i < self->cap; i++) {
        if (self->slots[i]) {
            n.slots[peerset_find(&n, self->slots[i])] = self->slots[i];
            n.n++;
        }
    }
    free(self->slots);
    *self = n;
    return 0;
}

int pgw_event_peerset_add(struct pgw_event_peerset *self, const char *name)
{
    size_t i;

    if ((self->n + 1) * 2 > self->cap && peerset_grow(self) < 0)
        return PGW_ERR_NOMEM;
    i = peerset_find(self, name);
    if (self->slots[i])
        return 0;
    self->slots[i] = name;
    self->n++;
    return 1;
}

bool pgw_event_peerset_has(const struct pgw_event_peerset *self,
                           const char *name)
{
    if (self->cap == 0)
        return false;
    return self->slots[peerset_find(self, name)] != NULL;
}

/* ---- the event ---- */

static int fail(struct pgw_event_error *err, const char *field,
                const char *reason, int rc)
{
    if (err) {
        snprintf(err->field, sizeof(err->field), "%s", field);
        snprintf(err->reason, sizeof(err->reason), "%s", reason);
    }
    return rc;
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void pgw_event_free(struct pgw_event *ev)
{
    if (!ev)
        return;
    free(ev->from_peer);
    free(ev->conv_id);
    free_strv(ev->offline_peers, ev->n_offline_peers);
    free(ev->content);
    free_strv(ev->mention_offline_peers, ev->n_mention_offline_peers);
    cJSON_Delete(ev->push_data);
    free(ev->msg_id);
    free_strv(ev->muted_peers, ev->n_muted_peers);
    free(ev);
}

/* A field that is absent or null counts as absent. */
static const cJSON *get_field(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsNull(it) ? NULL : it;
}

/*
 * Copies the string |it| named |field| into |*ret|: a non-empty string
 * (when |nonempty|) of at most |max| bytes.
 */
static int get_string(const cJSON *it, const char *field, size_t max,
                      bool nonempty, char **ret, struct pgw_event_error *err)
{
    size_t n;

    if (!cJSON_IsString(it) || !it->valuestring)
        return fail(err, field, "must be a string", PGW_ERR_INVAL);
    n = strlen(it->valuestring);
    if (nonempty && n == 0)
        return fail(err, field, "must not be empty", PGW_ERR_INVAL);
    if (n > max) {
        char why[64];
        snprintf(why, sizeof(why), "longer than %zu bytes", max);
        return fail(err, field, why, PGW_ERR_INVAL);
    }
    *ret = strdup(it->valuestring);
    return *ret ? 0 : PGW_ERR_NOMEM;
}

/*
 * Copies the array of peer names |arr| named |field| into |*ret_v|,
 * |*ret_n| with duplicates removed; at most |max| distinct entries.
 */
static int get_peers(const cJSON *arr, const char *field, size_t max,
                     char ***ret_v, size_t *ret_n, struct pgw_event_error *err)
{
    struct pgw_event_peerset set;
    char **v = NULL;
    size_t n = 0, total;
    const cJSON *it;
    int rc = 0;

    pgw_event_peerset_init(&set);
    if (!cJSON_IsArray(arr))
        return fail(err, field, "must be an array of strings", PGW_ERR_INVAL);
    total = (size_t)cJSON_GetArraySize(arr);
    if (total > max) {
        char why[80];
        snprintf(why, sizeof(why), "more than %zu peers", max);
        return fail(err, field, why, PGW_ERR_INVAL);
    }
    v = calloc(total ? total : 1, sizeof(*v));
    if (!v)
        return PGW_ERR_NOMEM;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || !it->valuestring) {
            rc = fail(err, field, "must be an array of strings", PGW_ERR_INVAL);
            goto out;
        }
        size_t len = strlen(it->valuestring);
        if (len == 0 || len > PGW_EVENT_MAX_ID_BYTES) {
            char why[80];
            snprintf(why, sizeof(why), "peer names must be 1 to %d bytes long",
                     PGW_EVENT_MAX_ID_BYTES);
            rc = fail(err, field, why, PGW_ERR_INVAL);
            goto out;
        }
        rc = pgw_event_peerset_add(&set, it->valuestring);
        if (rc < 0)
            goto out;
        if (rc == 0)
            continue; /* duplicate */
        v[n] = strdup(it->valuestring);
        if (!v[n]) {
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    *ret_v = v;
    *ret_n = n;
    v = NULL;
    rc = 0;
out:
    free_strv(v, n);
    pgw_event_peerset_release(&set);
    return rc;
}

/* pushData: an object, or a string holding a JSON object. */
static int get_push_data(const cJSON *it, cJSON **ret,
                         struct pgw_event_error *err)
{
    cJSON *obj = NULL;
    int rc;

    if (cJSON_IsObject(it)) {
        obj = cJSON_Duplicate(it, true);
        if (!obj)
            return PGW_ERR_NOMEM;
        *ret = obj;
        return 0;
    }
    if (!cJSON_IsString(it) || !it->valuestring)
        return fail(err, "pushData",
                    "must be an object or a string holding a JSON object",
                    PGW_ERR_INVAL);
    rc = pgw_event_json_parse(it->valuestring, strlen(it->valuestring), NULL,
                              &obj, NULL, NULL);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0 || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return fail(err, "pushData",
                    "must be an object or a string holding a JSON object",
                    PGW_ERR_INVAL);
    }
    *ret = obj;
    return 0;
}

int pgw_event_from_json(const cJSON *obj, const struct pgw_event_limits *lim,
                        struct pgw_event **ret_ev,
                        struct pgw_event_error *ret_err)
{
    struct pgw_event_limits dlim;
    struct pgw_event *ev = NULL;
    const cJSON *it;
    int rc;

    if (!lim) {
        pgw_event_limits_from_config(NULL, &dlim);
        lim = &dlim;
    }
    if (!cJSON_IsObject(obj))
        return fail(ret_err, "", "the event must be a JSON object",
                    PGW_ERR_INVAL);
    ev = calloc(1, sizeof(*ev));
    if (!ev)
        return PGW_ERR_NOMEM;

    it = get_field(obj, "fromPeer");
    if (!it) {
        rc = fail(ret_err, "fromPeer", "is required", PGW_ERR_INVAL);
        goto out;
    }
    rc = get_string(it, "fromPeer", PGW_EVENT_MAX_ID_BYTES, true,
                    &ev->from_peer, ret_err);
    if (rc < 0)
        goto out;

    it = get_field(obj, "convId");
    if (!it) {
        rc = fail(ret_err, "convId", "is required", PGW_ERR_INVAL);
        goto out;
    }
    rc = get_string(it, "convId", PGW_EVENT_MAX_ID_BYTES, true, &ev->conv_id,
                    ret_err);
    if (rc < 0)
        goto out;

    it = get_field(obj, "offlinePeers");
    if (!it) {
        rc = fail(ret_err, "offlinePeers", "is required", PGW_ERR_INVAL);
        goto out;
    }
    rc = get_peers(it, "offlinePeers", lim->max_peers, &ev->offline_peers,
                   &ev->n_offline_peers, ret_err);
    if (rc < 0)
        goto out;
    if (ev->n_offline_peers == 0) {
        rc = fail(ret_err, "offlinePeers", "must not be empty", PGW_ERR_INVAL);
        goto out;
    }

    it = get_field(obj, "timestamp");
    if (!it) {
        rc = fail(ret_err, "timestamp", "is required", PGW_ERR_INVAL);
        goto out;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
        it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble > (double)PGW_EVENT_MAX_TIMESTAMP) {
        rc = fail(ret_err, "timestamp",
                  "must be an integer number of milliseconds since the epoch",
                  PGW_ERR_INVAL);
        goto out;
    }
    ev->timestamp_ms = (int64_t)it->valuedouble;

    it = get_field(obj, "content");
    if (it) {
        rc = get_string(it, "content", lim->max_body_bytes, false, &ev->content,
                        ret_err);
        if (rc < 0)
            goto out;
    }

    it = get_field(obj, "mentionAll");
    if (it) {
        if (!cJSON_IsBool(it)) {
            rc =
                fail(ret_err, "mentionAll", "must be a boolean", PGW_ERR_INVAL);
            goto out;
        }
        ev->mention_all = cJSON_IsTrue(it);
    }

    it = get_field(obj, "mentionOfflinePeers");
    if (it) {
        rc = get_peers(it, "mentionOfflinePeers", lim->max_peers,
                       &ev->mention_offline_peers, &ev->n_mention_offline_peers,
                       ret_err);
        if (rc < 0)
            goto out;
    }

    it = get_field(obj, "pushData");
    if (it) {
        rc = get_push_data(it, &ev->push_data, ret_err);
        if (rc < 0)
            goto out;
    }

    it = get_field(obj, "msgId");
    if (it) {
        rc = get_string(it, "msgId", PGW_EVENT_MAX_MSGID_BYTES, true,
                        &ev->msg_id, ret_err);
        if (rc < 0)
            goto out;
    }

    it = get_field(obj, "mutedPeers");
    if (it) {
        rc = get_peers(it, "mutedPeers", lim->max_peers, &ev->muted_peers,
                       &ev->n_muted_peers, ret_err);
        if (rc < 0)
            goto out;
    }

    *ret_ev = ev;
    ev = NULL;
    rc = 0;
out:
    pgw_event_free(ev);
    return rc;
}

int pgw_event_parse(const char *buf, size_t len,
                    const struct pgw_event_limits *lim,
                    struct pgw_event **ret_ev, struct pgw_event_error *ret_err)
{
    struct pgw_event_limits dlim;
    struct pgw_json_limits jlim;
    cJSON *json = NULL;
    size_t off = 0;
    const char *why = NULL;
    int rc;

    if (!lim) {
        pgw_event_limits_from_config(NULL, &dlim);
        lim = &dlim;
    }
    if (len > lim->max_body_bytes)
        return fail(ret_err, "", "body too large", PGW_ERR_TOO_LARGE);
    pgw_event_json_limits_default(&jlim);
    if (lim->max_peers + 1 > jlim.max_array_items)
        jlim.max_array_items = lim->max_peers + 1;
    rc = pgw_event_json_parse(buf, len, &jlim, &json, &off, &why);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0) {
        if (ret_err) {
            ret_err->field[0] = '\0';
            snprintf(ret_err->reason, sizeof(ret_err->reason), "%s at byte %zu",
                     why ? why : "invalid JSON", off);
        }
        return PGW_ERR_INVAL;
    }
    rc = pgw_event_from_json(json, lim, ret_ev, ret_err);
    cJSON_Delete(json);
    return rc;
}

/* Adds |v| (|n| strings) to |obj| as the array |name|. */
static int add_strv(cJSON *obj, const char *name, char *const *v, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(obj, name);

    if (!arr)
        return PGW_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(v[i]);
        if (!s || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            return PGW_ERR_NOMEM;
        }
    }
    return 0;
}

int pgw_event_hook_request(const struct pgw_event *ev, char **ret_body)
{
    cJSON *obj = cJSON_CreateObject();
    char *body = NULL;
    int rc = PGW_ERR_NOMEM;

    if (!obj)
        goto out;
    if (!cJSON_AddStringToObject(obj, "fromPeer", ev->from_peer) ||
        !cJSON_AddStringToObject(obj, "convId", ev->conv_id))
        goto out;
    if (add_strv(obj, "offlinePeers", ev->offline_peers, ev->n_offline_peers) <
        0)
        goto out;
    if (!cJSON_AddStringToObject(obj, "content",
                                 ev->content ? ev->content : ""))
        goto out;
    if (!cJSON_AddNumberToObject(obj, "timestamp", (double)ev->timestamp_ms) ||
        !cJSON_AddBoolToObject(obj, "mentionAll", ev->mention_all))
        goto out;
    if (add_strv(obj, "mentionOfflinePeers", ev->mention_offline_peers,
                 ev->n_mention_offline_peers) < 0)
        goto out;
    body = cJSON_PrintUnformatted(obj);
    if (!body)
        goto out;
    *ret_body = body;
    rc = 0;
out:
    cJSON_Delete(obj);
    return rc;
}
