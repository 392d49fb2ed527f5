/*
 * The record files of the mocks (--record): one JSON line per request,
 * written by tests/mock (APNs, FCM) and tests/service/hook_server.c.
 */
#ifndef PUSHGW_TU_RECORDS_H
#define PUSHGW_TU_RECORDS_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The number of whole lines in |record| (0 when it does not exist). */
size_t tu_records_count(const char *record);
/* Waits up to |timeout_ms| until |record| holds at least |n| lines;
 * returns the number of lines then. */
size_t tu_records_wait(const char *record, size_t n, int timeout_ms);
/* The lines of |record| parsed, as a JSON array (cJSON_Delete()); lines
 * that are not JSON are left out. */
cJSON *tu_records_read(const char *record);
/* The last record of |record| whose "token" is |token| (cJSON_Delete()),
 * or NULL when there is none. */
cJSON *tu_records_last_for(const char *record, const char *token);
/*
 * The value at the dotted |path| of |o| ("body.aps.alert") as text: a
 * string as it is, a number printed ("%g", valid until the next call),
 * else "(non-string)", or "(missing)" when the path leads nowhere.
 */
const char *tu_json_str(const cJSON *o, const char *path);

/*
 * The pushes of events "message <i>" (i < n_events) to |n_tokens| device
 * tokens, tallied from APNs and FCM record files (|records|, NULL-
 * terminated; a missing file counts as empty): counts[i * n_tokens + d] =
 * number of status-200 records; first_ms likewise, the ts_ms of the first
 * such record (0 when none). Records of other tokens or texts are ignored.
 */
struct tu_tally {
    size_t n_events;
    size_t n_tokens;
    int *counts;
    long long *first_ms;
    size_t records; /* lines read */
    size_t non_200; /* records with another status */
};
void tu_tally(struct tu_tally *t, const char *const *records, size_t n_events,
              const char *const *tokens, size_t n_tokens);
void tu_tally_free(struct tu_tally *t);

#endif
