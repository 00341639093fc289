/*
** tests/unit/lib/fsm_canon.h -- the checker of test_fsm_fixture.c: the
** canonical record of a run (what the first server to apply each index
** decided, and the FSM state after it; the manifest first seen at each
** snapshot index S) and an independent model of the rules it must follow,
** computed from the rules themselves and not from raftd/node/fsm.c:
**   - a TXN is effective iff its base is L, the index of the last
**     effective TXN or GENESIS; an effective one becomes L;
**   - GENESIS is effective and becomes L;
**   - a META that decodes is effective; the metadata table keeps one
**     entry per raft id and per string id, the newest wins and goes last;
**   - any other kind that decodes is effective; bytes that do not decode
**     are not.
** It judges nothing itself: it answers, and the test CHECKs the answers
** (so a failure prints the test's seed and replay line).
** Test code only: nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_FSM_CANON_H
#define RL_TEST_FSM_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/* What the first server to apply an index decided, and the state after. */
struct rl_canon_entry {
    int set;
    int kind; /* 0: malformed */
    int effective;
    uint64_t sum; /* the entry's checksum, or of the raw bytes */
    uint64_t L;
    uint64_t meta_hash;
};

/* A manifest seen at S (taken or restored). */
struct rl_canon_snap {
    int set;
    uint64_t A, L, meta_hash;
};

struct rl_canon {
    struct rl_canon_entry *at;   /* by index, [0, cap) */
    struct rl_canon_snap *snaps; /* by S, [0, cap) */
    uint64_t cap;
    uint64_t frontier; /* highest canonical index */
    /* The model: the state at the frontier. */
    uint64_t L;
    struct rl_meta metas[64];
    unsigned n_metas;
};

/* A hash of a metadata table, order included. */
uint64_t rl_canon_hash_metas(const struct rl_meta *m, unsigned n);
/* Room for index (at and snaps): 0, or -1 when memory runs out. */
int rl_canon_grow(struct rl_canon *c, uint64_t index);
/* Forget everything (a new seed); keeps the memory. */
void rl_canon_reset(struct rl_canon *c);
void rl_canon_free(struct rl_canon *c);

/* The last FSM index at or below S: what a manifest at S must call A. */
uint64_t rl_canon_A(const struct rl_canon *c, uint64_t S);
/* L and the metadata hash after FSM index A (0: the empty state). */
uint64_t rl_canon_L(const struct rl_canon *c, uint64_t A);
uint64_t rl_canon_meta(const struct rl_canon *c, uint64_t A);

/* The model's verdict on buf[0..len), applied first at index (above the
** frontier): moves the model's L and metadata. Sets *decoded, and *e when
** it decoded. Returns 1 effective, 0 not, -1 if the model's metadata
** table is full. */
int rl_canon_model(struct rl_canon *c, uint64_t index, const void *buf,
                   size_t len, int *decoded, struct rl_entry *e);
/* Record index (after rl_canon_model and rl_canon_grow) as decided:
** kind (0: malformed), verdict, the entry's sum and the model's state. */
void rl_canon_set(struct rl_canon *c, uint64_t index, int kind, int effective,
                  uint64_t sum);
/* A manifest at S with A, L and metadata hash mh: 1 if it is the first
** seen at S (now recorded) or equal to the first, 0 if it differs. Needs
** rl_canon_grow(c, S). */
int rl_canon_snap_agrees(struct rl_canon *c, uint64_t S, uint64_t A, uint64_t L,
                         uint64_t mh);

#endif /* RL_TEST_FSM_CANON_H */
