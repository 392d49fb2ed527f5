/*
 * `pushgw render` (DESIGN §4, §7): prints, without sending, what each
 * device would get, one JSON object per line, in installation order.
 * pgw_render_run() is the CLI driver (reads the event file, prints);
 * pgw_render_event() is the core, fed with installations from the event
 * file, or from the database as serve would find them (read-only: no
 * badge is incremented). Never logs.
 */
#ifndef PUSHGW_RENDER_H
#define PUSHGW_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "resolve.h"

#define PGW_RENDER_MAX_FILE_BYTES (64 * 1024 * 1024)
#define PGW_RENDER_MAX_INSTALLATIONS 100000
#define PGW_RENDER_MAX_CHANNELS 1000

struct pgw_render_opts {
    const char *app_id;     /* required */
    const char *event_path; /* NULL or "-": standard input */
    bool has_platform;      /* print only |platform| devices */
    enum pgw_platform platform;
    int64_t now_s; /* the time for expiry and ttl */
};

/* What a render printed: the command exits 1 when every line failed. */
struct pgw_render_counts {
    size_t lines;  /* one per device */
    size_t errors; /* of those, lines with "error" */
};

/*
 * Prints one line per device of |insts| (|n|) that gets a push of |res| or
 * fails ("error": the outcome reason serve records, from the per-device
 * step serve runs, pgw_push_make()), skipping devices that are not
 * recipients, of another team, or of the other platform when filtered.
 * |app|'s keys and account count as loaded, as they are in a running
 * serve. |event_id| seeds the apns-id. Stores what it printed in
 * |*ret_counts|. Errors: PGW_ERR_NOMEM, PGW_ERR_IO.
 */
int pgw_render_event(const struct pgw_config *cfg, const struct pgw_app *app,
                     const struct pgw_resolved *res, const char *event_id,
                     const struct pgw_installation *insts, size_t n,
                     const struct pgw_render_opts *opts, FILE *out,
                     struct pgw_render_counts *ret_counts);

/*
 * The driver: loads the templates of |cfg|, reads the event file of
 * |opts| (an event with an optional "installations" array — without it
 * the installations are looked up in [database] url — and an optional
 * "hookAnswer" object standing in for the server hook), resolves it and
 * prints to |out|. On error writes one line (no newline) into |err| of
 * |errlen| bytes: what failed, then why, values in single quotes. On
 * success stores what it printed in |*ret_counts|.
 * Returns 0, PGW_ERR_INVAL (bad input), PGW_ERR_CONFIG (unknown app,
 * templates), PGW_ERR_DB (database lookup failed), PGW_ERR_IO,
 * PGW_ERR_NOMEM.
 */
int pgw_render_run(const struct pgw_config *cfg,
                   const struct pgw_render_opts *opts, FILE *out, char *err,
                   size_t errlen, struct pgw_render_counts *ret_counts);

#endif
