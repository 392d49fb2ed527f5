/* The mocks' record files (see tu_records.h). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t tu_records_count(const char *record)
{
    char *text = tu_read_file(record);
    size_t n = 0;

    for (const char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

size_t tu_records_wait(const char *record, size_t n, int timeout_ms)
{
    size_t got = 0;

    TU_POLL_UNTIL((got = tu_records_count(record)) >= n, timeout_ms);
    return got;
}

cJSON *tu_records_read(const char *record)
{
    char *text = tu_read_file(record);
    cJSON *arr = cJSON_CreateArray();
    char *save = NULL;

    assert_non_null(arr);
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (j)
            cJSON_AddItemToArray(arr, j);
    }
    free(text);
    return arr;
}

cJSON *tu_records_last_for(const char *record, const char *token)
{
    cJSON *recs = tu_records_read(record);
    cJSON *r, *found = NULL;

    cJSON_ArrayForEach(r, recs)
    {
        cJSON *t = cJSON_GetObjectItem(r, "token");
        if (cJSON_IsString(t) && strcmp(t->valuestring, token) == 0)
            found = r;
    }
    found = found ? cJSON_Duplicate(found, 1) : NULL;
    cJSON_Delete(recs);
    return found;
}

const char *tu_json_str(const cJSON *o, const char *path)
{
    static char num[64];
    char buf[256];
    char *save = NULL;
    const cJSON *cur = o;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && cur;
         k = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItem(cur, k);
    if (cJSON_IsString(cur))
        return cur->valuestring;
    if (cJSON_IsNumber(cur)) {
        snprintf(num, sizeof(num), "%g", cur->valuedouble);
        return num;
    }
    return cur ? "(non-string)" : "(missing)";
}

static const char *jpath(const cJSON *j, const char *a, const char *b,
                         const char *c)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    x = b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
    x = c ? cJSON_GetObjectItemCaseSensitive(x, c) : x;
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void tally_line(struct tu_tally *t, const char *line,
                       const char *const *tokens)
{
    cJSON *j = cJSON_Parse(line);
    const cJSON *st;
    const char *tok, *text;
    size_t d;
    char *end;
    unsigned long i;
    long long ts;

    if (!j)
        return;
    t->records++;
    st = cJSON_GetObjectItemCaseSensitive(j, "status");
    tok = jpath(j, "token", NULL, NULL);
    text = jpath(j, "body", "aps", "alert");
    if (!text) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "body"), "message");
        text = jpath(m, "notification", "body", NULL);
    }
    if (!cJSON_IsNumber(st) || st->valueint != 200) {
        t->non_200++;
        goto out;
    }
    if (!tok || !text || strncmp(text, "message ", 8) != 0)
        goto out;
    i = strtoul(text + 8, &end, 10);
    if (*end != '\0' || i >= t->n_events)
        goto out;
    for (d = 0; d < t->n_tokens; d++)
        if (strcmp(tokens[d], tok) == 0)
            break;
    if (d == t->n_tokens)
        goto out;
    t->counts[i * t->n_tokens + d]++;
    ts = (long long)cJSON_GetNumberValue(
        cJSON_GetObjectItemCaseSensitive(j, "ts_ms"));
    if (t->first_ms[i * t->n_tokens + d] == 0 ||
        ts < t->first_ms[i * t->n_tokens + d])
        t->first_ms[i * t->n_tokens + d] = ts;
out:
    cJSON_Delete(j);
}

void tu_tally(struct tu_tally *t, const char *const *records, size_t n_events,
              const char *const *tokens, size_t n_tokens)
{
    memset(t, 0, sizeof(*t));
    t->n_events = n_events;
    t->n_tokens = n_tokens;
    t->counts = calloc(n_events * n_tokens, sizeof(*t->counts));
    t->first_ms = calloc(n_events * n_tokens, sizeof(*t->first_ms));
    assert_non_null(t->counts);
    assert_non_null(t->first_ms);
    for (size_t r = 0; records[r]; r++) {
        FILE *fp = fopen(records[r], "r");
        char *line = NULL;
        size_t cap = 0;

        if (!fp)
            continue; /* a mock that never got a request */
        while (getline(&line, &cap, fp) > 0)
            tally_line(t, line, tokens);
        free(line);
        fclose(fp);
    }
}

void tu_tally_free(struct tu_tally *t)
{
    free(t->counts);
    free(t->first_ms);
    memset(t, 0, sizeof(*t));
}
