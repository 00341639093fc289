/*
** raftd/host/peers.c -- the calls a node (or a client process) makes to
** another node's sidecar over gRPC: Join, Remove, Transfer, Leader, Nodes,
** Status, ReadIndex and ForwardTxn (see peers.h).
**
** It only encodes requests, sends them (rpc.h) and decodes the answers:
** it must never change this process's node or database, and never wait
** without the caller's limit. Outcomes come back as rl_err codes (lib/
** err.h) that the caller decides on; the text in err is for the person
** who meets it.
*/
#include "peers.h"
#include "errbuf.h"
#include "fsio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "node.h"
#include "raftlite.pb-c.h"

#define PUB(m)  RL_SVC_PUBLIC m
#define INTL(m) RL_SVC_INTERNAL m

/* Pause between retries of a Join that met no leader. */
#define RETRY_MS 100
/* How long a join retries a peer that does not answer at all (it may be
** starting at the same moment); after that the address is reported. */
#define UNREACHABLE_GRACE_MS 3000

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

static int role_of(const char *name)
{
    if (strcmp(name, "voter") == 0) {
        return RL_ROLE_VOTER;
    }
    if (strcmp(name, "standby") == 0) {
        return RL_ROLE_STANDBY;
    }
    return RL_ROLE_SPARE;
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

/* One unary call: RL_OK with *reply, or with err naming target
** RL_ERR_UNREACHABLE (no node answers there), RL_ERR_TIMEOUT (no answer in
** time), RL_ERR_REMOTE (it answered with an error status), RL_ERR_INVALID
** (no target) or RL_ERR_NOMEM. */
static rl_err call(rl_rpc_client *cl, const char *target, const char *method,
                   const ProtobufCMessage *req, int64_t timeout_ms,
                   rl_rpc_buf *reply, char *err, size_t errlen)
{
    rl_rpc_buf rb;
    char e[RL_RPC_ERRMAX];
    int code;
    reply->data = NULL;
    reply->len = 0;
    if (!target || !*target) {
        rl_seterr(err, errlen, "no gRPC address to send %s to",
                  strrchr(method, '/') + 1);
        return RL_ERR_INVALID;
    }
    if (pack_msg(req, &rb) != 0) {
        rl_seterr(err, errlen, "out of memory");
        return RL_ERR_NOMEM;
    }
    e[0] = 0;
    code = rl_rpc_unary(cl, target, method, rb.data, rb.len,
                        timeout_ms > 0 ? timeout_ms : 1, reply, e, sizeof(e));
    rl_rpc_buf_free(&rb);
    if (code == RL_RPC_OK) {
        return RL_OK;
    }
    if (code == RL_RPC_UNAVAILABLE) {
        rl_seterr(err, errlen,
                  "cannot reach the node at %s (%s): is a raftlite node "
                  "serving gRPC there?",
                  target, e);
        return RL_ERR_UNREACHABLE;
    }
    if (code == RL_RPC_DEADLINE_EXCEEDED) {
        rl_seterr(err, errlen,
                  "the node at %s did not answer %s in %lld ms: %s", target,
                  strrchr(method, '/') + 1, (long long)timeout_ms, e);
        return RL_ERR_TIMEOUT;
    }
    rl_seterr(err, errlen, "%s at %s failed (gRPC status %d): %s",
              strrchr(method, '/') + 1, target, code, e);
    return RL_ERR_REMOTE;
}

/* An answer that does not decode: RL_ERR_CORRUPT with err. */
static rl_err malformed(char *err, size_t errlen, const char *what,
                        const char *target)
{
    rl_seterr(err, errlen,
              "malformed %s from %s: not a raftlite node of this version?",
              what, target);
    return RL_ERR_CORRUPT;
}

/* A peer's refusal (the error field of a cluster response, the only
** form the protocol has): RL_ERR_NOLEADER when it starts with
** RL_CLUSTER_NO_LEADER (it may succeed later; the text is the protocol's
** code), else RL_ERR_REMOTE. */
static rl_err refusal(const char *msg)
{
    return strncmp(msg, RL_CLUSTER_NO_LEADER, strlen(RL_CLUSTER_NO_LEADER)) == 0
               ? RL_ERR_NOLEADER
               : RL_ERR_REMOTE;
}

/* One call whose answer decodes as d: RL_OK with *out (free it with
** protobuf_c_message_free_unpacked), or a code with err. */
static rl_err ask(rl_rpc_client *cl, const char *target, const char *method,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *d, int64_t timeout_ms,
                  void *out, char *err, size_t errlen)
{
    ProtobufCMessage **msg = out;
    rl_rpc_buf reply;
    rl_err rc;
    *msg = NULL;
    if ((rc = call(cl, target, method, req, timeout_ms, &reply, err, errlen)) !=
        RL_OK) {
        return rc;
    }
    *msg = protobuf_c_message_unpack(d, NULL, reply.len, reply.data);
    rl_rpc_buf_free(&reply);
    return *msg ? RL_OK : malformed(err, errlen, d->short_name, target);
}

rl_err rl_cluster_join_once(rl_rpc_client *cl, const char *peer,
                            const struct rl_meta *self, int64_t timeout_ms,
                            char *leader_grpc, size_t leader_len, char *err,
                            size_t errlen)
{
    Proto__JoinRequest req = PROTO__JOIN_REQUEST__INIT;
    Proto__JoinResponse *r;
    rl_err rc;
    req.node_id = (char *)self->node_id;
    req.raft_addr = (char *)self->raft_addr;
    req.grpc_addr = (char *)self->grpc_addr;
    if ((rc = ask(cl, peer, PUB("Join"), &req.base,
                  &proto__join_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    if (r->success) {
        copystr(leader_grpc, leader_len,
                r->leader_grpc_addr[0] ? r->leader_grpc_addr : peer);
        rc = RL_OK;
    } else {
        rl_seterr(err, errlen, "%s", r->error[0] ? r->error : "join refused");
        rc = refusal(r->error);
    }
    proto__join_response__free_unpacked(r, NULL);
    return rc;
}

rl_err rl_cluster_join(rl_rpc_client *cl, const char *peer_grpc,
                       const struct rl_meta *self, unsigned timeout_ms,
                       char *leader_grpc, size_t leader_len, char *err,
                       size_t errlen)
{
    int64_t start = rl_rpc_now_ms();
    int64_t deadline = start + (timeout_ms ? timeout_ms : 1);
    char e[RL_RPC_ERRMAX + 256];
    int tries = 0;
    rl_err rc;
    for (;;) {
        e[0] = 0;
        tries++;
        rc = rl_cluster_join_once(cl, peer_grpc, self, left_ms(deadline),
                                  leader_grpc, leader_len, e, sizeof(e));
        /* Retried: no leader yet, or a peer that does not answer during
        ** its grace (it may be starting at the same moment). */
        if ((rc != RL_ERR_NOLEADER && rc != RL_ERR_UNREACHABLE) ||
            (rc == RL_ERR_UNREACHABLE &&
             rl_rpc_now_ms() - start >= UNREACHABLE_GRACE_MS)) {
            break;
        }
        if (left_ms(deadline) <= RETRY_MS) {
            break;
        }
        rl_sleep_ms(RETRY_MS);
    }
    if (rc != RL_OK) {
        rl_seterr(err, errlen, "joining through %s failed%s: %s", peer_grpc,
                  tries > 1 ? " (retried)" : "", e);
    }
    return rc;
}

rl_err rl_cluster_remove(rl_rpc_client *cl, const char *target,
                         const char *node_id, unsigned timeout_ms, char *err,
                         size_t errlen)
{
    Proto__RemoveRequest req = PROTO__REMOVE_REQUEST__INIT;
    Proto__RemoveResponse *r;
    rl_err rc;
    req.node_id = (char *)node_id;
    if ((rc = ask(cl, target, PUB("Remove"), &req.base,
                  &proto__remove_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    rc = r->success ? RL_OK : refusal(r->error);
    if (!r->success) {
        rl_seterr(err, errlen, "%s", r->error[0] ? r->error : "remove refused");
    }
    proto__remove_response__free_unpacked(r, NULL);
    return rc;
}

rl_err rl_cluster_transfer(rl_rpc_client *cl, const char *target,
                           const char *node_id, unsigned timeout_ms,
                           char *leader_id, size_t leader_len, char *err,
                           size_t errlen)
{
    Proto__TransferRequest req = PROTO__TRANSFER_REQUEST__INIT;
    Proto__TransferResponse *r;
    rl_err rc;
    req.node_id = (char *)(node_id ? node_id : "");
    if ((rc = ask(cl, target, PUB("Transfer"), &req.base,
                  &proto__transfer_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    rc = r->success ? RL_OK : refusal(r->error);
    if (r->success) {
        copystr(leader_id, leader_len, r->leader_id);
    } else {
        rl_seterr(err, errlen, "%s",
                  r->error[0] ? r->error : "transfer refused");
    }
    proto__transfer_response__free_unpacked(r, NULL);
    return rc;
}

int rl_cluster_leader(rl_rpc_client *cl, const char *target,
                      unsigned timeout_ms, struct rl_meta *out, char *err,
                      size_t errlen)
{
    Proto__LeaderRequest req = PROTO__LEADER_REQUEST__INIT;
    Proto__LeaderResponse *r;
    int rc;
    memset(out, 0, sizeof(*out));
    if (ask(cl, target, PUB("Leader"), &req.base,
            &proto__leader_response__descriptor, timeout_ms, &r, err,
            errlen) != RL_OK) {
        return -1;
    }
    rc = r->known ? 1 : 0;
    if (r->known) {
        out->raft_id = rl_raft_id_of(r->node_id[0] ? r->node_id : "?");
        copystr(out->node_id, sizeof(out->node_id), r->node_id);
        copystr(out->raft_addr, sizeof(out->raft_addr), r->raft_addr);
        copystr(out->grpc_addr, sizeof(out->grpc_addr), r->grpc_addr);
    }
    proto__leader_response__free_unpacked(r, NULL);
    return rc;
}

rl_err rl_cluster_nodes(rl_rpc_client *cl, const char *target,
                        unsigned timeout_ms, struct rl_member **out,
                        unsigned *count, char *err, size_t errlen)
{
    Proto__NodesRequest req = PROTO__NODES_REQUEST__INIT;
    Proto__NodesResponse *r;
    struct rl_member *ms;
    size_t i;
    rl_err rc;
    *out = NULL;
    *count = 0;
    if ((rc = ask(cl, target, PUB("Nodes"), &req.base,
                  &proto__nodes_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    if (r->error[0]) {
        rl_seterr(err, errlen, "%s", r->error);
        rc = refusal(r->error);
        proto__nodes_response__free_unpacked(r, NULL);
        return rc;
    }
    ms = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*ms));
    if (!ms) {
        rl_seterr(err, errlen, "out of memory");
        proto__nodes_response__free_unpacked(r, NULL);
        return RL_ERR_NOMEM;
    }
    for (i = 0; i < r->n_nodes; i++) {
        const Proto__NodeInfo *ni = r->nodes[i];
        struct rl_member *m = &ms[i];
        m->raft_id = ni->raft_id;
        m->role = role_of(ni->role);
        m->is_leader = ni->is_leader;
        copystr(m->raft_addr, sizeof(m->raft_addr), ni->raft_addr);
        m->has_meta = ni->node_id[0] != 0;
        m->meta.raft_id = ni->raft_id;
        copystr(m->meta.node_id, sizeof(m->meta.node_id), ni->node_id);
        copystr(m->meta.raft_addr, sizeof(m->meta.raft_addr), ni->raft_addr);
        copystr(m->meta.grpc_addr, sizeof(m->meta.grpc_addr), ni->grpc_addr);
        m->match_index = ni->match_index;
        m->recent_contact = ni->on_leader ? (ni->last_contact ? 1 : 0) : -1;
    }
    *out = ms;
    *count = (unsigned)r->n_nodes;
    proto__nodes_response__free_unpacked(r, NULL);
    return RL_OK;
}

rl_err rl_cluster_get_status(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, rl_cluster_status *out,
                             char *err, size_t errlen)
{
    Proto__StatusRequest req = PROTO__STATUS_REQUEST__INIT;
    Proto__StatusResponse *r;
    rl_err rc;
    memset(out, 0, sizeof(*out));
    if ((rc = ask(cl, target, PUB("Status"), &req.base,
                  &proto__status_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    copystr(out->id, sizeof(out->id), r->node_id);
    out->raft_id = r->raft_id;
    out->state = strcmp(r->state, "leader") == 0      ? "leader"
                 : strcmp(r->state, "follower") == 0  ? "follower"
                 : strcmp(r->state, "candidate") == 0 ? "candidate"
                                                      : "unavailable";
    out->term = r->term;
    out->leader_known = r->leader_id[0] != 0;
    copystr(out->leader, sizeof(out->leader), r->leader_id);
    copystr(out->leader_grpc, sizeof(out->leader_grpc), r->leader_grpc);
    out->commit_index = r->commit_index;
    out->applied_index = r->applied_index;
    out->last_index = r->last_index;
    out->snapshot_index = r->snapshot_index;
    out->read_points = r->read_points;
    out->read_rounds = r->read_rounds;
    out->local_calls = r->local_calls;
    out->forward_sessions = r->forward_sessions;
    proto__status_response__free_unpacked(r, NULL);
    return RL_OK;
}

static rl_err read_index_call(rl_rpc_client *cl, const char *target,
                              unsigned timeout_ms, int flags,
                              uint64_t lease_for, const rl_voter_stamp *vs,
                              uint64_t *index, uint64_t *last_effective,
                              unsigned *lease_ms, char *err, size_t errlen)
{
    Proto__ReadIndexRequest req = PROTO__READ_INDEX_REQUEST__INIT;
    Proto__ReadIndexResponse *r;
    rl_err rc;
    req.hint_only = (flags & RL_READ_HINT) != 0;
    req.relay = (flags & RL_READ_RELAY) != 0;
    req.barrier = (flags & RL_READ_BARRIER) != 0;
    req.lease_for = lease_for;
    if (vs) {
        req.voter_id = vs->raft_id;
        req.voter_term = vs->term;
        req.known_commit = vs->known_commit;
    }
    if ((rc = ask(cl, target, INTL("ReadIndex"), &req.base,
                  &proto__read_index_response__descriptor, timeout_ms, &r, err,
                  errlen)) != RL_OK) {
        return rc;
    }
    rc = r->error[0] ? refusal(r->error) : RL_OK;
    if (rc) {
        rl_seterr(err, errlen, "%s", r->error);
    } else {
        *index = r->index;
        if (last_effective)
            *last_effective = r->last_effective;
        if (lease_ms)
            *lease_ms = r->lease_ms;
    }
    proto__read_index_response__free_unpacked(r, NULL);
    return rc;
}

rl_err rl_cluster_read_index(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, const rl_voter_stamp *vs,
                             uint64_t *index, uint64_t *last_effective,
                             char *err, size_t errlen)
{
    return read_index_call(cl, target, timeout_ms, 0, 0, vs, index,
                           last_effective, NULL, err, errlen);
}

rl_err rl_cluster_read_hint(rl_rpc_client *cl, const char *target,
                            unsigned timeout_ms, int flags, uint64_t *index,
                            uint64_t *last_effective, char *err, size_t errlen)
{
    return read_index_call(cl, target, timeout_ms, flags, 0, NULL, index,
                           last_effective, NULL, err, errlen);
}

rl_err rl_cluster_lease_hint(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, uint64_t lease_for,
                             uint64_t *index, uint64_t *last_effective,
                             unsigned *lease_ms, char *err, size_t errlen)
{
    *lease_ms = 0;
    return read_index_call(cl, target, timeout_ms, RL_READ_HINT, lease_for,
                           NULL, index, last_effective, lease_ms, err, errlen);
}

/* A confirmation round asks the first `need` targets (the caller puts
** those it heard from recently first), and the others once one of them
** answered no or this long passed: a voter that stopped answering costs
** a read no more than this. */
#define CONFIRM_HEDGE_MS 2

/* What a confirmation round heard (rl_cluster_confirm_term). */
struct confirm_tally {
    uint64_t term;
    unsigned need, acks, failed, n;
    uint64_t newer; /* highest term above ours answered, or 0 */
    char *err;
    size_t errlen;
};

static int confirm_answer(void *arg, int i, int code, const rl_rpc_buf *reply,
                          const char *err)
{
    struct confirm_tally *t = arg;
    Proto__ReadIndexResponse *r = NULL;
    (void)i;
    if (code == RL_RPC_OK)
        r = proto__read_index_response__unpack(NULL, reply->len, reply->data);
    if (r && r->term == t->term) {
        t->acks++;
    } else {
        t->failed++;
        if (r && r->term > t->term && r->term > t->newer)
            t->newer = r->term;
        /* The first failure's words, for the caller's message. */
        if (t->failed == 1)
            rl_seterr(t->err, t->errlen, "%s",
                      r ? (r->term ? "a member is in an earlier term"
                                   : "a member did not answer its term "
                                     "(an older raftlite?)")
                      : code == RL_RPC_OK ? "a member's answer did not decode"
                                          : err);
    }
    if (r)
        proto__read_index_response__free_unpacked(r, NULL);
    /* Enough: a majority, a newer term (this node is deposed), or no
    ** majority left to hear. */
    return t->acks >= t->need || t->newer != 0 || t->n - t->failed < t->need;
}

int rl_cluster_confirm_term(rl_rpc_client *cl, const char *const *targets,
                            unsigned n, unsigned need, uint64_t term,
                            unsigned timeout_ms, uint64_t *newer, char *err,
                            size_t errlen)
{
    Proto__ReadIndexRequest req = PROTO__READ_INDEX_REQUEST__INIT;
    struct confirm_tally t = {
        .term = term, .need = need, .n = n, .err = err, .errlen = errlen};
    rl_rpc_buf out = {NULL, 0};
    *newer = 0;
    if (err && errlen)
        err[0] = 0;
    if (need == 0)
        return 0;
    if (n < need) {
        rl_seterr(err, errlen, "%u of the voters have no gRPC address known",
                  need - n);
        return -1;
    }
    req.confirm_term = term;
    if (pack_msg(&req.base, &out) != 0) {
        rl_seterr(err, errlen, "out of memory");
        return -1;
    }
    rl_rpc_unary_fan(cl, targets, (int)n, (int)need, CONFIRM_HEDGE_MS,
                     INTL("ReadIndex"), out.data, out.len, timeout_ms,
                     confirm_answer, &t);
    rl_rpc_buf_free(&out);
    if (t.newer) {
        *newer = t.newer;
        rl_seterr(err, errlen,
                  "a member is in term %llu, after this node's %llu",
                  (unsigned long long)t.newer, (unsigned long long)term);
        return 1;
    }
    if (t.acks >= need)
        return 0;
    if (!err[0])
        rl_seterr(err, errlen, "no answer within %u ms", timeout_ms);
    return -1;
}

/* Bytes of a transaction per TxnChunk: well under every message limit. */
#define FWD_CHUNK (1u << 20)
/* A forward session (ForwardSession on a kept stream, rpc.h) is reused
** when it was given back less than SESSION_IDLE_MS ago (the leader ends
** one quiet for 15 s, service_rpc.c) and for the first half of its life;
** a leader that does not know the method (an older raftlite) is not asked
** for one again for SESSION_REFUSED_MS. */
#define SESSION_IDLE_MS    5000
#define SESSION_LIFE_MS    600000
#define SESSION_REFUSED_MS 60000

/* The first TxnChunk of f, carrying n bytes. */
static void first_chunk(Proto__TxnChunk *ch, const rl_forward_txn *f, size_t n)
{
    ch->offset = 0;
    ch->data.data = (uint8_t *)f->payload;
    ch->data.len = n;
    ch->last = n == f->len;
    ch->total_length = f->len;
    ch->txn_base = f->base;
    ch->origin_node = f->origin_node;
    ch->origin_txn = f->origin_txn;
    ch->origin_pid = f->origin_pid;
}

/* The leader's answer as the caller's outcome, index and words. */
static rl_err forward_answered(const Proto__ForwardTxnResponse *r, int *outcome,
                               uint64_t *index, char *err, size_t errlen)
{
    *outcome = r->outcome   ? (int)r->outcome
               : r->success ? RL_OUTCOME_APPLIED
                            : RL_OUTCOME_UNKNOWN;
    *index = r->index;
    if (*outcome != RL_OUTCOME_APPLIED)
        rl_seterr(err, errlen, "%s", r->error[0] ? r->error : "refused");
    return RL_OK;
}

/* A forward on method (its name, for the message) that ended with status
** code (e its words) and no answer. */
static rl_err forward_failed(const char *method, const char *target, int code,
                             const char *e, int sent, int *outcome, char *err,
                             size_t errlen)
{
    *outcome = RL_OUTCOME_UNKNOWN;
    if (!sent)
        *outcome = RL_OUTCOME_NOT_APPLIED; /* the leader never saw its end */
    rl_seterr(err, errlen, "%s to %s failed: %s", method, target,
              code != RL_RPC_OK ? e : "malformed or missing response");
    if (code == RL_RPC_FAILED_PRECONDITION || code == RL_RPC_INVALID_ARGUMENT ||
        code == RL_RPC_RESOURCE_EXHAUSTED || code == RL_RPC_UNIMPLEMENTED ||
        code == RL_RPC_PERMISSION_DENIED || code == RL_RPC_UNAUTHENTICATED)
        *outcome = RL_OUTCOME_NOT_APPLIED; /* refused before Raft */
    return code == RL_RPC_UNAVAILABLE         ? RL_ERR_UNREACHABLE
           : code == RL_RPC_DEADLINE_EXCEEDED ? RL_ERR_TIMEOUT
                                              : RL_ERR_REMOTE;
}

/*
** f (one chunk) on a forward session to target. RL_OK with the answer;
** 1 when the session did not take it (none could be had, the leader does
** not know the method, or it had ended the session between transactions:
** status OK, no answer) and f was never proposed: the caller sends it
** another way; else a failure as rl_cluster_forward_txn's.
*/
static int forward_session(rl_rpc_client *cl, const char *target,
                           const rl_forward_txn *f, unsigned timeout_ms,
                           int *outcome, uint64_t *index, int *sent, char *err,
                           size_t errlen)
{
    Proto__TxnChunk ch = PROTO__TXN_CHUNK__INIT;
    Proto__ForwardTxnResponse *r = NULL;
    rl_rpc_stream *st;
    rl_rpc_buf m, reply = {0};
    char e[RL_RPC_ERRMAX] = "";
    int reused, got, code;
    st = rl_rpc_stream_take(cl, target, INTL("ForwardSession"), SESSION_IDLE_MS,
                            SESSION_LIFE_MS, &reused, e, sizeof e);
    if (!st)
        return 1;
    first_chunk(&ch, f, f->len);
    if (pack_msg(&ch.base, &m) != 0) {
        rl_rpc_stream_cancel(st);
        (void)rl_rpc_stream_finish(st, e, sizeof e);
        return 1;
    }
    got = rl_rpc_stream_send(st, m.data, m.len);
    rl_rpc_buf_free(&m);
    if (got == 0) {
        *sent = 1; /* the leader may act on it from now on */
        got = rl_rpc_stream_recv_wait(st, &reply, timeout_ms);
        if (got == 1)
            r = proto__forward_txn_response__unpack(NULL, reply.len,
                                                    reply.data);
        rl_rpc_buf_free(&reply);
        if (r) {
            rl_rpc_stream_keep(cl, st);
            code = forward_answered(r, outcome, index, err, errlen);
            proto__forward_txn_response__free_unpacked(r, NULL);
            return code;
        }
        if (got == 1)
            rl_rpc_stream_cancel(st); /* an answer that does not decode */
    }
    code = rl_rpc_stream_finish(st, e, sizeof e);
    if (code == RL_RPC_UNIMPLEMENTED)
        rl_rpc_stream_refused(cl, target, INTL("ForwardSession"),
                              SESSION_REFUSED_MS);
    /* Never sent, ended between transactions (OK, nothing read), or not
    ** known there: f was never proposed. */
    if (!*sent || (got == 0 && code == RL_RPC_OK) ||
        code == RL_RPC_UNIMPLEMENTED) {
        *sent = 0;
        return 1;
    }
    return forward_failed("ForwardSession", target, code, e, *sent, outcome,
                          err, errlen);
}

rl_err rl_cluster_forward_txn(rl_rpc_client *cl, const char *target,
                              const rl_forward_txn *f, unsigned timeout_ms,
                              int *outcome, uint64_t *index, int *sent,
                              char *err, size_t errlen)
{
    rl_rpc_stream *st;
    rl_rpc_buf reply = {0};
    Proto__ForwardTxnResponse *r = NULL;
    size_t off = 0;
    int ok = 1, got, code;
    char e[RL_RPC_ERRMAX] = "";
    *outcome = RL_OUTCOME_UNKNOWN;
    *index = 0;
    *sent = 0;
    /* A transaction of one chunk goes on the session (a call kept open:
    ** no call set-up per transaction); a larger one, or one the session
    ** did not take, on a ForwardTxn call of its own. */
    if (f->len <= FWD_CHUNK && f->origin_node &&
        (code = forward_session(cl, target, f, timeout_ms, outcome, index, sent,
                                err, errlen)) != 1)
        return code;
    st = rl_rpc_stream_open(cl, target, INTL("ForwardTxn"), timeout_ms, e,
                            sizeof e);
    if (!st) {
        rl_seterr(err, errlen, "cannot call ForwardTxn on %s: %s", target, e);
        return RL_ERR_INTERNAL; /* no call could be made: nothing sent */
    }
    do {
        Proto__TxnChunk ch = PROTO__TXN_CHUNK__INIT;
        size_t n = f->len - off < FWD_CHUNK ? f->len - off : FWD_CHUNK;
        rl_rpc_buf m;
        if (off == 0) {
            first_chunk(&ch, f, n);
        } else {
            ch.offset = off;
            ch.data.data = (uint8_t *)f->payload + off;
            ch.data.len = n;
            ch.last = off + n == f->len;
        }
        if (pack_msg(&ch.base, &m) != 0) {
            ok = 0;
            break;
        }
        /* The last chunk goes with the half-close: one batch. */
        ok = (ch.last ? rl_rpc_stream_send_last(st, m.data, m.len)
                      : rl_rpc_stream_send(st, m.data, m.len)) == 0;
        rl_rpc_buf_free(&m);
        off += n;
    } while (ok && off < f->len);
    if (ok) {
        *sent = 1; /* the leader may act on it from now on */
        got = rl_rpc_stream_recv(st, &reply);
        if (got == 1)
            r = proto__forward_txn_response__unpack(NULL, reply.len,
                                                    reply.data);
        rl_rpc_buf_free(&reply);
    }
    if (!r)
        rl_rpc_stream_cancel(st);
    code = rl_rpc_stream_finish(st, e, sizeof e);
    if (!r)
        return forward_failed("ForwardTxn", target, code, e, *sent, outcome,
                              err, errlen);
    code = forward_answered(r, outcome, index, err, errlen);
    proto__forward_txn_response__free_unpacked(r, NULL);
    return code;
}
