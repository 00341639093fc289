/*
** raftd/cluster.c -- membership, leadership and forwarding of a hosted node
** over gRPC (see cluster.h): the client calls to a node's sidecar, what a
** node does with a membership request (on the leader, or forwarded to it),
** and the cluster side of the sidecar's unary RPCs.
**
** It must never change the configuration anywhere but on the leader, never
** forward without a deadline (a forward that meets a stale leader is
** bounded by the caller's time, not by a hop count), and never leave a
** refused request half done: every check runs before rl_node_add/remove.
*/
#include "cluster.h"
#include "errbuf.h"
#include "addr.h"
#include "fsio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"
#include "node.h"
#include "raftlite.pb-c.h"
#include "reqcheck.h"

#include <raft.h>

#define PUB(m)  RL_SVC_PUBLIC m
#define INTL(m) RL_SVC_INTERNAL m

/* Pause between retries of a request that met no leader. */
#define RETRY_MS 100
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

static int64_t left_ms(int64_t deadline)
{
    int64_t now = rl_rpc_now_ms();
    return deadline > now ? deadline - now : 0;
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

static const char *role_name(int role)
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

/* ---- JSON ---- */

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf;

static void jput(jbuf *b, const char *s, size_t n)
{
    /* Keeps room for the terminator; drops what does not fit. */
    if (b->cap == 0 || b->len + n >= b->cap) {
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void jfmt(jbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void jfmt(jbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        jput(b, tmp, (size_t)n);
    }
}

/* A JSON string; bytes below 0x20, '"' and '\\' escaped, the rest as is
** (node ids are validated UTF-8-agnostic bytes without NUL). */
static void jstr(jbuf *b, const char *s)
{
    jput(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jput(b, e, 2);
        } else if (c < 0x20) {
            jfmt(b, "\\u%04x", c);
        } else {
            jput(b, s, 1);
        }
    }
    jput(b, "\"", 1);
}

char *rl_cluster_status_json(const rl_cluster_status *s, char *out,
                             size_t outlen)
{
    jbuf b = {out, 0, outlen};
    if (outlen) {
        out[0] = 0;
    }
    jput(&b, "{\"id\":", 6);
    jstr(&b, s->id);
    /* Raft ids are unsigned 64-bit; SQLite integers are signed, and
    ** raft_nodes.raft_id shows the same bits as a signed integer: so does
    ** this, so that the two compare equal. */
    jfmt(&b, ",\"raft_id\":%lld", (long long)s->raft_id);
    jput(&b, ",\"state\":", 9);
    jstr(&b, s->state ? s->state : "unavailable");
    jfmt(&b, ",\"term\":%" PRIu64, s->term);
    jput(&b, ",\"leader\":", 10);
    if (s->leader_known && s->leader[0]) {
        jstr(&b, s->leader);
    } else {
        jput(&b, "null", 4);
    }
    jput(&b, ",\"leader_grpc\":", 15);
    if (s->leader_known && s->leader_grpc[0]) {
        jstr(&b, s->leader_grpc);
    } else {
        jput(&b, "null", 4);
    }
    jfmt(&b, ",\"commit_index\":%" PRIu64, s->commit_index);
    jfmt(&b, ",\"applied_index\":%" PRIu64, s->applied_index);
    jfmt(&b, ",\"last_index\":%" PRIu64, s->last_index);
    jfmt(&b, ",\"snapshot_index\":%" PRIu64 "}", s->snapshot_index);
    return out;
}

static int pack_msg(const ProtobufCMessage *m, rl_rpc_buf *out)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    out->data = malloc(n ? n : 1);
    if (!out->data) {
        out->len = 0;
        return -1;
    }
    out->len = protobuf_c_message_pack(m, out->data);
    return 0;
}

/* ---- a hosted node ---- */

enum { ROUTE_SELF, ROUTE_FORWARD, ROUTE_NONE };

/* Where a request for the leader goes: this node (the leader), the
** leader's sidecar (*leader filled, grpc_addr non-empty), or nowhere yet
** (err starts with RL_CLUSTER_NO_LEADER). */
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
static int route_wait(struct rl_host *h, struct rl_meta *leader,
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

/* A forward that failed in transport: the leader may be gone, so the
** request may succeed once another is elected. */
static void forward_failed(const struct rl_meta *leader, const char *e,
                           char *err, size_t errlen)
{
    rl_seterr(err, errlen,
              RL_CLUSTER_NO_LEADER " reachable: forwarding to the leader '%s' "
                                   "(gRPC %s) failed: %s",
              leader->node_id, leader->grpc_addr, e);
}

static void node_err(int rc, const struct rl_result *res, const char *what,
                     char *err, size_t errlen)
{
    if (rc == RL_NODE_NOTLEADER) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER ": leadership moved while %s; retry",
                  what);
    } else {
        rl_seterr(err, errlen, "%s failed: %s%s%s", what, rl_node_strerror(rc),
                  res->msg[0] ? ": " : "", res->msg);
    }
}

/* Whether the node refused a membership change because another one is
** under way (raft takes one at a time). Decided on the node's code once
** it has one for it (RL_NODE_CANTCHANGE, an alias of RL_ERR_CANTCHANGE);
** until then the node reports RL_NODE_ERROR with raft's message, and
** this is the one place that reads it. */
static int change_in_progress(int nrc, const struct rl_result *res)
{
#ifdef RL_NODE_CANTCHANGE
    if (nrc == RL_NODE_CANTCHANGE) {
        return 1;
    }
#endif
    return nrc == RL_NODE_ERROR &&
           strstr(res->msg, raft_strerror(RAFT_CANTCHANGE)) != NULL;
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
    switch (route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return -1;
    case ROUTE_FORWARD:
        rc = rl_cluster_join_once(rl_host_client(h), leader.grpc_addr, m,
                                  timeout_ms, leader_grpc, leader_len, e,
                                  sizeof(e));
        if (rc == RL_ERR_UNREACHABLE) {
            forward_failed(&leader, e, err, errlen);
        } else if (rc != RL_OK) {
            rl_seterr(err, errlen, "%s", e);
        }
        return rc == RL_OK ? 0 : -1;
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

int rl_cluster_node_remove(struct rl_host *h, const char *node_id,
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
    switch (route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return -1;
    case ROUTE_FORWARD:
        if ((frc = rl_cluster_remove(rl_host_client(h), leader.grpc_addr,
                                     node_id, timeout_ms, e, sizeof(e))) !=
            RL_OK) {
            if (frc == RL_ERR_UNREACHABLE) {
                forward_failed(&leader, e, err, errlen);
            } else {
                rl_seterr(err, errlen, "%s", e);
            }
            return -1;
        }
        return 0;
    }
    if (find_member(n, node_id, &target, &cnt, err, errlen) != 0) {
        return -1;
    }
    memset(&res, 0, sizeof(res));
    rl_node_status(n, &st);
    if (target.raft_id != st.raft_id) {
        rc = rl_node_remove(n, target.raft_id, timeout_ms, &res);
        if (rc != RL_NODE_OK) {
            char what[RL_META_STR_MAX + 32];
            snprintf(what, sizeof(what), "removing node '%s'", node_id);
            node_err(rc, &res, what, err, errlen);
            return -1;
        }
        return 0;
    }
    /* Removing the leader itself: hand leadership to another voter, then
    ** ask the new leader to remove this node. */
    if (cnt <= 1) {
        rl_seterr(err, errlen,
                  "cannot remove '%s': it is the cluster's only node; nothing "
                  "changed",
                  node_id);
        return -1;
    }
    rc = rl_node_transfer(n, 0, timeout_ms, &res);
    if (rc != RL_NODE_OK) {
        node_err(rc, &res, "handing leadership over before removing the leader",
                 err, errlen);
        return -1;
    }
    if (wait_new_leader(n, st.raft_id, deadline, &leader) != 0 ||
        !leader.grpc_addr[0]) {
        rl_seterr(err, errlen,
                  RL_CLUSTER_NO_LEADER
                  ": leadership was handed over but the new "
                  "leader is not known yet; retry "
                  "raft_remove('%s')",
                  node_id);
        return -1;
    }
    if (rl_cluster_remove(rl_host_client(h), leader.grpc_addr, node_id,
                          (unsigned)(left_ms(deadline) + 1), e,
                          sizeof(e)) != 0) {
        /* Keep the "no leader yet" prefix: a retry (this node is now a
        ** follower) forwards the Remove to whoever leads then. */
        rl_seterr(err, errlen,
                  "%s (leadership had moved to '%s' to remove '%s')", e,
                  leader.node_id, node_id);
        return -1;
    }
    return 0;
}

int rl_cluster_node_transfer(struct rl_host *h, const char *node_id,
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
    switch (route_wait(h, &leader, timeout_ms, err, errlen)) {
    case ROUTE_NONE:
        return -1;
    case ROUTE_FORWARD:
        if ((frc = rl_cluster_transfer(rl_host_client(h), leader.grpc_addr,
                                       node_id, timeout_ms, leader_id,
                                       leader_len, e, sizeof(e))) != RL_OK) {
            if (frc == RL_ERR_UNREACHABLE) {
                forward_failed(&leader, e, err, errlen);
            } else {
                rl_seterr(err, errlen, "%s", e);
            }
            return -1;
        }
        return 0;
    }
    rl_node_status(n, &st);
    if (node_id && *node_id) {
        if (find_member(n, node_id, &target, NULL, err, errlen) != 0) {
            return -1;
        }
        if (target.role != RL_ROLE_VOTER) {
            rl_seterr(err, errlen,
                      "node '%s' is a %s, not a voter: only a voter can lead; "
                      "nothing changed",
                      node_id, role_name(target.role));
            return -1;
        }
        if (target.raft_id == st.raft_id) {
            copystr(leader_id, leader_len, node_id); /* leads already */
            return 0;
        }
        to = target.raft_id;
    }
    memset(&res, 0, sizeof(res));
    rc = rl_node_transfer(n, to, timeout_ms, &res);
    if (rc != RL_NODE_OK) {
        node_err(rc, &res, "transferring leadership", err, errlen);
        return -1;
    }
    if (wait_new_leader(n, st.raft_id, deadline, &leader) != 0) {
        rl_seterr(err, errlen,
                  "leadership was handed over but no new leader is known yet; "
                  "SELECT raft_leader() shows it once elected");
        return -1;
    }
    copystr(leader_id, leader_len, leader.node_id);
    return 0;
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
}

/* ---- the sidecar's cluster RPCs ---- */

static unsigned call_timeout(rl_remaining_fn rem, void *ctx)
{
    int64_t left = rem ? rem(ctx) : INT64_MAX;
    if (left > RL_CLUSTER_TIMEOUT_MS) {
        return RL_CLUSTER_TIMEOUT_MS;
    }
    return left > 0 ? (unsigned)left : 1;
}

static int reply_msg(const ProtobufCMessage *m, size_t max, rl_rpc_buf *reply,
                     char *err, size_t errlen)
{
    if (pack_msg(m, reply) != 0) {
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    if (reply->len > max) {
        rl_rpc_buf_free(reply);
        rl_seterr(err, errlen,
                  "response exceeds the message limit of %zu bytes", max);
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    return RL_RPC_OK;
}

#define DECODE(type, fn, var, what)                                            \
    type *var = fn(NULL, len, req);                                            \
    if (!var) {                                                                \
        rl_seterr(                                                             \
            err, errlen,                                                       \
            "malformed %s: the bytes are not a valid protobuf message of "     \
            "that type",                                                       \
            what);                                                             \
        return RL_RPC_INVALID_ARGUMENT;                                        \
    }

static int serve_join(rl_service *svc, struct rl_host *h, const uint8_t *req,
                      size_t len, unsigned tmo, rl_rpc_buf *reply, char *err,
                      size_t errlen)
{
    Proto__JoinResponse resp = PROTO__JOIN_RESPONSE__INIT;
    rl_cluster_req r;
    char msg[RL_RPC_ERRMAX + 256], lg[RL_META_STR_MAX + 1];
    int code = rl_req_cluster("Join", req, len, &r, msg, sizeof(msg));
    if (code != RL_RPC_OK) {
        rl_seterr(err, errlen, "%s", msg);
        return code;
    }
    lg[0] = 0;
    if (!r.refused && rl_cluster_node_join(h, &r.meta, tmo, lg, sizeof(lg), msg,
                                           sizeof(msg)) == 0) {
        resp.success = 1;
        resp.leader_grpc_addr = lg;
    }
    if (!resp.success) {
        resp.error = msg;
    }
    return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

static int serve_remove(rl_service *svc, struct rl_host *h, const uint8_t *req,
                        size_t len, unsigned tmo, rl_rpc_buf *reply, char *err,
                        size_t errlen)
{
    Proto__RemoveResponse resp = PROTO__REMOVE_RESPONSE__INIT;
    rl_cluster_req r;
    char msg[RL_RPC_ERRMAX + 256] = "";
    int code = rl_req_cluster("Remove", req, len, &r, msg, sizeof(msg));
    if (code != RL_RPC_OK) {
        rl_seterr(err, errlen, "%s", msg);
        return code;
    }
    if (!r.refused &&
        rl_cluster_node_remove(h, r.node_id, tmo, msg, sizeof(msg)) == 0) {
        resp.success = 1;
    }
    if (!resp.success) {
        resp.error = msg;
    }
    return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

static int serve_transfer(rl_service *svc, struct rl_host *h,
                          const uint8_t *req, size_t len, unsigned tmo,
                          rl_rpc_buf *reply, char *err, size_t errlen)
{
    Proto__TransferResponse resp = PROTO__TRANSFER_RESPONSE__INIT;
    rl_cluster_req r;
    char msg[RL_RPC_ERRMAX + 256] = "", lid[RL_META_STR_MAX + 1] = "";
    int code = rl_req_cluster("Transfer", req, len, &r, msg, sizeof(msg));
    if (code != RL_RPC_OK) {
        rl_seterr(err, errlen, "%s", msg);
        return code;
    }
    if (!r.refused &&
        rl_cluster_node_transfer(h, r.node_id, tmo, lid, sizeof(lid), msg,
                                 sizeof(msg)) == 0) {
        resp.success = 1;
        resp.leader_id = lid;
    } else {
        resp.error = msg;
    }
    return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

static int serve_leader(rl_service *svc, struct rl_host *h, const uint8_t *req,
                        size_t len, rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__LeaderRequest, proto__leader_request__unpack, r,
           "LeaderRequest");
    Proto__LeaderResponse resp = PROTO__LEADER_RESPONSE__INIT;
    struct rl_meta m;
    int code;
    proto__leader_request__free_unpacked(r, NULL);
    if (rl_cluster_node_leader(h, &m)) {
        resp.known = 1;
        resp.node_id = m.node_id;
        resp.grpc_addr = m.grpc_addr;
        resp.raft_addr = m.raft_addr;
    } else {
        resp.error = (char *)RL_CLUSTER_NO_LEADER
            ": an election may be running (a majority of voters must run)";
    }
    code = reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
    return code;
}

static int serve_nodes(rl_service *svc, struct rl_host *h, const uint8_t *req,
                       size_t len, rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__NodesRequest, proto__nodes_request__unpack, r,
           "NodesRequest");
    Proto__NodesResponse resp = PROTO__NODES_RESPONSE__INIT;
    struct rl_node *n = rl_host_node(h);
    struct rl_node_status st;
    struct rl_member *ms = NULL;
    Proto__NodeInfo *ni = NULL, **pp = NULL;
    unsigned cnt = 0, i;
    int code;
    proto__nodes_request__free_unpacked(r, NULL);
    rl_node_status(n, &st);
    if (rl_node_members(n, &ms, &cnt) != RL_NODE_OK) {
        resp.error = (char *)"cannot read the cluster configuration";
    } else if (!(ni = calloc(cnt ? cnt : 1, sizeof(*ni))) ||
               !(pp = calloc(cnt ? cnt : 1, sizeof(*pp)))) {
        free(ms);
        free(ni);
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    } else {
        for (i = 0; i < cnt; i++) {
            proto__node_info__init(&ni[i]);
            ni[i].node_id = ms[i].has_meta ? ms[i].meta.node_id : (char *)"";
            ni[i].raft_id = ms[i].raft_id;
            ni[i].raft_addr = ms[i].raft_addr;
            ni[i].grpc_addr =
                ms[i].has_meta ? ms[i].meta.grpc_addr : (char *)"";
            ni[i].role = (char *)role_name(ms[i].role);
            ni[i].is_leader = ms[i].is_leader;
            ni[i].on_leader = st.state == RL_STATE_LEADER;
            ni[i].match_index = ms[i].match_index;
            ni[i].last_contact = ms[i].recent_contact == 1;
            pp[i] = &ni[i];
        }
        resp.n_nodes = cnt;
        resp.nodes = pp;
    }
    code = reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
    free(ni);
    free(pp);
    free(ms);
    return code;
}

/* Status: the local service's answer with the node's state filled in. */
static int serve_status(rl_service *svc, struct rl_host *h, const uint8_t *req,
                        size_t len, rl_remaining_fn rem, void *ctx,
                        rl_rpc_buf *reply, char *err, size_t errlen)
{
    Proto__StatusResponse *base, resp = PROTO__STATUS_RESPONSE__INIT;
    rl_cluster_status cs;
    rl_rpc_buf local;
    int code = rl_service_unary(svc, "Status", req, len, rem, ctx, &local, err,
                                errlen);
    if (code != RL_RPC_OK) {
        return code;
    }
    base = proto__status_response__unpack(NULL, local.len, local.data);
    rl_rpc_buf_free(&local);
    if (!base) {
        rl_seterr(err, errlen, "out of memory");
        return RL_RPC_RESOURCE_EXHAUSTED;
    }
    rl_cluster_node_status(h, &cs);
    resp.node_id = base->node_id;
    resp.grpc_addr = base->grpc_addr;
    resp.raft_addr = base->raft_addr;
    resp.role = (char *)cs.state;
    resp.database = base->database;
    resp.version = base->version;
    resp.sqlite_version = base->sqlite_version;
    resp.calls_served = base->calls_served;
    resp.raft_id = cs.raft_id;
    resp.state = (char *)cs.state;
    resp.term = cs.term;
    resp.leader_id = cs.leader;
    resp.leader_grpc = cs.leader_grpc;
    resp.commit_index = cs.commit_index;
    resp.applied_index = cs.applied_index;
    resp.last_index = cs.last_index;
    resp.snapshot_index = cs.snapshot_index;
    code = reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
    proto__status_response__free_unpacked(base, NULL);
    return code;
}

static int serve_read_index(rl_service *svc, struct rl_host *h,
                            const uint8_t *req, size_t len, unsigned tmo,
                            rl_rpc_buf *reply, char *err, size_t errlen)
{
    DECODE(Proto__ReadIndexRequest, proto__read_index_request__unpack, r,
           "ReadIndexRequest");
    Proto__ReadIndexResponse resp = PROTO__READ_INDEX_RESPONSE__INIT;
    struct rl_result res;
    char msg[512];
    int rc;
    int hint_only = r->hint_only;
    proto__read_index_request__free_unpacked(r, NULL);
    memset(&res, 0, sizeof(res));
    if (hint_only) {
        struct rl_node_status st;
        struct rl_meta m;
        rl_node_status(rl_host_node(h), &st);
        rc = st.state == RL_STATE_LEADER ? RL_NODE_OK : RL_NODE_NOTLEADER;
        res.index = st.commit_index;
        resp.last_effective = st.L;
        if (rc == RL_NODE_NOTLEADER && st.leader_id != 0 &&
            st.leader_id != st.raft_id &&
            rl_node_meta(rl_host_node(h), st.leader_id, NULL, &m) ==
                RL_NODE_OK &&
            m.grpc_addr[0]) {
            /* A client process asks its host, a follower: the leader's. */
            uint64_t ci = 0, L = 0;
            char e[256];
            if (rl_cluster_read_hint(rl_host_client(h), m.grpc_addr, tmo, 1,
                                     &ci, &L, e, sizeof e) == 0) {
                rc = RL_NODE_OK;
                res.index = ci;
                resp.last_effective = L;
            }
        }
    } else {
        rc = rl_node_read_index(rl_host_node(h), tmo, &res);
    }
    if (rc == RL_NODE_OK && hint_only) {
        resp.index = res.index;
    } else if (rc == RL_NODE_OK) {
        struct rl_node_status st;
        rl_node_status(rl_host_node(h), &st);
        resp.index = res.index;
        resp.last_effective = st.L;
    } else if (rc == RL_NODE_NOTLEADER) {
        rl_seterr(msg, sizeof(msg),
                  "not the leader: ReadIndex is served by the leader only");
        resp.error = msg;
    } else {
        rl_seterr(msg, sizeof(msg), "no read index: %s%s%s",
                  rl_node_strerror(rc), res.msg[0] ? ": " : "", res.msg);
        resp.error = msg;
    }
    return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

/* STRONG read: wait until this node applied a quorum-confirmed commit
** index taken after the call began. 0, or -1 with msg. */
static int strong_read_point(struct rl_host *h, unsigned tmo, char *msg,
                             size_t msglen)
{
    struct rl_node *n = rl_host_node(h);
    struct rl_meta leader;
    struct rl_result res;
    uint64_t index = 0;
    int64_t deadline = rl_rpc_now_ms() + tmo;
    char e[RL_RPC_ERRMAX + 256];
    int rc;
    switch (route_wait(h, &leader, tmo, e, sizeof(e))) {
    case ROUTE_NONE:
        rl_seterr(msg, msglen, "STRONG read refused: %s", e);
        return -1;
    case ROUTE_SELF:
        memset(&res, 0, sizeof(res));
        rc = rl_node_read_index(n, tmo, &res);
        if (rc != RL_NODE_OK) {
            rl_seterr(
                msg, msglen,
                "STRONG read refused: the leader could not confirm its "
                "commit index with a quorum (%s); retry, or read EVENTUAL",
                rl_node_strerror(rc));
            return -1;
        }
        index = res.index;
        break;
    default:
        if (rl_cluster_read_index(rl_host_client(h), leader.grpc_addr, tmo,
                                  &index, NULL, e, sizeof(e)) != 0) {
            rl_seterr(msg, msglen,
                      "STRONG read refused: no read index from the leader '%s' "
                      "(gRPC %s): %s",
                      leader.node_id, leader.grpc_addr, e);
            return -1;
        }
    }
    rc = rl_node_wait_applied(n, index, (unsigned)(left_ms(deadline) + 1));
    if (rc != RL_NODE_OK) {
        rl_seterr(msg, msglen,
                  "STRONG read refused: this node did not apply index %" PRIu64
                  " in time (%s); retry, or read on the leader",
                  index, rl_node_strerror(rc));
        return -1;
    }
    return 0;
}

static int serve_read(rl_service *svc, struct rl_host *h, const uint8_t *req,
                      size_t len, unsigned tmo, rl_rpc_buf *reply, char *err,
                      size_t errlen)
{
    Proto__ReadResponse resp = PROTO__READ_RESPONSE__INIT;
    rl_cluster_req r;
    char msg[RL_RPC_ERRMAX + 512];
    int code = rl_req_cluster("ExecuteRead", req, len, &r, msg, sizeof(msg));
    if (code != RL_RPC_OK) {
        rl_seterr(err, errlen, "%s", msg);
        return code;
    }
    if (!r.strong || strong_read_point(h, tmo, msg, sizeof(msg)) == 0) {
        return RL_CLUSTER_PASS;
    }
    resp.error = msg;
    return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

/* A forwarded write in flight is watched (rl_rpc_unary_watch): once the
** node it went to is no longer the leader this node knows (another one
** was elected: it was paused, cut off or dead), the call is cancelled
** instead of waiting for the caller's deadline. */
struct fwd_watch {
    struct rl_host *h;
    uint64_t to; /* raft id the write went to */
    int cancelled;
};

static int fwd_stop(void *arg)
{
    struct fwd_watch *w = arg;
    struct rl_node_status st;
    rl_node_status(rl_host_node(w->h), &st);
    if (st.state == RL_STATE_LEADER ||
        (st.leader_id != 0 && st.leader_id != w->to)) {
        w->cancelled = 1;
    }
    return w->cancelled;
}

/* A write's answer with outcome UNKNOWN and msg. */
static int unknown_reply(rl_service *svc, const char *method, char *msg,
                         rl_rpc_buf *reply, char *err, size_t errlen)
{
    if (strcmp(method, "ExecuteWrite") == 0) {
        Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_UNKNOWN;
        resp.error = msg;
        return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err,
                         errlen);
    } else {
        Proto__TransactionResponse resp = PROTO__TRANSACTION_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_UNKNOWN;
        resp.error = msg;
        resp.failed_statement = -1;
        return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err,
                         errlen);
    }
}

/* The outcome field of a forwarded write's answer (0 if it has none). */
static int reply_outcome(const char *method, const rl_rpc_buf *reply)
{
    int oc = 0;
    if (strcmp(method, "ExecuteWrite") == 0) {
        Proto__WriteResponse *w =
            proto__write_response__unpack(NULL, reply->len, reply->data);
        if (w) {
            oc = w->success ? 0 : (int)w->outcome;
            proto__write_response__free_unpacked(w, NULL);
        }
    } else {
        Proto__TransactionResponse *t =
            proto__transaction_response__unpack(NULL, reply->len, reply->data);
        if (t) {
            oc = t->success ? 0 : (int)t->outcome;
            proto__transaction_response__free_unpacked(t, NULL);
        }
    }
    return oc;
}

/* ExecuteWrite / ExecuteTransaction: the leader runs them (PASS); a
** follower sends the same request bytes to the leader and returns its
** answer. An answer NOT_LEADER (definitely not written: the node lost its
** leadership) is sent again to the leader elected next, while the call's
** time lasts; any other answer, UNKNOWN included, goes back as is (sending
** a write whose fate is unknown again could apply it twice). */
static int serve_write(rl_service *svc, struct rl_host *h, const char *method,
                       const uint8_t *req, size_t len, rl_remaining_fn rem,
                       void *ctx, rl_rpc_buf *reply, char *err, size_t errlen)
{
    struct rl_meta leader;
    char msg[RL_RPC_ERRMAX + 512], full[128], e[RL_RPC_ERRMAX];
    /* The whole time the caller gave (a large write may need it); no
    ** deadline (0) if the caller set none. */
    int64_t left = rem ? rem(ctx) : INT64_MAX;
    int64_t tmo = left == INT64_MAX ? 0 : left > 0 ? left : 1;
    int code;
    int64_t deadline = tmo ? rl_rpc_now_ms() + tmo : 0;
    /* How long a refusal may be re-sent: the call's time, or (no
    ** deadline) the cluster layer's usual limit. */
    int64_t resend_until =
        deadline ? deadline : rl_rpc_now_ms() + RL_CLUSTER_TIMEOUT_MS;
    uint64_t tried = 0; /* raft id of a leader that answered NOT_LEADER */
    int unsent;         /* the forward failed before its request left */
    struct fwd_watch watch;
    for (;;) {
        int64_t now_left = deadline ? deadline - rl_rpc_now_ms() : 0;
        if (deadline && now_left < 1) {
            now_left = 1;
        }
        switch (route_wait(h, &leader,
                           !deadline || now_left > RL_CLUSTER_TIMEOUT_MS
                               ? RL_CLUSTER_TIMEOUT_MS
                               : (unsigned)now_left,
                           msg, sizeof(msg))) {
        case ROUTE_SELF:
            rl_rpc_buf_free(reply); /* a former leader's refusal, if any */
            return RL_CLUSTER_PASS;
        case ROUTE_FORWARD:
            if (leader.raft_id == tried) {
                /* Still the node that refused: wait for the next one. */
                if (left_ms(resend_until) <= RETRY_MS) {
                    return RL_RPC_OK; /* *reply holds its answer */
                }
                rl_sleep_ms(RETRY_MS / 4);
                continue;
            }
            rl_rpc_buf_free(reply);
            snprintf(full, sizeof(full), "%s%s", RL_SVC_PUBLIC, method);
            e[0] = 0;
            watch.h = h;
            watch.to = leader.raft_id;
            watch.cancelled = 0;
            code = rl_rpc_unary_watch(
                rl_host_client(h), leader.grpc_addr, full, req, len,
                deadline ? left_ms(deadline) : 0, fwd_stop, &watch, reply,
                &unsent, e, sizeof(e));
            if (watch.cancelled && code != RL_RPC_OK) {
                /* It may have reached the old leader's log: its fate is
                ** unknown, and sending it again could apply it twice. */
                rl_seterr(msg, sizeof(msg),
                          "outcome unknown: leadership moved away from '%s' "
                          "(gRPC %s) while it held the write (paused, cut off "
                          "or dead?); the write may or may not take effect: "
                          "check before retrying",
                          leader.node_id, leader.grpc_addr);
                return unknown_reply(svc, method, msg, reply, err, errlen);
            }
            if (code == RL_RPC_UNAVAILABLE && !unsent) {
                /* The connection broke after the request went out (the
                ** leader died holding it: "Socket closed"): it may be in
                ** the leader's log, so its fate is unknown (a gRPC error
                ** would read as "not sent"; only a failed connect is). */
                rl_seterr(msg, sizeof(msg),
                          "outcome unknown: the connection to the leader '%s' "
                          "(gRPC %s) broke while it held the write (%s); the "
                          "write may or may not take effect: check before "
                          "retrying",
                          leader.node_id, leader.grpc_addr, e);
                return unknown_reply(svc, method, msg, reply, err, errlen);
            }
            if (code != RL_RPC_OK) {
                rl_seterr(
                    err, errlen,
                    "forwarding %s to the leader '%s' (gRPC %s) failed: %s",
                    method, leader.node_id, leader.grpc_addr, e);
                return code;
            }
            if (reply_outcome(method, reply) != RL_OUTCOME_NOT_LEADER ||
                left_ms(resend_until) <= RETRY_MS) {
                return code;
            }
            tried = leader.raft_id;
            continue;
        }
        if (reply->data) {
            return RL_RPC_OK; /* a refusal from a former leader */
        }
        break;
    }
    if (strcmp(method, "ExecuteWrite") == 0) {
        Proto__WriteResponse resp = PROTO__WRITE_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_NOT_LEADER;
        resp.error = msg;
        return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err,
                         errlen);
    } else {
        Proto__TransactionResponse resp = PROTO__TRANSACTION_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_NOT_LEADER;
        resp.error = msg;
        resp.failed_statement = -1;
        return reply_msg(&resp.base, rl_service_max_msg(svc), reply, err,
                         errlen);
    }
}

int rl_cluster_serve(rl_service *svc, struct rl_host *h, const char *method,
                     const uint8_t *req, size_t len, rl_remaining_fn rem,
                     void *ctx, rl_rpc_buf *reply, char *err, size_t errlen)
{
    unsigned tmo = call_timeout(rem, ctx);
    reply->data = NULL;
    reply->len = 0;
    if (strcmp(method, "ExecuteWrite") == 0 ||
        strcmp(method, "ExecuteTransaction") == 0) {
        return serve_write(svc, h, method, req, len, rem, ctx, reply, err,
                           errlen);
    }
    if (strcmp(method, "ExecuteRead") == 0) {
        return serve_read(svc, h, req, len, tmo, reply, err, errlen);
    }
    if (strcmp(method, "Join") == 0) {
        return serve_join(svc, h, req, len, tmo, reply, err, errlen);
    }
    if (strcmp(method, "Remove") == 0) {
        return serve_remove(svc, h, req, len, tmo, reply, err, errlen);
    }
    if (strcmp(method, "Transfer") == 0) {
        return serve_transfer(svc, h, req, len, tmo, reply, err, errlen);
    }
    if (strcmp(method, "Leader") == 0) {
        return serve_leader(svc, h, req, len, reply, err, errlen);
    }
    if (strcmp(method, "Nodes") == 0) {
        return serve_nodes(svc, h, req, len, reply, err, errlen);
    }
    if (strcmp(method, "Status") == 0) {
        return serve_status(svc, h, req, len, rem, ctx, reply, err, errlen);
    }
    if (strcmp(method, "ReadIndex") == 0) {
        return serve_read_index(svc, h, req, len, tmo, reply, err, errlen);
    }
    return RL_CLUSTER_PASS;
}
