/*
** raftd/api/service_int.h -- what the files of the SQL service share and
** nothing else may see: a connection, the service's state, and the
** helpers the reads (service_read.c) and writes (service_write.c) use.
** The files from the top down (each calls only files below it):
** service.c (open, close, dispatch), service_read.c and service_write.c,
** service_conn.c (connections and statement helpers).
**
** Only raftd/api/service*.c may include it. Like service.h, it knows no
** gRPC and no host.
*/
#ifndef RL_SERVICE_INT_H
#define RL_SERVICE_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "msg.h"
#include "raftlite.pb-c.h"
#include "service.h"
#include "sqlguard.h"
#include "sqlite3ext.h"

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

static inline char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

/* A response's error text: malloc'd, freed with the response. */
static inline char *errdup(const char *s)
{
    return strdup(s);
}

/* ---- service_conn.c: the service's base (calls no other service file) ---- */

/* A connection to the service's database under the allow-list (readonly:
** a reader), with the call's deadline handlers; NULL with err. */
conn *rl_svc_conn_open(rl_service *svc, int readonly, char *err, size_t errlen);
void rl_svc_conn_close(conn *c);
/* A read-only connection from the pool (or a new one); NULL with err. */
conn *rl_svc_reader_get(rl_service *svc, char *err, size_t errlen);
/* Gives it back (closed if the pool is full or it is unusable). */
void rl_svc_reader_put(rl_service *svc, conn *c);
/* Error text for a failed statement, naming a deadline when that was it. */
void rl_svc_sql_error(conn *c, int rc, const char *what, char *err,
                      size_t errlen);
/* Binds a request's positional and named parameters. 0, or -1 with err. */
int rl_svc_bind_params(conn *c, sqlite3_stmt *st, size_t n,
                       Proto__Value **params, size_t n_named,
                       Proto__NamedValue **named, char *err, size_t errlen);
/* *more = 1 if tail holds another statement. An SQLite code. */
int rl_svc_has_more(sqlite3 *db, const char *tail, int *more);

/* ---- service_write.c ---- */

/* group.h's combiner: runs a batch of write requests as one transaction
** on the writer connection. */
void rl_svc_run_batch(void *svc_, rl_group_job **jobs, size_t n);
/* ExecuteWrite and ExecuteTransaction. A status code, *reply on OK. */
int rl_svc_write(rl_service *svc, const uint8_t *req, size_t len,
                 rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                 size_t errlen);
int rl_svc_txn(rl_service *svc, const uint8_t *req, size_t len,
               rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
               size_t errlen);

/* ---- service_read.c ---- */

/* ExecuteRead on a read-only connection. */
int rl_svc_read(rl_service *svc, const uint8_t *req, size_t len,
                rl_remaining_fn rem, void *ctx, rl_rpc_buf *reply, char *err,
                size_t errlen);

#endif /* RL_SERVICE_INT_H */
