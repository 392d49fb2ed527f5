/*
 * Static push templates (DESIGN §7.3): templates/default.json and
 * templates/<appId>.json, each a JSON object. A set is loaded as a whole
 * and is immutable afterwards; a reload builds a new set and replaces the
 * old one only if every file loaded. Reads files, never logs.
 */
#ifndef PUSHGW_TEMPLATE_H
#define PUSHGW_TEMPLATE_H

#include <cjson/cJSON.h>

#include "pushgw.h"

#define PGW_TEMPLATE_MAX_FILES 1025             /* apps + default */
#define PGW_TEMPLATE_MAX_FILE_BYTES (64 * 1024) /* per file */
#define PGW_TEMPLATE_DEFAULT "default"

/* Opaque, reference-counted. */
struct pgw_template_set;

/*
 * Loads every "*.json" file of the folder |dir| (other files are ignored).
 * Each must be a JSON object (checked UTF-8, caps of event.h) of at most
 * PGW_TEMPLATE_MAX_FILE_BYTES. The folder need not hold default.json.
 * On success stores a new set with one reference in |*ret_set|
 * (release with pgw_template_set_unref()). On failure adds one line per
 * problem to |diag| ("template '<path>': invalid JSON at line 3, column 7:
 * <why>") and returns PGW_ERR_CONFIG, PGW_ERR_IO (folder unreadable) or
 * PGW_ERR_NOMEM.
 */
int pgw_template_set_load(const char *dir, struct pgw_diag *diag,
                          struct pgw_template_set **ret_set);

/*
 * Reloads: loads |dir| into a new set and, only on success, replaces
 * |*current| with it (dropping the reference to the old one). On failure
 * |*current| is unchanged. Errors as pgw_template_set_load().
 */
int pgw_template_set_reload(struct pgw_template_set **current, const char *dir,
                            struct pgw_diag *diag);

/*
 * The template of the app |app_id|: <appId>.json, else default.json, else
 * NULL. Valid while the caller holds a reference to |self|; not to be
 * modified.
 */
const cJSON *pgw_template_set_find(const struct pgw_template_set *self,
                                   const char *app_id);

/* Number of templates in the set. */
size_t pgw_template_set_count(const struct pgw_template_set *self);

/* Takes another reference (thread-safe); returns |self|. */
struct pgw_template_set *pgw_template_set_ref(struct pgw_template_set *self);
/* Drops a reference; frees the set at zero. NULL is a no-op. */
void pgw_template_set_unref(struct pgw_template_set *self);

#endif
