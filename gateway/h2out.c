/* h2out: nghttp2 output gathered into full TLS records; see h2out.h. */
#include "h2out.h"

#include <stdint.h>
#include <string.h>

int pgw_h2out_send(nghttp2_session *session, struct evbuffer *out,
                   size_t high_water)
{
    while (evbuffer_get_length(out) < high_water) {
        uint8_t piece[PGW_H2OUT_PIECE];
        size_t used = 0;
        ssize_t n = 0;

        while (used < sizeof(piece)) {
            const uint8_t *data;

            n = nghttp2_session_mem_send(session, &data);
            if (n <= 0)
                break;
            if ((size_t)n > sizeof(piece) - used) {
                /* Does not fit: what is gathered, then this, as they are. */
                if ((used && evbuffer_add(out, piece, used) != 0) ||
                    evbuffer_add(out, data, (size_t)n) != 0)
                    return NGHTTP2_ERR_NOMEM;
                used = 0;
                break;
            }
            memcpy(piece + used, data, (size_t)n);
            used += (size_t)n;
        }
        if (used && evbuffer_add(out, piece, used) != 0)
            return NGHTTP2_ERR_NOMEM;
        if (n <= 0)
            return n < 0 ? (int)n : 0;
    }
    return 0;
}
