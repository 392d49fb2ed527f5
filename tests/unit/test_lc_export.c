/* Tests of the _Installation export reader: formats, line numbers, bad
 * records, the record cap, and bounded memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "lc_export.h"
#include "pushgw.h"

/*
 * Each case is read whole, a byte at a time and in 7-byte pieces; the
 * items must be the same each time. Items are written as one word each:
 * R<line>:<objectId or -> for a record, M<line> malformed, T<line> over
 * the cap, B<line> broken.
 */
struct read_case {
    const char *name;
    const char *text;
    size_t max_record; /* 0: the default */
    enum pgw_lc_export_format fmt;
    const char *items;
    const char *reason; /* substring of the first error's reason, or NULL */
};

static const struct read_case read_cases[] = {
    {"empty file", "", 0, PGW_LC_EXPORT_UNKNOWN, "", NULL},
    {"blanks only", " \n\n\t\r\n", 0, PGW_LC_EXPORT_UNKNOWN, "", NULL},
    {"jsonl", "{\"objectId\":\"a\"}\n{\"objectId\":\"b\"}\n", 0,
     PGW_LC_EXPORT_JSONL, "R1:a R2:b", NULL},
    {"jsonl no final newline", "{\"objectId\":\"a\"}\n{\"objectId\":\"b\"}", 0,
     PGW_LC_EXPORT_JSONL, "R1:a R2:b", NULL},
    {"jsonl crlf and blank lines",
     "\r\n{\"objectId\":\"a\"}\r\n\r\n  \n{\"objectId\":\"b\"}\r\n", 0,
     PGW_LC_EXPORT_JSONL, "R2:a R5:b", NULL},
    {"jsonl bom", "\xEF\xBB\xBF{\"objectId\":\"a\"}\n", 0, PGW_LC_EXPORT_JSONL,
     "R1:a", NULL},
    {"jsonl malformed line goes on",
     "{\"objectId\":\"a\"}\n{\"objectId\":\n{\"objectId\":\"c\"}\n", 0,
     PGW_LC_EXPORT_JSONL, "R1:a M2 R3:c", "invalid JSON"},
    {"jsonl not an object", "{\"objectId\":\"a\"}\n[1,2]\n\"x\"\n", 0,
     PGW_LC_EXPORT_JSONL, "R1:a M2 M3", "not a JSON object"},
    {"jsonl first line garbage", "garbage\n{\"objectId\":\"b\"}\n", 0,
     PGW_LC_EXPORT_JSONL, "M1 R2:b", "invalid JSON"},
    {"jsonl trailing characters", "{\"objectId\":\"a\"} x\n", 0,
     PGW_LC_EXPORT_JSONL, "M1", "trailing"},
    {"jsonl bad utf-8", "{\"objectId\":\"\xC0\xAF\"}\n{\"objectId\":\"b\"}\n",
     0, PGW_LC_EXPORT_JSONL, "M1 R2:b", NULL},
    {"jsonl nul escape", "{\"objectId\":\"a\\u0000\"}\n", 0,
     PGW_LC_EXPORT_JSONL, "M1", NULL},
    {"jsonl two objects on a line",
     "{\"objectId\":\"a\"}{\"objectId\":\"b\"}\n", 0, PGW_LC_EXPORT_JSONL, "M1",
     NULL},
    {"jsonl truncated last line", "{\"objectId\":\"a\"}\n{\"objectId\":\"b", 0,
     PGW_LC_EXPORT_JSONL, "R1:a M2", NULL},
    {"jsonl line over the cap",
     "{\"objectId\":\"a\"}\n{\"objectId\":"
     "\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbb\"}\n{\"objectId\":\"c\"}\n",
     40, PGW_LC_EXPORT_JSONL, "R1:a T2 R3:c", "larger than 40"},
    {"jsonl last line over the cap",
     "{\"objectId\":\"a\"}\n{\"objectId\":"
     "\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbbbbbb\"}",
     40, PGW_LC_EXPORT_JSONL, "R1:a T2", "larger than 40"},
    {"jsonl deep nesting",
     "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]}\n{\"objectId\":\"b\"}\n",
     0, PGW_LC_EXPORT_JSONL, "M1 R2:b", NULL},
    {"jsonl object not results", "{\"results\":1}\n{\"objectId\":\"b\"}\n", 0,
     PGW_LC_EXPORT_JSONL, "R1:- R2:b", NULL},
    {"array", "[{\"objectId\":\"a\"},{\"objectId\":\"b\"}]", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a R1:b", NULL},
    {"array pretty",
     "[\n  {\n    \"objectId\": \"a\",\n    \"channels\": [\"x\", \"y]\"]\n  },"
     "\n  {\n    \"objectId\": \"b,\"\n  }\n]\n",
     0, PGW_LC_EXPORT_ARRAY, "R2:a R6:b,", NULL},
    {"array empty", "  [ ]  ", 0, PGW_LC_EXPORT_ARRAY, "", NULL},
    {"array escaped quotes",
     "[{\"objectId\":\"a\\\"]}\"},\n{\"objectId\":\"b\\\\\"}]", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a\"]} R2:b\\", NULL},
    {"array bad element goes on",
     "[{\"objectId\":\"a\"},\n{\"objectId\":tru},\n7,\n{\"objectId\":\"d\"}]",
     0, PGW_LC_EXPORT_ARRAY, "R1:a M2 M3 R4:d", "invalid JSON"},
    {"array empty element", "[{\"objectId\":\"a\"},,{\"objectId\":\"c\"}]", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a M1 R1:c", "empty array element"},
    {"array trailing comma", "[{\"objectId\":\"a\"},]", 0, PGW_LC_EXPORT_ARRAY,
     "R1:a", NULL},
    {"array unclosed", "[{\"objectId\":\"a\"},\n{\"objectId\":\"b\"}\n", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a B3", "ends inside"},
    {"array cut inside an element", "[{\"objectId\":\"a\"},\n{\"objectId\":", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a B2", "ends inside"},
    {"array stray brace", "[{\"objectId\":\"a\"}},\n{\"objectId\":\"b\"}]", 0,
     PGW_LC_EXPORT_ARRAY, "B1", "closes nothing"},
    {"array element over the cap",
     "[{\"objectId\":\"a\"},\n{\"objectId\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
     "bbbbbbbbbbbbbbbbbbbbbbb\",\"x\":[1,{\"y\":\"]\"}]},\n{\"objectId\":\"c\"}"
     "]",
     40, PGW_LC_EXPORT_ARRAY, "R1:a T2 R3:c", "larger than 40"},
    {"array trailer ignored", "[{\"objectId\":\"a\"}] junk {", 0,
     PGW_LC_EXPORT_ARRAY, "R1:a", NULL},
    {"parse results",
     "{\"results\":[\n{\"objectId\":\"a\"},\n{\"objectId\":\"b\"}\n]}\n", 0,
     PGW_LC_EXPORT_RESULTS, "R2:a R3:b", NULL},
    {"parse results spaced",
     " \n{ \"results\" :\n [{\"objectId\":\"a\"}], \"count\": 1}", 0,
     PGW_LC_EXPORT_RESULTS, "R3:a", NULL},
    {"parse results with bom", "\xEF\xBB\xBF{\"results\":[]}", 0,
     PGW_LC_EXPORT_RESULTS, "", NULL},
};

/* Appends the word of |item| to |out|, and frees its object. */
static void describe(const struct pgw_lc_export_item *item, char *out,
                     size_t size)
{
    const cJSON *id;
    char word[160];
    static const char kinds[] = "RMTB";

    if (item->kind == PGW_LC_EXPORT_RECORD) {
        id = cJSON_GetObjectItemCaseSensitive(item->object, "objectId");
        snprintf(word, sizeof(word), "R%llu:%s", (unsigned long long)item->line,
                 cJSON_IsString(id) ? id->valuestring : "-");
    } else {
        snprintf(word, sizeof(word), "%c%llu", kinds[item->kind],
                 (unsigned long long)item->line);
    }
    if (out[0])
        strncat(out, " ", size - strlen(out) - 1);
    strncat(out, word, size - strlen(out) - 1);
    cJSON_Delete(item->object);
}

/* Reads |text| in pieces of |step| bytes (0: whole); the items go to
 * |out|, the first error's reason to |reason|. */
static enum pgw_lc_export_format read_all(const char *text, size_t max,
                                          size_t step, char *out, size_t size,
                                          char *reason, size_t rsize)
{
    struct pgw_lc_export *r = pgw_lc_export_new(max);
    struct pgw_lc_export_item item;
    size_t len = strlen(text), off = 0;
    enum pgw_lc_export_format fmt;
    int rc;

    assert_non_null(r);
    out[0] = reason[0] = '\0';
    for (;;) {
        rc = pgw_lc_export_next(r, &item);
        assert_true(rc >= 0);
        if (rc == 1) {
            if (item.kind != PGW_LC_EXPORT_RECORD && !reason[0])
                snprintf(reason, rsize, "%s", item.reason);
            describe(&item, out, size);
            continue;
        }
        if (pgw_lc_export_done(r))
            break;
        if (off == len) {
            pgw_lc_export_finish(r);
            continue;
        }
        size_t n = step == 0 || len - off < step ? len - off : step;
        assert_int_equal(pgw_lc_export_feed(r, text + off, n), 0);
        off += n;
    }
    fmt = pgw_lc_export_get_format(r);
    pgw_lc_export_free(r);
    return fmt;
}

static void test_read_cases(void **state)
{
    static const size_t steps[] = {0, 1, 7};
    char out[1024], reason[128];

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(read_cases); i++) {
        const struct read_case *c = &read_cases[i];

        for (size_t s = 0; s < PGW_ARRAY_SIZE(steps); s++) {
            enum pgw_lc_export_format fmt =
                read_all(c->text, c->max_record, steps[s], out, sizeof(out),
                         reason, sizeof(reason));

            if (strcmp(out, c->items) != 0 || fmt != c->fmt ||
                (c->reason && !strstr(reason, c->reason)))
                fail_msg("case '%s' (pieces of %zu): items '%s' format %d "
                         "reason '%s'; expected '%s' format %d reason '%s'",
                         c->name, steps[s], out, (int)fmt, reason, c->items,
                         (int)c->fmt, c->reason ? c->reason : "");
        }
    }
}

/* A file far larger than the cap, with one line far larger too, is read
 * within about the cap plus a piece, whatever its size. */
static void test_bounded_memory(void **state)
{
    enum { PIECE = 65536, MAX = 4096, ROWS = 20000 };
    struct pgw_lc_export *r = pgw_lc_export_new(MAX);
    struct pgw_lc_export_item item;
    char piece[PIECE];
    size_t fill = 0, records = 0, large = 0, peak = 0;
    int row = 0, huge_left = 10 * 1024 * 1024, rc;

    (void)state;
    assert_non_null(r);
    for (;;) {
        rc = pgw_lc_export_next(r, &item);
        assert_true(rc >= 0);
        if (rc == 1) {
            if (item.kind == PGW_LC_EXPORT_RECORD)
                records++;
            if (item.kind == PGW_LC_EXPORT_TOO_LARGE) {
                large++;
                assert_int_equal(item.line, ROWS / 2 + 1);
            }
            cJSON_Delete(item.object);
            continue;
        }
        if (pgw_lc_export_done(r))
            break;
        if (row == ROWS) {
            pgw_lc_export_finish(r);
            continue;
        }
        /* Half the rows, then a 10 MiB line, then the other half. */
        fill = 0;
        while (fill + 100 < PIECE && row < ROWS) {
            if (row == ROWS / 2 && huge_left > 0) {
                size_t n = PIECE - fill;

                if (huge_left == 10 * 1024 * 1024) {
                    piece[fill++] = '{';
                    n--;
                }
                n = n < (size_t)huge_left ? n : (size_t)huge_left;
                memset(piece + fill, 'x', n);
                fill += n;
                huge_left -= (int)n;
                if (huge_left == 0)
                    piece[fill - 1] = '\n';
                break;
            }
            fill += (size_t)snprintf(piece + fill, PIECE - fill,
                                     "{\"objectId\":\"%d\"}\n", row++);
        }
        assert_int_equal(pgw_lc_export_feed(r, piece, fill), 0);
        if (pgw_lc_export_buffered(r) > peak)
            peak = pgw_lc_export_buffered(r);
    }
    assert_int_equal(records, ROWS);
    assert_int_equal(large, 1);
    assert_true(peak <= 2 * (MAX + PIECE));
    pgw_lc_export_free(r);
}

/* Feeding again while records are waiting is refused, not buffered. */
static void test_feed_busy(void **state)
{
    struct pgw_lc_export *r = pgw_lc_export_new(64);
    char line[200];

    (void)state;
    memset(line, 'x', sizeof(line));
    assert_int_equal(pgw_lc_export_feed(r, line, sizeof(line)), 0);
    assert_int_equal(pgw_lc_export_feed(r, line, sizeof(line)), 0);
    for (int i = 0; i < 40; i++)
        pgw_lc_export_feed(r, line, sizeof(line));
    assert_int_equal(pgw_lc_export_feed(r, line, sizeof(line)), PGW_ERR_BUSY);
    pgw_lc_export_finish(r);
    assert_int_equal(pgw_lc_export_feed(r, line, 1), PGW_ERR_INVAL);
    pgw_lc_export_free(r);
    pgw_lc_export_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_cases),
        cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_feed_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
