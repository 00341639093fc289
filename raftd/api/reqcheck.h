/*
** raftd/api/reqcheck.h -- the checks that turn the bytes of a cluster or
** internal request (Join, Remove, Transfer, Leader, Nodes, Status,
** ReadIndex, ExecuteRead's consistency, FetchImage) into an action or a
** refusal, before anything touches the node, the Raft configuration or a
** file. Pure: no node, no host, no socket, no name look-up, so that they
** are fuzzed with hostile bytes (tests/fuzz/fuzz_cluster_req.c); the
** handlers (cluster.c, service_rpc.c) act on what they return.
**
** Nothing here may accept a request the handlers cannot carry out safely:
** a node id that cannot name a node, a Raft address the transport cannot
** dial, a file name other than the database's own.
*/
#ifndef RL_REQCHECK_H
#define RL_REQCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

struct rl_member;

enum rl_req_kind {
    RL_REQ_JOIN,
    RL_REQ_REMOVE,
    RL_REQ_TRANSFER,
    RL_REQ_LEADER,
    RL_REQ_NODES,
    RL_REQ_STATUS,
    RL_REQ_READ_INDEX,
    RL_REQ_READ
};

/* A decoded cluster request. */
typedef struct rl_cluster_req {
    int kind;            /* RL_REQ_* */
    int refused;         /* 1: answer with the message in the response's
                            error field; nothing is done */
    struct rl_meta meta; /* JOIN: the joining node (raft id from its id) */
    char node_id[RL_META_STR_MAX + 1]; /* REMOVE; TRANSFER ("" any voter) */
    int strong;                        /* READ: STRONG consistency */
} rl_cluster_req;

/*
** Decodes the request of a cluster method ("Join", "Remove", "Transfer",
** "Leader", "Nodes", "Status", "ReadIndex", "ExecuteRead") and checks its
** fields. RL_RPC_OK with *out (out->refused set with msg if the request is
** well formed but cannot be carried out), RL_RPC_INVALID_ARGUMENT with msg
** for bytes that are not the method's message, RL_RPC_UNIMPLEMENTED for
** another method.
*/
int rl_req_cluster(const char *method, const uint8_t *req, size_t len,
                   rl_cluster_req *out, char *msg, size_t msglen);

/*
** Checks a join of m against the configuration ms[0..cnt): *found = index
** of the member with m's raft id (a restart that joins again), or -1. 0 if
** m may join (or is that member), -1 with err naming the clash (raft id
** of another node id, the member's other address, an address another
** member uses).
*/
int rl_req_join_check(const struct rl_member *ms, unsigned cnt,
                      const struct rl_meta *m, int *found, char *err,
                      size_t errlen);

/* What a FetchImage call is to stream. */
typedef struct rl_fetch_plan {
    int image;          /* 1: the consistent image ("@image"); 0: the file */
    uint64_t offset;    /* first byte (always 0 for the image) */
    uint64_t length;    /* 0: to the end */
    uint64_t min_index; /* image only */
    size_t chunk;       /* bytes per ImageChunk */
} rl_fetch_plan;

/*
** Decodes a FetchImageRequest for a node whose database file is named
** db_base and whose messages are at most max_msg bytes. RL_RPC_OK with
** *out, or a status with msg: INVALID_ARGUMENT (malformed, or an offset
** into the image), PERMISSION_DENIED (a name other than "@image", "" or
** db_base).
*/
int rl_req_fetch_image(const uint8_t *req, size_t len, const char *db_base,
                       size_t max_msg, rl_fetch_plan *out, char *msg,
                       size_t msglen);

/* The end of what p streams from something of size bytes: RL_RPC_OK with
** *end (offset <= *end <= size), or RL_RPC_OUT_OF_RANGE with msg. */
int rl_req_fetch_range(const rl_fetch_plan *p, uint64_t size, uint64_t *end,
                       char *msg, size_t msglen);

#endif /* RL_REQCHECK_H */
