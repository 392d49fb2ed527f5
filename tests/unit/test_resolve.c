/* Tests of hook answer parsing and push resolution (DESIGN §7). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "resolve.h"
#include "util/utf8.h"

#define EV(extra)                                                              \
    "{\"fromPeer\":\"Tom\",\"convId\":\"conv1\",\"offlinePeers\":[\"Jerry\","  \
    "\"Bob\"],\"timestamp\":1700000000999" extra "}"

#define GUIDE_TEMPLATE                                                         \
    "{\"alert\":\"New message received\",\"badge\":\"Increment\"}"

static struct pgw_event *parse_event(const char *json)
{
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    if (pgw_event_parse(json, strlen(json), NULL, &ev, &err) != 0)
        fail_msg("event does not parse: %s: %s", err.field, err.reason);
    return ev;
}

static struct pgw_hook_answer *parse_hook(const char *json)
{
    struct pgw_hook_answer *a = NULL;
    struct pgw_json_error err;

    if (!json)
        return NULL;
    if (pgw_resolve_parse_hook_answer(json, strlen(json), NULL, &a, &err) != 0)
        fail_msg("hook answer does not parse: %s", err.reason);
    return a;
}

static char *print_variant(const struct pgw_resolved *res, int v)
{
    const cJSON *c = pgw_resolve_variant(res, v);
    return c ? cJSON_PrintUnformatted(c) : strdup("(none)");
}

struct rcase {
    const char *name;
    const char *event;
    const char *hook; /* answer JSON or NULL */
    const char *tmpl; /* template JSON or NULL */
    const char *skip; /* expected skip_reason or NULL */
    enum pgw_resolve_source source;
    const char *ios;     /* variant 0 (iOS, not mentioned) */
    const char *android; /* variant 2 */
    enum pgw_profile profile;
};

static const struct rcase rcases[] = {
    /* Precedence: every combination of hook, pushData and template. */
    {"none", EV(""), NULL, NULL, "no_content", PGW_RESOLVE_SOURCE_NONE, NULL,
     NULL, PGW_PROFILE_PROD},
    {"template only", EV(""), NULL, GUIDE_TEMPLATE, NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, GUIDE_TEMPLATE, GUIDE_TEMPLATE,
     PGW_PROFILE_PROD},
    {"pushData only", EV(",\"pushData\":{\"alert\":\"pd\"}"), NULL, NULL, NULL,
     PGW_RESOLVE_SOURCE_PUSHDATA, "{\"alert\":\"pd\"}", "{\"alert\":\"pd\"}",
     PGW_PROFILE_PROD},
    {"pushData over template", EV(",\"pushData\":{\"alert\":\"pd\"}"), NULL,
     GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_PUSHDATA, "{\"alert\":\"pd\"}",
     "{\"alert\":\"pd\"}", PGW_PROFILE_PROD},
    {"hook only", EV(""), "{\"pushMessage\":{\"alert\":\"h\"}}", NULL, NULL,
     PGW_RESOLVE_SOURCE_HOOK, "{\"alert\":\"h\"}", "{\"alert\":\"h\"}",
     PGW_PROFILE_PROD},
    {"hook over template", EV(""), "{\"pushMessage\":{\"alert\":\"h\"}}",
     GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_HOOK, "{\"alert\":\"h\"}",
     "{\"alert\":\"h\"}", PGW_PROFILE_PROD},
    {"hook over pushData", EV(",\"pushData\":{\"alert\":\"pd\"}"),
     "{\"pushMessage\":{\"alert\":\"h\"}}", NULL, NULL, PGW_RESOLVE_SOURCE_HOOK,
     "{\"alert\":\"h\"}", "{\"alert\":\"h\"}", PGW_PROFILE_PROD},
    {"hook over all", EV(",\"pushData\":{\"alert\":\"pd\"}"),
     "{\"result\":{\"pushMessage\":\"{\\\"alert\\\":\\\"h\\\"}\"}}",
     GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_HOOK, "{\"alert\":\"h\"}",
     "{\"alert\":\"h\"}", PGW_PROFILE_PROD},
    {"hook without pushMessage falls back", EV(",\"pushData\":{\"alert\":1}"),
     "{\"force\":false}", GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_PUSHDATA,
     "{\"alert\":1}", "{\"alert\":1}", PGW_PROFILE_PROD},
    {"hook skip", EV(""), "{\"skip\":true}", GUIDE_TEMPLATE, "hook_skip",
     PGW_RESOLVE_SOURCE_NONE, NULL, NULL, PGW_PROFILE_PROD},

    /* Variables. */
    {"convId", EV(""), NULL, "{\"alert\":\"in ${convId}\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"in conv1\"}",
     "{\"alert\":\"in conv1\"}", PGW_PROFILE_PROD},
    {"fromClientId", EV(""), NULL, "{\"alert\":\"${fromClientId}:\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"Tom:\"}",
     "{\"alert\":\"Tom:\"}", PGW_PROFILE_PROD},
    {"timestamp in seconds", EV(""), NULL, "{\"t\":\"${timestamp}\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"t\":\"1700000000\"}",
     "{\"t\":\"1700000000\"}", PGW_PROFILE_PROD},
    {"text of plain content", EV(",\"content\":\"hello\""), NULL,
     "{\"alert\":\"${fromClientId}: ${text}\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"Tom: hello\"}",
     "{\"alert\":\"Tom: hello\"}", PGW_PROFILE_PROD},
    {"text of typed message",
     EV(",\"content\":\"{\\\"_lctype\\\":-1,\\\"_lctext\\\":\\\"hi\\\"}\""),
     NULL, "{\"alert\":\"${text}\"}", NULL, PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"hi\"}", "{\"alert\":\"hi\"}", PGW_PROFILE_PROD},
    {"text of typed message without text",
     EV(",\"content\":\"{\\\"_lctype\\\":-2,\\\"_lcfile\\\":{}}\""), NULL,
     "{\"alert\":\"[${text}]\"}", NULL, PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"[]\"}", "{\"alert\":\"[]\"}", PGW_PROFILE_PROD},
    {"text of other JSON content", EV(",\"content\":\"{\\\"a\\\":1}\""), NULL,
     "{\"alert\":\"${text}\"}", NULL, PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"{\\\"a\\\":1}\"}", "{\"alert\":\"{\\\"a\\\":1}\"}",
     PGW_PROFILE_PROD},
    {"text absent", EV(""), NULL, "{\"alert\":\"<${text}>\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"<>\"}", "{\"alert\":\"<>\"}",
     PGW_PROFILE_PROD},
    {"unknown variables stay", EV(""), NULL,
     "{\"alert\":\"${foo} ${convId ${ $ ${convId}\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"${foo} ${convId ${ $ conv1\"}",
     "{\"alert\":\"${foo} ${convId ${ $ conv1\"}", PGW_PROFILE_PROD},
    {"nested objects and arrays", EV(""), NULL,
     "{\"a\":{\"b\":[\"${convId}\",{\"c\":\"${fromClientId}\"},5,true]}}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"a\":{\"b\":[\"conv1\",{\"c\":\"Tom\"},5,true]}}",
     "{\"a\":{\"b\":[\"conv1\",{\"c\":\"Tom\"},5,true]}}", PGW_PROFILE_PROD},
    {"keys are not expanded", EV(""), NULL, "{\"${convId}\":1}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"${convId}\":1}", "{\"${convId}\":1}",
     PGW_PROFILE_PROD},
    {"values inserted as text (escaping)",
     EV(",\"content\":\"q\\\" b\\\\ n\\n t\\t \\u0001 \xe4\xb8\xad "
        "\xf0\x9f\x98\x80\""),
     NULL, "{\"alert\":\"${text}\"}", NULL, PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"q\\\" b\\\\ n\\n t\\t \\u0001 \xe4\xb8\xad "
     "\xf0\x9f\x98\x80\"}",
     "{\"alert\":\"q\\\" b\\\\ n\\n t\\t \\u0001 \xe4\xb8\xad "
     "\xf0\x9f\x98\x80\"}",
     PGW_PROFILE_PROD},
    {"variables in pushData string",
     EV(",\"pushData\":\"{\\\"alert\\\":"
        "\\\"${fromClientId}\\\"}\""),
     NULL, NULL, NULL, PGW_RESOLVE_SOURCE_PUSHDATA, "{\"alert\":\"Tom\"}",
     "{\"alert\":\"Tom\"}", PGW_PROFILE_PROD},
    {"variables in hook pushMessage", EV(""),
     "{\"pushMessage\":\"${convId} says\"}", NULL, NULL,
     PGW_RESOLVE_SOURCE_HOOK, "{\"alert\":\"conv1 says\"}",
     "{\"alert\":\"conv1 says\"}", PGW_PROFILE_PROD},

    /* Internal keys. */
    {"_profile dev", EV(""), NULL, "{\"alert\":\"a\",\"_profile\":\"dev\"}",
     NULL, PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}",
     "{\"alert\":\"a\"}", PGW_PROFILE_DEV},
    {"_profile prod", EV(""), NULL, "{\"alert\":\"a\",\"_profile\":\"prod\"}",
     NULL, PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}",
     "{\"alert\":\"a\"}", PGW_PROFILE_PROD},
    {"_profile invalid", EV(""), NULL,
     "{\"alert\":\"a\",\"_profile\":\"staging\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}", "{\"alert\":\"a\"}",
     PGW_PROFILE_BAD},
    {"_profile not a string", EV(""), NULL, "{\"alert\":\"a\",\"_profile\":1}",
     NULL, PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}",
     "{\"alert\":\"a\"}", PGW_PROFILE_BAD},
    {"_profile inside ios is ignored and stripped", EV(""), NULL,
     "{\"ios\":{\"alert\":\"a\",\"_profile\":\"dev\"}}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}", "{}", PGW_PROFILE_PROD},
    {"_apns_team_id stripped", EV(""), NULL,
     "{\"alert\":\"a\",\"_apns_team_id\":\"TEAM2\"}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"a\"}", "{\"alert\":\"a\"}",
     PGW_PROFILE_PROD},

    {"internal and platform keys are case-sensitive (fuzz hang)", EV(""), NULL,
     "{\"alert\":\"a\",\"_Profile\":\"dev\",\"IOS\":{\"x\":1}}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"a\",\"_Profile\":\"dev\",\"IOS\":{\"x\":1}}",
     "{\"alert\":\"a\",\"_Profile\":\"dev\",\"IOS\":{\"x\":1}}",
     PGW_PROFILE_PROD},

    /* Platform objects. */
    {"ios and android objects", EV(""), NULL,
     "{\"alert\":\"top\",\"ios\":{\"alert\":\"i\",\"thread-id\":\"t\"},"
     "\"android\":{\"alert\":\"a\",\"title\":\"T\"}}",
     NULL, PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"i\",\"thread-id\":\"t\"}",
     "{\"alert\":\"a\",\"title\":\"T\"}", PGW_PROFILE_PROD},
    {"only ios object", EV(""), NULL,
     "{\"alert\":\"top\",\"ios\":{\"alert\":\"i\"}}", NULL,
     PGW_RESOLVE_SOURCE_TEMPLATE, "{\"alert\":\"i\"}", "{\"alert\":\"top\"}",
     PGW_PROFILE_PROD},
    {"non-object platform key dropped", EV(""), NULL,
     "{\"alert\":\"top\",\"android\":\"x\"}", NULL, PGW_RESOLVE_SOURCE_TEMPLATE,
     "{\"alert\":\"top\"}", "{\"alert\":\"top\"}", PGW_PROFILE_PROD},

    /* The LeanMessage guide's examples. */
    {"guide pushData",
     EV(",\"pushData\":{\"alert\":\"您有一条未读的消息\",\"category\":"
        "\"消息\",\"badge\":1,\"sound\":\"声音文件名\",\"custom-key\":"
        "\"由用户添加的自定义属性，custom-key 仅是举例，可随意替换\"}"),
     NULL, GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_PUSHDATA,
     "{\"alert\":\"您有一条未读的消息\",\"category\":\"消息\",\"badge\":1,"
     "\"sound\":\"声音文件名\",\"custom-key\":"
     "\"由用户添加的自定义属性，custom-key 仅是举例，可随意替换\"}",
     "{\"alert\":\"您有一条未读的消息\",\"category\":\"消息\",\"badge\":1,"
     "\"sound\":\"声音文件名\",\"custom-key\":"
     "\"由用户添加的自定义属性，custom-key 仅是举例，可随意替换\"}",
     PGW_PROFILE_PROD},
    {"guide hook example", EV(",\"content\":\"hello world\""),
     "{\"result\":{\"pushMessage\":\"{\\\"badge\\\":\\\"Increment\\\","
     "\\\"sound\\\":\\\"default\\\",\\\"_profile\\\":\\\"dev\\\","
     "\\\"alert\\\":\\\"hello \\\"}\"}}",
     GUIDE_TEMPLATE, NULL, PGW_RESOLVE_SOURCE_HOOK,
     "{\"badge\":\"Increment\",\"sound\":\"default\",\"alert\":\"hello \"}",
     "{\"badge\":\"Increment\",\"sound\":\"default\",\"alert\":\"hello \"}",
     PGW_PROFILE_DEV},
    {"guide mixed platforms",
     EV(",\"pushData\":{\"_profile\":\"dev\",\"ios\":{\"badge\":"
        "\"Increment\",\"alert\":{\"title\":\"t\",\"body\":\"b\"},"
        "\"thread-id\":\"x\"},\"android\":{\"title\":\"t\",\"alert\":\"b\"}}"),
     NULL, NULL, NULL, PGW_RESOLVE_SOURCE_PUSHDATA,
     "{\"badge\":\"Increment\",\"alert\":{\"title\":\"t\",\"body\":\"b\"},"
     "\"thread-id\":\"x\"}",
     "{\"title\":\"t\",\"alert\":\"b\"}", PGW_PROFILE_DEV},
    /* One platform's own object; the other gets the rest, internal keys
     * stripped from both (the trees the platforms share are freed once). */
    {"one platform object",
     EV(",\"pushData\":{\"alert\":\"a\",\"_apns_team_id\":\"\","
        "\"android\":{\"title\":\"t\",\"_profile\":\"x\"}}"),
     NULL, NULL, NULL, PGW_RESOLVE_SOURCE_PUSHDATA, "{\"alert\":\"a\"}",
     "{\"title\":\"t\"}", PGW_PROFILE_PROD},
};

static void test_resolve_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(rcases); i++) {
        const struct rcase *c = &rcases[i];
        struct pgw_event *ev = parse_event(c->event);
        struct pgw_hook_answer *hook = parse_hook(c->hook);
        cJSON *tmpl = c->tmpl ? cJSON_Parse(c->tmpl) : NULL;
        struct pgw_resolved *res = NULL;
        struct pgw_json_error err;
        char *ios = NULL, *android = NULL;

        if (pgw_resolve_event(ev, hook, tmpl, 604800, &res, &err) != 0)
            fail_msg("case '%s': resolve failed", c->name);
        if ((c->skip == NULL) != (res->skip_reason == NULL) ||
            (c->skip && strcmp(c->skip, res->skip_reason) != 0))
            fail_msg("case '%s': skip '%s'", c->name,
                     res->skip_reason ? res->skip_reason : "(null)");
        if (res->source != c->source)
            fail_msg("case '%s': source %d", c->name, (int)res->source);
        if (!c->skip) {
            ios = print_variant(res, 0);
            android = print_variant(res, 2);
            if (strcmp(ios, c->ios) != 0)
                fail_msg("case '%s': ios content %s", c->name, ios);
            if (strcmp(android, c->android) != 0)
                fail_msg("case '%s': android content %s", c->name, android);
            if (res->profile != c->profile)
                fail_msg("case '%s': profile %d", c->name, (int)res->profile);
        }
        assert_true(res->expires_at_s == 1700000000 + 604800);
        free(ios);
        free(android);
        pgw_resolve_free(res);
        cJSON_Delete(tmpl);
        pgw_resolve_hook_answer_free(hook);
        pgw_event_free(ev);
    }
}

/* ---- recipients and per-installation verdicts ---- */

static struct pgw_resolved *resolve(const char *event, const char *hook,
                                    const char *tmpl)
{
    struct pgw_event *ev = parse_event(event);
    struct pgw_hook_answer *h = parse_hook(hook);
    cJSON *t = cJSON_Parse(tmpl ? tmpl : GUIDE_TEMPLATE);
    struct pgw_resolved *res = NULL;
    struct pgw_json_error err;

    assert_int_equal(pgw_resolve_event(ev, h, t, 604800, &res, &err), 0);
    cJSON_Delete(t);
    pgw_resolve_hook_answer_free(h);
    /* The result must not depend on the event staying alive. */
    pgw_event_free(ev);
    return res;
}

static void check_recipients(struct pgw_resolved *res, const char *expect)
{
    char buf[256] = "";

    for (size_t i = 0; i < res->n_recipients; i++) {
        strcat(buf, i ? "," : "");
        strcat(buf, res->recipients[i]);
    }
    assert_string_equal(buf, expect);
}

static void test_recipients(void **state)
{
    struct pgw_resolved *res;
    const char *ev = "{\"fromPeer\":\"Tom\",\"convId\":\"c\",\"offlinePeers\":"
                     "[\"A\",\"B\",\"C\"],\"timestamp\":1700000000000,"
                     "\"mutedPeers\":[\"B\",\"Z\"]}";

    (void)state;
    res = resolve(ev, NULL, NULL);
    check_recipients(res, "A,C"); /* muted removed */
    pgw_resolve_free(res);

    res = resolve(ev, "{\"force\":true}", NULL);
    check_recipients(res, "A,B,C"); /* force keeps muted */
    pgw_resolve_free(res);

    res = resolve(ev, "{\"offlinePeers\":[\"C\",\"X\",\"B\",\"A\"]}", NULL);
    check_recipients(res, "C,A"); /* X is not in the event; B muted */
    pgw_resolve_free(res);

    res = resolve(ev, "{\"result\":{\"offlinePeers\":[\"B\"],\"force\":1}}",
                  NULL);
    check_recipients(res, "B");
    pgw_resolve_free(res);

    res = resolve(ev, "{\"offlinePeers\":[]}", NULL);
    assert_string_equal(res->skip_reason, "no_recipients");
    pgw_resolve_free(res);

    res = resolve(ev, "{\"offlinePeers\":[\"B\"]}", NULL);
    assert_string_equal(res->skip_reason, "no_recipients");
    pgw_resolve_free(res);
}

static const char *const ch_jerry[] = {"Jerry"};
static const char *const ch_bob[] = {"Bob"};
static const char *const ch_both[] = {"Nobody", "Bob", "Jerry"};
static const char *const ch_none[] = {"Nobody"};

static void test_mentioned(void **state)
{
    const char *tmpl = "{\"alert\":\"normal\",\"_mentioned\":{\"alert\":"
                       "\"${fromClientId} mentioned you\",\"_profile\":\"x\","
                       "\"ios\":{\"alert\":\"@ios\"}}}";
    struct pgw_installation jerry = {
        1, PGW_PLATFORM_IOS, "t1", ch_jerry, 1, 0, NULL, NULL, NULL};
    struct pgw_installation bob = {
        2, PGW_PLATFORM_ANDROID, "t2", ch_bob, 1, 0, NULL, NULL, NULL};
    struct pgw_installation both = {
        3, PGW_PLATFORM_ANDROID, "t3", ch_both, 3, 0, NULL, NULL, NULL};
    struct pgw_resolved *res;
    const cJSON *c = NULL;
    int v = -1;
    char *s;

    (void)state;
    /* mentionOfflinePeers: only Bob is mentioned. */
    res = resolve(EV(",\"mentionOfflinePeers\":[\"Bob\"]"), NULL, tmpl);
    assert_true(res->has_mentioned);
    assert_int_equal(pgw_resolve_for_installation(res, &jerry, NULL, &v, &c),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 0);
    s = cJSON_PrintUnformatted(c);
    assert_string_equal(s, "{\"alert\":\"normal\"}");
    free(s);
    assert_int_equal(pgw_resolve_for_installation(res, &bob, NULL, &v, &c),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 3);
    s = cJSON_PrintUnformatted(c);
    assert_string_equal(s, "{\"alert\":\"Tom mentioned you\"}");
    free(s);
    /* A device of several recipients is mentioned if one of them is. */
    assert_int_equal(pgw_resolve_for_installation(res, &both, NULL, &v, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 3);
    s = print_variant(res, 1);
    assert_string_equal(s, "{\"alert\":\"@ios\"}");
    free(s);
    /* The top-level _profile counts, not the one in _mentioned. */
    assert_int_equal(res->profile, PGW_PROFILE_PROD);
    pgw_resolve_free(res);

    /* mentionAll: everyone is mentioned. */
    res = resolve(EV(",\"mentionAll\":true"), NULL, tmpl);
    assert_int_equal(pgw_resolve_for_installation(res, &jerry, NULL, &v, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 1);
    assert_int_equal(pgw_resolve_for_installation(res, &bob, NULL, &v, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 3);
    pgw_resolve_free(res);

    /* Without _mentioned, mentioned devices get the normal variant. */
    res = resolve(EV(",\"mentionAll\":true"), NULL, NULL);
    assert_false(res->has_mentioned);
    assert_int_equal(pgw_resolve_for_installation(res, &bob, NULL, &v, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 2);
    pgw_resolve_free(res);

    /* A non-object _mentioned is dropped. */
    res = resolve(EV(",\"mentionAll\":true"), NULL,
                  "{\"alert\":\"a\",\"_mentioned\":\"x\"}");
    assert_false(res->has_mentioned);
    s = print_variant(res, 0);
    assert_string_equal(s, "{\"alert\":\"a\"}");
    free(s);
    pgw_resolve_free(res);
}

static void test_team_and_profile(void **state)
{
    const char *tmpl = "{\"alert\":\"a\",\"_apns_team_id\":\"TEAM2\"}";
    struct pgw_installation any = {
        1, PGW_PLATFORM_IOS, "t", ch_jerry, 1, 0, NULL, NULL, NULL};
    struct pgw_installation same = {2,    PGW_PLATFORM_IOS, "t", ch_jerry, 1, 0,
                                    NULL, "TEAM2",          NULL};
    struct pgw_installation other = {
        3, PGW_PLATFORM_IOS, "t", ch_jerry, 1, 0, NULL, "TEAM1", NULL};
    struct pgw_installation andr = {
        4, PGW_PLATFORM_ANDROID, "t", ch_jerry, 1, 0, NULL, "TEAM1", NULL};
    struct pgw_installation stranger = {
        5, PGW_PLATFORM_IOS, "t", ch_none, 1, 0, NULL, NULL, NULL};
    struct pgw_resolved *res;

    (void)state;
    res = resolve(EV(""), NULL, tmpl);
    assert_string_equal(res->apns_team_id, "TEAM2");
    /* A device with no team is of the app's default team: it gets a
     * push to that team only. */
    assert_int_equal(
        pgw_resolve_for_installation(res, &any, "TEAM2", NULL, NULL),
        PGW_RESOLVE_SEND);
    assert_int_equal(
        pgw_resolve_for_installation(res, &any, "TEAM1", NULL, NULL),
        PGW_RESOLVE_OTHER_TEAM);
    assert_int_equal(pgw_resolve_for_installation(res, &any, NULL, NULL, NULL),
                     PGW_RESOLVE_OTHER_TEAM);
    assert_int_equal(pgw_resolve_for_installation(res, &same, NULL, NULL, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(
        pgw_resolve_for_installation(res, &same, "TEAM1", NULL, NULL),
        PGW_RESOLVE_SEND);
    assert_int_equal(
        pgw_resolve_for_installation(res, &other, "TEAM1", NULL, NULL),
        PGW_RESOLVE_OTHER_TEAM);
    assert_int_equal(
        pgw_resolve_for_installation(res, &other, NULL, NULL, NULL),
        PGW_RESOLVE_OTHER_TEAM);
    assert_int_equal(pgw_resolve_for_installation(res, &andr, NULL, NULL, NULL),
                     PGW_RESOLVE_SEND);
    assert_int_equal(
        pgw_resolve_for_installation(res, &stranger, NULL, NULL, NULL),
        PGW_RESOLVE_NOT_RECIPIENT);
    pgw_resolve_free(res);

    /* No _apns_team_id: every team. */
    res = resolve(EV(""), NULL, NULL);
    assert_null(res->apns_team_id);
    assert_int_equal(
        pgw_resolve_for_installation(res, &other, NULL, NULL, NULL),
        PGW_RESOLVE_SEND);
    pgw_resolve_free(res);

    /* Bad profile: iOS fails, Android is sent. */
    res = resolve(EV(""), NULL, "{\"alert\":\"a\",\"_profile\":\"test\"}");
    assert_int_equal(pgw_resolve_for_installation(res, &any, NULL, NULL, NULL),
                     PGW_RESOLVE_BAD_PROFILE);
    assert_int_equal(pgw_resolve_for_installation(res, &andr, NULL, NULL, NULL),
                     PGW_RESOLVE_SEND);
    pgw_resolve_free(res);

    /* Skipped events send nothing to anyone. */
    res = resolve(EV(""), "{\"skip\":\"yes\"}", NULL);
    assert_int_equal(pgw_resolve_for_installation(res, &any, NULL, NULL, NULL),
                     PGW_RESOLVE_SKIPPED);
    assert_null(pgw_resolve_variant(res, 0));
    pgw_resolve_free(res);
}

static void test_expansion_caps(void **state)
{
    /* 2000 x ${text} of a 4000-byte text: over the total cap. */
    size_t n = 2000;
    char *tmpl = malloc(n * 12 + 32);
    char *ev = malloc(8192);
    char *text = malloc(4001);
    struct pgw_event *e;
    struct pgw_resolved *res = NULL;
    struct pgw_json_error err;
    cJSON *t;
    char *p;

    (void)state;
    memset(text, 'x', 4000);
    text[4000] = '\0';
    snprintf(ev, 8192, EV(",\"content\":\"%s\""), text);
    p = tmpl + sprintf(tmpl, "{\"a\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"${text}\"", i ? "," : "");
    sprintf(p, "]}");
    e = parse_event(ev);
    t = cJSON_Parse(tmpl);
    assert_non_null(t);
    assert_int_equal(pgw_resolve_event(e, NULL, t, 604800, &res, &err),
                     PGW_ERR_TOO_LARGE);
    assert_null(res);
    cJSON_Delete(t);

    /* One string repeated past 64 KiB is cut on a UTF-8 boundary. */
    t = cJSON_Parse("{\"alert\":\"\xe4\xb8\xad${text}${text}${text}${text}"
                    "${text}${text}${text}${text}${text}${text}${text}${text}"
                    "${text}${text}${text}${text}${text}${text}\"}");
    assert_int_equal(pgw_resolve_event(e, NULL, t, 604800, &res, &err), 0);
    {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(
            pgw_resolve_variant(res, 0), "alert");
        size_t len = strlen(a->valuestring);
        assert_true(len <= PGW_RESOLVE_MAX_STRING_BYTES);
        assert_true(len > PGW_RESOLVE_MAX_STRING_BYTES - 4);
        assert_true(pgw_utf8_valid(a->valuestring, len));
    }
    pgw_resolve_free(res);
    cJSON_Delete(t);
    pgw_event_free(e);
    free(tmpl);
    free(ev);
    free(text);
}

/* ---- hook answers ---- */

struct hcase {
    const char *json;
    int rc;
    bool skip, force, has_peers;
    size_t n_peers;
    const char *push; /* printed pushMessage or NULL */
};

static void test_hook_answers(void **state)
{
    static const struct hcase cases[] = {
        {"{}", 0, false, false, false, 0, NULL},
        {"{\"result\":{}}", 0, false, false, false, 0, NULL},
        {"{\"skip\":true}", 0, true, false, false, 0, NULL},
        {"{\"skip\":1}", 0, true, false, false, 0, NULL},
        {"{\"skip\":\"x\"}", 0, true, false, false, 0, NULL},
        {"{\"skip\":0}", 0, false, false, false, 0, NULL},
        {"{\"skip\":\"\"}", 0, false, false, false, 0, NULL},
        {"{\"skip\":null}", 0, false, false, false, 0, NULL},
        {"{\"skip\":false,\"force\":true}", 0, false, true, false, 0, NULL},
        {"{\"result\":{\"skip\":true}}", 0, true, false, false, 0, NULL},
        {"{\"offlinePeers\":[\"a\",\"b\",\"a\",3,\"\"]}", 0, false, false, true,
         2, NULL},
        {"{\"offlinePeers\":[]}", 0, false, false, true, 0, NULL},
        {"{\"offlinePeers\":null}", 0, false, false, false, 0, NULL},
        {"{\"offlinePeers\":\"a\"}", PGW_ERR_INVAL, false, false, false, 0,
         NULL},
        {"{\"pushMessage\":\"{\\\"alert\\\":\\\"x\\\",\\\"badge\\\":2}\"}", 0,
         false, false, false, 0, "{\"alert\":\"x\",\"badge\":2}"},
        {"{\"pushMessage\":\"plain text\"}", 0, false, false, false, 0,
         "{\"alert\":\"plain text\"}"},
        {"{\"pushMessage\":\"[1,2]\"}", 0, false, false, false, 0,
         "{\"alert\":\"[1,2]\"}"},
        {"{\"pushMessage\":\"{broken\"}", 0, false, false, false, 0,
         "{\"alert\":\"{broken\"}"},
        {"{\"pushMessage\":{\"alert\":\"o\"}}", 0, false, false, false, 0,
         "{\"alert\":\"o\"}"},
        {"{\"pushMessage\":5}", PGW_ERR_INVAL, false, false, false, 0, NULL},
        {"{\"pushMessage\":null}", 0, false, false, false, 0, NULL},
        {"[1]", PGW_ERR_INVAL, false, false, false, 0, NULL},
        {"not json", PGW_ERR_INVAL, false, false, false, 0, NULL},
        {"{\"result\":\"text\"}", 0, false, false, false, 0, NULL},
        {"{\"a\":\"\xc3\"}", PGW_ERR_INVAL, false, false, false, 0, NULL},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        const struct hcase *c = &cases[i];
        struct pgw_hook_answer *a = NULL;
        struct pgw_json_error err;
        int rc = pgw_resolve_parse_hook_answer(c->json, strlen(c->json), NULL,
                                               &a, &err);
        if (rc != c->rc)
            fail_msg("hook case %zu: rc %d", i, rc);
        if (rc < 0) {
            assert_null(a);
            continue;
        }
        if (a->skip != c->skip || a->force != c->force ||
            a->has_offline_peers != c->has_peers ||
            a->n_offline_peers != c->n_peers)
            fail_msg("hook case %zu: fields", i);
        if (c->push) {
            char *s = cJSON_PrintUnformatted(a->push_message);
            if (strcmp(s, c->push) != 0)
                fail_msg("hook case %zu: pushMessage %s", i, s);
            free(s);
        } else if (a->push_message) {
            fail_msg("hook case %zu: unexpected pushMessage", i);
        }
        pgw_resolve_hook_answer_free(a);
    }
}

/* The data of a push-API request: every device given is a recipient,
 * whatever its channels; the request's profile wins over _profile; the
 * internal keys (and _mentioned) never reach a device; ${…} stay as they
 * are (no event variables). */
static void test_api_push(void **state)
{
    struct pgw_installation stranger = {
        5, PGW_PLATFORM_IOS, "t", ch_none, 1, 0, NULL, "TEAM2", NULL};
    struct pgw_installation andr = {
        4, PGW_PLATFORM_ANDROID, "t", ch_none, 1, 0, NULL, NULL, NULL};
    struct pgw_json_error err;
    struct pgw_resolved *res = NULL;
    const cJSON *c = NULL;
    cJSON *data = cJSON_Parse(
        "{\"alert\":\"hi ${convId}\",\"_profile\":\"dev\",\"_mentioned\":"
        "{\"alert\":\"m\"},\"_apns_team_id\":\"TEAM2\",\"android\":"
        "{\"alert\":\"a\"}}");
    int v = -1;

    (void)state;
    assert_non_null(data);
    assert_int_equal(pgw_resolve_api_push(data, NULL, 100, 200, &res, &err), 0);
    assert_int_equal(res->profile, PGW_PROFILE_DEV);
    assert_string_equal(res->apns_team_id, "TEAM2");
    assert_int_equal(res->expires_at_s, 200);
    assert_int_equal(pgw_resolve_for_installation(res, &stranger, NULL, &v, &c),
                     PGW_RESOLVE_SEND);
    assert_int_equal(v, 0);
    assert_string_equal(cJSON_GetObjectItem(c, "alert")->valuestring,
                        "hi ${convId}");
    assert_null(cJSON_GetObjectItem(c, "_profile"));
    assert_null(cJSON_GetObjectItem(c, "_mentioned"));
    assert_null(cJSON_GetObjectItem(c, "android"));
    assert_int_equal(pgw_resolve_for_installation(res, &andr, NULL, &v, &c),
                     PGW_RESOLVE_SEND);
    assert_string_equal(cJSON_GetObjectItem(c, "alert")->valuestring, "a");
    pgw_resolve_free(res);

    /* The request's profile overrides the content's. */
    assert_int_equal(pgw_resolve_api_push(data, "prod", 100, 200, &res, &err),
                     0);
    assert_int_equal(res->profile, PGW_PROFILE_PROD);
    pgw_resolve_free(res);
    cJSON_Delete(data);

    data = cJSON_Parse("[1]");
    assert_int_equal(pgw_resolve_api_push(data, NULL, 1, 2, &res, &err),
                     PGW_ERR_INVAL);
    cJSON_Delete(data);
}

static void test_platform_names(void **state)
{
    enum pgw_platform p;

    (void)state;
    assert_int_equal(pgw_platform_parse("ios", &p), 0);
    assert_int_equal(p, PGW_PLATFORM_IOS);
    assert_int_equal(pgw_platform_parse("android", &p), 0);
    assert_int_equal(p, PGW_PLATFORM_ANDROID);
    assert_int_equal(pgw_platform_parse("IOS", &p), PGW_ERR_INVAL);
    assert_string_equal(pgw_platform_name(PGW_PLATFORM_ANDROID), "android");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_table),
        cmocka_unit_test(test_recipients),
        cmocka_unit_test(test_mentioned),
        cmocka_unit_test(test_team_and_profile),
        cmocka_unit_test(test_expansion_caps),
        cmocka_unit_test(test_hook_answers),
        cmocka_unit_test(test_platform_names),
        cmocka_unit_test(test_api_push),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
