/*
** tests/unit/lib/fsm_canon.c -- the canonical record of a fixture run and
** the independent model of the FSM's rules (see fsm_canon.h). Test code
** only; it must never call raftd/node/fsm.c, or the model would check the
** code against itself.
*/
#include "fsm_canon.h"

#include <stdlib.h>
#include <string.h>

uint64_t rl_canon_hash_metas(const struct rl_meta *m, unsigned n)
{
    uint64_t h = rl_checksum64(0x6d657461, NULL, 0) ^ n;
    for (unsigned i = 0; i < n; i++) {
        h = rl_checksum64(h, &m[i].raft_id, sizeof m[i].raft_id);
        h = rl_checksum64(h, m[i].node_id, strlen(m[i].node_id) + 1);
        h = rl_checksum64(h, m[i].raft_addr, strlen(m[i].raft_addr) + 1);
        h = rl_checksum64(h, m[i].grpc_addr, strlen(m[i].grpc_addr) + 1);
    }
    return h;
}

int rl_canon_grow(struct rl_canon *c, uint64_t index)
{
    if (index < c->cap)
        return 0;
    uint64_t ncap = c->cap ? c->cap : 1024;
    while (ncap <= index)
        ncap *= 2;
    struct rl_canon_entry *at = realloc(c->at, ncap * sizeof *at);
    if (at == NULL)
        return -1;
    c->at = at;
    struct rl_canon_snap *snaps = realloc(c->snaps, ncap * sizeof *snaps);
    if (snaps == NULL)
        return -1;
    c->snaps = snaps;
    memset(c->at + c->cap, 0, (ncap - c->cap) * sizeof *c->at);
    memset(c->snaps + c->cap, 0, (ncap - c->cap) * sizeof *c->snaps);
    c->cap = ncap;
    return 0;
}

void rl_canon_reset(struct rl_canon *c)
{
    if (c->cap) {
        memset(c->at, 0, c->cap * sizeof *c->at);
        memset(c->snaps, 0, c->cap * sizeof *c->snaps);
    }
    c->frontier = 0;
    c->L = 0;
    c->n_metas = 0;
}

void rl_canon_free(struct rl_canon *c)
{
    free(c->at);
    free(c->snaps);
    memset(c, 0, sizeof *c);
}

uint64_t rl_canon_A(const struct rl_canon *c, uint64_t S)
{
    uint64_t i = S < c->frontier ? S : c->frontier;
    while (i > 0 && !c->at[i].set)
        i--;
    return i;
}

uint64_t rl_canon_L(const struct rl_canon *c, uint64_t A)
{
    return A ? c->at[A].L : 0;
}

uint64_t rl_canon_meta(const struct rl_canon *c, uint64_t A)
{
    return A ? c->at[A].meta_hash : rl_canon_hash_metas(NULL, 0);
}

/* The metadata rule: one entry per raft id and per string id, the newest
** wins and goes last. -1 if the table is full. */
static int model_meta_put(struct rl_canon *c, const struct rl_meta *m)
{
    /* Written unlike fsm.c's on purpose: drop each entry m replaces in
    ** place, from the end, so the others keep their order. */
    for (unsigned i = c->n_metas; i-- > 0;) {
        if (c->metas[i].raft_id != m->raft_id &&
            strcmp(c->metas[i].node_id, m->node_id) != 0)
            continue;
        memmove(&c->metas[i], &c->metas[i + 1],
                (c->n_metas - i - 1) * sizeof c->metas[0]);
        c->n_metas--;
    }
    if (c->n_metas >= sizeof c->metas / sizeof c->metas[0])
        return -1;
    c->metas[c->n_metas++] = *m;
    return 0;
}

int rl_canon_model(struct rl_canon *c, uint64_t index, const void *buf,
                   size_t len, int *decoded, struct rl_entry *e)
{
    *decoded = rl_entry_decode(buf, len, e, NULL, 0) == 0;
    if (!*decoded)
        return 0;
    switch (e->h.kind) {
    case RL_ENTRY_TXN:
        if (e->h.base != c->L)
            return 0;
        c->L = index;
        return 1;
    case RL_ENTRY_GENESIS:
        c->L = index;
        return 1;
    case RL_ENTRY_META: {
        struct rl_meta m;
        if (rl_meta_decode(e->payload, (size_t)e->h.payload_len, &m, NULL, 0) !=
            0)
            return 0;
        return model_meta_put(c, &m) == 0 ? 1 : -1;
    }
    default:
        return 1;
    }
}

void rl_canon_set(struct rl_canon *c, uint64_t index, int kind, int effective,
                  uint64_t sum)
{
    c->at[index] = (struct rl_canon_entry){
        .set = 1,
        .kind = kind,
        .effective = effective,
        .sum = sum,
        .L = c->L,
        .meta_hash = rl_canon_hash_metas(c->metas, c->n_metas)};
    c->frontier = index;
}

int rl_canon_snap_agrees(struct rl_canon *c, uint64_t S, uint64_t A, uint64_t L,
                         uint64_t mh)
{
    struct rl_canon_snap *sc = &c->snaps[S];
    if (!sc->set) {
        *sc = (struct rl_canon_snap){1, A, L, mh};
        return 1;
    }
    return sc->A == A && sc->L == L && sc->meta_hash == mh;
}
