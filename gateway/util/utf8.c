/* UTF-8 validation and cutting (see utf8.h). */
#include "util/utf8.h"

static bool is_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

size_t pgw_utf8_seq_len(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return len >= 2 && is_cont(s[1]) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (len < 3 || !is_cont(s[1]) || !is_cont(s[2]))
            return 0;
        if (c == 0xE0 && s[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && s[1] >= 0xA0) /* surrogates */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (len < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3]))
            return 0;
        if (c == 0xF0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && s[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

bool pgw_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        /* ASCII runs are the common case: no call per byte */
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = pgw_utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t pgw_utf8_truncate(const char *s, size_t len, size_t max)
{
    size_t n = max;

    if (len <= max)
        return len;
    /* s[n] is the first byte left out: if it continues a character, the
     * character starts before it and is left out whole. At most 3 steps
     * back for valid UTF-8; invalid input is cut where it stops. */
    while (n > 0 && max - n < 3 && is_cont((unsigned char)s[n]))
        n--;
    return is_cont((unsigned char)s[n]) ? max : n;
}
