/* Resolving the push of an event (see resolve.h). */
#include "resolve.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

/* ---- hook answer ---- */

static bool truthy(const cJSON *it)
{
    if (!it || cJSON_IsNull(it) || cJSON_IsFalse(it))
        return false;
    if (cJSON_IsNumber(it))
        return it->valuedouble != 0 && it->valuedouble == it->valuedouble;
    if (cJSON_IsString(it))
        return it->valuestring && it->valuestring[0] != '\0';
    return true;
}

void pgw_resolve_hook_answer_free(struct pgw_hook_answer *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_offline_peers; i++)
        free(a->offline_peers[i]);
    free(a->offline_peers);
    cJSON_Delete(a->push_message);
    free(a);
}

static int hook_peers(struct pgw_hook_answer *a, const cJSON *arr, size_t max,
                      struct pgw_json_error *err)
{
    struct pgw_event_peerset set;
    size_t total = (size_t)cJSON_GetArraySize(arr);
    const cJSON *it;
    int rc = 0;

    if (total > max)
        return pgw_json_fail(err, PGW_ERR_INVAL, "offlinePeers",
                             "too many peers");
    a->offline_peers = calloc(total ? total : 1, sizeof(char *));
    if (!a->offline_peers)
        return PGW_ERR_NOMEM;
    a->has_offline_peers = true;
    pgw_event_peerset_init(&set);
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || !it->valuestring || !it->valuestring[0] ||
            strlen(it->valuestring) > PGW_EVENT_MAX_ID_BYTES)
            continue;
        rc = pgw_event_peerset_add(&set, it->valuestring);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        a->offline_peers[a->n_offline_peers] = strdup(it->valuestring);
        if (!a->offline_peers[a->n_offline_peers]) {
            rc = PGW_ERR_NOMEM;
            break;
        }
        a->n_offline_peers++;
    }
    pgw_event_peerset_release(&set);
    return rc < 0 ? rc : 0;
}

static int hook_push_message(struct pgw_hook_answer *a, const cJSON *pm,
                             struct pgw_json_error *err)
{
    if (cJSON_IsObject(pm)) {
        a->push_message = cJSON_Duplicate(pm, true);
        return a->push_message ? 0 : PGW_ERR_NOMEM;
    }
    if (!cJSON_IsString(pm) || !pm->valuestring)
        return pgw_json_fail(err, PGW_ERR_INVAL, "pushMessage",
                             "must be a string or an object");
    return pgw_event_content_from_text(pm->valuestring, &a->push_message);
}

int pgw_resolve_parse_hook_answer(const char *buf, size_t len,
                                  const struct pgw_event_limits *lim,
                                  struct pgw_hook_answer **ret_answer,
                                  struct pgw_json_error *ret_err)
{
    struct pgw_event_limits dlim;
    struct pgw_hook_answer *a = NULL;
    cJSON *json = NULL;
    const cJSON *obj, *it;
    size_t off = 0;
    const char *why = NULL;
    int rc;

    if (!lim) {
        pgw_event_limits_from_config(NULL, &dlim);
        lim = &dlim;
    }
    if (len > lim->max_body_bytes)
        return pgw_json_fail(ret_err, PGW_ERR_INVAL, "", "answer too large");
    rc = pgw_json_parse(buf, len, NULL, &json, &off, &why);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0)
        return pgw_json_fail(ret_err, PGW_ERR_INVAL, "", "%s at byte %zu",
                             why ? why : "invalid JSON", off);
    obj = json;
    it = pgw_json_member(json, "result");
    if (cJSON_IsObject(it))
        obj = it;
    if (!cJSON_IsObject(obj)) {
        rc = pgw_json_fail(ret_err, PGW_ERR_INVAL, "",
                           "the answer must be a JSON object");
        goto out;
    }
    a = calloc(1, sizeof(*a));
    if (!a) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    a->skip = truthy(pgw_json_member(obj, "skip"));
    a->force = truthy(pgw_json_member(obj, "force"));
    it = NULL;
    rc = pgw_json_get_array(obj, "offlinePeers", 0, SIZE_MAX, &it, ret_err);
    if (rc > 0)
        rc = hook_peers(a, it, lim->max_peers, ret_err);
    if (rc < 0)
        goto out;
    it = pgw_json_member(obj, "pushMessage");
    if (it) {
        rc = hook_push_message(a, it, ret_err);
        if (rc < 0)
            goto out;
    }
    *ret_answer = a;
    a = NULL;
    rc = 0;
out:
    pgw_resolve_hook_answer_free(a);
    cJSON_Delete(json);
    return rc;
}

/* ---- variables ---- */

struct vars {
    const char *conv_id;
    const char *from;
    char timestamp[24];
    const char *text;
    size_t budget; /* bytes of expansion left */
};

/* The message text: _lctext of a typed message, else the content. */
static char *message_text(const struct pgw_event *ev)
{
    cJSON *json = NULL;
    char *text = NULL;
    const char *c = ev->content ? ev->content : "";

    if (c[0] == '{' &&
        pgw_json_parse(c, strlen(c), NULL, &json, NULL, NULL) == 0 &&
        cJSON_IsObject(json) &&
        (pgw_json_has_key(json, "_lctype") ||
         pgw_json_has_key(json, "_lctext"))) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(json, "_lctext");
        text =
            strdup(cJSON_IsString(t) && t->valuestring ? t->valuestring : "");
    } else {
        text = strdup(c);
    }
    cJSON_Delete(json);
    return text;
}

/* Length of the longest prefix of |s| (<= |max|) ending on a UTF-8
 * boundary (|s| is valid UTF-8). */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np)
            return PGW_ERR_NOMEM;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/*
 * Expands the variables in |s|; stores a new string in |*ret| or NULL when
 * |s| has none.
 */
static int expand_string(const char *s, struct vars *v, char **ret)
{
    struct sbuf b = {NULL, 0, 0};
    const char *p = s, *start;
    bool changed = false;
    int rc = 0;

    *ret = NULL;
    while ((start = strstr(p, "${")) != NULL) {
        const char *val = NULL;
        size_t klen = 0;

        if (strncmp(start, "${convId}", 9) == 0) {
            val = v->conv_id;
            klen = 9;
        } else if (strncmp(start, "${fromClientId}", 15) == 0) {
            val = v->from;
            klen = 15;
        } else if (strncmp(start, "${timestamp}", 12) == 0) {
            val = v->timestamp;
            klen = 12;
        } else if (strncmp(start, "${text}", 7) == 0) {
            val = v->text;
            klen = 7;
        }
        if (!val) { /* unknown: kept as it is */
            rc = sbuf_put(&b, p, (size_t)(start - p) + 2);
            p = start + 2;
        } else {
            size_t vl = strlen(val);
            if (vl > v->budget) {
                rc = PGW_ERR_TOO_LARGE;
                goto out;
            }
            v->budget -= vl;
            rc = sbuf_put(&b, p, (size_t)(start - p));
            if (rc == 0)
                rc = sbuf_put(&b, val, vl);
            p = start + klen;
            changed = true;
        }
        if (rc < 0)
            goto out;
        if (b.len > PGW_RESOLVE_MAX_STRING_BYTES)
            break;
    }
    if (!changed)
        goto out;
    rc = sbuf_put(&b, p, strlen(p));
    if (rc < 0)
        goto out;
    b.len = utf8_cut(b.p, b.len, PGW_RESOLVE_MAX_STRING_BYTES);
    b.p[b.len] = '\0';
    *ret = b.p;
    b.p = NULL;
out:
    free(b.p);
    return rc;
}

static int expand_tree(cJSON *json, struct vars *v)
{
    cJSON *it;
    int rc;

    if (cJSON_IsString(json) && json->valuestring) {
        char *n = NULL;
        rc = expand_string(json->valuestring, v, &n);
        if (rc < 0 || !n)
            return rc;
        free(json->valuestring);
        json->valuestring = n;
        return 0;
    }
    if (cJSON_IsObject(json) || cJSON_IsArray(json)) {
        cJSON_ArrayForEach(it, json)
        {
            rc = expand_tree(it, v);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static int expand_with(cJSON *json, const struct pgw_event *ev, char *text)
{
    struct vars v;

    v.conv_id = ev->conv_id;
    v.from = ev->from_peer;
    snprintf(v.timestamp, sizeof(v.timestamp), "%" PRId64,
             ev->timestamp_ms / 1000);
    v.text = text;
    v.budget = PGW_RESOLVE_MAX_EXPANDED_BYTES;
    return expand_tree(json, &v);
}

/*
 * The internal keys of |content| that the push acts on (DESIGN §8):
 * _profile (|profile|, when not NULL, overrides it: the push API's
 * `prod`) and _apns_team_id, into |res|. -1: out of memory.
 */
static int read_internal_keys(const cJSON *content, const char *profile,
                              struct pgw_resolved *res)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(content, "_profile");

    if (profile)
        res->profile =
            strcmp(profile, "dev") == 0 ? PGW_PROFILE_DEV : PGW_PROFILE_PROD;
    else if (!it ||
             (cJSON_IsString(it) && strcmp(it->valuestring, "prod") == 0))
        res->profile = PGW_PROFILE_PROD;
    else if (cJSON_IsString(it) && strcmp(it->valuestring, "dev") == 0)
        res->profile = PGW_PROFILE_DEV;
    else
        res->profile = PGW_PROFILE_BAD;
    it = cJSON_GetObjectItemCaseSensitive(content, "_apns_team_id");
    if (cJSON_IsString(it) && it->valuestring[0]) {
        res->apns_team_id = strdup(it->valuestring);
        if (!res->apns_team_id)
            return -1;
    }
    return 0;
}

/* ---- the event ---- */

void pgw_resolve_free(struct pgw_resolved *res)
{
    if (!res)
        return;
    /* Variants may share one tree (split_platforms): each freed once. */
    for (int i = 0; i < 2 * PGW_PLATFORM_COUNT; i++) {
        cJSON *c = res->content[i / 2][i % 2];
        bool seen = false;

        for (int j = 0; j < i && !seen; j++)
            seen = res->content[j / 2][j % 2] == c;
        if (!seen)
            cJSON_Delete(c);
    }
    for (size_t i = 0; i < res->n_recipients; i++)
        free(res->recipients[i]);
    free(res->recipients);
    pgw_event_peerset_release(&res->recipient_set);
    pgw_event_peerset_release(&res->mentioned_set);
    free(res->apns_team_id);
    free(res);
}

static const char *const internal_keys[] = {"_profile", "_apns_team_id",
                                            "_mentioned"};

static void strip_internal(cJSON *obj)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(internal_keys); i++)
        pgw_json_delete_key(obj, internal_keys[i]);
}

/*
 * Variant |v| of every platform from |*base| (owned by the caller): a
 * platform's own "ios"/"android" object is copied out of it; the
 * platforms without one get |*base| itself without those keys, one tree
 * they share, which then belongs to |res| (|*base| set to NULL). Internal
 * keys removed from every tree. One tree, not one copy per platform:
 * without platform objects they are equal, and copying and freeing them
 * was most of an event's resolution.
 */
static int split_platforms(cJSON **base, struct pgw_resolved *res, int v)
{
    bool shared = false;

    for (int p = 0; p < PGW_PLATFORM_COUNT; p++) {
        const cJSON *po = cJSON_GetObjectItemCaseSensitive(
            *base, pgw_platform_name((enum pgw_platform)p));
        cJSON *c;

        if (!cJSON_IsObject(po)) {
            shared = true;
            continue;
        }
        c = cJSON_Duplicate(po, true);
        if (!c)
            return PGW_ERR_NOMEM;
        strip_internal(c);
        res->content[p][v] = c;
    }
    if (!shared)
        return 0;
    pgw_json_delete_key(*base, "ios");
    pgw_json_delete_key(*base, "android");
    strip_internal(*base);
    for (int p = 0; p < PGW_PLATFORM_COUNT; p++)
        if (!res->content[p][v])
            res->content[p][v] = *base;
    *base = NULL;
    return 0;
}

static int build_recipients(struct pgw_resolved *res,
                            const struct pgw_event *ev,
                            const struct pgw_hook_answer *hook)
{
    struct pgw_event_peerset offline, muted;
    char *const *src = ev->offline_peers;
    size_t n = ev->n_offline_peers;
    bool force = hook && hook->force;
    int rc = PGW_ERR_NOMEM;

    pgw_event_peerset_init(&offline);
    pgw_event_peerset_init(&muted);
    for (size_t i = 0; i < ev->n_offline_peers; i++)
        if (pgw_event_peerset_add(&offline, ev->offline_peers[i]) < 0)
            goto out;
    for (size_t i = 0; i < ev->n_muted_peers; i++)
        if (pgw_event_peerset_add(&muted, ev->muted_peers[i]) < 0)
            goto out;
    if (hook && hook->has_offline_peers) {
        src = hook->offline_peers;
        n = hook->n_offline_peers;
    }
    res->recipients = calloc(n ? n : 1, sizeof(char *));
    if (!res->recipients)
        goto out;
    for (size_t i = 0; i < n; i++) {
        /* Hook additions are ignored: only the event's peers count. */
        if (!pgw_event_peerset_has(&offline, src[i]))
            continue;
        if (!force && pgw_event_peerset_has(&muted, src[i]))
            continue;
        char *copy = strdup(src[i]);
        if (!copy)
            goto out;
        res->recipients[res->n_recipients++] = copy;
        if (pgw_event_peerset_add(&res->recipient_set, copy) < 0)
            goto out;
    }
    res->mention_all = ev->mention_all;
    /* Reuse |offline| for the mentioned names of the event; the set keeps
     * pointers to the recipients' own copies (the event may go first). */
    pgw_event_peerset_release(&offline);
    for (size_t i = 0; i < ev->n_mention_offline_peers; i++)
        if (pgw_event_peerset_add(&offline, ev->mention_offline_peers[i]) < 0)
            goto out;
    for (size_t j = 0; j < res->n_recipients; j++)
        if (pgw_event_peerset_has(&offline, res->recipients[j]) &&
            pgw_event_peerset_add(&res->mentioned_set, res->recipients[j]) < 0)
            goto out;
    rc = 0;
out:
    pgw_event_peerset_release(&offline);
    pgw_event_peerset_release(&muted);
    return rc;
}

int pgw_resolve_event(const struct pgw_event *ev,
                      const struct pgw_hook_answer *hook, const cJSON *tmpl,
                      int64_t validity_s, struct pgw_resolved **ret_res,
                      struct pgw_json_error *ret_err)
{
    struct pgw_resolved *res = NULL;
    const cJSON *src = NULL;
    cJSON *content = NULL, *mentioned = NULL;
    const cJSON *it;
    char *text = NULL;
    int rc = PGW_ERR_NOMEM;

    res = calloc(1, sizeof(*res));
    if (!res)
        return PGW_ERR_NOMEM;
    pgw_event_peerset_init(&res->recipient_set);
    pgw_event_peerset_init(&res->mentioned_set);
    res->timestamp_s = ev->timestamp_ms / 1000;
    res->expires_at_s = res->timestamp_s + validity_s;

    if (hook && hook->skip) {
        res->skip_reason = "hook_skip";
        goto done;
    }
    rc = build_recipients(res, ev, hook);
    if (rc < 0)
        goto out;
    if (res->n_recipients == 0) {
        res->skip_reason = "no_recipients";
        goto done;
    }
    if (hook && hook->push_message) {
        src = hook->push_message;
        res->source = PGW_RESOLVE_SOURCE_HOOK;
    } else if (ev->push_data) {
        src = ev->push_data;
        res->source = PGW_RESOLVE_SOURCE_PUSHDATA;
    } else if (cJSON_IsObject(tmpl)) {
        src = tmpl;
        res->source = PGW_RESOLVE_SOURCE_TEMPLATE;
    } else {
        res->skip_reason = "no_content";
        goto done;
    }

    rc = PGW_ERR_NOMEM;
    content = cJSON_Duplicate(src, true);
    text = message_text(ev);
    if (!content || !text)
        goto out;
    rc = expand_with(content, ev, text);
    if (rc == PGW_ERR_TOO_LARGE) {
        pgw_json_fail(ret_err, rc, "",
                      "push content too large after variable expansion");
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = PGW_ERR_NOMEM;

    if (read_internal_keys(content, NULL, res) < 0)
        goto out;

    it = cJSON_GetObjectItemCaseSensitive(content, "_mentioned");
    if (cJSON_IsObject(it)) {
        mentioned = cJSON_Duplicate(it, true);
        if (!mentioned)
            goto out;
        res->has_mentioned = true;
    }
    strip_internal(content);

    rc = split_platforms(&content, res, 0);
    if (rc == 0 && mentioned)
        rc = split_platforms(&mentioned, res, 1);
    if (rc < 0)
        goto out;
    if (!res->has_mentioned)
        for (int p = 0; p < PGW_PLATFORM_COUNT; p++)
            res->content[p][1] = res->content[p][0];
done:
    *ret_res = res;
    res = NULL;
    rc = 0;
out:
    free(text);
    cJSON_Delete(content);
    cJSON_Delete(mentioned);
    pgw_resolve_free(res);
    return rc;
}

int pgw_resolve_api_push(const cJSON *data, const char *profile,
                         int64_t timestamp_s, int64_t expires_at_s,
                         struct pgw_resolved **ret_res,
                         struct pgw_json_error *ret_err)
{
    struct pgw_resolved *res = NULL;
    cJSON *content = NULL;
    int rc = PGW_ERR_NOMEM;

    if (!cJSON_IsObject(data)) {
        pgw_json_fail(ret_err, PGW_ERR_INVAL, "data", "not an object");
        return PGW_ERR_INVAL;
    }
    res = calloc(1, sizeof(*res));
    if (!res)
        return PGW_ERR_NOMEM;
    pgw_event_peerset_init(&res->recipient_set);
    pgw_event_peerset_init(&res->mentioned_set);
    res->everyone = true;
    res->source = PGW_RESOLVE_SOURCE_PUSHDATA;
    res->timestamp_s = timestamp_s;
    res->expires_at_s = expires_at_s;
    content = cJSON_Duplicate(data, true);
    if (!content)
        goto out;
    if (read_internal_keys(content, profile, res) < 0)
        goto out;
    strip_internal(content);
    rc = split_platforms(&content, res, 0);
    if (rc < 0)
        goto out;
    for (int p = 0; p < PGW_PLATFORM_COUNT; p++)
        res->content[p][1] = res->content[p][0];
    *ret_res = res;
    res = NULL;
    rc = 0;
out:
    cJSON_Delete(content);
    pgw_resolve_free(res);
    return rc;
}

const cJSON *pgw_resolve_variant(const struct pgw_resolved *res, int variant)
{
    if (res->skip_reason || variant < 0 || variant > 3)
        return NULL;
    return res->content[variant / 2][variant % 2];
}

enum pgw_resolve_verdict pgw_resolve_for_installation(
    const struct pgw_resolved *res, const struct pgw_installation *inst,
    const char *default_team, int *ret_variant, const cJSON **ret_content)
{
    bool recipient = false, mentioned = false;
    int variant;

    if (res->skip_reason)
        return PGW_RESOLVE_SKIPPED;
    recipient = res->everyone;
    for (size_t i = 0; !res->everyone && i < inst->n_channels; i++) {
        const char *ch = inst->channels[i];
        if (!ch || !pgw_event_peerset_has(&res->recipient_set, ch))
            continue;
        recipient = true;
        if (res->mention_all || pgw_event_peerset_has(&res->mentioned_set, ch))
            mentioned = true;
    }
    if (!recipient)
        return PGW_RESOLVE_NOT_RECIPIENT;
    if (inst->platform == PGW_PLATFORM_IOS) {
        struct pgw_installation_match m = {.apns_team_id = res->apns_team_id,
                                           .default_team = default_team};

        if (!pgw_installation_team_matches(&m, inst))
            return PGW_RESOLVE_OTHER_TEAM;
        if (res->profile == PGW_PROFILE_BAD)
            return PGW_RESOLVE_BAD_PROFILE;
    }
    variant = (int)inst->platform * 2 + (mentioned && res->has_mentioned);
    if (ret_variant)
        *ret_variant = variant;
    if (ret_content)
        *ret_content = pgw_resolve_variant(res, variant);
    return PGW_RESOLVE_SEND;
}
