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
#include "errbuf.h"
#include "fsio.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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

/* This node's word for the leader, taken now (after the read or the
** transaction began): its raft id, the term it stored and what it knows
** committed. Returns vs. */
static const rl_voter_stamp *voter_stamp(rl_host *h, rl_voter_stamp *vs)
{
    struct rl_node_status st;
    vs->raft_id = h->raft_id;
    vs->term = rl_node_term(h->node);
    rl_node_status(h->node, &st);
    /* What it applied is committed too, and is published as it applies
    ** (the commit index only at the loop's next publication). */
    vs->known_commit =
        st.commit_index > st.fsm_applied ? st.commit_index : st.fsm_applied;
    return vs;
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
        rl_voter_stamp vs;
        char e[512] = "";
        if (h->cl &&
            rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK &&
            m.grpc_addr[0] &&
            rl_cluster_read_index(h->cl, m.grpc_addr, tmo, voter_stamp(h, &vs),
                                  &index, &L, e, sizeof e) == 0) {
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

/* ------------------------------------------------------- read points */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long a leader waits for a majority's terms before it confirms the
** read with a barrier instead (a voter's sidecar down, its node not), and
** how long it then takes barriers without asking (so that such a fault
** makes one read in five seconds wait that second, not every read). */
#define CONFIRM_MAX_MS 1000
#define CONFIRM_OFF_MS 5000
/* How long a node that knows no leader (an election, or a leader deposed
** a moment ago) waits to learn one, a heartbeat or an election, before it
** refuses a read it could relay. */
#define LEADER_WAIT_MS 1000

/*
** Waits until this node follows a known leader other than itself, at most
** LEADER_WAIT_MS and until deadline: 1 with *st then (the read goes
** through that leader), 0 if none. Why a read may find none: a leader back
** from a pause learns of its successor only from a higher term in an
** answer, or steps down at its first tick for want of a quorum's contact,
** and hears who leads with the successor's next heartbeat; the published
** state follows raft's a loop step later.
*/
static int other_leader_known(rl_host *h, int64_t deadline,
                              struct rl_node_status *st)
{
    int64_t until = mono_ms() + LEADER_WAIT_MS;
    for (;;) {
        rl_node_status(h->node, st);
        if (st->state != RL_STATE_LEADER && st->leader_id != 0 &&
            st->leader_id != st->raft_id)
            return 1;
        if (mono_ms() >= until || mono_ms() >= deadline)
            return 0;
        rl_sleep_ms(10);
    }
}

/*
** A read point from a read barrier (rl_node_read_index: an entry a quorum
** stored, shared by the reads waiting at once). why: what failed before,
** for the message. 0 with *index and *L; RL_NODE_NOTLEADER; -1.
*/
static int barrier_point(rl_host *h, int64_t deadline, const char *why,
                         uint64_t *index, uint64_t *L, char *err, size_t errlen)
{
    struct rl_result res;
    struct rl_node_status st;
    int64_t left = deadline - mono_ms();
    int rc;
    if (left <= 0) {
        rl_seterr(err, errlen,
                  "node %s could not confirm with a quorum that it still "
                  "leads (%s)",
                  h->id.node_id, why[0] ? why : "no time left");
        return -1;
    }
    memset(&res, 0, sizeof res);
    rc = rl_node_read_index(h->node, (unsigned)left, &res);
    if (rc == RL_NODE_OK) {
        rl_node_status(h->node, &st);
        *index = res.index;
        *L = st.L;
        return 0;
    }
    rl_seterr(err, errlen,
              "node %s could not confirm with a quorum that it still leads "
              "(%s%s%s%s%s)",
              h->id.node_id, rl_node_strerror(rc), res.msg[0] ? ": " : "",
              res.msg, why[0] ? "; its voters' terms: " : "", why);
    return rc == RL_NODE_NOTLEADER ? RL_NODE_NOTLEADER : -1;
}

/* rl_host_read_barrier (host.h). */
int rl_host_read_barrier(rl_host *h, unsigned tmo, uint64_t *index, uint64_t *L,
                         char *err, size_t errlen)
{
    if (!h->node) {
        rl_seterr(err, errlen, "its node is not running in this process");
        return -1;
    }
    __atomic_add_fetch(&h->read_points, 1, __ATOMIC_RELAXED);
    return barrier_point(h, mono_ms() + tmo, "", index, L, err, errlen) == 0
               ? 0
               : -1;
}

/*
** The leader's read point: its term confirmed by a majority of the voters
** in one round of ReadIndex confirm_term calls (raftd/node/confirm.c says
** why that is enough), nothing written anywhere. When that cannot be had
** (not ready yet, a voter without a gRPC address, no majority answering
** within CONFIRM_MAX_MS) a read barrier confirms it instead: slower, as
** safe. 0 with *index and *L; RL_NODE_NOTLEADER when deposed; -1.
*/
static int leader_point(rl_host *h, int64_t deadline, uint64_t *index,
                        uint64_t *L, char *err, size_t errlen)
{
    struct rl_read_begin rb;
    struct rl_meta m[RL_READ_VOTERS];
    const char *targets[RL_READ_VOTERS];
    unsigned k = 0;
    uint64_t newer = 0;
    char e[600] = "";
    int64_t left;
    int rc = rl_node_read_begin(h->node, &rb);
    if (rc == RL_NODE_NOTLEADER)
        return RL_NODE_NOTLEADER;
    if (rc == RL_NODE_OK && h->cl &&
        mono_ms() >= __atomic_load_n(&h->confirm_off_until, __ATOMIC_RELAXED)) {
        for (unsigned i = 0; i < rb.n_voters; i++)
            if (rl_node_meta(h->node, rb.voters[i], NULL, &m[k]) ==
                    RL_NODE_OK &&
                m[k].grpc_addr[0]) {
                targets[k] = m[k].grpc_addr;
                k++;
            }
        left = deadline - mono_ms();
        if (left > CONFIRM_MAX_MS)
            left = CONFIRM_MAX_MS;
        __atomic_add_fetch(&h->read_rounds, 1, __ATOMIC_RELAXED);
        rc = rl_cluster_confirm_term(h->cl, targets, k, rb.need, rb.term,
                                     left > 0 ? (unsigned)left : 1, &newer, e,
                                     sizeof e);
        if (rc == 0) {
            *index = rb.index;
            *L = rb.L;
            return 0;
        }
        if (rc == 1) {
            rl_seterr(err, errlen, "deposed: %s", e);
            return RL_NODE_NOTLEADER;
        }
        /* No majority heard: a barrier may still get one through Raft,
        ** and serves the next reads too for a while. */
        __atomic_store_n(&h->confirm_off_until, mono_ms() + CONFIRM_OFF_MS,
                         __ATOMIC_RELAXED);
    }
    return barrier_point(h, deadline, e, index, L, err, errlen);
}

/*
** One read point, taken now: the leader's (leader_point), or a follower's
** (the leader's ReadIndex, which takes one there). A leader found deposed,
** or a follower that knows no leader, asks the leader once it knows it
** (other_leader_known). 0 with *index and *L, or -1.
*/
static int point_once(rl_host *h, int64_t deadline, uint64_t *index,
                      uint64_t *L, char *err, size_t errlen)
{
    struct rl_node_status st;
    struct rl_meta m;
    rl_voter_stamp vs;
    char e[1024] = "";
    int64_t left;
    int rc;
    rl_node_status(h->node, &st);
    if (st.state == RL_STATE_LEADER) {
        rc = leader_point(h, deadline, index, L, e, sizeof e);
        if (rc == 0)
            return 0;
        /* Deposed: the leader it knows soon serves the read. Another
        ** failure: refused, and the caller retries. */
        if (rc != RL_NODE_NOTLEADER) {
            rl_seterr(err, errlen, "%s", e);
            return -1;
        }
    }
    if ((st.state == RL_STATE_LEADER || st.leader_id == 0 ||
         st.leader_id == st.raft_id) &&
        !other_leader_known(h, deadline, &st) && e[0]) {
        rl_seterr(err, errlen, "%s", e);
        return -1;
    }
    if (rl_host_leader_meta(h, &st, &m, err, errlen) != 0)
        return -1;
    left = deadline - mono_ms();
    if (left <= 0) {
        rl_seterr(err, errlen,
                  "no time left to ask the leader %s for a read "
                  "point",
                  m.node_id);
        return -1;
    }
    __atomic_add_fetch(&h->read_rounds, 1, __ATOMIC_RELAXED);
    if (rl_cluster_read_index(h->cl, m.grpc_addr, (unsigned)left,
                              voter_stamp(h, &vs), index, L, e,
                              sizeof e) != 0) {
        rl_seterr(err, errlen, "no read point from the leader %s (gRPC %s): %s",
                  m.node_id, m.grpc_addr, e);
        return -1;
    }
    return 0;
}

/*
** rl_host_read_index_for (host.h): a member's request. When the member's
** word (voter_id was in the leader's term voter_term when it asked) and
** this leader's own make a majority of the voters, the read point is
** taken now and needs no round (raftd/node/confirm.c says why: the two
** attest to the term after the read began). Otherwise, a shared round.
*/
int rl_host_read_index_for(rl_host *h, unsigned tmo, uint64_t voter_id,
                           uint64_t voter_term, uint64_t known_commit,
                           uint64_t *index, uint64_t *L, char *err,
                           size_t errlen)
{
    struct rl_read_begin rb;
    int rc = -1, direct = 0;
    if (h->node && voter_id && voter_term &&
        rl_node_read_begin(h->node, &rb) == RL_NODE_OK && rb.need == 1 &&
        rb.term == voter_term) {
        for (unsigned i = 0; i < rb.n_voters && !direct; i++)
            direct = rb.voters[i] == voter_id;
    }
    if (direct) {
        __atomic_add_fetch(&h->read_points, 1, __ATOMIC_RELAXED);
        *index = rb.index;
        *L = rb.L;
        rc = 0;
    } else {
        rc = rl_host_read_index(h, tmo, index, L, err, errlen);
    }
    /* The asker applies the read point once it hears it committed. */
    if (rc == 0 && known_commit < *index)
        rl_node_push_commit(h->node);
    return rc;
}

/*
** rl_host_read_index (host.h): a quorum-confirmed read point taken after
** the call began, with the leader's L as of it, one round at a time for
** all of this process's readers. A reader needs a round that started after
** it began (one already under way may have been answered before this
** reader's call, which would not be linearizable): it waits for the next
** one, which it starts itself if none runs. Readers that arrive while a
** round runs thus share the following one: N concurrent readers cost about
** two rounds, not N. (Measured: letting a second round start while one
** runs, after gathering readers for 50 us, made 2 and 8 concurrent
** readers slower on two cores, not faster: more rounds, more CPU.)
*/
int rl_host_read_index_n(rl_host *h, unsigned n, unsigned tmo, uint64_t *index,
                         uint64_t *L, char *err, size_t errlen)
{
    int64_t deadline = mono_ms() + tmo;
    uint64_t want;
    int rc;
    *index = 0;
    if (!h->node) {
        rl_seterr(err, errlen, "its node is not running in this process");
        return -1;
    }
    __atomic_add_fetch(&h->read_points, n, __ATOMIC_RELAXED);
    pthread_mutex_lock(&h->rr_mu);
    want = h->rr_started + 1;
    while (h->rr_done < want) {
        if (deadline - mono_ms() <= 0) {
            pthread_mutex_unlock(&h->rr_mu);
            rl_seterr(err, errlen,
                      "no read point within %u ms (the round before this "
                      "read's did not end)",
                      tmo);
            return -1;
        }
        if (!h->rr_running) {
            uint64_t mine = ++h->rr_started, idx = 0, l = 0;
            char e[sizeof h->rr_err];
            h->rr_running = 1;
            pthread_mutex_unlock(&h->rr_mu);
            rc = point_once(h, deadline, &idx, &l, e, sizeof e);
            pthread_mutex_lock(&h->rr_mu);
            h->rr_running = 0;
            h->rr_done = mine;
            h->rr_rc = rc == 0 ? 0 : -1;
            h->rr_index = idx;
            h->rr_L = l;
            if (rc != 0)
                rl_seterr(h->rr_err, sizeof h->rr_err, "%s", e);
            pthread_cond_broadcast(&h->rr_cv);
        } else {
            struct timespec ts;
            ts.tv_sec = deadline / 1000;
            ts.tv_nsec = (deadline % 1000) * 1000000;
            pthread_cond_timedwait(&h->rr_cv, &h->rr_mu, &ts);
        }
    }
    /* The last round ended after this reader began: its answer (or its
    ** failure) is this reader's. */
    rc = h->rr_rc;
    *index = h->rr_index;
    if (L)
        *L = h->rr_L;
    if (rc != 0)
        rl_seterr(err, errlen, "%s", h->rr_err);
    pthread_mutex_unlock(&h->rr_mu);
    return rc;
}

int rl_host_read_index(rl_host *h, unsigned tmo, uint64_t *index, uint64_t *L,
                       char *err, size_t errlen)
{
    return rl_host_read_index_n(h, 1, tmo, index, L, err, errlen);
}

/*
** rl_host_read_point (host.h; the port's read_point, gRPC STRONG reads):
** rl_host_read_index, then wait until this node's file reflects it. Each
** step is bounded: the VFS refuses the read and the busy handler retries,
** so a node cut off from a quorum answers "database is locked" with the
** reason, never data older than a write acknowledged anywhere.
*/
int rl_host_read_point(rl_host *h, unsigned tmo, char *err, size_t errlen)
{
    int64_t deadline = mono_ms() + tmo;
    uint64_t index = 0;
    int64_t left;
    int rc;
    if (rl_host_read_index(h, tmo, &index, NULL, err, errlen) != 0)
        return SQLITE_BUSY;
    left = deadline - mono_ms();
    rc = rl_node_wait_applied(h->node, index, left > 0 ? (unsigned)left : 1);
    if (rc != RL_NODE_OK) {
        snprintf(err, errlen,
                 "node %s has not applied index %llu, the read point, within "
                 "%u ms (%s)",
                 h->id.node_id, (unsigned long long)index, tmo,
                 rl_node_strerror(rc));
        return SQLITE_BUSY;
    }
    return SQLITE_OK;
}
