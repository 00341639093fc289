/*
** raftd/api/service_write.c -- the SQL service's writes: ExecuteWrite and
** ExecuteTransaction, run by group commit (group.h) on the one writer
** connection, each request in its own savepoint of a shared transaction.
**
** It must never let one request's failure undo another's statements (a
** failed request rolls back to its savepoint), never report a write as
** done before its COMMIT returned (and, on a hosted node, the host's
** write_done hook said how it went), and never run outside the deadline
** of the requests in the batch.
*/
#include "service_int.h"
#include "errbuf.h"
#include "fsio.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"
SQLITE_EXTENSION_INIT3

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
            rl_svc_sql_error(c, rc, "invalid SQL", err, errlen);
            return -1;
        }
        if (!st) {
            break; /* only whitespace or comments left */
        }
        nstmt++;
        if (with_params) {
            rc = rl_svc_has_more(c->db, next, &more);
            if (rc != SQLITE_OK || more) {
                sqlite3_finalize(st);
                rl_seterr(err, errlen,
                          "parameters need exactly one statement, but the SQL "
                          "holds more; split it into statements of "
                          "ExecuteTransaction");
                return -1;
            }
            if (rl_svc_bind_params(c, st, sp->n_params, sp->params, sp->n_named,
                                   sp->named, err, errlen) != 0) {
                sqlite3_finalize(st);
                return -1;
            }
        }
        before = sqlite3_total_changes64(c->db);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        }
        if (rc != SQLITE_DONE) {
            rl_svc_sql_error(c, rc, "statement failed", err, errlen);
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
        rl_svc_sql_error(c, sqlite3_errcode(c->db), "cannot start the request",
                         w->err, w->errlen);
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

/* rl_svc_sql_error() for one request of the batch: the deadline and stop reason
** named are that request's call's (the connection's ctx is the batch's). */
static void job_sql_error(conn *c, rl_group_job *job, int rc, const char *what)
{
    wreq *w = job->arg;
    rl_remaining_fn rem = c->remaining;
    void *ctx = c->ctx;
    c->remaining = job->rem;
    c->ctx = job->ctx;
    rl_svc_sql_error(c, rc, what, w->err, w->errlen);
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
void rl_svc_run_batch(void *svc_, rl_group_job **jobs, size_t n)
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

/* ---- handlers ---- */

int rl_svc_write(rl_service *svc, const uint8_t *req, size_t len,
                 rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                 size_t errlen)
{
    RL_API_DECODE(Proto__WriteRequest, proto__write_request__unpack, r,
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
    code = rl_api_pack(&resp.base, svc->max_msg, reply, err, errlen);
    if (resp.error != protobuf_c_empty_string) {
        free(resp.error);
    }
    proto__write_request__free_unpacked(r, NULL);
    return code;
}

int rl_svc_txn(rl_service *svc, const uint8_t *req, size_t len,
               rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
               size_t errlen)
{
    RL_API_DECODE(Proto__TransactionRequest, proto__transaction_request__unpack,
                  r, "TransactionRequest");
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
    code = rl_api_pack(&resp.base, svc->max_msg, reply, err, errlen);
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
