/*
** tests/fuzz/fuzz_cluster_req.c -- libFuzzer target for the checks of the
** cluster and internal requests (raftd/api/reqcheck.c): what a node's Join,
** Remove, Transfer, Leader, Nodes, Status, ReadIndex, ExecuteRead and
** FetchImage handlers do with the bytes a hostile client sends before
** they act, without a running node.
**
** Input: [selector][2-byte little-endian length L][L request bytes][rest].
** The selector picks the method; for Join the rest describes a cluster
** configuration (members whose ids and addresses clash with the request's
** on purpose), against which the decoded request is checked as the
** leader would (rl_req_join_check); for FetchImage the rest gives the
** message limit and a file size for the range check.
** Invariants (abort on violation): every refusal and error names a cause;
** an accepted Join names a node id rl_node_id_check accepts, a numeric
** IPv4 Raft address and the raft id of its node id; an accepted join
** clashes with no member (and "found" is the member with its raft id and
** addresses); FetchImage never accepts a name other than "@image", "" or
** the database's, streams the image only from offset 0, never plans a
** chunk over the message limit, and a range stays inside the file.
** Built by raftd/module.mk as build/fuzz/fuzz_cluster_req; seeded with
** valid requests (tests/fuzz/seeds/fuzz_cluster_req, written by
** tests/fuzz/seed_cluster_req.py).
*/
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "host.h"
#include "node.h"
#include "reqcheck.h"
#include "rpc.h"

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_cluster_req: %s:%d: %s\n", __FILE__,         \
                    __LINE__, #c);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const char *const methods[] = {
    "Join",   "Remove",    "Transfer",    "Leader",     "Nodes",
    "Status", "ReadIndex", "ExecuteRead", "FetchImage", "NoSuchMethod",
};
#define N_METHODS (sizeof methods / sizeof methods[0])

/* Strings a member may carry: a few fixed ones and the request's own. */
static const char *pick(uint8_t b, const char *own)
{
    static const char *const fixed[] = {
        "n1", "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:50051", ""};
    return (b & 7) >= 5 ? own : fixed[b & 7];
}

static void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s);
}

static void check_join(const rl_cluster_req *r, const uint8_t *rest, size_t n)
{
    struct rl_member ms[8];
    unsigned cnt = 0, i;
    int found = -2, rc;
    char err[1024] = "", e[256];
    const struct rl_meta *m = &r->meta;
    REQUIRE(m->raft_id == rl_raft_id_of(m->node_id));
    REQUIRE(rl_node_id_check(m->node_id, RL_META_STR_MAX, "id", e, sizeof e) ==
            0);
    {
        const char *colon = strrchr(m->raft_addr, ':');
        char host[64];
        struct in_addr in;
        REQUIRE(colon && (size_t)(colon - m->raft_addr) < sizeof host);
        memcpy(host, m->raft_addr, (size_t)(colon - m->raft_addr));
        host[colon - m->raft_addr] = 0;
        REQUIRE(inet_pton(AF_INET, host, &in) == 1);
    }
    /* Members from 4 bytes each. */
    memset(ms, 0, sizeof ms);
    while (n >= 4 && cnt < 8) {
        struct rl_member *x = &ms[cnt++];
        x->raft_id = (rest[0] & 1) ? m->raft_id
                                   : rl_raft_id_of(pick(rest[0] >> 1, "n2"));
        x->role = rest[0] >> 6;
        x->has_meta = (rest[1] & 1) != 0;
        copy(x->raft_addr, sizeof x->raft_addr,
             pick(rest[1] >> 1, m->raft_addr));
        x->meta.raft_id = x->raft_id;
        copy(x->meta.node_id, sizeof x->meta.node_id,
             pick(rest[2], m->node_id));
        copy(x->meta.raft_addr, sizeof x->meta.raft_addr, x->raft_addr);
        copy(x->meta.grpc_addr, sizeof x->meta.grpc_addr,
             pick(rest[3], m->grpc_addr));
        rest += 4;
        n -= 4;
    }
    rc = rl_req_join_check(ms, cnt, m, &found, err, sizeof err);
    if (rc != 0) {
        REQUIRE(rc == -1 && err[0]);
        return;
    }
    REQUIRE(found >= -1 && found < (int)cnt);
    for (i = 0; i < cnt; i++) {
        const struct rl_member *x = &ms[i];
        if ((int)i == found) {
            REQUIRE(x->raft_id == m->raft_id);
            REQUIRE(strcmp(x->raft_addr, m->raft_addr) == 0);
            REQUIRE(!x->has_meta || strcmp(x->meta.node_id, m->node_id) == 0);
            continue;
        }
        if (x->raft_id == m->raft_id) {
            /* Another entry with the same raft id: the same node. */
            REQUIRE(strcmp(x->raft_addr, m->raft_addr) == 0);
            continue;
        }
        REQUIRE(strcmp(x->raft_addr, m->raft_addr) != 0);
        REQUIRE(!x->has_meta || !m->grpc_addr[0] ||
                strcmp(x->meta.grpc_addr, m->grpc_addr) != 0);
    }
}

static void check_fetch(const uint8_t *req, size_t len, const uint8_t *rest,
                        size_t n)
{
    rl_fetch_plan p;
    char msg[512] = "";
    size_t max = 256 + (n >= 3 ? ((size_t)rest[0] | (size_t)rest[1] << 8 |
                                  (size_t)rest[2] << 16)
                               : 4u << 20);
    uint64_t size = n >= 7 ? ((uint64_t)rest[3] | (uint64_t)rest[4] << 8 |
                              (uint64_t)rest[5] << 16 | (uint64_t)rest[6] << 24)
                           : 1u << 20;
    uint64_t end = 0;
    int rc =
        rl_req_fetch_image(req, len, "sqlite.db", max, &p, msg, sizeof msg);
    if (rc != RL_RPC_OK) {
        REQUIRE(msg[0]);
        REQUIRE(rc == RL_RPC_INVALID_ARGUMENT ||
                rc == RL_RPC_PERMISSION_DENIED);
        return;
    }
    REQUIRE(p.chunk >= 1 && p.chunk + 128 <= max);
    REQUIRE(!p.image || p.offset == 0);
    rc = rl_req_fetch_range(&p, size, &end, msg, sizeof msg);
    if (rc != RL_RPC_OK) {
        REQUIRE(rc == RL_RPC_OUT_OF_RANGE && msg[0] && p.offset > size);
        return;
    }
    REQUIRE(p.offset <= end && end <= size);
    REQUIRE(!p.length || end - p.offset <= p.length);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rl_cluster_req r;
    char msg[1024];
    const char *method;
    size_t len;
    int rc;
    if (size < 3)
        return 0;
    method = methods[data[0] % N_METHODS];
    len = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (len > size)
        len = size;
    if (strcmp(method, "FetchImage") == 0) {
        check_fetch(data, len, data + len, size - len);
        return 0;
    }
    memset(msg, 0x55, sizeof msg);
    rc = rl_req_cluster(method, data, len, &r, msg, sizeof msg);
    REQUIRE(memchr(msg, 0, sizeof msg) != NULL); /* terminated */
    if (rc != RL_RPC_OK) {
        REQUIRE(msg[0]);
        REQUIRE(rc == RL_RPC_INVALID_ARGUMENT ||
                (rc == RL_RPC_UNIMPLEMENTED &&
                 strcmp(method, "NoSuchMethod") == 0));
        return 0;
    }
    REQUIRE(strcmp(method, "NoSuchMethod") != 0);
    if (r.refused) {
        REQUIRE(msg[0]);
        REQUIRE(r.kind == RL_REQ_JOIN || r.kind == RL_REQ_REMOVE ||
                r.kind == RL_REQ_TRANSFER);
        return 0;
    }
    switch (r.kind) {
    case RL_REQ_JOIN:
        REQUIRE(strcmp(method, "Join") == 0);
        check_join(&r, data + len, size - len);
        break;
    case RL_REQ_REMOVE:
        REQUIRE(r.node_id[0]);
        /* fall through */
    case RL_REQ_TRANSFER:
        REQUIRE(strlen(r.node_id) <= RL_META_STR_MAX);
        break;
    default:
        break;
    }
    return 0;
}
