/*
** raftd/api/cluster.c -- what a hosted node does with a membership or
** leadership request (see cluster.h): route it to the leader, and on the
** leader check it and change the configuration (join, remove, transfer);
** what it knows of the leader and of itself (leader, status).
**
** It must never change the configuration anywhere but on the leader, never
** forward without a deadline (a forward that meets a stale leader is
** bounded by the caller's time, not by a hop count), and never leave a
** refused request half done: every check runs before rl_node_add/remove.
** The gRPC handlers that call it are cluster_rpc.c.
*/
#include "cluster_int.h"
#include "errbuf.h"
#include "addr.h"
#include "fsio.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "node.h"
#include "reqcheck.h"

#include <raft.h>

/* Pause before retrying a join that raft refused because another
** configuration change is in progress. */
#define JOIN_BUSY_RETRY_MS 200
/* How long the leader tries to reach a joining node's Raft address. */
#define JOIN_PROBE_MS 2000

static void copystr(char *dst, size_t len, const char *src)
{
    if (len) {
        snprintf(dst, len, "%s", src ? src : "");
    }
}

const char *rl_cluster_state_name(int state)
{
    switch (state) {
    case RL_STATE_LEADER:
        return "leader";
    case RL_STATE_FOLLOWER:
        return "follower";
    case RL_STATE_CANDIDATE:
        return "candidate";
    default:
        return "unavailable";
    }
}

const char *rl_cluster_role_name(int role)
{
    switch (role) {
    case RL_ROLE_VOTER:
        return "voter";
    case RL_ROLE_STANDBY:
        return "standby";
    case RL_ROLE_SPARE:
        return "spare";
    default:
        return "?";
    }
}

/* Where a request for the leader goes (ROUTE_*, cluster_int.h). */
static int route(struct rl_host *h, struct rl_meta *leader, char *err,
                 size_t errlen)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_node_status st;
    rl_node_status(n, &st);
    if (st.state == RL_STATE_LEADER) {
        return ROUTE_SELF;
    }
    if (st.leader_id == 0 || st.leader_id == st.raft_id) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER
                  ": this node is %s in term %" PRIu64
                  " and knows no leader; retry once one is "
                  "elected (a majority of voters must run)",
                  rl_cluster_state_name(st.state), st.term);
        return ROUTE_NONE;
    }
    if (rl_node_meta(n, st.leader_id, NULL, leader) != RL_NODE_OK ||
        !leader->grpc_addr[0]) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER ": the leader (raft id %" PRIu64
                                       " at %s) has no gRPC address known here "
                                       "yet; retry",
                  st.leader_id, st.leader_addr);
        return ROUTE_NONE;
    }
    return ROUTE_FORWARD;
}

/* A follower that has not heard its leader for several heartbeats: the
** leader is likely paused, dead or cut off, and a request forwarded to it
** would hang until the caller's deadline; an election follows soon. */
#define LEADER_SILENT_MS 500
static int leader_silent(struct rl_host *h)
{
    struct rl_node_status st;
    struct rl_member *ms = NULL;
    unsigned cnt = 0, i;
    int spare = 0;
    rl_node_status(rl_host_node(h), &st);
    if (st.state != RL_STATE_FOLLOWER ||
        st.leader_contact_ms <= LEADER_SILENT_MS) {
        return 0;
    }
    /* A spare gets no heartbeats: its silence means nothing. */
    if (rl_node_members(rl_host_node(h), &ms, &cnt) == RL_NODE_OK) {
        for (i = 0; i < cnt; i++) {
            if (ms[i].raft_id == st.raft_id) {
                spare = ms[i].role == RL_ROLE_SPARE;
            }
        }
        free(ms);
    }
    return !spare;
}

/* route(), but while no leader is known (or the known one is silent,
** leader_silent) wait for one (a node that just
** started or restarted hears the leader within a heartbeat or an
** election), at most half of timeout_ms and 5 s, so that the answer
** "no leader yet" still reaches the caller before its deadline. */
int rl_cluster_route_wait(struct rl_host *h, struct rl_meta *leader,
                          unsigned timeout_ms, char *err, size_t errlen)
{
    unsigned wait = timeout_ms / 2 < 5000 ? timeout_ms / 2 : 5000;
    int64_t deadline = rl_rpc_now_ms() + wait;
    int r;
    while (((r = route(h, leader, err, errlen)) == ROUTE_NONE ||
            (r == ROUTE_FORWARD && leader_silent(h))) &&
           left_ms(deadline) > 0) {
        int64_t left = left_ms(deadline);
        /* Returns at once if a leader is known but not its metadata:
        ** the pause below covers that case. */
        rl_node_wait_leader(rl_host_node(h),
                            (unsigned)(left < 100 ? left : 100));
        rl_sleep_ms(20);
    }
    return r;
}

static unsigned clamp_timeout(unsigned t)
{
    return t ? t : RL_CLUSTER_TIMEOUT_MS;
}

/* The answer to a request forwarded to the leader (rc from peers.h, e its
** text): RL_OK, or a code with err (RL_ERR_NOLEADER: may succeed later). A
*forward that failed in transport reads as
** "no leader" (the leader may be gone, so the request may succeed once
** another is elected); otherwise the leader's reason. */
static int forwarded(const struct rl_meta *leader, rl_err rc, const char *e,
                     char *err, size_t errlen)
{
    if (rc == RL_OK) {
        return 0;
    }
    if (rc == RL_ERR_UNREACHABLE) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER
                  " reachable: forwarding to the leader '%s' "
                  "(gRPC %s) failed: %s",
                  leader->node_id, leader->grpc_addr, e);
    } else {
        rl_seterr(err, errlen, "%s", e);
    }
    return rc == RL_ERR_UNREACHABLE ? RL_ERR_NOLEADER : rc;
}

/* A node call's failure as the caller's code, with err: RL_ERR_NOLEADER
** when leadership moved (a retry may succeed), else RL_ERR_RAFT. */
static rl_err node_err(int rc, const struct rl_result *res, const char *what,
                       char *err, size_t errlen)
{
    if (rc == RL_NODE_NOTLEADER) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER ": leadership moved while %s; retry",
                  what);
        return RL_ERR_NOLEADER;
    }
    rl_seterr(err, errlen, "%s failed: %s%s%s", what, rl_node_strerror(rc),
              res->msg[0] ? ": " : "", res->msg);
    return RL_ERR_RAFT;
}

/* Whether the node refused a membership change because another one is
** under way (raft takes one at a time). Decided on the node's code once
** it has one for it (RL_NODE_CANTCHANGE, an alias of RL_ERR_CANTCHANGE);
** until then the node reports RL_NODE_ERROR with raft's message, and
** this is the one place that reads it. */
static int change_in_progress(int nrc, const struct rl_result *res)
{
    /* The node tells this case by rl_result.detail (lib/err.h). */
    return nrc == RL_NODE_ERROR && res->detail == RL_ERR_CANTCHANGE;
}

static int propose_meta(struct rl_node *n, const struct rl_meta *m,
                        unsigned timeout_ms, char *err, size_t errlen)
{
    uint8_t buf[8 + 3 * (2 + RL_META_STR_MAX)];
    struct rl_proposal p;
    struct rl_result res;
    size_t len = rl_meta_encode(m, buf, sizeof(buf));
    int rc;
    if (len == 0) {
        rl_seterr(err, errlen, "invalid node metadata for '%s'", m->node_id);
        return -1;
    }
    memset(&p, 0, sizeof(p));
    memset(&res, 0, sizeof(res));
    p.kind = RL_ENTRY_META;
    p.payload = buf;
    p.len = len;
    rc = rl_node_propose(n, &p, timeout_ms, &res);
    if (rc != RL_NODE_OK) {
        node_err(rc, &res, "recording the node's addresses", err, errlen);
        return -1;
    }
    return 0;
}

int rl_cluster_node_join(struct rl_host *h, const struct rl_meta *m,
                         unsigned timeout_ms, char *leader_grpc,
                         size_t leader_len, char *err, size_t errlen)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_meta leader, self;
    struct rl_member *ms = NULL;
    struct rl_result res;
    unsigned cnt = 0;
    int found, rc;
    int64_t deadline;
    char e[RL_RPC_ERRMAX + 256];
    timeout_ms = clamp_timeout(timeout_ms);
    switch (rl_cluster_route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return -1;
    case ROUTE_FORWARD:
        rc = rl_cluster_join_once(rl_host_client(h), leader.grpc_addr, m,
                                  timeout_ms, leader_grpc, leader_len, e,
                                  sizeof(e));
        return forwarded(&leader, rc, e, err, errlen);
    }
    deadline = rl_rpc_now_ms() + timeout_ms;
again:
    if (rl_node_members(n, &ms, &cnt) != RL_NODE_OK) {
        rl_seterr(err, errlen, "cannot read the cluster configuration");
        return -1;
    }
    rc = rl_req_join_check(ms, cnt, m, &found, err, errlen);
    memset(&res, 0, sizeof(res));
    if (rc == 0 && found >= 0) {
        /* Already a member (a restart with -join again): complete what an
        ** interrupted join may have left out, and succeed. */
        if (ms[found].role != RL_ROLE_VOTER) {
            int nrc =
                rl_node_assign(n, m->raft_id, RL_ROLE_VOTER, timeout_ms, &res);
            if (nrc != RL_NODE_OK) {
                node_err(nrc, &res, "making the node a voter", err, errlen);
                rc = -1;
            }
        }
        if (rc == 0 && (!ms[found].has_meta ||
                        (m->grpc_addr[0] && strcmp(ms[found].meta.grpc_addr,
                                                   m->grpc_addr) != 0))) {
            rc = propose_meta(n, m, timeout_ms, err, errlen);
        }
    } else if (rc == 0 && rl_addr_reachable(m->raft_addr, JOIN_PROBE_MS, e,
                                            sizeof(e)) != 0) {
        /* A Join whose Raft address nobody listens on would add a member
        ** that never answers (issue 16: "a Join with a dead address left
        ** a stale member"): refused before the configuration changes. */
        rl_seterr(
            err, errlen,
            "node '%s' cannot join: its raft address %s cannot be reached "
            "from the leader (%s); a member nobody can reach would stay in "
            "the configuration. Start the node (it listens before it "
            "joins) or fix its address; nothing changed",
            m->node_id, m->raft_addr, e);
        rc = -1;
    } else if (rc == 0) {
        int64_t left = left_ms(deadline);
        int nrc = rl_node_add(n, m->raft_id, m->raft_addr, RL_ROLE_VOTER, m,
                              left > 0 ? (unsigned)left : 1, &res);
        /* raft takes one configuration change at a time: while another
        ** node's join is uncommitted (its promotion waits for it to catch
        ** up) raft_add refuses at once and nothing changed. Nodes started
        ** together join together, so wait for that change and check
        ** again (the configuration may have changed meanwhile). */
        if (change_in_progress(nrc, &res) &&
            left_ms(deadline) > JOIN_BUSY_RETRY_MS) {
            free(ms);
            ms = NULL;
            rl_sleep_ms(JOIN_BUSY_RETRY_MS);
            goto again;
        }
        if (nrc != RL_NODE_OK) {
            char what[RL_META_STR_MAX + 32];
            snprintf(what, sizeof(what), "adding node '%s'", m->node_id);
            node_err(nrc, &res, what, err, errlen);
            rc = -1;
        }
    }
    free(ms);
    if (rc == 0) {
        rl_host_self(h, &self);
        copystr(leader_grpc, leader_len, self.grpc_addr);
    }
    return rc;
}

/* Waits until a leader other than not_id is known (0: any), at most until
** deadline; fills *leader (its meta, or at least its raft id). */
static int wait_new_leader(struct rl_node *n, uint64_t not_id, int64_t deadline,
                           struct rl_meta *leader)
{
    struct rl_node_status st;
    for (;;) {
        rl_node_status(n, &st);
        if (st.leader_id != 0 && st.leader_id != not_id &&
            (st.state == RL_STATE_LEADER || st.leader_id != st.raft_id)) {
            if (rl_node_meta(n, st.leader_id, NULL, leader) != RL_NODE_OK) {
                memset(leader, 0, sizeof(*leader));
                leader->raft_id = st.leader_id;
                copystr(leader->raft_addr, sizeof(leader->raft_addr),
                        st.leader_addr);
            }
            return 0;
        }
        if (left_ms(deadline) == 0) {
            return -1;
        }
        rl_sleep_ms(20);
    }
}

/* The member with node id node_id: 0 with *m, or -1 with err. */
static int find_member(struct rl_node *n, const char *node_id,
                       struct rl_member *out, unsigned *count, char *err,
                       size_t errlen)
{
    struct rl_member *ms = NULL;
    unsigned cnt = 0, i;
    int rc = -1;
    if (rl_node_members(n, &ms, &cnt) != RL_NODE_OK) {
        rl_seterr(err, errlen, "cannot read the cluster configuration");
        return -1;
    }
    for (i = 0; i < cnt; i++) {
        if (ms[i].has_meta && strcmp(ms[i].meta.node_id, node_id) == 0) {
            *out = ms[i];
            rc = 0;
            break;
        }
    }
    if (count) {
        *count = cnt;
    }
    free(ms);
    if (rc != 0) {
        rl_seterr(
            err, errlen,
            "no node '%s' in the cluster (SELECT id FROM raft_nodes lists "
            "the members); nothing changed",
            node_id);
    }
    return rc;
}

rl_err rl_cluster_node_remove(struct rl_host *h, const char *node_id,
                              unsigned timeout_ms, char *err, size_t errlen)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_meta leader;
    struct rl_member target;
    struct rl_result res;
    struct rl_node_status st;
    unsigned cnt = 0;
    int64_t deadline;
    int rc;
    rl_err frc;
    char e[RL_RPC_ERRMAX + 256];
    timeout_ms = clamp_timeout(timeout_ms);
    deadline = rl_rpc_now_ms() + timeout_ms;
    switch (rl_cluster_route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return RL_ERR_NOLEADER;
    case ROUTE_FORWARD:
        frc = rl_cluster_remove(rl_host_client(h), leader.grpc_addr, node_id,
                                timeout_ms, e, sizeof(e));
        return forwarded(&leader, frc, e, err, errlen);
    }
    if (find_member(n, node_id, &target, &cnt, err, errlen) != 0) {
        return RL_ERR_INVALID;
    }
    memset(&res, 0, sizeof(res));
    rl_node_status(n, &st);
    if (target.raft_id != st.raft_id) {
        rc = rl_node_remove(n, target.raft_id, timeout_ms, &res);
        if (rc != RL_NODE_OK) {
            char what[RL_META_STR_MAX + 32];
            snprintf(what, sizeof(what), "removing node '%s'", node_id);
            return node_err(rc, &res, what, err, errlen);
        }
        return RL_OK;
    }
    /* Removing the leader itself: hand leadership to another voter, then
    ** ask the new leader to remove this node. */
    if (cnt <= 1) {
        rl_seterr(err, errlen,
                  "cannot remove '%s': it is the cluster's only node; nothing "
                  "changed",
                  node_id);
        return RL_ERR_INVALID;
    }
    rc = rl_node_transfer(n, 0, timeout_ms, &res);
    if (rc != RL_NODE_OK) {
        return node_err(rc, &res,
                        "handing leadership over before removing the leader",
                        err, errlen);
    }
    if (wait_new_leader(n, st.raft_id, deadline, &leader) != 0 ||
        !leader.grpc_addr[0]) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER
                  ": leadership was handed over but the new "
                  "leader is not known yet; retry "
                  "raft_remove('%s')",
                  node_id);
        return RL_ERR_NOLEADER;
    }
    if ((frc = rl_cluster_remove(rl_host_client(h), leader.grpc_addr, node_id,
                                 (unsigned)(left_ms(deadline) + 1), e,
                                 sizeof(e))) != RL_OK) {
        /* Keep the "no leader yet" prefix: a retry (this node is now a
        ** follower) forwards the Remove to whoever leads then. */
        rl_seterr(err, errlen,
                  "%s (leadership had moved to '%s' to remove '%s')", e,
                  leader.node_id, node_id);
        return frc;
    }
    return RL_OK;
}

rl_err rl_cluster_node_transfer(struct rl_host *h, const char *node_id,
                                unsigned timeout_ms, char *leader_id,
                                size_t leader_len, char *err, size_t errlen)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_meta leader;
    struct rl_member target;
    struct rl_result res;
    struct rl_node_status st;
    uint64_t to = 0;
    int64_t deadline;
    int rc;
    rl_err frc;
    char e[RL_RPC_ERRMAX + 256];
    timeout_ms = clamp_timeout(timeout_ms);
    deadline = rl_rpc_now_ms() + timeout_ms;
    switch (rl_cluster_route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return RL_ERR_NOLEADER;
    case ROUTE_FORWARD:
        frc = rl_cluster_transfer(rl_host_client(h), leader.grpc_addr, node_id,
                                  timeout_ms, leader_id, leader_len, e,
                                  sizeof(e));
        return forwarded(&leader, frc, e, err, errlen);
    }
    rl_node_status(n, &st);
    if (node_id && *node_id) {
        if (find_member(n, node_id, &target, NULL, err, errlen) != 0) {
            return RL_ERR_INVALID;
        }
        if (target.role != RL_ROLE_VOTER) {
            rl_seterr(err, errlen,
                      "node '%s' is a %s, not a voter: only a voter can lead; "
                      "nothing changed",
                      node_id, rl_cluster_role_name(target.role));
            return RL_ERR_INVALID;
        }
        if (target.raft_id == st.raft_id) {
            copystr(leader_id, leader_len, node_id); /* leads already */
            return RL_OK;
        }
        to = target.raft_id;
    }
    memset(&res, 0, sizeof(res));
    rc = rl_node_transfer(n, to, timeout_ms, &res);
    if (rc != RL_NODE_OK) {
        return node_err(rc, &res, "transferring leadership", err, errlen);
    }
    if (wait_new_leader(n, st.raft_id, deadline, &leader) != 0) {
        rl_seterr(err, errlen,
                  "leadership was handed over but no new leader is known yet; "
                  "SELECT raft_leader() shows it once elected");
        return RL_ERR_TIMEOUT;
    }
    copystr(leader_id, leader_len, leader.node_id);
    return RL_OK;
}

int rl_cluster_node_leader(struct rl_host *h, struct rl_meta *out)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_node_status st;
    memset(out, 0, sizeof(*out));
    rl_node_status(n, &st);
    if (st.state == RL_STATE_LEADER) {
        rl_host_self(h, out);
        return 1;
    }
    if (st.leader_id == 0 || st.leader_id == st.raft_id) {
        return 0;
    }
    if (rl_node_meta(n, st.leader_id, NULL, out) != RL_NODE_OK) {
        memset(out, 0, sizeof(*out));
        out->raft_id = st.leader_id;
        copystr(out->raft_addr, sizeof(out->raft_addr), st.leader_addr);
    }
    return 1;
}

void rl_cluster_node_status(struct rl_host *h, rl_cluster_status *out)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_node_status st;
    struct rl_meta self, leader;
    memset(out, 0, sizeof(*out));
    rl_host_self(h, &self);
    rl_node_status(n, &st);
    copystr(out->id, sizeof(out->id), self.node_id);
    out->raft_id = self.raft_id;
    out->state = rl_cluster_state_name(st.state);
    out->term = st.term;
    if (rl_cluster_node_leader(h, &leader)) {
        out->leader_known = 1;
        copystr(out->leader, sizeof(out->leader), leader.node_id);
        copystr(out->leader_grpc, sizeof(out->leader_grpc), leader.grpc_addr);
    }
    /* The node publishes its indexes at different moments (a follower's
    ** commit index may still read 0 after entries were applied); what was
    ** applied was committed, and what was committed is in the log. */
    out->applied_index = rl_host_applied(h);
    /* Raft's own entries (configuration, barriers) never reach the
    ** database: once the database has every entry the FSM handed on, they
    ** count as applied too (or an idle cluster shows commit one ahead). */
    if (out->applied_index >= st.fsm_index &&
        st.fsm_applied > out->applied_index) {
        out->applied_index = st.fsm_applied;
    }
    out->commit_index = st.commit_index;
    if (out->commit_index < st.fsm_applied) {
        out->commit_index = st.fsm_applied;
    }
    out->last_index = st.last_index;
    if (out->last_index < out->commit_index) {
        out->last_index = out->commit_index;
    }
    out->snapshot_index = st.snapshot_index;
    {
        struct rl_host_counts k;
        rl_host_counts(h, &k);
        out->read_points = k.read_points;
        out->read_rounds = k.read_rounds;
        out->local_calls = k.local_calls;
        out->forward_sessions = k.forward_sessions;
    }
}
