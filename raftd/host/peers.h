/*
** raftd/host/peers.h -- the calls a process makes to some node's gRPC
** sidecar: a joining host, a follower forwarding its writes and asking the
** leader for a read point, and the SQL functions of a process that does
** not host the database (a *client*).
**
** These are client calls only: what a node does when it is asked is the
** API's (raftd/api/cluster.h). Nothing here may change this process's node
** or wait without a limit. Each call returns RL_OK or an rl_err (lib/err.h)
** the caller decides on, with the reason for a person in err:
**   RL_ERR_UNREACHABLE  no node answers at the address (nothing was done)
**   RL_ERR_TIMEOUT      no answer in time
**   RL_ERR_NOLEADER     the peer knows no reachable leader yet (retry)
**   RL_ERR_REMOTE       the peer refused or failed (err says why)
**   RL_ERR_CORRUPT      an answer that does not decode
**   RL_ERR_INVALID, RL_ERR_NOMEM, RL_ERR_INTERNAL
*/
#ifndef RL_PEERS_H
#define RL_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "err.h"
#include "rpc.h"

struct rl_member;

/* The full method names' prefixes of proto/raftlite.proto's services. */
#define RL_SVC_PUBLIC   "/proto.DistributedSqlite/"
#define RL_SVC_INTERNAL "/proto.RaftliteInternal/"

/* Write outcomes, the numbers of proto WriteOutcome. */
#define RL_OUTCOME_UNSPECIFIED 0
#define RL_OUTCOME_NOT_APPLIED 1
#define RL_OUTCOME_APPLIED     2
#define RL_OUTCOME_UNKNOWN     3
#define RL_OUTCOME_NOT_LEADER  4
#define RL_OUTCOME_CONFLICT    5

/* A cluster response whose error starts with this text may succeed later
** (no leader elected yet, or the leader unreachable): the protocol's only
** way to say so (its responses carry text, no code). The calls below turn
** it into RL_ERR_NOLEADER; rl_cluster_join retries it. */
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
    uint64_t read_points, read_rounds, local_calls; /* rl_host_counts */
    uint64_t forward_sessions;
} rl_cluster_status;

/* ---- calls (peer/target: a node's gRPC address) ---- */

/* Sends f to the leader's sidecar at target, which commits it through
** Raft. RL_OK: answered, *outcome (RL_OUTCOME_*) and *index (0 if never
** appended), err for anything but APPLIED. Otherwise the call failed, err
** says how; *outcome is NOT_APPLIED if the leader refused it before Raft
** or never saw its end, else UNKNOWN (when *sent every byte left: the
** leader may have committed it; a call that could not even be opened,
** RL_ERR_INTERNAL, also leaves UNKNOWN, as before). Waits at most
** timeout_ms. */
rl_err rl_cluster_forward_txn(rl_rpc_client *cl, const char *target,
                              const rl_forward_txn *f, unsigned timeout_ms,
                              int *outcome, uint64_t *index, int *sent,
                              char *err, size_t errlen);

/* Asks peer to add self (as a voter) to its cluster; a follower forwards
** to the leader. Retries RL_ERR_NOLEADER, and RL_ERR_UNREACHABLE for a
** few seconds (the peer may be starting too), until timeout_ms. RL_OK with
** the leader's gRPC address in leader_grpc, or a code with err naming the
** cause (peer unreachable, id or address taken). */
rl_err rl_cluster_join(rl_rpc_client *cl, const char *peer_grpc,
                       const struct rl_meta *self, unsigned timeout_ms,
                       char *leader_grpc, size_t leader_len, char *err,
                       size_t errlen);
/* One Join attempt, not retried (a follower forwarding a Join to its
** leader): RL_OK, RL_ERR_NOLEADER (no leader yet: err says),
** RL_ERR_UNREACHABLE (the peer does not answer) or another code. */
rl_err rl_cluster_join_once(rl_rpc_client *cl, const char *peer,
                            const struct rl_meta *self, int64_t timeout_ms,
                            char *leader_grpc, size_t leader_len, char *err,
                            size_t errlen);
/* Removes node_id from target's cluster. */
rl_err rl_cluster_remove(rl_rpc_client *cl, const char *target,
                         const char *node_id, unsigned timeout_ms, char *err,
                         size_t errlen);
/* Moves leadership to node_id ("" or NULL: any voter). RL_OK with the new
** leader's id in leader_id. */
rl_err rl_cluster_transfer(rl_rpc_client *cl, const char *target,
                           const char *node_id, unsigned timeout_ms,
                           char *leader_id, size_t leader_len, char *err,
                           size_t errlen);
/* The leader target knows: 1 with *out (node_id may be "" if its metadata
** is not known), 0 none known, -1 with err (not an rl_err: the answer has
** three values). */
int rl_cluster_leader(rl_rpc_client *cl, const char *target,
                      unsigned timeout_ms, struct rl_meta *out, char *err,
                      size_t errlen);
/* The members target knows; *out malloc'ed (free()). */
rl_err rl_cluster_nodes(rl_rpc_client *cl, const char *target,
                        unsigned timeout_ms, struct rl_member **out,
                        unsigned *count, char *err, size_t errlen);
/* Status of target (a hosted node). */
rl_err rl_cluster_get_status(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, rl_cluster_status *out,
                             char *err, size_t errlen);
/* A member's word that it was in `term` when it asked (raft id, and its
** rl_node_term taken after its read began): the leader counts it towards
** the read's majority (raftd/node/confirm.c). */
typedef struct rl_voter_stamp {
    uint64_t raft_id, term;
    uint64_t known_commit; /* its commit index: a read point beyond it
                              makes the leader push its commit index */
} rl_voter_stamp;
/* A linearizable read point from target (the leader): *index, and the
** leader's last database-changing entry as of its answer in
** *last_effective (if not NULL). vs: this node's stamp, or NULL. */
rl_err rl_cluster_read_index(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, const rl_voter_stamp *vs,
                             uint64_t *index, uint64_t *last_effective,
                             char *err, size_t errlen);
/* rl_cluster_read_index with flags: RL_READ_HINT, the leader's commit
** index and L as it knows them, at once (no quorum round: a hint, not a
** read point); RL_READ_RELAY, target is this process's host, which asks
** the leader when it does not lead (a client process's request). */
#define RL_READ_HINT  1
#define RL_READ_RELAY 2
#define RL_READ_BARRIER                                                        \
    4 /* the leader's read point from a barrier: it                            \
         replicates its commit index now */
rl_err rl_cluster_read_hint(rl_rpc_client *cl, const char *target,
                            unsigned timeout_ms, int flags, uint64_t *index,
                            uint64_t *last_effective, char *err, size_t errlen);
/* rl_cluster_read_hint(RL_READ_HINT) that also asks the leader for a
** write lease for this node, raft id lease_for (raftd/node/lease.c):
** *lease_ms is what it granted, 0 for none. */
rl_err rl_cluster_lease_hint(rl_rpc_client *cl, const char *target,
                             unsigned timeout_ms, uint64_t lease_for,
                             uint64_t *index, uint64_t *last_effective,
                             unsigned *lease_ms, char *err, size_t errlen);

/* A leader's confirmation of a linearizable read (raftd/node/confirm.c):
** asks the n targets (the other voters' sidecars) for their term, the
** first `need` at once and the rest if those fall short (peers.c
** CONFIRM_HEDGE_MS), and returns once `need` answered `term`: 0. 1 when one
** answered a newer term (*newer: this node is deposed), -1 when no
** majority answered within timeout_ms (err says why; the caller may fall
** back to a barrier). need 0 returns 0 at once. */
int rl_cluster_confirm_term(rl_rpc_client *cl, const char *const *targets,
                            unsigned n, unsigned need, uint64_t term,
                            unsigned timeout_ms, uint64_t *newer, char *err,
                            size_t errlen);

#endif /* RL_PEERS_H */
