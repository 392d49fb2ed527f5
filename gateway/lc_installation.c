/* LeanCloud/Parse _Installation objects: fields, __ops, checks, output. */
#include "lc_installation.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Nesting allowed below a field of `extra` (the body's own cap is the
 * checked reader's). */
#define LC_MAX_EXTRA_DEPTH 16

void pgw_lc_error_set(struct pgw_lc_error *err, int status, int code,
                      const char *field, const char *reason, const char *fmt,
                      ...)
{
    va_list ap;

    if (!err)
        return;
    err->status = status;
    err->code = code;
    pgw_copy_str(err->field, sizeof(err->field), field);
    pgw_copy_str(err->reason, sizeof(err->reason), reason);
    va_start(ap, fmt);
    vsnprintf(err->error, sizeof(err->error), fmt, ap);
    va_end(ap);
}

char *pgw_lc_error_json(const struct pgw_lc_error *err)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    if (o && cJSON_AddNumberToObject(o, "code", err->code) &&
        cJSON_AddStringToObject(o, "error", err->error))
        s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- records ------------------------------------------------------------ */

int pgw_lc_installation_init(struct pgw_lc_installation *self)
{
    memset(self, 0, sizeof(*self));
    self->valid = true;
    self->extra = cJSON_CreateObject();
    return self->extra ? 0 : PGW_ERR_NOMEM;
}

static void free_channels(char **ch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ch[i]);
    free(ch);
}

void pgw_lc_installation_release(struct pgw_lc_installation *self)
{
    if (!self)
        return;
    free(self->object_id);
    free(self->device_type);
    free(self->device_token);
    free(self->installation_id);
    free_channels(self->channels, self->n_channels);
    free(self->time_zone);
    free(self->apns_topic);
    free(self->apns_team_id);
    free(self->device_profile);
    free(self->vendor);
    cJSON_Delete(self->extra);
    memset(self, 0, sizeof(*self));
}

static int dup_field(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : PGW_ERR_NOMEM;
}

int pgw_lc_installation_copy(struct pgw_lc_installation *dst,
                             const struct pgw_lc_installation *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->id = src->id;
    dst->badge = src->badge;
    dst->valid = src->valid;
    dst->created_at_ms = src->created_at_ms;
    dst->updated_at_ms = src->updated_at_ms;
    if (dup_field(&dst->object_id, src->object_id) < 0 ||
        dup_field(&dst->device_type, src->device_type) < 0 ||
        dup_field(&dst->device_token, src->device_token) < 0 ||
        dup_field(&dst->installation_id, src->installation_id) < 0 ||
        dup_field(&dst->time_zone, src->time_zone) < 0 ||
        dup_field(&dst->apns_topic, src->apns_topic) < 0 ||
        dup_field(&dst->apns_team_id, src->apns_team_id) < 0 ||
        dup_field(&dst->device_profile, src->device_profile) < 0 ||
        dup_field(&dst->vendor, src->vendor) < 0)
        goto fail;
    if (src->n_channels) {
        dst->channels = calloc(src->n_channels, sizeof(char *));
        if (!dst->channels)
            goto fail;
        for (size_t i = 0; i < src->n_channels; i++) {
            dst->channels[i] = strdup(src->channels[i]);
            if (!dst->channels[i])
                goto fail;
            dst->n_channels = i + 1;
        }
    }
    dst->extra =
        src->extra ? cJSON_Duplicate(src->extra, 1) : cJSON_CreateObject();
    if (!dst->extra)
        goto fail;
    return 0;
fail:
    pgw_lc_installation_release(dst);
    return PGW_ERR_NOMEM;
}

/* ---- dates -------------------------------------------------------------- */

void pgw_lc_format_date(int64_t ms, char *buf, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    struct tm tm;

    if (frac < 0) {
        frac += 1000;
        t -= 1;
    }
    if (!gmtime_r(&t, &tm)) {
        pgw_copy_str(buf, size, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, frac);
}

static int digits(const char **p, int n, int *ret)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *ret = v;
    return 0;
}

int pgw_lc_parse_date(const char *s, int64_t *ret_ms)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, ms = 0, off = 0;
    const char *p = s;
    time_t t;

    if (!s || digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 ||
        *p++ != '-' || digits(&p, 2, &d) < 0 ||
        (*p != 'T' && *p != 't' && *p != ' '))
        return PGW_ERR_INVAL;
    p++;
    if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0 ||
        *p++ != ':' || digits(&p, 2, &sec) < 0)
        return PGW_ERR_INVAL;
    if (*p == '.') {
        int scale = 100;
        p++;
        if (!isdigit((unsigned char)*p))
            return PGW_ERR_INVAL;
        for (; isdigit((unsigned char)*p); p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) < 0)
            return PGW_ERR_INVAL;
        if (*p == ':')
            p++;
        if (digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
            return PGW_ERR_INVAL;
        off = sign * (oh * 60 + om);
    } else {
        return PGW_ERR_INVAL;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60 || y < 1970)
        return PGW_ERR_INVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1)
        return PGW_ERR_INVAL;
    *ret_ms = ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
    return 0;
}

/* ---- applying fields ---------------------------------------------------- */

enum field_kind {
    F_DEVICE_TYPE,
    F_TOKEN, /* deviceToken, registrationId: taken after the others */
    F_INSTALLATION_ID,
    F_CHANNELS,
    F_BADGE,
    F_STRING,
    F_VENDOR,
    F_VALID,
    F_OBJECT_ID,
    F_DATE,
};

static const struct field {
    const char *name;
    enum field_kind kind;
    size_t off; /* F_STRING: the char * member; F_DATE: the int64_t */
} fields[] = {
    {"deviceType", F_DEVICE_TYPE, 0},
    {"deviceToken", F_TOKEN, 0},
    {"registrationId", F_TOKEN, 0},
    {"installationId", F_INSTALLATION_ID, 0},
    {"channels", F_CHANNELS, 0},
    {"badge", F_BADGE, 0},
    {"timeZone", F_STRING, offsetof(struct pgw_lc_installation, time_zone)},
    {"apnsTopic", F_STRING, offsetof(struct pgw_lc_installation, apns_topic)},
    {"apnsTeamId", F_STRING,
     offsetof(struct pgw_lc_installation, apns_team_id)},
    {"deviceProfile", F_STRING,
     offsetof(struct pgw_lc_installation, device_profile)},
    {"vendor", F_VENDOR, 0},
    {"valid", F_VALID, 0},
    {"objectId", F_OBJECT_ID, 0},
    {"createdAt", F_DATE, offsetof(struct pgw_lc_installation, created_at_ms)},
    {"updatedAt", F_DATE, offsetof(struct pgw_lc_installation, updated_at_ms)},
};

static const struct field *find_field(const char *name)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(fields); i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

static int type_error(struct pgw_lc_error *err, const char *field,
                      const char *want)
{
    pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, field, "bad_type",
                     "%s must be %s", field, want);
    return PGW_ERR_INVAL;
}

/* The op of |v| ({"__op": …}), or NULL for a plain value. */
static const char *op_of(const cJSON *v, struct pgw_lc_error *err,
                         const char *field, int *ret_bad)
{
    const cJSON *op;

    *ret_bad = 0;
    if (!cJSON_IsObject(v))
        return NULL;
    op = cJSON_GetObjectItemCaseSensitive(v, "__op");
    if (!op)
        return NULL;
    if (!cJSON_IsString(op)) {
        pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, field, "bad_op",
                         "%s: __op must be a string", field);
        *ret_bad = 1;
        return NULL;
    }
    return op->valuestring;
}

static int unknown_op(struct pgw_lc_error *err, const char *field,
                      const char *op)
{
    char shown[40];

    pgw_copy_str(shown, sizeof(shown), op);
    pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, field, "bad_op",
                     "%s: unknown __op '%s'", field, shown);
    return PGW_ERR_INVAL;
}

static int wrong_op(struct pgw_lc_error *err, const char *field, const char *op)
{
    pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, field, "bad_op",
                     "%s: __op '%s' does not apply to this field", field, op);
    return PGW_ERR_INVAL;
}

static bool known_op(const char *op)
{
    static const char *const ops[] = {"Delete", "Increment", "Add", "AddUnique",
                                      "Remove"};

    for (size_t i = 0; i < PGW_ARRAY_SIZE(ops); i++)
        if (strcmp(op, ops[i]) == 0)
            return true;
    return false;
}

/* Sets *|dst| from a string, null (cleared) or Delete of at most |max|
 * bytes. */
static int apply_string(char **dst, const cJSON *v, const char *field,
                        size_t max, struct pgw_lc_error *err)
{
    int bad;
    const char *op = op_of(v, err, field, &bad);
    char *s;

    if (bad)
        return PGW_ERR_INVAL;
    if (op) {
        if (!known_op(op))
            return unknown_op(err, field, op);
        if (strcmp(op, "Delete") != 0)
            return wrong_op(err, field, op);
        free(*dst);
        *dst = NULL;
        return 0;
    }
    if (cJSON_IsNull(v)) {
        free(*dst);
        *dst = NULL;
        return 0;
    }
    if (!cJSON_IsString(v))
        return type_error(err, field, "a string");
    if (strlen(v->valuestring) > max) {
        pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, field, "too_large",
                         "%s is longer than %zu bytes", field, max);
        return PGW_ERR_INVAL;
    }
    s = strdup(v->valuestring);
    if (!s)
        return PGW_ERR_NOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

static void lower(char *s)
{
    for (; s && *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* Checks the strings of the array |objects| as channel names. */
static int check_channel_list(const cJSON *objects, const char *field,
                              struct pgw_lc_error *err)
{
    const cJSON *it;

    if (!cJSON_IsArray(objects))
        return type_error(err, field, "an array of strings");
    if ((size_t)cJSON_GetArraySize(objects) > PGW_LC_MAX_CHANNELS) {
        pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, field, "too_large",
                         "%s holds more than %d channels", field,
                         PGW_LC_MAX_CHANNELS);
        return PGW_ERR_INVAL;
    }
    cJSON_ArrayForEach(it, objects)
    {
        size_t n;
        if (!cJSON_IsString(it))
            return type_error(err, field, "an array of strings");
        n = strlen(it->valuestring);
        if (n == 0 || n > PGW_LC_MAX_CHANNEL_BYTES) {
            pgw_lc_error_set(err, 400, PGW_LC_INVALID_CHANNEL, field,
                             "bad_channel",
                             "%s: a channel name is 1 to %d bytes", field,
                             PGW_LC_MAX_CHANNEL_BYTES);
            return PGW_ERR_INVAL;
        }
    }
    return 0;
}

static bool has_channel(char *const *ch, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ch[i], name) == 0)
            return true;
    return false;
}

static int channels_append(struct pgw_lc_installation *self,
                           const cJSON *objects, bool unique,
                           struct pgw_lc_error *err)
{
    size_t add = (size_t)cJSON_GetArraySize(objects);
    const cJSON *it;
    char **ch;

    if (self->n_channels + add > PGW_LC_MAX_CHANNELS && !unique)
        goto too_many;
    ch = realloc(self->channels, (self->n_channels + add + 1) * sizeof(*ch));
    if (!ch)
        return PGW_ERR_NOMEM;
    self->channels = ch;
    cJSON_ArrayForEach(it, objects)
    {
        if (unique &&
            has_channel(self->channels, self->n_channels, it->valuestring))
            continue;
        if (self->n_channels >= PGW_LC_MAX_CHANNELS)
            goto too_many;
        self->channels[self->n_channels] = strdup(it->valuestring);
        if (!self->channels[self->n_channels])
            return PGW_ERR_NOMEM;
        self->n_channels++;
    }
    return 0;
too_many:
    pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, "channels", "too_large",
                     "channels would hold more than %d channels",
                     PGW_LC_MAX_CHANNELS);
    return PGW_ERR_INVAL;
}

static bool in_list(const cJSON *objects, const char *name)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, objects)
    {
        if (strcmp(it->valuestring, name) == 0)
            return true;
    }
    return false;
}

static int apply_channels(struct pgw_lc_installation *self, const cJSON *v,
                          struct pgw_lc_error *err)
{
    int bad, rc;
    const char *op = op_of(v, err, "channels", &bad);
    const cJSON *objects;

    if (bad)
        return PGW_ERR_INVAL;
    if (!op) {
        if (cJSON_IsNull(v)) {
            free_channels(self->channels, self->n_channels);
            self->channels = NULL;
            self->n_channels = 0;
            return 0;
        }
        if ((rc = check_channel_list(v, "channels", err)) < 0)
            return rc;
        free_channels(self->channels, self->n_channels);
        self->channels = NULL;
        self->n_channels = 0;
        /* a plain array is kept as given, duplicates included (Parse) */
        return channels_append(self, v, false, err);
    }
    if (!known_op(op))
        return unknown_op(err, "channels", op);
    if (strcmp(op, "Delete") == 0) {
        free_channels(self->channels, self->n_channels);
        self->channels = NULL;
        self->n_channels = 0;
        return 0;
    }
    if (strcmp(op, "Increment") == 0)
        return wrong_op(err, "channels", op);
    objects = cJSON_GetObjectItemCaseSensitive(v, "objects");
    if (!objects)
        return type_error(err, "channels", "an op with an 'objects' array");
    if ((rc = check_channel_list(objects, "channels", err)) < 0)
        return rc;
    if (strcmp(op, "Add") == 0)
        return channels_append(self, objects, false, err);
    if (strcmp(op, "AddUnique") == 0)
        return channels_append(self, objects, true, err);
    /* Remove: every occurrence, order kept */
    {
        size_t j = 0;
        for (size_t i = 0; i < self->n_channels; i++) {
            if (in_list(objects, self->channels[i]))
                free(self->channels[i]);
            else
                self->channels[j++] = self->channels[i];
        }
        self->n_channels = j;
    }
    return 0;
}

static int int_value(const cJSON *v, const char *field, int *ret,
                     struct pgw_lc_error *err)
{
    double d;

    if (!cJSON_IsNumber(v))
        return type_error(err, field, "an integer");
    d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return type_error(err, field, "an integer");
    *ret = (int)d;
    return 0;
}

static int apply_badge(struct pgw_lc_installation *self, const cJSON *v,
                       struct pgw_lc_error *err)
{
    int bad, n = 1, rc;
    const char *op = op_of(v, err, "badge", &bad);
    const cJSON *amount;
    long long sum;

    if (bad)
        return PGW_ERR_INVAL;
    if (!op) {
        if (cJSON_IsNull(v)) {
            self->badge = 0;
            return 0;
        }
        return int_value(v, "badge", &self->badge, err);
    }
    if (!known_op(op))
        return unknown_op(err, "badge", op);
    if (strcmp(op, "Delete") == 0) {
        self->badge = 0;
        return 0;
    }
    if (strcmp(op, "Increment") != 0)
        return wrong_op(err, "badge", op);
    amount = cJSON_GetObjectItemCaseSensitive(v, "amount");
    if (amount && (rc = int_value(amount, "badge", &n, err)) < 0)
        return rc;
    sum = (long long)self->badge + n;
    if (sum < -2147483648LL || sum > 2147483647LL)
        return type_error(err, "badge", "an integer (the sum overflows)");
    self->badge = (int)sum;
    return 0;
}

static int apply_device_type(struct pgw_lc_installation *self, const cJSON *v,
                             struct pgw_lc_error *err)
{
    char *before = self->device_type ? strdup(self->device_type) : NULL;
    int rc;

    if (self->device_type && !before)
        return PGW_ERR_NOMEM;
    rc = apply_string(&self->device_type, v, "deviceType",
                      PGW_LC_MAX_STRING_BYTES, err);
    if (rc == 0 && self->device_type) {
        char shown[40];
        pgw_copy_str(shown, sizeof(shown), self->device_type);
        if (strcmp(self->device_type, "ios") != 0 &&
            strcmp(self->device_type, "android") != 0) {
            pgw_lc_error_set(err, 400, PGW_LC_MISSING_FIELD, "deviceType",
                             "unsupported_device_type",
                             "deviceType '%s' is not supported: pushgw "
                             "delivers to 'ios' and 'android'",
                             shown);
            rc = PGW_ERR_INVAL;
        }
    }
    if (rc == 0 && self->id != 0 && before &&
        (!self->device_type || strcmp(before, self->device_type) != 0)) {
        pgw_lc_error_set(err, 400, PGW_LC_IMMUTABLE, "deviceType", "immutable",
                         "deviceType may not be changed");
        rc = PGW_ERR_INVAL;
    }
    free(before);
    return rc;
}

static int apply_installation_id(struct pgw_lc_installation *self,
                                 const cJSON *v, struct pgw_lc_error *err)
{
    char *before = self->installation_id ? strdup(self->installation_id) : NULL;
    int rc;

    if (self->installation_id && !before)
        return PGW_ERR_NOMEM;
    rc = apply_string(&self->installation_id, v, "installationId",
                      PGW_LC_MAX_STRING_BYTES, err);
    if (rc == 0 && self->installation_id && !*self->installation_id) {
        free(self->installation_id);
        self->installation_id = NULL;
    }
    lower(self->installation_id);
    if (rc == 0 && self->id != 0 && before &&
        (!self->installation_id ||
         strcmp(before, self->installation_id) != 0)) {
        pgw_lc_error_set(err, 400, PGW_LC_IMMUTABLE, "installationId",
                         "immutable", "installationId may not be changed");
        rc = PGW_ERR_INVAL;
    }
    free(before);
    return rc;
}

static int apply_vendor(struct pgw_lc_installation *self, const cJSON *v,
                        struct pgw_lc_error *err)
{
    int rc =
        apply_string(&self->vendor, v, "vendor", PGW_LC_MAX_STRING_BYTES, err);

    if (rc < 0 || !self->vendor)
        return rc;
    if (!*self->vendor) {
        free(self->vendor);
        self->vendor = NULL;
        return 0;
    }
    if (strcasecmp(self->vendor, "fcm") != 0) {
        char shown[40];
        pgw_copy_str(shown, sizeof(shown), self->vendor);
        pgw_lc_error_set(err, 400, PGW_LC_MISSING_FIELD, "vendor",
                         "unsupported_vendor",
                         "vendor '%s' is not supported: pushgw delivers to "
                         "Android devices through FCM only (vendor 'fcm' or "
                         "none)",
                         shown);
        return PGW_ERR_INVAL;
    }
    lower(self->vendor);
    return 0;
}

static int apply_valid(struct pgw_lc_installation *self, const cJSON *v,
                       struct pgw_lc_error *err)
{
    int bad;
    const char *op = op_of(v, err, "valid", &bad);

    if (bad)
        return PGW_ERR_INVAL;
    if (op) {
        if (!known_op(op))
            return unknown_op(err, "valid", op);
        if (strcmp(op, "Delete") != 0)
            return wrong_op(err, "valid", op);
        self->valid = true;
        return 0;
    }
    if (cJSON_IsNull(v)) {
        self->valid = true;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return type_error(err, "valid", "a boolean");
    self->valid = cJSON_IsTrue(v);
    return 0;
}

static int apply_date(int64_t *dst, const cJSON *v, const char *field,
                      struct pgw_lc_error *err)
{
    const cJSON *iso = v;

    if (cJSON_IsNull(v)) {
        *dst = 0;
        return 0;
    }
    if (cJSON_IsObject(v))
        iso = cJSON_GetObjectItemCaseSensitive(v, "iso");
    if (!cJSON_IsString(iso) || pgw_lc_parse_date(iso->valuestring, dst) < 0) {
        pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, field, "bad_date",
                         "%s must be an ISO 8601 date", field);
        return PGW_ERR_INVAL;
    }
    return 0;
}

static int depth_ok(const cJSON *v, int depth)
{
    const cJSON *it;

    if (depth > LC_MAX_EXTRA_DEPTH)
        return 0;
    cJSON_ArrayForEach(it, v)
    {
        if (!depth_ok(it, depth + 1))
            return 0;
    }
    return 1;
}

/* An op on a field of `extra`, whose value is *|cur| (NULL: absent). */
static int extra_op(cJSON *extra, const char *name, const cJSON *v,
                    const char *op, struct pgw_lc_error *err)
{
    cJSON *cur = cJSON_GetObjectItemCaseSensitive(extra, name);
    const cJSON *arg, *it;
    cJSON *arr;

    if (!known_op(op))
        return unknown_op(err, name, op);
    if (strcmp(op, "Delete") == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(extra, name);
        return 0;
    }
    if (strcmp(op, "Increment") == 0) {
        double n = 1;
        arg = cJSON_GetObjectItemCaseSensitive(v, "amount");
        if (arg && !cJSON_IsNumber(arg))
            return type_error(err, name, "incremented by a number");
        if (arg)
            n = arg->valuedouble;
        if (cur && !cJSON_IsNumber(cur))
            return wrong_op(err, name, op);
        if (cur) {
            cJSON_SetNumberValue(cur, cur->valuedouble + n);
            return 0;
        }
        return cJSON_AddNumberToObject(extra, name, n) ? 0 : PGW_ERR_NOMEM;
    }
    arg = cJSON_GetObjectItemCaseSensitive(v, "objects");
    if (!cJSON_IsArray(arg))
        return type_error(err, name, "an op with an 'objects' array");
    if (cur && !cJSON_IsArray(cur))
        return wrong_op(err, name, op);
    if (!cur) {
        cur = cJSON_AddArrayToObject(extra, name);
        if (!cur)
            return PGW_ERR_NOMEM;
    }
    if (strcmp(op, "Remove") == 0) {
        cJSON *next;
        for (cJSON *e = cur->child; e; e = next) {
            bool drop = false;
            next = e->next;
            cJSON_ArrayForEach(it, arg)
            {
                if (cJSON_Compare(e, it, 1))
                    drop = true;
            }
            if (drop)
                cJSON_Delete(cJSON_DetachItemViaPointer(cur, e));
        }
        return 0;
    }
    arr = cur;
    cJSON_ArrayForEach(it, arg)
    {
        bool have = false;
        cJSON *copy;
        if (strcmp(op, "AddUnique") == 0) {
            const cJSON *e;
            cJSON_ArrayForEach(e, arr)
            {
                if (cJSON_Compare(e, it, 1))
                    have = true;
            }
        }
        if (have)
            continue;
        copy = cJSON_Duplicate(it, 1);
        if (!copy || !cJSON_AddItemToArray(arr, copy)) {
            cJSON_Delete(copy);
            return PGW_ERR_NOMEM;
        }
    }
    return 0;
}

static int apply_extra(struct pgw_lc_installation *self, const char *name,
                       const cJSON *v, struct pgw_lc_error *err)
{
    int bad;
    const char *op = op_of(v, err, name, &bad);
    cJSON *copy;

    if (bad)
        return PGW_ERR_INVAL;
    if (!depth_ok(v, 0)) {
        pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, name, "too_large",
                         "%s is nested deeper than %d levels", name,
                         LC_MAX_EXTRA_DEPTH);
        return PGW_ERR_INVAL;
    }
    if (op)
        return extra_op(self->extra, name, v, op, err);
    copy = cJSON_Duplicate(v, 1);
    if (!copy)
        return PGW_ERR_NOMEM;
    if (cJSON_GetObjectItemCaseSensitive(self->extra, name)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(self->extra, name, copy)) {
            cJSON_Delete(copy);
            return PGW_ERR_NOMEM;
        }
        return 0;
    }
    if (!cJSON_AddItemToObject(self->extra, name, copy)) {
        cJSON_Delete(copy);
        return PGW_ERR_NOMEM;
    }
    return 0;
}

/* null or {"__op":"Delete"} */
static bool clears(const cJSON *v)
{
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(v, "__op");

    return cJSON_IsNull(v) || (cJSON_IsObject(v) && cJSON_IsString(op) &&
                               strcmp(op->valuestring, "Delete") == 0);
}

/* deviceToken and registrationId, after deviceType is known: for Android
 * the FCM token is registrationId when given (LeanCloud) else deviceToken
 * (Parse); for iOS registrationId means nothing and is kept in extra. */
static int apply_tokens(struct pgw_lc_installation *self, const cJSON *obj,
                        struct pgw_lc_error *err)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "deviceToken");
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(obj, "registrationId");
    bool ios = self->device_type && strcmp(self->device_type, "ios") == 0;
    int rc;

    if (rid && ios) {
        if ((rc = apply_extra(self, "registrationId", rid, err)) < 0)
            return rc;
        rid = NULL;
    }
    if (rid && !clears(rid))
        return apply_string(&self->device_token, rid, "registrationId",
                            PGW_LC_MAX_TOKEN_BYTES, err);
    if (dt)
        return apply_string(&self->device_token, dt, "deviceToken",
                            PGW_LC_MAX_TOKEN_BYTES, err);
    if (rid)
        return apply_string(&self->device_token, rid, "registrationId",
                            PGW_LC_MAX_TOKEN_BYTES, err);
    return 0;
}

int pgw_lc_installation_apply(struct pgw_lc_installation *self,
                              const cJSON *obj, unsigned flags,
                              struct pgw_lc_error *err)
{
    const cJSON *v;
    int rc = 0;

    if (!cJSON_IsObject(obj)) {
        pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, "", "bad_json",
                         "the body must be a JSON object");
        return PGW_ERR_INVAL;
    }
    cJSON_ArrayForEach(v, obj)
    {
        const struct field *f;
        const char *name = v->string;

        /* "__type", "__op" are LeanCloud's own; '$' and '.' would make
         * fields no query can name (LeanCloud's error 121) */
        if (!name || !*name || (name[0] == '_' && name[1] == '_') ||
            strpbrk(name, "$.")) {
            char shown[40];
            pgw_copy_str(shown, sizeof(shown), name);
            pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, shown, "bad_json",
                             "invalid field name '%s'", shown);
            return PGW_ERR_INVAL;
        }
        f = find_field(name);
        if (!f) {
            rc = apply_extra(self, name, v, err);
        } else {
            switch (f->kind) {
            case F_DEVICE_TYPE:
                rc = apply_device_type(self, v, err);
                break;
            case F_TOKEN:
                rc = 0; /* below */
                break;
            case F_INSTALLATION_ID:
                rc = apply_installation_id(self, v, err);
                break;
            case F_CHANNELS:
                rc = apply_channels(self, v, err);
                break;
            case F_BADGE:
                rc = apply_badge(self, v, err);
                break;
            case F_STRING:
                rc = apply_string((char **)((char *)self + f->off), v, name,
                                  PGW_LC_MAX_STRING_BYTES, err);
                break;
            case F_VENDOR:
                rc = apply_vendor(self, v, err);
                break;
            case F_VALID:
                rc = apply_valid(self, v, err);
                break;
            case F_OBJECT_ID:
                if (!(flags & PGW_LC_APPLY_IMPORT))
                    break;
                rc = apply_string(&self->object_id, v, name,
                                  PGW_LC_MAX_OBJECT_ID_BYTES, err);
                break;
            case F_DATE:
                if (!(flags & PGW_LC_APPLY_IMPORT))
                    break;
                rc = apply_date((int64_t *)((char *)self + f->off), v, name,
                                err);
                break;
            }
        }
        if (rc < 0)
            return rc;
    }
    return apply_tokens(self, obj, err);
}

/* ---- the record as a whole ---------------------------------------------- */

static bool is_hex(const char *s)
{
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

static bool fcm_token_ok(const char *s)
{
    /* FCM tokens are URL-safe base64 with ':' and '-'; refuse what could
     * never be one (spaces, quotes, controls, non-ASCII) */
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

int pgw_lc_installation_check(struct pgw_lc_installation *self,
                              struct pgw_lc_error *err)
{
    size_t n;
    bool ios;

    if (!self->device_type) {
        pgw_lc_error_set(err, 400, PGW_LC_MISSING_FIELD, "deviceType",
                         "missing_device_type",
                         "deviceType is required ('ios' or 'android')");
        return PGW_ERR_INVAL;
    }
    ios = strcmp(self->device_type, "ios") == 0;
    if (!self->device_token || !*self->device_token) {
        pgw_lc_error_set(
            err, 400, PGW_LC_MISSING_FIELD,
            ios ? "deviceToken" : "registrationId", "missing_token",
            ios ? "deviceToken is required for an iOS installation"
                : "registrationId (vendor 'fcm') or deviceToken is required "
                  "for an Android installation");
        return PGW_ERR_INVAL;
    }
    if (self->extra && cJSON_GetArraySize(self->extra) > 0) {
        /* the other fields are kept, within a bound: ops on them add up
         * over many requests */
        char *printed = cJSON_PrintUnformatted(self->extra);
        size_t len = printed ? strlen(printed) : 0;
        free(printed);
        if (!printed)
            return PGW_ERR_NOMEM;
        if (len > PGW_LC_MAX_EXTRA_BYTES) {
            pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, "", "too_large",
                             "the object's other fields take more than %d "
                             "bytes",
                             PGW_LC_MAX_EXTRA_BYTES);
            return PGW_ERR_INVAL;
        }
    }
    n = strlen(self->device_token);
    if (ios) {
        if (n < PGW_LC_MIN_IOS_TOKEN_HEX || n > PGW_LC_MAX_IOS_TOKEN_HEX ||
            n % 2 != 0 || !is_hex(self->device_token)) {
            pgw_lc_error_set(err, 400, PGW_LC_INVALID_TOKEN, "deviceToken",
                             "bad_token",
                             "deviceToken must be an APNs token: %d "
                             "hexadecimal digits",
                             PGW_LC_MIN_IOS_TOKEN_HEX);
            return PGW_ERR_INVAL;
        }
        lower(self->device_token);
        if (self->vendor) {
            pgw_lc_error_set(err, 400, PGW_LC_MISSING_FIELD, "vendor",
                             "unsupported_vendor",
                             "vendor is for Android installations only");
            return PGW_ERR_INVAL;
        }
    } else if (n < PGW_LC_MIN_FCM_TOKEN_BYTES ||
               !fcm_token_ok(self->device_token)) {
        pgw_lc_error_set(err, 400, PGW_LC_INVALID_TOKEN,
                         self->vendor ? "registrationId" : "deviceToken",
                         "bad_token", "%s must be an FCM registration token",
                         self->vendor ? "registrationId" : "deviceToken");
        return PGW_ERR_INVAL;
    }
    return 0;
}

int pgw_lc_installation_from_export(const cJSON *obj,
                                    struct pgw_lc_installation *ret,
                                    struct pgw_lc_error *err)
{
    int rc = pgw_lc_installation_init(ret);

    if (rc == 0)
        rc = pgw_lc_installation_apply(ret, obj, PGW_LC_APPLY_IMPORT, err);
    if (rc == 0)
        rc = pgw_lc_installation_check(ret, err);
    if (rc < 0)
        pgw_lc_installation_release(ret);
    if (rc == PGW_ERR_NOMEM)
        pgw_lc_error_set(err, 500, PGW_LC_INTERNAL, "", "no_memory",
                         "out of memory");
    return rc;
}

/* ---- output ------------------------------------------------------------- */

static bool add_str(cJSON *o, const char *name, const char *v)
{
    return !v || cJSON_AddStringToObject(o, name, v);
}

cJSON *pgw_lc_installation_to_json(const struct pgw_lc_installation *self)
{
    cJSON *o = cJSON_CreateObject(), *ch;
    const cJSON *it;
    char date[40];
    bool fcm = self->vendor && self->device_type &&
               strcmp(self->device_type, "android") == 0;

    if (!o)
        return NULL;
    if (!add_str(o, "objectId", self->object_id))
        goto fail;
    if (self->created_at_ms) {
        pgw_lc_format_date(self->created_at_ms, date, sizeof(date));
        if (!cJSON_AddStringToObject(o, "createdAt", date))
            goto fail;
    }
    if (self->updated_at_ms) {
        pgw_lc_format_date(self->updated_at_ms, date, sizeof(date));
        if (!cJSON_AddStringToObject(o, "updatedAt", date))
            goto fail;
    }
    if (!add_str(o, "deviceType", self->device_type) ||
        !add_str(o, fcm ? "registrationId" : "deviceToken",
                 self->device_token) ||
        !add_str(o, "vendor", self->vendor) ||
        !add_str(o, "installationId", self->installation_id))
        goto fail;
    ch = cJSON_AddArrayToObject(o, "channels");
    if (!ch)
        goto fail;
    for (size_t i = 0; i < self->n_channels; i++) {
        cJSON *s = cJSON_CreateString(self->channels[i]);
        if (!s || !cJSON_AddItemToArray(ch, s)) {
            cJSON_Delete(s);
            goto fail;
        }
    }
    if (!cJSON_AddNumberToObject(o, "badge", self->badge) ||
        !add_str(o, "timeZone", self->time_zone) ||
        !add_str(o, "apnsTopic", self->apns_topic) ||
        !add_str(o, "apnsTeamId", self->apns_team_id) ||
        !add_str(o, "deviceProfile", self->device_profile) ||
        !cJSON_AddBoolToObject(o, "valid", self->valid))
        goto fail;
    cJSON_ArrayForEach(it, self->extra)
    {
        cJSON *copy;
        if (cJSON_GetObjectItemCaseSensitive(o, it->string))
            continue; /* our columns win over a stale copy in extra */
        copy = cJSON_Duplicate(it, 1);
        if (!copy || !cJSON_AddItemToObject(o, it->string, copy)) {
            cJSON_Delete(copy);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}
