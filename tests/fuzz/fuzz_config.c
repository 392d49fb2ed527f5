/*
 * libFuzzer target: the configuration loader (pgw_config_load, config.h):
 * inih's parsing of the INI text and our validation and conversion of
 * every section and key. The input is written to a temporary file (the
 * loader takes a path) and loaded with an empty environment, so PUSHGW_*
 * variables of the fuzzing shell do not change the result. A loaded
 * config must hold the values the contract requires (listen addresses,
 * positive limits, at least the checked apps).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pushgw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *const no_env[] = {NULL};
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    FILE *fp;
    int rc;

    if (size > 65536)
        return 0;
    if (path[0] == '\0') {
        int fd;
        snprintf(path, sizeof(path), "/tmp/fuzz_config.XXXXXX");
        fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
    }
    fp = fopen(path, "wb");
    if (!fp)
        abort();
    if (size && fwrite(data, 1, size, fp) != size)
        abort();
    fclose(fp);

    pgw_diag_init(&diag);
    rc = pgw_config_load(path, no_env, &diag, &cfg);
    if (rc == 0) {
        if (!cfg || !cfg->server.listen || cfg->server.max_body_bytes < 1024 ||
            cfg->server.max_peers_per_event < 1 ||
            cfg->delivery.max_attempts < 1)
            abort();
        pgw_config_free(cfg);
    } else if (cfg) {
        abort(); /* no config on failure */
    }
    pgw_diag_release(&diag);
    return 0;
}
