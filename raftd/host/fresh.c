/*
** raftd/host/fresh.c -- answers that must be as fresh as the cluster: the
** read point of a linearizable read (the port's read_point), and the
** confirmation that a write transaction which changed no page answered
** from the latest state (DESIGN 8).
**
** This file must never let an answer through on a guess: when the node
** cannot prove with a quorum (or the leader's word) that nothing newer
** took effect, the caller is refused with the reason.
*/
#include "host_int.h"

#include <stdio.h>
#include <string.h>

SQLITE_EXTENSION_INIT3

/*
** rl_host_write_done (host.h; the sidecar's write_done hook), on the
** writer's thread after
** its COMMIT returned rc. A transaction that went through Raft reports the
** replicator's verdict. One that changed no page never reached Raft, yet
** its answer (rows affected, values read) came from this node's file: it
** is acknowledged only after a read index proves this node still leads and
** no entry took effect after the index it read (DESIGN 8).
*/
int rl_host_write_done(rl_host *h, int rc, int64_t remaining_ms, char *why,
                       size_t whylen)
{
    int began = rl_host_writer.began, committed = rl_host_writer.committed;
    uint64_t base = rl_host_writer.base;
    unsigned tmo;
    rl_host_writer.began = rl_host_writer.committed = 0;
    why[0] = 0;
    if (committed) {
        if (rc == SQLITE_OK)
            return RL_OUTCOME_APPLIED;
        if (rl_host_writer.outcome == RL_OUTCOME_APPLIED) {
            snprintf(why, whylen,
                     "the transaction took effect in the Raft log but this "
                     "node's commit of it failed (the applier writes it)");
            return RL_OUTCOME_APPLIED;
        }
        snprintf(why, whylen, "%s", rl_host_writer.why);
        return rl_host_writer.outcome;
    }
    if (rc != SQLITE_OK)
        return RL_OUTCOME_NOT_APPLIED; /* SQLite's own reason applies */
    tmo = remaining_ms > COMMIT_TIMEOUT_MS ? COMMIT_TIMEOUT_MS
          : remaining_ms > 0               ? (unsigned)remaining_ms
                                           : 1;
    return rl_host_fresh_confirm(h, began, base, tmo, why, whylen);
}

/*
** A write transaction that changed nothing answered from this node's file:
** RL_OUTCOME_APPLIED only if a read index proves the node still leads and
** no entry took effect after base (the index its write lock saw; began 0:
** unknown, the index the file reflects is taken).
*/
int rl_host_fresh_confirm(rl_host *h, int began, uint64_t base, unsigned tmo,
                          char *why, size_t whylen)
{
    struct rl_result res;
    struct rl_node_status st;
    int nrc;
    char who[600];
    if (!h->node)
        return RL_OUTCOME_APPLIED;
    if (!began) { /* no base recorded: the index the file reflects */
        pthread_mutex_lock(&h->mu);
        base = h->db_index;
        pthread_mutex_unlock(&h->mu);
    }
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER && st.leader_id != 0 &&
        st.leader_id != st.raft_id) {
        /* A follower: the leader's read point, and its L then. Nothing
        ** took effect after base as of a moment after the transaction
        ** began: its answer is as fresh as a linearizable read. */
        struct rl_meta m;
        uint64_t index = 0, L = 0;
        char e[512] = "";
        if (h->cl &&
            rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK &&
            m.grpc_addr[0] &&
            rl_cluster_read_index(h->cl, m.grpc_addr, tmo, &index, &L, e,
                                  sizeof e) == 0) {
            if (L > base) {
                snprintf(why, whylen,
                         "conflict: index %llu took effect after the "
                         "transaction read the database at index %llu; "
                         "nothing was written: retry the transaction",
                         (unsigned long long)L, (unsigned long long)base);
                return RL_OUTCOME_CONFLICT;
            }
            return RL_OUTCOME_APPLIED;
        }
        rl_host_leader_text(h, who, sizeof who);
        snprintf(why, whylen,
                 "the transaction changed nothing, and follower %s could not "
                 "get a read point from the leader (%s) to prove its answer "
                 "is fresh; nothing was written: retry (%s)",
                 h->id.node_id, e[0] ? e : "no gRPC address known", who);
        return RL_OUTCOME_NOT_LEADER;
    }
    memset(&res, 0, sizeof res);
    nrc = rl_node_read_index(h->node, tmo, &res);
    if (nrc != RL_NODE_OK) {
        rl_host_leader_text(h, who, sizeof who);
        snprintf(why, whylen,
                 "not the leader: the transaction changed nothing, and node "
                 "%s could not prove it still leads (%s%s%s); nothing was "
                 "written: retry on the leader (%s)",
                 h->id.node_id, rl_node_strerror(nrc), res.msg[0] ? ": " : "",
                 res.msg, who);
        return RL_OUTCOME_NOT_LEADER;
    }
    rl_node_status(h->node, &st);
    if (st.L > base) {
        snprintf(why, whylen,
                 "conflict: index %llu took effect after the transaction "
                 "read the database at index %llu; nothing was written: "
                 "retry the transaction",
                 (unsigned long long)st.L, (unsigned long long)base);
        return RL_OUTCOME_CONFLICT;
    }
    return RL_OUTCOME_APPLIED;
}

/*
** rl_port.read_point (DESIGN 8): a quorum-confirmed commit index taken
** after the read began (the leader's raft barrier, shared by the reads
** waiting at that moment; a follower asks the leader's ReadIndex), then
** wait until this node's file reflects it. Each step is bounded: the
** VFS refuses the read and the busy handler retries, so a node cut off
** from a quorum answers "database is locked" with the reason, never data
** older than a write acknowledged anywhere.
*/
#define READ_POINT_MS 2000
int rl_host_read_point(rl_host *h, uint64_t *wait_index, char *err,
                       size_t errlen)
{
    struct rl_node_status st;
    struct rl_result res;
    uint64_t index = 0;
    int rc;
    char e[512] = "", who[600];
    *wait_index = 0;
    if (!h->node) {
        snprintf(err, errlen, "its node is not running in this process");
        return SQLITE_BUSY;
    }
    rl_node_status(h->node, &st);
    if (st.state == RL_STATE_LEADER) {
        memset(&res, 0, sizeof res);
        rc = rl_node_read_index(h->node, READ_POINT_MS, &res);
        if (rc != RL_NODE_OK) {
            snprintf(err, errlen,
                     "node %s could not confirm with a quorum that it still "
                     "leads (%s%s%s)",
                     h->id.node_id, rl_node_strerror(rc),
                     res.msg[0] ? ": " : "", res.msg);
            return SQLITE_BUSY;
        }
        index = res.index;
    } else {
        struct rl_meta m;
        if (st.leader_id == 0 || st.leader_id == st.raft_id ||
            rl_node_meta(h->node, st.leader_id, NULL, &m) != RL_NODE_OK ||
            !m.grpc_addr[0] || !h->cl) {
            rl_host_leader_text(h, who, sizeof who);
            snprintf(err, errlen, "node %s is a %s and %s", h->id.node_id,
                     st.state == RL_STATE_FOLLOWER ? "follower" : "candidate",
                     who);
            return SQLITE_BUSY;
        }
        if (rl_cluster_read_index(h->cl, m.grpc_addr, READ_POINT_MS, &index,
                                  NULL, e, sizeof e) != 0) {
            snprintf(err, errlen,
                     "no read point from the leader %s (gRPC %s): %s",
                     m.node_id, m.grpc_addr, e);
            return SQLITE_BUSY;
        }
    }
    rc = rl_node_wait_applied(h->node, index, READ_POINT_MS);
    if (rc != RL_NODE_OK) {
        snprintf(err, errlen,
                 "node %s has not applied index %llu, the read point, within "
                 "%d ms (%s)",
                 h->id.node_id, (unsigned long long)index, READ_POINT_MS,
                 rl_node_strerror(rc));
        return SQLITE_BUSY;
    }
    return SQLITE_OK;
}
