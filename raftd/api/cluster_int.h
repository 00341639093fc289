/*
** raftd/api/cluster_int.h -- what the two halves of the cluster operations
** share: routing a request to the leader (cluster.c) and the answers the
** sidecar's handlers build from it (cluster_rpc.c).
**
** Only raftd/api/cluster*.c may include it.
*/
#ifndef RL_CLUSTER_INT_H
#define RL_CLUSTER_INT_H

#include <stdint.h>

#include "cluster.h"

/* Pause between retries of a request that met no leader. */
#define RETRY_MS 100

/* Milliseconds left until deadline (rl_rpc_now_ms clock), 0 once passed. */
static inline int64_t left_ms(int64_t deadline)
{
    int64_t now = rl_rpc_now_ms();
    return deadline > now ? deadline - now : 0;
}

/* Where a request for the leader goes: this node (the leader), the
** leader's sidecar (*leader filled, grpc_addr non-empty), or nowhere yet
** (err starts with RL_CLUSTER_NO_LEADER). */
enum { ROUTE_SELF, ROUTE_FORWARD, ROUTE_NONE };

/* The route, waiting (at most half of timeout_ms and 5 s) while no leader
** is known or the known one is silent (cluster.c). */
int rl_cluster_route_wait(struct rl_host *h, struct rl_meta *leader,
                          unsigned timeout_ms, char *err, size_t errlen);

/* "voter", "standby", "spare" for an RL_ROLE_*. */
const char *rl_cluster_role_name(int role);

#endif /* RL_CLUSTER_INT_H */
