/*
** raftd/api/cluster_rpc.c -- the cluster side of a hosted node's sidecar
** (rl_cluster_serve, see cluster.h): Join, Remove, Transfer, Leader, Nodes,
** Status and ReadIndex answered from the node, and the SQL calls routed:
** writes forwarded to the leader, strong reads given a read point.
**
** It decodes, checks (reqcheck.h) and answers; what changes the cluster
** is cluster.c. It must never send a write twice when its first sending
** may have reached a leader's log (the outcome is then UNKNOWN), and
** never forward without the caller's deadline.
*/
#include "cluster_int.h"
#include "methods.h"
#include "msg.h"
#include "errbuf.h"
#include "fsio.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "node.h"
#include "raftlite.pb-c.h"
#include "reqcheck.h"

/* ---- the sidecar's cluster RPCs ---- */

static unsigned call_timeout(rl_remaining_fn rem, void *ctx)
{
    int64_t left = rem ? rem(ctx) : INT64_MAX;
    if (left > RL_CLUSTER_TIMEOUT_MS) {
        return RL_CLUSTER_TIMEOUT_MS;
    }
    return left > 0 ? (unsigned)left : 1;
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
    return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
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
    return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
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
    return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

static int serve_leader(rl_service *svc, struct rl_host *h, const uint8_t *req,
                        size_t len, rl_rpc_buf *reply, char *err, size_t errlen)
{
    RL_API_DECODE(Proto__LeaderRequest, proto__leader_request__unpack, r,
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
    code = rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
    return code;
}

static int serve_nodes(rl_service *svc, struct rl_host *h, const uint8_t *req,
                       size_t len, rl_rpc_buf *reply, char *err, size_t errlen)
{
    RL_API_DECODE(Proto__NodesRequest, proto__nodes_request__unpack, r,
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
            ni[i].role = (char *)rl_cluster_role_name(ms[i].role);
            ni[i].is_leader = ms[i].is_leader;
            ni[i].on_leader = st.state == RL_STATE_LEADER;
            ni[i].match_index = ms[i].match_index;
            ni[i].last_contact = ms[i].recent_contact == 1;
            pp[i] = &ni[i];
        }
        resp.n_nodes = cnt;
        resp.nodes = pp;
    }
    code = rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
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
    resp.read_points = cs.read_points;
    resp.read_rounds = cs.read_rounds;
    resp.local_calls = cs.local_calls;
    resp.forward_sessions = cs.forward_sessions;
    code = rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
    proto__status_response__free_unpacked(base, NULL);
    return code;
}

/*
** ReadIndex: a read point (the leader's, fresh.c), or with hint_only
** the commit index and L as this node knows them, at once, or with
** confirm_term this node's term (for a leader confirming its read point),
** or with barrier a read point from a barrier (a follower's nudge). A
** request with relay comes from a client process of this host: a host
** that does not lead answers from a round it asks the leader for
** (rl_host_read_index, shared with its other readers) or, for a hint, the
** leader's answer (rl_host_leader_L). Without relay, only the leader answers: a
*request
** never travels further than one hop.
*/
static int serve_read_index(rl_service *svc, struct rl_host *h,
                            const uint8_t *req, size_t len, unsigned tmo,
                            rl_rpc_buf *reply, char *err, size_t errlen)
{
    RL_API_DECODE(Proto__ReadIndexRequest, proto__read_index_request__unpack, r,
                  "ReadIndexRequest");
    Proto__ReadIndexResponse resp = PROTO__READ_INDEX_RESPONSE__INIT;
    struct rl_node_status st;
    char msg[768], e[640] = "";
    uint64_t index = 0, L = 0;
    int hint_only = r->hint_only, relay = r->relay, ok = 0;
    int barrier = r->barrier;
    uint64_t lease_for = r->lease_for, confirm = r->confirm_term;
    uint64_t voter_id = r->voter_id, voter_term = r->voter_term;
    uint64_t known_commit = r->known_commit;
    unsigned lease_ms = 0;
    proto__read_index_request__free_unpacked(r, NULL);
    rl_node_status(rl_host_node(h), &st);
    if (confirm) {
        /* A leader confirming a read: this node's term, whatever its
        ** role (raftd/node/confirm.c). */
        resp.term = rl_node_term(rl_host_node(h));
        ok = 1; /* index and L stay 0: not a read point */
    } else if (st.state != RL_STATE_LEADER && !relay) {
        rl_seterr(msg, sizeof(msg),
                  "not the leader: ReadIndex is served by the leader only");
        resp.error = msg;
    } else if (hint_only) {
        /* The lease is granted before L is read: a write answered after
        ** the grant waits for the holder (raftd/node/lease.c), one answered
        ** before is at most the L answered. */
        if (lease_for && !relay &&
            rl_node_lease_grant(rl_host_node(h), lease_for, &lease_ms) != RL_OK)
            lease_ms = 0;
        ok = rl_host_leader_L(h, tmo, &index, &L, e, sizeof(e)) == 0;
    } else if (barrier && !relay) {
        ok = rl_host_read_barrier(h, tmo, &index, &L, e, sizeof(e)) == 0;
    } else {
        /* A client process of this host (relay) reads from this node's
        ** file: nothing to push for it. */
        ok = rl_host_read_index_for(h, tmo, relay ? 0 : voter_id, voter_term,
                                    relay ? UINT64_MAX : known_commit, &index,
                                    &L, e, sizeof(e)) == 0;
    }
    if (ok) {
        resp.index = index;
        resp.last_effective = L;
        resp.lease_ms = lease_ms;
    } else if (resp.error != msg) { /* INIT points it at "" */
        rl_seterr(msg, sizeof(msg), "no read index: %s", e);
        resp.error = msg;
    }
    return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
}

/* STRONG read: wait until this node applied a quorum-confirmed commit
** index taken after the call began: the same read point as a
** linearizable read in SQL (rl_host_read_point). 0, or -1 with msg. */
static int strong_read_point(struct rl_host *h, unsigned tmo, char *msg,
                             size_t msglen)
{
    struct rl_meta leader;
    int64_t deadline = rl_rpc_now_ms() + tmo;
    char e[RL_RPC_ERRMAX + 256];
    /* During an election, wait for a leader rather than refuse at once. */
    if (rl_cluster_route_wait(h, &leader, tmo, e, sizeof(e)) == ROUTE_NONE) {
        rl_seterr(msg, msglen, "STRONG read refused: %s", e);
        return -1;
    }
    if (rl_host_read_point(h, (unsigned)(left_ms(deadline) + 1), e,
                           sizeof(e)) != 0) { /* SQLITE_BUSY */
        rl_seterr(msg, msglen,
                  "STRONG read refused: %s; retry, or read EVENTUAL", e);
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
    return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err, errlen);
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
        return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err,
                           errlen);
    } else {
        Proto__TransactionResponse resp = PROTO__TRANSACTION_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_UNKNOWN;
        resp.error = msg;
        resp.failed_statement = -1;
        return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err,
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
        switch (
            rl_cluster_route_wait(h, &leader,
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
        return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err,
                           errlen);
    } else {
        Proto__TransactionResponse resp = PROTO__TRANSACTION_RESPONSE__INIT;
        resp.outcome = PROTO__WRITE_OUTCOME__OUTCOME_NOT_LEADER;
        resp.error = msg;
        resp.failed_statement = -1;
        return rl_api_pack(&resp.base, rl_service_max_msg(svc), reply, err,
                           errlen);
    }
}

int rl_cluster_serve(rl_service *svc, struct rl_host *h, const char *method,
                     const uint8_t *req, size_t len, rl_remaining_fn rem,
                     void *ctx, rl_rpc_buf *reply, char *err, size_t errlen)
{
    const rl_api_method *m = rl_api_method_find(method);
    unsigned tmo = call_timeout(rem, ctx);
    reply->data = NULL;
    reply->len = 0;
    switch (m ? (int)m->id : -1) {
    case RL_M_EXECUTE_WRITE:
    case RL_M_EXECUTE_TXN:
        return serve_write(svc, h, method, req, len, rem, ctx, reply, err,
                           errlen);
    case RL_M_EXECUTE_READ:
        return serve_read(svc, h, req, len, tmo, reply, err, errlen);
    case RL_M_JOIN:
        return serve_join(svc, h, req, len, tmo, reply, err, errlen);
    case RL_M_REMOVE:
        return serve_remove(svc, h, req, len, tmo, reply, err, errlen);
    case RL_M_TRANSFER:
        return serve_transfer(svc, h, req, len, tmo, reply, err, errlen);
    case RL_M_LEADER:
        return serve_leader(svc, h, req, len, reply, err, errlen);
    case RL_M_NODES:
        return serve_nodes(svc, h, req, len, reply, err, errlen);
    case RL_M_STATUS:
        return serve_status(svc, h, req, len, rem, ctx, reply, err, errlen);
    case RL_M_READ_INDEX:
        return serve_read_index(svc, h, req, len, tmo, reply, err, errlen);
    default:
        break;
    }
    return RL_CLUSTER_PASS;
}
