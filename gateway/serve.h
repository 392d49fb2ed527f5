/* `pushgw serve`: builds every part on one event loop, runs until SIGTERM
 * or SIGINT (drain, then exit), reloads on SIGHUP. */
#ifndef PUSHGW_SERVE_H
#define PUSHGW_SERVE_H

#include <stdbool.h>

#include "config.h"

struct pgw_serve_options {
    const char *cfg_path; /* re-read on SIGHUP; NULL: the path of cfg */
    const char *commit;   /* pushgw_build_info's commit; NULL: "unknown" */
    /* Give the heap's free pages back to the system every few seconds:
     * for glibc's malloc, which does not do it by itself; not for
     * jemalloc, which does. */
    bool trim_heap;
};

/*
 * Runs the gateway with |cfg| (a reference is taken) and |opts| (copied).
 * Returns the process exit status: 0 after a clean shutdown, 1 on a
 * runtime failure, 2 when the configuration, templates or credentials
 * cannot be used at start.
 */
int pgw_serve_run(struct pgw_config *cfg, const struct pgw_serve_options *opts);

#endif
