/*
** raftd/api/reqcheck.c -- decoding and checking of cluster and internal
** requests (see reqcheck.h). Every byte comes from the network: a message
** that does not decode is INVALID_ARGUMENT, a field that cannot be acted
** on is a refusal naming the field and the fix.
**
** What it must never do: resolve a host name (a hostile request would make
** the node send DNS look-ups), accept a joining node that could never be
** reached or named, or let FetchImage name a file other than the database.
*/
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "errbuf.h"
#include "image_fetch.h"
#include "host.h"
#include "node.h"
#include "raftlite.pb-c.h"
#include "reqcheck.h"
#include "rpc.h"

static int malformed(const char *what, char *msg, size_t msglen)
{
    rl_seterr(
        msg, msglen,
        "malformed %s: the bytes are not a valid protobuf message of that "
        "type",
        what);
    return RL_RPC_INVALID_ARGUMENT;
}

/* A Raft address the transport can dial: numeric IPv4 and a port. Checked
** here without rl_addr_check's look-up of a host name. */
static int raft_addr_ok(const char *a, char *msg, size_t msglen)
{
    const char *colon = strrchr(a, ':');
    char host[INET_ADDRSTRLEN + 1];
    struct in_addr in;
    size_t hn = colon ? (size_t)(colon - a) : 0;
    if (!colon || hn == 0 || hn >= sizeof host) {
        rl_seterr(msg, msglen,
                  "JoinRequest raft_addr '%.80s' is not IPv4:PORT; the Raft "
                  "transport takes a numeric address such as 127.0.0.1:7001",
                  a);
        return -1;
    }
    memcpy(host, a, hn);
    host[hn] = 0;
    if (inet_pton(AF_INET, host, &in) != 1) {
        rl_seterr(msg, msglen,
                  "JoinRequest raft_addr '%.80s' is not a numeric IPv4 address "
                  "and port; the Raft transport takes IPv4:PORT, e.g. "
                  "127.0.0.1:7001",
                  a);
        return -1;
    }
    return rl_addr_check(a, RL_ADDR_RAFT, "JoinRequest raft_addr", msg, msglen);
}

static void parse_join(const Proto__JoinRequest *r, rl_cluster_req *out,
                       char *msg, size_t msglen)
{
    char e[256];
    out->refused = 1;
    if (!r->node_id[0] || !r->raft_addr[0]) {
        rl_seterr(msg, msglen,
                  "JoinRequest needs node_id and raft_addr (the joining node's "
                  "id and its Raft address host:port)");
    } else if (rl_meta_set(&out->meta, rl_raft_id_of(r->node_id), r->node_id,
                           r->raft_addr, r->grpc_addr) != 0) {
        rl_seterr(msg, msglen,
                  "JoinRequest strings must be 1..%d bytes without NUL (gRPC "
                  "address 0..%d)",
                  RL_META_STR_MAX, RL_META_STR_MAX);
    } else if (rl_node_id_check(r->node_id, RL_META_STR_MAX,
                                "JoinRequest node_id", e, sizeof e) != 0) {
        rl_seterr(msg, msglen, "%s", e);
    } else if (raft_addr_ok(r->raft_addr, e, sizeof e) != 0) {
        rl_seterr(msg, msglen, "%s", e);
    } else if (r->grpc_addr[0] &&
               rl_addr_check(r->grpc_addr, RL_ADDR_GRPC,
                             "JoinRequest grpc_addr", e, sizeof e) != 0) {
        rl_seterr(msg, msglen, "%s", e);
    } else {
        out->refused = 0;
    }
}

/* REMOVE/TRANSFER: a node id that can name a member ("" allowed when
** any_ok). */
static void parse_target(const char *id, int any_ok, const char *what,
                         rl_cluster_req *out, char *msg, size_t msglen)
{
    size_t n = strlen(id);
    if (n == 0 && !any_ok) {
        rl_seterr(msg, msglen, "%s needs the node_id to remove", what);
        out->refused = 1;
    } else if (n > RL_META_STR_MAX) {
        rl_seterr(msg, msglen,
                  "%s node_id is %zu bytes: node ids are at most %d, so no "
                  "member has it; nothing changed",
                  what, n, RL_META_STR_MAX);
        out->refused = 1;
    } else {
        memcpy(out->node_id, id, n + 1);
    }
}

int rl_req_cluster(const char *method, const uint8_t *req, size_t len,
                   rl_cluster_req *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof *out);
    if (msg && msglen)
        msg[0] = 0;
    if (strcmp(method, "Join") == 0) {
        Proto__JoinRequest *r = proto__join_request__unpack(NULL, len, req);
        if (!r)
            return malformed("JoinRequest", msg, msglen);
        out->kind = RL_REQ_JOIN;
        parse_join(r, out, msg, msglen);
        proto__join_request__free_unpacked(r, NULL);
    } else if (strcmp(method, "Remove") == 0) {
        Proto__RemoveRequest *r = proto__remove_request__unpack(NULL, len, req);
        if (!r)
            return malformed("RemoveRequest", msg, msglen);
        out->kind = RL_REQ_REMOVE;
        parse_target(r->node_id, 0, "RemoveRequest", out, msg, msglen);
        proto__remove_request__free_unpacked(r, NULL);
    } else if (strcmp(method, "Transfer") == 0) {
        Proto__TransferRequest *r =
            proto__transfer_request__unpack(NULL, len, req);
        if (!r)
            return malformed("TransferRequest", msg, msglen);
        out->kind = RL_REQ_TRANSFER;
        parse_target(r->node_id, 1, "TransferRequest", out, msg, msglen);
        proto__transfer_request__free_unpacked(r, NULL);
    } else if (strcmp(method, "ExecuteRead") == 0) {
        Proto__ReadRequest *r = proto__read_request__unpack(NULL, len, req);
        if (!r)
            return malformed("ReadRequest", msg, msglen);
        out->kind = RL_REQ_READ;
        out->strong = r->consistency == PROTO__READ_CONSISTENCY__STRONG;
        proto__read_request__free_unpacked(r, NULL);
    } else {
        /* The empty requests: only that they decode. */
        ProtobufCMessage *m;
        const char *what;
        if (strcmp(method, "Leader") == 0) {
            out->kind = RL_REQ_LEADER;
            what = "LeaderRequest";
            m = (ProtobufCMessage *)proto__leader_request__unpack(NULL, len,
                                                                  req);
        } else if (strcmp(method, "Nodes") == 0) {
            out->kind = RL_REQ_NODES;
            what = "NodesRequest";
            m = (ProtobufCMessage *)proto__nodes_request__unpack(NULL, len,
                                                                 req);
        } else if (strcmp(method, "Status") == 0) {
            out->kind = RL_REQ_STATUS;
            what = "StatusRequest";
            m = (ProtobufCMessage *)proto__status_request__unpack(NULL, len,
                                                                  req);
        } else if (strcmp(method, "ReadIndex") == 0) {
            out->kind = RL_REQ_READ_INDEX;
            what = "ReadIndexRequest";
            m = (ProtobufCMessage *)proto__read_index_request__unpack(NULL, len,
                                                                      req);
        } else {
            rl_seterr(msg, msglen, "no cluster method '%.64s'", method);
            return RL_RPC_UNIMPLEMENTED;
        }
        if (!m)
            return malformed(what, msg, msglen);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return RL_RPC_OK;
}

int rl_req_join_check(const struct rl_member *ms, unsigned cnt,
                      const struct rl_meta *m, int *found, char *err,
                      size_t errlen)
{
    unsigned i;
    *found = -1;
    for (i = 0; i < cnt; i++) {
        const struct rl_member *x = &ms[i];
        const char *xid = x->has_meta ? x->meta.node_id : "?";
        if (x->raft_id == m->raft_id) {
            if (x->has_meta && strcmp(x->meta.node_id, m->node_id) != 0) {
                rl_seterr(err, errlen,
                          "node id '%s' has raft id %llu, which member '%s' "
                          "already has; choose another id",
                          m->node_id, (unsigned long long)m->raft_id,
                          x->meta.node_id);
                return -1;
            }
            if (strcmp(x->raft_addr, m->raft_addr) != 0) {
                rl_seterr(
                    err, errlen,
                    "node '%s' is already a member with raft address %s, "
                    "not %s; remove it first (SELECT raft_remove('%s')) or "
                    "join with its stored address",
                    m->node_id, x->raft_addr, m->raft_addr, m->node_id);
                return -1;
            }
            if (x->has_meta && x->meta.grpc_addr[0] && m->grpc_addr[0] &&
                strcmp(x->meta.grpc_addr, m->grpc_addr) != 0) {
                rl_seterr(
                    err, errlen,
                    "node '%s' is already a member with gRPC address %s, "
                    "not %s; remove it first (SELECT raft_remove('%s')) or "
                    "join with its stored address",
                    m->node_id, x->meta.grpc_addr, m->grpc_addr, m->node_id);
                return -1;
            }
            *found = (int)i;
            continue;
        }
        if (strcmp(x->raft_addr, m->raft_addr) == 0) {
            rl_seterr(err, errlen,
                      "raft address %s is already used by node '%s'; give node "
                      "'%s' an address of its own",
                      m->raft_addr, xid, m->node_id);
            return -1;
        }
        if (x->has_meta && m->grpc_addr[0] &&
            strcmp(x->meta.grpc_addr, m->grpc_addr) == 0) {
            rl_seterr(err, errlen,
                      "gRPC address %s is already used by node '%s'; give node "
                      "'%s' an address of its own",
                      m->grpc_addr, xid, m->node_id);
            return -1;
        }
    }
    return 0;
}

/* Default ImageChunk size (the server's; a request may ask for less). */
#define FETCH_CHUNK (1u << 20)

int rl_req_fetch_image(const uint8_t *req, size_t len, const char *db_base,
                       size_t max_msg, rl_fetch_plan *out, char *msg,
                       size_t msglen)
{
    Proto__FetchImageRequest *r;
    int code = RL_RPC_OK;
    memset(out, 0, sizeof *out);
    r = proto__fetch_image_request__unpack(NULL, len, req);
    if (!r) {
        rl_seterr(
            msg, msglen,
            "malformed FetchImageRequest: not a valid protobuf message of "
            "that type");
        return RL_RPC_INVALID_ARGUMENT;
    }
    /* An ImageChunk carries its bytes and about 40 bytes of fields: the
    ** chunk leaves 128 for them under the message limit. */
    out->chunk = r->chunk_bytes ? r->chunk_bytes : FETCH_CHUNK;
    if (out->chunk + 128 > max_msg)
        out->chunk = max_msg > 256 ? max_msg - 128 : 128;
    out->offset = r->offset;
    out->length = r->length;
    out->min_index = r->min_index;
    if (strcmp(r->name, RL_IMAGE_FETCH_NAME) == 0) {
        out->image = 1;
        if (r->offset) {
            rl_seterr(
                msg, msglen,
                "the consistent image (name '@image') streams from offset "
                "0: a resumed transfer would mix two snapshots (fetch it "
                "again)");
            code = RL_RPC_INVALID_ARGUMENT;
        }
    } else if (r->name[0] && strcmp(r->name, db_base) != 0) {
        rl_seterr(msg, msglen,
                  "FetchImage serves only this node's database image '%s', not "
                  "'%.200s'",
                  db_base, r->name);
        code = RL_RPC_PERMISSION_DENIED;
    }
    proto__fetch_image_request__free_unpacked(r, NULL);
    return code;
}

int rl_req_fetch_range(const rl_fetch_plan *p, uint64_t size, uint64_t *end,
                       char *msg, size_t msglen)
{
    if (p->offset > size) {
        rl_seterr(msg, msglen,
                  "offset %llu is past the image's end (%llu bytes)",
                  (unsigned long long)p->offset, (unsigned long long)size);
        return RL_RPC_OUT_OF_RANGE;
    }
    *end = size;
    if (p->length && p->length < size - p->offset)
        *end = p->offset + p->length;
    return RL_RPC_OK;
}
