/*
 * Metrics about the process itself, as the Prometheus client libraries
 * export them: pushgw_build_info{version,commit} (always 1) and the
 * process_* family (CPU seconds, resident and virtual memory, open and
 * maximum file descriptors, start time), read from /proc/self when
 * /metrics is rendered. Does I/O (reads /proc); never logs: a value it
 * cannot read is left as it was.
 */
#ifndef PUSHGW_SELFMETRICS_H
#define PUSHGW_SELFMETRICS_H

#include <stdint.h>

#include "metrics.h"

/* What one read of /proc/self/stat gives. */
struct pgw_proc_stat {
    double cpu_seconds;      /* user + system */
    double start_time_s;     /* Unix seconds */
    uint64_t virtual_bytes;  /* vsize */
    uint64_t resident_bytes; /* rss pages * page size */
};

/*
 * Parses the text of /proc/<pid>/stat (|text|, NUL-terminated) with the
 * clock ticks per second |ticks|, the page size |page| and the boot time
 * |boot_s| (Unix seconds, "btime" of /proc/stat). Pure. Returns 0 or
 * PGW_ERR_INVAL (not the expected fields).
 */
int pgw_selfmetrics_parse_stat(const char *text, long ticks, long page,
                               int64_t boot_s, struct pgw_proc_stat *ret_st);

/* Embedded by its owner (serve), which keeps it as long as |metrics|. */
struct pgw_selfmetrics {
    struct pgw_metric_series *cpu, *resident, *virt, *open_fds, *max_fds,
        *start;
    double cpu_seen; /* the counter follows the kernel's total */
    long ticks, page;
    int64_t boot_s;
};

/*
 * Registers the families above in |metrics|, and a collector (with
 * |self|) that refreshes the process_* values at each render. |version|
 * and |commit| are copied. Nothing to release: |metrics| owns it all.
 * Errors: those of pgw_metrics_register() and pgw_metrics_add_collector().
 */
int pgw_selfmetrics_init(struct pgw_selfmetrics *self,
                         struct pgw_metrics *metrics, const char *version,
                         const char *commit);

#endif
