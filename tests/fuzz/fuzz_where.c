/*
 * libFuzzer target: the `where` compiler (lc_where.h). The input is JSON
 * read by the checked reader, as the push API reads its body: an object
 * with a "where" or "data" member is a request (its "where" and
 * "channels"); any other value is the where query itself. Checks that:
 *
 *   - a query compiles or is refused with 107, 111 or 116 (a readable
 *     message, nothing half-built);
 *   - the SQL text is made only of the compiler's own words (columns,
 *     operators, placeholders): nothing of a value can be in it;
 *   - the text does not change when every string value is replaced by
 *     another, and each parameter carries exactly the value (or list) it
 *     stands for (an installationId's ASCII-lowered, as the API stores
 *     it);
 *   - placeholders run $first, $first+1, … once each, as many as
 *     parameters;
 *   - memory is clean (the sanitizers of the fuzz build).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lc_where.h"
#include "pgarray.h"
#include "util/json.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The string values of |v| in document order (keys are not values). */
struct values {
    const char **s;
    size_t n, cap;
};

static void collect(const cJSON *v, struct values *vals, cJSON *twin)
{
    const cJSON *it;
    cJSON *t;

    if (cJSON_IsString(v)) {
        char marker[24];

        if (vals->n == vals->cap) {
            vals->cap = vals->cap ? 2 * vals->cap : 16;
            vals->s = realloc(vals->s, vals->cap * sizeof(*vals->s));
            if (!vals->s)
                abort();
        }
        /* the twin's value k is "#k": another length, other bytes */
        snprintf(marker, sizeof(marker), "#%zu", vals->n);
        if (!cJSON_SetValuestring(twin, marker))
            abort();
        vals->s[vals->n++] = v->valuestring;
        return;
    }
    for (it = v ? v->child : NULL, t = twin ? twin->child : NULL; it && t;
         it = it->next, t = t->next)
        collect(it, vals, t);
}

/* The compiler's words: whatever else the text holds came from input. */
static const char *const words[] = {"i.channels",
                                    "i.device_type",
                                    "i.installation_id",
                                    "i.object_id",
                                    "i.device_token",
                                    "i.device_profile",
                                    "i.apns_team_id",
                                    "i.time_zone",
                                    "cardinality",
                                    "DISTINCT",
                                    "FROM",
                                    "NULL",
                                    "true",
                                    "false",
                                    "AND",
                                    "NOT",
                                    "ANY",
                                    "ALL",
                                    "IS",
                                    "OR",
                                    "::text[]",
                                    "::text",
                                    "@>",
                                    "&&",
                                    "<>",
                                    ">",
                                    "=",
                                    "(",
                                    ")",
                                    " ",
                                    "0"};

/* Walks |sql| word by word; placeholders must count up from |first|. */
static void check_text(const char *sql, int first, size_t n_params)
{
    int next = first;

    for (const char *s = sql; *s;) {
        size_t k;

        if (*s == '$') {
            char *end;
            long n = strtol(s + 1, &end, 10);
            if (s[1] < '0' || s[1] > '9' || n != next)
                abort();
            next++;
            s = end;
            continue;
        }
        for (k = 0; k < PGW_ARRAY_SIZE(words); k++) {
            size_t len = strlen(words[k]);
            if (strncmp(s, words[k], len) == 0) {
                s += len;
                break;
            }
        }
        if (k == PGW_ARRAY_SIZE(words))
            abort();
    }
    if ((size_t)(next - first) != n_params)
        abort();
}

/* Whether placeholder $|n| of |sql| stands for installationId values: the
 * column a placeholder is compared with is the last one before it (every
 * clause names its column first). */
static bool folded_param(const char *sql, int n)
{
    char ph[24];
    const char *p, *col = NULL;
    size_t len = (size_t)snprintf(ph, sizeof(ph), "$%d", n);

    for (p = strstr(sql, ph); p && p[len] >= '0' && p[len] <= '9';)
        p = strstr(p + 1, ph);
    if (!p)
        abort();
    for (const char *q = sql; q < p; q++)
        if (strncmp(q, "i.", 2) == 0)
            col = q;
    return col && strncmp(col, "i.installation_id", 17) == 0;
}

/* |value| as the parameter carries it: ASCII-lowered when |folded|. */
static int value_cmp(const char *param, const char *value, bool folded)
{
    if (!folded)
        return strcmp(param, value);
    for (; *param && *value; param++, value++)
        if (*param != (char)tolower((unsigned char)*value))
            return 1;
    return *param || *value;
}

/* |param| of the original against |marked| of the twin: the same value,
 * or the same list, item by item. */
static void check_param(const char *param, const char *marked,
                        const struct values *vals, bool folded)
{
    if (marked[0] == '#') {
        size_t k = strtoul(marked + 1, NULL, 10);
        if (k >= vals->n || value_cmp(param, vals->s[k], folded) != 0)
            abort();
        return;
    }
    if (marked[0] != '{')
        abort();
    {
        size_t lp = strlen(param), lm = strlen(marked), np = 0, nm = 0;
        size_t maxp = lp / 2 + 1, maxm = lm / 2 + 1;
        char *op = malloc(lp + 1), *om = malloc(lm + 1);
        const char **ip = malloc(maxp * sizeof(*ip));
        const char **im = malloc(maxm * sizeof(*im));

        if (!op || !om || !ip || !im)
            abort();
        if (pgw_pgarray_parse(param, op, ip, maxp, &np) != 0 ||
            pgw_pgarray_parse(marked, om, im, maxm, &nm) != 0 || np != nm)
            abort();
        for (size_t i = 0; i < nm; i++) {
            size_t k;
            if (im[i][0] != '#')
                abort();
            k = strtoul(im[i] + 1, NULL, 10);
            if (k >= vals->n || value_cmp(ip[i], vals->s[k], folded) != 0)
                abort();
        }
        free(op);
        free(om);
        free(ip);
        free(im);
    }
}

static void check_error(int rc, const struct pgw_where *w,
                        const struct pgw_lc_error *err)
{
    if (w->sql || w->params || w->n_params)
        abort();
    if (rc == PGW_ERR_NOMEM)
        return;
    if (err->status != 400 || !pgw_utf8_valid(err->error, strlen(err->error)))
        abort();
    if (rc == PGW_ERR_INVAL && err->code != 107 && err->code != 111)
        abort();
    if (rc == PGW_ERR_TOO_LARGE && err->code != 116)
        abort();
    if (rc != PGW_ERR_INVAL && rc != PGW_ERR_TOO_LARGE)
        abort();
    if (!strstr(err->error, err->field))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *doc = NULL, *twin = NULL;
    const cJSON *where, *channels;
    cJSON *twhere, *tchannels;
    struct values vals = {0};
    struct pgw_where w, tw;
    struct pgw_lc_error err, terr;
    int first = 1 + (int)(size % 7), rc, trc;

    if (pgw_json_parse((const char *)data, size, NULL, &doc, NULL, NULL) != 0)
        return 0;
    twin = cJSON_Duplicate(doc, true);
    if (!twin)
        abort();
    collect(doc, &vals, twin);
    where = doc;
    twhere = twin;
    channels = tchannels = NULL;
    if (cJSON_IsObject(doc) && (cJSON_HasObjectItem(doc, "where") ||
                                cJSON_HasObjectItem(doc, "data"))) {
        where = cJSON_GetObjectItemCaseSensitive(doc, "where");
        channels = cJSON_GetObjectItemCaseSensitive(doc, "channels");
        twhere = cJSON_GetObjectItemCaseSensitive(twin, "where");
        tchannels = cJSON_GetObjectItemCaseSensitive(twin, "channels");
    }

    rc = pgw_where_compile(where, channels, first, &w, &err);
    trc = pgw_where_compile(twhere, tchannels, first, &tw, &terr);
    if (rc < 0) {
        check_error(rc, &w, &err);
        /* a value's content never decides whether a query is refused */
        if (trc != rc && trc != PGW_ERR_NOMEM && rc != PGW_ERR_NOMEM)
            abort();
    } else {
        if (trc != 0 || !w.sql || strlen(w.sql) > PGW_WHERE_MAX_SQL ||
            w.n_params > PGW_WHERE_MAX_PARAMS)
            abort();
        check_text(w.sql, first, w.n_params);
        if (strcmp(w.sql, tw.sql) != 0 || w.n_params != tw.n_params)
            abort();
        for (size_t i = 0; i < w.n_params; i++)
            check_param(w.params[i], tw.params[i], &vals,
                        folded_param(w.sql, first + (int)i));
    }
    pgw_where_release(&w);
    pgw_where_release(&tw);
    free(vals.s);
    cJSON_Delete(twin);
    cJSON_Delete(doc);
    return 0;
}
