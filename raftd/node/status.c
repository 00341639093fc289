/*
** raftd/node/status.c -- what the loop publishes for other threads: raft's
** state (rl_node_status), the members with their progress and metadata,
** under n->mu, and a line in the log when the role or term changes.
**
** Loop thread only (loop.c after every step that may change raft's
** state, reload.c once the log is reopened, raftio.c after a message
** that changed the role, term or leader); it calls none of them.
** It must never hold n->mu across a raft_* call or while logging (the
** log sink may call the node).
*/
#include "node_int.h"

#include <stdlib.h>

void node_publish(struct rl_node *n)
{
    struct raft *r = &n->raft;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(r, &lid, &laddr);
    unsigned nm = r->configuration.n;
    struct rl_member *mem = nm ? calloc(nm, sizeof *mem) : NULL;
    int leader = raft_state(r) == RAFT_LEADER;
    for (unsigned i = 0; mem && i < nm; i++) {
        const struct raft_server *s = &r->configuration.servers[i];
        mem[i].raft_id = s->id;
        mem[i].role = s->role;
        mem[i].is_leader = s->id == lid;
        node_copy_str(mem[i].raft_addr, sizeof mem[i].raft_addr, s->address);
        mem[i].recent_contact = -1;
        if (leader && r->leader_state.progress) {
            mem[i].match_index = r->leader_state.progress[i].match_index;
            mem[i].recent_contact =
                s->id == r->id ? 1 : r->leader_state.progress[i].recent_recv;
        }
    }
    raft_time now = r->io->time(r->io);
    n->seen_state = raft_state(r);
    n->seen_term = r->current_term;
    n->seen_leader = lid;
    n->seen_conf = r->configuration_index;
    n->seen_conf_pending = r->configuration_uncommitted_index;
    pthread_mutex_lock(&n->mu);
    struct rl_node_status *st = &n->pub;
    int changed = st->state != raft_state(r) || st->term != r->current_term;
    st->state = raft_state(r);
    st->ready = node_ready(n);
    st->term = r->current_term;
    st->leader_id = lid;
    node_copy_str(st->leader_addr, sizeof st->leader_addr, laddr);
    st->commit_index = r->commit_index;
    st->last_index = raft_last_index(r);
    st->fsm_applied = raft_last_applied(r);
    st->fsm_index = n->sm.A;
    st->L = n->sm.L;
    if (r->log.snapshot.last_index > st->snapshot_index)
        st->snapshot_index = r->log.snapshot.last_index;
    st->leader_contact_ms =
        st->state == RL_STATE_FOLLOWER && now >= r->election_timer_start
            ? (unsigned)(now - r->election_timer_start)
            : 0;
    for (unsigned i = 0; mem && i < nm; i++) {
        const struct rl_meta *m =
            node_meta_find_locked(n, mem[i].raft_id, NULL);
        if (m) {
            mem[i].has_meta = 1;
            mem[i].meta = *m;
        }
    }
    if (mem || nm == 0) {
        free(n->members);
        n->members = mem;
        n->n_members = nm;
    }
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    node_board_post(n);
    if (changed) { /* logged outside mu: the sink may call us */
        struct rl_meta lm;
        int st = raft_state(r);
        const char *who = NULL;
        if (lid && rl_node_meta(n, lid, NULL, &lm) == RL_OK && lm.node_id[0])
            who = lm.node_id;
        node_log(n, 2, "%s in term %llu, leader %s",
                 st == RAFT_LEADER      ? "leader"
                 : st == RAFT_CANDIDATE ? "candidate"
                 : st == RAFT_FOLLOWER  ? "follower"
                                        : "unavailable",
                 (unsigned long long)r->current_term,
                 who   ? who
                 : lid ? "(a node whose id is not known yet)"
                       : "unknown");
    }
}

void node_publish_changed(struct rl_node *n)
{
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&n->raft, &lid, &laddr);
    /* A configuration appended or committed changes the members: a
    ** joiner's caller reads them once its change is answered (which a
    ** message or an append completes), and a leader's read start counts
    ** its voters from them (confirm.c). */
    if (raft_state(&n->raft) != n->seen_state ||
        n->raft.current_term != n->seen_term || lid != n->seen_leader ||
        n->raft.configuration_index != n->seen_conf ||
        n->raft.configuration_uncommitted_index != n->seen_conf_pending)
        node_publish(n);
}
