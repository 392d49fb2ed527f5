/* libFuzzer target: event parsing and validation (event.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pgw_event_limits lim = {16, 65536, 0};
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;
    char *body = NULL;

    if (pgw_event_parse((const char *)data, size, &lim, &ev, &err) != 0)
        return 0;
    /* Invariants of a parsed event. */
    if (ev->n_offline_peers == 0 || ev->n_offline_peers > lim.max_peers)
        abort();
    for (size_t i = 0; i < ev->n_offline_peers; i++)
        if (!pgw_utf8_valid(ev->offline_peers[i], strlen(ev->offline_peers[i])))
            abort();
    if (ev->content && !pgw_utf8_valid(ev->content, strlen(ev->content)))
        abort();
    if (pgw_event_hook_request(ev, &body) == 0)
        free(body);
    pgw_event_free(ev);
    return 0;
}
