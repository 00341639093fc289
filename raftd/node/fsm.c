/*
** raftd/node/fsm.c -- the replicated state machine as pure code (see
** fsm.h): verdicts, L, the metadata table, manifests.
**
** Invariant: the state is a function of the entries applied (and of the
** manifest restored) alone: no clock, no randomness, no host state. Never
** lock, log, wait or call SQLite here; raftd/node/raftfsm.c does those
** around it.
*/
#include "fsm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rl_fsm_init(struct rl_fsm *f)
{
    memset(f, 0, sizeof *f);
}

void rl_fsm_clear(struct rl_fsm *f)
{
    free(f->metas);
    rl_fsm_init(f);
}

void rl_fsm_decide(const struct rl_fsm *f, uint64_t index, const void *buf,
                   size_t len, struct rl_fsm_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->index = index;
    v->len = len;
    if (rl_entry_decode(buf, len, &v->e, v->err, sizeof v->err) != 0) {
        memset(&v->e, 0, sizeof v->e);
        return; /* a no-op everywhere: every node rejects the same bytes */
    }
    v->decoded = 1;
    switch (v->e.h.kind) {
    case RL_ENTRY_TXN:
        /* The verdict rule (DESIGN 4): a transaction takes effect iff the
        ** database it was written on had every effective change, i.e. its
        ** base is the last one that took effect. */
        v->base_ahead = v->e.h.base >= index;
        v->effective = v->e.h.base == f->L;
        break;
    case RL_ENTRY_META:
        v->effective = rl_meta_decode(v->e.payload, (size_t)v->e.h.payload_len,
                                      &v->meta, v->err, sizeof v->err) == 0;
        break;
    default: /* GENESIS, NOOP, BARRIER */
        v->effective = 1;
    }
}

/* Insert or replace m; a string id maps to one raft id: the newest wins. */
static int meta_put(struct rl_fsm *f, const struct rl_meta *m)
{
    unsigned j = 0;
    for (unsigned i = 0; i < f->n_metas; i++) {
        if (f->metas[i].raft_id == m->raft_id ||
            strcmp(f->metas[i].node_id, m->node_id) == 0)
            continue;
        f->metas[j++] = f->metas[i];
    }
    f->n_metas = j;
    struct rl_meta *grown =
        realloc(f->metas, (f->n_metas + 1) * sizeof *f->metas);
    if (grown == NULL)
        return RL_EFMT_NOMEM;
    f->metas = grown;
    f->metas[f->n_metas++] = *m;
    return 0;
}

int rl_fsm_take(struct rl_fsm *f, const struct rl_fsm_verdict *v)
{
    int rc = 0;
    if (v->decoded && v->effective) {
        switch (v->e.h.kind) {
        case RL_ENTRY_TXN:
        case RL_ENTRY_GENESIS:
            f->L = v->index;
            break;
        case RL_ENTRY_META:
            rc = meta_put(f, &v->meta);
            break;
        }
    }
    f->A = v->index;
    f->ring_index[f->ring_next] = v->index;
    f->ring_size[f->ring_next] = v->len;
    f->ring_next = (f->ring_next + 1) % RL_FSM_RING;
    if (f->ring_n < RL_FSM_RING)
        f->ring_n++;
    f->bytes_since_snap += v->len;
    return rc;
}

const struct rl_meta *rl_fsm_meta_find(const struct rl_fsm *f, uint64_t id,
                                       const char *node_id)
{
    for (unsigned i = 0; i < f->n_metas; i++) {
        if (id ? f->metas[i].raft_id == id
               : strcmp(f->metas[i].node_id, node_id) == 0)
            return &f->metas[i];
    }
    return NULL;
}

int rl_fsm_meta_equal(const struct rl_meta *a, const struct rl_meta *b)
{
    return a->raft_id == b->raft_id && strcmp(a->node_id, b->node_id) == 0 &&
           strcmp(a->raft_addr, b->raft_addr) == 0 &&
           strcmp(a->grpc_addr, b->grpc_addr) == 0;
}

void rl_fsm_manifest(const struct rl_fsm *f, uint64_t S, struct rl_manifest *m)
{
    memset(m, 0, sizeof *m);
    m->S = S;
    m->A = f->A > S ? S : f->A;
    m->L = f->L;
    m->n_members = f->n_metas;
    m->members = f->metas;
}

int rl_fsm_snapshot(const struct rl_fsm *f, uint64_t S,
                    struct raft_buffer *bufs[], unsigned *n_bufs,
                    uint64_t *A_out)
{
    struct rl_manifest m;
    void *data;
    size_t len;
    rl_fsm_manifest(f, S, &m);
    if (rl_manifest_encode(&m, raft_malloc, &data, &len) != 0)
        return RAFT_NOMEM;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    if (b == NULL) {
        raft_free(data);
        return RAFT_NOMEM;
    }
    b->base = data;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    *A_out = m.A;
    return 0;
}

void rl_fsm_snapshot_finalize(struct raft_buffer *bufs[], unsigned *n_bufs)
{
    if (*bufs) {
        for (unsigned i = 0; i < *n_bufs; i++)
            raft_free((*bufs)[i].base);
        raft_free(*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
}

unsigned rl_fsm_trailing(struct rl_fsm *f, uint64_t S, unsigned max_entries,
                         uint64_t max_bytes)
{
    /* Trailing entries stay in raft's memory: keep at most max_entries and
    ** at most max_bytes of them. */
    uint64_t bytes = 0, oldest = S + 1;
    for (unsigned k = 0; k < f->ring_n; k++) {
        unsigned at = (f->ring_next + RL_FSM_RING - 1 - k) % RL_FSM_RING;
        if (f->ring_index[at] > S)
            continue;
        if (bytes + f->ring_size[at] > max_bytes)
            break;
        if (S - f->ring_index[at] + 1 > max_entries)
            break;
        bytes += f->ring_size[at];
        oldest = f->ring_index[at];
    }
    /* Measured: with trailing 0, raft 0.15 reloads the log after a restart
    ** with every entry's index one too low (the first entry after the
    ** snapshot is lost and the rest shift), so verdicts diverge. Keep at
    ** least one entry. */
    uint64_t trailing = S + 1 - oldest;
    if (trailing < 1)
        trailing = 1;
    f->bytes_since_snap = 0;
    return (unsigned)trailing;
}

int rl_fsm_restore(struct rl_fsm *f, const void *buf, size_t len,
                   struct rl_manifest *m, char *err, size_t errlen)
{
    int rc = rl_manifest_decode(buf, len, m, err, errlen);
    if (rc != 0) {
        memset(m, 0, sizeof *m);
        return rc;
    }
    struct rl_meta *copy = NULL;
    if (m->n_members > 0) {
        copy = malloc(m->n_members * sizeof *copy);
        if (copy == NULL) {
            rl_manifest_clear(m);
            snprintf(err, errlen, "out of memory copying %u members",
                     m->n_members);
            return RL_EFMT_NOMEM;
        }
        memcpy(copy, m->members, m->n_members * sizeof *copy);
    }
    free(f->metas);
    f->metas = copy;
    f->n_metas = m->n_members;
    f->L = m->L;
    f->A = m->A;
    f->ring_n = 0;
    f->bytes_since_snap = 0;
    return 0;
}
