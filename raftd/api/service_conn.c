/*
** raftd/api/service_conn.c -- the SQL service's connections and what the
** reads (service_read.c) and writes (service_write.c) share about running
** a statement: open and close under the allow-list, the pool of read-only
** readers, the deadline's busy and progress handlers, parameter binding
** and the error text of a failed statement.
**
** The base of the service: service.c, service_read.c and service_write.c
** call it, and it calls none of them. Like them it must never call gRPC
** or know the host; a connection it hands out is never inside a
** transaction and always under the allow-list of sqlguard.h.
*/
#include "service_int.h"
#include "errbuf.h"
#include "fsio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

SQLITE_EXTENSION_INIT3

#define MAX_IDLE_READERS 16

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

void rl_svc_conn_close(conn *c)
{
    if (c) {
        sqlite3_close(c->db);
        free(c);
    }
}

conn *rl_svc_conn_open(rl_service *svc, int readonly, char *err, size_t errlen)
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
        rl_svc_conn_close(c);
        return NULL;
    }
    /* A hosted database is WAL already (the VFS refuses any other mode),
    ** and a read here would wait at the node's read gate while it starts
    ** (raftd/host/gate.c): only a standalone database is set. */
    if (!readonly && !svc->host) {
        char *msg = NULL;
        rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            rl_seterr(err, errlen, "cannot set WAL mode on %s: %s",
                      svc->db_path, msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            rl_svc_conn_close(c);
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
        rl_svc_conn_close(c);
        return NULL;
    }
    sqlite3_busy_handler(c->db, busy_cb, c);
    sqlite3_progress_handler(c->db, 1000, progress_cb, c);
    c->reading = readonly;
    c->svc = svc;
    return c;
}

conn *rl_svc_reader_get(rl_service *svc, char *err, size_t errlen)
{
    conn *c;
    pthread_mutex_lock(&svc->rmu);
    c = svc->readers;
    if (c) {
        svc->readers = c->next;
        svc->nidle--;
    }
    pthread_mutex_unlock(&svc->rmu);
    return c ? c : rl_svc_conn_open(svc, 1, err, errlen);
}

void rl_svc_reader_put(rl_service *svc, conn *c)
{
    if (!sqlite3_get_autocommit(c->db)) {
        /* Never hand on a connection inside a transaction. */
        rl_svc_conn_close(c);
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
    rl_svc_conn_close(c);
}

/* Error text for a failed statement, naming a deadline when that was it. */
void rl_svc_sql_error(conn *c, int rc, const char *what, char *err,
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

int rl_svc_bind_params(conn *c, sqlite3_stmt *st, size_t n,
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
            rl_svc_sql_error(c, rc, "cannot bind a parameter", err, errlen);
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
            rl_svc_sql_error(c, rc, "cannot bind a parameter", err, errlen);
            return -1;
        }
    }
    return 0;
}

/* Sets *more if text after the first statement holds another statement. */
int rl_svc_has_more(sqlite3 *db, const char *tail, int *more)
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
