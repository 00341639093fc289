/*
** raftd/cluster.h -- the cluster operations of a hosted node over gRPC.
**
** Two halves:
**   - client calls a process makes to some node's sidecar (rl_cluster_join,
**     _remove, _transfer, _leader, _nodes, _get_status, _read_index): the
**     joining host, and the SQL functions of a process that does not host
**     the database (a *client*), use them;
**   - the node side (rl_cluster_node_*): what a hosted node does for a
**     membership request, on the leader or by forwarding it to the leader's
**     sidecar, shared by the gRPC handlers (rl_cluster_serve) and the SQL
**     functions of the hosting process.
**
** Nothing here may change the cluster on a node that is not the leader:
** it forwards, and a request the leader refuses leaves the configuration
** as it was. No call waits without a limit.
*/
#ifndef RL_CLUSTER_H
#define RL_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "rpc.h"
#include "service.h"

struct rl_host;
struct rl_member;

/* A Join/Remove/Transfer answered with an error starting with this text
** may succeed later (no leader elected yet, or the leader unreachable):
** rl_cluster_join retries it. */
#define RL_CLUSTER_NO_LEADER "no leader yet"

/* Default limit of one cluster operation. */
#define RL_CLUSTER_TIMEOUT_MS 10000

/* A follower's write transaction on its way to the leader (ForwardTxn). */
typedef struct rl_forward_txn {
    const void *payload; /* the encoded rl_txn */
    size_t len;
    uint64_t base; /* the index the writer's snapshot reflects */
    uint64_t origin_node, origin_txn;
    uint32_t origin_pid;
} rl_forward_txn;

/* Sends f to the leader's sidecar at target, which commits it through
** Raft. 0: answered, *outcome (RL_OUTCOME_*) and *index (0 if never
** appended), err for anything but APPLIED. -1: the call failed, err says
** how; *outcome is NOT_APPLIED if the leader refused it before Raft, else
** UNKNOWN when *sent (every byte left: the leader may have committed it).
** Waits at most timeout_ms. */
int rl_cluster_forward_txn(rl_rpc_client *cl, const char *target,
                           const rl_forward_txn *f, unsigned timeout_ms,
                           int *outcome, uint64_t *index, int *sent, char *err,
                           size_t errlen);

/* Status of one node, as PRAGMA raft_status reports it. */
typedef struct rl_cluster_status {
    char id[RL_META_STR_MAX + 1];
    uint64_t raft_id;
    const char *state; /* static: "leader", "follower", ... */
    uint64_t term;
    int leader_known;
    char leader[RL_META_STR_MAX + 1]; /* leader's node id ("" unknown) */
    char leader_grpc[RL_META_STR_MAX + 1];
    uint64_t commit_index, applied_index, last_index, snapshot_index;
} rl_cluster_status;

/* The status as JSON (PRAGMA raft_status) into out; returns out, cut
** (never invalid UTF-8 or unterminated) if outlen is too small: 8 KiB
** always suffices. */
char *rl_cluster_status_json(const rl_cluster_status *s, char *out,
                             size_t outlen);

/* Name of an RL_STATE_* ("leader", ...). */
const char *rl_cluster_state_name(int state);

/* ---- client calls (peer/target: a node's gRPC address) ---- */

/* Asks peer to add self (as a voter) to its cluster; a follower forwards
** to the leader. Retries while the answer starts with RL_CLUSTER_NO_LEADER,
** until timeout_ms. 0 with the leader's gRPC address in leader_grpc, or
** -1 with err naming the cause (peer unreachable, id or address taken). */
int rl_cluster_join(rl_rpc_client *cl, const char *peer_grpc,
                    const struct rl_meta *self, unsigned timeout_ms,
                    char *leader_grpc, size_t leader_len, char *err,
                    size_t errlen);
/* Removes node_id from target's cluster. 0 or -1 with err. */
int rl_cluster_remove(rl_rpc_client *cl, const char *target,
                      const char *node_id, unsigned timeout_ms, char *err,
                      size_t errlen);
/* Moves leadership to node_id ("" or NULL: any voter). 0 with the new
** leader's id in leader_id, or -1 with err. */
int rl_cluster_transfer(rl_rpc_client *cl, const char *target,
                        const char *node_id, unsigned timeout_ms,
                        char *leader_id, size_t leader_len, char *err,
                        size_t errlen);
/* The leader target knows: 1 with *out (node_id may be "" if its metadata
** is not known), 0 none known, -1 with err. */
int rl_cluster_leader(rl_rpc_client *cl, const char *target,
                      unsigned timeout_ms, struct rl_meta *out, char *err,
                      size_t errlen);
/* The members target knows; *out malloc'ed (free()). 0 or -1 with err. */
int rl_cluster_nodes(rl_rpc_client *cl, const char *target, unsigned timeout_ms,
                     struct rl_member **out, unsigned *count, char *err,
                     size_t errlen);
/* Status of target (a hosted node). 0 or -1 with err. */
int rl_cluster_get_status(rl_rpc_client *cl, const char *target,
                          unsigned timeout_ms, rl_cluster_status *out,
                          char *err, size_t errlen);
/* A linearizable read point from target (the leader): *index, and the
** leader's last database-changing entry as of its answer in
** *last_effective (if not NULL). 0 or -1 with err. */
int rl_cluster_read_index(rl_rpc_client *cl, const char *target,
                          unsigned timeout_ms, uint64_t *index,
                          uint64_t *last_effective, char *err, size_t errlen);
/* rl_cluster_read_index, or with hint_only the leader's commit index and L
** as it knows them, at once (no quorum round: a hint, not a read point). */
int rl_cluster_read_hint(rl_rpc_client *cl, const char *target,
                         unsigned timeout_ms, int hint_only, uint64_t *index,
                         uint64_t *last_effective, char *err, size_t errlen);

/* ---- a hosted node (on the leader, or forwarded to it) ---- */

/* Adds m as a voter (idempotent for a member with the same addresses).
** 0 with the leader's gRPC address in leader_grpc, or -1 with err; an err
** starting with RL_CLUSTER_NO_LEADER may succeed later. */
int rl_cluster_node_join(struct rl_host *h, const struct rl_meta *m,
                         unsigned timeout_ms, char *leader_grpc,
                         size_t leader_len, char *err, size_t errlen);
/* Removes node_id; removing the leader transfers leadership first. */
int rl_cluster_node_remove(struct rl_host *h, const char *node_id,
                           unsigned timeout_ms, char *err, size_t errlen);
int rl_cluster_node_transfer(struct rl_host *h, const char *node_id,
                             unsigned timeout_ms, char *leader_id,
                             size_t leader_len, char *err, size_t errlen);
/* 1 with *out if a leader is known (node_id "" if its metadata is not
** known yet), else 0. */
int rl_cluster_node_leader(struct rl_host *h, struct rl_meta *out);
void rl_cluster_node_status(struct rl_host *h, rl_cluster_status *out);

/* Serves one unary call of a hosted node's sidecar (service_rpc.c calls it
** first when the service has a host). Returns a gRPC status code with
** *reply / err as rl_service_unary does, or RL_CLUSTER_PASS when the call
** is the local service's to run (service.c). */
#define RL_CLUSTER_PASS (-1)
int rl_cluster_serve(rl_service *svc, struct rl_host *h, const char *method,
                     const uint8_t *req, size_t len, rl_remaining_fn remaining,
                     void *ctx, rl_rpc_buf *reply, char *err, size_t errlen);

#endif /* RL_CLUSTER_H */
