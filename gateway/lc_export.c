/*
 * The export reader is a small state machine over a byte buffer that holds
 * only what is not yet consumed: the record being read (at most the cap)
 * and what was fed after it. JSON Lines records end at a newline; array
 * elements end at a ',' or ']' outside strings and brackets, found by a
 * scan that keeps its place (depth, string, escape) across feeds, so a
 * record arriving in many small pieces is scanned once, not once per
 * piece. A record found to be over the cap is reported at once and its
 * bytes dropped as they come, the scan going on to find where it ends.
 * Each record's text is then checked and parsed by the strict JSON reader
 * of util/json.h (valid UTF-8, no "\u0000", depth caps), so whatever reaches
 * the caller is text Postgres will take.
 */
#include "lc_export.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "pushgw.h"

/* How far into a file starting with '{' the reader looks for Parse's
 * "results" member before calling it JSON Lines. */
#define LOOKAHEAD_BYTES 4096

enum state {
    ST_DETECT,    /* before the first non-blank byte (and a BOM) */
    ST_LINES,     /* JSON Lines: at the start of a line */
    ST_LINE_SKIP, /* JSON Lines: dropping the rest of an over-long line */
    ST_ARR_VALUE, /* array: before an element (after '[' or ',') */
    ST_ARR_ELEM,  /* array: inside an element */
    ST_ARR_SKIP,  /* array: inside an element over the cap, dropping it */
    ST_ARR_AFTER, /* array: after an element, before ',' or ']' */
    ST_TRAILER,   /* after the array: the rest is not read */
    ST_BROKEN,    /* reported broken: the rest is not read */
};

struct pgw_lc_export {
    char *buf;
    size_t cap;
    size_t start; /* first byte not consumed */
    size_t scan;  /* where the scan of the current record goes on */
    size_t len;   /* bytes held */
    size_t max_record;
    uint64_t line;     /* line of buf[scan] */
    uint64_t rec_line; /* line the current record starts on */
    size_t depth;      /* array element: open brackets */
    bool in_str, esc;  /* array element: inside a string, after '\' */
    bool bom_checked;
    bool finished; /* no more input */
    bool done;     /* finished and every item taken out */
    enum state st;
    enum pgw_lc_export_format fmt;
};

struct pgw_lc_export *pgw_lc_export_new(size_t max_record_bytes)
{
    struct pgw_lc_export *self = calloc(1, sizeof(*self));

    if (!self)
        return NULL;
    self->max_record =
        max_record_bytes ? max_record_bytes : PGW_LC_EXPORT_MAX_RECORD_BYTES;
    self->line = 1;
    self->st = ST_DETECT;
    return self;
}

void pgw_lc_export_free(struct pgw_lc_export *self)
{
    if (!self)
        return;
    free(self->buf);
    free(self);
}

int pgw_lc_export_feed(struct pgw_lc_export *self, const void *data, size_t len)
{
    size_t held, want;
    char *nb;

    if (self->finished)
        return PGW_ERR_INVAL;
    held = self->len - self->start;
    if (held > self->max_record + LOOKAHEAD_BYTES)
        return PGW_ERR_BUSY;
    if (len == 0)
        return 0;
    if (self->start > 0) {
        memmove(self->buf, self->buf + self->start, held);
        self->scan -= self->start;
        self->len = held;
        self->start = 0;
    }
    if (len > SIZE_MAX - held)
        return PGW_ERR_NOMEM;
    want = held + len;
    if (want > self->cap) {
        size_t cap = self->cap ? self->cap : 4096;

        while (cap < want)
            cap = cap > SIZE_MAX / 2 ? want : cap * 2;
        nb = realloc(self->buf, cap);
        if (!nb)
            return PGW_ERR_NOMEM;
        self->buf = nb;
        self->cap = cap;
    }
    memcpy(self->buf + self->len, data, len);
    self->len += len;
    return 0;
}

void pgw_lc_export_finish(struct pgw_lc_export *self)
{
    self->finished = true;
}

bool pgw_lc_export_done(const struct pgw_lc_export *self)
{
    return self->done;
}

enum pgw_lc_export_format
pgw_lc_export_get_format(const struct pgw_lc_export *self)
{
    return self->fmt;
}

size_t pgw_lc_export_buffered(const struct pgw_lc_export *self)
{
    return self->cap;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Consumes blanks from |start|, counting lines; true when a byte that is
 * not blank is next. Only used where start == scan. */
static bool skip_blanks(struct pgw_lc_export *self)
{
    while (self->start < self->len && is_blank(self->buf[self->start])) {
        if (self->buf[self->start] == '\n')
            self->line++;
        self->start++;
    }
    self->scan = self->start;
    return self->start < self->len;
}

static void drop_all(struct pgw_lc_export *self)
{
    self->start = self->scan = self->len;
}

static int item_error(struct pgw_lc_export_item *ret_item,
                      enum pgw_lc_export_kind kind, uint64_t line,
                      const char *fmt, ...) PGW_PRINTF(4, 5);

static int item_error(struct pgw_lc_export_item *ret_item,
                      enum pgw_lc_export_kind kind, uint64_t line,
                      const char *fmt, ...)
{
    va_list ap;

    ret_item->kind = kind;
    ret_item->line = line;
    ret_item->object = NULL;
    va_start(ap, fmt);
    vsnprintf(ret_item->reason, sizeof(ret_item->reason), fmt, ap);
    va_end(ap);
    return 1;
}

/* Parses the |n| bytes at |p| as the record of |line| into |*ret_item|.
 * Returns 1, or PGW_ERR_NOMEM. */
static int emit(struct pgw_lc_export *self, const char *p, size_t n,
                uint64_t line, struct pgw_lc_export_item *ret_item)
{
    const char *why = NULL;
    size_t off = 0;
    cJSON *json = NULL;
    int rc;

    if (n > self->max_record)
        return item_error(ret_item, PGW_LC_EXPORT_TOO_LARGE, line,
                          "record larger than %zu bytes", self->max_record);
    rc = pgw_json_parse(p, n, NULL, &json, &off, &why);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0) {
        ret_item->kind = PGW_LC_EXPORT_MALFORMED;
        ret_item->line = line;
        ret_item->object = NULL;
        snprintf(ret_item->reason, sizeof(ret_item->reason), "%s at byte %zu",
                 why ? why : "invalid JSON", off + 1);
        return 1;
    }
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return item_error(ret_item, PGW_LC_EXPORT_MALFORMED, line,
                          "not a JSON object");
    }
    ret_item->kind = PGW_LC_EXPORT_RECORD;
    ret_item->line = line;
    ret_item->object = json;
    ret_item->reason[0] = '\0';
    return 1;
}

/*
 * Whether the |n| bytes at |s| (starting with '{') open Parse's
 * {"results": [: 1 yes, with *|ret_len| the bytes up to and with the '['
 * and *|ret_lines| the newlines among them; 0 no; -1 cannot tell yet.
 */
static int results_prefix(const char *s, size_t n, size_t *ret_len,
                          uint64_t *ret_lines)
{
    static const char key[] = "\"results\"";
    uint64_t lines = 0;
    size_t i = 1, k;

    for (int step = 0; step < 4; step++) {
        while (i < n && is_blank(s[i]))
            lines += s[i++] == '\n';
        if (i == n)
            return -1;
        switch (step) {
        case 0:
            for (k = 0; k < sizeof(key) - 1; k++, i++) {
                if (i == n)
                    return -1;
                if (s[i] != key[k])
                    return 0;
            }
            break;
        case 1:
            if (s[i++] != ':')
                return 0;
            break;
        case 2:
            if (s[i++] != '[')
                return 0;
            *ret_len = i;
            *ret_lines = lines;
            return 1;
        default:
            break;
        }
    }
    return 0;
}

static int next_detect(struct pgw_lc_export *self)
{
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    size_t avail = self->len - self->start;
    const char *p;
    uint64_t lines = 0;
    size_t plen = 0;
    int rc;

    if (avail == 0)
        return 0;
    p = self->buf + self->start;
    if (!self->bom_checked) {
        size_t k = avail < 3 ? avail : 3;

        if (memcmp(p, bom, k) == 0 && k < 3 && !self->finished)
            return 0;
        if (k == 3 && memcmp(p, bom, 3) == 0)
            self->start = self->scan += 3;
        self->bom_checked = true;
    }
    if (!skip_blanks(self))
        return 0;
    p = self->buf + self->start;
    avail = self->len - self->start;
    if (*p == '[') {
        self->fmt = PGW_LC_EXPORT_ARRAY;
        self->st = ST_ARR_VALUE;
        self->start = ++self->scan;
        return 1;
    }
    if (*p == '{') {
        /* At most the lookahead is looked at, however much is held, so
         * the answer does not depend on how the file was cut in pieces. */
        rc =
            results_prefix(p, avail < LOOKAHEAD_BYTES ? avail : LOOKAHEAD_BYTES,
                           &plen, &lines);
        if (rc < 0 && !self->finished && avail < LOOKAHEAD_BYTES)
            return 0;
        if (rc == 1) {
            self->fmt = PGW_LC_EXPORT_RESULTS;
            self->st = ST_ARR_VALUE;
            self->start = self->scan += plen;
            self->line += lines;
            return 1;
        }
    }
    self->fmt = PGW_LC_EXPORT_JSONL;
    self->st = ST_LINES;
    return 1;
}

static bool blank_text(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_blank(p[i]))
            return false;
    return true;
}

/* JSON Lines at the start of a line: 1 with an item, 0 for more input,
 * 2 to go on. */
static int next_line(struct pgw_lc_export *self,
                     struct pgw_lc_export_item *ret_item)
{
    const char *p = self->buf + self->start;
    const char *nl;
    size_t n;
    uint64_t line = self->line;

    nl = memchr(self->buf + self->scan, '\n', self->len - self->scan);
    if (!nl) {
        n = self->len - self->start;
        if (self->finished) {
            drop_all(self);
            if (n <= self->max_record && blank_text(p, n))
                return 0;
            return emit(self, p, n, line, ret_item);
        }
        if (n > self->max_record) {
            drop_all(self);
            self->st = ST_LINE_SKIP;
            return item_error(ret_item, PGW_LC_EXPORT_TOO_LARGE, line,
                              "record larger than %zu bytes", self->max_record);
        }
        self->scan = self->len;
        return 0;
    }
    n = (size_t)(nl - p);
    self->start = self->scan = (size_t)(nl - self->buf) + 1;
    self->line++;
    /* A line over the cap is reported even when blank: it is reported
     * before its end is seen when it comes in pieces. */
    if (n <= self->max_record && blank_text(p, n))
        return 2;
    return emit(self, p, n, line, ret_item);
}

static int next_line_skip(struct pgw_lc_export *self)
{
    const char *nl =
        memchr(self->buf + self->scan, '\n', self->len - self->scan);

    if (!nl) {
        drop_all(self);
        return 0;
    }
    self->start = self->scan = (size_t)(nl - self->buf) + 1;
    self->line++;
    self->st = ST_LINES;
    return 2;
}

enum scan_result {
    SCAN_MORE,  /* the bytes held end inside the element */
    SCAN_END,   /* |scan| is at the ',' or ']' that ends it */
    SCAN_BAD,   /* |scan| is at a '}' that closes nothing */
    SCAN_LARGE, /* the element has more than |limit| bytes */
};

/* Scans an array element from |scan|, up to |limit| bytes from |start|
 * (SIZE_MAX: no limit). */
static enum scan_result scan_element(struct pgw_lc_export *self, size_t limit)
{
    size_t end = self->len, i;

    if (limit != SIZE_MAX && end - self->start > limit)
        end = self->start + limit + 1;
    for (i = self->scan; i < end; i++) {
        char c = self->buf[i];

        if (c == '\n')
            self->line++;
        if (self->in_str) {
            if (self->esc)
                self->esc = false;
            else if (c == '\\')
                self->esc = true;
            else if (c == '"')
                self->in_str = false;
            continue;
        }
        switch (c) {
        case '"':
            self->in_str = true;
            break;
        case '{':
        case '[':
            self->depth++;
            break;
        case '}':
        case ']':
            if (self->depth == 0) {
                self->scan = i;
                return c == '}' ? SCAN_BAD : SCAN_END;
            }
            self->depth--;
            break;
        case ',':
            if (self->depth == 0) {
                self->scan = i;
                return SCAN_END;
            }
            break;
        default:
            break;
        }
    }
    self->scan = end;
    return end - self->start > limit ? SCAN_LARGE : SCAN_MORE;
}

static int broken(struct pgw_lc_export *self,
                  struct pgw_lc_export_item *ret_item, const char *why)
{
    drop_all(self);
    self->st = ST_BROKEN;
    ret_item->kind = PGW_LC_EXPORT_BROKEN;
    ret_item->line = self->line;
    ret_item->object = NULL;
    snprintf(ret_item->reason, sizeof(ret_item->reason), "%s", why);
    return 1;
}

static int next_array(struct pgw_lc_export *self,
                      struct pgw_lc_export_item *ret_item)
{
    enum scan_result sr;
    const char *p;
    int rc;

    switch (self->st) {
    case ST_ARR_VALUE:
    case ST_ARR_AFTER:
        if (!skip_blanks(self)) {
            if (self->finished)
                return broken(self, ret_item,
                              "the file ends inside the JSON array");
            return 0;
        }
        p = self->buf + self->start;
        if (*p == ']') {
            self->start = ++self->scan;
            self->st = ST_TRAILER;
            return 2;
        }
        if (self->st == ST_ARR_AFTER) {
            if (*p != ',')
                return broken(self, ret_item,
                              "expected ',' or ']' in the JSON array");
            self->start = ++self->scan;
            self->st = ST_ARR_VALUE;
            return 2;
        }
        if (*p == ',') {
            self->start = ++self->scan;
            return item_error(ret_item, PGW_LC_EXPORT_MALFORMED, self->line,
                              "empty array element");
        }
        self->rec_line = self->line;
        self->depth = 0;
        self->in_str = self->esc = false;
        self->st = ST_ARR_ELEM;
        return 2;
    case ST_ARR_ELEM:
        /* The cap is checked against the scan, not against what is held,
         * so the element is over it however the file was cut. */
        sr = scan_element(self, self->max_record);
        if (sr == SCAN_BAD)
            return broken(self, ret_item,
                          "'}' that closes nothing in the JSON array");
        if (sr == SCAN_END) {
            p = self->buf + self->start;
            rc = emit(self, p, self->scan - self->start, self->rec_line,
                      ret_item);
            self->start = self->scan;
            self->st = ST_ARR_AFTER;
            return rc;
        }
        if (sr == SCAN_LARGE) {
            self->start = self->scan;
            self->st = ST_ARR_SKIP;
            return item_error(ret_item, PGW_LC_EXPORT_TOO_LARGE, self->rec_line,
                              "record larger than %zu bytes", self->max_record);
        }
        if (self->finished)
            return broken(self, ret_item,
                          "the file ends inside the JSON array");
        return 0;
    case ST_ARR_SKIP:
        sr = scan_element(self, SIZE_MAX);
        if (sr == SCAN_BAD)
            return broken(self, ret_item,
                          "'}' that closes nothing in the JSON array");
        self->start = self->scan;
        if (sr == SCAN_END) {
            self->st = ST_ARR_AFTER;
            return 2;
        }
        if (self->finished)
            return broken(self, ret_item,
                          "the file ends inside the JSON array");
        return 0;
    default:
        return 0;
    }
}

int pgw_lc_export_next(struct pgw_lc_export *self,
                       struct pgw_lc_export_item *ret_item)
{
    int rc;

    for (;;) {
        switch (self->st) {
        case ST_DETECT:
            rc = next_detect(self);
            if (rc == 1)
                continue;
            break;
        case ST_LINES:
            rc = next_line(self, ret_item);
            if (rc == 2)
                continue;
            break;
        case ST_LINE_SKIP:
            rc = next_line_skip(self);
            if (rc == 2)
                continue;
            break;
        case ST_ARR_VALUE:
        case ST_ARR_AFTER:
        case ST_ARR_ELEM:
        case ST_ARR_SKIP:
            rc = next_array(self, ret_item);
            if (rc == 2)
                continue;
            break;
        case ST_TRAILER:
        case ST_BROKEN:
        default:
            drop_all(self);
            rc = 0;
            break;
        }
        if (rc == 0 && self->finished)
            self->done = true;
        return rc;
    }
}
