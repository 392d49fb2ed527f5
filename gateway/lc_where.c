/*
 * The `where` compiler (see lc_where.h). One recursive pass over the
 * query: a query object is the conjunction of its members; a member is
 * $and / $or of sub-queries, or a field of where_fields with a plain
 * string or an object of operators (themselves ANDed). Each piece is
 * written into the SQL text as it is checked; its values go to the
 * parameter list, the text only gets their $n. On any error everything
 * built so far is dropped, so a caller never sees half a condition.
 *
 * NULL logic is spelled out rather than left to SQL's three-valued
 * logic: a NOT over an expression that can be NULL would drop rows the
 * query names (and the evaluator in the unit test would disagree), so
 * every atom below is true or false for every row, except where NULL
 * can only mean "no match" (a NULL column under `=`).
 */
#include "lc_where.h"

#include <limits.h>
#include <stdbool.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"
#include "util/buf.h"
#include "util/utf8.h"

struct where_field {
    const char *name;   /* LeanCloud's */
    const char *column; /* installations, alias i */
    bool array;         /* text[]: values are elements */
    bool folded;        /* stored in lower case: values are lowered too */
};

static const struct where_field where_fields[] = {
    {"channels", "i.channels", true, false},
    {"deviceType", "i.device_type", false, false},
    /* the installation API lowers it on every write (as Parse does), so
     * a query naming it as an SDK printed it must match too */
    {"installationId", "i.installation_id", false, true},
    {"objectId", "i.object_id", false, false},
    {"deviceToken", "i.device_token", false, false},
    {"deviceProfile", "i.device_profile", false, false},
    {"apnsTeamId", "i.apns_team_id", false, false},
    {"timeZone", "i.time_zone", false, false},
};

/* Names as they appear in messages: cut on a character boundary. */
#define SHOWN_BYTES 48

struct cc {
    struct pgw_buf sql;
    char **params;
    size_t n_params, cap_params;
    int first;
    struct pgw_buf arr; /* the array literal being built */
    struct pgw_lc_error *err;
};

static void show(char *dst, const char *name)
{
    if (!name || !pgw_utf8_valid(name, strlen(name)))
        name = "?";
    pgw_copy_str(dst, SHOWN_BYTES, name);
}

static int unsupported(struct cc *c, const char *what, const char *kind,
                       const char *name)
{
    char shown[SHOWN_BYTES];

    show(shown, name);
    pgw_lc_error_set(c->err, 400, PGW_LC_INVALID_JSON, shown, what,
                     "where: unsupported %s '%s'", kind, shown);
    return PGW_ERR_INVAL;
}

static int wrong_type(struct cc *c, const char *field, const char *op,
                      const char *want)
{
    char shown[SHOWN_BYTES];

    show(shown, field);
    if (op)
        pgw_lc_error_set(c->err, 400, PGW_LC_INCORRECT_TYPE, shown, "bad_type",
                         "where: %s %s must be %s", shown, op, want);
    else
        pgw_lc_error_set(c->err, 400, PGW_LC_INCORRECT_TYPE, shown, "bad_type",
                         "where: %s must be %s", shown, want);
    return PGW_ERR_INVAL;
}

static int too_large(struct cc *c, const char *what)
{
    pgw_lc_error_set(c->err, 400, PGW_LC_TOO_LARGE, "where", "too_large",
                     "where: the query has %s", what);
    return PGW_ERR_TOO_LARGE;
}

static int no_memory(struct cc *c)
{
    pgw_lc_error_set(c->err, 500, PGW_LC_INTERNAL, "", "no_memory",
                     "out of memory");
    return PGW_ERR_NOMEM;
}

/* Appends SQL text, within the bound (checked as it grows, so a query of
 * a million $exists fails early rather than after building it all). */
static int put(struct cc *c, const char *s)
{
    pgw_buf_str(&c->sql, s);
    if (c->sql.oom)
        return no_memory(c);
    if (c->sql.len > PGW_WHERE_MAX_SQL)
        return too_large(c, "too many conditions");
    return 0;
}

/* Takes |value| (malloc'd, NULL: out of memory) as the next parameter
 * and writes its placeholder, then |cast|. */
static int put_param(struct cc *c, char *value, const char *cast)
{
    char ph[24], **p;
    int rc;

    if (!value)
        return no_memory(c);
    if (c->n_params >= PGW_WHERE_MAX_PARAMS) {
        free(value);
        return too_large(c, "too many values");
    }
    p = pgw_array_grow(c->params, &c->cap_params, c->n_params, sizeof(*p), 8);
    if (!p) {
        free(value);
        return no_memory(c);
    }
    c->params = p;
    c->params[c->n_params] = value;
    snprintf(ph, sizeof(ph), "$%d", c->first + (int)c->n_params);
    c->n_params++;
    if ((rc = put(c, ph)) < 0)
        return rc;
    return put(c, cast);
}

static bool is_text(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring &&
           pgw_utf8_valid(v->valuestring, strlen(v->valuestring));
}

/* A JSON array of strings (valid UTF-8), the list of an operator. */
static bool is_text_list(const cJSON *v)
{
    const cJSON *it;

    if (!cJSON_IsArray(v))
        return false;
    cJSON_ArrayForEach(it, v)
    {
        if (!is_text(it))
            return false;
    }
    return true;
}

/* The Postgres array literal of |list| (strings, checked) or of the one
 * string |one|, in a new string (NULL: out of memory). */
static char *array_literal(struct cc *c, const cJSON *list, const char *one)
{
    const cJSON *it;

    pgw_buf_reset(&c->arr);
    pgw_buf_add(&c->arr, "{", 1);
    if (one) {
        pgw_pgarray_put_str(&c->arr, one);
    } else {
        cJSON_ArrayForEach(it, list)
        {
            pgw_pgarray_put_sep(&c->arr, 1);
            pgw_pgarray_put_str(&c->arr, it->valuestring);
        }
    }
    pgw_buf_add(&c->arr, "}", 1);
    if (c->arr.oom)
        return NULL;
    return strdup(c->arr.p);
}

/* |s| (NULL: out of memory) as |f| stores it: ASCII lowered in place,
 * which leaves an array literal's quotes and escapes as they are. */
static char *value(const struct where_field *f, char *s)
{
    if (f->folded && s)
        for (char *p = s; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    return s;
}

/*
 * The atoms, from templates: '#' is the column, '?' the parameter (a
 * list `$n::text[]`, a single value `$n::text`), '!' a single value as a
 * one-element list: on channels, so that every channel atom is an array
 * operator the GIN index serves.
 */
static int emit(struct cc *c, const char *tmpl, const struct where_field *f,
                const cJSON *list, const char *one)
{
    char piece[2] = {0, 0};
    int rc = 0;

    for (const char *t = tmpl; *t && rc == 0; t++) {
        if (*t == '#') {
            rc = put(c, f->column);
        } else if (*t == '?' && list) {
            rc = put_param(c, value(f, array_literal(c, list, NULL)),
                           "::text[]");
        } else if (*t == '?') {
            rc = put_param(c, value(f, strdup(one)), "::text");
        } else if (*t == '!') {
            rc =
                put_param(c, value(f, array_literal(c, NULL, one)), "::text[]");
        } else {
            piece[0] = *t;
            rc = put(c, piece);
        }
    }
    return rc;
}

static int compile_eq(struct cc *c, const struct where_field *f,
                      const char *value)
{
    if (f->array) /* contains */
        return emit(c, "(# @> !)", f, NULL, value);
    return emit(c, "(# = ?)", f, NULL, value);
}

static int compile_op(struct cc *c, const struct where_field *f, const char *op,
                      const cJSON *v)
{
    if (strcmp(op, "$exists") == 0) {
        if (!cJSON_IsBool(v))
            return wrong_type(c, f->name, op, "true or false");
        /* channels is never NULL: an empty list stands for no channels,
         * as the installation API answers "channels": [] for both */
        if (f->array)
            return emit(c,
                        cJSON_IsTrue(v) ? "(cardinality(#) > 0)"
                                        : "(cardinality(#) = 0)",
                        f, NULL, NULL);
        return emit(c, cJSON_IsTrue(v) ? "(# IS NOT NULL)" : "(# IS NULL)", f,
                    NULL, NULL);
    }
    if (strcmp(op, "$ne") == 0) {
        if (!is_text(v))
            return wrong_type(c, f->name, op, "a string");
        if (f->array) /* does not contain */
            return emit(c, "(NOT (# @> !))", f, NULL, v->valuestring);
        /* absent is not equal to anything (Mongo, Parse) */
        return emit(c, "(# IS DISTINCT FROM ?)", f, NULL, v->valuestring);
    }
    if (strcmp(op, "$in") != 0 && strcmp(op, "$nin") != 0 &&
        strcmp(op, "$all") != 0)
        return unsupported(c, "unsupported_operator", "operator", op);
    if (!is_text_list(v))
        return wrong_type(c, f->name, op, "an array of strings");
    if (strcmp(op, "$in") == 0) {
        /* an empty list matches nothing: '{}' overlaps no array and
         * = ANY('{}') is false */
        if (f->array)
            return emit(c, "(# && ?)", f, v, NULL);
        return emit(c, "(# = ANY(?))", f, v, NULL);
    }
    if (strcmp(op, "$nin") == 0) {
        /* an empty list matches everything; absent is in no list */
        if (f->array)
            return emit(c, "(NOT (# && ?))", f, v, NULL);
        return emit(c, "(# IS NULL OR # <> ALL(?))", f, v, NULL);
    }
    /* $all of nothing matches nothing (Mongo), though every array
     * contains the empty one */
    if (cJSON_GetArraySize(v) == 0)
        return put(c, "false");
    if (f->array)
        return emit(c, "(# @> ?)", f, v, NULL);
    /* a scalar holds all of a list when it equals each of its items */
    return emit(c, "(# = ALL(?))", f, v, NULL);
}

static const struct where_field *find_field(const char *name)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(where_fields); i++)
        if (strcmp(where_fields[i].name, name) == 0)
            return &where_fields[i];
    return NULL;
}

static int compile_field(struct cc *c, const struct where_field *f,
                         const cJSON *v)
{
    const cJSON *op;
    int rc, n = 0;

    if (is_text(v))
        return compile_eq(c, f, v->valuestring);
    if (!cJSON_IsObject(v))
        return wrong_type(c, f->name, NULL, "a string or an operator object");
    if (!v->child)
        return wrong_type(c, f->name, NULL, "a string or an operator object");
    if ((rc = put(c, "(")) < 0)
        return rc;
    cJSON_ArrayForEach(op, v)
    {
        if (!op->string || op->string[0] != '$')
            /* {"__type": "Pointer", …} or an embedded document */
            return wrong_type(c, f->name, NULL,
                              "a string or an operator object");
        if (n++ && (rc = put(c, " AND ")) < 0)
            return rc;
        if ((rc = compile_op(c, f, op->string, op)) < 0)
            return rc;
    }
    return put(c, ")");
}

static int compile_query(struct cc *c, const cJSON *q, int depth);

/* $and / $or: a non-empty array of queries. */
static int compile_logic(struct cc *c, const cJSON *list, const char *op,
                         int depth)
{
    const cJSON *q;
    int rc, n = 0;

    if (!cJSON_IsArray(list) || !list->child)
        return wrong_type(c, op, NULL, "a non-empty array of queries");
    if (depth >= PGW_WHERE_MAX_DEPTH)
        return too_large(c, "too deeply nested $and/$or");
    if ((rc = put(c, "(")) < 0)
        return rc;
    cJSON_ArrayForEach(q, list)
    {
        if (n++ && (rc = put(c, op[1] == 'a' ? " AND " : " OR ")) < 0)
            return rc;
        if ((rc = compile_query(c, q, depth + 1)) < 0)
            return rc;
    }
    return put(c, ")");
}

static int compile_query(struct cc *c, const cJSON *q, int depth)
{
    const cJSON *m;
    int rc, n = 0;

    if (!cJSON_IsObject(q))
        return wrong_type(c, depth ? "$and/$or item" : "where", NULL,
                          "an object");
    if (!q->child) /* {} names every device, as in Parse */
        return put(c, "true");
    if ((rc = put(c, "(")) < 0)
        return rc;
    cJSON_ArrayForEach(m, q)
    {
        const char *name = m->string ? m->string : "";
        const struct where_field *f;

        if (n++ && (rc = put(c, " AND ")) < 0)
            return rc;
        if (strcmp(name, "$and") == 0 || strcmp(name, "$or") == 0)
            rc = compile_logic(c, m, name, depth);
        else if (name[0] == '$')
            rc = unsupported(c, "unsupported_operator", "operator", name);
        else if ((f = find_field(name)))
            rc = compile_field(c, f, m);
        else
            rc = unsupported(c, "unsupported_field", "field", name);
        if (rc < 0)
            return rc;
    }
    return put(c, ")");
}

static int compile_channels(struct cc *c, const cJSON *channels)
{
    if (!is_text_list(channels))
        return wrong_type(c, "channels", NULL, "an array of strings");
    return emit(c, "(# && ?)", find_field("channels"), channels, NULL);
}

void pgw_where_release(struct pgw_where *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_params; i++)
        free(w->params[i]);
    free(w->params);
    free(w->sql);
    memset(w, 0, sizeof(*w));
}

int pgw_where_compile(const cJSON *where, const cJSON *channels, int first,
                      struct pgw_where *out, struct pgw_lc_error *err)
{
    struct cc c = {.first = first, .err = err};
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (first < 1 || first > INT_MAX - PGW_WHERE_MAX_PARAMS) {
        pgw_lc_error_set(err, 500, PGW_LC_INTERNAL, "", "bad_argument",
                         "where: placeholders cannot start at %d", first);
        return PGW_ERR_INVAL;
    }
    if (!where && !channels) {
        rc = put(&c, "true");
    } else if (where && channels) {
        if ((rc = put(&c, "(")) == 0 &&
            (rc = compile_query(&c, where, 0)) == 0 &&
            (rc = put(&c, " AND ")) == 0 &&
            (rc = compile_channels(&c, channels)) == 0)
            rc = put(&c, ")");
    } else if (where) {
        rc = compile_query(&c, where, 0);
    } else {
        rc = compile_channels(&c, channels);
    }
    pgw_buf_release(&c.arr);
    if (rc < 0)
        goto out;
    out->sql = c.sql.p;
    out->params = c.params;
    out->n_params = c.n_params;
    return PGW_OK;
out:
    for (size_t i = 0; i < c.n_params; i++)
        free(c.params[i]);
    free(c.params);
    pgw_buf_release(&c.sql);
    return rc;
}
