/* The receiversOffline event (see event.h). */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util/json.h"

#define DEFAULT_MAX_BODY_BYTES 1048576
#define DEFAULT_MAX_PEERS 10000

void pgw_event_limits_from_config(const struct pgw_config *cfg,
                                  struct pgw_event_limits *ret_lim)
{
    ret_lim->max_peers = DEFAULT_MAX_PEERS;
    ret_lim->max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    ret_lim->now_ms = 0;
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

/*
 * Copies the string member |field| of |obj| into |*ret|: a string (non-empty
 * with PGW_JSON_NONEMPTY) of at most |max| bytes. Absent is not an error
 * unless PGW_JSON_REQUIRED (|*ret| stays NULL).
 */
static int copy_string(const cJSON *obj, const char *field, unsigned flags,
                       size_t max, char **ret, struct pgw_json_error *err)
{
    const char *s = NULL;
    int rc = pgw_json_get_string(obj, field, flags, max, &s, err);

    if (rc <= 0)
        return rc;
    *ret = strdup(s);
    return *ret ? 0 : PGW_ERR_NOMEM;
}

/*
 * Copies the array of peer names |arr| named |field| into |*ret_v|,
 * |*ret_n| with duplicates removed; at most |max| distinct entries.
 */
static int get_peers(const cJSON *arr, const char *field, size_t max,
                     char ***ret_v, size_t *ret_n, struct pgw_json_error *err)
{
    struct pgw_event_peerset set;
    char **v = NULL;
    size_t n = 0, total;
    const cJSON *it;
    int rc = 0;

    if (!cJSON_IsArray(arr))
        return pgw_json_fail(err, PGW_ERR_INVAL, field,
                             "must be an array of strings");
    total = (size_t)cJSON_GetArraySize(arr);
    if (total > max)
        return pgw_json_fail(err, PGW_ERR_INVAL, field, "more than %zu peers",
                             max);
    v = calloc(total ? total : 1, sizeof(*v));
    if (!v)
        return PGW_ERR_NOMEM;
    pgw_event_peerset_init(&set);
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || !it->valuestring) {
            rc = pgw_json_fail(err, PGW_ERR_INVAL, field,
                               "must be an array of strings");
            goto out;
        }
        size_t len = strlen(it->valuestring);
        if (len == 0 || len > PGW_EVENT_MAX_ID_BYTES) {
            rc = pgw_json_fail(err, PGW_ERR_INVAL, field,
                               "peer names must be 1 to %d bytes long",
                               PGW_EVENT_MAX_ID_BYTES);
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

/* The optional peer array |field| of |obj|, as get_peers(). */
static int copy_peers(const cJSON *obj, const char *field, size_t max,
                      char ***ret_v, size_t *ret_n, struct pgw_json_error *err)
{
    const cJSON *it = pgw_json_member(obj, field);

    return it ? get_peers(it, field, max, ret_v, ret_n, err) : 0;
}

/*
 * pushData (DESIGN §6): an object is the content; a string holding a JSON
 * object is that object; any other string is {"alert": string} (the
 * guide's Java example sends plain text). Any other type is no content:
 * |ev->push_data_ignored| names it for the caller's warning, and the
 * template applies. pushData never makes the event fail.
 */
int pgw_event_content_from_text(const char *text, cJSON **ret)
{
    cJSON *obj = NULL;
    int rc = pgw_json_parse(text, strlen(text), NULL, &obj, NULL, NULL);

    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc == 0 && cJSON_IsObject(obj)) {
        *ret = obj;
        return 0;
    }
    cJSON_Delete(obj);
    obj = cJSON_CreateObject();
    if (!obj || !cJSON_AddStringToObject(obj, "alert", text)) {
        cJSON_Delete(obj);
        return PGW_ERR_NOMEM;
    }
    *ret = obj;
    return 0;
}

static int get_push_data(const cJSON *it, struct pgw_event *ev)
{
    cJSON *obj = NULL;

    if (cJSON_IsObject(it)) {
        obj = cJSON_Duplicate(it, true);
        if (!obj)
            return PGW_ERR_NOMEM;
        ev->push_data = obj;
        return 0;
    }
    if (!cJSON_IsString(it) || !it->valuestring) {
        ev->push_data_ignored = cJSON_IsNumber(it)  ? "a number"
                                : cJSON_IsArray(it) ? "an array"
                                : cJSON_IsBool(it)  ? "a boolean"
                                                    : "not an object";
        return 0;
    }
    return pgw_event_content_from_text(it->valuestring, &ev->push_data);
}

/* The fields of the event |obj| into |ev|, in the order of DESIGN §6. */
static int read_fields(const cJSON *obj, const struct pgw_event_limits *lim,
                       struct pgw_event *ev, struct pgw_json_error *err)
{
    const cJSON *it;
    int64_t ts;
    int rc;

    rc = copy_string(obj, "fromPeer", PGW_JSON_REQUIRED | PGW_JSON_NONEMPTY,
                     PGW_EVENT_MAX_ID_BYTES, &ev->from_peer, err);
    if (rc < 0)
        return rc;
    rc = copy_string(obj, "convId", PGW_JSON_REQUIRED | PGW_JSON_NONEMPTY,
                     PGW_EVENT_MAX_ID_BYTES, &ev->conv_id, err);
    if (rc < 0)
        return rc;
    it = pgw_json_member(obj, "offlinePeers");
    if (!it)
        return pgw_json_fail(err, PGW_ERR_INVAL, "offlinePeers", "is required");
    rc = get_peers(it, "offlinePeers", lim->max_peers, &ev->offline_peers,
                   &ev->n_offline_peers, err);
    if (rc < 0)
        return rc;
    if (ev->n_offline_peers == 0)
        return pgw_json_fail(err, PGW_ERR_INVAL, "offlinePeers",
                             "must not be empty");
    it = pgw_json_member(obj, "timestamp");
    if (!it)
        return pgw_json_fail(err, PGW_ERR_INVAL, "timestamp", "is required");
    if (!pgw_json_int_value(it, 0, PGW_EVENT_MAX_TIMESTAMP, &ts))
        return pgw_json_fail(
            err, PGW_ERR_INVAL, "timestamp",
            "must be an integer number of milliseconds since the epoch");
    if (ts < PGW_EVENT_MIN_TIMESTAMP)
        return pgw_json_fail(err, PGW_ERR_INVAL, "timestamp",
                             "must be in milliseconds since the epoch (this "
                             "looks like seconds)");
    if (lim->now_ms > 0 && ts > lim->now_ms + PGW_EVENT_MAX_FUTURE_MS)
        return pgw_json_fail(err, PGW_ERR_INVAL, "timestamp",
                             "is more than a day in the future");
    ev->timestamp_ms = ts;
    rc = copy_string(obj, "content", 0, lim->max_body_bytes, &ev->content, err);
    if (rc < 0)
        return rc;
    rc = pgw_json_get_bool(obj, "mentionAll", 0, &ev->mention_all, err);
    if (rc < 0)
        return rc;
    rc = copy_peers(obj, "mentionOfflinePeers", lim->max_peers,
                    &ev->mention_offline_peers, &ev->n_mention_offline_peers,
                    err);
    if (rc < 0)
        return rc;
    it = pgw_json_member(obj, "pushData");
    if (it) {
        rc = get_push_data(it, ev);
        if (rc < 0)
            return rc;
    }
    rc = copy_string(obj, "msgId", PGW_JSON_NONEMPTY, PGW_EVENT_MAX_MSGID_BYTES,
                     &ev->msg_id, err);
    if (rc < 0)
        return rc;
    return copy_peers(obj, "mutedPeers", lim->max_peers, &ev->muted_peers,
                      &ev->n_muted_peers, err);
}

int pgw_event_from_json(const cJSON *obj, const struct pgw_event_limits *lim,
                        struct pgw_event **ret_ev,
                        struct pgw_json_error *ret_err)
{
    struct pgw_event_limits dlim;
    struct pgw_event *ev = NULL;
    int rc;

    if (!lim) {
        pgw_event_limits_from_config(NULL, &dlim);
        lim = &dlim;
    }
    if (!cJSON_IsObject(obj))
        return pgw_json_fail(ret_err, PGW_ERR_INVAL, "",
                             "the event must be a JSON object");
    ev = calloc(1, sizeof(*ev));
    if (!ev)
        return PGW_ERR_NOMEM;
    rc = read_fields(obj, lim, ev, ret_err);
    if (rc < 0) {
        pgw_event_free(ev);
        return rc;
    }
    *ret_ev = ev;
    return 0;
}

int pgw_event_parse(const char *buf, size_t len,
                    const struct pgw_event_limits *lim,
                    struct pgw_event **ret_ev, struct pgw_json_error *ret_err)
{
    struct pgw_event_limits dlim;
    struct pgw_json_limits jlim;
    cJSON *json = NULL, *push;
    size_t off = 0;
    const char *why = NULL;
    int rc;

    if (!lim) {
        pgw_event_limits_from_config(NULL, &dlim);
        lim = &dlim;
    }
    if (len > lim->max_body_bytes)
        return pgw_json_fail(ret_err, PGW_ERR_TOO_LARGE, "", "body too large");
    pgw_json_limits_default(&jlim);
    if (lim->max_peers + 1 > jlim.max_array_items)
        jlim.max_array_items = lim->max_peers + 1;
    rc = pgw_json_parse(buf, len, &jlim, &json, &off, &why);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0)
        return pgw_json_fail(ret_err, PGW_ERR_INVAL, "", "%s at byte %zu",
                             why ? why : "invalid JSON", off);
    /* The tree is ours: an object pushData is taken out of it and given
     * to the event, not copied and then freed with the rest. The fields
     * are read without it; a second pushData key they may find instead
     * loses to it, as it did when the first one was read. */
    push = cJSON_GetObjectItemCaseSensitive(json, "pushData");
    push = cJSON_IsObject(push) ? cJSON_DetachItemViaPointer(json, push) : NULL;
    rc = pgw_event_from_json(json, lim, ret_ev, ret_err);
    if (rc == 0 && push) {
        cJSON_Delete((*ret_ev)->push_data);
        (*ret_ev)->push_data = push;
        (*ret_ev)->push_data_ignored = NULL;
        push = NULL;
    }
    cJSON_Delete(push);
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
