/*
** tests/unit/test_fsm_fixture.c -- deterministic consensus test of the FSM
** (raftd/node/fsm.h) on libraft 0.15's raft_fixture: 3 and 5 servers in
** memory, each running the pure FSM exactly as raftd/node/raftfsm.c calls it
** (decide, take, snapshot with trailing policy, async snapshot step,
** restore), under random schedules of
**   - client proposals: TXN entries whose base is the leader's L (fresh),
**     an older L or a wrong index (stale: the verdict rule must refuse
**     them), META (metadata of a few nodes, replaced by raft id and by
**     string id), GENESIS, NOOP, BARRIER-kind entries, malformed bytes,
**     and raft's own barriers;
**   - partitions and links down (silent drops, both ways), delayed
**     messages (per-server network latency: servers' messages interleave
**     in any order, one server's stay in order as over TCP), slow disks
**     (disk latency), failing disk writes, restarts (raft closed and
**     reopened on its in-memory disk with a fresh FSM, as a process
**     restart and raftd/node/reload.c's log reload do), election
**     timeouts changed so other servers win;
**   - snapshots taken (small thresholds and trailing counts) and installed
**     on servers that fell behind.
** tests/unit/lib/fixture_shim.c makes the fixture restartable;
** tests/unit/lib/fsm_canon.c keeps the canonical record and the model.
** raft 0.15 fails under some schedules by itself (docs/ARCHITECTURE.md,
** "raftd/node", Tests): they are out of the default schedule;
** --raft-bugs puts them back (one-way drops, cut links, paused servers,
** no cap on raft's match index), to show them.
** After every fixture event every server's state (L, last FSM index A,
** metadata table) must equal the canonical state at its A; every apply
** must give the verdict the first applier of that index gave, and that
** verdict must be the one an independent model of the rule gives (base ==
** L, metadata newest-wins); every manifest taken or restored at S must
** carry the canonical A, L and metadata of S; a proposer's answer must be
** the replicated verdict. At the end the network heals and every server
** must converge on the same applied index and state.
**
** A failing run prints its seed and the command that replays it:
**   build/tests/unit/test_fsm_fixture --seed N --nodes N --steps N
** (--seeds N or RL_FIXTURE_SEEDS=N runs N seeds; RL_LONG=1 more and
** longer; RL_STRICT=1 makes a known raft bug fail the run.)
** It never reads the clock or anything outside the process.
*/
#include <raft.h>
#include <raft/fixture.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/fixture_shim.h"
#include "lib/fsm_canon.h"
#include "lib/rng.h"
#include "fsm.h"

#define MAXN       5
#define DB_PER_A   4096 /* db_size the async step writes: A * DB_PER_A */
#define VERDICT_NO ((void *)(uintptr_t)1)
#define VERDICT_OK ((void *)(uintptr_t)2)

/* ---- one server ---- */

struct srv {
    unsigned i;
    struct raft_fsm fsm;
    struct rl_fsm sm;
    uint64_t meta_hash; /* of sm's metadata table, kept up to date */
    uint64_t snap_A;    /* set by fx_snapshot, read by fx_snapshot_async */
    unsigned trailing;  /* policy of rl_fsm_trailing */
    uint64_t trailing_bytes;
    unsigned threshold, install_timeout;
    struct rl_shim sh; /* its raft_io, made restartable */
};

/* The run. */
static struct raft_fixture F;
static struct srv S[MAXN];
static unsigned N;
static struct rl_rng rng;
static uint64_t seed;
static unsigned steps_total, step_no;
/* The canonical record and the model of the rules (lib/fsm_canon.h). */
static struct rl_canon cn;
/* Links: cut (disconnect) and dropping (saturate), per direction. */
static int cut[MAXN][MAXN], drop[MAXN][MAXN], part[MAXN][MAXN];
/* --raft-bugs: also the faults raft 0.15 itself fails under (see main). */
static int raft_bugs;
static int strict; /* RL_STRICT=1: known raft bugs fail the run too */
static int alive[MAXN];
/* The L values that took effect, newest last: sources of stale bases. */
static uint64_t Ls[256];
static unsigned n_Ls;

/* Totals over every seed of this process: the test exercised what it
** names. */
static struct {
    unsigned long applies, txn_ok, txn_refused, meta, malformed, snapshots,
        restores, answers, faults, kills, partitions, restarts, reloads,
        clamped, known;
} tot;

static char replay[256];

static void print_servers(void)
{
    for (unsigned i = 0; i < N; i++) {
        struct raft *r = raft_fixture_get(&F, i);
        fprintf(stderr,
                "  server %u: %s, state %d, term %llu, last index %llu, "
                "commit %llu, applied %llu, snapshot %llu, FSM A %llu L "
                "%llu\n",
                i, alive[i] ? "alive" : "dead", raft_state(r),
                (unsigned long long)r->current_term,
                (unsigned long long)raft_last_index(r),
                (unsigned long long)r->commit_index,
                (unsigned long long)raft_last_applied(r),
                (unsigned long long)r->log.snapshot.last_index,
                (unsigned long long)S[i].sm.A, (unsigned long long)S[i].sm.L);
    }
}

static void print_replay(void)
{
    if (N)
        print_servers();
    fprintf(stderr, "seed %llu, %u nodes, step %u of %u\n%s\n",
            (unsigned long long)seed, N, step_no, steps_total, replay);
}

/* raft_fixture asserts its own invariants (election safety, leader
** append-only) with abort(): say how to replay that too. */
static void on_abort(int sig)
{
    (void)sig;
    print_replay();
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* ---- helpers ---- */

static void grow(uint64_t index)
{
    CHECK(rl_canon_grow(&cn, index) == 0, "out of memory at %llu",
          (unsigned long long)index);
}

/* ---- the FSM callbacks: raftd/node/raftfsm.c's, minus threads, logs ---- */

static int fx_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                    void **result)
{
    struct srv *s = fsm->data;
    struct raft *r = raft_fixture_get(&F, s->i);
    uint64_t index = raft_last_applied(r) + 1;
    struct rl_fsm_verdict v;
    CHECK(index > s->sm.A, "server %u applies %llu after %llu", s->i,
          (unsigned long long)index, (unsigned long long)s->sm.A);
    rl_fsm_decide(&s->sm, index, buf->base, buf->len, &v);
    CHECK(rl_fsm_take(&s->sm, &v) == 0);
    if (v.decoded && v.e.h.kind == RL_ENTRY_META && v.effective)
        s->meta_hash = rl_canon_hash_metas(s->sm.metas, s->sm.n_metas);
    tot.applies++;
    grow(index);
    struct rl_canon_entry *c = &cn.at[index];
    uint64_t sum =
        v.decoded ? v.e.checksum : rl_checksum64(1, buf->base, buf->len);
    if (!c->set) {
        /* First apply of this index: every FSM index below it has been
        ** applied somewhere, so the model stands at the previous one. */
        CHECK(index > cn.frontier,
              "index %llu first applied below the "
              "frontier %llu",
              (unsigned long long)index, (unsigned long long)cn.frontier);
        struct rl_entry e;
        int ok;
        int eff = rl_canon_model(&cn, index, buf->base, buf->len, &ok, &e);
        CHECK(eff >= 0, "index %llu: the model's metadata table is full",
              (unsigned long long)index);
        CHECK(v.decoded == ok && v.effective == eff,
              "index %llu kind %d base %llu: server %u's verdict %d, the "
              "rule's %d (model L %llu)",
              (unsigned long long)index, ok ? e.h.kind : 0,
              ok ? (unsigned long long)e.h.base : 0ull, s->i, v.effective, eff,
              (unsigned long long)cn.L);
        CHECK(s->sm.L == cn.L,
              "index %llu: server %u's L %llu, the "
              "rule's %llu",
              (unsigned long long)index, s->i, (unsigned long long)s->sm.L,
              (unsigned long long)cn.L);
        CHECK(s->meta_hash == rl_canon_hash_metas(cn.metas, cn.n_metas),
              "index %llu: server %u's metadata differs from the rule's",
              (unsigned long long)index, s->i);
        rl_canon_set(&cn, index, ok ? e.h.kind : 0, eff, sum);
        if (ok && e.h.kind == RL_ENTRY_TXN) {
            if (eff)
                tot.txn_ok++;
            else
                tot.txn_refused++;
        }
        if (ok && e.h.kind == RL_ENTRY_META)
            tot.meta++;
        if (!ok)
            tot.malformed++;
        if (eff && (c->kind == RL_ENTRY_TXN || c->kind == RL_ENTRY_GENESIS))
            Ls[n_Ls++ % 256] = index;
    } else {
        CHECK(c->sum == sum,
              "index %llu: server %u applies another entry "
              "than the first applier",
              (unsigned long long)index, s->i);
        CHECK(c->kind == (v.decoded ? v.e.h.kind : 0) &&
                  c->effective == v.effective,
              "index %llu: server %u's verdict %d, first applier's %d",
              (unsigned long long)index, s->i, v.effective, c->effective);
        CHECK(s->sm.L == c->L && s->meta_hash == c->meta_hash,
              "index %llu: server %u's L %llu, first applier's %llu (or "
              "metadata differs)",
              (unsigned long long)index, s->i, (unsigned long long)s->sm.L,
              (unsigned long long)c->L);
    }
    *result = v.effective ? VERDICT_OK : VERDICT_NO;
    return 0;
}

/* A manifest's A, L, metadata must be the canonical ones of its S, and the
** same at S on every server that takes or restores one. */
static void check_manifest(const char *what, unsigned i,
                           const struct rl_manifest *m)
{
    uint64_t A = rl_canon_A(&cn, m->S);
    uint64_t mh = rl_canon_hash_metas(m->members, m->n_members);
    CHECK(m->A == A && m->L == rl_canon_L(&cn, A) &&
              mh == rl_canon_meta(&cn, A),
          "%s by server %u at S=%llu: A %llu L %llu, canonical A %llu L %llu "
          "(or metadata differs)",
          what, i, (unsigned long long)m->S, (unsigned long long)m->A,
          (unsigned long long)m->L, (unsigned long long)A,
          (unsigned long long)rl_canon_L(&cn, A));
    grow(m->S);
    CHECK(rl_canon_snap_agrees(&cn, m->S, m->A, m->L, mh),
          "%s by server %u at S=%llu differs from an earlier one", what, i,
          (unsigned long long)m->S);
}

static int fx_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                       unsigned *n_bufs)
{
    struct srv *s = fsm->data;
    struct raft *r = raft_fixture_get(&F, s->i);
    uint64_t S_ = r->last_applied, A;
    CHECK(rl_fsm_snapshot(&s->sm, S_, bufs, n_bufs, &A) == 0);
    struct rl_manifest m;
    char err[200];
    CHECK(rl_manifest_decode((*bufs)[0].base, (*bufs)[0].len, &m, err,
                             sizeof err) == 0,
          "%s", err);
    CHECK(m.S == S_ && m.A == A);
    check_manifest("snapshot", s->i, &m);
    rl_manifest_clear(&m);
    s->snap_A = A;
    unsigned trailing =
        rl_fsm_trailing(&s->sm, S_, s->trailing, s->trailing_bytes);
    CHECK(trailing >= 1 && trailing <= (s->trailing ? s->trailing : 1));
    raft_set_snapshot_trailing(r, trailing);
    tot.snapshots++;
    return 0;
}

/* raftfsm.c's async step waits for the database, then writes its size into
** the manifest: here the size is a function of A, so it is checkable. */
static int fx_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                             unsigned *n_bufs)
{
    struct srv *s = fsm->data;
    CHECK(*n_bufs == 1);
    CHECK(rl_manifest_patch_db_size((*bufs)[0].base, (*bufs)[0].len,
                                    s->snap_A * DB_PER_A + 1) == 0);
    return 0;
}

static int fx_snapshot_finalize(struct raft_fsm *fsm,
                                struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    rl_fsm_snapshot_finalize(bufs, n_bufs);
    return 0;
}

static int fx_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct srv *s = fsm->data;
    struct rl_manifest m;
    char err[200];
    int rc = rl_fsm_restore(&s->sm, buf->base, buf->len, &m, err, sizeof err);
    CHECK(rc == 0, "server %u restores: %s", s->i, err);
    s->meta_hash = rl_canon_hash_metas(s->sm.metas, s->sm.n_metas);
    check_manifest("restore", s->i, &m);
    CHECK(m.db_size == m.A * DB_PER_A + 1,
          "restored manifest at S=%llu "
          "has db_size %llu: not the async step's",
          (unsigned long long)m.S, (unsigned long long)m.db_size);
    CHECK(s->sm.A == m.A && s->sm.L == m.L);
    rl_manifest_clear(&m);
    raft_free(buf->base);
    tot.restores++;
    return 0;
}

/* ---- restarts ---- */

static void configure(struct srv *s)
{
    struct raft *r = raft_fixture_get(&F, s->i);
    raft_set_election_timeout(r, 1000);
    raft_set_heartbeat_timeout(r, 100);
    raft_set_snapshot_threshold(r, s->threshold);
    raft_set_snapshot_trailing(r, s->trailing);
    raft_set_install_snapshot_timeout(r, s->install_timeout);
}

static void set_alive(unsigned i, int up);

/* What raftd/node/reload.c does: close raft, reset the FSM to a
** fresh process's, open raft again on the same disk. Faults end first
** (the node waits for the disk to have room). */
static void restart(unsigned i)
{
    struct srv *s = &S[i];
    struct raft *r = raft_fixture_get(&F, i);
    int was_alive = alive[i];
    if (was_alive)
        set_alive(i, 0);
    rl_shim_reset_faults(&s->sh); /* the disk is back */
    for (unsigned k = 0; s->sh.pending > 0; k++) {
        CHECK(k < 100000, "server %u: %u requests never completed", i,
              s->sh.pending);
        raft_fixture_step(&F);
    }
    raft_close(r, NULL);
    rl_shim_reset_faults(&s->sh);
    rl_fsm_clear(&s->sm);
    s->meta_hash = rl_canon_hash_metas(NULL, 0);
    s->snap_A = 0;
    /* raft_init refuses snapshot_async with the fixture's io (see run). */
    s->fsm.snapshot_async = NULL;
    CHECK(raft_init(r, s->sh.io, &s->fsm, F.servers[i].id,
                    F.servers[i].address) == 0,
          "raft_init: %s", raft_errmsg(r));
    s->fsm.snapshot_async = fx_snapshot_async;
    r->tracer = &F.servers[i].tracer;
    configure(s);
    CHECK(raft_start(r) == 0, "server %u restarts: %s", i, raft_errmsg(r));
    tot.restarts++;
    if (was_alive)
        set_alive(i, 1);
}

/* ---- after every fixture event ---- */

static void check_all(void)
{
    for (unsigned i = 0; i < N; i++) {
        struct srv *s = &S[i];
        struct raft *r = raft_fixture_get(&F, i);
        uint64_t A = s->sm.A;
        CHECK(A <= raft_last_applied(r),
              "server %u: FSM index %llu past "
              "raft's last applied %llu",
              i, (unsigned long long)A,
              (unsigned long long)raft_last_applied(r));
        if (A == 0) {
            CHECK(s->sm.L == 0 && s->sm.n_metas == 0,
                  "server %u has state but applied nothing", i);
            continue;
        }
        CHECK(A < cn.cap && cn.at[A].set,
              "server %u at A=%llu: no canonical "
              "entry there",
              i, (unsigned long long)A);
        CHECK(s->sm.L == cn.at[A].L && s->meta_hash == cn.at[A].meta_hash,
              "server %u at A=%llu: L %llu, canonical %llu (or metadata "
              "differs)",
              i, (unsigned long long)A, (unsigned long long)s->sm.L,
              (unsigned long long)cn.at[A].L);
    }
}

static void hook(struct raft_fixture *f, struct raft_fixture_event *ev)
{
    (void)f;
    (void)ev;
    check_all();
}

/* ---- the schedule ---- */

struct prop {
    struct raft_apply req;
    unsigned server;
};

static void prop_cb(struct raft_apply *req, int status, void *result)
{
    struct prop *p = req->data;
    if (status == 0) {
        /* The proposer learns the verdict every server applies. */
        CHECK(req->index < cn.cap && cn.at[req->index].set);
        CHECK((result == VERDICT_OK) == cn.at[req->index].effective,
              "server %u answered %s for index %llu, replicated %s", p->server,
              result == VERDICT_OK ? "effective" : "no-op",
              (unsigned long long)req->index,
              cn.at[req->index].effective ? "effective" : "no-op");
        tot.answers++;
    }
    free(p);
}

static void barrier_cb(struct raft_barrier *b, int status)
{
    (void)status;
    free(b);
}

/* The leader with the highest term among live servers, or -1. */
static int leader(void)
{
    int best = -1;
    raft_term t = 0;
    for (unsigned i = 0; i < N; i++) {
        struct raft *r = raft_fixture_get(&F, i);
        if (alive[i] && raft_state(r) == RAFT_LEADER && r->current_term >= t) {
            best = (int)i;
            t = r->current_term;
        }
    }
    return best;
}

static const char *ids[] = {"n1", "n2", "n3", "n4", "n5", "alpha", "beta"};

/* Propose on server `to`, or (to < 0) mostly on the leader. Returns
** raft_apply's code. */
static int propose(int kind_hint, int to)
{
    int li = leader();
    unsigned i = to >= 0                           ? (unsigned)to
                 : li >= 0 && rl_rng_pct(&rng, 85) ? (unsigned)li
                                                   : rl_rng_below(&rng, N);
    struct raft *r = raft_fixture_get(&F, i);
    uint8_t payload[1200];
    size_t plen = rl_rng_below(&rng, 64);
    if (rl_rng_pct(&rng, 5))
        plen = 600 + rl_rng_below(&rng, 600); /* tests trailing bytes */
    for (size_t k = 0; k < plen; k++)
        payload[k] = (uint8_t)rl_rng_u32(&rng);
    struct rl_entry_hdr h = {.kind = RL_ENTRY_TXN,
                             .origin_node = r->id,
                             .origin_txn = step_no,
                             .origin_pid = 77};
    int malformed = 0;
    switch (kind_hint) {
    case 0: /* fresh: the base a writer on this server sees */
        h.base = S[i].sm.L;
        break;
    case 1: /* stale: an older L, or an index that never took effect */
        if (n_Ls && rl_rng_pct(&rng, 70))
            h.base =
                Ls[(n_Ls - 1 - rl_rng_below(&rng, n_Ls < 256 ? n_Ls : 256)) %
                   256];
        else
            h.base = rl_rng_below(&rng, (uint32_t)cn.frontier + 3);
        break;
    case 2: {
        struct rl_meta m;
        const char *id = ids[rl_rng_below(&rng, sizeof ids / sizeof *ids)];
        char ra[32], ga[32];
        snprintf(ra, sizeof ra, "10.0.0.%u:%u", rl_rng_below(&rng, 4),
                 9000 + rl_rng_below(&rng, 3));
        snprintf(ga, sizeof ga, "g%u", rl_rng_below(&rng, 3));
        CHECK(rl_meta_set(&m, 1 + rl_rng_below(&rng, 6), id, ra,
                          rl_rng_pct(&rng, 20) ? "" : ga) == 0);
        h.kind = RL_ENTRY_META;
        plen = rl_meta_encode(&m, payload, sizeof payload);
        CHECK(plen > 0);
        if (rl_rng_pct(&rng, 10))
            payload[plen - 1] = 0; /* a NUL inside: META ignored */
        break;
    }
    case 3:
        h.kind = (uint8_t)(RL_ENTRY_GENESIS + rl_rng_below(&rng, 3));
        break;
    default:
        malformed = 1;
    }
    h.payload_len = plen;
    size_t size =
        malformed ? 8 * (1 + rl_rng_below(&rng, 8)) : rl_entry_size(plen);
    struct raft_buffer buf = {raft_malloc(size), size};
    CHECK(buf.base);
    if (malformed) {
        for (size_t k = 0; k < size; k++)
            ((uint8_t *)buf.base)[k] = (uint8_t)rl_rng_u32(&rng);
    } else {
        CHECK(rl_entry_encode(&h, payload, buf.base, size) == 0);
    }
    struct prop *p = calloc(1, sizeof *p);
    CHECK(p);
    p->server = i;
    p->req.data = p;
    int rv = raft_apply(r, &p->req, &buf, 1, prop_cb);
    if (rv != 0) {
        raft_free(buf.base);
        free(p);
    }
    return rv;
}

static void barrier(void)
{
    int li = leader();
    if (li < 0)
        return;
    struct raft_barrier *b = calloc(1, sizeof *b);
    CHECK(b);
    if (raft_barrier(raft_fixture_get(&F, (unsigned)li), b, barrier_cb) != 0)
        free(b);
}

/* Make the fixture's links what cut, drop and alive say. saturate and
** desaturate assert a connected link, so connect first, cut last. */
static void links_apply(void)
{
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++) {
            if (i == j)
                continue;
            raft_fixture_reconnect(&F, i, j);
            if (part[i][j] || drop[i][j] || !alive[i] || !alive[j])
                raft_fixture_saturate(&F, i, j);
            else
                raft_fixture_desaturate(&F, i, j);
            if (cut[i][j])
                raft_fixture_disconnect(&F, i, j);
        }
}

static void set_alive(unsigned i, int up)
{
    for (unsigned j = 0; j < N; j++)
        if (j != i) {
            raft_fixture_reconnect(&F, i, j);
            raft_fixture_reconnect(&F, j, i);
        }
    if (up)
        raft_fixture_revive(&F, i);
    else
        raft_fixture_kill(&F, i);
    alive[i] = up;
    links_apply();
}

/* Split the servers in two sides that hear nothing of each other. With
** --raft-bugs, the links are cut (sends fail) instead of silent. */
static void partition(void)
{
    unsigned side = 1 + rl_rng_below(&rng, (1u << N) - 2); /* a proper cut */
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++)
            (raft_bugs ? cut : part)[i][j] =
                i != j && (((side >> i) ^ (side >> j)) & 1);
    tot.partitions++;
    links_apply();
}

static void set_disk_latency(unsigned i, unsigned ms);
static void set_latency(unsigned i, unsigned ms);

static void heal(void)
{
    memset(cut, 0, sizeof cut);
    memset(drop, 0, sizeof drop);
    memset(part, 0, sizeof part);
    for (unsigned i = 0; i < N; i++) {
        if (!alive[i])
            set_alive(i, 1);
        set_latency(i, 15);
        /* The fixture's "random" election timeout is a fixed value per
        ** server: equal ones would split the vote forever. */
        raft_fixture_set_randomized_election_timeout(&F, i, 1000 + 150 * i);
        set_disk_latency(i, 10);
        S[i].sh.fault_armed = 0;
        /* raft 0.15 leaves a server whose disk failed unavailable until
        ** it restarts (raftd/node/reload.c reloads its log then). */
        if (raft_state(raft_fixture_get(&F, i)) == RAFT_UNAVAILABLE)
            restart(i);
    }
    links_apply();
}

/* Messages of one server arrive in the order it sent them, as over raft's
** TCP connections: a lower latency applies only to messages that cannot
** overtake one in flight. (raft 0.15 trips its own assertion when an
** AppendEntries overtakes an earlier one: replication.c,
** request->args.n_entries == n.) Delays still differ between servers, so
** messages of different servers interleave in any order. */
static void set_latency(unsigned i, unsigned ms)
{
    raft_fixture_set_network_latency(&F, i, rl_shim_latency(&S[i].sh, ms));
}

/* A disk writes in order: change a server's latency only while nothing
** is being written (the fixture completes each request at its own time). */
static void set_disk_latency(unsigned i, unsigned ms)
{
    if (S[i].sh.disk_pending == 0)
        raft_fixture_set_disk_latency(&F, i, ms);
}

/* One fixture event, then the log reload of any server whose disk write
** failed in it. */
static void step_one(void)
{
    raft_fixture_step(&F);
    for (unsigned i = 0; i < N; i++)
        if (S[i].sh.io_failed) {
            restart(i);
            tot.reloads++;
        }
}

static void step_fixture(unsigned events)
{
    for (unsigned k = 0; k < events; k++)
        step_one();
}

/* Step until stop() holds (1) or max_ms of fixture time passed (0). */
static int step_until(bool (*stop)(struct raft_fixture *, void *),
                      unsigned max_ms)
{
    raft_time start = F.time;
    while (!(stop && stop(&F, NULL))) {
        if (F.time - start >= max_ms)
            return 0;
        step_one();
    }
    return 1;
}

static bool has_leader(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return f->leader_id != 0;
}

static void one_step(void)
{
    unsigned a = rl_rng_below(&rng, 100);
    unsigned i = rl_rng_below(&rng, N);
    unsigned j = (i + 1 + rl_rng_below(&rng, N - 1)) % N;
    if (a < 30) {
        propose(0, -1);
    } else if (a < 42) {
        propose(1, -1);
    } else if (a < 47) {
        propose(2, -1);
    } else if (a < 50) {
        propose(rl_rng_pct(&rng, 70) ? 3 : 4, -1);
    } else if (a < 53) {
        barrier();
    } else if (a < 57) {
        partition();
    } else if (a < 62) {
        memset(cut, 0, sizeof cut);
        memset(part, 0, sizeof part);
        links_apply();
    } else if (a < 66) {
        /* A link goes down or comes back: both ways, or (--raft-bugs) one
        ** way only. */
        drop[i][j] = !drop[i][j];
        if (!raft_bugs)
            drop[j][i] = drop[i][j];
        links_apply();
    } else if (a < 70) {
        set_latency(i, 1 + rl_rng_below(&rng, 300));
    } else if (a < 74) {
        set_disk_latency(i, 1 + rl_rng_below(&rng, 400));
    } else if (a < 76) {
        rl_shim_fault(&S[i].sh, (int)rl_rng_below(&rng, 6));
        tot.faults++;
    } else if (a < 80) {
        /* --raft-bugs: pause (raft_fixture_kill: no ticks, no messages)
        ** and resume; otherwise a restart, as a process restart does. */
        if (!raft_bugs) {
            restart(i);
        } else if (alive[i]) {
            set_alive(i, 0);
            tot.kills++;
        } else {
            set_alive(i, 1);
        }
    } else if (a < 83) {
        raft_fixture_set_randomized_election_timeout(
            &F, i, 1000 + rl_rng_below(&rng, 1000));
    } else if (a < 86) {
        step_until(NULL, rl_rng_below(&rng, 3000));
        return;
    } else if (a < 88) {
        heal();
    } else if (a < 91) {
        restart(i);
    }
    step_fixture(1 + rl_rng_below(&rng, 60));
}

/* ---- one seed ---- */

static bool converged(struct raft_fixture *f, void *arg)
{
    (void)arg;
    raft_index want = raft_last_applied(raft_fixture_get(f, 0));
    for (unsigned i = 0; i < N; i++) {
        struct raft *r = raft_fixture_get(f, i);
        if (raft_last_applied(r) != want || raft_last_index(r) != want)
            return 0;
    }
    return want > 0 && f->leader_id != 0;
}

static void run(uint64_t sd, unsigned n, unsigned steps)
{
    seed = sd;
    N = n;
    steps_total = steps;
    step_no = 0;
    snprintf(replay, sizeof replay,
             "replay: build/tests/unit/test_fsm_fixture --seed %llu --nodes "
             "%u --steps %u%s",
             (unsigned long long)sd, n, steps, raft_bugs ? " --raft-bugs" : "");
    rl_rng_seed(&rng, sd);
    memset(&F, 0, sizeof F);
    memset(S, 0, sizeof S);
    memset(cut, 0, sizeof cut);
    memset(drop, 0, sizeof drop);
    memset(part, 0, sizeof part);
    rl_canon_reset(&cn);
    n_Ls = 0;
    CHECK(raft_fixture_initialize(&F) == 0);
    for (unsigned i = 0; i < n; i++) {
        struct srv *s = &S[i];
        s->i = i;
        rl_fsm_init(&s->sm);
        s->meta_hash = rl_canon_hash_metas(NULL, 0);
        s->trailing = 1 + rl_rng_below(&rng, 8);
        s->trailing_bytes = 256 + rl_rng_below(&rng, 4096);
        s->fsm.version = 3;
        s->fsm.data = s;
        s->fsm.apply = fx_apply;
        s->fsm.snapshot = fx_snapshot;
        s->fsm.restore = fx_restore;
        s->fsm.snapshot_finalize = fx_snapshot_finalize;
        CHECK(raft_fixture_grow(&F, &s->fsm) == 0);
        rl_shim_install(&s->sh, &F.servers[i].io, &F.time);
        s->sh.fix_match = !raft_bugs;
        /* raft_init refuses snapshot_async unless io->version >= 2, which
        ** the fixture's io never declares though it has async_work (like
        ** raft_uv: see raftd/node/raftio.c): set it after raft_init. */
        s->fsm.snapshot_async = fx_snapshot_async;
        s->threshold = 4 + rl_rng_below(&rng, 28);
        s->install_timeout = 500 + rl_rng_below(&rng, 2000);
        configure(s);
        raft_fixture_set_randomized_election_timeout(
            &F, i, 1000 + rl_rng_below(&rng, 1000));
        alive[i] = 1;
    }
    struct raft_configuration conf;
    CHECK(raft_fixture_configuration(&F, n, &conf) == 0);
    CHECK(raft_fixture_bootstrap(&F, &conf) == 0);
    raft_configuration_close(&conf);
    CHECK(raft_fixture_start(&F) == 0);
    raft_fixture_hook(&F, hook);
    for (step_no = 1; step_no <= steps; step_no++)
        one_step();
    /* Heal, then every server must reach the same applied index (a new
    ** entry of the last leader's term commits everything before it). */
    heal();
    CHECK(step_until(has_leader, 30000), "no leader within 30 s after healing");
    for (int k = 0;; k++) {
        CHECK(k < 100, "the leader refuses proposals after healing");
        unsigned li = raft_fixture_leader_index(&F);
        if (li < N && propose(0, (int)li) == 0)
            break;
        step_until(has_leader, 30000);
        step_fixture(10);
    }
    if (step_until(converged, 60000)) {
        for (unsigned i = 1; i < n; i++)
            CHECK(S[i].sm.A == S[0].sm.A && S[i].sm.L == S[0].sm.L &&
                      S[i].meta_hash == S[0].meta_hash,
                  "server %u's final state differs from server 0's", i);
    } else {
        /* raft 0.15 leaves a follower behind for good now and then (a
        ** leader ignoring its rejections: progress.c "rejected index ...
        ** different from next index -> ignore"): a liveness bug of raft,
        ** not a divergence (every check above held). Like the KNOWN_BUGS
        ** of tests/faults, it fails the run only with RL_STRICT=1. */
        fprintf(stderr, "KNOWN BUG raft-0.15-stuck-follower: servers did "
                        "not converge within 60 s after healing\n");
        print_replay();
        CHECK(!strict, "RL_STRICT=1: a known bug fails the run");
        tot.known++;
    }
    for (unsigned i = 0; i < n; i++)
        tot.clamped += S[i].sh.capped;
    raft_fixture_hook(&F, NULL);
    raft_fixture_close(&F);
    for (unsigned i = 0; i < n; i++)
        rl_fsm_clear(&S[i].sm);
}

static void usage(void)
{
    fprintf(stderr, "usage: test_fsm_fixture [--seed N] [--nodes 3|5] "
                    "[--steps N] [--seeds N]\n");
    _exit(2);
}

int main(int argc, char **argv)
{
    const char *env = getenv("RL_FIXTURE_SEEDS");
    int long_run = getenv("RL_LONG") && strcmp(getenv("RL_LONG"), "1") == 0;
    unsigned seeds =
        env ? (unsigned)strtoul(env, NULL, 10) : (long_run ? 400 : 24);
    unsigned steps = long_run ? 600 : 250, nodes = 0;
    int one = 0;
    uint64_t first = 1;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--raft-bugs") == 0) {
            raft_bugs = 1;
            continue;
        }
        if (a + 1 >= argc)
            usage();
        if (strcmp(argv[a], "--seed") == 0) {
            first = strtoull(argv[++a], NULL, 10);
            one = 1;
        } else if (strcmp(argv[a], "--nodes") == 0) {
            nodes = (unsigned)strtoul(argv[++a], NULL, 10);
            if (nodes != 3 && nodes != 5)
                usage();
        } else if (strcmp(argv[a], "--steps") == 0) {
            steps = (unsigned)strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--seeds") == 0) {
            seeds = (unsigned)strtoul(argv[++a], NULL, 10);
        } else {
            usage();
        }
    }
    if (one)
        seeds = 1;
    strict = getenv("RL_STRICT") && strcmp(getenv("RL_STRICT"), "1") == 0;
    signal(SIGABRT, on_abort);
    rl_check_cleanup = print_replay;
    unsigned long total_steps = 0;
    for (unsigned k = 0; k < seeds; k++) {
        uint64_t sd = first + k;
        unsigned n = nodes ? nodes : (sd % 2 ? 3 : 5);
        run(sd, n, steps);
        total_steps += steps;
    }
    rl_canon_free(&cn);
    printf("test_fsm_fixture: %u seeds, %lu steps: %lu applies, TXN %lu "
           "effective / %lu refused, %lu META, %lu malformed, %lu snapshots, "
           "%lu restores, %lu answers, %lu partitions, %lu kills, %lu "
           "restarts (%lu after a failed write), %lu disk faults, %lu "
           "answers clamped, %lu known raft bugs met\n",
           seeds, total_steps, tot.applies, tot.txn_ok, tot.txn_refused,
           tot.meta, tot.malformed, tot.snapshots, tot.restores, tot.answers,
           tot.partitions, tot.kills, tot.restarts, tot.reloads, tot.faults,
           tot.clamped, tot.known);
    /* A run that never refused a stale base, installed a snapshot or
    ** answered a proposer proved nothing about them. */
    if (!one && seeds >= 8) {
        CHECK(tot.txn_ok > 0 && tot.txn_refused > 0);
        CHECK(tot.snapshots > 0 && tot.restores > 0);
        CHECK(tot.meta > 0 && tot.malformed > 0 && tot.answers > 0);
        CHECK(tot.restarts > 0 && tot.faults > 0 && tot.partitions > 0);
        CHECK(tot.kills > 0 || !raft_bugs);
    }
    return rl_check_report("test_fsm_fixture");
}
