/*
** raftd/host/client.c -- the replicator port's work in a process that does
** not host the node of a replicated database it has open (a "client
** process": another process on this machine holds the host lock). Its
** writes and linearizable reads go through that host's sidecar.
**
** This file must never write the database or propose anything itself: the
** host decides; a client only asks and reports the answer.
*/
#include "host_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

SQLITE_EXTENSION_INIT3

/*
** A client process (the node is hosted by another process on this
** machine): its transaction goes to the host's sidecar, which commits it
** (or relays it to the leader) with the host's node and this process as
** its origin. The writer then writes its frames itself; the host's
** applier, which needs the write lock this writer holds, finds them there
** ("already applied"), or writes them if this process died first.
*/
/* A client process's gRPC client for its host's sidecar: plaintext ones
** are shared by the process (made once: a channel per call would cost a
** connection per commit); with TLS settings one per call (*owned). */
static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_rpc_client *client_plain;

static void client_plain_free(void)
{
    pthread_mutex_lock(&client_mu);
    rl_rpc_client_free(client_plain);
    client_plain = NULL;
    pthread_mutex_unlock(&client_mu);
}

rl_rpc_client *rl_host_client_get(const rl_identity *id, int *owned, char *err,
                                  size_t errlen)
{
    rl_rpc_client *cl;
    *owned = 0;
    if (id->tls_cert[0] || id->tls_ca[0]) {
        rl_rpc_tls tls;
        memset(&tls, 0, sizeof tls);
        tls.ca_file = id->tls_ca[0] ? id->tls_ca : NULL;
        if (id->tls_client_auth) {
            tls.cert_file = id->tls_cert;
            tls.key_file = id->tls_key;
        }
        *owned = 1;
        return rl_rpc_client_new(&tls, 0, err, errlen);
    }
    pthread_mutex_lock(&client_mu);
    if (!client_plain) {
        client_plain = rl_rpc_client_new(NULL, 0, err, errlen);
        if (client_plain)
            atexit(client_plain_free);
    }
    cl = client_plain;
    pthread_mutex_unlock(&client_mu);
    return cl;
}

static int commit_via_host(const char *db_path, const char *grpc,
                           const uint8_t *buf, size_t n, rl_commit_info *ci,
                           char *err, size_t errlen)
{
    static uint64_t next_txn;
    rl_identity id;
    rl_rpc_client *cl;
    rl_forward_txn f;
    uint64_t index = 0;
    int outcome = RL_OUTCOME_NOT_APPLIED, rc, owned = 0;
    char e[512], who[300];
    if (rl_identity_read(db_path, &id, e, sizeof e) != 0) {
        snprintf(err, errlen,
                 "%s is hosted by another process but its node identity "
                 "cannot be read (%s); nothing was written",
                 db_path, e);
        return SQLITE_READONLY;
    }
    cl = rl_host_client_get(&id, &owned, e, sizeof e);
    if (!cl) {
        snprintf(err, errlen, "cannot make a gRPC client for the host: %s", e);
        return SQLITE_READONLY;
    }
    memset(&f, 0, sizeof f);
    f.payload = buf;
    f.len = n;
    f.base = ci->base;
    f.origin_node = rl_raft_id_of(id.node_id);
    f.origin_txn = __atomic_add_fetch(&next_txn, 1, __ATOMIC_RELAXED);
    f.origin_pid = (uint32_t)getpid();
    snprintf(who, sizeof who, "the host of node %s", id.node_id);
    rc = rl_host_forward_send(cl, who, grpc, &f, &index, &outcome, err, errlen);
    if (owned)
        rl_rpc_client_free(cl);
    rl_host_writer.outcome = outcome;
    if (rc == SQLITE_OK)
        ci->index = index;
    return rc;
}

/* The port's commit in a client process whose host serves gRPC at grpc. */
int rl_host_client_commit(const char *db_path, const char *grpc,
                          const rl_txn *txn, rl_commit_info *ci, char *err,
                          size_t errlen)
{
    size_t n = rl_txn_encoded_size(txn);
    uint8_t *buf = n ? malloc(n) : NULL;
    int rc;
    if (!buf || rl_txn_encode(txn, buf, n) != 0) {
        free(buf);
        snprintf(err, errlen, "cannot encode a %zu-byte transaction", n);
        return SQLITE_IOERR_NOMEM;
    }
    rc = commit_via_host(db_path, grpc, buf, n, ci, err, errlen);
    free(buf);
    return rc;
}

/* The port's begin in a client process: wait for what the leader already
** committed, as a follower's writer does. A host that leads posts its L
** on its board (raftd/node/board.c) before any of its writers hears of
** it: the client reads it there, as the host's own writer would from its
** node, with no call. Otherwise it asks through its host. */
int rl_host_client_begin(const char *db_path, uint64_t applied)
{
    long pid = 0;
    char grpc[512] = "", e[256], board[PATH_MAX];
    rl_identity id;
    rl_rpc_client *cl;
    struct rl_node_board b;
    int owned = 0, behind = 0;
    if (!rl_host_running(db_path, &pid, grpc, sizeof grpc) || !grpc[0])
        return SQLITE_OK; /* no host: the commit says why */
    if (rl_host_path(board, sizeof board, db_path, "-raft/board") == 0 &&
        rl_node_board_read(board, &b) == 0 && b.state == RL_STATE_LEADER) {
        rl_host_writer.target = 0;
        return applied < b.L ? SQLITE_BUSY : SQLITE_OK;
    }
    if (rl_identity_read(db_path, &id, e, sizeof e) == 0 &&
        (cl = rl_host_client_get(&id, &owned, e, sizeof e)) != NULL) {
        behind = rl_host_behind_leader(cl, grpc, applied);
        if (owned)
            rl_rpc_client_free(cl);
    }
    return behind ? SQLITE_BUSY : SQLITE_OK;
}

/* The port's read point in a client process: through its host; the VFS
** then waits for the file to reach it. */
int rl_host_client_read_point(const char *db_path, uint64_t *wait_index,
                              char *err, size_t errlen)
{
    uint64_t index = 0;
    int rc;
    char e[512] = "";
    long pid = 0;
    char grpc[512] = "";
    rl_identity id;
    rl_rpc_client *cl;
    int owned = 0;
    if (!rl_host_running(db_path, &pid, grpc, sizeof grpc) || !grpc[0] ||
        rl_identity_read(db_path, &id, e, sizeof e) != 0 ||
        (cl = rl_host_client_get(&id, &owned, e, sizeof e)) == NULL) {
        snprintf(err, errlen, "no process hosts its node now%s%s",
                 e[0] ? ": " : "", e);
        return SQLITE_BUSY;
    }
    /* One call: the host answers from its read barrier when it leads,
    ** else from a round it asks the leader for (shared with its other
    ** readers: RL_READ_RELAY). */
    rc = rl_cluster_read_hint(cl, grpc, READ_POINT_MS, RL_READ_RELAY, &index,
                              NULL, e, sizeof e);
    if (owned)
        rl_rpc_client_free(cl);
    if (rc != 0) {
        snprintf(err, errlen, "no read point from its host (gRPC %s): %s", grpc,
                 e);
        return SQLITE_BUSY;
    }
    *wait_index = index;
    return SQLITE_OK;
}
