/*
** raftd/api/cluster.h -- the cluster operations a hosted node serves over
** gRPC: what it does for a membership request (rl_cluster_node_*: on the
** leader, or forwarded to the leader's sidecar), shared by the gRPC
** handlers (rl_cluster_serve) and the SQL functions of the hosting
** process. The calls a process makes to other nodes are raftd/host/
** peers.h (included here for the SQL functions that use both).
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
#include "peers.h"
#include "rpc.h"
#include "service.h"

struct rl_host;
struct rl_member;

/* The status as JSON (PRAGMA raft_status) into out; returns out, cut
** (never invalid UTF-8 or unterminated) if outlen is too small: 8 KiB
** always suffices. */
char *rl_cluster_status_json(const rl_cluster_status *s, char *out,
                             size_t outlen);

/* Name of an RL_STATE_* ("leader", ...). */
const char *rl_cluster_state_name(int state);

/* ---- a hosted node (on the leader, or forwarded to it) ---- */

/* Adds m as a voter (idempotent for a member with the same addresses).
** 0 with the leader's gRPC address in leader_grpc, or -1 with err; an err
** starting with RL_CLUSTER_NO_LEADER may succeed later. */
int rl_cluster_node_join(struct rl_host *h, const struct rl_meta *m,
                         unsigned timeout_ms, char *leader_grpc,
                         size_t leader_len, char *err, size_t errlen);
/* Removes node_id; removing the leader transfers leadership first.
** RL_OK, or a code with err: RL_ERR_NOLEADER when no leader was known or
** reachable, or leadership moved (nothing changed: a retry may succeed). */
rl_err rl_cluster_node_remove(struct rl_host *h, const char *node_id,
                              unsigned timeout_ms, char *err, size_t errlen);
/* Moves leadership to node_id ("" or NULL: any voter); codes as remove. */
rl_err rl_cluster_node_transfer(struct rl_host *h, const char *node_id,
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
