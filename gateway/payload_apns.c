/* The APNs request of one content variant (see payload_apns.h). */
#include "payload_apns.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "pushgw.h"
#include "util/json.h"

/* Printed in place of an Increment badge (payload.h). */
#define BADGE_MARK PGW_PAYLOAD_MARK

static const char *const aps_keys[] = {
    "alert",           "badge",
    "sound",           "category",
    "thread-id",       "content-available",
    "mutable-content", "interruption-level",
    "relevance-score", "target-content-id",
    "filter-criteria", "url-args",
};

static const char *const push_types[] = {
    "alert",        "background",   "location", "voip",
    "complication", "fileprovider", "mdm",      "liveactivity",
    "pushtotalk",   "widgets",      "controls",
};

static bool in_list(const char *k, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, list[i]) == 0)
            return true;
    return false;
}

void pgw_payload_apns_free(struct pgw_apns_payload *p)
{
    if (!p)
        return;
    free(p->body);
    free(p->collapse_id);
    free(p);
}

/* Moves (a copy of) |val| into |obj| under |key|, replacing any. */
static int put(cJSON *obj, const char *key, const cJSON *val)
{
    cJSON *dup = cJSON_Duplicate(val, true);

    if (!dup)
        return PGW_ERR_NOMEM;
    pgw_json_delete_key(obj, key);
    if (!cJSON_AddItemToObject(obj, key, dup)) {
        cJSON_Delete(dup);
        return PGW_ERR_NOMEM;
    }
    return 0;
}

/* An integer 1, 5 or 10 given as a number or a string, else 0. */
static int parse_priority(const cJSON *it)
{
    double v;

    if (cJSON_IsNumber(it))
        v = it->valuedouble;
    else if (cJSON_IsString(it) && it->valuestring)
        v = strtod(it->valuestring, NULL);
    else
        return 0;
    if (v == 1 || v == 5 || v == 10)
        return (int)v;
    return 0;
}

/*
 * Apple's flags (content-available, mutable-content) are the number 1:
 * a true value of any JSON type becomes 1, a false one (0, false, "",
 * "0", "false", null) removes the key.
 */
static int normalize_flag(cJSON *aps, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(aps, key);
    bool on;
    cJSON *one;

    if (!it)
        return 0;
    if (cJSON_IsNumber(it))
        on = it->valuedouble != 0;
    else if (cJSON_IsString(it))
        on = it->valuestring[0] && strcmp(it->valuestring, "0") != 0 &&
             strcmp(it->valuestring, "false") != 0;
    else
        on = cJSON_IsTrue(it) || cJSON_IsObject(it) || cJSON_IsArray(it);
    if (!on) {
        pgw_json_delete_key(aps, key);
        return 0;
    }
    if (cJSON_IsNumber(it) && it->valuedouble == 1)
        return 0;
    one = cJSON_CreateNumber(1);
    if (!one || !cJSON_ReplaceItemInObjectCaseSensitive(aps, key, one)) {
        cJSON_Delete(one);
        return PGW_ERR_NOMEM;
    }
    return 0;
}

/* Merges |title| and |subtitle| into aps.alert as a dictionary. */
static int merge_title(cJSON *aps, const cJSON *title, const cJSON *subtitle)
{
    cJSON *alert = cJSON_GetObjectItemCaseSensitive(aps, "alert");
    cJSON *dict;

    if (!title && !subtitle)
        return 0;
    if (cJSON_IsObject(alert)) {
        dict = alert;
    } else {
        dict = cJSON_CreateObject();
        if (!dict)
            return PGW_ERR_NOMEM;
        if (cJSON_IsString(alert) &&
            !cJSON_AddStringToObject(dict, "body", alert->valuestring)) {
            cJSON_Delete(dict);
            return PGW_ERR_NOMEM;
        }
        pgw_json_delete_key(aps, "alert");
        if (!cJSON_AddItemToObject(aps, "alert", dict)) {
            cJSON_Delete(dict);
            return PGW_ERR_NOMEM;
        }
    }
    if (title && put(dict, "title", title) < 0)
        return PGW_ERR_NOMEM;
    if (subtitle && put(dict, "subtitle", subtitle) < 0)
        return PGW_ERR_NOMEM;
    return 0;
}

/* The alert body string item of |aps|, or NULL. */
static cJSON *alert_body(cJSON *aps)
{
    cJSON *alert = cJSON_GetObjectItemCaseSensitive(aps, "alert");

    if (cJSON_IsString(alert))
        return alert;
    if (cJSON_IsObject(alert)) {
        cJSON *b = cJSON_GetObjectItemCaseSensitive(alert, "body");
        if (cJSON_IsString(b))
            return b;
    }
    return NULL;
}

/*
 * A value that goes into an HTTP/2 header: visible ASCII and inner spaces,
 * at most |max| bytes. Content comes from end users' pushData: CR, LF or
 * control bytes would be rejected by the provider stream after stream (or,
 * worse, read as a header boundary by something on the way).
 */
static bool header_value_ok(const char *v, size_t max)
{
    size_t n = strlen(v);

    if (n == 0 || n > max || v[0] == ' ' || v[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return false;
    return true;
}

int pgw_payload_apns_build(const cJSON *content, int64_t expires_at_s,
                           int64_t now_s, struct pgw_apns_payload **ret_p,
                           const char **ret_reason)
{
    struct pgw_apns_payload *p = NULL;
    cJSON *root = NULL, *aps = NULL, *badge;
    const cJSON *it, *title = NULL, *subtitle = NULL, *type_key = NULL;
    const cJSON *prio_key = NULL, *collapse_key = NULL;
    const char *reason = NULL;
    char *text = NULL, *mark;
    size_t limit, max_len;
    bool background;
    int rc = PGW_ERR_NOMEM;

    if (now_s >= expires_at_s) {
        reason = PGW_PAYLOAD_REASON_EXPIRED;
        rc = PGW_PAYLOAD_ERR_EXPIRED;
        goto out;
    }
    p = calloc(1, sizeof(*p));
    root = cJSON_CreateObject();
    if (!p || !root)
        goto out;
    it = cJSON_GetObjectItemCaseSensitive(content, "aps");
    aps = cJSON_IsObject(it) ? cJSON_Duplicate(it, true) : cJSON_CreateObject();
    if (!aps)
        goto out;
    if (!cJSON_AddItemToObject(root, "aps", aps)) {
        cJSON_Delete(aps);
        goto out;
    }
    cJSON_ArrayForEach(it, content)
    {
        const char *k = it->string;
        if (!k || strcmp(k, "aps") == 0)
            continue;
        if (in_list(k, aps_keys, PGW_ARRAY_SIZE(aps_keys))) {
            if (put(aps, k, it) < 0)
                goto out;
        } else if (strcmp(k, "title") == 0) {
            title = it;
        } else if (strcmp(k, "subtitle") == 0) {
            subtitle = it;
        } else if (strcmp(k, "apns-push-type") == 0) {
            type_key = it;
        } else if (strcmp(k, "apns-priority") == 0) {
            prio_key = it;
        } else if (strcmp(k, "collapse-id") == 0) {
            collapse_key = it;
        } else if (!pgw_json_has_key(root, k)) {
            if (put(root, k, it) < 0)
                goto out;
        }
    }
    /* "alert": null (a template's empty slot) is no alert at all. */
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(aps, "alert")))
        pgw_json_delete_key(aps, "alert");
    if (merge_title(aps, title, subtitle) < 0 ||
        normalize_flag(aps, "content-available") < 0 ||
        normalize_flag(aps, "mutable-content") < 0)
        goto out;

    badge = cJSON_GetObjectItemCaseSensitive(aps, "badge");
    if (cJSON_IsString(badge) && strcmp(badge->valuestring, "Increment") == 0) {
        cJSON *raw = cJSON_CreateRaw(BADGE_MARK);
        if (!raw ||
            !cJSON_ReplaceItemInObjectCaseSensitive(aps, "badge", raw)) {
            cJSON_Delete(raw);
            goto out;
        }
        p->badge_increment = true;
    } else if (cJSON_IsNumber(badge)) {
        double v = badge->valuedouble;
        cJSON *num;

        p->badge = v != v              ? 0
                   : v > 2147483647.0  ? INT32_MAX
                   : v < -2147483648.0 ? INT32_MIN
                                       : (int32_t)v;
        p->badge_number = true;
        num = cJSON_CreateNumber((double)p->badge);
        if (!num ||
            !cJSON_ReplaceItemInObjectCaseSensitive(aps, "badge", num)) {
            cJSON_Delete(num);
            goto out;
        }
    } else if (badge) {
        cJSON_DeleteItemFromObjectCaseSensitive(aps, "badge");
    }

    background = pgw_json_has_key(aps, "content-available") &&
                 !pgw_json_has_key(aps, "alert") &&
                 !pgw_json_has_key(aps, "badge") &&
                 !pgw_json_has_key(aps, "sound");
    if (cJSON_IsString(type_key) &&
        in_list(type_key->valuestring, push_types, PGW_ARRAY_SIZE(push_types)))
        snprintf(p->push_type, sizeof(p->push_type), "%s",
                 type_key->valuestring);
    else
        snprintf(p->push_type, sizeof(p->push_type), "%s",
                 background ? "background" : "alert");
    /* Apple refuses a background push of priority 10: it is always 5. */
    p->priority =
        strcmp(p->push_type, "background") == 0 ? 5 : parse_priority(prio_key);
    if (!p->priority)
        p->priority = 10;
    if (cJSON_IsString(collapse_key) && collapse_key->valuestring[0]) {
        if (!header_value_ok(collapse_key->valuestring,
                             PGW_APNS_MAX_COLLAPSE_ID)) {
            reason = PGW_PAYLOAD_REASON_COLLAPSE_ID;
            rc = PGW_ERR_INVAL;
            goto out;
        }
        p->collapse_id = strdup(collapse_key->valuestring);
        if (!p->collapse_id)
            goto out;
    }
    p->expiration = expires_at_s;

    limit = strcmp(p->push_type, "voip") == 0 ? PGW_APNS_MAX_BODY_VOIP
                                              : PGW_APNS_MAX_BODY;
    /* the marker byte is not sent; the badge number may take its room */
    max_len = p->badge_increment ? limit + 1 - PGW_APNS_BADGE_RESERVE : limit;
    rc =
        pgw_payload_print(root, alert_body(aps), max_len, &text, &p->shortened);
    if (rc == PGW_ERR_TOO_LARGE)
        reason = PGW_PAYLOAD_REASON_TOO_LARGE;
    if (rc < 0)
        goto out;
    rc = PGW_ERR_NOMEM;
    p->body_len = strlen(text);
    if (p->badge_increment) {
        mark = memchr(text, BADGE_MARK[0], p->body_len);
        if (!mark) { /* cannot happen: the raw item is printed verbatim */
            rc = PGW_ERR_INVAL;
            goto out;
        }
        p->badge_at = (size_t)(mark - text);
        memmove(mark, mark + 1, p->body_len - p->badge_at);
        p->body_len--;
    }
    p->body = text;
    text = NULL;
    *ret_p = p;
    p = NULL;
    rc = 0;
out:
    if (rc < 0 && ret_reason)
        *ret_reason = reason;
    free(text);
    cJSON_Delete(root);
    pgw_payload_apns_free(p);
    return rc;
}

size_t pgw_payload_apns_body_max(const struct pgw_apns_payload *p)
{
    return p->body_len + (p->badge_increment ? PGW_APNS_BADGE_RESERVE : 0);
}

int pgw_payload_apns_body(const struct pgw_apns_payload *p, int32_t badge,
                          char *buf, size_t cap, size_t *ret_len)
{
    char num[16];
    int nl = 0;

    if (p->badge_increment)
        nl = (int)pgw_fmt_i64(num, badge);
    if (p->body_len + (size_t)nl > cap)
        return PGW_ERR_TOO_LARGE;
    if (!p->badge_increment) {
        memcpy(buf, p->body, p->body_len);
    } else {
        memcpy(buf, p->body, p->badge_at);
        memcpy(buf + p->badge_at, num, (size_t)nl);
        memcpy(buf + p->badge_at + nl, p->body + p->badge_at,
               p->body_len - p->badge_at);
    }
    *ret_len = p->body_len + (size_t)nl;
    return 0;
}

/* SHA-256 of |n| bytes of |in|. The algorithm is fetched once: SHA256()
 * fetched it and took OpenSSL's locks on every call, two calls per push
 * (6 % of the gateway's CPU in a fan-out). */
static void sha256(const void *in, size_t n, unsigned char out[32])
{
    static EVP_MD *md;

    if (!md)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!md || !EVP_Digest(in, n, out, NULL, md, NULL))
        SHA256(in, n, out); /* the slow way still gives the same id */
}

void pgw_payload_apns_id_key(const char *event_id,
                             unsigned char ret_key[PGW_APNS_ID_KEY_LEN])
{
    sha256(event_id, strlen(event_id), ret_key);
}

void pgw_payload_apns_id_from_key(const unsigned char key[PGW_APNS_ID_KEY_LEN],
                                  int64_t installation_id,
                                  char ret_uuid[PGW_APNS_UUID_LEN + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned char in[15 + PGW_APNS_ID_KEY_LEN + 8];
    static const char hex[] = "0123456789abcdef";
    uint64_t id = (uint64_t)installation_id;
    size_t o = 0;

    /* SHA-256("pushgw-apns-id\n" || SHA-256(event_id) || id big-endian) */
    memcpy(in, "pushgw-apns-id\n", 15);
    memcpy(in + 15, key, PGW_APNS_ID_KEY_LEN);
    for (int i = 0; i < 8; i++)
        in[15 + PGW_APNS_ID_KEY_LEN + i] = (unsigned char)(id >> (56 - 8 * i));
    sha256(in, sizeof(in), md);
    md[6] = (unsigned char)((md[6] & 0x0F) | 0x40); /* version 4 format */
    md[8] = (unsigned char)((md[8] & 0x3F) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            ret_uuid[o++] = '-';
        ret_uuid[o++] = hex[md[i] >> 4];
        ret_uuid[o++] = hex[md[i] & 0x0F];
    }
    ret_uuid[o] = '\0';
}

void pgw_payload_apns_id(const char *event_id, int64_t installation_id,
                         char ret_uuid[PGW_APNS_UUID_LEN + 1])
{
    unsigned char key[PGW_APNS_ID_KEY_LEN];

    pgw_payload_apns_id_key(event_id, key);
    pgw_payload_apns_id_from_key(key, installation_id, ret_uuid);
}
