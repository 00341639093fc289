/*
** tests/unit/lib/fake_applier.h -- a fake database behind a Raft node
** (struct rl_applier of node.h), shared by the tests/unit/test_node*.c
** programs (through node_cluster.c) and bench/bench_node.c.
**
** It records (index, kind, verdict, payload checksum, length, base) per
** entry as "the database" (or, with keep = 0, only the applied index),
** counts restores, images and snapshots, outlives node restarts like a
** file would, and "installs an image" by copying the records of a peer
** (peers[raft id]) whose applied index reached the manifest's A.
**
** Test and benchmark code only: nothing under raftd/, vfs/ or ext/ may
** include it. It never judges what it receives, except that an entry at or
** below the applied index is reported through fail (the node must never
** apply one twice or out of order).
*/
#ifndef RL_TEST_FAKE_APPLIER_H
#define RL_TEST_FAKE_APPLIER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

struct rl_fake_rec {
    uint64_t index;
    int kind;
    int effective;
    uint64_t sum; /* rl_checksum64 of the payload */
    size_t len;
    uint64_t base;
};

struct rl_fake {
    pthread_mutex_t mu;
    uint64_t raft_id;
    int keep; /* 1: keep a record per entry; 0: only the index */
    struct rl_fake_rec *recs;
    size_t n, cap;
    uint64_t applied;
    uint64_t durable; /* highest A made durable for a snapshot */
    int restores_have, restores_need, images, snapshots;
    struct rl_fake *peers; /* by raft id, for need_image; may be NULL */
    unsigned n_peers;
    /* Called (then the process exits) on an entry applied twice or out of
    ** order, or when memory runs out; NULL: print and exit. */
    void (*fail)(const char *msg);
};

/* Initialize f (zeroed first) for raft id; peers[0..n_peers) by raft id. */
void rl_fake_init(struct rl_fake *f, uint64_t raft_id, int keep,
                  struct rl_fake *peers, unsigned n_peers);
void rl_fake_clear(struct rl_fake *f); /* frees the records */
/* The applier callbacks on f. */
struct rl_applier rl_fake_applier(struct rl_fake *f);
uint64_t rl_fake_applied(struct rl_fake *f);

#endif /* RL_TEST_FAKE_APPLIER_H */
