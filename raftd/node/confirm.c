/*
** raftd/node/confirm.c -- what a leader needs to confirm a linearizable
** read with one round of questions instead of a log entry, and what a
** member answers to such a question (DESIGN 8, ReadIndex).
**
** The leader's host takes a read start (rl_node_read_begin): its term T,
** the read point (the last FSM entry applied) and the other voters. It
** then asks the voters for their term (ReadIndex confirm_term, answered
** from rl_node_term) and serves the read once a majority of the voters,
** itself included, said T. Why that is enough:
**   - A leader of a later term needs the votes of a majority, and a
**     member votes in a term only after storing it (raft's set_term comes
**     before its vote). A member that said T after the read began had not
**     voted later before it answered; two majorities share a member; so
**     no later leader existed when the read began, and every write
**     acknowledged before then was acknowledged in term T or earlier.
**   - Those of term T were this node's (one leader per term), answered
**     after its FSM applied them: the read point covers them. Earlier
**     ones were committed before this term's barrier, which applied
**     before the node took proposals (ready): covered too.
** So the read point is at least every acknowledged write, and the read
** costs one round trip to the nearest majority, no disk write anywhere.
**
** For that, the term answered must never be older than what the member
** stored: term_wrapped publishes a term before raft_uv stores it, so it
** runs ahead of raft, never behind. The read point must never be lower
** than an answered write: fsm_apply publishes it before raft answers.
** This file must never answer a term from a stale copy, nor grant a read
** start to a node that is not a ready leader in the term it stores.
*/
#include "node_int.h"

#include <string.h>

/* Loop thread, inside raft: every new term passes here before raft_uv
** stores it, and so before the member can vote in it. */
static int term_wrapped(struct raft_io *io, raft_term term)
{
    struct rl_node *n =
        (struct rl_node *)((char *)io - offsetof(struct rl_node, io));
    pthread_mutex_lock(&n->mu);
    if (term > n->term_stored)
        n->term_stored = term;
    pthread_mutex_unlock(&n->mu);
    return n->io_set_term(io, term);
}

void node_confirm_setup(struct rl_node *n)
{
    n->io_set_term = n->io.set_term;
    n->io.set_term = term_wrapped;
}

void node_confirm_started(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    if (n->raft.current_term > n->term_stored)
        n->term_stored = n->raft.current_term;
    pthread_mutex_unlock(&n->mu);
}

uint64_t rl_node_term(struct rl_node *n)
{
    uint64_t t;
    pthread_mutex_lock(&n->mu);
    t = n->term_stored;
    pthread_mutex_unlock(&n->mu);
    return t;
}

rl_err rl_node_read_begin(struct rl_node *n, struct rl_read_begin *rb)
{
    rl_err rc = RL_OK;
    memset(rb, 0, sizeof *rb);
    pthread_mutex_lock(&n->mu);
    const struct rl_node_status *st = &n->pub;
    if (n->stopping) {
        rc = RL_ERR_SHUTDOWN;
    } else if (st->state != RL_STATE_LEADER || st->term != n->term_stored) {
        /* A newer term stored than the one published as leader: raft
        ** stepped down a moment ago. */
        rc = RL_ERR_NOTLEADER;
    } else if (!st->ready || n->members == NULL) {
        rc = RL_ERR_BUSY; /* the barrier path waits for readiness */
    } else {
        int self_voter = 0;
        unsigned voters = 0;
        /* Those heard from within an election timeout first: the host
        ** asks the first it needs before the others. */
        for (int pass = 1; pass >= 0; pass--) {
            for (unsigned i = 0; i < n->n_members; i++) {
                const struct rl_member *m = &n->members[i];
                if (m->role != RL_ROLE_VOTER || (m->recent_contact > 0) != pass)
                    continue;
                voters++;
                if (m->raft_id == st->raft_id) {
                    self_voter = 1;
                } else if (rb->n_voters < RL_READ_VOTERS) {
                    rb->voters[rb->n_voters++] = m->raft_id;
                }
            }
        }
        /* A leader outside its configuration (removing itself), or more
        ** voters than fit: the barrier path serves the read. */
        if (!self_voter || rb->n_voters + 1 != voters) {
            rc = RL_ERR_BUSY;
        } else {
            rb->term = st->term;
            rb->index = st->fsm_index;
            rb->L = st->L;
            rb->need = voters / 2; /* a majority, less this node */
        }
    }
    pthread_mutex_unlock(&n->mu);
    if (rc != RL_OK)
        memset(rb, 0, sizeof *rb);
    return rc;
}
