/*
** raftd/host/forward.c -- a writer's way to the leader when its process
** does not lead: whether it must first wait for the leader's last
** decision (rl_host_behind_leader: ReadIndex hint_only), and sending its
** transaction to the leader's, or its host's, sidecar (rl_host_forward_send:
** ForwardTxn), with the answer mapped to the writer's SQLite code.
**
** Used by the replicator (a follower's writer) and by client.c (a client
** process's writer). It must never propose to the node nor write to the
** database: the leader proposes, the writer's commit frame or the applier
** writes.
*/
#include "host_int.h"

#include <stdio.h>

SQLITE_EXTENSION_INIT3

/*
** What the writer's thread learnt about its current write transaction, for
** the sidecar's write_done hook (rl_host_write_done): the applied index its
** write lock saw and the commit's verdict with its reason. SQLite itself
** only reports "disk I/O error" for a refused commit.
*/
_Thread_local struct rl_writer_state rl_host_writer;

/* How long a remembered target stays the one to wait for. */
#define TARGET_KEEP_MS 2000
/* How long a writer that is behind waits for the leader's barrier (see
** rl_host_behind_leader). */
#define NUDGE_MS 200

/*
** A node whose writer learnt that the leader is ahead of what this node's
** log decided has not heard of those commits yet, and would only with the
** leader's next heartbeat (up to 100 ms, while SQLite's busy handler
** sleeps in steps of up to 50 ms). A read index makes the leader
** replicate a barrier now, which carries its commit index: the node
** applies within a round trip. Its answer is not needed, and a writer
** holds the write lock meanwhile (which the node's applier needs): a
** leader that cannot confirm within NUDGE_MS is left to its heartbeat.
*/
static void nudge_leader(rl_rpc_client *cl, const char *leader_grpc)
{
    uint64_t ri = 0;
    char e[256];
    rl_cluster_read_hint(cl, leader_grpc, NUDGE_MS, 0, &ri, NULL, e, sizeof e);
}

/*
** Whether a writer on a node that is not the leader (a follower, or a
** client process through its host at target_grpc: via_host) must wait
** before its
** write lock: its base (applied) is behind the L the leader had when the
** writer first asked. The first ask of a write lock costs one round trip
** (ReadIndex hint_only, no quorum), and a second one when this node is
** behind (nudge_leader; for a client process, its host nudges); the busy
** handler's retries compare with the remembered L only. A leader that cannot be
*asked is not held against
** the writer: its commit decides.
*/
int rl_host_behind_leader(rl_rpc_client *cl, const char *target_grpc,
                          int via_host, uint64_t local_L, uint64_t applied)
{
    int64_t now = rl_rpc_now_ms();
    uint64_t ci = 0, L = 0;
    char e[256];
    if (rl_host_writer.target &&
        now - rl_host_writer.target_at < TARGET_KEEP_MS) {
        if (applied < rl_host_writer.target)
            return 1;
        rl_host_writer.target = 0;
        return 0;
    }
    rl_host_writer.target = 0;
    if (!cl || !target_grpc ||
        rl_cluster_read_hint(cl, target_grpc, 1000,
                             RL_READ_HINT | (via_host ? RL_READ_RELAY : 0), &ci,
                             &L, e, sizeof e) != 0)
        L = 0;
    if (!via_host && L > local_L && applied < L)
        nudge_leader(cl, target_grpc);
    if (L < local_L)
        L = local_L; /* what this node's own log already decided */
    if (applied >= L)
        return 0;
    rl_host_writer.target = L;
    rl_host_writer.target_at = now;
    return 1;
}

/* rl_host_leader_L (host.h): a client process's hint, answered by its
** host (cluster_rpc.c serve_read_index with relay). A host that does not
** lead and learns that the leader is ahead of its own log nudges the
** leader for its client, as a follower's writer does for itself. */
int rl_host_leader_L(rl_host *h, unsigned tmo, uint64_t *commit, uint64_t *L,
                     char *err, size_t errlen)
{
    struct rl_node_status st;
    struct rl_meta m;
    if (!h->node) {
        snprintf(err, errlen, "its node is not running in this process");
        return -1;
    }
    rl_node_status(h->node, &st);
    *commit = st.commit_index;
    if (st.state == RL_STATE_LEADER) {
        *L = st.L;
        return 0;
    }
    if (rl_host_leader_meta(h, &st, &m, err, errlen) != 0 ||
        rl_cluster_read_hint(h->cl, m.grpc_addr, tmo, RL_READ_HINT, commit, L,
                             err, errlen) != 0)
        return -1;
    if (*L > st.L)
        nudge_leader(h->cl, m.grpc_addr);
    return 0;
}

/*
** Sends f to the sidecar at target (the leader's, or this node's host's
** for a client process) and maps the answer to the writer's SQLite code:
** SQLITE_OK when it took effect as *index; *outcome is RL_OUTCOME_*.
** who names the receiver in messages.
*/
int rl_host_forward_send(rl_rpc_client *cl, const char *who, const char *target,
                         const rl_forward_txn *f, uint64_t *index, int *outcome,
                         char *err, size_t errlen)
{
    int sent = 0;
    char e[1024];
    *index = 0;
    if (rl_cluster_forward_txn(cl, target, f, COMMIT_TIMEOUT_MS, outcome, index,
                               &sent, e, sizeof e) != 0) {
        if (*outcome == RL_OUTCOME_NOT_APPLIED) {
            snprintf(err, errlen,
                     "%s (gRPC %s) did not take the transaction: %s; nothing "
                     "was written: retry",
                     who, target, e);
            return SQLITE_BUSY;
        }
        snprintf(err, errlen,
                 "outcome unknown: the transaction was sent to %s (gRPC %s) "
                 "but no answer came back (%s); it may still commit (every "
                 "node will then apply it): check before retrying",
                 who, target, e);
        return SQLITE_IOERR;
    }
    if (*outcome == RL_OUTCOME_APPLIED)
        return SQLITE_OK;
    snprintf(err, errlen, "%s", e);
    switch (*outcome) {
    case RL_OUTCOME_CONFLICT:
        return SQLITE_BUSY_SNAPSHOT;
    case RL_OUTCOME_UNKNOWN:
        return SQLITE_IOERR;
    default: /* not leader any more, full, timeout: nothing written */
        return SQLITE_BUSY;
    }
}
