/*
 * libFuzzer target: the server hook's answer (pgw_resolve_parse_hook_answer,
 * resolve.h), the one input pushgw takes from a third party's server.
 * Checks the documented invariants of a parsed answer: peers deduplicated
 * and valid UTF-8 without NUL, pushMessage an object when present.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "resolve.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pgw_event_limits lim = {16, 65536, 0};
    struct pgw_hook_answer *a = NULL;
    struct pgw_json_error err;

    if (pgw_resolve_parse_hook_answer((const char *)data, size, &lim, &a,
                                      &err) != 0) {
        if (a)
            abort(); /* no answer on failure */
        return 0;
    }
    if (a->n_offline_peers > 0 && !a->has_offline_peers)
        abort();
    for (size_t i = 0; i < a->n_offline_peers; i++) {
        const char *p = a->offline_peers[i];
        if (!p || !pgw_utf8_valid(p, strlen(p)))
            abort();
        for (size_t k = 0; k < i; k++)
            if (strcmp(a->offline_peers[k], p) == 0)
                abort(); /* duplicates are removed */
    }
    if (a->push_message && !cJSON_IsObject(a->push_message))
        abort();
    pgw_resolve_hook_answer_free(a);
    return 0;
}
