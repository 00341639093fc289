/*
** raftd/api/service_read.c -- the SQL service's reads: ExecuteRead on a
** pooled read-only connection, rows encoded into the response within the
** message limit.
**
** It must never run a statement that writes (sqlite3_stmt_readonly is
** checked, and the connection is read-only), never build a response over
** the message limit, and never hold a reader past the call.
*/
#include "service_int.h"
#include "errbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

SQLITE_EXTENSION_INIT3

/* The proto column type of an SQLite value type. */
static Proto__ColumnType column_type(int t)
{
    switch (t) {
    case SQLITE_INTEGER:
        return PROTO__COLUMN_TYPE__COLUMN_TYPE_INTEGER;
    case SQLITE_FLOAT:
        return PROTO__COLUMN_TYPE__COLUMN_TYPE_REAL;
    case SQLITE_TEXT:
        return PROTO__COLUMN_TYPE__COLUMN_TYPE_TEXT;
    case SQLITE_BLOB:
        return PROTO__COLUMN_TYPE__COLUMN_TYPE_BLOB;
    default:
        return PROTO__COLUMN_TYPE__COLUMN_TYPE_NULL;
    }
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
                qr->column_types[i] = column_type(t);
            } else {
                Proto__ColumnType now = column_type(t);
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
        rl_svc_sql_error(c, rc, "query failed", msg, msglen);
        return -1;
    }
    return 0;
oom:
    rl_seterr(msg, msglen, "out of memory while building the result");
    return -1;
}

int rl_svc_read(rl_service *svc, const uint8_t *req, size_t len,
                rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                size_t errlen)
{
    RL_API_DECODE(Proto__ReadRequest, proto__read_request__unpack, r,
                  "ReadRequest");
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
    c = rl_svc_reader_get(svc, msg, sizeof(msg));
    if (!c) {
        goto done;
    }
    c->remaining = rem;
    c->ctx = ctx;
    c->timed_out = 0;
    rl_sqlguard_reset(&c->guard);
    rc = sqlite3_prepare_v2(c->db, r->sql ? r->sql : "", -1, &st, &tail);
    if (rc != SQLITE_OK) {
        rl_svc_sql_error(c, rc, "invalid SQL", msg, sizeof(msg));
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
    rc = rl_svc_has_more(c->db, tail, &more);
    if (rc != SQLITE_OK || more) {
        rl_seterr(msg, sizeof(msg),
                  "ExecuteRead takes exactly one statement, but the SQL holds "
                  "more");
        goto done;
    }
    if (rl_svc_bind_params(c, st, r->n_params, r->params, r->n_named_params,
                           r->named_params, msg, sizeof(msg)) != 0) {
        goto done;
    }
    ok = read_rows(svc, c, st, qr, msg, sizeof(msg)) == 0;
done:
    sqlite3_finalize(st);
    if (c) {
        c->remaining = NULL;
        rl_svc_reader_put(svc, c);
    }
    if (ok) {
        resp.result = qr;
    } else {
        resp.error = errdup(msg[0] ? msg : "read failed");
        /* Never a partial result: the rows built so far are dropped. */
        resp.result = NULL;
    }
    code = rl_api_pack(&resp.base, svc->max_msg, reply, err, errlen);
    if (code == RL_RPC_RESOURCE_EXHAUSTED && ok) {
        /* Exact size over the limit: answer with an error, no rows. */
        Proto__ReadResponse small = PROTO__READ_RESPONSE__INIT;
        char m2[RL_RPC_ERRMAX + 128];
        snprintf(m2, sizeof(m2),
                 "result too large: %s; narrow the query (LIMIT/OFFSET, fewer "
                 "columns) or raise -max-msg-bytes",
                 err);
        small.error = m2;
        code = rl_api_pack(&small.base, svc->max_msg, reply, err, errlen);
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
