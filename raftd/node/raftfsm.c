/*
** raftd/node/raftfsm.c -- the node's struct raft_fsm: raft's callbacks
** (apply, snapshot, snapshot_async, restore) around the pure FSM of
** fsm.c. They take the verdict, update the published state under n->mu,
** answer proposals that lost leadership, and queue each entry (a payload
** copy) or restore marker for the applier thread.
**
** Loop thread, except fsm_snapshot_async (a libuv threadpool thread). The
** verdict must depend on the log alone (fsm.c decides it): never on the
** database, the clock or this node's role. fsm_apply must never fail or
** block; only snapshot_async may wait, and only with a deadline.
*/
#include "node_int.h"
#include "fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Resolve proposals that lost leadership once their index is applied:
** the same entry (checksum) means it committed; another means it did not. */
static void lost_resolve(struct rl_node *n, uint64_t index, uint64_t checksum,
                         int effective)
{
    struct req **pp = &n->lost;
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index > index) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        if (r->res.index == index && r->checksum == checksum) {
            r->res.effective = effective;
            node_req_finish(n, r, RL_OK, NULL);
        } else {
            /* Every committed command reaches fsm_apply in index order,
            ** and a restore covering it fails the request first: another
            ** entry at its index, or a later index without it (a barrier
            ** or configuration entry took its place), means it was
            ** truncated, never committed. */
            node_req_finish(n, r, RL_ERR_NOTLEADER,
                            "leadership lost and another entry took the index: "
                            "not committed");
        }
    }
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct rl_node *n = fsm->data;
    uint64_t index = raft_last_applied(&n->raft) + 1;
    uint64_t t0 = uv_hrtime();
    struct rl_fsm_verdict v;
    if (rl_timing_on) {
        n->tm_fsm_index = index;
        n->tm_fsm_at = rl_timing_now();
    }
    rl_fsm_decide(&n->sm, index, buf->base, buf->len, &v);
    const struct rl_entry *e = &v.e;
    int effective = v.effective;
    if (!v.decoded)
        node_log(n, 1, "entry %llu is malformed (%s): applied as a no-op",
                 (unsigned long long)index, v.err);
    else if (v.base_ahead)
        node_log(n, 0,
                 "entry %llu has base %llu: its base must be an earlier "
                 "index, so the Raft log is mis-indexed (raft 0.15 with "
                 "snapshot trailing 0?)",
                 (unsigned long long)index, (unsigned long long)e->h.base);
    else if (e->h.kind == RL_ENTRY_META && !effective)
        node_log(n, 1, "META entry %llu ignored: %s", (unsigned long long)index,
                 v.err);
    pthread_mutex_lock(&n->mu); /* the metadata table is read under mu */
    int rc = rl_fsm_take(&n->sm, &v);
    pthread_mutex_unlock(&n->mu);
    if (rc != 0)
        node_log(n, 0, "out of memory: metadata of raft id %llu dropped",
                 (unsigned long long)v.meta.raft_id);
    RL_FAULT("raft-apply"); /* FSM state changed, applier not handed it */
    /* Copy for the applier: raft owns buf after we return. A failed
    ** allocation cannot fail the apply; the entry reaches the applier
    ** without payload and marked not effective, and that is logged. */
    size_t len = v.decoded ? (size_t)e->h.payload_len : 0;
    struct item *it = malloc(sizeof *it + len);
    if (it == NULL) {
        node_log(n, 0, "out of memory copying entry %llu for the applier",
                 (unsigned long long)index);
    } else {
        memset(it, 0, sizeof *it);
        it->type = ITEM_ENTRY;
        it->e.index = index;
        it->e.kind = v.decoded ? e->h.kind : 0;
        it->e.effective = effective;
        it->e.base = e->h.base;
        it->e.origin_node = e->h.origin_node;
        it->e.origin_txn = e->h.origin_txn;
        it->e.origin_pid = e->h.origin_pid;
        if (len)
            memcpy(it->data, e->payload, len);
        it->e.payload = it->data;
        it->e.len = len;
        node_queue_push(n, it);
    }
    uint64_t tb = n->cfg.snapshot_threshold_bytes;
    if (n->sm.bytes_since_snap >= tb && !n->threshold_lowered) {
        /* raft counts entries only: make it snapshot after this batch. */
        uint64_t since = index - n->raft.log.snapshot.last_index;
        raft_set_snapshot_threshold(&n->raft, since > 0 ? (unsigned)since : 1);
        n->threshold_lowered = 1;
    }
    if (v.decoded && n->cfg.log)
        node_log(n, 3, "apply %llu %s base %llu -> %s, L %llu",
                 (unsigned long long)index, rl_entry_kind_name(e->h.kind),
                 (unsigned long long)e->h.base,
                 effective ? "effective" : "no-op",
                 (unsigned long long)n->sm.L);
    /* Published before anything answers the entry (raft's apply callback,
    ** lost_resolve): a leader's read point (confirm.c) is never below a
    ** write it acknowledged. */
    pthread_mutex_lock(&n->mu);
    n->pub.fsm_applied = index;
    n->pub.fsm_index = n->sm.A;
    n->pub.L = n->sm.L;
    pthread_mutex_unlock(&n->mu);
    if (n->lost)
        lost_resolve(n, index, v.decoded ? e->checksum : 0, effective);
    /* Before raft's apply callback answers the proposal: a client process
    ** reading the board must not find an L older than one its host's
    ** writers were told of. */
    node_board_post(n);
    *result = effective ? VERDICT_EFFECT : VERDICT_NOOP;
    uint64_t us = (uv_hrtime() - t0) / 1000;
    if (us > 100000)
        node_log(n, 2, "apply of entry %llu (%zu bytes) took %llu ms",
                 (unsigned long long)index, buf->len,
                 (unsigned long long)(us / 1000));
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct rl_node *n = fsm->data;
    uint64_t S = n->raft.last_applied, A;
    pthread_mutex_lock(&n->mu);
    int rc = rl_fsm_snapshot(&n->sm, S, bufs, n_bufs, &A);
    pthread_mutex_unlock(&n->mu);
    if (rc != 0) {
        node_log(n, 1, "snapshot at %llu not taken: manifest encoding failed",
                 (unsigned long long)S);
        return rc;
    }
    n->snap_A = A;
    unsigned trailing = rl_fsm_trailing(&n->sm, S, n->cfg.snapshot_trailing,
                                        n->cfg.snapshot_trailing_bytes);
    raft_set_snapshot_trailing(&n->raft, trailing);
    if (n->threshold_lowered) {
        raft_set_snapshot_threshold(&n->raft, n->cfg.snapshot_threshold);
        n->threshold_lowered = 0;
    }
    node_log(n, 2, "snapshot at S=%llu A=%llu L=%llu, trailing %u entries",
             (unsigned long long)S, (unsigned long long)A,
             (unsigned long long)n->sm.L, trailing);
    return 0;
}

/* libuv threadpool: wait (bounded) until the applier has the entries up to
** A, let it make them durable, then the manifest can be stored. A timeout
** fails this snapshot; raft retries after a later batch of applies. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct rl_node *n = fsm->data;
    uint64_t A = n->snap_A;
    struct timespec dl = node_deadline_in(n->cfg.snapshot_timeout_ms);
    int ok = 1;
    pthread_mutex_lock(&n->mu);
    while (n->pub.applier_index < A && !n->stopping) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT)
            break;
    }
    if (n->pub.applier_index < A || n->stopping)
        ok = 0;
    pthread_mutex_unlock(&n->mu);
    uint64_t db_size = 0;
    if (ok && n->cfg.applier.snapshot_ready(n->cfg.applier.ctx, A,
                                            node_ms_left(&dl), &db_size) != 0)
        ok = 0;
    pthread_mutex_lock(&n->mu);
    if (ok)
        n->pub.snapshots_taken++;
    else
        n->pub.snapshots_failed++;
    pthread_mutex_unlock(&n->mu);
    if (!ok) {
        node_log(n, 1,
                 "snapshot at applier index %llu not taken: the applier did "
                 "not reach it within %u ms",
                 (unsigned long long)A, n->cfg.snapshot_timeout_ms);
        return RAFT_IOERR;
    }
    if (*n_bufs == 1 && db_size)
        rl_manifest_patch_db_size((*bufs)[0].base, (*bufs)[0].len, db_size);
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    rl_fsm_snapshot_finalize(bufs, n_bufs);
    return 0;
}

/* Loop thread: never waits. The database's side of the restore happens on
** the applier thread when it reaches the marker queued here. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct rl_node *n = fsm->data;
    struct item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return RAFT_NOMEM;
    char err[200];
    pthread_mutex_lock(&n->mu); /* the metadata table is read under mu */
    int rc =
        rl_fsm_restore(&n->sm, buf->base, buf->len, &it->m, err, sizeof err);
    if (rc == 0) {
        n->pub.L = n->sm.L;
        n->pub.restores++;
        n->pub.snapshot_index = it->m.S;
    }
    pthread_mutex_unlock(&n->mu);
    node_board_post(n);
    if (rc != 0) {
        free(it);
        if (rc == RL_EFMT_NOMEM)
            return RAFT_NOMEM;
        node_log(n, 0, "snapshot rejected: %s", err);
        return RAFT_MALFORMED;
    }
    it->type = ITEM_RESTORE;
    /* Waiters on entries the snapshot covers cannot learn their verdict. */
    struct req **pp = &n->lost;
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index <= it->m.S) {
            *pp = r->next;
            node_req_finish(n, r, RL_ERR_UNKNOWN,
                            "a snapshot replaced the entry's index: outcome "
                            "unknown");
        } else {
            pp = &r->next;
        }
    }
    node_log(n, 2, "restored snapshot S=%llu A=%llu L=%llu, %u members",
             (unsigned long long)it->m.S, (unsigned long long)it->m.A,
             (unsigned long long)it->m.L, it->m.n_members);
    node_queue_push(n, it);
    raft_free(buf->base);
    return 0;
}

void node_fsm_init(struct rl_node *n)
{
    n->fsm.version = 3;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    n->fsm.snapshot_finalize = fsm_snapshot_finalize;
    n->fsm.snapshot_async = fsm_snapshot_async;
}
