/*
** raftd/node/request.c -- requests from other threads to the loop (queue,
** wait, result), and what the loop does with proposals and reads: the
** barrier that makes a new leader ready, raft_apply and its outcome,
** proposals that lost leadership (resolved by index and checksum),
** answers held until write-lease holders stored their entry (lease.c),
** and linearizable read points (shared barriers).
**
** node_req_run runs on a caller's thread; everything else on the loop
** thread. It must never report an entry as committed or not committed
** unless the log says so (otherwise the answer is UNKNOWN), never submit
** a proposal before this term's barrier applied, and never hold n->mu
** across a raft_* call.
*/
#include "node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Call with n->mu held. */
void node_req_unref_locked(struct req *r)
{
    if (--r->refs > 0)
        return;
    if (r->buf.base)
        raft_free(r->buf.base);
    free(r);
}

/* Publish a request's result (first call wins) and drop the loop's
** reference. Loop thread only. */
void node_req_finish(struct rl_node *n, struct req *r, rl_err rc,
                     const char *msg)
{
    pthread_mutex_lock(&n->mu);
    if (!r->done) {
        r->done = 1;
        r->rc = rc;
        if (msg)
            node_copy_str(r->res.msg, sizeof r->res.msg, msg);
        if (rc == RL_ERR_NOTLEADER) {
            raft_id id = 0;
            const char *addr = NULL;
            raft_leader(&n->raft, &id, &addr);
            r->res.leader_id = id;
            node_copy_str(r->res.leader_addr, sizeof r->res.leader_addr, addr);
        }
        pthread_cond_broadcast(&n->cv);
    }
    if (r->internal && r->type == REQ_PROPOSE && r->kind == RL_ENTRY_META)
        n->meta_inflight = 0;
    node_req_unref_locked(r);
    pthread_mutex_unlock(&n->mu);
}

/* Hand a request to the loop and wait for its result, at most timeout_ms.
** Takes over the caller's reference. */
rl_err node_req_run(struct rl_node *n, struct req *r, unsigned timeout_ms,
                    struct rl_result *res)
{
    rl_err rc;
    struct timespec dl = node_deadline_in(timeout_ms);
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        r->refs = 1;
        node_req_unref_locked(r);
        pthread_mutex_unlock(&n->mu);
        node_copy_str(res->msg, sizeof res->msg, "node is stopping");
        return RL_ERR_SHUTDOWN;
    }
    /* A waiter keeps the node alive: rl_node_stop may run meanwhile. */
    n->refs++;
    if (n->cmd_tail)
        n->cmd_tail->next = r;
    else
        n->cmd_head = r;
    n->cmd_tail = r;
    /* The handle stays open while stopping is 0 and we hold mu. */
    uv_async_send(&n->async);
    while (!r->done) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT)
            break;
    }
    if (r->done) {
        rc = r->rc;
        *res = r->res;
        if (rl_timing_on && r->type == REQ_PROPOSE) {
            for (int i = RL_T_PROPOSE; i <= RL_T_APPLIED; i++)
                rl_timing_set(i, r->tm[i]);
            rl_timing_mark(RL_T_WOKEN);
        }
    } else if (r->type == REQ_PROPOSE && r->taken && !r->submitted) {
        /* Waiting for the barrier: the loop will drop it, unsubmitted. */
        r->abandoned = 1;
        rc = RL_ERR_TIMEOUT;
        node_copy_str(
            res->msg, sizeof res->msg,
            "the new leader was not ready in time (nothing appended)");
    } else if (!r->taken) {
        /* Still queued: unlink it; the loop never saw it. */
        struct req **pp = &n->cmd_head, *prev = NULL;
        while (*pp && *pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = r->next;
            if (n->cmd_tail == r)
                n->cmd_tail = prev;
        }
        r->refs--; /* the loop's reference */
        rc = RL_ERR_TIMEOUT;
        node_copy_str(res->msg, sizeof res->msg,
                      "the node's loop did not take the request in time");
    } else if (r->type == REQ_READ) {
        rc = RL_ERR_TIMEOUT; /* a read has no outcome to be unsure of */
        node_copy_str(res->msg, sizeof res->msg,
                      "leadership not confirmed within the time limit");
    } else {
        rc = RL_ERR_UNKNOWN;
        res->index = r->res.index;
        node_copy_str(res->msg, sizeof res->msg,
                      "time limit reached after the request was submitted: "
                      "outcome unknown");
    }
    node_req_unref_locked(r);
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
    return rc;
}

struct req *node_req_new(int type)
{
    struct req *r = calloc(1, sizeof *r);
    if (r) {
        r->type = type;
        r->refs = 2;
    }
    return r;
}

/* ---- answers held for write leases (loop thread; lease.c) ---- */

/* apply_cb, a proposal that committed: 1 if its answer waits for a lease
** holder (node_held_recheck gives it), 0 to answer it now. */
static int held_add(struct rl_node *n, struct req *r)
{
    if (!node_lease_blocks(n, r->res.index, r->origin_node))
        return 0;
    r->next = n->gated; /* in no order: see held_release */
    n->gated = r;
    pthread_mutex_lock(&n->mu);
    n->pub.lease_waits++;
    pthread_mutex_unlock(&n->mu);
    return 1;
}

/* Answers the held proposals that nothing blocks any more (all: every
** one). Answers need no order: a later one may go first (a holder's own
** write waits for nobody on its account). */
static void held_release(struct rl_node *n, int all)
{
    struct req **pp = &n->gated, *r;
    while ((r = *pp) != NULL) {
        if (!all && node_lease_blocks(n, r->res.index, r->origin_node)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = NULL;
        if (rl_timing_on)
            r->tm[RL_T_APPLIED] = rl_timing_now();
        node_req_finish(n, r, RL_OK, NULL);
    }
}

void node_held_recheck(struct rl_node *n)
{
    held_release(n, 0);
}

void node_held_release_all(struct rl_node *n)
{
    node_lease_clear(n);
    held_release(n, 1);
}

/* ---- proposals: leadership, barrier (loop thread) ---- */

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    struct req *r = a->data;
    struct rl_node *n = r->node;
    if (status == 0) {
        r->res.effective = result == VERDICT_EFFECT;
        if (rl_timing_on) {
            if (n->tm_app_last >= r->res.index)
                r->tm[RL_T_APPENDED] = n->tm_app_at;
            if (n->tm_fsm_index == r->res.index)
                r->tm[RL_T_COMMITTED] = n->tm_fsm_at;
            r->tm[RL_T_APPLIED] = rl_timing_now();
        }
        if (held_add(n, r))
            return; /* a follower's write lease holds the answer */
        node_req_finish(n, r, RL_OK, NULL);
    } else if (status == RAFT_LEADERSHIPLOST && !n->closing) {
        /* It may still commit under the next leader: wait for its index
        ** (node_lost_sweep), at most an election timeout. */
        r->lost_at = uv_now(&n->loop);
        r->next = n->lost;
        n->lost = r;
    } else {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s after the entry was appended: outcome "
                 "unknown",
                 raft_strerror(status));
        node_req_finish(n, r, RL_ERR_UNKNOWN, msg);
    }
}

void node_submit_propose(struct rl_node *n, struct req *r)
{
    pthread_mutex_lock(&n->mu);
    int abandoned = r->abandoned;
    r->submitted = !abandoned;
    pthread_mutex_unlock(&n->mu);
    if (abandoned) {
        node_req_finish(n, r, RL_ERR_TIMEOUT, "abandoned before submission");
        return;
    }
    r->apply.data = r;
    if (rl_timing_on) { /* raft_apply calls io->append synchronously */
        r->tm[RL_T_LOOP] = rl_timing_now();
        n->tm_next = raft_last_index(&n->raft) + 1;
    }
    int rc = raft_apply(&n->raft, &r->apply, &r->buf, 1, apply_cb);
    n->tm_next = 0;
    if (rc == 0) {
        r->buf.base = NULL; /* raft owns it now */
        pthread_mutex_lock(&n->mu);
        r->res.index = r->apply.index;
        pthread_mutex_unlock(&n->mu);
        return;
    }
    if (rc == RAFT_NOTLEADER) {
        node_req_finish(n, r, RL_ERR_NOTLEADER, "not the leader");
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "raft_apply: %s (nothing appended)",
                 raft_errmsg(&n->raft));
        node_req_finish(n, r, RL_ERR_RAFT, msg);
    }
}

int node_ready(struct rl_node *n)
{
    return raft_state(&n->raft) == RAFT_LEADER &&
           n->ready_term == n->raft.current_term;
}

void node_propose_internal(struct rl_node *n, uint8_t kind, const void *payload,
                           size_t len)
{
    struct rl_entry_hdr h = {.kind = kind,
                             .origin_node = n->cfg.raft_id,
                             .origin_pid = (uint32_t)getpid(),
                             .payload_len = len};
    size_t size = rl_entry_size(len);
    struct req *r = node_req_new(REQ_PROPOSE);
    void *buf = size ? raft_malloc(size) : NULL;
    if (r == NULL || buf == NULL || rl_entry_encode(&h, payload, buf, size)) {
        free(r);
        raft_free(buf);
        return;
    }
    r->refs = 1;
    r->internal = 1;
    r->kind = kind;
    r->buf.base = buf;
    r->buf.len = size;
    r->node = n;
    if (kind == RL_ENTRY_META)
        n->meta_inflight = 1;
    node_submit_propose(n, r);
}

static void barrier_cb(struct raft_barrier *b, int status)
{
    struct rl_node *n = b->data;
    n->barrier_inflight = 0;
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        n->raft.current_term == n->barrier_term) {
        n->ready_term = n->barrier_term;
        node_log(n, 2, "leader ready in term %llu",
                 (unsigned long long)n->ready_term);
    } else {
        n->barrier_term = 0;
    }
    free(b);
}

void node_flush_pending(struct rl_node *n, rl_err rc, const char *msg)
{
    while (n->pending) {
        struct req *r = n->pending;
        n->pending = r->next;
        r->next = NULL;
        if (rc == RL_OK)
            node_submit_propose(n, r);
        else
            node_req_finish(n, r, rc, msg);
    }
}

/* Issue the barrier of a new term, admit or refuse waiting proposals,
** announce our own metadata. Loop thread; not while closing. */
void node_check_leader(struct rl_node *n)
{
    if (n->closing)
        return;
    struct raft *r = &n->raft;
    if (raft_state(r) != RAFT_LEADER) {
        node_held_release_all(n); /* leases were this leader's promise */
        if (n->pending)
            node_flush_pending(n, RL_ERR_NOTLEADER,
                               "leadership lost before the entry was appended");
        return;
    }
    if (n->barrier_term != r->current_term && !n->barrier_inflight) {
        struct raft_barrier *b = calloc(1, sizeof *b);
        if (b) {
            b->data = n;
            n->barrier_term = r->current_term;
            n->barrier_inflight = 1;
            int rc = raft_barrier(r, b, barrier_cb);
            if (rc != 0) {
                node_log(n, 1, "raft_barrier: %s", raft_errmsg(r));
                n->barrier_term = 0;
                n->barrier_inflight = 0;
                free(b);
            }
        }
    }
    if (!node_ready(n))
        return;
    if (n->pending)
        node_flush_pending(n, RL_OK, NULL);
    if (!n->meta_inflight) {
        pthread_mutex_lock(&n->mu);
        const struct rl_meta *m =
            node_meta_find_locked(n, n->cfg.raft_id, NULL);
        int current = m && rl_fsm_meta_equal(m, &n->self);
        pthread_mutex_unlock(&n->mu);
        if (!current) {
            uint8_t buf[1024];
            size_t len = rl_meta_encode(&n->self, buf, sizeof buf);
            if (len)
                node_propose_internal(n, RL_ENTRY_META, buf, len);
        }
    }
}

/* ---- linearizable read points (loop thread) ---- */

/* Readers that arrived while a barrier was in flight wait for the next
** one: the in-flight barrier may predate their read. */
struct read_batch {
    struct raft_barrier b;
    struct rl_node *n;
    struct req *list;
};

/* Fail every reader still waiting for a barrier: leadership is gone (or
** the node stops), so no barrier of this term can confirm them. They are
** definite refusals (a read changes nothing): the caller retries on the
** next leader. */
static void read_fail_waiting(struct rl_node *n, const char *msg)
{
    while (n->readers) {
        struct req *r = n->readers;
        n->readers = r->next;
        r->next = NULL;
        node_req_finish(n, r, n->closing ? RL_ERR_SHUTDOWN : RL_ERR_NOTLEADER,
                        n->closing ? "node is stopping" : msg);
    }
}

static void read_barrier_cb(struct raft_barrier *b, int status)
{
    struct read_batch *rb = b->data;
    struct rl_node *n = rb->n;
    n->read_inflight = 0;
    /* The barrier is applied: every FSM entry up to it is too, and the
    ** last of them is what the applier must reach. */
    uint64_t index = n->sm.A;
    while (rb->list) {
        struct req *r = rb->list;
        rb->list = r->next;
        if (status == 0) {
            r->res.index = index;
            node_req_finish(n, r, RL_OK, NULL);
        } else if (n->closing) {
            node_req_finish(n, r, RL_ERR_SHUTDOWN, "node is stopping");
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "leadership not confirmed: %s",
                     raft_strerror(status));
            node_req_finish(n, r, RL_ERR_NOTLEADER, msg);
        }
    }
    free(rb);
    /* A failed barrier means leadership was lost: raft 0.15 fails its
    ** requests from inside the step-down, while raft_state() still says
    ** leader and the leader's progress array is already freed, so a
    ** barrier issued from here would crash in raft's replication. The
    ** readers queued behind this one cannot be confirmed either. */
    if (status != 0)
        read_fail_waiting(n, "leadership lost before the read was "
                             "confirmed; retry on the new leader");
    else if (!n->closing)
        node_read_flush(n);
}

void node_read_flush(struct rl_node *n)
{
    if (n->read_inflight || n->readers == NULL)
        return;
    /* raft_barrier only on a leader that has its leader state (see
    ** read_barrier_cb). */
    if (n->closing || raft_state(&n->raft) != RAFT_LEADER ||
        n->raft.leader_state.progress == NULL) {
        read_fail_waiting(n, "not the leader");
        return;
    }
    struct read_batch *rb = calloc(1, sizeof *rb);
    struct req *list = n->readers;
    n->readers = NULL;
    int rc = RAFT_NOMEM;
    if (rb) {
        rb->n = n;
        rb->list = list;
        rb->b.data = rb;
        rc = raft_barrier(&n->raft, &rb->b, read_barrier_cb);
    }
    if (rc == 0) {
        n->read_inflight = 1;
        pthread_mutex_lock(&n->mu);
        n->pub.read_barriers++;
        pthread_mutex_unlock(&n->mu);
        return;
    }
    free(rb);
    while (list) {
        struct req *r = list;
        list = r->next;
        node_req_finish(n, r,
                        rc == RAFT_NOTLEADER ? RL_ERR_NOTLEADER : RL_ERR_RAFT,
                        raft_strerror(rc));
    }
}

/* ---- pushing the commit index (loop thread) ---- */

/* A follower learns that an entry committed from the leader's next
** AppendEntries: with no new entry that is the next heartbeat, so a
** follower whose read point the leader just confirmed would wait up to a
** heartbeat to apply it (measured: 200 ms for a read right after a write
** on another node, against 3 ms while read points were barriers). A
** barrier is an entry raft replicates at once, with the commit index. */
static void push_cb(struct raft_barrier *b, int status)
{
    struct rl_node *n = b->data;
    free(b);
    n->push_inflight = 0;
    /* Not from a failed barrier's callback (see read_barrier_cb). */
    if (status == 0 && n->push_again && !n->closing) {
        n->push_again = 0;
        node_push_commit(n);
    }
}

void node_push_commit(struct rl_node *n)
{
    if (n->push_inflight) {
        /* The one in flight may have left before the commit asked for. */
        n->push_again = 1;
        return;
    }
    if (n->closing || raft_state(&n->raft) != RAFT_LEADER ||
        n->raft.leader_state.progress == NULL)
        return;
    struct raft_barrier *b = calloc(1, sizeof *b);
    if (b == NULL)
        return; /* the next heartbeat carries it */
    b->data = n;
    if (raft_barrier(&n->raft, b, push_cb) != 0) {
        free(b);
        return;
    }
    n->push_inflight = 1;
}

/* Lost proposals whose index raft applied without an FSM call there: a
** barrier or configuration entry of the next leader took the index (ours
** would have reached fsm_apply, and a restore covering it already failed
** it), so they were never committed. */
void node_lost_sweep(struct rl_node *n)
{
    raft_index applied = raft_last_applied(&n->raft);
    uint64_t now = uv_now(&n->loop);
    raft_id lid = 0;
    const char *laddr = NULL;
    struct req **pp = &n->lost;
    /* A known leader decides the index soon (its next AppendEntries);
    ** with none known (this node is cut off) nobody may for long. */
    raft_leader(&n->raft, &lid, &laddr);
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index > applied &&
            (lid != 0 || now - r->lost_at < n->raft.election_timeout)) {
            pp = &r->next;
            continue;
        }
        if (r->res.index > applied) {
            /* No leader known for an election timeout (this node is cut
            ** off): answer now rather than at the caller's deadline. */
            *pp = r->next;
            node_req_finish(
                n, r, RL_ERR_UNKNOWN,
                "leadership lost after the entry was appended and no "
                "leader is known to decide its index");
            continue;
        }
        *pp = r->next;
        node_req_finish(n, r, RL_ERR_NOTLEADER,
                        "leadership lost and the next leader put another entry "
                        "at its index: not committed");
    }
}
