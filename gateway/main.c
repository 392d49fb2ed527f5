/* The pushgw command line: wires modules together, holds no logic. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "import.h"
#include "log.h"
#include "pgwait.h"
#include "pushgw_commit.h"
#include "pushgw.h"
#include "render.h"
#include "runtime.h"
#include "serve.h"
#include "store.h"
#include "util/url.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static void usage(FILE *out)
{
    fputs("usage: pushgw <command> [options]\n"
          "\n"
          "commands:\n"
          "  serve        [-c FILE]   run the gateway (foreground)\n"
          "  migrate      [-c FILE] [--wait SECONDS]\n"
          "                           apply pending migrations/*.sql; with\n"
          "                           --wait, wait that long for the\n"
          "                           database to accept connections first\n"
          "  render       [-c FILE] --app APP [--event FILE|-] "
          "[--platform ios|android]\n"
          "                           print what each device would get\n"
          "  check-config [-c FILE]   validate config, key files, "
          "templates\n"
          "  import       [-c FILE] --app APP [--dry-run] FILE...\n"
          "                           load a LeanCloud/Parse _Installation "
          "export\n"
          "  version                  print the version\n"
          "\n"
          "Exit status: 0 ok; 1 a runtime failure (check-config: problems\n"
          "found; render: every device's line is an error); 2 usage, or a\n"
          "config that cannot be read or used (check-config: cannot be\n"
          "read).\n"
          "\n"
          "The config is FILE, else ./pushgw.ini, else "
          "/etc/pushgw/pushgw.ini;\n"
          "PUSHGW_<SECTION>_<KEY> environment variables override it.\n",
          out);
}

static void print_diag(const struct pgw_diag *diag)
{
    for (size_t i = 0; i < diag->n; i++)
        fprintf(stderr, "pushgw: %s\n", diag->msgs[i]);
    if (diag->oom)
        fprintf(stderr, "pushgw: out of memory while reporting errors\n");
}

/* The options of the commands: -c for every one, the others where a
 * command's |allowed| set names them. */
enum {
    OPT_HELP = 1u << 0,     /* -h, --help: usage on stdout, exit 0 */
    OPT_WAIT = 1u << 1,     /* --wait SECONDS */
    OPT_APP = 1u << 2,      /* --app APP */
    OPT_EVENT = 1u << 3,    /* --event FILE */
    OPT_PLATFORM = 1u << 4, /* --platform ios|android */
    OPT_DRY_RUN = 1u << 5,  /* --dry-run */
    OPT_ARGS = 1u << 6,     /* arguments after the options */
};

/* The most `migrate --wait` accepts: a day. */
#define MIGRATE_MAX_WAIT_S 86400

struct cmd_opts {
    const char *config; /* -c FILE, or NULL */
    const char *app;
    const char *event;
    bool has_platform;
    enum pgw_platform platform;
    long wait_s; /* -1: no --wait */
    bool dry_run;
    char **args; /* what follows the options */
    int n_args;
};

static const struct {
    unsigned bit;
    struct option opt;
} all_opts[] = {
    {0, {"config", required_argument, NULL, 'c'}},
    {OPT_WAIT, {"wait", required_argument, NULL, 'w'}},
    {OPT_APP, {"app", required_argument, NULL, 'a'}},
    {OPT_EVENT, {"event", required_argument, NULL, 'e'}},
    {OPT_PLATFORM, {"platform", required_argument, NULL, 'p'}},
    {OPT_DRY_RUN, {"dry-run", no_argument, NULL, 'n'}},
    {OPT_HELP, {"help", no_argument, NULL, 'h'}},
};

/* Checks one option's value as it is met; false after saying why. */
static bool opt_value(int c, const char *arg, struct cmd_opts *o)
{
    char *end;

    switch (c) {
    case 'w':
        o->wait_s = strtol(arg, &end, 10);
        if (*arg && !*end && o->wait_s >= 0 && o->wait_s <= MIGRATE_MAX_WAIT_S)
            return true;
        fprintf(stderr, "pushgw: invalid --wait '%s': seconds, 0 to %d\n", arg,
                MIGRATE_MAX_WAIT_S);
        return false;
    case 'p':
        if (pgw_platform_parse(arg, &o->platform) == 0) {
            o->has_platform = true;
            return true;
        }
        fprintf(stderr,
                "pushgw: invalid --platform '%s': must be 'ios' or "
                "'android'\n",
                arg);
        return false;
    }
    return true;
}

/* Sentinel of parse_opts(): go on with the command. */
#define PARSED (-1)

/*
 * Parses a command's options (the |allowed| OPT_ set; getopt reports the
 * others) into |o|. Returns PARSED, or the exit status to return at once:
 * EXIT_OK after --help, EXIT_USAGE.
 */
static int parse_opts(int argc, char **argv, unsigned allowed,
                      struct cmd_opts *o)
{
    struct option opts[PGW_ARRAY_SIZE(all_opts) + 1];
    size_t n = 0;
    int c;

    *o = (struct cmd_opts){.wait_s = -1};
    for (size_t i = 0; i < PGW_ARRAY_SIZE(all_opts); i++)
        if ((all_opts[i].bit & allowed) == all_opts[i].bit)
            opts[n++] = all_opts[i].opt;
    opts[n] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    while ((c = getopt_long(argc, argv, allowed & OPT_HELP ? "c:h" : "c:", opts,
                            NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'a':
            o->app = optarg;
            break;
        case 'e':
            o->event = optarg;
            break;
        case 'n':
            o->dry_run = true;
            break;
        case 'w':
        case 'p':
            if (!opt_value(c, optarg, o))
                return EXIT_USAGE;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    o->args = argv + optind;
    o->n_args = argc - optind;
    if (!(allowed & OPT_ARGS) && o->n_args > 0) {
        fprintf(stderr, "pushgw: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    return PARSED;
}

static int load_config(const char *path, struct pgw_config **ret_cfg)
{
    struct pgw_diag diag;
    int rc;

    pgw_diag_init(&diag);
    rc = pgw_config_load(path, NULL, &diag, ret_cfg);
    if (rc < 0) {
        print_diag(&diag);
        if (rc == PGW_ERR_NOMEM)
            fprintf(stderr, "pushgw: could not load config: %s\n",
                    pgw_strerror(rc));
    }
    pgw_diag_release(&diag);
    return rc;
}

static int cmd_migrate(int argc, char **argv)
{
    struct pgw_config *cfg = NULL;
    struct pgw_diag diag;
    struct cmd_opts o;
    int rc;

    rc = parse_opts(argc, argv, OPT_HELP | OPT_WAIT, &o);
    if (rc != PARSED)
        return rc;
    if (load_config(o.config, &cfg) < 0)
        return EXIT_USAGE;
    pgw_log_set_level(cfg->server.log_level);
    if (o.wait_s >= 0) {
        rc = pgw_pgwait_reachable(cfg->database.url, (unsigned)o.wait_s);
        if (rc < 0) {
            pgw_config_free(cfg);
            return rc == PGW_ERR_CONFIG ? EXIT_USAGE : EXIT_RUNTIME;
        }
    }
    pgw_diag_init(&diag);
    rc = pgw_store_migrate(cfg->database.url, cfg->database.migrations_dir,
                           stdout, &diag);
    print_diag(&diag);
    pgw_diag_release(&diag);
    pgw_config_free(cfg);
    if (rc == PGW_ERR_CONFLICT || rc == PGW_ERR_IO)
        return EXIT_USAGE;
    return rc < 0 ? EXIT_RUNTIME : EXIT_OK;
}

/* Where provider connections go when not straight to the provider. */
static void describe_proxies(const struct pgw_config *cfg)
{
    char shown[512];

    if (cfg->apns.proxy)
        printf("apns: through proxy '%s'\n",
               pgw_url_redact(cfg->apns.proxy, shown, sizeof(shown)));
    if (cfg->fcm.proxy)
        printf("fcm: through proxy '%s' (sends and access tokens)\n",
               pgw_url_redact(cfg->fcm.proxy, shown, sizeof(shown)));
}

static int cmd_check_config(int argc, char **argv)
{
    struct pgw_config *cfg = NULL;
    struct pgw_diag diag;
    struct cmd_opts o;
    int problems, rc;

    rc = parse_opts(argc, argv, OPT_HELP, &o);
    if (rc != PARSED)
        return rc;
    /* A checker: a file with problems is its finding (1); a file it
     * cannot read is a usage error like a wrong -c (2). */
    rc = load_config(o.config, &cfg);
    if (rc == PGW_ERR_CONFIG)
        return EXIT_RUNTIME;
    if (rc < 0)
        return EXIT_USAGE;
    pgw_diag_init(&diag);
    problems = pgw_config_check_files(cfg, &diag);
    problems += pgw_runtime_check(cfg, &diag);
    print_diag(&diag);
    pgw_diag_release(&diag);
    /* Warnings are printed and do not fail the check. */
    pgw_diag_init(&diag);
    pgw_config_warnings(cfg, &diag);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "pushgw: warning: %s\n", diag.msgs[i]);
    pgw_diag_release(&diag);
    if (problems == 0) {
        printf("config '%s' is valid: %zu app(s)\n", cfg->path, cfg->n_apps);
        pgw_runtime_describe_certs(cfg, stdout);
        describe_proxies(cfg);
    }
    pgw_config_free(cfg);
    return problems ? EXIT_RUNTIME : EXIT_OK;
}

static int cmd_render(int argc, char **argv)
{
    struct pgw_render_opts ro = {0};
    struct pgw_config *cfg = NULL;
    struct pgw_render_counts counts = {0, 0};
    struct cmd_opts o;
    char err[512] = "";
    int rc;

    rc = parse_opts(argc, argv, OPT_APP | OPT_EVENT | OPT_PLATFORM | OPT_ARGS,
                    &o);
    if (rc != PARSED)
        return rc;
    if (o.n_args > 0 || !o.app) {
        fprintf(stderr, "pushgw: render needs --app APP (see 'pushgw "
                        "--help')\n");
        return EXIT_USAGE;
    }
    if (load_config(o.config, &cfg) < 0)
        return EXIT_USAGE;
    ro.app_id = o.app;
    ro.event_path = o.event;
    ro.platform = o.platform;
    ro.has_platform = o.has_platform;
    ro.now_s = (int64_t)time(NULL);
    /* Problems are reported once, below, as one line. */
    pgw_log_set_level(PGW_LOG_ERROR);
    rc = pgw_render_run(cfg, &ro, stdout, err, sizeof(err), &counts);
    pgw_config_free(cfg);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "pushgw: could not write the output\n");
        return EXIT_RUNTIME;
    }
    if (rc < 0) {
        fprintf(stderr, "pushgw: %s\n", err);
        return rc == PGW_ERR_NOMEM || rc == PGW_ERR_IO || rc == PGW_ERR_DB
                   ? EXIT_RUNTIME
                   : EXIT_USAGE;
    }
    /* Nothing a device would get: a script must not take it for a
     * render. */
    if (counts.lines > 0 && counts.errors == counts.lines) {
        fprintf(stderr,
                "pushgw: no device would get a push: all %zu line(s) are "
                "errors\n",
                counts.lines);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int cmd_import(int argc, char **argv)
{
    struct pgw_import_opts io = {0};
    struct pgw_import_summary sum;
    struct pgw_config *cfg = NULL;
    struct cmd_opts o;
    char err[512];
    int rc;

    rc = parse_opts(argc, argv, OPT_APP | OPT_DRY_RUN | OPT_ARGS, &o);
    if (rc != PARSED)
        return rc;
    if (!o.app || o.n_args == 0) {
        fprintf(stderr, "pushgw: import needs --app APP and at least one "
                        "FILE (see 'pushgw --help')\n");
        return EXIT_USAGE;
    }
    if (load_config(o.config, &cfg) < 0)
        return EXIT_USAGE;
    io.app_id = o.app;
    io.dry_run = o.dry_run;
    if (!pgw_config_find_app(cfg, io.app_id)) {
        fprintf(stderr, "pushgw: unknown app '%s': no [app:%s] in '%s'\n",
                io.app_id, io.app_id, cfg->path);
        pgw_config_free(cfg);
        return EXIT_USAGE;
    }
    pgw_log_set_level(PGW_LOG_ERROR);
    io.conninfo = cfg->database.url;
    io.out = stdout;
    io.progress = isatty(STDERR_FILENO) ? stderr : NULL;
    rc = pgw_import_run(&io, (const char *const *)o.args, (size_t)o.n_args,
                        &sum, err, sizeof(err));
    pgw_config_free(cfg);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "pushgw: could not write the report\n");
        return EXIT_RUNTIME;
    }
    if (rc < 0) {
        fprintf(stderr, "pushgw: %s\n", err);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int cmd_serve(int argc, char **argv)
{
    struct pgw_serve_options so;
    struct pgw_config *cfg = NULL;
    struct cmd_opts o;
    int rc;

    rc = parse_opts(argc, argv, OPT_HELP, &o);
    if (rc != PARSED)
        return rc;
    if (load_config(o.config, &cfg) < 0)
        return EXIT_USAGE;
    memset(&so, 0, sizeof(so));
    so.cfg_path = cfg->path;
    so.commit = PUSHGW_COMMIT;
#ifndef PUSHGW_JEMALLOC
    so.trim_heap = true;
#endif
    rc = pgw_serve_run(cfg, &so);
    pgw_config_free(cfg);
    return rc;
}

#ifdef PUSHGW_JEMALLOC
/* Read by jemalloc at start-up (MALLOC_CONF in the environment still
 * overrides it). Two arenas for the two threads; pages freed are given
 * back after a second instead of ten, so RSS follows what is in use (the
 * benchmark's 1,000,000 pending pushes: 62 -> 57 MiB), and by a thread of
 * jemalloc's own: without it, pages are only given back when the process
 * allocates, and a gateway waiting on slow providers keeps the pages of
 * the burst that came before (54 -> 49 MiB in the same scenario). */
const char *malloc_conf = "narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,"
                          "background_thread:true,max_background_threads:1";
#endif

int main(int argc, char **argv)
{
    const char *cmd;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("pushgw %s (%s)\n", PUSHGW_VERSION, PUSHGW_COMMIT);
        return EXIT_OK;
    }
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(argc - 1, argv + 1);
    if (strcmp(cmd, "render") == 0)
        return cmd_render(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 1, argv + 1);
    fprintf(stderr, "pushgw: unknown command '%s' (see 'pushgw --help')\n",
            cmd);
    return EXIT_USAGE;
}
