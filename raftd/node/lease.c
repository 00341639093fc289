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
** raft's apply callback holds a committed proposal's answer (request.c
** node_held_*) while node_lease_blocks says an unexpired holder has not
** stored it. So while a follower holds a lease, every write acknowledged
** anywhere is in its log: a writer whose file reflects its whole log is
** up to date and needs no call (raftd/host/forward.c lease_covers).
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
** RL_LEASE_LAG entries behind), and lasts a third of an election timeout
** (a follower that writes asks again every half lease).
**
** A holder's own writes (the entry's origin node) wait for nobody on its
** account: its writer knows of them, and writes its frames once answered
** (forward.c counts its file up to them). So a follower's write costs its
** own store no more than without a lease.
**
** Holders are under n->mu (granted by gRPC workers, read by the loop).
** A lease must never block an answer once this node does not lead (the
** lease is void then): node_lease_blocks says no, and request.c clears
** them.
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
    unsigned ms = n->cfg.election_timeout_ms / 3;
    return ms < 100 ? 100 : ms;
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

int node_lease_blocks(struct rl_node *n, uint64_t index, uint64_t origin)
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
        if (!held[k].raft_id || held[k].until_ms <= now ||
            held[k].raft_id == origin)
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

void node_lease_clear(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    memset(n->leases, 0, sizeof n->leases);
    pthread_mutex_unlock(&n->mu);
}
