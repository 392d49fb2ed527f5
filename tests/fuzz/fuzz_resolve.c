/*
 * libFuzzer target: parse → resolve → both payload builders.
 * The input is up to three NUL-separated parts: the event, the hook
 * answer, the template. Checks that every APNs body fits its budget and
 * every body is valid UTF-8 JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "payload_apns.h"
#include "payload_fcm.h"
#include "resolve.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void split(const char *d, size_t size, const char **part, size_t *len)
{
    size_t start = 0, k = 0;

    for (int i = 0; i < 3; i++) {
        part[i] = NULL;
        len[i] = 0;
    }
    for (size_t i = 0; i <= size && k < 3; i++) {
        if (i == size || d[i] == '\0') {
            part[k] = d + start;
            len[k] = i - start;
            k++;
            start = i + 1;
        }
    }
}

static void check_body(const char *buf, size_t len, size_t max)
{
    cJSON *j;

    if (len > max || !pgw_utf8_valid(buf, len))
        abort();
    j = cJSON_ParseWithLength(buf, len);
    if (!j)
        abort();
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pgw_event_limits lim = {16, 65536, 0};
    struct pgw_event *ev = NULL;
    struct pgw_hook_answer *hook = NULL;
    struct pgw_resolved *res = NULL;
    struct pgw_json_error err;
    cJSON *tmpl = NULL;
    const char *part[3];
    size_t len[3];
    static char buf[16384];
    static const char *const chans[] = {"a", "b", "c", "Jerry"};

    split((const char *)data, size, part, len);
    if (pgw_event_parse(part[0], len[0], &lim, &ev, &err) != 0)
        return 0;
    if (part[1])
        pgw_resolve_parse_hook_answer(part[1], len[1], &lim, &hook, &err);
    if (part[2])
        pgw_json_parse(part[2], len[2], NULL, &tmpl, NULL, NULL);
    if (pgw_resolve_event(ev, hook, tmpl, 604800, &res, &err) != 0)
        goto out;
    for (int v = 0; v < 4; v++) {
        const cJSON *c = pgw_resolve_variant(res, v);
        struct pgw_apns_payload *ap = NULL;
        struct pgw_fcm_payload *fp = NULL;
        size_t n;

        if (!c)
            continue;
        if (v < 2 && pgw_payload_apns_build(c, res->expires_at_s,
                                            res->timestamp_s, &ap, NULL) == 0) {
            size_t max = strcmp(ap->push_type, "voip") == 0
                             ? PGW_APNS_MAX_BODY_VOIP
                             : PGW_APNS_MAX_BODY;
            if (pgw_payload_apns_body(ap, INT32_MIN, buf, sizeof(buf), &n) != 0)
                abort();
            check_body(buf, n, max);
            pgw_payload_apns_free(ap);
        }
        if (v >= 2 &&
            pgw_payload_fcm_build(c, res->expires_at_s, res->timestamp_s,
                                  604800, &fp, NULL) == 0) {
            if (pgw_payload_fcm_body(fp, "tok\"en", buf, sizeof(buf), &n) != 0)
                abort();
            check_body(buf, n, PGW_PAYLOAD_FCM_MAX_BODY + 16);
            pgw_payload_fcm_free(fp);
        }
    }
    for (size_t i = 0; i < 4; i++) {
        struct pgw_installation in = {.id = (int64_t)i,
                                      .platform = (enum pgw_platform)(i % 2),
                                      .device_token = "t",
                                      .channels = &chans[i],
                                      .n_channels = 1,
                                      .apns_team_id = "TEAM"};
        /* with and without a default team: the team rule both ways */
        pgw_resolve_for_installation(res, &in, (i & 2) ? "TEAM" : NULL, NULL,
                                     NULL);
    }
out:
    pgw_resolve_free(res);
    cJSON_Delete(tmpl);
    pgw_resolve_hook_answer_free(hook);
    pgw_event_free(ev);
    return 0;
}
