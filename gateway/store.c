/*
 * The asynchronous store of `serve` (see store.h): the queue and the
 * public calls. A call checks its arguments, encodes its parameters and
 * queues an operation; a zero timer (the kick) then runs once per loop
 * iteration, merges what was queued into batches (inserts and finishes:
 * group commit; lookups: one statement) and sends them on the pool
 * connection with the most room; the results complete the operations.
 *
 *   public calls -> lists -> on_kick: make_batch, pick_conn, dispatch_op
 *     -> store_sql_send (store_sql.c) -> pgconn.c -> on_done -> op_complete
 *
 * Connections are pgconn.c's; the SQL is store_sql.c's; the installation
 * cache is store_cache.c's; the migrator is store_migrate.c.
 */
#include "store_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util/utf8.h"

/* -- checks -- */

/* Valid UTF-8 without NUL: anything else would fail a whole batch. */
static bool text_ok(const char *s, size_t n)
{
    return memchr(s, '\0', n) == NULL && pgw_utf8_valid(s, n);
}

static bool str_ok(const char *s)
{
    return !s || text_ok(s, strlen(s));
}

/* -- operations -- */

void store_list_push(struct op_list *l, struct op *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

struct op *store_list_pop(struct op_list *l)
{
    struct op *op = l->head;

    if (!op)
        return NULL;
    l->head = op->next;
    if (!l->head)
        l->tail = NULL;
    l->n--;
    op->next = NULL;
    return op;
}

void store_op_free(struct op *op)
{
    if (op->filling)
        store_cache_filling_remove(op);
    if (op->batches)
        (*op->batches)--;
    free(op->ents);
    for (unsigned i = 0; i < STORE_MAX_RESULTS; i++)
        PQclear(op->res[i]);
    free(op);
}

/* Runs |op|'s callback with |err| (< 0) and frees it; a batch fails each
 * merged operation. */
void store_op_fail(struct op *op, int err)
{
    struct op *m;

    switch (op->kind) {
    case OP_INSERT:
        op->cb.insert(op->arg, err, 0, false);
        break;
    case OP_BATCH_INSERT:
    case OP_BATCH_DUPS:
    case OP_BATCH_FINISH:
    case OP_BATCH_FIND:
    case OP_BATCH_INC:
        while ((m = op->members)) {
            op->members = m->next;
            store_op_fail(m, err);
        }
        break;
    case OP_COUNT:
        op->cb.count(op->arg, err, 0);
        break;
    case OP_CLAIM_EVENTS:
        op->cb.events(op->arg, err, NULL, 0);
        break;
    case OP_FIND:
    case OP_CACHED:
        op->cb.inst(op->arg, err, NULL, 0);
        break;
    case OP_CLAIM_RETRIES:
        op->cb.retries(op->arg, err, NULL, 0);
        break;
    case OP_EXEC:
        op->cb.exec(op->arg, err, NULL);
        break;
    case OP_FINISH:
    case OP_RENEW:
    case OP_RELEASE:
    case OP_FINISH_RETRY:
    case OP_UNDO_BADGES:
        op->cb.done(op->arg, err);
        break;
    }
    store_op_free(op);
}

static void fail_list(struct op_list *l, int err)
{
    struct op *op;

    while ((op = store_list_pop(l)))
        store_op_fail(op, err);
}

/* Copies the fragments encoded in |self->enc| (|n_frags| pairs in
 * |frag|) into a new operation. */
static struct op *op_from_enc(struct pgw_store *self, enum op_kind kind,
                              const uint32_t *frag, unsigned n_frags)
{
    struct op *op;

    if (self->enc.oom || self->enc.len > UINT32_MAX)
        return NULL;
    op = calloc(1, sizeof(*op) + self->enc.len + 1);
    if (!op)
        return NULL;
    op->kind = kind;
    op->n_frags = n_frags;
    op->data_len = self->enc.len;
    memcpy(op->frag, frag, 2 * n_frags * sizeof(*frag));
    if (self->enc.len)
        memcpy(op->data, self->enc.p, self->enc.len);
    return op;
}

/* Copies the |n| strings of |params| (NULL ones stay NULL in |out|) one
 * after the other from |cur|, pointing |out| at them; returns the end. */
static char *copy_params(char *cur, const char *const *params, unsigned n,
                         const char **out)
{
    for (unsigned i = 0; i < n; i++) {
        size_t len;

        if (!params[i])
            continue;
        len = strlen(params[i]) + 1;
        memcpy(cur, params[i], len);
        out[i] = cur;
        cur += len;
    }
    return cur;
}

/* A plain operation with |n| text parameters (NULL allowed), copied. */
static struct op *op_with_params(enum op_kind kind, const char *const *params,
                                 unsigned n)
{
    size_t size = 0;
    struct op *op;

    for (unsigned i = 0; i < n; i++)
        if (params[i])
            size += strlen(params[i]) + 1;
    op = calloc(1, sizeof(*op) + size);
    if (!op)
        return NULL;
    op->kind = kind;
    op->n_params = n;
    copy_params(op->data, params, n, op->param);
    return op;
}

/* -- connections (pgconn.h) -- */

static void op_complete(struct pgw_store *self, struct op *op);

static struct op *unit_op(struct pgw_pgconn_unit *u)
{
    return (struct op *)(void *)((char *)u - offsetof(struct op, unit));
}

static void set_last_error(struct pgw_store *self, const char *what,
                           const char *msg)
{
    char line[200];

    snprintf(self->last_error, sizeof(self->last_error), "%s%s", what,
             pgw_pgconn_one_line(line, sizeof(line), msg));
}

/* Stores the |op|'s next result, or notes its failure. */
static void op_take_result(struct op *op, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

        if (state && strcmp(state, "23505") == 0)
            op->unique = true;
        if (op->err == 0) {
            char line[300];
            op->err = PGW_ERR_DB;
            pgw_log_debug("statement failed: %s",
                          pgw_pgconn_one_line(line, sizeof(line),
                                              PQresultErrorMessage(r)));
        }
        PQclear(r);
    } else if (op->n_results < STORE_MAX_RESULTS) {
        op->res[op->n_results] = r;
    } else {
        PQclear(r);
    }
    op->n_results++;
}

static void on_result(void *arg, struct pgw_pgconn_unit *u, PGresult *r)
{
    (void)arg;
    op_take_result(unit_op(u), r);
}

/* |u| reached its sync: its callbacks run now. */
static void on_done(void *arg, struct pgw_pgconn_unit *u)
{
    struct pgw_store *self = arg;

    op_complete(self, unit_op(u));
    if (self->queue.n + self->inserts.n + self->finishes.n + self->finds.n +
            self->incs.n + self->redo.n >
        0)
        store_schedule_kick(self);
}

static void on_unit_fail(void *arg, struct pgw_pgconn_unit *u, int err)
{
    (void)arg;
    store_op_fail(unit_op(u), err);
}

static void pool_up(void *arg, struct pgw_pgconn *c)
{
    struct pgw_store *self = arg;

    (void)c;
    self->n_up++;
    if (self->failing) {
        self->failing = false;
        pgw_log_info("database connection recovered");
    }
    self->last_error[0] = '\0';
    store_schedule_kick(self);
}

/* A pool connection failed; with the last of them, the database is
 * unavailable: logged once per outage, queued operations fail fast. */
static void pool_down(void *arg, struct pgw_pgconn *c, bool was_up,
                      const char *what, const char *msg)
{
    struct pgw_store *self = arg;

    (void)c;
    if (was_up)
        self->n_up--;
    set_last_error(self, what, msg);
    if (self->n_up > 0)
        return;
    store_cache_pool_lost(self);
    if (!self->failing) {
        self->failing = true;
        pgw_log_warn("database unavailable: %s", self->last_error);
        store_schedule_kick(self);
    }
}

static const struct pgw_pgconn_callbacks pool_callbacks = {
    .setup = store_sql_setup,
    .up = pool_up,
    .down = pool_down,
    .result = on_result,
    .done = on_done,
    .fail = on_unit_fail,
};

/* The up connection with the most room, or NULL when all are full. */
static struct pgw_pgconn *pick_conn(struct pgw_store *self)
{
    struct pgw_pgconn *best = NULL;

    for (unsigned i = 0; i < self->n_conns; i++) {
        struct pgw_pgconn *c =
            self->conns[(self->next_conn + i) % self->n_conns];
        size_t n = pgw_pgconn_inflight(c);

        if (!pgw_pgconn_is_up(c) || n >= STORE_MAX_INFLIGHT)
            continue;
        if (!best || n < pgw_pgconn_inflight(best))
            best = c;
    }
    self->next_conn++;
    return best;
}

/* Links |m| as the last member of batch |b| (|*tail|: its last so far). */
static void batch_add(struct op *b, struct op **tail, struct op *m)
{
    if (*tail)
        (*tail)->next = m;
    else
        b->members = m;
    *tail = m;
    b->n_members++;
}

/* Merges up to STORE_MAX_BATCH operations of |l| into one batch. */
static struct op *make_batch(struct pgw_store *self, struct op_list *l,
                             enum op_kind kind)
{
    struct op *b = calloc(1, sizeof(*b));
    struct op *tail = NULL;

    if (!b)
        return NULL;
    b->kind = kind;
    /* lookups are not held back: no count of those in flight */
    if (kind == OP_BATCH_INSERT)
        b->batches = &self->insert_batches;
    else if (kind == OP_BATCH_FINISH)
        b->batches = &self->finish_batches;
    else if (kind == OP_BATCH_INC)
        b->batches = &self->inc_batches;
    if (b->batches)
        (*b->batches)++;
    while (l->head && b->n_members < STORE_MAX_BATCH) {
        struct op *m;

        if (b->n_members && kind == OP_BATCH_INC &&
            b->n_names + l->head->n_names > STORE_MAX_INC_IDS)
            break;
        if (b->n_members && kind != OP_BATCH_INC &&
            (b->n_names + l->head->n_names > STORE_MAX_FIND_NAMES || b->solo ||
             l->head->solo ||
             b->data_len + l->head->data_len > STORE_MAX_BATCH_BYTES))
            break;
        m = store_list_pop(l);
        b->solo = m->solo;

        self->n_queued--;
        batch_add(b, &tail, m);
        b->flag |= m->flag || m->set_badge;
        b->n_fail += m->n_fail;
        b->n_inv += m->n_inv;
        b->n_retry += m->n_retry;
        b->n_names += m->n_names;
        b->data_len += m->data_len;
    }
    return b;
}

/* Sends |op| on |c|; on failure fails |op| (and |c| when it broke). */
static void dispatch_op(struct pgw_store *self, struct pgw_pgconn *c,
                        struct op *op)
{
    int rc = store_sql_send(self, c, op);

    if (rc == 0 || rc == PGW_ERR_DB)
        pgw_pgconn_sync(c, &op->unit, rc != 0);
    else
        store_op_fail(op, rc);
}

/*
 * Fires once per loop iteration in which operations were queued (a zero
 * timer runs at the start of the next iteration, so everything queued in
 * this one is merged). Sends what the connections can take; fails
 * everything at once while the database is unreachable.
 */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_store *self = arg;
    struct op *op;

    (void)fd;
    (void)what;
    /* the callbacks may queue more: those wait for the next iteration */
    for (size_t n = self->ready.n; n > 0; n--) {
        op = store_list_pop(&self->ready);
        self->n_queued--;
        op->cb.inst(op->arg, 0, op->inst, op->n_inst);
        store_op_free(op);
    }
    if (self->recheck_parked)
        store_cache_recheck_parked(self);
    if (self->n_up == 0) {
        if (self->failing) {
            self->n_queued = self->ready.n;
            fail_list(&self->parked, PGW_ERR_DB);
            fail_list(&self->redo, PGW_ERR_DB);
            fail_list(&self->inserts, PGW_ERR_DB);
            fail_list(&self->finishes, PGW_ERR_DB);
            fail_list(&self->finds, PGW_ERR_DB);
            fail_list(&self->incs, PGW_ERR_DB);
            fail_list(&self->queue, PGW_ERR_DB);
        }
        return;
    }
    for (;;) {
        struct pgw_pgconn *c;
        bool ins = self->inserts.head &&
                   self->insert_batches < STORE_MAX_INSERT_BATCHES;
        bool fin = self->finishes.head &&
                   self->finish_batches < STORE_MAX_FINISH_BATCHES;
        bool inc = self->incs.head && self->inc_batches < STORE_MAX_INC_BATCHES;

        /* Inserts and finishes held back here go once the batch in
         * flight completes (on_done kicks again). */
        if (!ins && !fin && !self->finds.head && !inc && !self->queue.head &&
            !self->redo.head)
            break;
        c = pick_conn(self);
        if (!c)
            break; /* every pipeline is full: resumed as results arrive */
        if (self->redo.head) {
            op = store_list_pop(&self->redo);
        } else if (ins) {
            op = make_batch(self, &self->inserts, OP_BATCH_INSERT);
            if (op && self->conflict_batches > 0) {
                op->conflict = true;
                self->conflict_batches--;
            }
        } else if (fin) {
            op = make_batch(self, &self->finishes, OP_BATCH_FINISH);
        } else if (self->finds.head) {
            op = make_batch(self, &self->finds, OP_BATCH_FIND);
        } else if (inc) {
            op = make_batch(self, &self->incs, OP_BATCH_INC);
        } else {
            op = store_list_pop(&self->queue);
            self->n_queued--;
        }
        if (!op) {
            /* no memory for a batch: retry on the next iteration */
            store_schedule_kick(self);
            break;
        }
        dispatch_op(self, c, op);
    }
    for (unsigned i = 0; i < self->n_conns; i++)
        pgw_pgconn_flush(self->conns[i]);
}

void store_schedule_kick(struct pgw_store *self)
{
    struct timeval zero = {0, 0};

    if (!self->closing && !evtimer_pending(self->kick, NULL))
        evtimer_add(self->kick, &zero);
}

/* -- results -- */

int64_t store_get_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Rows of (ord, id) from |r| (may be NULL): ids[ord - 1] and got[ord - 1]
 * set for each ord from 1 to |n|; got[] cleared first. */
static void read_ord_ids(const PGresult *r, size_t n, int64_t *ids, bool *got)
{
    memset(got, 0, n * sizeof(*got));
    for (int i = 0; r && i < PQntuples(r); i++) {
        int64_t ord = store_get_i64(r, i, 0);

        if (ord >= 1 && (size_t)ord <= n) {
            ids[ord - 1] = store_get_i64(r, i, 1);
            got[ord - 1] = true;
        }
    }
}

/* Answers the members of an insert batch that were stored; those skipped
 * as duplicates go on to one ST_DUPS batch (OP_BATCH_DUPS), which finds
 * the events they repeat. */
static void complete_inserts(struct pgw_store *self, struct op *op)
{
    int64_t ids[STORE_MAX_BATCH];
    bool stored[STORE_MAX_BATCH];
    const PGresult *ins = op->res[0];
    struct op *m, *dups = NULL, *tail = NULL;

    read_ord_ids(ins, op->n_members, ids, stored);
    for (size_t i = 0; (m = op->members) != NULL; i++) {
        op->members = m->next;
        m->next = NULL;
        if (stored[i]) {
            m->cb.insert(m->arg, 0, ids[i], false);
        } else {
            if (!dups && (dups = calloc(1, sizeof(*dups))) != NULL)
                dups->kind = OP_BATCH_DUPS;
            if (dups) {
                batch_add(dups, &tail, m);
                continue;
            }
            m->cb.insert(m->arg, PGW_ERR_NOMEM, 0, false);
        }
        store_op_free(m);
    }
    if (dups)
        store_enqueue(self, &self->queue, dups);
}

/* Answers the members of an OP_BATCH_DUPS: each is the duplicate of the
 * event found with its key, or was deleted meanwhile (nothing stored). */
static void complete_dups(struct op *op)
{
    int64_t ids[STORE_MAX_BATCH];
    bool found[STORE_MAX_BATCH];
    const PGresult *dups = op->res[0];
    size_t n = op->n_members, i = 0;
    struct op *m;

    read_ord_ids(dups, n, ids, found);
    while ((m = op->members)) {
        op->members = m->next;
        if (found[i])
            m->cb.insert(m->arg, 0, ids[i], true);
        else
            m->cb.insert(m->arg, PGW_ERR_DB, 0, false);
        store_op_free(m);
        i++;
    }
}

static int cmp_event(const void *a, const void *b)
{
    int64_t x = ((const struct pgw_store_event *)a)->id;
    int64_t y = ((const struct pgw_store_event *)b)->id;
    return (x > y) - (x < y);
}

static void complete_claim_events(struct pgw_store *self, struct op *op)
{
    const PGresult *r = op->res[0];
    size_t n = r ? (size_t)PQntuples(r) : 0;
    struct pgw_store_event *ev;

    if (n > self->ev_scratch_cap) {
        ev = realloc(self->ev_scratch, n * sizeof(*ev));
        if (!ev) {
            op->cb.events(op->arg, PGW_ERR_NOMEM, NULL, 0);
            return;
        }
        self->ev_scratch = ev;
        self->ev_scratch_cap = n;
    }
    ev = self->ev_scratch;
    for (size_t i = 0; i < n; i++) {
        ev[i].id = store_get_i64(r, (int)i, 0);
        ev[i].app_id = get_str(r, (int)i, 1);
        ev[i].body = get_str(r, (int)i, 2);
        ev[i].body_len = (size_t)PQgetlength(r, (int)i, 2);
        ev[i].attempts = (int)store_get_i64(r, (int)i, 3);
        ev[i].was_ours = PQgetvalue(r, (int)i, 4)[0] == 't';
    }
    if (n > 1) /* qsort(NULL, 0, …) is undefined behaviour */
        qsort(ev, n, sizeof(*ev), cmp_event);
    op->cb.events(op->arg, 0, n ? ev : NULL, n);
}

/* Rows |first| .. |first| + |n| - 1 of |r| (columns from 1: column 0
 * is the caller) as |m|'s installations, through its callback; they fill
 * the cache first when |m| may. */
static void deliver_find(struct pgw_store *self, const PGresult *r, int first,
                         size_t n, const struct op *m)
{
    size_t text = 0, items = 0;
    struct pgw_installation *inst = NULL;
    const char **chan = NULL;
    char *buf = NULL, *cur;
    int err = 0;

    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)PQgetlength(r, first + (int)i, 5);
        text += len + 1;
        items += len / 2 + 1; /* "{a,b}": at most half the characters */
    }
    if (n > 0) {
        inst = calloc(n, sizeof(*inst));
        chan = calloc(items, sizeof(*chan));
        buf = malloc(text);
        if (!inst || !chan || !buf) {
            err = PGW_ERR_NOMEM;
            goto out;
        }
    }
    cur = buf;
    items = 0;
    for (size_t i = 0; i < n; i++) {
        int row = first + (int)i;
        const char *arr = PQgetvalue(r, row, 5);
        size_t len = strlen(arr);
        size_t k = 0;

        /* device_type: the schema's CHECK allows nothing else */
        if (pgw_pgarray_parse(arr, cur, chan + items, len / 2 + 1, &k) < 0 ||
            pgw_platform_parse(get_str(r, row, 3), &inst[i].platform) < 0) {
            err = PGW_ERR_DB;
            goto out;
        }
        inst[i].id = store_get_i64(r, row, 1);
        inst[i].installation_id = get_str(r, row, 2);
        inst[i].device_token = get_str(r, row, 4);
        inst[i].channels = chan + items;
        inst[i].n_channels = k;
        inst[i].badge = (int32_t)store_get_i64(r, row, 6);
        inst[i].apns_topic = get_str(r, row, 7);
        inst[i].apns_team_id = get_str(r, row, 8);
        items += k;
        cur += len + 1;
    }
    if (m->fill && self->cache_live && m->fill_gen == self->cache_gen)
        store_cache_fill(self, m, inst, n);
out:
    if (err)
        m->cb.inst(m->arg, err, NULL, 0);
    else
        m->cb.inst(m->arg, 0, inst, n);
    free(inst);
    free(chan);
    free(buf);
}

/* Each merged lookup gets its own rows: those of its caller number (the
 * rows are ordered by it). The rows are the last result (ST_BADGE_TXN's
 * may come first). */
static void complete_finds(struct pgw_store *self, struct op *op)
{
    const PGresult *r = op->n_results ? op->res[op->n_results - 1] : NULL;
    int n = r ? PQntuples(r) : 0, row = 0;
    int64_t k = 0;
    struct op *m;

    while ((m = op->members)) {
        int first;

        op->members = m->next;
        k++;
        while (row < n && store_get_i64(r, row, 0) < k)
            row++; /* not expected: no such caller */
        first = row;
        while (row < n && store_get_i64(r, row, 0) == k)
            row++;
        deliver_find(self, r, first, (size_t)(row - first), m);
        store_op_free(m);
    }
}

static void complete_claim_retries(struct op *op)
{
    const PGresult *r = op->res[0];
    size_t n = r ? (size_t)PQntuples(r) : 0;
    struct pgw_store_retry *rt = NULL;

    if (n > 0) {
        rt = calloc(n, sizeof(*rt));
        if (!rt) {
            op->cb.retries(op->arg, PGW_ERR_NOMEM, NULL, 0);
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rt[i].id = store_get_i64(r, (int)i, 0);
        rt[i].event_id = store_get_i64(r, (int)i, 1);
        rt[i].installation_id = store_get_i64(r, (int)i, 2);
        rt[i].app_id = get_str(r, (int)i, 3);
        rt[i].provider = get_str(r, (int)i, 4);
        rt[i].request = get_str(r, (int)i, 5);
        rt[i].attempts = (int)store_get_i64(r, (int)i, 6);
        rt[i].expires_at_ms = store_get_i64(r, (int)i, 7);
        rt[i].api_push_id = store_get_i64(r, (int)i, 8);
    }
    op->cb.retries(op->arg, 0, rt, n);
    free(rt);
}

/*
 * An insert batch sent without ON CONFLICT (ST_INSERT_NEW) failed on a
 * unique index: a msgId seen before, in the table or twice in the batch.
 * Nothing of it was stored (one transaction); it goes again at once with
 * ON CONFLICT, and the next batches too for a while.
 */
static void redo_insert(struct pgw_store *self, struct op *op)
{
    for (unsigned i = 0; i < STORE_MAX_RESULTS; i++) {
        PQclear(op->res[i]);
        op->res[i] = NULL;
    }
    op->n_results = 0;
    op->err = 0;
    op->unique = false;
    op->conflict = true;
    self->conflict_batches = STORE_CONFLICT_BATCHES;
    store_list_push(&self->redo, op);
    store_schedule_kick(self);
}

/* |op| reached its sync: its callback (or its members') runs now. */
static void op_complete(struct pgw_store *self, struct op *op)
{
    struct op *m;

    if (op->err && op->kind == OP_BATCH_INSERT && op->unique && !op->conflict &&
        !self->closing) {
        redo_insert(self, op);
        return;
    }
    if (op->err) {
        store_op_fail(op, op->err);
        return;
    }
    switch (op->kind) {
    case OP_BATCH_INSERT:
        complete_inserts(self, op);
        break;
    case OP_BATCH_DUPS:
        complete_dups(op);
        break;
    case OP_BATCH_FINISH:
        while ((m = op->members)) {
            op->members = m->next;
            m->cb.done(m->arg, 0);
            store_op_free(m);
        }
        break;
    case OP_COUNT:
        op->cb.count(op->arg, 0,
                     op->res[0] ? store_get_i64(op->res[0], 0, 0) : 0);
        break;
    case OP_CLAIM_EVENTS:
        complete_claim_events(self, op);
        break;
    case OP_BATCH_FIND:
        complete_finds(self, op);
        break;
    case OP_BATCH_INC:
        store_cache_complete_incs(op);
        break;
    case OP_CLAIM_RETRIES:
        complete_claim_retries(op);
        break;
    case OP_EXEC: /* the last statement's (a pinned one's come first) */
        op->cb.exec(op->arg, 0,
                    op->n_results ? op->res[op->n_results - 1] : NULL);
        break;
    default:
        op->cb.done(op->arg, 0);
        break;
    }
    store_op_free(op);
}

/* -- public API -- */

int pgw_store_new(struct event_base *base, const struct pgw_store_options *opts,
                  struct pgw_store **ret_store)
{
    struct pgw_store *self = NULL;
    unsigned pool;
    int rc = PGW_ERR_NOMEM;
    const struct pgw_pgconn_options pool_opts = {
        .conninfo = opts ? opts->conninfo : NULL,
        .setup_what = "could not prepare statements: ",
        .setup_why = "schema missing or not migrated (run 'pushgw migrate')",
    };

    if (!base || !opts || !opts->conninfo || !opts->owner || !ret_store)
        return PGW_ERR_INVAL;
    pool = opts->pool_size ? opts->pool_size : STORE_DEFAULT_POOL;
    if (pool > PGW_STORE_MAX_POOL)
        return PGW_ERR_INVAL;
    self = calloc(1, sizeof(*self));
    if (!self)
        return PGW_ERR_NOMEM;
    self->base = base;
    self->max_queued =
        opts->max_queued ? opts->max_queued : STORE_DEFAULT_MAX_QUEUED;
    self->owner = strdup(opts->owner);
    self->conns = calloc(pool, sizeof(*self->conns));
    self->kick = evtimer_new(base, on_kick, self);
    if (!self->owner || !self->conns || !self->kick)
        goto out;
    self->n_conns = pool;
    for (unsigned i = 0; i < pool; i++) {
        rc = pgw_pgconn_new(base, &pool_opts, &pool_callbacks, self,
                            &self->conns[i]);
        if (rc < 0)
            goto out;
    }
    if (opts->cache_bytes) {
        rc = store_cache_new(self, opts);
        if (rc < 0)
            goto out;
    }
    for (unsigned i = 0; i < pool; i++)
        pgw_pgconn_start(self->conns[i]);
    if (self->listen)
        pgw_pgconn_start(self->listen); /* the cache's */
    *ret_store = self;
    return 0;
out:
    pgw_store_free(self);
    return rc;
}

void pgw_store_free(struct pgw_store *self)
{
    if (!self)
        return;
    self->closing = true;
    self->n_queued = 0;
    fail_list(&self->inserts, PGW_ERR_CLOSED);
    fail_list(&self->finishes, PGW_ERR_CLOSED);
    fail_list(&self->finds, PGW_ERR_CLOSED);
    fail_list(&self->incs, PGW_ERR_CLOSED);
    fail_list(&self->ready, PGW_ERR_CLOSED);
    fail_list(&self->parked, PGW_ERR_CLOSED);
    fail_list(&self->redo, PGW_ERR_CLOSED);
    fail_list(&self->queue, PGW_ERR_CLOSED);
    /* their operations in flight fail with PGW_ERR_CLOSED */
    for (unsigned i = 0; i < self->n_conns; i++)
        pgw_pgconn_free(self->conns[i]);
    store_cache_free(self);
    if (self->kick)
        event_free(self->kick);
    pgw_buf_release(&self->enc);
    for (unsigned i = 0; i < STORE_MAX_FRAGS; i++)
        pgw_buf_release(&self->arr[i]);
    free(self->ev_scratch);
    free(self->conns);
    free(self->owner);
    free(self);
}

bool pgw_store_is_up(const struct pgw_store *self)
{
    return self && self->n_up > 0;
}

unsigned pgw_store_conns_up(const struct pgw_store *self)
{
    return self ? self->n_up : 0;
}

const char *pgw_store_last_error(const struct pgw_store *self)
{
    return self ? self->last_error : "";
}

static int may_queue(struct pgw_store *self)
{
    if (self->closing)
        return PGW_ERR_CLOSED;
    if (self->n_queued >= self->max_queued)
        return PGW_ERR_BUSY;
    return 0;
}

void store_enqueue(struct pgw_store *self, struct op_list *l, struct op *op)
{
    store_list_push(l, op);
    self->n_queued++;
    store_schedule_kick(self);
}

/* Queues on |queue| an operation of |kind| with the |n| text parameters
 * |params| (copied; NULL elements allowed), answered through |cb|. */
static int queue_plain(struct pgw_store *self, enum op_kind kind,
                       const char *const *params, unsigned n, union op_cb cb,
                       void *arg)
{
    struct op *op;
    int rc = may_queue(self);

    if (rc < 0)
        return rc;
    op = op_with_params(kind, params, n);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb = cb;
    op->arg = arg;
    store_enqueue(self, &self->queue, op);
    return 0;
}

int pgw_store_insert_event(struct pgw_store *self,
                           const struct pgw_store_new_event *ev,
                           pgw_store_insert_cb cb, void *arg)
{
    struct pgw_buf *b;
    uint32_t frag[12];
    struct op *op;
    int rc;

    if (!self || !ev || !cb || !ev->app_id || !ev->conv_id || !ev->body ||
        !str_ok(ev->app_id) || !str_ok(ev->conv_id) || !str_ok(ev->msg_id) ||
        !text_ok(ev->body, ev->body_len))
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    b = &self->enc;
    pgw_buf_reset(b);
#define FRAG(i, code)                                                          \
    do {                                                                       \
        frag[2 * (i)] = (uint32_t)b->len;                                      \
        code;                                                                  \
        frag[2 * (i) + 1] = (uint32_t)(b->len - frag[2 * (i)]);                \
    } while (0)
    FRAG(0, pgw_pgarray_put_text(b, ev->app_id, strlen(ev->app_id)));
    FRAG(1, pgw_pgarray_put_text(b, ev->conv_id, strlen(ev->conv_id)));
    FRAG(2, pgw_pgarray_put_text(b, ev->msg_id,
                                 ev->msg_id ? strlen(ev->msg_id) : 0));
    FRAG(3, pgw_pgarray_put_text(b, ev->body, ev->body_len));
    FRAG(4, pgw_pgarray_put_int(b, ev->event_ts_ms));
    FRAG(5,
         pgw_pgarray_put_int(b, ev->lease ? (long long)(ev->lease_ms > INT32_MAX
                                                            ? INT32_MAX
                                                            : ev->lease_ms)
                                          : -1));
    op = op_from_enc(self, OP_INSERT, frag, 6);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.insert = cb;
    op->arg = arg;
    store_enqueue(self, &self->inserts, op);
    return 0;
}

int pgw_store_count_backlog(struct pgw_store *self, pgw_store_count_cb cb,
                            void *arg)
{
    if (!self || !cb)
        return PGW_ERR_INVAL;
    return queue_plain(self, OP_COUNT, NULL, 0, (union op_cb){.count = cb},
                       arg);
}

/* queue_plain() with the parameters (owner, |a|, |b|). */
static int queue_owner_op(struct pgw_store *self, enum op_kind kind,
                          const char *a, long long b, union op_cb cb, void *arg)
{
    char num[24];
    const char *params[3] = {self->owner, a, num};

    snprintf(num, sizeof(num), "%lld", b);
    return queue_plain(self, kind, params, 3, cb, arg);
}

static int claim(struct pgw_store *self, enum op_kind kind, unsigned max,
                 unsigned lease_ms, union op_cb cb, void *arg)
{
    char num[24];

    if (max == 0 || max > 100000 || lease_ms == 0 || lease_ms > INT32_MAX)
        return PGW_ERR_INVAL;
    snprintf(num, sizeof(num), "%u", max);
    return queue_owner_op(self, kind, num, lease_ms, cb, arg);
}

int pgw_store_claim_events(struct pgw_store *self, unsigned max,
                           unsigned lease_ms, pgw_store_events_cb cb, void *arg)
{
    if (!self || !cb)
        return PGW_ERR_INVAL;
    return claim(self, OP_CLAIM_EVENTS, max, lease_ms,
                 (union op_cb){.events = cb}, arg);
}

int pgw_store_claim_retries(struct pgw_store *self, unsigned max,
                            unsigned lease_ms, pgw_store_retries_cb cb,
                            void *arg)
{
    if (!self || !cb)
        return PGW_ERR_INVAL;
    return claim(self, OP_CLAIM_RETRIES, max, lease_ms,
                 (union op_cb){.retries = cb}, arg);
}

/* |ids| as an int8[] literal in self->enc ("{1,2}"). */
static int enc_int8_array(struct pgw_store *self, const int64_t *ids, size_t n)
{
    struct pgw_buf *b = &self->enc;

    pgw_buf_reset(b);
    pgw_buf_add(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 1);
        pgw_pgarray_put_int(b, ids[i]);
    }
    pgw_buf_add(b, "}", 1);
    return b->oom ? PGW_ERR_NOMEM : 0;
}

int pgw_store_renew_leases(struct pgw_store *self, const int64_t *ids, size_t n,
                           unsigned lease_ms, pgw_store_done_cb cb, void *arg)
{
    int rc;

    if (!self || !cb || (n && !ids) || lease_ms == 0 || lease_ms > INT32_MAX)
        return PGW_ERR_INVAL;
    rc = enc_int8_array(self, ids, n);
    if (rc < 0)
        return rc;
    return queue_owner_op(self, OP_RENEW, self->enc.p, lease_ms,
                          (union op_cb){.done = cb}, arg);
}

int pgw_store_release_leases(struct pgw_store *self, pgw_store_done_cb cb,
                             void *arg)
{
    if (!self || !cb)
        return PGW_ERR_INVAL;
    return queue_plain(self, OP_RELEASE, (const char *const[]){self->owner}, 1,
                       (union op_cb){.done = cb}, arg);
}

int pgw_store_find_installations(struct pgw_store *self, const char *app_id,
                                 const char *const *recipients, size_t n,
                                 const struct pgw_installation_match *match,
                                 int64_t event_id, unsigned flags,
                                 pgw_store_installations_cb cb, void *arg)
{
    static const struct pgw_installation_match any = {0};
    struct pgw_buf *b;
    uint32_t frag[8];
    struct op *op;
    bool fill;
    size_t names_off = 0;
    int rc;

    if (!match)
        match = &any;
    if (!self || !cb || !app_id || (n && !recipients) || !str_ok(app_id) ||
        !str_ok(match->apns_team_id) || !str_ok(match->default_team) ||
        event_id < 0 ||
        (match->set_badge && (flags & PGW_STORE_FIND_INCREMENT)))
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!recipients[i] || !str_ok(recipients[i]))
            return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    /* With a team filter the rows are not all of the names' devices. A
     * badge to set goes to Postgres too: the cache's increments know
     * nothing of it. */
    fill =
        self->cache_live && !match->apns_team_id && !match->set_badge && n > 0;
    if (fill) {
        rc = store_cache_find(self, app_id, recipients, n, event_id, flags, cb,
                              arg);
        if (rc != STORE_NOT_CACHED)
            return rc;
    }
    /* fragments: the names (array elements), the app, the team, the
     * team of team-less devices (the default team; with no team filter
     * it does not matter) */
    b = &self->enc;
    pgw_buf_reset(b);
    frag[0] = 0;
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 0);
        pgw_pgarray_put_text(b, recipients[i], strlen(recipients[i]));
    }
    frag[1] = (uint32_t)b->len;
    frag[2] = (uint32_t)b->len;
    pgw_pgarray_put_text(b, app_id, strlen(app_id));
    frag[3] = (uint32_t)(b->len - frag[2]);
    frag[4] = (uint32_t)b->len;
    pgw_pgarray_put_str(b, match->apns_team_id);
    frag[5] = (uint32_t)(b->len - frag[4]);
    frag[6] = (uint32_t)b->len;
    pgw_pgarray_put_str(b, match->default_team);
    frag[7] = (uint32_t)(b->len - frag[6]);
    if (fill) {
        /* after the fragments: the app and the names as they are */
        names_off = b->len;
        pgw_buf_add(b, app_id, strlen(app_id) + 1);
        for (size_t i = 0; i < n; i++)
            pgw_buf_add(b, recipients[i], strlen(recipients[i]) + 1);
    }
    op = op_from_enc(self, OP_FIND, frag, 4);
    if (!op)
        return PGW_ERR_NOMEM;
    op->fill = fill;
    op->fill_gen = self->cache_gen;
    op->names_off = names_off;
    op->n_names = n;
    op->flag = (flags & PGW_STORE_FIND_INCREMENT) != 0;
    /* A lookup that sets badges has a statement of its own: merged with
     * others it would need their order of sets and increments. */
    op->set_badge = match->set_badge;
    op->badge = match->badge;
    op->solo = (flags & PGW_STORE_FIND_ALONE) != 0 || match->set_badge;
    op->event_id = event_id;
    op->cb.inst = cb;
    op->arg = arg;
    if (fill && store_cache_fill_pending(self, op)) {
        store_enqueue(self, &self->parked, op);
        return 0;
    }
    if (fill) {
        store_cache_filling_add(self, op);
        self->cache_misses += n;
    }
    store_enqueue(self, &self->finds, op);
    return 0;
}

int pgw_store_undo_badges(struct pgw_store *self, const int64_t *ids, size_t n,
                          pgw_store_done_cb cb, void *arg)
{
    int rc;

    if (!self || !cb || !n || !ids)
        return PGW_ERR_INVAL;
    rc = enc_int8_array(self, ids, n);
    if (rc < 0)
        return rc;
    return queue_plain(self, OP_UNDO_BADGES, (const char *const[]){self->enc.p},
                       1, (union op_cb){.done = cb}, arg);
}

static const char *outcome_name(enum pgw_store_failure_kind kind)
{
    switch (kind) {
    case PGW_STORE_FAIL_INVALIDATED:
        return "invalidated";
    case PGW_STORE_FAIL_FAILED:
        return "failed";
    case PGW_STORE_FAIL_EXPIRED:
        return "expired";
    }
    return NULL;
}

int pgw_store_finish_event(struct pgw_store *self,
                           const struct pgw_store_event_result *res,
                           pgw_store_done_cb cb, void *arg)
{
    const struct pgw_store_failure *fl;
    const struct pgw_store_retry_new *rt;
    uint32_t frag[2 * STORE_MAX_FRAGS];
    unsigned counts[3] = {0, 0, 0}; /* invalidated, failed, expired */
    unsigned n_inv = 0, f = 0;
    struct pgw_buf *b;
    struct op *op;
    int rc;

    if (!self || !res || !cb || (res->n_failures && !res->failures) ||
        (res->n_retries && !res->retries) || !str_ok(res->result))
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < res->n_failures; i++) {
        fl = &res->failures[i];
        if (!outcome_name(fl->kind) || !fl->provider || !str_ok(fl->provider) ||
            !str_ok(fl->reason))
            return PGW_ERR_INVAL;
        counts[fl->kind]++;
        n_inv += fl->kind == PGW_STORE_FAIL_INVALIDATED;
    }
    for (size_t i = 0; i < res->n_retries; i++) {
        rt = &res->retries[i];
        if (!rt->provider || !rt->request || !str_ok(rt->provider) ||
            !str_ok(rt->request) || !str_ok(rt->last_reason))
            return PGW_ERR_INVAL;
    }
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    b = &self->enc;
    pgw_buf_reset(b);
    /* Column by column: fragment |f| holds this event's elements of the
     * batch's array parameter |f|. */
#define COLUMN(n, elem)                                                        \
    do {                                                                       \
        size_t start_ = b->len;                                                \
        for (size_t i = 0; i < (n); i++) {                                     \
            pgw_pgarray_put_sep(b, start_);                                    \
            elem;                                                              \
        }                                                                      \
        frag[2 * f] = (uint32_t)start_;                                        \
        frag[2 * f + 1] = (uint32_t)(b->len - start_);                         \
        f++;                                                                   \
    } while (0)
    fl = res->failures;
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, fl[i].installation_id));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, fl[i].provider));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, outcome_name(fl[i].kind)));
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, fl[i].status));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, fl[i].reason));
    /* invalidations: only the INVALIDATED failures */
    {
        size_t s0 = b->len, s1, s2;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s0);
                pgw_pgarray_put_int(b, fl[i].installation_id);
            }
        s1 = b->len;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s1);
                pgw_pgarray_put_str(b, fl[i].reason);
            }
        s2 = b->len;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s2);
                if (fl[i].invalid_since_ms)
                    pgw_pgarray_put_int(b, fl[i].invalid_since_ms);
                else
                    pgw_buf_add(b, "NULL", 4);
            }
        frag[2 * f] = (uint32_t)s0;
        frag[2 * f + 1] = (uint32_t)(s1 - s0);
        frag[2 * f + 2] = (uint32_t)s1;
        frag[2 * f + 3] = (uint32_t)(s2 - s1);
        frag[2 * f + 4] = (uint32_t)s2;
        frag[2 * f + 5] = (uint32_t)(b->len - s2);
        f += 3;
    }
    rt = res->retries;
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].installation_id));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].provider));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].request));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].attempts));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].not_before_ms));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].expires_at_ms));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].last_reason));
    COLUMN(1, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(1, pgw_pgarray_put_str(b, res->result));
    COLUMN(1, pgw_pgarray_put_int(b, res->pushes_total));
    COLUMN(1, pgw_pgarray_put_int(b, res->pushes_delivered));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_INVALIDATED]));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_FAILED]));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_EXPIRED]));
    COLUMN(1, pgw_pgarray_put_int(b, (long long)res->n_retries));
#undef COLUMN
    op = op_from_enc(self, OP_FINISH, frag, f);
    if (!op)
        return PGW_ERR_NOMEM;
    op->n_fail = (unsigned)res->n_failures;
    op->n_inv = n_inv;
    op->n_retry = (unsigned)res->n_retries;
    op->cb.done = cb;
    op->arg = arg;
    store_enqueue(self, &self->finishes, op);
    return 0;
}

int pgw_store_finish_retry(struct pgw_store *self,
                           const struct pgw_store_retry_result *res,
                           pgw_store_done_cb cb, void *arg)
{
    char id[24], status[24], since[24], nb[24], att[24], ev[24];
    const struct pgw_store_failure *fl;
    const char *params[10];

    if (!self || !res || !cb)
        return PGW_ERR_INVAL;
    fl = res->delivered ? NULL : res->failure;
    if (fl && (!outcome_name(fl->kind) || !str_ok(fl->reason)))
        return PGW_ERR_INVAL;
    if (!str_ok(res->last_reason))
        return PGW_ERR_INVAL;
    snprintf(id, sizeof(id), "%lld", (long long)res->retry_id);
    snprintf(status, sizeof(status), "%d", fl ? fl->status : 0);
    snprintf(since, sizeof(since), "%lld",
             fl ? (long long)fl->invalid_since_ms : 0LL);
    snprintf(nb, sizeof(nb), "%lld", (long long)res->not_before_ms);
    snprintf(att, sizeof(att), "%d", res->attempts);
    snprintf(ev, sizeof(ev), "%lld", (long long)res->event_id);
    params[0] = id;
    params[1] = res->delivered ? "delivered" : fl ? "failure" : "again";
    params[2] = fl ? outcome_name(fl->kind) : "";
    params[3] = status;
    params[4] = fl ? fl->reason : NULL;
    params[5] = fl && fl->invalid_since_ms ? since : NULL;
    params[6] = nb;
    params[7] = att;
    params[8] = res->last_reason;
    params[9] = ev;
    return queue_plain(self, OP_FINISH_RETRY, params, 10,
                       (union op_cb){.done = cb}, arg);
}

int pgw_store_exec(struct pgw_store *self, const char *sql,
                   const char *const *params, unsigned n,
                   pgw_store_result_cb cb, void *arg)
{
    struct op *op;
    int rc;

    if (!self || !sql || !cb || n > STORE_MAX_PARAMS)
        return PGW_ERR_INVAL;
    for (unsigned i = 0; i < n; i++)
        if (params[i] && !str_ok(params[i]))
            return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    op = op_with_params(OP_EXEC, params, n);
    if (!op)
        return PGW_ERR_NOMEM;
    op->sql = sql;
    op->cb.exec = cb;
    op->arg = arg;
    store_enqueue(self, &self->queue, op);
    return 0;
}

static int exec_text(struct pgw_store *self, const char *sql,
                     const char *const *params, unsigned n, bool pinned,
                     pgw_store_result_cb cb, void *arg)
{
    size_t size, sql_len;
    struct op *op;
    char *cur;
    int rc;

    if (!self || !sql || !cb || n > PGW_STORE_MAX_EXEC_PARAMS || !str_ok(sql))
        return PGW_ERR_INVAL;
    sql_len = strlen(sql) + 1;
    size = (n + 1) * sizeof(char *) + sql_len;
    for (unsigned i = 0; i < n; i++) {
        if (params[i] && !str_ok(params[i]))
            return PGW_ERR_INVAL;
        if (params[i])
            size += strlen(params[i]) + 1;
    }
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    op = calloc(1, sizeof(*op) + size);
    if (!op)
        return PGW_ERR_NOMEM;
    op->kind = OP_EXEC;
    op->n_params = n;
    /* The pointers first: |data| is aligned for them (store_int.h). */
    op->xparam = (const char **)(void *)op->data;
    cur =
        copy_params(op->data + (n + 1) * sizeof(char *), params, n, op->xparam);
    op->sql = memcpy(cur, sql, sql_len);
    op->flag = pinned;
    op->cb.exec = cb;
    op->arg = arg;
    store_enqueue(self, &self->queue, op);
    return 0;
}

int pgw_store_exec_text(struct pgw_store *self, const char *sql,
                        const char *const *params, unsigned n,
                        pgw_store_result_cb cb, void *arg)
{
    return exec_text(self, sql, params, n, false, cb, arg);
}

int pgw_store_exec_text_pinned(struct pgw_store *self, const char *sql,
                               const char *const *params, unsigned n,
                               pgw_store_result_cb cb, void *arg)
{
    return exec_text(self, sql, params, n, true, cb, arg);
}

const char *pgw_store_owner(const struct pgw_store *self)
{
    return self->owner;
}
