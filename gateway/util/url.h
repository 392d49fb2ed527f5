/*
 * What the gateway needs to know of a URL it was configured with, without
 * a parser library: where the credentials are (so that they never reach a
 * log line or an error message) and whether the host is this machine.
 * Pure.
 */
#ifndef PUSHGW_UTIL_URL_H
#define PUSHGW_UTIL_URL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * |url| with the password of its userinfo ("scheme://user:password@host")
 * replaced by "***", in |buf| of |size| bytes (truncated to fit, always
 * NUL-terminated). A URL without a password is copied as it is. Returns
 * |buf|.
 */
const char *pgw_url_redact(const char *url, char *buf, size_t size);

/* Whether |url| ("scheme://[userinfo@]host[:port]/…") names a loopback
 * host: localhost, 127.0.0.0/8 or [::1]. */
bool pgw_url_is_loopback(const char *url);

#endif
