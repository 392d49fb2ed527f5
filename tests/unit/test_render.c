/*
 * Golden-file tests of `pushgw render`: runs the real binary on the event
 * files of tests/golden/ and compares stdout with <name>.out byte for byte.
 * The events are timestamped in 2100 so expiry and ttl do not depend on
 * the clock (ttl is capped at validity_s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define GOLDEN PUSHGW_SOURCE_DIR "/tests/golden"

struct gcase {
    const char *app;
    const char *event;    /* file in tests/golden */
    const char *platform; /* NULL: all */
    const char *expect;   /* .out file, NULL: no stdout */
    int status;
    const char *err; /* substring of stderr, NULL: empty */
};

static const struct gcase gcases[] = {
    {"demo", "static-template.json", NULL, "static-template.out", 0, NULL},
    {"chat", "static-template.json", "android", "static-template-android.out",
     0, NULL},
    {"chat", "pushdata-platforms.json", NULL, "pushdata-platforms.out", 0,
     NULL},
    {"chat", "hook-mentioned.json", NULL, "hook-mentioned.out", 0, NULL},
    {"chat", "errors.json", NULL, "errors.out", 0, NULL},
    /* Every line an error: the lines, and exit 1 with one line saying so. */
    {"chat", "expired.json", NULL, "expired.out", 1,
     "all 2 line(s) are errors"},
    /* The outcomes serve records for a push that cannot be sent: render
     * and serve share the per-device step (push.h). */
    {"nokeys", "no-keys.json", NULL, "no-keys.out", 1,
     "all 2 line(s) are errors"},
    {"certs", "no-keys.json", NULL, "cert-app.out", 0, NULL},
    {"chat", "unknown-team.json", NULL, "unknown-team.out", 0, NULL},
    /* A push to the default team reaches the devices that name none, not
     * another team's; a numeric badge is sent as is; "increment" is not
     * "Increment" (case-sensitive): no badge. */
    {"chat", "team-badge.json", NULL, "team-badge.out", 0, NULL},
    {"chat", "badge-lowercase.json", NULL, "badge-lowercase.out", 0, NULL},
    {"chat", "too-large.json", NULL, "too-large.out", 1,
     "all 2 line(s) are errors"},
    /* Nothing for a platform once _profile is stripped: not sent. */
    {"chat", "no-content.json", NULL, "no-content.out", 1,
     "all 2 line(s) are errors"},
    {"chat", "bad-event.json", NULL, NULL, 2,
     "offlinePeers: must not be empty"},
    {"nope", "static-template.json", NULL, NULL, 2, "unknown app 'nope'"},
    /* Without installations in the file, render asks the database (here
     * one that is not there: a runtime failure, exit 1). */
    {"chat", "no-installations.json", NULL, NULL, 1,
     "could not look up installations in the database"},
    {"chat", "missing-file.json", NULL, NULL, 2, "could not open"},
    {"chat", "static-template.json", "windows", NULL, 2, "--platform"},
};

static void test_golden(void **state)
{
    static const char *const no_db[] = {
        "PUSHGW_DATABASE_URL=host=127.0.0.1 port=1 connect_timeout=2", NULL};
    (void)state;
    for (size_t i = 0; i < sizeof(gcases) / sizeof(gcases[0]); i++) {
        const struct gcase *c = &gcases[i];
        const char *argv[10];
        char event[512];
        char *out = NULL, *err = NULL, *want = NULL;
        int n = 0, status;

        snprintf(event, sizeof(event), "%s/%s", GOLDEN, c->event);
        argv[n++] = "render";
        argv[n++] = "-c";
        argv[n++] = GOLDEN "/pushgw.ini";
        argv[n++] = "--app";
        argv[n++] = c->app;
        argv[n++] = "--event";
        argv[n++] = event;
        if (c->platform) {
            argv[n++] = "--platform";
            argv[n++] = c->platform;
        }
        argv[n] = NULL;
        status = tu_run_pushgw(argv, no_db, &out, &err);
        if (status != c->status)
            fail_msg("%s: exit %d, stderr %s", c->event, status,
                     err ? err : "");
        if (c->expect) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", GOLDEN, c->expect);
            want = tu_read_file(path);
            assert_non_null(want);
            if (strcmp(out ? out : "", want) != 0)
                fail_msg("%s: output differs:\n%s\nwanted:\n%s", c->event,
                         out ? out : "", want);
        } else if (out && out[0]) {
            fail_msg("%s: unexpected output %s", c->event, out);
        }
        if (c->err && (!err || !strstr(err, c->err)))
            fail_msg("%s: stderr '%s' lacks '%s'", c->event, err ? err : "",
                     c->err);
        if (!c->err && err && err[0])
            fail_msg("%s: unexpected stderr '%s'", c->event, err);
        /* Errors are one line. */
        if (c->status && err && strchr(err, '\n') != strrchr(err, '\n'))
            fail_msg("%s: more than one error line: %s", c->event, err);
        free(out);
        free(err);
        free(want);
    }
}

/* Every line of every golden output is one JSON object. */
static void test_golden_lines_are_json(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(gcases) / sizeof(gcases[0]); i++) {
        char path[512], *text, *line, *save = NULL;
        if (!gcases[i].expect)
            continue;
        snprintf(path, sizeof(path), "%s/%s", GOLDEN, gcases[i].expect);
        text = tu_read_file(path);
        assert_non_null(text);
        for (line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            assert_int_equal(line[0], '{');
            assert_int_equal(line[strlen(line) - 1], '}');
        }
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_lines_are_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
