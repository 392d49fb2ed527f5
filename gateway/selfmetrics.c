/* The process's own metrics: see selfmetrics.h. */
#include "selfmetrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "pushgw.h"

/* /proc/self/stat is one line of about 300 bytes. */
#define STAT_MAX_BYTES 4096

int pgw_selfmetrics_parse_stat(const char *text, long ticks, long page,
                               int64_t boot_s, struct pgw_proc_stat *ret_st)
{
    /* After the command name, which may hold spaces and parentheses:
     * field 3 (state) on. utime and stime are fields 14 and 15,
     * starttime 22, vsize 23, rss 24 (proc(5)). */
    const char *p = strrchr(text, ')');
    unsigned long long utime, stime, start, vsize;
    long long rss;

    if (!p || ticks <= 0 || page <= 0)
        return PGW_ERR_INVAL;
    if (sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu"
               " %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return PGW_ERR_INVAL;
    ret_st->cpu_seconds = (double)(utime + stime) / (double)ticks;
    ret_st->start_time_s = (double)boot_s + (double)start / (double)ticks;
    ret_st->virtual_bytes = vsize;
    ret_st->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    return 0;
}

static int read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f)
        return PGW_ERR_IO;
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n ? 0 : PGW_ERR_IO;
}

/* The boot time (Unix seconds) from /proc/stat's "btime" line, or -1. */
static int64_t boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    long long v = -1;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "btime %lld", &v) == 1)
            break;
    }
    fclose(f);
    return v;
}

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the one opendir() holds */
}

static void collect(void *arg, struct pgw_metrics *metrics)
{
    struct pgw_selfmetrics *sm = arg;
    struct pgw_proc_stat st;
    struct rlimit rl;
    char text[STAT_MAX_BYTES];
    long fds;

    (void)metrics;
    if (read_text("/proc/self/stat", text, sizeof(text)) == 0 &&
        sm->boot_s >= 0 &&
        pgw_selfmetrics_parse_stat(text, sm->ticks, sm->page, sm->boot_s,
                                   &st) == 0) {
        if (st.cpu_seconds > sm->cpu_seen) {
            pgw_metric_add(sm->cpu, st.cpu_seconds - sm->cpu_seen);
            sm->cpu_seen = st.cpu_seconds;
        }
        pgw_metric_set(sm->resident, (double)st.resident_bytes);
        pgw_metric_set(sm->virt, (double)st.virtual_bytes);
        pgw_metric_set(sm->start, st.start_time_s);
    }
    fds = count_fds();
    if (fds >= 0)
        pgw_metric_set(sm->open_fds, (double)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        pgw_metric_set(sm->max_fds,
                       rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

/* A family without labels and its one series. */
static int gauge(struct pgw_metrics *m, enum pgw_metric_type type,
                 const char *name, const char *help,
                 struct pgw_metric_series **ret_series)
{
    struct pgw_metric_family *f;
    int rc = pgw_metrics_register(m, type, name, help, NULL, 0, 0, NULL, 0, &f);

    if (rc < 0)
        return rc;
    *ret_series = pgw_metrics_series(f, NULL);
    return *ret_series ? 0 : PGW_ERR_NOMEM;
}

int pgw_selfmetrics_init(struct pgw_selfmetrics *self,
                         struct pgw_metrics *metrics, const char *version,
                         const char *commit)
{
    static const char *const info_labels[] = {"version", "commit"};
    struct pgw_selfmetrics *sm = self;
    const char *values[2] = {version, commit};
    struct pgw_metric_family *info;
    int rc;

    rc = pgw_metrics_register(metrics, PGW_METRIC_GAUGE, "pushgw_build_info",
                              "1, labelled with the version and the commit "
                              "pushgw was built from.",
                              info_labels, 2, 1, NULL, 0, &info);
    if (rc < 0)
        return rc;
    pgw_metric_set(pgw_metrics_series(info, values), 1);

    memset(sm, 0, sizeof(*sm));
    sm->ticks = sysconf(_SC_CLK_TCK);
    sm->page = sysconf(_SC_PAGESIZE);
    sm->boot_s = boot_time();
    rc = gauge(metrics, PGW_METRIC_COUNTER, "process_cpu_seconds_total",
               "Total user and system CPU time spent in seconds.", &sm->cpu);
    if (rc == 0)
        rc = gauge(metrics, PGW_METRIC_GAUGE, "process_resident_memory_bytes",
                   "Resident memory size in bytes.", &sm->resident);
    if (rc == 0)
        rc = gauge(metrics, PGW_METRIC_GAUGE, "process_virtual_memory_bytes",
                   "Virtual memory size in bytes.", &sm->virt);
    if (rc == 0)
        rc = gauge(metrics, PGW_METRIC_GAUGE, "process_open_fds",
                   "Number of open file descriptors.", &sm->open_fds);
    if (rc == 0)
        rc = gauge(metrics, PGW_METRIC_GAUGE, "process_max_fds",
                   "Maximum number of open file descriptors.", &sm->max_fds);
    if (rc == 0)
        rc = gauge(metrics, PGW_METRIC_GAUGE, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.",
                   &sm->start);
    if (rc < 0)
        return rc;
    return pgw_metrics_add_collector(metrics, collect, sm);
}
