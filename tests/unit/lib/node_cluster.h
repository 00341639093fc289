/*
** tests/unit/lib/node_cluster.h -- a cluster of real Raft nodes
** (raftd/node/, canonical/raft 0.15, real TCP on 127.0.0.1, real data dirs)
** in one process, each on its own loop thread with a fake database
** (fake_applier.h) per raft id: the harness of test_node,
** test_node_membership and test_node_start.
**
** One cluster per process: the state is global (rl_tc_*), as a test's
** scenario reads it. Every helper that waits takes a limit and ends the
** test (rl_tc_die: message, scratch dir removed, _exit(1)) when it passes;
** so does any failed CHECK of the test once rl_tc_init has run.
** Test code only: nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_NODE_CLUSTER_H
#define RL_TEST_NODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "fake_applier.h"
#include "node.h"

#define RL_TC_N 5 /* raft ids 1..4 run nodes; fake 0 serves solo nodes */

extern char rl_tc_dir[256];                  /* scratch dir of the run */
extern int rl_tc_ports[RL_TC_N];             /* Raft port by raft id */
extern struct rl_fake rl_tc_fakes[RL_TC_N];  /* databases by raft id */
extern struct rl_node *rl_tc_nodes[RL_TC_N]; /* running nodes, or NULL */
extern int rl_tc_grpc_base; /* gRPC "addresses" in metadata: port base */
extern uint64_t rl_tc_L;    /* base for the next effective TXN */
extern uint64_t rl_tc_txn_seq;

/* Scratch dir, ports, fakes, and the CHECK cleanup of the calling test
** (its check.h counters are its own: pass &rl_check_cleanup). */
void rl_tc_init(void (**check_cleanup)(void));
/* Stop every node, free the fakes, remove the scratch dir. */
void rl_tc_close(void);
void rl_tc_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rl_tc_cleanup(void); /* remove the scratch dir (RL_KEEP=1 keeps it) */
/* 1 under the ASan build (tests/run.py sets RL_SAN=1): slower timeouts. */
int rl_tc_slow(void);
double rl_tc_now(void);                                /* seconds, monotonic */
void rl_tc_log(void *ctx, int level, const char *msg); /* node log */

void rl_tc_start(int id, int bootstrap); /* data dir rl_tc_dir/n<id> */
/* Where node id posts its board (cfg.board_path): rl_tc_dir/board<id>. */
void rl_tc_board_path(char *out, size_t n, int id);
void rl_tc_stop(int id);
/* Node 1 bootstraps and proposes GENESIS, nodes 2 and 3 join: returns
** the GENESIS index. */
uint64_t rl_tc_form(void);
void rl_tc_add(int leader, int id); /* as a voter, with its metadata */
/* Wait until node id is the only ready leader of the highest term. */
void rl_tc_wait_leader_is(int id, double limit_s);
/* The ready leader of the highest term among running nodes. */
int rl_tc_wait_leader(double limit_s);
void rl_tc_wait_applied(int id, uint64_t index);
/* Propose on node id (half of them written in place, as the replicator
** does); the verdict must be want_effective. Returns the index. */
uint64_t rl_tc_propose(int id, uint8_t kind, uint64_t base, const void *p,
                       size_t len, int want_effective);
/* An effective TXN "txn i on id" at rl_tc_L. */
uint64_t rl_tc_txn(int id, int i);

/* Both fakes hold identical records up to the lower applied index. */
void rl_tc_compare(int a, int b);
/* Node id's record of index (zeroed if it has none). */
struct rl_fake_rec rl_tc_find_rec(int id, uint64_t index);
/* First committer wins in node id's records (the base == L rule). */
void rl_tc_check_chain(int id);
/* Bytes the data dir of node id holds. */
uint64_t rl_tc_dir_bytes(int id);
/* Wait (10 s at most) until node id lists voters ids[0..n) with their
** metadata; dies if it does not. */
void rl_tc_wait_members(int id, int n, const int *ids);

#endif /* RL_TEST_NODE_CLUSTER_H */
