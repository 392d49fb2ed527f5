/* The FCM HTTP v1 body of one content variant (see payload_fcm.h). */
#include "payload_fcm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

/* Printed where the token goes (payload.h). */
#define TOKEN_MARK PGW_PAYLOAD_MARK

void pgw_payload_fcm_free(struct pgw_fcm_payload *p)
{
    if (!p)
        return;
    free(p->head);
    free(p->tail);
    free(p);
}

/* FCM's reserved data keys: "from", "message_type", and any key that
 * starts with "google" or "gcm" (Google refuses the message otherwise). */
static bool reserved(const char *k)
{
    return strcmp(k, "from") == 0 || strcmp(k, "message_type") == 0 ||
           strncmp(k, "google", 6) == 0 || strncmp(k, "gcm", 3) == 0;
}

static bool truthy_bool(const cJSON *it)
{
    return cJSON_IsTrue(it) || (cJSON_IsNumber(it) && it->valuedouble != 0) ||
           (cJSON_IsString(it) && strcmp(it->valuestring, "true") == 0);
}

/* Adds |val| to |data| under |key| as a string. */
static int add_data(cJSON *data, const char *key, const cJSON *val)
{
    cJSON *s;

    if (pgw_json_has_key(data, key))
        return 0;
    if (cJSON_IsString(val)) {
        s = cJSON_CreateString(val->valuestring);
    } else {
        char *text = cJSON_PrintUnformatted(val);
        if (!text)
            return PGW_ERR_NOMEM;
        s = cJSON_CreateString(text);
        free(text);
    }
    if (!s || !cJSON_AddItemToObject(data, key, s)) {
        cJSON_Delete(s);
        return PGW_ERR_NOMEM;
    }
    return 0;
}

static const cJSON *string_or_null(const cJSON *it)
{
    return cJSON_IsString(it) && it->valuestring ? it : NULL;
}

int pgw_payload_fcm_build(const cJSON *content, int64_t expires_at_s,
                          int64_t now_s, int64_t validity_s,
                          struct pgw_fcm_payload **ret_p,
                          const char **ret_reason)
{
    struct pgw_fcm_payload *p = NULL;
    cJSON *root = NULL, *msg, *data = NULL, *android, *an = NULL, *nt = NULL;
    cJSON *body_item = NULL, *raw;
    const cJSON *it, *alert_body = NULL, *title = NULL, *alert_title = NULL;
    const cJSON *sound = NULL, *action = NULL, *collapse = NULL;
    const cJSON *channel = NULL;
    const char *reason = NULL;
    char *text = NULL, *mark;
    char ttl[32];
    int rc = PGW_ERR_NOMEM;

    if (now_s >= expires_at_s) {
        reason = PGW_PAYLOAD_REASON_EXPIRED;
        rc = PGW_PAYLOAD_ERR_EXPIRED;
        goto out;
    }
    p = calloc(1, sizeof(*p));
    root = cJSON_CreateObject();
    data = cJSON_CreateObject();
    if (!p || !root || !data)
        goto out;
    p->ttl_s = expires_at_s - now_s;
    if (validity_s > 0 && p->ttl_s > validity_s)
        p->ttl_s = validity_s;
    p->silent =
        truthy_bool(cJSON_GetObjectItemCaseSensitive(content, "silent"));

    cJSON_ArrayForEach(it, content)
    {
        const char *k = it->string;
        if (!k)
            continue;
        if (strcmp(k, "alert") == 0) {
            if (cJSON_IsObject(it)) {
                alert_body = string_or_null(
                    cJSON_GetObjectItemCaseSensitive(it, "body"));
                alert_title = string_or_null(
                    cJSON_GetObjectItemCaseSensitive(it, "title"));
            } else {
                alert_body = string_or_null(it);
            }
        } else if (strcmp(k, "title") == 0) {
            title = string_or_null(it);
        } else if (strcmp(k, "sound") == 0) {
            sound = string_or_null(it);
        } else if (strcmp(k, "action") == 0) {
            action = string_or_null(it);
        } else if (strcmp(k, "collapse-id") == 0) {
            collapse = string_or_null(it);
        } else if (strcmp(k, "_notificationChannel") == 0) {
            channel = string_or_null(it); /* LeanCloud's Android channel */
        } else if (strcmp(k, "badge") == 0 || strcmp(k, "silent") == 0) {
            continue;
        } else if (reserved(k)) {
            if (p->n_dropped++ == 0)
                snprintf(p->first_dropped, sizeof(p->first_dropped), "%s", k);
        } else if (add_data(data, k, it) < 0) {
            goto out;
        }
    }
    if (!title)
        title = alert_title;

    msg = cJSON_AddObjectToObject(root, "message");
    if (!msg)
        goto out;
    raw = cJSON_CreateRaw("\"" TOKEN_MARK "\"");
    if (!raw || !cJSON_AddItemToObject(msg, "token", raw)) {
        cJSON_Delete(raw);
        goto out;
    }
    if (!p->silent && (title || alert_body)) {
        nt = cJSON_AddObjectToObject(msg, "notification");
        if (!nt)
            goto out;
        if (title && !cJSON_AddStringToObject(nt, "title", title->valuestring))
            goto out;
        if (alert_body) {
            body_item =
                cJSON_AddStringToObject(nt, "body", alert_body->valuestring);
            if (!body_item)
                goto out;
        }
    }
    if (p->silent) {
        /* Pass-through: the app gets the text in data. */
        if (alert_body) {
            if (add_data(data, "alert", alert_body) < 0)
                goto out;
            body_item = cJSON_GetObjectItemCaseSensitive(data, "alert");
        }
        if (title && add_data(data, "title", title) < 0)
            goto out;
        if (action && add_data(data, "action", action) < 0)
            goto out;
    }
    if (data->child) {
        if (!cJSON_AddItemToObject(msg, "data", data))
            goto out;
    } else {
        cJSON_Delete(data);
    }
    data = NULL;
    android = cJSON_AddObjectToObject(msg, "android");
    if (!android)
        goto out;
    snprintf(ttl, sizeof(ttl), "%" PRId64 "s", p->ttl_s);
    if (!cJSON_AddStringToObject(android, "ttl", ttl) ||
        !cJSON_AddStringToObject(android, "priority", "HIGH"))
        goto out;
    if (collapse && !cJSON_AddStringToObject(android, "collapse_key",
                                             collapse->valuestring))
        goto out;
    if (!p->silent && (sound || action || channel)) {
        an = cJSON_AddObjectToObject(android, "notification");
        if (!an)
            goto out;
        if (channel &&
            !cJSON_AddStringToObject(an, "channel_id", channel->valuestring))
            goto out;
        if (sound && !cJSON_AddStringToObject(an, "sound", sound->valuestring))
            goto out;
        if (action &&
            !cJSON_AddStringToObject(an, "click_action", action->valuestring))
            goto out;
    }

    /* + 1: the marker is not part of the budget, the token neither */
    rc = pgw_payload_print(root, body_item, PGW_PAYLOAD_FCM_MAX_BODY + 1, &text,
                           &p->shortened);
    if (rc == PGW_ERR_TOO_LARGE)
        reason = PGW_PAYLOAD_REASON_TOO_LARGE;
    if (rc < 0)
        goto out;
    rc = PGW_ERR_NOMEM;
    mark = strchr(text, TOKEN_MARK[0]);
    if (!mark) { /* cannot happen: the raw item is printed verbatim */
        rc = PGW_ERR_INVAL;
        goto out;
    }
    p->head_len = (size_t)(mark - text);
    p->tail_len = strlen(mark + 1);
    p->head = malloc(p->head_len + 1);
    p->tail = malloc(p->tail_len + 1);
    if (!p->head || !p->tail)
        goto out;
    memcpy(p->head, text, p->head_len);
    p->head[p->head_len] = '\0';
    memcpy(p->tail, mark + 1, p->tail_len + 1);
    *ret_p = p;
    p = NULL;
    rc = 0;
out:
    if (rc < 0 && ret_reason)
        *ret_reason = reason;
    free(text);
    cJSON_Delete(data);
    cJSON_Delete(root);
    pgw_payload_fcm_free(p);
    return rc;
}

size_t pgw_payload_fcm_body_len(const struct pgw_fcm_payload *p,
                                const char *token)
{
    return p->head_len + pgw_json_escaped_len(token, strlen(token)) +
           p->tail_len;
}

int pgw_payload_fcm_body(const struct pgw_fcm_payload *p, const char *token,
                         char *buf, size_t cap, size_t *ret_len)
{
    size_t len = strlen(token);
    size_t o = p->head_len;

    if (p->head_len + pgw_json_escaped_len(token, len) + p->tail_len > cap)
        return PGW_ERR_TOO_LARGE;
    memcpy(buf, p->head, p->head_len);
    o += pgw_json_escape(buf + o, token, len);
    memcpy(buf + o, p->tail, p->tail_len);
    *ret_len = o + p->tail_len;
    return 0;
}

int pgw_payload_fcm_set_ttl(char *body, size_t *len, int64_t ttl_s)
{
    static const char mark[] = "\"android\":{\"ttl\":\"";
    char num[24];
    char *at, *digits, *end;
    size_t old_n, new_n;

    if (ttl_s < 0)
        return PGW_ERR_INVAL;
    at = memmem(body, *len, mark, sizeof(mark) - 1);
    if (!at)
        return PGW_ERR_INVAL;
    digits = at + sizeof(mark) - 1;
    end = digits;
    while (end < body + *len && *end >= '0' && *end <= '9')
        end++;
    if (end == digits || end + 1 >= body + *len || end[0] != 's' ||
        end[1] != '"')
        return PGW_ERR_INVAL;
    old_n = (size_t)(end - digits);
    new_n = (size_t)snprintf(num, sizeof(num), "%" PRId64, ttl_s);
    if (new_n > old_n)
        return PGW_ERR_INVAL;
    memcpy(digits, num, new_n);
    memmove(digits + new_n, end, (size_t)(body + *len - end));
    *len -= old_n - new_n;
    return 0;
}
