/* Static push templates (see template.h). */
#include "template.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "util/file.h"

struct tpl {
    char *name; /* file name without ".json" */
    cJSON *json;
};

struct pgw_template_set {
    atomic_int refs;
    struct tpl *items;
    size_t n;
};

static void set_free(struct pgw_template_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->items[i].name);
        cJSON_Delete(set->items[i].json);
    }
    free(set->items);
    free(set);
}

struct pgw_template_set *pgw_template_set_ref(struct pgw_template_set *self)
{
    atomic_fetch_add(&self->refs, 1);
    return self;
}

void pgw_template_set_unref(struct pgw_template_set *self)
{
    if (self && atomic_fetch_sub(&self->refs, 1) == 1)
        set_free(self);
}

size_t pgw_template_set_count(const struct pgw_template_set *self)
{
    return self->n;
}

static const cJSON *find(const struct pgw_template_set *self, const char *name)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->items[i].name, name) == 0)
            return self->items[i].json;
    return NULL;
}

const cJSON *pgw_template_set_find(const struct pgw_template_set *self,
                                   const char *app_id)
{
    const cJSON *t = app_id ? find(self, app_id) : NULL;

    return t ? t : find(self, PGW_TEMPLATE_DEFAULT);
}

/* Reads at most |max| bytes of |path|; PGW_ERR_TOO_LARGE when longer. */
/* 1-based line and column of byte |off| of |buf|. */
static void line_col(const char *buf, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int load_one(const char *path, struct pgw_diag *diag, cJSON **ret)
{
    char *buf = NULL;
    size_t len = 0, off = 0, line, col;
    const char *why = NULL;
    cJSON *json = NULL;
    int rc;

    rc = pgw_file_read(path, PGW_TEMPLATE_MAX_FILE_BYTES, &buf, &len);
    if (rc == PGW_ERR_TOO_LARGE) {
        pgw_diag_add(diag, "template '%s': larger than %d bytes", path,
                     PGW_TEMPLATE_MAX_FILE_BYTES);
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    if (rc == PGW_ERR_IO) {
        pgw_diag_add(diag, "template '%s': could not read: %s", path,
                     strerror(errno));
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = pgw_json_parse(buf, len, NULL, &json, &off, &why);
    if (rc == PGW_ERR_NOMEM)
        goto out;
    if (rc < 0) {
        line_col(buf, off, &line, &col);
        pgw_diag_add(diag,
                     "template '%s': invalid JSON at line %zu, column %zu: %s",
                     path, line, col, why ? why : "syntax error");
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    if (!cJSON_IsObject(json)) {
        pgw_diag_add(diag, "template '%s': must be a JSON object", path);
        rc = PGW_ERR_CONFIG;
        goto out;
    }
    *ret = json;
    json = NULL;
    rc = 0;
out:
    cJSON_Delete(json);
    free(buf);
    return rc;
}

int pgw_template_set_load(const char *dir, struct pgw_diag *diag,
                          struct pgw_template_set **ret_set)
{
    struct pgw_template_set *set = NULL;
    DIR *d = NULL;
    struct dirent *de;
    int rc = 0, first_err = 0;

    set = calloc(1, sizeof(*set));
    if (!set)
        return PGW_ERR_NOMEM;
    atomic_init(&set->refs, 1);
    set->items = calloc(PGW_TEMPLATE_MAX_FILES, sizeof(*set->items));
    if (!set->items) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    d = opendir(dir);
    if (!d) {
        pgw_diag_add(diag, "templates dir '%s': could not open: %s", dir,
                     strerror(errno));
        rc = PGW_ERR_IO;
        goto out;
    }
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        char *path = NULL;
        cJSON *json = NULL;

        if (nl <= 5 || strcmp(de->d_name + nl - 5, ".json") != 0 ||
            de->d_name[0] == '.')
            continue;
        if (set->n >= PGW_TEMPLATE_MAX_FILES) {
            pgw_diag_add(diag, "templates dir '%s': more than %d templates",
                         dir, PGW_TEMPLATE_MAX_FILES);
            rc = PGW_ERR_CONFIG;
            goto out;
        }
        if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        rc = load_one(path, diag, &json);
        free(path);
        if (rc == PGW_ERR_NOMEM)
            goto out;
        if (rc < 0) {
            /* Go on: report every bad file at once. */
            first_err = rc;
            continue;
        }
        set->items[set->n].json = json;
        set->items[set->n].name = strndup(de->d_name, nl - 5);
        if (!set->items[set->n].name) {
            cJSON_Delete(json);
            set->items[set->n].json = NULL;
            rc = PGW_ERR_NOMEM;
            goto out;
        }
        set->n++;
    }
    rc = first_err;
    if (rc < 0)
        goto out;
    *ret_set = set;
    set = NULL;
out:
    if (d)
        closedir(d);
    set_free(set);
    return rc;
}

int pgw_template_set_reload(struct pgw_template_set **current, const char *dir,
                            struct pgw_diag *diag)
{
    struct pgw_template_set *set = NULL;
    int rc = pgw_template_set_load(dir, diag, &set);

    if (rc < 0)
        return rc;
    pgw_template_set_unref(*current);
    *current = set;
    return 0;
}
