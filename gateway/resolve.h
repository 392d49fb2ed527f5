/*
 * Resolving the push of an event (DESIGN §7), done ONCE per event:
 * recipients (hook list, muted peers unless force), content precedence
 * (hook pushMessage > event pushData > static template), variables,
 * internal keys (_profile, _apns_team_id, _mentioned) and platform objects.
 * The result holds at most four content variants, [platform][mentioned];
 * pgw_resolve_for_installation() tells, per device, whether it gets a push
 * and which variant. Also the parser of the server hook's answer (§7.1).
 * Pure: no I/O, no logging.
 */
#ifndef PUSHGW_RESOLVE_H
#define PUSHGW_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "installation.h"
#include "pushgw.h"

/* An expanded string longer than this is cut (on a UTF-8 boundary): it
 * could never fit a 4096/5120-byte payload anyway. */
#define PGW_RESOLVE_MAX_STRING_BYTES (64 * 1024)
/* Total bytes of expanded strings per content; over it: PGW_ERR_TOO_LARGE. */
#define PGW_RESOLVE_MAX_EXPANDED_BYTES (1024 * 1024)

enum pgw_profile {
    PGW_PROFILE_PROD = 0, /* _profile absent or "prod" */
    PGW_PROFILE_DEV,      /* _profile "dev": APNs development endpoint */
    PGW_PROFILE_BAD,      /* anything else: iOS pushes fail 'bad_profile' */
};

enum pgw_resolve_source {
    PGW_RESOLVE_SOURCE_NONE = 0, /* no content: no push */
    PGW_RESOLVE_SOURCE_TEMPLATE,
    PGW_RESOLVE_SOURCE_PUSHDATA,
    PGW_RESOLVE_SOURCE_HOOK,
};

/* The server hook's answer, the object itself or {"result": {…}}. */
struct pgw_hook_answer {
    bool skip;              /* truthy "skip": no push at all */
    bool force;             /* truthy "force": muted peers get it too */
    bool has_offline_peers; /* "offlinePeers" was given */
    char **offline_peers;   /* deduplicated; may be empty */
    size_t n_offline_peers;
    cJSON *push_message; /* an object, or NULL when absent */
};

/*
 * Parses the hook answer body |buf| of |len| bytes (checked JSON, caps of
 * |lim|; NULL: defaults). "pushMessage": a string holding a JSON object →
 * that object; any other string → {"alert": string}; an object → as is;
 * null → absent. "offlinePeers": an array of strings (non-strings are
 * ignored). Truthiness is JavaScript's (false, 0, "", null are false).
 * On success stores a new answer in |*ret_answer| (free with
 * pgw_resolve_hook_answer_free()). Errors: PGW_ERR_INVAL (|ret_err|
 * filled; the caller fails open), PGW_ERR_NOMEM.
 */
int pgw_resolve_parse_hook_answer(const char *buf, size_t len,
                                  const struct pgw_event_limits *lim,
                                  struct pgw_hook_answer **ret_answer,
                                  struct pgw_json_error *ret_err);

void pgw_resolve_hook_answer_free(struct pgw_hook_answer *a);

/* The resolved push of one event. Read-only for callers. */
struct pgw_resolved {
    enum pgw_resolve_source source;
    /* Set when nothing is to be sent: "hook_skip", "no_content",
     * "no_recipients"; NULL otherwise. */
    const char *skip_reason;
    char **recipients; /* owned copies, event order */
    size_t n_recipients;
    struct pgw_event_peerset recipient_set; /* points into recipients */
    struct pgw_event_peerset mentioned_set; /* points into recipients */
    bool mention_all;
    enum pgw_profile profile;
    char *apns_team_id;   /* _apns_team_id; NULL: devices of any team */
    int64_t timestamp_s;  /* event timestamp, Unix seconds */
    int64_t expires_at_s; /* timestamp_s + validity_s */
    bool has_mentioned;   /* the content had a _mentioned object */
    /* An API push (pgw_resolve_api_push): every device given is a
     * recipient (the store chose them), none is mentioned. */
    bool everyone;
    /* [platform][mentioned]; [p][1] == [p][0] when !has_mentioned, and
     * the platforms without an object of their own share one tree. */
    cJSON *content[PGW_PLATFORM_COUNT][2];
};

/*
 * Resolves |ev| with the parsed hook answer |hook| (NULL: no hook or the
 * hook failed) and the app's static template |tmpl| (NULL: none; not
 * modified). |validity_s| is [delivery] validity_s.
 * On success stores a new result in |*ret_res| (free with
 * pgw_resolve_free()); when nothing is to be sent, the result has
 * |skip_reason| set and no content. Errors: PGW_ERR_TOO_LARGE (expanded
 * variables over PGW_RESOLVE_MAX_EXPANDED_BYTES; |ret_err| filled),
 * PGW_ERR_NOMEM.
 */
int pgw_resolve_event(const struct pgw_event *ev,
                      const struct pgw_hook_answer *hook, const cJSON *tmpl,
                      int64_t validity_s, struct pgw_resolved **ret_res,
                      struct pgw_json_error *ret_err);

void pgw_resolve_free(struct pgw_resolved *res);

/*
 * Resolves the `data` of a push-API request (DESIGN §15.5: the content
 * rules of §7.3–§8, no event variables, no recipients: the devices are
 * the request's audience). |profile| "dev" or "prod" overrides the
 * content's _profile (NULL: the content decides); _mentioned is removed
 * and has no effect. |timestamp_s| is when the request was made,
 * |expires_at_s| the end of its validity. Stores a new result in
 * |*ret_res| (pgw_resolve_free()). Errors: PGW_ERR_INVAL (|data| not an
 * object; |ret_err| filled), PGW_ERR_NOMEM.
 */
int pgw_resolve_api_push(const cJSON *data, const char *profile,
                         int64_t timestamp_s, int64_t expires_at_s,
                         struct pgw_resolved **ret_res,
                         struct pgw_json_error *ret_err);

enum pgw_resolve_verdict {
    PGW_RESOLVE_SEND = 0,      /* build and send content |*ret_variant| */
    PGW_RESOLVE_NOT_RECIPIENT, /* no channel is a recipient: nothing */
    PGW_RESOLVE_OTHER_TEAM,    /* iOS device not of the _apns_team_id */
    PGW_RESOLVE_BAD_PROFILE,   /* iOS push fails with 'bad_profile' */
    PGW_RESOLVE_SKIPPED,       /* the event sends nothing (skip_reason) */
};

/*
 * What the device |inst| gets from |res|. On PGW_RESOLVE_SEND stores in
 * |*ret_variant| (if not NULL) an index 0..3 (= platform * 2 + mentioned,
 * folded to the unmentioned one when there is no _mentioned content) to
 * cache per-variant payloads, and in |*ret_content| (if not NULL) the
 * content, owned by |res|. A device is mentioned when one of its channels
 * that is a recipient is mentioned. |default_team| is the app's default
 * APNs team (NULL: none), the team of iOS devices that name none: with
 * an _apns_team_id, an iOS device gets the push only when its team is
 * that one (pgw_installation_team_matches()).
 */
enum pgw_resolve_verdict pgw_resolve_for_installation(
    const struct pgw_resolved *res, const struct pgw_installation *inst,
    const char *default_team, int *ret_variant, const cJSON **ret_content);

/* Content of variant |variant| (0..3) of |res|; NULL when skipped. */
const cJSON *pgw_resolve_variant(const struct pgw_resolved *res, int variant);

#endif
