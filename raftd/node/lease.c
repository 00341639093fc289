/*
** raftd/node/lease.c -- write leases: how a follower's writer can know,
** without asking the leader, that no write acknowledged anywhere is
** missing from its node's log.
**
** A follower asks the leader for a lease with the ask of its write lock
** (ReadIndex hint_only with lease_for: rl_node_lease_grant). From then
** until the lease ends, the leader answers no proposal (to its own
** writers, to forwarded transactions, to gRPC writes) before that
** follower has stored the entry (its match index, from raft's progress):
** apply_cb hands a committed proposal to node_lease_hold, which keeps it
** here until every unexpired holder has it. So while a follower holds a
** lease, every write acknowledged anywhere is in its log: a writer whose
** file reflects its whole log is up to date and needs no call
** (raftd/host/forward.c rl_host_lease_covers).
**
** The follower counts its lease from when it sent the ask, the leader
** from when it granted it (later): the follower's lease always ends
** first. A lease never makes anything wrong, only slower or faster: a
** writer that trusted a lease wrongly (a new leader, which knows no
** holder) conflicts at its commit (the verdict rule) and retries. What a
** lease costs: the leader's answers wait for the slowest holder rather
** than the quorum, and for at most one lease after a holder stops
** answering. So a lease goes only to a member that replicates (voter or
** standby) and has nearly everything committed when it asks (at most
** RL_LEASE_LAG entries behind), and lasts one election timeout.
**
** Holders are under n->mu (granted by gRPC workers, read by the loop);
** the held proposals are the loop's. It must never hold an answer once
** this node does not lead (the lease is void then), nor answer one that
** did not commit: it only delays answers raft already gave.
*/
#include "node_int.h"

#include <string.h>
#include <time.h>

static int64_t lease_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned node_lease_ms(const struct rl_node *n)
{
    return n->cfg.election_timeout_ms;
}

rl_err rl_node_lease_grant(struct rl_node *n, uint64_t raft_id, unsigned *ms)
{
    int64_t now = lease_now_ms();
    rl_err rc = RL_ERR_INVALID;
    unsigned i, slot = RL_LEASE_MAX;
    *ms = 0;
    pthread_mutex_lock(&n->mu);
    if (n->pub.state != RL_STATE_LEADER || !n->pub.ready) {
        pthread_mutex_unlock(&n->mu);
        return RL_ERR_NOTLEADER;
    }
    for (i = 0; raft_id != n->cfg.raft_id && i < n->n_members; i++) {
        const struct rl_member *m = &n->members[i];
        if (m->raft_id != raft_id)
            continue;
        /* Only a member that replicates, and is not far behind what was
        ** committed (a follower catching up would hold every answer until
        ** it has caught up). The published match index is that of the
        ** last publication: a busy follower is a few entries behind. */
        if (m->role != RL_ROLE_SPARE &&
            m->match_index + RL_LEASE_LAG >= n->pub.commit_index)
            rc = RL_OK;
        break;
    }
    if (rc == RL_OK) {
        for (i = 0; i < RL_LEASE_MAX; i++) {
            if (n->leases[i].raft_id == raft_id) {
                slot = i;
                break;
            }
            if (slot == RL_LEASE_MAX && n->leases[i].until_ms <= now)
                slot = i;
        }
        if (slot == RL_LEASE_MAX) {
            rc = RL_ERR_NOMEM; /* every slot holds a live lease */
        } else {
            n->leases[slot].raft_id = raft_id;
            n->leases[slot].until_ms = now + node_lease_ms(n);
            *ms = node_lease_ms(n);
            n->pub.leases_granted++;
        }
    }
    pthread_mutex_unlock(&n->mu);
    return rc;
}

/* Whether an answer for index must wait: some live holder has not stored
** it. Loop thread. */
static int lease_blocks(struct rl_node *n, uint64_t index)
{
    struct raft *r = &n->raft;
    struct rl_lease held[RL_LEASE_MAX];
    int64_t now = lease_now_ms();
    if (raft_state(r) != RAFT_LEADER || !r->leader_state.progress)
        return 0;
    pthread_mutex_lock(&n->mu);
    memcpy(held, n->leases, sizeof held);
    pthread_mutex_unlock(&n->mu);
    for (unsigned k = 0; k < RL_LEASE_MAX; k++) {
        if (!held[k].raft_id || held[k].until_ms <= now)
            continue;
        for (unsigned i = 0; i < r->configuration.n; i++) {
            const struct raft_server *s = &r->configuration.servers[i];
            if (s->id != held[k].raft_id)
                continue;
            if (s->role != RAFT_SPARE &&
                r->leader_state.progress[i].match_index < index)
                return 1;
            break; /* not in the configuration any more: not held */
        }
    }
    return 0;
}

int node_lease_hold(struct rl_node *n, struct req *r)
{
    if (!n->gated && !lease_blocks(n, r->res.index))
        return 0;
    r->next = NULL;
    if (n->gated_tail)
        n->gated_tail->next = r;
    else
        n->gated = r;
    n->gated_tail = r;
    pthread_mutex_lock(&n->mu);
    n->pub.lease_waits++;
    pthread_mutex_unlock(&n->mu);
    return 1;
}

static void release(struct rl_node *n, struct req *r)
{
    if (rl_timing_on)
        r->tm[RL_T_APPLIED] = rl_timing_now();
    node_req_finish(n, r, RL_OK, NULL);
}

/* Answers in index order: an answer waits for no later one, and a later
** entry is stored by a holder only after every earlier one. */
void node_lease_recheck(struct rl_node *n)
{
    while (n->gated && !lease_blocks(n, n->gated->res.index)) {
        struct req *r = n->gated;
        n->gated = r->next;
        if (!n->gated)
            n->gated_tail = NULL;
        r->next = NULL;
        release(n, r);
    }
}

void node_lease_end_all(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    memset(n->leases, 0, sizeof n->leases);
    pthread_mutex_unlock(&n->mu);
    while (n->gated) {
        struct req *r = n->gated;
        n->gated = r->next;
        r->next = NULL;
        release(n, r);
    }
    n->gated_tail = NULL;
}
