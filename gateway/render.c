/* `pushgw render` (see render.h). */
#include "render.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "apns.h"
#include "event.h"
#include "push.h"
#include "runtime.h"
#include "store.h"
#include "template.h"
#include "util/json.h"

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    PGW_PRINTF(4, 5);

static int errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int print_line(cJSON *line, FILE *out)
{
    char *text = cJSON_PrintUnformatted(line);
    int rc = 0;

    if (!text)
        return PGW_ERR_NOMEM;
    if (fprintf(out, "%s\n", text) < 0)
        rc = PGW_ERR_IO;
    free(text);
    return rc;
}

/* Adds the JSON text |text| of |len| bytes to |obj| as |key|. */
static int add_json(cJSON *obj, const char *key, const char *text, size_t len)
{
    cJSON *v = cJSON_ParseWithLength(text, len);

    if (!v || !cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return PGW_ERR_NOMEM;
    }
    return 0;
}

/* The headers and body of an APNs push, as serve would send them. */
static int render_apns(const struct pgw_push *p, cJSON *line)
{
    cJSON *h;
    char num[24];

    if (!cJSON_AddStringToObject(line, "endpoint",
                                 p->env == PGW_APNS_DEVELOPMENT ? "development"
                                                                : "production"))
        return PGW_ERR_NOMEM;
    h = cJSON_AddObjectToObject(line, "headers");
    {
        const char *suffix = pgw_apns_topic_suffix(p->push_type);
        char topic[512];

        snprintf(topic, sizeof(topic), "%s%s", p->topic,
                 suffix && !pgw_apns_topic_has_suffix(p->topic, suffix) ? suffix
                                                                        : "");
        if (!h || !cJSON_AddStringToObject(h, "apns-topic", topic) ||
            !cJSON_AddStringToObject(h, "apns-push-type", p->push_type))
            return PGW_ERR_NOMEM;
    }
    snprintf(num, sizeof(num), "%d", p->priority);
    if (!cJSON_AddStringToObject(h, "apns-priority", num))
        return PGW_ERR_NOMEM;
    snprintf(num, sizeof(num), "%" PRId64, p->expiration);
    if (!cJSON_AddStringToObject(h, "apns-expiration", num))
        return PGW_ERR_NOMEM;
    if (p->collapse_id &&
        !cJSON_AddStringToObject(h, "apns-collapse-id", p->collapse_id))
        return PGW_ERR_NOMEM;
    if (!cJSON_AddStringToObject(h, "apns-id", p->apns_id))
        return PGW_ERR_NOMEM;
    return add_json(line, "body", p->body, p->body_len);
}

/* One device's line: what serve would send it, or why it would fail. */
static int render_one(struct pgw_push_event *e, const struct pgw_push_app *pa,
                      const struct pgw_installation *inst, FILE *out,
                      struct pgw_render_counts *counts)
{
    struct pgw_installation dev = *inst;
    struct pgw_push p;
    struct pgw_push_failure f;
    enum pgw_push_result r;
    cJSON *line = NULL;
    int rc = PGW_ERR_NOMEM;

    /* "badge" in the file is the value before the increment serve's
     * lookup makes. */
    dev.badge = inst->badge == INT32_MAX ? INT32_MAX : inst->badge + 1;
    r = pgw_push_make(e, pa, &dev, dev.badge, &p, &f);
    if (r == PGW_PUSH_NONE)
        return 0;
    if (r == PGW_PUSH_FAIL && strcmp(f.reason, "out_of_memory") == 0)
        return PGW_ERR_NOMEM;
    line = cJSON_CreateObject();
    if (!line ||
        !cJSON_AddNumberToObject(line, "installation", (double)inst->id) ||
        !cJSON_AddStringToObject(line, "platform",
                                 pgw_platform_name(inst->platform)))
        goto out;
    if (r == PGW_PUSH_FAIL) {
        if (!cJSON_AddStringToObject(line, "error", f.reason))
            goto out;
    } else {
        rc = p.provider == PGW_PROVIDER_APNS
                 ? render_apns(&p, line)
                 : add_json(line, "body", p.body, p.body_len);
        if (rc < 0)
            goto out;
    }
    rc = print_line(line, out);
    if (rc == 0) {
        counts->lines++;
        counts->errors += r == PGW_PUSH_FAIL;
    }
out:
    if (r == PGW_PUSH_SEND)
        pgw_push_release(&p);
    cJSON_Delete(line);
    return rc;
}

int pgw_render_event(const struct pgw_config *cfg, const struct pgw_app *app,
                     const struct pgw_resolved *res, const char *event_id,
                     const struct pgw_installation *insts, size_t n,
                     const struct pgw_render_opts *opts, FILE *out,
                     struct pgw_render_counts *ret_counts)
{
    struct pgw_render_counts counts = {0, 0};
    /* The app as serve's runtime holds it: a configured service account
     * is loaded (serve does not start otherwise). */
    struct pgw_runtime_app ra;
    struct pgw_push_app pa = {
        .cfg = cfg,
        .app = app,
        .has_fcm_account = app->fcm_service_account_file != NULL,
    };
    struct pgw_push_event e;
    int rc = 0;

    pgw_runtime_app_describe(app, &ra);
    pa.apns_identity = ra.apns_identity;
    pa.apns_topic = ra.apns_topic;

    pgw_push_event_init(&e, res, event_id, opts->now_s,
                        cfg ? cfg->delivery.validity_s : 604800);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (opts->has_platform && insts[i].platform != opts->platform)
            continue;
        rc = render_one(&e, &pa, &insts[i], out, &counts);
    }
    pgw_push_event_release(&e);
    if (rc == 0)
        *ret_counts = counts;
    return rc;
}

/* ---- installations from the database ---- */

struct db_lookup {
    bool done;
    int err;
    cJSON *rows;
};

/* Fires with the rows serve would target; copies them as the JSON shape
 * of an event file's "installations". */
static void on_db_rows(void *arg, int err, const struct pgw_installation *rows,
                       size_t n)
{
    struct db_lookup *st = arg;
    cJSON *arr = cJSON_CreateArray();

    st->done = true;
    st->err = err;
    if (err < 0 || !arr) {
        st->err = err < 0 ? err : PGW_ERR_NOMEM;
        cJSON_Delete(arr);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON *ch =
            cJSON_CreateStringArray(rows[i].channels, (int)rows[i].n_channels);
        if (!o || !ch) {
            cJSON_Delete(o);
            cJSON_Delete(ch);
            cJSON_Delete(arr);
            st->err = PGW_ERR_NOMEM;
            return;
        }
        cJSON_AddNumberToObject(o, "id", (double)rows[i].id);
        cJSON_AddStringToObject(o, "device_type",
                                pgw_platform_name(rows[i].platform));
        cJSON_AddStringToObject(o, "device_token", rows[i].device_token);
        cJSON_AddItemToObject(o, "channels", ch);
        cJSON_AddNumberToObject(o, "badge", rows[i].badge);
        if (rows[i].apns_topic)
            cJSON_AddStringToObject(o, "apns_topic", rows[i].apns_topic);
        if (rows[i].apns_team_id)
            cJSON_AddStringToObject(o, "apns_team_id", rows[i].apns_team_id);
        cJSON_AddItemToArray(arr, o);
    }
    st->rows = arr;
}

/*
 * The installations serve would target for |res|, looked up as it does
 * (channels overlap, valid only, team filter) but read-only: no badge is
 * incremented. Runs a private loop until the answer comes.
 */
static int lookup_db(const struct pgw_config *cfg, const struct pgw_app *app,
                     const struct pgw_resolved *res, cJSON **ret_rows,
                     char *err, size_t errlen)
{
    struct event_base *base = event_base_new();
    struct pgw_store *store = NULL;
    struct pgw_store_options so = {.conninfo = cfg->database.url,
                                   .pool_size = 1,
                                   .owner = "pushgw-render"};
    struct db_lookup st = {false, 0, NULL};
    struct pgw_installation_match match;
    int rc;

    if (!base)
        return PGW_ERR_NOMEM;
    /* serve's team rule; no badge written */
    pgw_push_match_init(res, app, &match);
    rc = pgw_store_new(base, &so, &store);
    if (rc == 0)
        rc = pgw_store_find_installations(
            store, app->id, (const char *const *)res->recipients,
            res->n_recipients, &match, 0, 0, on_db_rows, &st);
    while (rc == 0 && !st.done)
        event_base_loop(base, EVLOOP_ONCE);
    if (rc == 0 && st.err < 0)
        rc = st.err;
    if (rc == PGW_ERR_DB)
        errf(err, errlen, rc,
             "could not look up installations in the database: %s",
             pgw_store_last_error(store)[0] ? pgw_store_last_error(store)
                                            : "database error");
    pgw_store_free(store);
    event_base_free(base);
    if (rc < 0) {
        cJSON_Delete(st.rows);
        return rc;
    }
    *ret_rows = st.rows;
    return 0;
}

/* ---- the driver ---- */

struct inst_list {
    struct pgw_installation *v;
    size_t n;
};

static void inst_list_release(struct inst_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free((void *)l->v[i].channels);
    free(l->v);
}

static const char *opt_string(const cJSON *obj, const char *key, bool *bad)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (!it || cJSON_IsNull(it))
        return NULL;
    if (!cJSON_IsString(it)) {
        *bad = true;
        return NULL;
    }
    return it->valuestring;
}

static int parse_installations(const cJSON *arr, struct inst_list *l, char *err,
                               size_t errlen)
{
    size_t total;
    const cJSON *o;
    size_t i = 0;

    if (!cJSON_IsArray(arr))
        return errf(err, errlen, PGW_ERR_INVAL,
                    "invalid event file: 'installations' must be an array");
    total = (size_t)cJSON_GetArraySize(arr);
    if (total > PGW_RENDER_MAX_INSTALLATIONS)
        return errf(err, errlen, PGW_ERR_INVAL,
                    "invalid event file: more than %d installations",
                    PGW_RENDER_MAX_INSTALLATIONS);
    l->v = calloc(total ? total : 1, sizeof(*l->v));
    if (!l->v)
        return PGW_ERR_NOMEM;
    cJSON_ArrayForEach(o, arr)
    {
        struct pgw_installation *in = &l->v[i];
        const cJSON *it, *ch;
        bool bad = false;
        size_t nch, k = 0;

        if (!cJSON_IsObject(o))
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu]' must be "
                        "an object",
                        i);
        it = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (!cJSON_IsNumber(it) ||
            it->valuedouble != (double)(int64_t)it->valuedouble)
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu].id' must "
                        "be an integer",
                        i);
        in->id = (int64_t)it->valuedouble;
        it = cJSON_GetObjectItemCaseSensitive(o, "device_type");
        if (!cJSON_IsString(it) ||
            pgw_platform_parse(it->valuestring, &in->platform) < 0)
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu]."
                        "device_type' must be 'ios' or 'android'",
                        i);
        in->device_token = opt_string(o, "device_token", &bad);
        if (!in->device_token || !in->device_token[0])
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu]."
                        "device_token' must be a non-empty string",
                        i);
        in->apns_topic = opt_string(o, "apns_topic", &bad);
        in->apns_team_id = opt_string(o, "apns_team_id", &bad);
        if (bad)
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu]' "
                        "apns_topic and apns_team_id must be strings or null",
                        i);
        it = cJSON_GetObjectItemCaseSensitive(o, "badge");
        if (it && !cJSON_IsNull(it)) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
                it->valuedouble > 2147483647.0 ||
                it->valuedouble != (double)(int32_t)it->valuedouble)
                return errf(err, errlen, PGW_ERR_INVAL,
                            "invalid event file: 'installations[%zu].badge' "
                            "must be a non-negative integer",
                            i);
            in->badge = (int32_t)it->valuedouble;
        }
        ch = cJSON_GetObjectItemCaseSensitive(o, "channels");
        nch = cJSON_IsArray(ch) ? (size_t)cJSON_GetArraySize(ch) : 0;
        if ((ch && !cJSON_IsArray(ch)) || nch > PGW_RENDER_MAX_CHANNELS)
            return errf(err, errlen, PGW_ERR_INVAL,
                        "invalid event file: 'installations[%zu].channels' "
                        "must be an array of at most %d strings",
                        i, PGW_RENDER_MAX_CHANNELS);
        const char **chv = calloc(nch ? nch : 1, sizeof(char *));
        if (!chv)
            return PGW_ERR_NOMEM;
        in->channels = chv;
        l->n = i + 1;
        cJSON_ArrayForEach(it, ch)
        {
            if (!cJSON_IsString(it))
                return errf(err, errlen, PGW_ERR_INVAL,
                            "invalid event file: 'installations[%zu]."
                            "channels' must be an array of strings",
                            i);
            chv[k++] = it->valuestring;
        }
        in->n_channels = k;
        i++;
    }
    return 0;
}

static int read_all(const char *path, char **ret_buf, size_t *ret_len,
                    char *err, size_t errlen)
{
    bool is_stdin = !path || strcmp(path, "-") == 0;
    FILE *fp = is_stdin ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    if (!fp)
        return errf(err, errlen, PGW_ERR_INVAL, "could not open '%s': %m",
                    path);
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 131072;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = PGW_ERR_NOMEM;
                goto out;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (len > PGW_RENDER_MAX_FILE_BYTES) {
            rc = errf(err, errlen, PGW_ERR_INVAL,
                      "could not read '%s': larger than %d bytes",
                      is_stdin ? "-" : path, PGW_RENDER_MAX_FILE_BYTES);
            goto out;
        }
        if (n == 0)
            break;
    }
    if (ferror(fp)) {
        rc = errf(err, errlen, PGW_ERR_INVAL, "could not read '%s'",
                  is_stdin ? "-" : path);
        goto out;
    }
    *ret_buf = buf;
    *ret_len = len;
    buf = NULL;
out:
    free(buf);
    if (!is_stdin)
        fclose(fp);
    return rc;
}

int pgw_render_run(const struct pgw_config *cfg,
                   const struct pgw_render_opts *opts, FILE *out, char *err,
                   size_t errlen, struct pgw_render_counts *ret_counts)
{
    const struct pgw_app *app;
    struct pgw_template_set *tset = NULL;
    struct pgw_event *ev = NULL;
    struct pgw_hook_answer *hook = NULL;
    struct pgw_resolved *res = NULL;
    struct inst_list insts = {NULL, 0};
    struct pgw_event_limits lim;
    struct pgw_json_error perr;
    struct pgw_json_limits jlim;
    struct pgw_diag diag;
    const char *fname = opts->event_path ? opts->event_path : "-";
    char *buf = NULL, *hook_text = NULL;
    cJSON *json = NULL;
    cJSON *db_rows = NULL;
    const cJSON *it;
    size_t len = 0, off = 0;
    const char *why = NULL;
    int rc;

    pgw_diag_init(&diag);
    app = pgw_config_find_app(cfg, opts->app_id);
    if (!app) {
        rc =
            errf(err, errlen, PGW_ERR_CONFIG, "unknown app '%s'", opts->app_id);
        goto out;
    }
    rc = pgw_template_set_load(cfg->templates.dir, &diag, &tset);
    if (rc < 0) {
        if (rc != PGW_ERR_NOMEM)
            rc = errf(err, errlen, PGW_ERR_CONFIG, "%s",
                      diag.n ? diag.msgs[0] : "could not load templates");
        goto out;
    }
    rc = read_all(opts->event_path, &buf, &len, err, errlen);
    if (rc < 0)
        goto out;
    pgw_event_limits_from_config(cfg, &lim);
    pgw_json_limits_default(&jlim);
    rc = pgw_json_parse(buf, len, &jlim, &json, &off, &why);
    if (rc < 0) {
        if (rc != PGW_ERR_NOMEM)
            rc = errf(err, errlen, PGW_ERR_INVAL,
                      "invalid event file '%s': %s at byte %zu", fname, why,
                      off);
        goto out;
    }
    rc = pgw_event_from_json(json, &lim, &ev, &perr);
    if (rc < 0) {
        if (rc != PGW_ERR_NOMEM)
            rc = errf(err, errlen, PGW_ERR_INVAL,
                      "invalid event file '%s': %s%s%s", fname, perr.field,
                      perr.field[0] ? ": " : "", perr.reason);
        goto out;
    }
    it = cJSON_GetObjectItemCaseSensitive(json, "hookAnswer");
    if (it && !cJSON_IsNull(it)) {
        hook_text = cJSON_PrintUnformatted(it);
        if (!hook_text) {
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        rc = pgw_resolve_parse_hook_answer(hook_text, strlen(hook_text), &lim,
                                           &hook, &perr);
        if (rc < 0) {
            if (rc != PGW_ERR_NOMEM)
                rc = errf(err, errlen, PGW_ERR_INVAL,
                          "invalid event file '%s': hookAnswer: %s%s%s", fname,
                          perr.field, perr.field[0] ? ": " : "", perr.reason);
            goto out;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(json, "installations");
    if (it) {
        rc = parse_installations(it, &insts, err, errlen);
        if (rc < 0)
            goto out;
    }
    rc = pgw_resolve_event(ev, hook, pgw_template_set_find(tset, app->id),
                           cfg->delivery.validity_s, &res, &perr);
    if (rc < 0) {
        if (rc != PGW_ERR_NOMEM)
            rc = errf(err, errlen, PGW_ERR_INVAL,
                      "could not resolve the push: %s", perr.reason);
        goto out;
    }
    if (!it && !res->skip_reason) {
        /* No installations in the file: those serve would find. */
        rc = lookup_db(cfg, app, res, &db_rows, err, errlen);
        if (rc < 0)
            goto out;
        rc = parse_installations(db_rows, &insts, err, errlen);
        if (rc < 0)
            goto out;
    }
    if (res->skip_reason)
        fprintf(stderr, "pushgw: no push for this event: %s\n",
                res->skip_reason);
    rc = pgw_render_event(cfg, app, res, ev->msg_id ? ev->msg_id : "render",
                          insts.v, insts.n, opts, out, ret_counts);
out:
    if (rc == PGW_ERR_NOMEM)
        errf(err, errlen, rc, "could not render: out of memory");
    else if (rc == PGW_ERR_IO && err && !err[0])
        errf(err, errlen, rc, "could not write the output");
    pgw_resolve_free(res);
    inst_list_release(&insts);
    free(hook_text);
    pgw_resolve_hook_answer_free(hook);
    pgw_event_free(ev);
    cJSON_Delete(json);
    cJSON_Delete(db_rows);
    free(buf);
    pgw_template_set_unref(tset);
    pgw_diag_release(&diag);
    return rc;
}
