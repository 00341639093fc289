/*
** raftd/service.c -- the unary handlers of raftlite's gRPC API, run against
** the node's local SQLite database (see service.h), and the ForwardTxn
** chunk framing.
**
** It must never call gRPC (it is fuzzed without a server) and never let a
** request touch anything but the node's own database or leave state for
** the next call: every connection runs under the allow-list of
** sqlguard.h (no ATTACH, no TEMP objects, no setting PRAGMAs, named
** functions only, DEFENSIVE), reads run on read-only connections and
** must pass sqlite3_stmt_readonly, and SQLITE_LIMIT_LENGTH/SQL_LENGTH
** follow the message limit.
**
** Connections: one writer, used by group commit (group.h: concurrent
** write requests run as one transaction and one Raft entry, each in its
** own savepoint; a call waits in the queue only until its deadline), and
** a pool of read-only readers, so reads proceed while a write waits on a
** lock (WAL mode).
** Every connection carries the deadline of the call using it: the busy
** handler and the progress handler give up when it passes.
*/
#include "service.h"
#include "errbuf.h"
#include "fsio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "fault.h"
#include "group.h"
#include "raftlite.pb-c.h"
#include "sqlguard.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#define RL_VERSION       "0.1.0"
#define DEFAULT_MAX_MSG  (4u << 20)
#define MAX_IDLE_READERS 16
/* Requests per group commit: bounds the entry a batch makes and the wait of
** its last request behind the others' statements. */
#define GROUP_MAX 32

typedef struct conn {
    sqlite3 *db;
    rl_sqlguard guard; /* the authorizer's state; allow_txn during our own
                          BEGIN/COMMIT */
    int reading;
    rl_service *svc;
    rl_remaining_fn remaining;
    void *ctx;
    int timed_out; /* the busy/progress handler gave up on the deadline */
    struct conn *next;
} conn;

struct rl_service {
    char *node_id, *grpc_addr, *raft_addr, *db_path;
    size_t max_msg;
    int max_value_bytes;
    conn *writer;   /* used only by group's combiner (one batch at a time) */
    rl_group group; /* write requests, run in batches (group commit) */
    pthread_mutex_t rmu; /* guards readers */
    conn *readers;       /* idle read-only connections */
    int nidle;
    pthread_mutex_t smu;
    uint64_t served;
    struct rl_host *host;
    rl_stop_reason_fn stop_reason;
    rl_service_hooks hooks;     /* zero when standalone */
    const struct rl_auth *auth; /* service_rpc.c checks calls with it */
    int auth_mtls;
};

static int64_t remaining(conn *c)
{
    return c->remaining ? c->remaining(c->ctx) : INT64_MAX;
}

/* Waits on a lock held by another connection until the call's deadline. */
static int busy_cb(void *arg, int n)
{
    conn *c = arg;
    int64_t left = remaining(c);
    int ms = n < 10 ? 1 + n : 10;
    if (left == 0) {
        c->timed_out = 1;
        return 0;
    }
    if (left < ms) {
        ms = (int)left;
    }
    rl_sleep_ms(ms);
    return 1;
}

/* Interrupts a long statement once the deadline passes. */
static int progress_cb(void *arg)
{
    conn *c = arg;
    if (remaining(c) == 0) {
        c->timed_out = 1;
        return 1;
    }
    return 0;
}

static void conn_close(conn *c)
{
    if (c) {
        sqlite3_close(c->db);
        free(c);
    }
}

static conn *conn_open(rl_service *svc, int readonly, char *err, size_t errlen)
{
    conn *c = calloc(1, sizeof(*c));
    int rc, flags = readonly ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (!c) {
        rl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    rc = sqlite3_open_v2(svc->db_path, &c->db, flags | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        rl_seterr(err, errlen, "cannot open database %s: %s", svc->db_path,
                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return NULL;
    }
    /* A hosted database is WAL already (the VFS refuses any other mode),
    ** and a read here would wait at the node's read gate while it starts
    ** (raftd/host.c gate_main): only a standalone database is set. */
    if (!readonly && !svc->host) {
        char *msg = NULL;
        rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            rl_seterr(err, errlen, "cannot set WAL mode on %s: %s",
                      svc->db_path, msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            conn_close(c);
            return NULL;
        }
    }
    /* No value or statement larger than a message could travel in or
    ** out, and a larger one would only cost memory (a 300 MB
    ** randomblob). */
    {
        int lim =
            svc->max_msg > (size_t)INT32_MAX ? INT32_MAX : (int)svc->max_msg;
        sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH, lim);
        if (svc->max_value_bytes > 0 && svc->max_value_bytes < lim) {
            lim = svc->max_value_bytes;
        }
        sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, lim);
    }
    rc = rl_sqlguard_install(c->db, &c->guard, err, errlen);
    if (rc != SQLITE_OK) {
        conn_close(c);
        return NULL;
    }
    sqlite3_busy_handler(c->db, busy_cb, c);
    sqlite3_progress_handler(c->db, 1000, progress_cb, c);
    c->reading = readonly;
    c->svc = svc;
    return c;
}

static void run_batch(void *svc_, rl_group_job **jobs, size_t n);

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

rl_service *rl_service_open(const rl_service_config *cfg, char *err,
                            size_t errlen)
{
    rl_service *svc = calloc(1, sizeof(*svc));
    if (!svc) {
        rl_seterr(err, errlen, "out of memory");
        return NULL;
    }
    if (rl_group_init(&svc->group, GROUP_MAX, run_batch, svc) != 0) {
        rl_seterr(err, errlen, "out of memory");
        free(svc);
        return NULL;
    }
    pthread_mutex_init(&svc->rmu, NULL);
    pthread_mutex_init(&svc->smu, NULL);
    svc->node_id = dupstr(cfg->node_id);
    svc->grpc_addr = dupstr(cfg->grpc_addr);
    svc->raft_addr = dupstr(cfg->raft_addr);
    svc->db_path = dupstr(cfg->db_path);
    svc->max_msg = cfg->max_msg_bytes ? cfg->max_msg_bytes : DEFAULT_MAX_MSG;
    svc->max_value_bytes = cfg->max_value_bytes;
    svc->host = cfg->host;
    if (cfg->hooks)
        svc->hooks = *cfg->hooks;
    if (!svc->node_id || !svc->grpc_addr || !svc->raft_addr || !svc->db_path) {
        rl_seterr(err, errlen, "out of memory");
        rl_service_close(svc);
        return NULL;
    }
    svc->writer = conn_open(svc, 0, err, errlen);
    if (!svc->writer) {
        rl_service_close(svc);
        return NULL;
    }
    return svc;
}

void rl_service_close(rl_service *svc)
{
    conn *c, *next;
    if (!svc) {
        return;
    }
    conn_close(svc->writer);
    for (c = svc->readers; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    free(svc->node_id);
    free(svc->grpc_addr);
    free(svc->raft_addr);
    free(svc->db_path);
    rl_group_close(&svc->group);
    pthread_mutex_destroy(&svc->rmu);
    pthread_mutex_destroy(&svc->smu);
    free(svc);
}

const char *rl_service_db_path(rl_service *svc)
{
    return svc->db_path;
}

struct rl_host *rl_service_host(rl_service *svc)
{
    return svc->host;
}

const char *rl_service_node_id(rl_service *svc)
{
    return svc->node_id;
}

void rl_service_set_auth(rl_service *svc, const struct rl_auth *auth, int mtls)
{
    svc->auth = auth;
    svc->auth_mtls = mtls;
}

const struct rl_auth *rl_service_auth(rl_service *svc, int *mtls)
{
    *mtls = svc->auth_mtls;
    return svc->auth;
}

void rl_service_count_call(rl_service *svc)
{
    pthread_mutex_lock(&svc->smu);
    svc->served++;
    pthread_mutex_unlock(&svc->smu);
}

size_t rl_service_max_msg(rl_service *svc)
{
    return svc->max_msg;
}

void rl_service_set_stop_reason(rl_service *svc, rl_stop_reason_fn fn)
{
    svc->stop_reason = fn;
}

static conn *reader_get(rl_service *svc, char *err, size_t errlen)
{
    conn *c;
    pthread_mutex_lock(&svc->rmu);
    c = svc->readers;
    if (c) {
        svc->readers = c->next;
        svc->nidle--;
    }
    pthread_mutex_unlock(&svc->rmu);
    return c ? c : conn_open(svc, 1, err, errlen);
}

static void reader_put(rl_service *svc, conn *c)
{
    if (!sqlite3_get_autocommit(c->db)) {
        /* Never hand on a connection inside a transaction. */
        conn_close(c);
        return;
    }
    pthread_mutex_lock(&svc->rmu);
    if (svc->nidle < MAX_IDLE_READERS) {
        c->next = svc->readers;
        svc->readers = c;
        svc->nidle++;
        c = NULL;
    }
    pthread_mutex_unlock(&svc->rmu);
    conn_close(c);
}

/* Error text for a failed statement, naming a deadline when that was it. */
static void sql_error(conn *c, int rc, const char *what, char *err,
                      size_t errlen)
{
    const char *why =
        c->timed_out && c->svc->stop_reason ? c->svc->stop_reason(c->ctx) : "";
    if (c->timed_out) {
        rl_seterr(err, errlen, "%s: stopped while %s: %s", what,
                  rc == SQLITE_BUSY ? "waiting for the database lock"
                                    : "running the statement",
                  why[0] ? why : "deadline exceeded");
    } else if (rc == SQLITE_AUTH || c->guard.why[0]) {
        rl_seterr(err, errlen, "%s: not authorized: %s", what,
                  c->guard.why[0] ? c->guard.why : sqlite3_errmsg(c->db));
    } else if (rc == SQLITE_TOOBIG) {
        rl_seterr(err, errlen,
                  "%s: %s: a value or statement is larger than %d bytes, the "
                  "limit that follows the message limit (raftd -max-msg-bytes "
                  "raises it)",
                  what, sqlite3_errmsg(c->db),
                  sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, -1));
    } else {
        rl_seterr(err, errlen, "%s: %s", what, sqlite3_errmsg(c->db));
    }
}

/* ---- values ---- */

static int bind_value(sqlite3_stmt *st, int i, const Proto__Value *v)
{
    switch (v ? v->kind_case : PROTO__VALUE__KIND__NOT_SET) {
    case PROTO__VALUE__KIND_INTEGER:
        return sqlite3_bind_int64(st, i, v->integer);
    case PROTO__VALUE__KIND_REAL:
        return sqlite3_bind_double(st, i, v->real);
    case PROTO__VALUE__KIND_TEXT:
        return sqlite3_bind_text(st, i, v->text, -1, SQLITE_TRANSIENT);
    case PROTO__VALUE__KIND_BLOB:
        return sqlite3_bind_blob64(st, i,
                                   v->blob.data ? v->blob.data : (void *)"",
                                   v->blob.len, SQLITE_TRANSIENT);
    default:
        return sqlite3_bind_null(st, i);
    }
}

static int bind_params(conn *c, sqlite3_stmt *st, size_t n,
                       Proto__Value **params, size_t nn,
                       Proto__NamedValue **named, char *err, size_t errlen)
{
    int want = sqlite3_bind_parameter_count(st);
    size_t i;
    int rc;
    if (n > (size_t)want) {
        rl_seterr(err, errlen,
                  "%zu parameters given but the statement has %d placeholders",
                  n, want);
        return -1;
    }
    for (i = 0; i < n; i++) {
        rc = bind_value(st, (int)i + 1, params[i]);
        if (rc != SQLITE_OK) {
            sql_error(c, rc, "cannot bind a parameter", err, errlen);
            return -1;
        }
    }
    for (i = 0; i < nn; i++) {
        const char *name = named[i]->name ? named[i]->name : "";
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx == 0) {
            rl_seterr(err, errlen,
                      "no parameter named '%s' in the statement (include the "
                      "prefix, e.g. ':%s')",
                      name, name);
            return -1;
        }
        rc = bind_value(st, idx, named[i]->value);
        if (rc != SQLITE_OK) {
            sql_error(c, rc, "cannot bind a parameter", err, errlen);
            return -1;
        }
    }
    return 0;
}

/* Sets *more if text after the first statement holds another statement. */
static int has_more(sqlite3 *db, const char *tail, int *more)
{
    sqlite3_stmt *st = NULL;
    const char *t2;
    int rc;
    *more = 0;
    while (tail && *tail) {
        rc = sqlite3_prepare_v2(db, tail, -1, &st, &t2);
        if (rc != SQLITE_OK) {
            return rc;
        }
        if (st) {
            sqlite3_finalize(st);
            *more = 1;
            return SQLITE_OK;
        }
        if (t2 == tail) {
            break;
        }
        tail = t2;
    }
    return SQLITE_OK;
}

/* ---- writes ---- */

typedef struct stmt_spec {
    const char *sql;
    size_t n_params;
    Proto__Value **params;
    size_t n_named;
    Proto__NamedValue **named;
} stmt_spec;

static int exec_internal(conn *c, const char *sql)
{
    int rc;
    c->guard.allow_txn = 1;
    rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    c->guard.allow_txn = 0;
    return rc;
}

/* Runs one spec (possibly several statements when it has no parameters)
** inside the open transaction. Returns 0 or -1 with err. */
static int run_spec(conn *c, const stmt_spec *sp, int64_t *changes, char *err,
                    size_t errlen)
{
    const char *tail = sp->sql ? sp->sql : "";
    int nstmt = 0, rc, more;
    sqlite3_int64 before;
    int with_params = sp->n_params > 0 || sp->n_named > 0;
    *changes = 0;
    while (*tail) {
        sqlite3_stmt *st = NULL;
        const char *next = NULL;
        rl_sqlguard_reset(&c->guard);
        rc = sqlite3_prepare_v2(c->db, tail, -1, &st, &next);
        if (rc != SQLITE_OK) {
            sql_error(c, rc, "invalid SQL", err, errlen);
            return -1;
        }
        if (!st) {
            break; /* only whitespace or comments left */
        }
        nstmt++;
        if (with_params) {
            rc = has_more(c->db, next, &more);
            if (rc != SQLITE_OK || more) {
                sqlite3_finalize(st);
                rl_seterr(err, errlen,
                          "parameters need exactly one statement, but the SQL "
                          "holds more; split it into statements of "
                          "ExecuteTransaction");
                return -1;
            }
            if (bind_params(c, st, sp->n_params, sp->params, sp->n_named,
                            sp->named, err, errlen) != 0) {
                sqlite3_finalize(st);
                return -1;
            }
        }
        before = sqlite3_total_changes64(c->db);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        }
        if (rc != SQLITE_DONE) {
            sql_error(c, rc, "statement failed", err, errlen);
            sqlite3_finalize(st);
            return -1;
        }
        /* Not sqlite3_changes64: DDL does not reset it. */
        *changes += sqlite3_total_changes64(c->db) - before;
        sqlite3_finalize(st);
        tail = next;
    }
    if (nstmt == 0) {
        rl_seterr(err, errlen, "empty SQL: send at least one statement");
        return -1;
    }
    return 0;
}

/* One write request (ExecuteWrite: one spec; ExecuteTransaction: several),
** as a job of the group commit: its specs in, its results out. */
typedef struct wreq {
    const stmt_spec *specs;
    size_t n;
    int64_t *changes, *rowids; /* per spec */
    int64_t total;
    int failed;  /* index of the failing spec, or -1 */
    int outcome; /* RL_OUTCOME_* */
    int ok;      /* ran and committed */
    char *err;
    size_t errlen;
} wreq;

/* The batch's deadline for BEGIN and COMMIT: the longest any of its
** callers still waits (a caller whose time ran out is failed alone). */
typedef struct batch_clock {
    rl_group_job **jobs;
    size_t n;
} batch_clock;

static int64_t batch_remaining(void *arg)
{
    batch_clock *bc = arg;
    int64_t best = 0;
    for (size_t i = 0; i < bc->n; i++) {
        wreq *w = bc->jobs[i]->arg;
        int64_t left =
            bc->jobs[i]->rem ? bc->jobs[i]->rem(bc->jobs[i]->ctx) : INT64_MAX;
        if (w->failed == -1 && left > best)
            best = left;
    }
    return best;
}

/* Runs one request's specs inside the open transaction, within savepoint
** rl_req so that its failure undoes only its own statements. 0 ok; -1
** failed (w->err says why; *lost = 1 if SQLite rolled back the whole
** transaction on the way, as it does on an interrupt or a full disk). */
static int run_one(conn *c, rl_group_job *job, int *lost)
{
    wreq *w = job->arg;
    *lost = 0;
    c->remaining = job->rem;
    c->ctx = job->ctx;
    c->timed_out = 0;
    w->total = 0;
    if (exec_internal(c, "SAVEPOINT rl_req") != SQLITE_OK) {
        sql_error(c, sqlite3_errcode(c->db), "cannot start the request", w->err,
                  w->errlen);
        *lost = sqlite3_get_autocommit(c->db);
        return -1;
    }
    for (size_t i = 0; i < w->n; i++) {
        int64_t ch = 0;
        if (run_spec(c, &w->specs[i], &ch, w->err, w->errlen) != 0) {
            w->failed = (int)i;
            if (sqlite3_get_autocommit(c->db)) {
                *lost = 1;
            } else {
                exec_internal(c, "ROLLBACK TO rl_req");
                exec_internal(c, "RELEASE rl_req");
            }
            return -1;
        }
        w->changes[i] = ch;
        w->rowids[i] = sqlite3_last_insert_rowid(c->db);
        w->total += ch;
    }
    exec_internal(c, "RELEASE rl_req");
    return 0;
}

/* sql_error() for one request of the batch: the deadline and stop reason
** named are that request's call's (the connection's ctx is the batch's). */
static void job_sql_error(conn *c, rl_group_job *job, int rc, const char *what)
{
    wreq *w = job->arg;
    rl_remaining_fn rem = c->remaining;
    void *ctx = c->ctx;
    c->remaining = job->rem;
    c->ctx = job->ctx;
    sql_error(c, rc, what, w->err, w->errlen);
    c->remaining = rem;
    c->ctx = ctx;
}

/* Marks a request failed with err (outcome: nothing applied). */
static void req_fail(wreq *w, const char *msg)
{
    if (w->failed == -1)
        w->failed = -2; /* failed, but in no statement of its own */
    w->outcome = RL_OUTCOME_NOT_APPLIED;
    if (msg)
        rl_seterr(w->err, w->errlen, "%s", msg);
}

/* group.h's run(): the batch as one write transaction, one savepoint per
** request; one COMMIT (one Raft entry) for all that succeeded. A request
** that fails rolls back its savepoint only and gets its own error. If
** SQLite rolls the whole transaction back on a request's failure, the
** batch starts over without that request (the others' results are
** recomputed, never reported from a rolled-back attempt). */
static void run_batch(void *svc_, rl_group_job **jobs, size_t n)
{
    rl_service *svc = svc_;
    conn *c = svc->writer;
    batch_clock bc = {jobs, n};
    size_t i, nok;
    int rc;
    for (i = 0; i < n; i++) {
        wreq *w = jobs[i]->arg;
        w->failed = -1;
        w->ok = 0;
        w->outcome = RL_OUTCOME_NOT_APPLIED; /* until COMMIT says otherwise */
    }
again:
    c->remaining = batch_remaining;
    c->ctx = &bc;
    c->timed_out = 0;
    rc = exec_internal(c, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        for (i = 0; i < n; i++) {
            wreq *w = jobs[i]->arg;
            if (w->failed == -1) {
                job_sql_error(c, jobs[i], rc,
                              "cannot begin the write transaction");
                req_fail(w, NULL);
            }
        }
        goto out;
    }
    nok = 0;
    for (i = 0; i < n; i++) {
        wreq *w = jobs[i]->arg;
        int lost = 0;
        if (w->failed != -1)
            continue;
        if (jobs[i]->rem && jobs[i]->rem(jobs[i]->ctx) == 0) {
            req_fail(w, "deadline exceeded while waiting for the writer "
                        "(other writes held it)");
            continue;
        }
        if (run_one(c, jobs[i], &lost) != 0) {
            req_fail(w, NULL);
            if (lost)
                goto again; /* the others' work went with it */
            continue;
        }
        nok++;
    }
    c->remaining = batch_remaining;
    c->ctx = &bc;
    if (nok == 0) {
        exec_internal(c, "ROLLBACK");
        goto out;
    }
    rc = exec_internal(c, "COMMIT");
    {
        int outcome = rc == SQLITE_OK ? RL_OUTCOME_APPLIED : 0;
        char why[768] = "", msg[1024] = "";
        if (svc->hooks.write_done) {
            /* The replicator's verdict and reason (SQLite only knows "disk
            ** I/O error"); a write that changed nothing proves leadership. */
            int64_t left = batch_remaining(&bc);
            outcome = svc->hooks.write_done(svc->hooks.ctx, rc, left, why,
                                            sizeof why);
        }
        /* The group's entry is in the log; no request knows yet. */
        RL_FAULT("group-ack");
        if (rc == SQLITE_OK && outcome != RL_OUTCOME_APPLIED) {
            snprintf(msg, sizeof msg, "%s", why);
        } else if (rc != SQLITE_OK && why[0]) {
            snprintf(msg, sizeof msg, "commit refused: %s", why);
        } else if (rc != SQLITE_OK && !svc->hooks.write_done) {
            outcome = RL_OUTCOME_NOT_APPLIED;
        }
        for (i = 0; i < n; i++) {
            wreq *w = jobs[i]->arg;
            if (w->failed != -1)
                continue;
            w->outcome = outcome;
            if (rc != SQLITE_OK && !msg[0]) {
                job_sql_error(c, jobs[i], rc, "commit failed");
                w->failed = -2;
            } else if (msg[0]) {
                rl_seterr(w->err, w->errlen, "%s", msg);
                w->failed = -2;
            } else {
                w->ok = 1;
            }
        }
    }
out:
    if (!sqlite3_get_autocommit(c->db)) {
        exec_internal(c, "ROLLBACK");
    }
    c->remaining = NULL;
    c->ctx = NULL;
}

/* Runs specs as one transaction, grouped with concurrent requests (see
** run_batch). changes/rowids get each spec's results; *failed = failing
** spec index or -1. 0 on success, -1 with err. */
static int run_write(rl_service *svc, const stmt_spec *specs, size_t n,
                     rl_remaining_fn rem, void *ctx, int64_t *changes,
                     int64_t *rowids, int64_t *total, int *failed, int *outcome,
                     char *err, size_t errlen)
{
    wreq w = {specs, n,   changes, rowids, 0, -1, RL_OUTCOME_NOT_APPLIED,
              0,     err, errlen};
    rl_group_job job = {&w, rem, ctx, 0, NULL};
    *failed = -1;
    *total = 0;
    *outcome = RL_OUTCOME_NOT_APPLIED;
    if (rl_group_submit(&svc->group, &job) != 0) {
        rl_seterr(err, errlen,
                  "deadline exceeded while waiting for the writer "
                  "(another write holds it)");
        return -1;
    }
    *outcome = w.outcome;
    *total = w.total;
    *failed = w.failed >= 0 ? w.failed : -1;
    return w.ok ? 0 : -1;
}

/* ---- encoding helpers ---- */

static int pack(const ProtobufCMessage *m, size_t max, rl_rpc_buf *out,
                char *err, size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > max) {
        rl_seterr(
            err, errlen,
            "response of %zu bytes exceeds the message limit of %zu bytes", n,
            max);
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    out->data = malloc(n ? n : 1);
    if (!out->data) {
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    out->len = protobuf_c_message_pack(m, out->data);
    return RL_RPC_OK;
}

static char *errdup(const char *s)
{
    return strdup(s);
}

#define DECODE(type, fn, var, what)                                            \
    type *var = fn(NULL, len, req);                                            \
    if (!var) {                                                                \
        rl_seterr(                                                             \
            err, errlen,                                                       \
            "malformed %s: the bytes are not a valid protobuf message of "     \
            "that type",                                                       \
            what);                                                             \
        return RL_RPC_INVALID_ARGUMENT;                                        \
    }

/* ---- handlers ---- */

static int do_write(rl_service *svc, const uint8_t *req, size_t len,
                    rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply,
                    char *err, size_t errlen)
{
    DECODE(Proto__WriteRequest, proto__write_request__unpack, r,
           "WriteRequest");
    Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
    stmt_spec sp = {r->sql, r->n_params, r->params, r->n_named_params,
                    r->named_params};
    int64_t ch = 0, rowid = 0, total = 0;
    int failed, code, outcome;
    char msg[1024];
    int ok = run_write(svc, &sp, 1, rem, ctx, &ch, &rowid, &total, &failed,
                       &outcome, msg, sizeof(msg)) == 0;
    resp.outcome = (Proto__WriteOutcome)outcome;
    if (ok) {
        resp.success = 1;
        resp.rows_affected = total;
        resp.last_insert_rowid = rowid;
    } else {
        resp.error = errdup(msg);
    }
    code = pack(&resp.base, svc->max_msg, reply, err, errlen);
    if (resp.error != protobuf_c_empty_string) {
        free(resp.error);
    }
    proto__write_request__free_unpacked(r, NULL);
    return code;
}

static int do_txn(rl_service *svc, const uint8_t *req, size_t len,
                  rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                  size_t errlen)
{
    DECODE(Proto__TransactionRequest, proto__transaction_request__unpack, r,
           "TransactionRequest");
    Proto__TransactionResponse resp = PROTO__TRANSACTION_RESPONSE__INIT;
    size_t n = r->n_statements, i;
    stmt_spec *specs = calloc(n ? n : 1, sizeof(*specs));
    int64_t *ch = calloc(n ? n : 1, sizeof(*ch));
    int64_t *rowids = calloc(n ? n : 1, sizeof(*rowids));
    Proto__StatementResult *res = calloc(n ? n : 1, sizeof(*res));
    Proto__StatementResult **resp_ptrs = calloc(n ? n : 1, sizeof(*resp_ptrs));
    int64_t total;
    int failed = -1, code, outcome = RL_OUTCOME_NOT_APPLIED;
    char msg[1024];
    if (!specs || !ch || !rowids || !res || !resp_ptrs) {
        rl_seterr(err, errlen, "out of memory");
        code = RL_RPC_RESOURCE_EXHAUSTED;
        goto out;
    }
    for (i = 0; i < n; i++) {
        Proto__Statement *s = r->statements[i];
        specs[i].sql = s->sql;
        specs[i].n_params = s->n_params;
        specs[i].params = s->params;
        specs[i].n_named = s->n_named_params;
        specs[i].named = s->named_params;
    }
    resp.failed_statement = -1;
    if (n == 0) {
        resp.error = errdup("empty transaction: send at least one statement");
    } else if (run_write(svc, specs, n, rem, ctx, ch, rowids, &total, &failed,
                         &outcome, msg, sizeof(msg)) == 0) {
        resp.success = 1;
        for (i = 0; i < n; i++) {
            proto__statement_result__init(&res[i]);
            res[i].rows_affected = ch[i];
            res[i].last_insert_rowid = rowids[i];
            resp_ptrs[i] = &res[i];
        }
        resp.n_results = n;
        resp.results = resp_ptrs;
    } else {
        char full[1100];
        snprintf(full, sizeof(full), "statement %d: %s", failed, msg);
        resp.error = errdup(failed >= 0 ? full : msg);
        resp.failed_statement = failed;
    }
    resp.outcome = (Proto__WriteOutcome)outcome;
    code = pack(&resp.base, svc->max_msg, reply, err, errlen);
    if (resp.error != protobuf_c_empty_string) {
        free(resp.error);
    }
out:
    free(specs);
    free(ch);
    free(rowids);
    free(res);
    free(resp_ptrs);
    proto__transaction_request__free_unpacked(r, NULL);
    return code;
}

/* Result rows built for ExecuteRead; freed with free_unpacked since every
** pointer in it is malloc'd. */
static int read_rows(rl_service *svc, conn *c, sqlite3_stmt *st,
                     Proto__QueryResult *qr, char *msg, size_t msglen)
{
    int ncol = sqlite3_column_count(st), i, rc;
    size_t cap = 0, approx = 64;
    qr->n_columns = qr->n_declared_types = qr->n_column_types = (size_t)ncol;
    qr->columns = calloc((size_t)ncol + 1, sizeof(char *));
    qr->declared_types = calloc((size_t)ncol + 1, sizeof(char *));
    qr->column_types = calloc((size_t)ncol + 1, sizeof(Proto__ColumnType));
    if (!qr->columns || !qr->declared_types || !qr->column_types) {
        goto oom;
    }
    for (i = 0; i < ncol; i++) {
        const char *dt = sqlite3_column_decltype(st, i);
        qr->columns[i] = dupstr(sqlite3_column_name(st, i));
        qr->declared_types[i] = dupstr(dt);
        if (!qr->columns[i] || !qr->declared_types[i]) {
            goto oom;
        }
        approx += strlen(qr->columns[i]) + strlen(qr->declared_types[i]) + 8;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        Proto__Row *row;
        if (qr->n_rows == cap) {
            size_t nc = cap ? cap * 2 : 16;
            Proto__Row **nr = realloc(qr->rows, nc * sizeof(*nr));
            if (!nr) {
                goto oom;
            }
            qr->rows = nr;
            cap = nc;
        }
        row = malloc(sizeof(*row));
        if (!row) {
            goto oom;
        }
        proto__row__init(row);
        qr->rows[qr->n_rows++] = row;
        row->values = calloc((size_t)ncol + 1, sizeof(ProtobufCBinaryData));
        row->typed = calloc((size_t)ncol + 1, sizeof(Proto__Value *));
        if (!row->values || !row->typed) {
            goto oom;
        }
        for (i = 0; i < ncol; i++) {
            int t = sqlite3_column_type(st, i);
            Proto__Value *v = malloc(sizeof(*v));
            const unsigned char *txt;
            int n;
            if (!v) {
                goto oom;
            }
            proto__value__init(v);
            row->typed[row->n_typed++] = v;
            row->n_values++;
            switch (t) {
            case SQLITE_INTEGER:
                v->kind_case = PROTO__VALUE__KIND_INTEGER;
                v->integer = sqlite3_column_int64(st, i);
                break;
            case SQLITE_FLOAT:
                v->kind_case = PROTO__VALUE__KIND_REAL;
                v->real = sqlite3_column_double(st, i);
                break;
            case SQLITE_BLOB: {
                const void *b = sqlite3_column_blob(st, i);
                n = sqlite3_column_bytes(st, i);
                v->kind_case = PROTO__VALUE__KIND_BLOB;
                v->blob.data = malloc(n ? (size_t)n : 1);
                if (!v->blob.data) {
                    goto oom;
                }
                if (n) {
                    memcpy(v->blob.data, b, (size_t)n);
                }
                v->blob.len = (size_t)n;
                approx += (size_t)n;
                break;
            }
            case SQLITE_NULL:
                v->kind_case = PROTO__VALUE__KIND_NULL;
                v->null = 1;
                break;
            default: {
                txt = sqlite3_column_text(st, i);
                n = sqlite3_column_bytes(st, i);
                v->kind_case = PROTO__VALUE__KIND_TEXT;
                v->text = malloc((size_t)n + 1);
                if (!v->text) {
                    goto oom;
                }
                memcpy(v->text, txt ? (const char *)txt : "", (size_t)n);
                v->text[n] = 0;
                approx += (size_t)n;
                break;
            }
            }
            /* PoC form: the value as SQLite renders it as text; NULL as
            ** empty bytes. */
            if (t != SQLITE_NULL) {
                txt = t == SQLITE_BLOB ? sqlite3_column_blob(st, i)
                                       : sqlite3_column_text(st, i);
                n = sqlite3_column_bytes(st, i);
                row->values[i].data = malloc(n ? (size_t)n : 1);
                if (!row->values[i].data) {
                    goto oom;
                }
                if (n) {
                    memcpy(row->values[i].data, txt, (size_t)n);
                }
                row->values[i].len = (size_t)n;
                approx += (size_t)n + 12;
            }
            if (qr->n_rows == 1) {
                qr->column_types[i] =
                    t == SQLITE_INTEGER
                        ? PROTO__COLUMN_TYPE__COLUMN_TYPE_INTEGER
                    : t == SQLITE_FLOAT ? PROTO__COLUMN_TYPE__COLUMN_TYPE_REAL
                    : t == SQLITE_TEXT  ? PROTO__COLUMN_TYPE__COLUMN_TYPE_TEXT
                    : t == SQLITE_BLOB  ? PROTO__COLUMN_TYPE__COLUMN_TYPE_BLOB
                                        : PROTO__COLUMN_TYPE__COLUMN_TYPE_NULL;
            } else {
                Proto__ColumnType now =
                    t == SQLITE_INTEGER
                        ? PROTO__COLUMN_TYPE__COLUMN_TYPE_INTEGER
                    : t == SQLITE_FLOAT ? PROTO__COLUMN_TYPE__COLUMN_TYPE_REAL
                    : t == SQLITE_TEXT  ? PROTO__COLUMN_TYPE__COLUMN_TYPE_TEXT
                    : t == SQLITE_BLOB  ? PROTO__COLUMN_TYPE__COLUMN_TYPE_BLOB
                                        : PROTO__COLUMN_TYPE__COLUMN_TYPE_NULL;
                Proto__ColumnType was = qr->column_types[i];
                if (was == PROTO__COLUMN_TYPE__COLUMN_TYPE_NULL) {
                    qr->column_types[i] = now;
                } else if (now != PROTO__COLUMN_TYPE__COLUMN_TYPE_NULL &&
                           now != was) {
                    qr->column_types[i] =
                        PROTO__COLUMN_TYPE__COLUMN_TYPE_UNSPECIFIED;
                }
            }
        }
        if (approx > svc->max_msg) {
            rl_seterr(msg, msglen,
                      "result too large: more than %zu bytes after %zu rows, "
                      "over the message limit; narrow the query (LIMIT/OFFSET, "
                      "fewer columns) or raise -max-msg-bytes",
                      svc->max_msg, qr->n_rows);
            return -1;
        }
    }
    if (rc != SQLITE_DONE) {
        sql_error(c, rc, "query failed", msg, msglen);
        return -1;
    }
    return 0;
oom:
    rl_seterr(msg, msglen, "out of memory while building the result");
    return -1;
}

static int do_read(rl_service *svc, const uint8_t *req, size_t len,
                   rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                   size_t errlen)
{
    DECODE(Proto__ReadRequest, proto__read_request__unpack, r, "ReadRequest");
    Proto__ReadResponse resp = PROTO__READ_RESPONSE__INIT;
    Proto__QueryResult *qr = malloc(sizeof(*qr));
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    char msg[1024] = "";
    int code, rc, more = 0, ok = 0;
    conn *c = NULL;
    if (!qr) {
        msg[0] = 0;
        rl_seterr(msg, sizeof(msg), "out of memory");
        goto done;
    }
    proto__query_result__init(qr);
    c = reader_get(svc, msg, sizeof(msg));
    if (!c) {
        goto done;
    }
    c->remaining = rem;
    c->ctx = ctx;
    c->timed_out = 0;
    rl_sqlguard_reset(&c->guard);
    rc = sqlite3_prepare_v2(c->db, r->sql ? r->sql : "", -1, &st, &tail);
    if (rc != SQLITE_OK) {
        sql_error(c, rc, "invalid SQL", msg, sizeof(msg));
        goto done;
    }
    if (!st) {
        rl_seterr(msg, sizeof(msg), "empty SQL: send one statement");
        goto done;
    }
    if (!sqlite3_stmt_readonly(st)) {
        rl_seterr(msg, sizeof(msg),
                  "ExecuteRead refuses SQL that writes; send it with "
                  "ExecuteWrite");
        goto done;
    }
    rc = has_more(c->db, tail, &more);
    if (rc != SQLITE_OK || more) {
        rl_seterr(msg, sizeof(msg),
                  "ExecuteRead takes exactly one statement, but the SQL holds "
                  "more");
        goto done;
    }
    if (bind_params(c, st, r->n_params, r->params, r->n_named_params,
                    r->named_params, msg, sizeof(msg)) != 0) {
        goto done;
    }
    ok = read_rows(svc, c, st, qr, msg, sizeof(msg)) == 0;
done:
    sqlite3_finalize(st);
    if (c) {
        c->remaining = NULL;
        reader_put(svc, c);
    }
    if (ok) {
        resp.result = qr;
    } else {
        resp.error = errdup(msg[0] ? msg : "read failed");
        /* Never a partial result: the rows built so far are dropped. */
        resp.result = NULL;
    }
    code = pack(&resp.base, svc->max_msg, reply, err, errlen);
    if (code == RL_RPC_RESOURCE_EXHAUSTED && ok) {
        /* Exact size over the limit: answer with an error, no rows. */
        Proto__ReadResponse small = PROTO__READ_RESPONSE__INIT;
        char m2[RL_RPC_ERRMAX + 128];
        snprintf(m2, sizeof(m2),
                 "result too large: %s; narrow the query (LIMIT/OFFSET, fewer "
                 "columns) or raise -max-msg-bytes",
                 err);
        small.error = m2;
        code = pack(&small.base, svc->max_msg, reply, err, errlen);
    }
    if (resp.error != protobuf_c_empty_string) {
        free(resp.error);
    }
    if (qr) {
        protobuf_c_message_free_unpacked(&qr->base, NULL);
    }
    proto__read_request__free_unpacked(r, NULL);
    return code;
}

/* Without a host (raftd started without -bootstrap or -join on a database
** that is not a node) there is no cluster to act on: say so and how to get
** one. */
#define STANDALONE                                                             \
    "this node runs standalone (raftd started without -bootstrap or -join), "  \
    "so it belongs to no cluster: ask a cluster member, or restart this node " \
    "with -bootstrap to start a cluster"

static int do_join(rl_service *svc, const uint8_t *req, size_t len,
                   rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__JoinRequest, proto__join_request__unpack, r, "JoinRequest");
    Proto__JoinResponse resp = PROTO__JOIN_RESPONSE__INIT;
    char msg[512];
    int code;
    rl_seterr(msg, sizeof(msg), "cannot add node '%s': %s", r->node_id,
              STANDALONE);
    resp.error = msg;
    code = pack(&resp.base, svc->max_msg, reply, err, errlen);
    proto__join_request__free_unpacked(r, NULL);
    return code;
}

static int do_remove(rl_service *svc, const uint8_t *req, size_t len,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__RemoveRequest, proto__remove_request__unpack, r,
           "RemoveRequest");
    Proto__RemoveResponse resp = PROTO__REMOVE_RESPONSE__INIT;
    char msg[512];
    int code;
    rl_seterr(msg, sizeof(msg), "cannot remove node '%s': %s", r->node_id,
              STANDALONE);
    resp.error = msg;
    code = pack(&resp.base, svc->max_msg, reply, err, errlen);
    proto__remove_request__free_unpacked(r, NULL);
    return code;
}

static int do_leader(rl_service *svc, const uint8_t *req, size_t len,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__LeaderRequest, proto__leader_request__unpack, r,
           "LeaderRequest");
    Proto__LeaderResponse resp = PROTO__LEADER_RESPONSE__INIT;
    resp.error = (char *)"no leader: " STANDALONE;
    proto__leader_request__free_unpacked(r, NULL);
    return pack(&resp.base, svc->max_msg, reply, err, errlen);
}

static int do_status(rl_service *svc, const uint8_t *req, size_t len,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__StatusRequest, proto__status_request__unpack, r,
           "StatusRequest");
    Proto__StatusResponse resp = PROTO__STATUS_RESPONSE__INIT;
    resp.node_id = svc->node_id;
    resp.grpc_addr = svc->grpc_addr;
    resp.raft_addr = svc->raft_addr;
    resp.role = (char *)"standalone";
    resp.database = svc->db_path;
    resp.version = (char *)RL_VERSION;
    resp.sqlite_version = (char *)sqlite3_libversion();
    pthread_mutex_lock(&svc->smu);
    resp.calls_served = svc->served;
    pthread_mutex_unlock(&svc->smu);
    proto__status_request__free_unpacked(r, NULL);
    return pack(&resp.base, svc->max_msg, reply, err, errlen);
}

static int do_transfer(rl_service *svc, const uint8_t *req, size_t len,
                       rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__TransferRequest, proto__transfer_request__unpack, r,
           "TransferRequest");
    Proto__TransferResponse resp = PROTO__TRANSFER_RESPONSE__INIT;
    resp.error = (char *)"cannot transfer leadership: " STANDALONE;
    proto__transfer_request__free_unpacked(r, NULL);
    return pack(&resp.base, svc->max_msg, reply, err, errlen);
}

static int do_nodes(rl_service *svc, const uint8_t *req, size_t len,
                    rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__NodesRequest, proto__nodes_request__unpack, r,
           "NodesRequest");
    Proto__NodesResponse resp = PROTO__NODES_RESPONSE__INIT;
    resp.error = (char *)"no cluster nodes: " STANDALONE;
    proto__nodes_request__free_unpacked(r, NULL);
    return pack(&resp.base, svc->max_msg, reply, err, errlen);
}

static int do_read_index(rl_service *svc, const uint8_t *req, size_t len,
                         char *err, size_t errlen)
{
    DECODE(Proto__ReadIndexRequest, proto__read_index_request__unpack, r,
           "ReadIndexRequest");
    (void)svc;
    proto__read_index_request__free_unpacked(r, NULL);
    rl_seterr(err, errlen, "ReadIndex needs a Raft leader: %s", STANDALONE);
    return RL_RPC_FAILED_PRECONDITION;
}

int rl_service_unary(rl_service *svc, const char *method, const uint8_t *req,
                     size_t len, rl_remaining_fn rem, void *ctx,
                     rl_rpc_buf *reply, char *err, size_t errlen)
{
    int code;
    reply->data = NULL;
    reply->len = 0;
    err[0] = 0;
    if (strcmp(method, "ExecuteWrite") == 0) {
        code = do_write(svc, req, len, rem, ctx, reply, err, errlen);
    } else if (strcmp(method, "ExecuteRead") == 0) {
        code = do_read(svc, req, len, rem, ctx, reply, err, errlen);
    } else if (strcmp(method, "ExecuteTransaction") == 0) {
        code = do_txn(svc, req, len, rem, ctx, reply, err, errlen);
    } else if (strcmp(method, "Join") == 0) {
        code = do_join(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "Remove") == 0) {
        code = do_remove(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "Status") == 0) {
        code = do_status(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "Leader") == 0) {
        code = do_leader(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "Transfer") == 0) {
        code = do_transfer(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "Nodes") == 0) {
        code = do_nodes(svc, req, len, reply, err, errlen);
    } else if (strcmp(method, "ReadIndex") == 0) {
        code = do_read_index(svc, req, len, err, errlen);
    } else {
        rl_seterr(err, errlen, "unknown method %s", method);
        code = RL_RPC_UNIMPLEMENTED;
    }
    pthread_mutex_lock(&svc->smu);
    svc->served++;
    pthread_mutex_unlock(&svc->smu);
    return code;
}

/* ---- ForwardTxn framing ---- */

void rl_txn_asm_init(rl_txn_asm *a)
{
    memset(a, 0, sizeof(*a));
    a->crc = (uint32_t)crc32(0L, Z_NULL, 0);
}

void rl_txn_asm_free(rl_txn_asm *a)
{
    free(a->data);
    a->data = NULL;
    a->cap = 0;
}

/* Appends n bytes to a->data, doubling its room as needed (never beyond
** the stated total). 0, or -1 out of memory. */
static int asm_keep(rl_txn_asm *a, const uint8_t *p, size_t n)
{
    size_t need = (size_t)a->received + n;
    if (need > a->cap) {
        size_t cap = a->cap ? a->cap : 65536;
        uint8_t *d;
        while (cap < need)
            cap *= 2;
        if (cap > a->total)
            cap = (size_t)a->total;
        d = realloc(a->data, cap ? cap : 1);
        if (!d)
            return -1;
        a->data = d;
        a->cap = cap;
    }
    memcpy(a->data + a->received, p, n);
    return 0;
}

int rl_service_propose_txn(rl_service *svc, const struct rl_txn_asm *a,
                           int64_t remaining_ms, uint64_t *index, char *why,
                           size_t whylen)
{
    *index = 0;
    if (!svc->hooks.propose_txn) {
        rl_seterr(why, whylen,
                  "this node is standalone: it commits no forwarded "
                  "transaction");
        return -1;
    }
    return svc->hooks.propose_txn(svc->hooks.ctx, a, remaining_ms, index, why,
                                  whylen);
}

int rl_txn_asm_add(rl_txn_asm *a, const uint8_t *msg, size_t len, char *err,
                   size_t errlen)
{
    Proto__TxnChunk *ch = proto__txn_chunk__unpack(NULL, len, msg);
    int code = RL_RPC_OK;
    if (!ch) {
        rl_seterr(err, errlen,
                  "malformed TxnChunk: not a valid protobuf "
                  "message of that type");
        return RL_RPC_INVALID_ARGUMENT;
    }
    if (a->last_seen) {
        rl_seterr(err, errlen, "TxnChunk after the chunk marked last");
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (a->chunks == 0 && ch->origin_node != 0 &&
               ch->total_length > RL_TXN_COMMIT_MAX) {
        rl_seterr(err, errlen,
                  "transaction of %llu bytes exceeds the limit of %llu bytes "
                  "for one Raft entry",
                  (unsigned long long)ch->total_length,
                  (unsigned long long)RL_TXN_COMMIT_MAX);
        code = RL_RPC_RESOURCE_EXHAUSTED;
    } else if (a->chunks > 0 && (ch->origin_node || ch->txn_base ||
                                 ch->origin_txn || ch->origin_pid)) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu states an origin or base; only the first "
                  "chunk may",
                  (unsigned long long)a->chunks);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (a->chunks == 0 && ch->total_length > RL_TXN_MAX) {
        rl_seterr(err, errlen,
                  "transaction of %llu bytes exceeds the limit of %llu bytes",
                  (unsigned long long)ch->total_length,
                  (unsigned long long)RL_TXN_MAX);
        code = RL_RPC_RESOURCE_EXHAUSTED;
    } else if (a->chunks > 0 && ch->total_length != 0 &&
               ch->total_length != a->total) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu states total_length %llu, the first said %llu",
                  (unsigned long long)a->chunks,
                  (unsigned long long)ch->total_length,
                  (unsigned long long)a->total);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (ch->offset != a->received) {
        rl_seterr(err, errlen,
                  "TxnChunk %llu has offset %llu, expected %llu (chunks must "
                  "arrive in order without gaps)",
                  (unsigned long long)a->chunks, (unsigned long long)ch->offset,
                  (unsigned long long)a->received);
        code = RL_RPC_INVALID_ARGUMENT;
    } else if (ch->data.len >
               (a->chunks == 0 ? ch->total_length : a->total) - a->received) {
        rl_seterr(
            err, errlen, "TxnChunk %llu carries bytes beyond total_length %llu",
            (unsigned long long)a->chunks,
            (unsigned long long)(a->chunks == 0 ? ch->total_length : a->total));
        code = RL_RPC_INVALID_ARGUMENT;
    } else {
        if (a->chunks == 0) {
            a->total = ch->total_length;
            a->commit = ch->origin_node != 0;
            a->base = ch->txn_base;
            a->origin_node = ch->origin_node;
            a->origin_txn = ch->origin_txn;
            a->origin_pid = ch->origin_pid;
        }
        if (a->commit && ch->data.len &&
            asm_keep(a, ch->data.data, ch->data.len) != 0) {
            rl_seterr(err, errlen,
                      "out of memory keeping a %llu-byte "
                      "transaction",
                      (unsigned long long)a->total);
            proto__txn_chunk__free_unpacked(ch, NULL);
            return RL_RPC_RESOURCE_EXHAUSTED;
        }
        if (ch->data.len) {
            a->crc = (uint32_t)crc32(a->crc, ch->data.data, (uInt)ch->data.len);
        }
        a->received += ch->data.len;
        a->chunks++;
        a->last_seen = ch->last;
    }
    proto__txn_chunk__free_unpacked(ch, NULL);
    return code;
}

int rl_txn_asm_finish(rl_txn_asm *a, char *err, size_t errlen)
{
    if (a->chunks == 0) {
        rl_seterr(err, errlen, "ForwardTxn stream carried no TxnChunk");
        return RL_RPC_INVALID_ARGUMENT;
    }
    if (!a->last_seen || a->received != a->total) {
        rl_seterr(err, errlen,
                  "ForwardTxn stream ended early: %llu of %llu bytes%s",
                  (unsigned long long)a->received, (unsigned long long)a->total,
                  a->last_seen ? "" : ", no chunk marked last");
        return RL_RPC_INVALID_ARGUMENT;
    }
    return RL_RPC_OK;
}
