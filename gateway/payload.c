/* What the payload builders share (see payload.h). */
#include "payload.h"

#include <stdlib.h>
#include <string.h>

#include "util/json.h"

int pgw_payload_print(cJSON *root, cJSON *text, size_t max_len, char **ret_text,
                      bool *ret_shortened)
{
    char *out = cJSON_PrintUnformatted(root);
    size_t len;
    int rc;

    if (!out)
        return PGW_ERR_NOMEM;
    len = strlen(out);
    if (len <= max_len) {
        *ret_text = out;
        *ret_shortened = false;
        return 0;
    }
    free(out);
    if (!text)
        return PGW_ERR_TOO_LARGE;
    rc = pgw_json_shorten(text, len - max_len);
    if (rc < 0)
        return rc;
    out = cJSON_PrintUnformatted(root);
    if (!out)
        return PGW_ERR_NOMEM;
    if (strlen(out) > max_len) {
        free(out);
        return PGW_ERR_TOO_LARGE;
    }
    *ret_text = out;
    *ret_shortened = true;
    return 0;
}
