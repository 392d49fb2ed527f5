/*
 * UTF-8: the one validator of the gateway and cutting on a character
 * boundary. Strict, as RFC 3629: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. NUL
 * (U+0000) is valid UTF-8; callers that refuse it check for it. Pure.
 */
#ifndef PUSHGW_UTIL_UTF8_H
#define PUSHGW_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The length (1 to 4) of the valid UTF-8 sequence that starts the |len|
 * bytes at |s| (|len| > 0), or 0 when they do not start with one.
 */
size_t pgw_utf8_seq_len(const char *s, size_t len);

/* True when the |len| bytes at |s| are valid UTF-8. */
bool pgw_utf8_valid(const char *s, size_t len);

/*
 * The length of the longest prefix of the |len| bytes at |s| that is at
 * most |max| bytes and does not end inside a character: |len| when it
 * fits, else |max| moved back to the start of the character it would cut.
 * For valid UTF-8 the prefix is valid UTF-8.
 */
size_t pgw_utf8_truncate(const char *s, size_t len, size_t max);

#endif
