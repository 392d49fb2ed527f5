/* `pushgw serve`: builds every part on one event loop, runs until SIGTERM
 * or SIGINT (drain, then exit), reloads on SIGHUP. */
#ifndef PUSHGW_SERVE_H
#define PUSHGW_SERVE_H

#include "config.h"

/*
 * Runs the gateway with |cfg| (a reference is taken) from the file
 * |cfg_path| (re-read on SIGHUP). Returns the process exit status: 0
 * after a clean shutdown, 1 on a runtime failure, 2 when the
 * configuration, templates or credentials cannot be used at start.
 */
int pgw_serve_run(struct pgw_config *cfg, const char *cfg_path);

/*
 * What `check-config` adds to the file checks: loads the templates, every
 * APNs key (.p8, ES256) and every FCM service account as serve would,
 * adding one line per problem to |diag|. Returns the number of problems.
 */
int pgw_serve_check(const struct pgw_config *cfg, struct pgw_diag *diag);

#endif
