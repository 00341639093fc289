/*
** raftd/host/replicator.c -- the replicator port of hosted databases (vfs.h
** rl_port): a local writer's begin, commit and end. The leader proposes its
** own writers' transactions; a follower forwards them to the leader's
** sidecar (ForwardTxn, through forward.c), and the leader proposes those it
*receives
** (rl_host_propose_txn).
**
** Write path: a local writer commits (VFS capture) -> port_commit proposes
** the transaction as a TXN entry with the writer's base -> the FSM decides
** (effective iff base == L) -> only then may the commit frame reach the
** file, and the VFS records the index; port_end(ticket) says whether it
** did. The port's ctx is its database's slot (host.c rl_host_port), which
** names the host of this process serving it, if any: no lookup by path.
**
** Invariants relied on:
**   - at most one local writer per database holds the write lock, so at
**     most one proposal of this process is in flight per database;
**   - an entry this process proposed is applied by the applier unless its
**     writer says (port end(), ok = 1) that its commit frame reached the
**     file: an entry is never written twice, never skipped.
** This file must never write to the database: the writer's own commit
** frame does, or the applier (applier.c).
*/
#include "host_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

SQLITE_EXTENSION_INIT3

/* ---------------------------------------------------------- local txns */

struct local_txn *rl_host_local_find(rl_host *h, uint64_t origin_txn)
{
    for (struct local_txn *t = h->local; t; t = t->next)
        if (t->origin_txn == origin_txn)
            return t;
    return NULL;
}

void rl_host_local_drop(rl_host *h, struct local_txn *lt)
{
    for (struct local_txn **pp = &h->local; *pp; pp = &(*pp)->next)
        if (*pp == lt) {
            *pp = lt->next;
            free(lt);
            return;
        }
}

/* --------------------------------------------------------------- port */

/* The host a port serves (its ctx, host.c rl_host_port), or NULL when no
** host of this process runs its database now: then the port works as a
** client process's does (client.c). */
static rl_host *port_host(void *ctx)
{
    return rl_host_port_host(ctx);
}

static int port_begin(void *ctx, const char *db_path, uint64_t applied)
{
    rl_host *h = port_host(ctx);
    struct rl_node_status st;
    rl_host_writer.began = 1;
    rl_host_writer.base = applied;
    rl_host_writer.committed = 0;
    if (!h)
        return rl_host_client_begin(db_path, applied);
    if (!h->node)
        return SQLITE_OK;
    /* A writer whose base is behind what the log already decided is
    ** doomed (its entry could never take effect): let the applier catch
    ** up first (the busy handler retries). */
    rl_node_status(h->node, &st);
    if (st.state == RL_STATE_LEADER || st.leader_id == 0 ||
        st.leader_id == st.raft_id)
        return applied < st.L ? SQLITE_BUSY : SQLITE_OK;
    {
        /* A follower learns a commit only with the leader's next message:
        ** a transaction begun now on a base the leader already passed
        ** would conflict with a write that finished before it began.
        ** Wait for the leader's L (rl_host_follower_behind). Its own log
        ** cannot tell: an entry the leader committed with the other
        ** followers may not have reached this node yet (measured: a
        ** leader's write acknowledged to its shell, then a follower's
        ** write begun at once, found the follower's log without it). */
        struct rl_meta m;
        int known =
            rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK &&
            m.grpc_addr[0];
        return rl_host_follower_behind(h, &st, known ? m.grpc_addr : NULL,
                                       applied)
                   ? SQLITE_BUSY
                   : SQLITE_OK;
    }
}

/*
** Whether the leader's Raft log has room for an entry of n bytes: raft_uv
** 0.15 writes its log no more after one failed segment write (ENOSPC
** included) until the node reopens it (node.c, "Log reload"), and the
** leader loses its leadership meanwhile, so it refuses a write that could
** make it fail: the writer gets a clean SQLITE_FULL instead.
** Room means the entry plus two open segments (raft_uv prepares the next
** segment ahead with fallocate). A filesystem that cannot be asked
** (statvfs fails) is not held against the write.
*/
static int log_has_room(rl_host *h, size_t n, char *err, size_t errlen)
{
    struct statvfs sv;
    uint64_t free_b, need = (uint64_t)n + 2u * HOST_SEGMENT_SIZE;
    if (statvfs(h->dir, &sv) != 0)
        return 1;
    free_b = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (free_b >= need)
        return 1;
    snprintf(err, errlen,
             "the disk is full: %s has %llu KiB free, below the %llu KiB "
             "the Raft log needs for this transaction; nothing was written "
             "(free space, then retry)",
             h->dir, (unsigned long long)(free_b / 1024),
             (unsigned long long)((need + 1023) / 1024));
    return 0;
}

/*
** What a proposal's result means for the writer that made it: an SQLite
** code (SQLITE_OK: it took effect) with err, and *outcome (RL_OUTCOME_*).
** Shared by the leader's own writers and the transactions followers
** forward (rl_host_propose_txn), so both say the same thing.
*/
static int proposal_result(rl_host *h, int rc, const struct rl_result *res,
                           uint64_t base, int *outcome, char *err,
                           size_t errlen)
{
    char who[600];
    if (rc == RL_NODE_OK && res->effective) {
        *outcome = RL_OUTCOME_APPLIED;
        return SQLITE_OK;
    }
    *outcome = RL_OUTCOME_NOT_APPLIED;
    switch (rc) {
    case RL_NODE_OK:
        *outcome = RL_OUTCOME_CONFLICT;
        snprintf(err, errlen,
                 "conflict: entry %llu did not take effect because another "
                 "transaction committed first (this one read index %llu); "
                 "nothing was written: retry the transaction",
                 (unsigned long long)res->index, (unsigned long long)base);
        return SQLITE_BUSY_SNAPSHOT;
    case RL_NODE_NOTLEADER:
        *outcome = RL_OUTCOME_NOT_LEADER;
        rl_host_leader_text(h, who, sizeof who);
        snprintf(err, errlen,
                 "not the leader any more (%s); nothing was written: retry "
                 "on the leader",
                 who);
        return SQLITE_READONLY;
    case RL_NODE_UNKNOWN:
        *outcome = RL_OUTCOME_UNKNOWN;
        snprintf(err, errlen,
                 "outcome unknown: %s after the transaction was appended to "
                 "the Raft log; it may still commit (every node will then "
                 "apply it): check before retrying",
                 res->msg[0] ? res->msg : "leadership was lost");
        return SQLITE_IOERR; /* outcome unknown: never a retryable code */
    case RL_NODE_TIMEOUT:
        snprintf(err, errlen,
                 "the Raft node did not take the transaction within %d ms; "
                 "nothing was written",
                 COMMIT_TIMEOUT_MS);
        return SQLITE_BUSY; /* nothing written: a retry can succeed */
    case RL_NODE_SHUTDOWN:
        *outcome = RL_OUTCOME_UNKNOWN;
        snprintf(err, errlen,
                 "the node is stopping: outcome unknown (it commits only if "
                 "it reached a quorum)");
        return SQLITE_IOERR;
    default:
        snprintf(err, errlen, "raft refused the transaction: %s",
                 res->msg[0] ? res->msg : rl_node_strerror(rc));
        return SQLITE_IOERR;
    }
}

/* Registers a transaction of this process's writer as proposing: the
** applier leaves its entry to that writer (port_end settles it). */
static struct local_txn *local_add(rl_host *h)
{
    struct local_txn *lt = calloc(1, sizeof *lt);
    if (!lt)
        return NULL;
    pthread_mutex_lock(&h->mu);
    lt->origin_txn = ++h->next_txn;
    lt->state = LT_PROPOSING;
    lt->next = h->local;
    h->local = lt;
    pthread_mutex_unlock(&h->mu);
    return lt;
}

/* The writer's proposal ended: index if it took effect (the writer writes
** its frames; port_end settles it), else not written by this writer. If
** the entry surely is not in the log (definite), forget it now; if it may
** be, it reaches the applier, which applies it if it took effect (outcome
** unknown) or skips it. */
static void local_settle(rl_host *h, struct local_txn *lt, uint64_t index,
                         int definite)
{
    pthread_mutex_lock(&h->mu);
    if (index) {
        lt->index = index;
    } else {
        lt->state = LT_NOT_WRITTEN;
        if (definite)
            rl_host_local_drop(h, lt);
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/*
** A follower's writer: its transaction goes to the leader's sidecar
** (ForwardTxn), which proposes it with this node, process and transaction
** as its origin, and answers once it took effect. The writer then writes
** its frames at once, without waiting for this node's FSM, which learns
** the commit only with the leader's next message (up to a heartbeat, 100
** ms, later). That is safe: the entry is committed on a quorum, so every
** future leader has it and this node will apply it with the same verdict
** (effective); no entry between the writer's base and it took effect (its
** verdict says so), so the applier has nothing to write in between; and a
** file ahead of its node's FSM is what every restart looks like already
** (host_apply skips entries the file has). The applier, reaching the
** entry, finds it written (or waits for the writer, as on the leader).
*/

static int commit_forward(rl_host *h, const struct rl_node_status *st,
                          const uint8_t *buf, size_t n, rl_commit_info *ci,
                          char *err, size_t errlen)
{
    struct rl_meta leader;
    struct local_txn *lt;
    rl_forward_txn f;
    uint64_t index = 0;
    int outcome, rc;
    char who[300];
    if (rl_node_meta(h->node, st->leader_id, NULL, &leader) != RL_NODE_OK ||
        !leader.grpc_addr[0]) {
        snprintf(err, errlen,
                 "not the leader, and the leader (raft id %llu at %s) has no "
                 "gRPC address known here yet; nothing was written: retry",
                 (unsigned long long)st->leader_id, st->leader_addr);
        rl_host_writer.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_BUSY;
    }
    if (!h->cl) {
        snprintf(err, errlen,
                 "not the leader, and this node has no gRPC client to "
                 "forward the transaction with; nothing was written: write "
                 "on the leader");
        rl_host_writer.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_READONLY;
    }
    lt = local_add(h);
    if (!lt) {
        snprintf(err, errlen, "out of memory");
        return SQLITE_IOERR_NOMEM;
    }
    memset(&f, 0, sizeof f);
    f.payload = buf;
    f.len = n;
    f.base = ci->base;
    f.origin_node = h->raft_id;
    f.origin_txn = lt->origin_txn;
    f.origin_pid = (uint32_t)getpid();
    snprintf(who, sizeof who, "the leader %s", leader.node_id);
    rc = rl_host_forward_send(h->cl, who, leader.grpc_addr, &f, &index,
                              &outcome, err, errlen);
    rl_host_writer.outcome = outcome;
    if (rc == SQLITE_OK) {
        local_settle(h, lt, index, 0);
        ci->index = index;
        ci->ticket = lt; /* port_end settles it */
    } else {
        local_settle(h, lt, 0, outcome != RL_OUTCOME_UNKNOWN);
    }
    return rc;
}

static int port_commit_run(void *ctx, const char *db_path, const rl_txn *txn,
                           rl_commit_info *ci, char *err, size_t errlen)
{
    rl_host *h = port_host(ctx);
    struct rl_node_status st;
    struct rl_proposal p;
    struct rl_result res;
    struct local_txn *lt;
    void *entry;
    uint8_t *payload;
    size_t n;
    int rc, outcome;
    char who[600];
    rl_identity id;

    if (!h) {
        long pid = 0;
        char grpc[512] = "";
        if (rl_host_running(db_path, &pid, grpc, sizeof grpc))
            return rl_host_client_commit(db_path, pid, grpc, txn, ci, err,
                                         errlen);
    }
    if (!h || !h->node) {
        long pid = 0;
        char grpc[512] = "";
        if (rl_host_running(db_path, &pid, grpc, sizeof grpc))
            snprintf(err, errlen,
                     "%s is hosted by process %ld (gRPC %s); write through "
                     "that node (this process is a client: it reads locally)",
                     db_path, pid, grpc[0] ? grpc : "?");
        else if (rl_identity_read(db_path, &id, who, sizeof who) == 1)
            snprintf(err, errlen,
                     "%s is replicated but no raft node serves it: it has no "
                     "node identity; make it a node with raft_bootstrap(...) "
                     "or raft_join(...)",
                     db_path);
        else
            snprintf(err, errlen,
                     "%s is replicated but no raft node serves it in this "
                     "process (its restart failed: see stderr); fix the "
                     "cause and reopen the database",
                     db_path);
        return SQLITE_READONLY; /* this process may not write it */
    }
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER &&
        (st.leader_id == 0 || st.leader_id == st.raft_id)) {
        rl_host_leader_text(h, who, sizeof who);
        snprintf(err, errlen,
                 "not the leader: node %s is a %s and %s; nothing was "
                 "written: retry once a leader is elected",
                 h->id.node_id,
                 st.state == RL_STATE_FOLLOWER ? "follower" : "candidate", who);
        rl_host_writer.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_BUSY; /* no leader known (an election): waiting helps */
    }
    n = rl_txn_encoded_size(txn);
    if (st.state == RL_STATE_LEADER && !log_has_room(h, n, err, errlen))
        return SQLITE_FULL;
    /* The one copy of the pages between capture and the Raft log: txn
    ** borrows capture's frames (vfs/txn.h rl_txn_build), and rl_txn_encode
    ** writes them straight into the entry that raft will own. Until
    ** rl_node_propose_entry, this function owns entry and frees it on
    ** every path; a follower forwards its payload and frees it unused. */
    entry = n ? rl_node_entry_alloc(n) : NULL;
    if (!entry) {
        if (n > RL_ENTRY_MAX_PAYLOAD) {
            snprintf(err, errlen,
                     "the transaction's %zu bytes exceed the %llu-byte "
                     "limit of a Raft entry; nothing was written",
                     n, (unsigned long long)RL_ENTRY_MAX_PAYLOAD);
            return SQLITE_IOERR;
        }
        snprintf(err, errlen, "out of memory encoding a %zu-byte transaction",
                 n);
        return SQLITE_IOERR_NOMEM;
    }
    payload = rl_node_entry_payload(entry);
    if (rl_txn_encode(txn, payload, n) != 0) {
        rl_node_entry_free(entry);
        snprintf(err, errlen, "cannot encode the transaction");
        return SQLITE_IOERR;
    }
    if (st.state != RL_STATE_LEADER) {
        rc = commit_forward(h, &st, payload, n, ci, err, errlen);
        rl_node_entry_free(entry);
        return rc;
    }
    lt = local_add(h);
    if (!lt) {
        rl_node_entry_free(entry);
        snprintf(err, errlen, "out of memory");
        return SQLITE_IOERR_NOMEM;
    }
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_TXN;
    p.base = ci->base;
    p.origin_txn = lt->origin_txn;
    p.origin_pid = (uint32_t)getpid();
    p.len = n; /* the payload is in entry already */
    /* entry is the node's from here, whatever the answer. */
    rc = rl_node_propose_entry(h->node, &p, entry, COMMIT_TIMEOUT_MS, &res);
    rc = proposal_result(h, rc, &res, ci->base, &outcome, err, errlen);
    rl_host_writer.outcome = outcome;
    if (rc == SQLITE_OK) {
        local_settle(h, lt, res.index, 0);
        ci->index = res.index;
        ci->ticket = lt; /* port_end settles it */
        return SQLITE_OK;
    }
    local_settle(h, lt, 0, outcome != RL_OUTCOME_UNKNOWN);
    return rc;
}

/*
** rl_host_propose_txn (host.h; the sidecar's propose_txn hook): a
** follower's transaction, forwarded with ForwardTxn, proposed here with
** its origin. The payload
** is checked first: an entry that took effect must be applicable on
** every node, so nothing malformed may enter the log.
*/
int rl_host_propose_txn(rl_host *h, const rl_forward_txn *a,
                        int64_t remaining_ms, uint64_t *index, char *why,
                        size_t whylen)
{
    struct rl_proposal p;
    struct rl_result res;
    struct rl_node_status st;
    rl_txn t;
    int rc, outcome;
    unsigned tmo = remaining_ms > COMMIT_TIMEOUT_MS ? COMMIT_TIMEOUT_MS
                   : remaining_ms > 0               ? (unsigned)remaining_ms
                                                    : 1;
    char e[256];
    *index = 0;
    if (!h->node) {
        snprintf(why, whylen, "this node is not running");
        return RL_OUTCOME_NOT_APPLIED;
    }
    if (rl_txn_decode(a->payload, a->len, &t, e, sizeof e) != 0) {
        snprintf(why, whylen,
                 "the forwarded transaction is malformed (%s); nothing was "
                 "written",
                 e);
        return RL_OUTCOME_NOT_APPLIED;
    }
    rl_txn_free(&t);
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER) {
        /* A client process's transaction reached its host, a follower:
        ** relay it to the leader with its origin unchanged. */
        struct rl_meta m;
        rl_forward_txn f;
        char who[300];
        if (st.leader_id == 0 || st.leader_id == st.raft_id ||
            rl_node_meta(h->node, st.leader_id, NULL, &m) != RL_NODE_OK ||
            !m.grpc_addr[0] || !h->cl) {
            rl_host_leader_text(h, who, sizeof who);
            snprintf(why, whylen,
                     "node %s is not the leader and cannot relay to it (%s); "
                     "nothing was written: retry",
                     h->id.node_id, who);
            return RL_OUTCOME_NOT_LEADER;
        }
        f = *a; /* its origin unchanged */
        snprintf(who, sizeof who, "the leader %s", m.node_id);
        rl_host_forward_send(h->cl, who, m.grpc_addr, &f, index, &outcome, why,
                             whylen);
        if (outcome == RL_OUTCOME_APPLIED) {
            pthread_mutex_lock(&h->mu);
            if (*index > h->own_index)
                h->own_index = *index; /* forward.c lease_covers */
            pthread_mutex_unlock(&h->mu);
        }
        return outcome;
    }
    if (!log_has_room(h, a->len, why, whylen))
        return RL_OUTCOME_NOT_APPLIED;
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_TXN;
    p.base = a->base;
    p.origin_node = a->origin_node;
    p.origin_txn = a->origin_txn;
    p.origin_pid = a->origin_pid;
    p.payload = a->payload;
    p.len = a->len;
    rc = rl_node_propose(h->node, &p, tmo, &res);
    *index = rc == RL_NODE_OK ? res.index : 0;
    proposal_result(h, rc, &res, a->base, &outcome, why, whylen);
    return outcome;
}

/* The replicator's commit, recording its verdict for rl_host_write_done. */
static int port_commit(void *ctx, const char *db_path, const rl_txn *txn,
                       rl_commit_info *ci, char *err, size_t errlen)
{
    int rc;
    rl_host_writer.outcome =
        RL_OUTCOME_NOT_APPLIED; /* unless port_commit_run says */
    rc = port_commit_run(ctx, db_path, txn, ci, err, errlen);
    rl_host_writer.committed = 1;
    if (rc == SQLITE_OK)
        rl_host_writer.outcome = RL_OUTCOME_APPLIED;
    snprintf(rl_host_writer.why, sizeof rl_host_writer.why, "%s",
             rc == SQLITE_OK ? "" : err);
    return rc;
}

/*
** The commit frame of the transaction behind ticket (the local_txn its
** commit returned) was written (ok) or not. The applier, waiting for that
** entry while it is LT_PROPOSING (applier.c host_apply), then skips it or
** writes it. The ticket stays alive until here: the applier never drops
** a transaction that is still proposing. A host that closed meanwhile
** freed its tickets: nothing is left to settle.
*/
static void port_end(void *ctx, const char *db_path, void *ticket, int ok)
{
    rl_host *h = port_host(ctx);
    struct local_txn *t = ticket;
    (void)db_path;
    if (!h || !t)
        return;
    pthread_mutex_lock(&h->mu);
    if (t->state == LT_PROPOSING && t->index) {
        t->state = ok ? LT_WRITTEN : LT_NOT_WRITTEN;
        if (ok && t->index > h->db_index)
            h->db_index = t->index;
        if (ok && t->index > h->own_index)
            h->own_index = t->index;
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static int port_read_point(void *ctx, const char *db_path, uint64_t *wait_index,
                           char *err, size_t errlen)
{
    rl_host *h = port_host(ctx);
    if (!h)
        return rl_host_client_read_point(db_path, wait_index, err, errlen);
    *wait_index = 0; /* rl_host_read_point waited for the node's apply */
    return rl_host_read_point(h, READ_POINT_MS, err, errlen);
}

void rl_host_port_init(rl_port *port, void *ctx)
{
    port->ctx = ctx;
    port->begin = port_begin;
    port->commit = port_commit;
    port->end = port_end;
    port->read_point = port_read_point;
}
