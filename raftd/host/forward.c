/*
** raftd/host/forward.c -- a writer's way to the leader when its process
** does not lead: whether it must first wait for the leader's last
** decision (rl_host_follower_behind: ReadIndex hint_only; a client
** process's remembered L), and sending its
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
** rl_host_follower_behind). */
#define NUDGE_MS 200

/*
** A node whose writer learnt that the leader is ahead of what this node's
** log decided has not heard of those commits yet, and would only with the
** leader's next heartbeat (up to 100 ms, while SQLite's busy handler
** sleeps in steps of up to 50 ms). A barrier read point makes the leader
** replicate an entry now, which carries its commit index: the node
** applies within a round trip (an ordinary read index no longer does:
** the leader confirms those with a round of questions, raftd/node/
** confirm.c, that replicates nothing). Its answer is not needed, and a writer
** holds the write lock meanwhile (which the node's applier needs): a
** leader that cannot confirm within NUDGE_MS is left to its heartbeat.
*/
static void nudge_leader(rl_rpc_client *cl, const char *leader_grpc)
{
    uint64_t ri = 0;
    char e[256];
    rl_cluster_read_hint(cl, leader_grpc, NUDGE_MS, RL_READ_BARRIER, &ri, NULL,
                         e, sizeof e);
}

/*
** The ask's answer L against what the writer's file has (applied), where
** local_L is what this node's own log already decided: 1 (wait: the busy
** handler retries, and compares with the remembered L only) or 0.
*/
static int behind_L(uint64_t L, uint64_t local_L, uint64_t applied, int64_t now)
{
    if (L < local_L)
        L = local_L;
    if (applied >= L)
        return 0;
    rl_host_writer.target = L;
    rl_host_writer.target_at = now;
    return 1;
}

/* The L a writer of this thread remembers from its last ask, while it
** still holds: 1 (wait), 0 (reached: go), -1 (none: look further). */
static int behind_target(uint64_t applied, int64_t now)
{
    if (rl_host_writer.target &&
        now - rl_host_writer.target_at < TARGET_KEEP_MS) {
        if (applied < rl_host_writer.target)
            return 1;
        rl_host_writer.target = 0;
        return 0;
    }
    rl_host_writer.target = 0;
    return -1;
}

/*
** Whether a client process's writer must wait before its write lock: its
** base (applied) is behind the L its host answered (for a host that does
** not lead, the leader's L, or its own when its write lease covers it).
** The first ask of a write lock costs one round trip; the busy handler's
** retries compare with the remembered L only (rl_host_behind_kept: 1
** wait, 0 go, -1 ask), then rl_host_behind_answer judges the L asked (0
** when the host could not be asked: its commit decides).
*/
int rl_host_behind_kept(uint64_t applied)
{
    return behind_target(applied, rl_rpc_now_ms());
}

int rl_host_behind_answer(uint64_t L, uint64_t applied)
{
    return behind_L(L, 0, applied, rl_rpc_now_ms());
}

/*
** Whether this node's write lease (raftd/node/lease.c) shows that the
** writer's file has every write acknowledged anywhere, so that it needs no
** ask: the lease is live, from the leader and term this node follows now,
** and not in its second half (the writer then asks, which renews it); and
** the file reflects every entry of this node's log, which holds every
** write the leader acknowledged since it granted the lease. What was
** acknowledged before is up to lease_L: *need is the index a writer's
** file must have reached (that, or the file's own last change). st is
** this node's status, read before.
*/
static int lease_covers(rl_host *h, const struct rl_node_status *st,
                        uint64_t *need)
{
    int64_t now = rl_rpc_now_ms();
    uint64_t covered;
    int live;
    pthread_mutex_lock(&h->mu);
    live = now < h->lease_until && st->leader_id == h->lease_leader &&
           st->term == h->lease_term;
    /* Every entry the FSM applied is in the file once the applier has
    ** the last one it was handed; every entry up to the last write this
    ** host acknowledged is, once the file has that one (*need). */
    covered = h->own_index;
    if (h->applied >= st->fsm_index && st->fsm_applied > covered)
        covered = st->fsm_applied;
    *need = h->db_index > h->lease_L ? h->db_index : h->lease_L;
    if (h->own_index > *need)
        *need = h->own_index;
    pthread_mutex_unlock(&h->mu);
    return live && covered >= st->last_index;
}

/* Keeps the lease the leader granted for lease_ms from sent_at (when the
** ask left; the leader counts from its grant, later). Only its first half
** is trusted: a writer asks again in the second, which renews it, and the
** rest is ample margin for clocks that drift. */
static void lease_keep(rl_host *h, const struct rl_node_status *st,
                       int64_t sent_at, unsigned lease_ms, uint64_t L)
{
    pthread_mutex_lock(&h->mu);
    if (lease_ms) {
        h->lease_until = sent_at + lease_ms / 2;
        h->lease_leader = st->leader_id;
        h->lease_term = st->term;
        h->lease_L = L;
    } else {
        h->lease_until = 0;
    }
    pthread_mutex_unlock(&h->mu);
}

/*
** Whether a follower's writer must wait before its write lock: its base
** (applied) is behind the L the leader had when the writer first asked.
** A live write lease that covers the file answers with no call
** (lease_covers); otherwise the writer asks the leader (ReadIndex
** hint_only, no quorum; it asks for a lease with it), and a second time
** when this node is behind (nudge_leader). The busy handler's retries
** compare with the remembered L only. A leader that cannot be asked is not
** held against the writer: its commit decides. leader_grpc is NULL when
** the leader's address is not known.
*/
int rl_host_follower_behind(rl_host *h, const struct rl_node_status *st,
                            const char *leader_grpc, uint64_t applied)
{
    int64_t now = rl_rpc_now_ms();
    uint64_t ci = 0, L = 0, need = 0;
    unsigned lease_ms = 0;
    int b = behind_target(applied, now);
    char e[256];
    if (b >= 0)
        return b;
    if (lease_covers(h, st, &need))
        return behind_L(need, 0, applied, now);
    if (!h->cl || !leader_grpc ||
        rl_cluster_lease_hint(h->cl, leader_grpc, 1000, h->raft_id, &ci, &L,
                              &lease_ms, e, sizeof e) != 0)
        L = 0;
    else
        lease_keep(h, st, now, lease_ms, L);
    if (L > st->L && applied < L)
        nudge_leader(h->cl, leader_grpc);
    return behind_L(L, st->L, applied, now);
}

/* rl_host_leader_L (host.h): a client process's hint, answered by its
** host (cluster_rpc.c serve_read_index with relay). A host that does not
** lead answers from its write lease when that covers its file, else asks
** the leader (for a lease too); learning that the leader is ahead of its
** own log, it nudges the leader for its client, as a follower's writer
** does for itself. */
int rl_host_leader_L(rl_host *h, unsigned tmo, uint64_t *commit, uint64_t *L,
                     char *err, size_t errlen)
{
    struct rl_node_status st;
    struct rl_meta m;
    int64_t sent_at;
    unsigned lease_ms = 0;
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
    if (lease_covers(h, &st, L))
        return 0;
    sent_at = rl_rpc_now_ms();
    if (rl_host_leader_meta(h, &st, &m, err, errlen) != 0 ||
        rl_cluster_lease_hint(h->cl, m.grpc_addr, tmo, h->raft_id, commit, L,
                              &lease_ms, err, errlen) != 0)
        return -1;
    lease_keep(h, &st, sent_at, lease_ms, *L);
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
    return rl_host_outcome_rc(*outcome);
}

int rl_host_outcome_rc(int outcome)
{
    switch (outcome) {
    case RL_OUTCOME_APPLIED:
        return SQLITE_OK;
    case RL_OUTCOME_CONFLICT:
        return SQLITE_BUSY_SNAPSHOT;
    case RL_OUTCOME_UNKNOWN:
        return SQLITE_IOERR;
    default: /* not leader any more, full, timeout: nothing written */
        return SQLITE_BUSY;
    }
}
