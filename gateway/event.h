/*
 * The receiversOffline event of DESIGN §6: parsing and validation, read
 * with the checked JSON reader of util/json.h. Pure: no I/O, no logging.
 */
#ifndef PUSHGW_EVENT_H
#define PUSHGW_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pushgw.h"
#include "util/json.h"

struct pgw_config;

#define PGW_EVENT_MAX_ID_BYTES 256                /* fromPeer, convId, peers */
#define PGW_EVENT_MAX_MSGID_BYTES 128             /* msgId */
#define PGW_EVENT_MAX_TIMESTAMP 253402300799999LL /* 9999-12-31, ms */
/* A timestamp under this (1973-03-03 in ms) is one in seconds: refused,
 * since read as ms it would make every push expired at once. */
#define PGW_EVENT_MIN_TIMESTAMP 100000000000LL
/* A broker's clock may run ahead a little; a day is a mistake (and would
 * stretch the 7-day validity). */
#define PGW_EVENT_MAX_FUTURE_MS (24LL * 3600 * 1000)

/* Limits of an event, from [server] of the config. */
struct pgw_event_limits {
    size_t max_peers;      /* offlinePeers: 1..max_peers */
    size_t max_body_bytes; /* the whole event text */
    /* The time of intake (ms since the epoch): a timestamp more than
     * PGW_EVENT_MAX_FUTURE_MS after it is refused. 0: not checked (events
     * already accepted, read back from the store). */
    int64_t now_ms;
};

/* Fills |ret_lim| from |cfg| (NULL: the DESIGN §5 defaults). */
void pgw_event_limits_from_config(const struct pgw_config *cfg,
                                  struct pgw_event_limits *ret_lim);

/*
 * A parsed, validated event. Every string is valid UTF-8 and NUL-free.
 * Peer arrays have duplicates removed, first occurrence kept in order.
 */
struct pgw_event {
    char *from_peer;
    char *conv_id;
    char **offline_peers; /* 1..max_peers */
    size_t n_offline_peers;
    int64_t timestamp_ms; /* ms since the epoch, >= 0 */
    char *content;        /* NULL when absent */
    bool mention_all;
    char **mention_offline_peers;
    size_t n_mention_offline_peers;
    /* An object: the object given, the one a JSON string holds, or
     * {"alert": string} for any other string. NULL: absent or ignored. */
    cJSON *push_data;
    /* Why a pushData of another type was ignored ("a number", "an array",
     * ...), for the caller to warn about; NULL when it was not. */
    const char *push_data_ignored;
    char *msg_id; /* NULL when absent */
    char **muted_peers;
    size_t n_muted_peers;
};

/*
 * Parses and validates the event text |buf| of |len| bytes with |lim|.
 * Unknown top-level fields are ignored; optional fields may be null.
 * On success stores a new event in |*ret_ev| (free with pgw_event_free()).
 * Errors: PGW_ERR_INVAL with |ret_err| filled (field and why),
 * PGW_ERR_TOO_LARGE (over max_body_bytes; |ret_err| filled), PGW_ERR_NOMEM.
 */
int pgw_event_parse(const char *buf, size_t len,
                    const struct pgw_event_limits *lim,
                    struct pgw_event **ret_ev, struct pgw_json_error *ret_err);

/*
 * As pgw_event_parse() for an already parsed object |obj| (an element of a
 * batch, or an event file of `render`). |obj| is not modified or kept.
 */
int pgw_event_from_json(const cJSON *obj, const struct pgw_event_limits *lim,
                        struct pgw_event **ret_ev,
                        struct pgw_json_error *ret_err);

void pgw_event_free(struct pgw_event *ev);

/*
 * The push content a string |text| gives (an event's pushData, a hook
 * answer's pushMessage): the JSON object it holds, else {"alert": text}.
 * Stores a new object in |*ret| (free with cJSON_Delete()).
 * Errors: PGW_ERR_NOMEM.
 */
int pgw_event_content_from_text(const char *text, cJSON **ret);

/*
 * The body of the server hook call (DESIGN §7.1): {fromPeer, convId,
 * offlinePeers, content, timestamp, mentionAll, mentionOfflinePeers}.
 * Stores a malloc'd NUL-terminated string in |*ret_body| (caller frees).
 * Errors: PGW_ERR_NOMEM.
 */
int pgw_event_hook_request(const struct pgw_event *ev, char **ret_body);

/*
 * A set of peer names (open addressing, FNV-1a), used to dedupe peers and
 * to test membership in O(1). Holds the pointers it is given, not copies:
 * the strings must outlive the set. Embedded: init/release.
 */
struct pgw_event_peerset {
    const char **slots;
    size_t cap; /* power of two, 0 when empty */
    size_t n;
};

void pgw_event_peerset_init(struct pgw_event_peerset *self);
void pgw_event_peerset_release(struct pgw_event_peerset *self);
/* Adds |name|: 1 added, 0 already present, PGW_ERR_NOMEM. */
int pgw_event_peerset_add(struct pgw_event_peerset *self, const char *name);
bool pgw_event_peerset_has(const struct pgw_event_peerset *self,
                           const char *name);

#endif
