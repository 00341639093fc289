/*
** raftd/node/fsm.h -- raftlite's replicated state machine as pure code:
** the verdict of every entry (a TXN takes effect iff its base equals L),
** L itself, the cluster-metadata table, and the snapshot manifest that
** carries them (encoded, restored, trailing policy).
**
** Every function is deterministic: the state after applying a sequence of
** entries depends on those entries alone, so every node that applies the
** same log reaches the same verdicts, L, metadata and manifests. That is
** what tests/unit/test_fsm_fixture.c checks on raft's in-memory fixture.
**
** This room depends on libraft (buffers of raft_malloc), the entry codec
** (entry.h) and lib/ only. It must never take a lock, start a thread,
** touch a loop, a file or SQLite, log, or wait: the caller
** (raftd/node/raftfsm.c) owns locking (rl_fsm_take, rl_fsm_restore and
** rl_fsm_clear change the metadata table that other threads read) and
** says what went wrong.
*/
#ifndef RL_FSM_H
#define RL_FSM_H

#include <stddef.h>
#include <stdint.h>

#include <raft.h>

#include "entry.h"

/* Entry sizes remembered for the trailing policy (rl_fsm_trailing). */
#define RL_FSM_RING 4096

struct rl_fsm {
    uint64_t L; /* last database-changing entry that took effect */
    uint64_t A; /* last index that went to the FSM (raft's own barrier and
                   configuration entries never do) */
    struct rl_meta *metas; /* the metadata table: one per raft id and per
                              string id, the newest wins */
    unsigned n_metas;
    /* Bytes of entries applied since the last snapshot, and the sizes of
    ** the latest RL_FSM_RING of them (index, bytes). */
    uint64_t bytes_since_snap;
    uint64_t ring_index[RL_FSM_RING];
    uint64_t ring_size[RL_FSM_RING];
    unsigned ring_next, ring_n;
};

/* The verdict on one entry (rl_fsm_decide), before it takes effect. */
struct rl_fsm_verdict {
    uint64_t index;
    size_t len;          /* bytes of the encoded entry */
    int decoded;         /* 0: malformed, a no-op everywhere (e is zeroed) */
    struct rl_entry e;   /* header; payload points into the decided buffer */
    int effective;       /* TXN: base == L; GENESIS 1; META: decodes; else 1 */
    int base_ahead;      /* TXN whose base is not an earlier index: the log is
                            mis-indexed (the caller says so) */
    struct rl_meta meta; /* META that decoded */
    char err[200];       /* why, for a malformed entry or an ignored META */
};

/* A fresh FSM: what a new process has before raft replays into it. */
void rl_fsm_init(struct rl_fsm *f);
/* Free the metadata table and start over as rl_fsm_init. */
void rl_fsm_clear(struct rl_fsm *f);

/* Decode the entry buf[0..len) applied at index and decide its verdict.
** Reads f, changes nothing. */
void rl_fsm_decide(const struct rl_fsm *f, uint64_t index, const void *buf,
                   size_t len, struct rl_fsm_verdict *v);
/* Let a verdict of rl_fsm_decide take effect: L, the metadata table, A and
** the size accounting. Returns 0, or RL_EFMT_NOMEM if a META's metadata
** could not be stored (the verdict stands; the caller says so). */
int rl_fsm_take(struct rl_fsm *f, const struct rl_fsm_verdict *v);

/* The metadata of raft id id, or (id == 0) of string id node_id; NULL if
** unknown. Points into f: valid until f changes. */
const struct rl_meta *rl_fsm_meta_find(const struct rl_fsm *f, uint64_t id,
                                       const char *node_id);
int rl_fsm_meta_equal(const struct rl_meta *a, const struct rl_meta *b);

/* The manifest of a snapshot at raft index S (raft's last applied index):
** A is min(f->A, S), L, and f's metadata (borrowed: m->members points into
** f, do not clear m). */
void rl_fsm_manifest(const struct rl_fsm *f, uint64_t S, struct rl_manifest *m);
/* Encode the manifest of a snapshot at S into one raft buffer (raft_malloc)
** for raft_fsm.snapshot: *bufs, *n_bufs; *A_out = its A. Returns 0 or
** RAFT_NOMEM. rl_fsm_snapshot_finalize frees them. */
int rl_fsm_snapshot(const struct rl_fsm *f, uint64_t S,
                    struct raft_buffer *bufs[], unsigned *n_bufs,
                    uint64_t *A_out);
/* raft_fsm.snapshot_finalize: free what rl_fsm_snapshot returned. */
void rl_fsm_snapshot_finalize(struct raft_buffer *bufs[], unsigned *n_bufs);
/* Entries raft should keep after a snapshot at S: the newest ones at or
** below S, at most max_entries of them and at most max_bytes in all, and
** never fewer than one (raft 0.15 reloads the log mis-indexed after a
** restart with trailing 0: see raftd/node/raftfsm.c). Resets the bytes counted
** since the last snapshot. */
unsigned rl_fsm_trailing(struct rl_fsm *f, uint64_t S, unsigned max_entries,
                         uint64_t max_bytes);

/* raft_fsm.restore: decode the manifest buf[0..len) into *m (m->members is
** malloc'ed: rl_manifest_clear) and make f its state: L, A, the metadata
** table; the size accounting starts over. Returns 0, an RL_EFMT_* code of
** a malformed manifest (message in err) or RL_EFMT_NOMEM; on failure f is
** unchanged and m empty. */
int rl_fsm_restore(struct rl_fsm *f, const void *buf, size_t len,
                   struct rl_manifest *m, char *err, size_t errlen);

#endif /* RL_FSM_H */
