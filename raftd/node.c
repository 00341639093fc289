/*
** raftd/node.c -- the in-process Raft node (see node.h).
**
** Three kinds of thread touch a node:
**   - the loop thread owns the uv loop, raft_uv and struct raft: every
**     raft_* call and every FSM callback runs there, and it never blocks
**     on anything but its own mutex for a few instructions;
**   - the applier thread hands FSM verdicts to the database (struct
**     rl_applier) in log order, and may block in those callbacks;
**   - any other thread (proposers, status readers, stop) talks to the loop
**     through the command queue plus uv_async_send, and reads what the
**     loop publishes under n->mu.
** One libuv threadpool thread runs snapshot_async, which waits (bounded)
** for the applier.
**
** Invariants:
**   - n->mu guards the command queue, the applier queue, every published
**     field (n->pub, n->members, the metadata table) and request results;
**     it is never held across a raft_* call that can call back, nor across
**     an applier callback.
**   - A request (struct req) is freed when both the caller and the loop
**     have dropped their reference; a caller that times out just drops
**     its own.
**   - fsm_apply never fails and never blocks: its verdict depends only on
**     the entry and on L, which travels in snapshots. The verdict rule,
**     L, the metadata table and the manifests are pure code in
**     node/fsm.c; this file calls them and does the locking and logging.
** Nothing here may call SQLite.
*/
#include "node.h"
#include "node/fsm.h"
#include "fault.h"
#include "transport.h"
#include "timing.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define TICK_MS        20
#define IMAGE_RETRY_MS 300
#define DEFAULT_BYTES  ((uint64_t)64 << 20)
#define VERDICT_NOOP   ((void *)(uintptr_t)1)
#define VERDICT_EFFECT ((void *)(uintptr_t)2)

enum {
    REQ_PROPOSE = 1,
    REQ_ADD,
    REQ_ASSIGN,
    REQ_REMOVE,
    REQ_TRANSFER,
    REQ_READ,
    REQ_SNAPCFG
};

/* A command from another thread to the loop, and its result. */
struct req {
    struct rl_node *node;
    int type;
    struct req *next; /* in the command queue, pending or lost list */
    int refs;         /* caller + loop; freed at 0 (under n->mu) */
    int taken;        /* the loop took it off the command queue */
    int submitted;    /* handed to raft (under n->mu) */
    int abandoned;    /* the caller gave up before it was submitted */
    int done;         /* result below is final */
    int internal;     /* proposed by the node itself: no caller */
    uint64_t lost_at; /* uv_now when it joined the lost list */
    int rc;
    struct rl_result res;
    /* REQ_PROPOSE */
    struct raft_apply apply;
    struct raft_buffer buf; /* owned by us while base != NULL */
    uint64_t checksum;
    uint8_t kind;
    uint64_t tm[RL_T_N]; /* timing points (rl_timing_on only) */
    /* membership */
    struct raft_change change;
    struct raft_transfer transfer;
    uint64_t id;
    char addr[256];
    int role;
    int has_meta;
    struct rl_meta meta;
    /* REQ_SNAPCFG (0 = unchanged) */
    unsigned threshold, trailing;
    uint64_t threshold_bytes, trailing_bytes;
};

enum { ITEM_ENTRY = 1, ITEM_RESTORE };

/* Log reload states (see "Log reload" below). */
enum { RELOAD_NONE = 0, RELOAD_CLOSING, RELOAD_CLOSED, RELOAD_FREED };

/* One element of the applier queue. */
struct item {
    struct item *next;
    int type;
    struct rl_applied e;
    struct rl_manifest m; /* ITEM_RESTORE; owns m.members */
    uint8_t data[];       /* the entry's payload copy */
};

struct rl_node {
    struct rl_node_config cfg; /* strings point to the copies below */
    char *dir, *raft_addr, *node_id, *grpc_addr;
    struct rl_meta self;

    pthread_mutex_t mu;
    pthread_cond_t cv;  /* results, status, applier progress, stop */
    pthread_cond_t qcv; /* applier queue */
    int refs;           /* owner, applier thread, each blocked caller */
    int stopping;       /* under mu: set once by rl_node_stop */

    /* Loop thread. */
    pthread_t loop_thread;
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t tick;
    struct rl_transport transport;     /* raft_uv_tcp + TCP_NODELAY */
    unsigned long nodelay_failed_said; /* loop only */
    /* Loop only, rl_timing_on only (vfs/timing.h): the index the next
    ** leader append starts at, the last entry of the latest completed
    ** one and when, and the latest FSM apply. */
    uint64_t tm_next, tm_app_last, tm_app_at, tm_fsm_index, tm_fsm_at;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    int started; /* under mu: 1 ok, -1 failed */
    char start_err[600];
    int closing;                     /* loop only */
    struct req *cmd_head, *cmd_tail; /* under mu */
    struct req *pending; /* loop only: proposals awaiting the barrier */
    struct req *lost;    /* loop only: LEADERSHIPLOST, awaiting index */
    raft_term barrier_term, ready_term;
    int barrier_inflight;
    int meta_inflight;
    struct req *readers; /* loop only: waiting for the next read barrier */
    int read_inflight;   /* a read barrier is in flight */
    uint64_t last_tick;  /* uv_now of the last tick */

    /* Reopening the Raft log (loop thread only; see "Log reload"). */
    int (*io_append)(struct raft_io *, struct raft_io_append *,
                     const struct raft_entry[], unsigned, raft_io_append_cb);
    int (*io_send)(struct raft_io *, struct raft_io_send *,
                   const struct raft_message *, raft_io_send_cb);
    int (*io_start)(struct raft_io *, unsigned, raft_io_tick_cb,
                    raft_io_recv_cb);
    raft_io_recv_cb raft_recv; /* raft's own receive callback */
    /* The AppendEntries raft is handling now (see recv_wrapped). */
    int ae_active;
    raft_id ae_from;
    raft_index ae_reached;
    int io_failed;      /* an append failed since raft last started */
    int io_failed_said; /* that failure was logged */
    int reload;         /* RELOAD_* state */
    uv_timer_t reload_timer;
    uint64_t reloads; /* completed reloads */

    /* FSM state (loop thread). sm.metas, the metadata table, is written
    ** by the loop under mu and read by any thread under mu. */
    struct rl_fsm sm;
    int threshold_lowered;
    uint64_t snap_A; /* set by fsm_snapshot, read by snapshot_async */

    /* Published (under mu). */
    struct rl_node_status pub;
    struct rl_member *members;
    unsigned n_members;

    /* Applier (under mu). */
    pthread_t applier_thread;
    int applier_started;
    struct item *q_head, *q_tail;
};

/* ---- small helpers ---- */

static void nlog(struct rl_node *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nlog(struct rl_node *n, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n->cfg.log)
        n->cfg.log(n->cfg.log_ctx, level, msg);
    else if (level <= 1)
        fprintf(stderr, "raftlite node %llu: %s\n",
                (unsigned long long)n->cfg.raft_id, msg);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static unsigned ms_left(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(dl->tv_sec - now.tv_sec) * 1000 +
                   (dl->tv_nsec - now.tv_nsec) / 1000000L;
    return ms > 0 ? (unsigned)ms : 0;
}

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

const char *rl_node_strerror(int rc)
{
    switch (rc) {
    case RL_NODE_OK:
        return "ok";
    case RL_NODE_NOTLEADER:
        return "not the leader (nothing was appended)";
    case RL_NODE_UNKNOWN:
        return "outcome unknown (appended, then leadership, the node or the "
               "time limit was lost)";
    case RL_NODE_SHUTDOWN:
        return "node is stopping";
    case RL_NODE_TIMEOUT:
        return "timed out before the node took the request";
    case RL_NODE_INVALID:
        return "invalid argument";
    case RL_NODE_NOMEM:
        return "out of memory";
    case RL_NODE_ERROR:
        return "raft refused the request";
    }
    return "unknown result code";
}

/* Free a node once its owner and its applier thread are both done. */
static void node_free(struct rl_node *n)
{
    struct item *it = n->q_head;
    while (it) {
        struct item *next = it->next;
        rl_manifest_clear(&it->m);
        free(it);
        it = next;
    }
    rl_fsm_clear(&n->sm);
    free(n->members);
    free(n->dir);
    free(n->raft_addr);
    free(n->node_id);
    free(n->grpc_addr);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->qcv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

static void node_unref(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
}

/* ---- requests ---- */

/* Call with n->mu held. */
static void req_unref_locked(struct req *r)
{
    if (--r->refs > 0)
        return;
    if (r->buf.base)
        raft_free(r->buf.base);
    free(r);
}

/* Publish a request's result (first call wins) and drop the loop's
** reference. Loop thread only. */
static void req_finish(struct rl_node *n, struct req *r, int rc,
                       const char *msg)
{
    pthread_mutex_lock(&n->mu);
    if (!r->done) {
        r->done = 1;
        r->rc = rc;
        if (msg)
            copy_str(r->res.msg, sizeof r->res.msg, msg);
        if (rc == RL_NODE_NOTLEADER) {
            raft_id id = 0;
            const char *addr = NULL;
            raft_leader(&n->raft, &id, &addr);
            r->res.leader_id = id;
            copy_str(r->res.leader_addr, sizeof r->res.leader_addr, addr);
        }
        pthread_cond_broadcast(&n->cv);
    }
    if (r->internal && r->type == REQ_PROPOSE && r->kind == RL_ENTRY_META)
        n->meta_inflight = 0;
    req_unref_locked(r);
    pthread_mutex_unlock(&n->mu);
}

/* Hand a request to the loop and wait for its result, at most timeout_ms.
** Takes over the caller's reference. */
static int req_run(struct rl_node *n, struct req *r, unsigned timeout_ms,
                   struct rl_result *res)
{
    int rc;
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&n->mu);
    if (n->stopping) {
        r->refs = 1;
        req_unref_locked(r);
        pthread_mutex_unlock(&n->mu);
        copy_str(res->msg, sizeof res->msg, "node is stopping");
        return RL_NODE_SHUTDOWN;
    }
    /* A waiter keeps the node alive: rl_node_stop may run meanwhile. */
    n->refs++;
    if (n->cmd_tail)
        n->cmd_tail->next = r;
    else
        n->cmd_head = r;
    n->cmd_tail = r;
    /* The handle stays open while stopping is 0 and we hold mu. */
    uv_async_send(&n->async);
    while (!r->done) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT)
            break;
    }
    if (r->done) {
        rc = r->rc;
        *res = r->res;
        if (rl_timing_on && r->type == REQ_PROPOSE) {
            for (int i = RL_T_PROPOSE; i <= RL_T_APPLIED; i++)
                rl_timing_set(i, r->tm[i]);
            rl_timing_mark(RL_T_WOKEN);
        }
    } else if (r->type == REQ_PROPOSE && r->taken && !r->submitted) {
        /* Waiting for the barrier: the loop will drop it, unsubmitted. */
        r->abandoned = 1;
        rc = RL_NODE_TIMEOUT;
        copy_str(res->msg, sizeof res->msg,
                 "the new leader was not ready in time (nothing appended)");
    } else if (!r->taken) {
        /* Still queued: unlink it; the loop never saw it. */
        struct req **pp = &n->cmd_head, *prev = NULL;
        while (*pp && *pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp) {
            *pp = r->next;
            if (n->cmd_tail == r)
                n->cmd_tail = prev;
        }
        r->refs--; /* the loop's reference */
        rc = RL_NODE_TIMEOUT;
        copy_str(res->msg, sizeof res->msg,
                 "the node's loop did not take the request in time");
    } else if (r->type == REQ_READ) {
        rc = RL_NODE_TIMEOUT; /* a read has no outcome to be unsure of */
        copy_str(res->msg, sizeof res->msg,
                 "leadership not confirmed within the time limit");
    } else {
        rc = RL_NODE_UNKNOWN;
        res->index = r->res.index;
        copy_str(res->msg, sizeof res->msg,
                 "time limit reached after the request was submitted: "
                 "outcome unknown");
    }
    req_unref_locked(r);
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
    return rc;
}

static struct req *req_new(int type)
{
    struct req *r = calloc(1, sizeof *r);
    if (r) {
        r->type = type;
        r->refs = 2;
    }
    return r;
}

/* ---- applier queue ---- */

static void queue_push(struct rl_node *n, struct item *it)
{
    pthread_mutex_lock(&n->mu);
    if (n->q_tail)
        n->q_tail->next = it;
    else
        n->q_head = it;
    n->q_tail = it;
    if (it->type == ITEM_ENTRY)
        n->pub.queue_bytes += it->e.len;
    pthread_cond_signal(&n->qcv);
    pthread_mutex_unlock(&n->mu);
}

/* ---- metadata table (n->sm.metas: written on the loop thread under mu) */

/* Call with mu held. */
static const struct rl_meta *meta_find_locked(struct rl_node *n, uint64_t id,
                                              const char *node_id)
{
    return rl_fsm_meta_find(&n->sm, id, node_id);
}

/* ---- FSM (loop thread) ---- */

/* Resolve proposals that lost leadership once their index is applied:
** the same entry (checksum) means it committed; another means it did not. */
static void lost_resolve(struct rl_node *n, uint64_t index, uint64_t checksum,
                         int effective)
{
    struct req **pp = &n->lost;
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index > index) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        if (r->res.index == index && r->checksum == checksum) {
            r->res.effective = effective;
            req_finish(n, r, RL_NODE_OK, NULL);
        } else {
            /* Every committed command reaches fsm_apply in index order,
            ** and a restore covering it fails the request first: another
            ** entry at its index, or a later index without it (a barrier
            ** or configuration entry took its place), means it was
            ** truncated, never committed. */
            req_finish(n, r, RL_NODE_NOTLEADER,
                       "leadership lost and another entry took the index: "
                       "not committed");
        }
    }
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
    struct rl_node *n = fsm->data;
    uint64_t index = raft_last_applied(&n->raft) + 1;
    uint64_t t0 = uv_hrtime();
    struct rl_fsm_verdict v;
    if (rl_timing_on) {
        n->tm_fsm_index = index;
        n->tm_fsm_at = rl_timing_now();
    }
    rl_fsm_decide(&n->sm, index, buf->base, buf->len, &v);
    const struct rl_entry *e = &v.e;
    int effective = v.effective;
    if (!v.decoded)
        nlog(n, 1, "entry %llu is malformed (%s): applied as a no-op",
             (unsigned long long)index, v.err);
    else if (v.base_ahead)
        nlog(n, 0,
             "entry %llu has base %llu: its base must be an earlier "
             "index, so the Raft log is mis-indexed (raft 0.15 with "
             "snapshot trailing 0?)",
             (unsigned long long)index, (unsigned long long)e->h.base);
    else if (e->h.kind == RL_ENTRY_META && !effective)
        nlog(n, 1, "META entry %llu ignored: %s", (unsigned long long)index,
             v.err);
    pthread_mutex_lock(&n->mu); /* the metadata table is read under mu */
    int rc = rl_fsm_take(&n->sm, &v);
    pthread_mutex_unlock(&n->mu);
    if (rc != 0)
        nlog(n, 0, "out of memory: metadata of raft id %llu dropped",
             (unsigned long long)v.meta.raft_id);
    RL_FAULT("raft-apply"); /* FSM state changed, applier not handed it */
    /* Copy for the applier: raft owns buf after we return. A failed
    ** allocation cannot fail the apply; the entry reaches the applier
    ** without payload and marked not effective, and that is logged. */
    size_t len = v.decoded ? (size_t)e->h.payload_len : 0;
    struct item *it = malloc(sizeof *it + len);
    if (it == NULL) {
        nlog(n, 0, "out of memory copying entry %llu for the applier",
             (unsigned long long)index);
    } else {
        memset(it, 0, sizeof *it);
        it->type = ITEM_ENTRY;
        it->e.index = index;
        it->e.kind = v.decoded ? e->h.kind : 0;
        it->e.effective = effective;
        it->e.base = e->h.base;
        it->e.origin_node = e->h.origin_node;
        it->e.origin_txn = e->h.origin_txn;
        it->e.origin_pid = e->h.origin_pid;
        if (len)
            memcpy(it->data, e->payload, len);
        it->e.payload = it->data;
        it->e.len = len;
        queue_push(n, it);
    }
    uint64_t tb = n->cfg.snapshot_threshold_bytes;
    if (n->sm.bytes_since_snap >= tb && !n->threshold_lowered) {
        /* raft counts entries only: make it snapshot after this batch. */
        uint64_t since = index - n->raft.log.snapshot.last_index;
        raft_set_snapshot_threshold(&n->raft, since > 0 ? (unsigned)since : 1);
        n->threshold_lowered = 1;
    }
    if (v.decoded && n->cfg.log)
        nlog(n, 3, "apply %llu %s base %llu -> %s, L %llu",
             (unsigned long long)index, rl_entry_kind_name(e->h.kind),
             (unsigned long long)e->h.base, effective ? "effective" : "no-op",
             (unsigned long long)n->sm.L);
    if (n->lost)
        lost_resolve(n, index, v.decoded ? e->checksum : 0, effective);
    pthread_mutex_lock(&n->mu);
    n->pub.fsm_applied = index;
    n->pub.L = n->sm.L;
    pthread_mutex_unlock(&n->mu);
    *result = effective ? VERDICT_EFFECT : VERDICT_NOOP;
    uint64_t us = (uv_hrtime() - t0) / 1000;
    if (us > 100000)
        nlog(n, 2, "apply of entry %llu (%zu bytes) took %llu ms",
             (unsigned long long)index, buf->len,
             (unsigned long long)(us / 1000));
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n_bufs)
{
    struct rl_node *n = fsm->data;
    uint64_t S = n->raft.last_applied, A;
    pthread_mutex_lock(&n->mu);
    int rc = rl_fsm_snapshot(&n->sm, S, bufs, n_bufs, &A);
    pthread_mutex_unlock(&n->mu);
    if (rc != 0) {
        nlog(n, 1, "snapshot at %llu not taken: manifest encoding failed",
             (unsigned long long)S);
        return rc;
    }
    n->snap_A = A;
    unsigned trailing = rl_fsm_trailing(&n->sm, S, n->cfg.snapshot_trailing,
                                        n->cfg.snapshot_trailing_bytes);
    raft_set_snapshot_trailing(&n->raft, trailing);
    if (n->threshold_lowered) {
        raft_set_snapshot_threshold(&n->raft, n->cfg.snapshot_threshold);
        n->threshold_lowered = 0;
    }
    nlog(n, 2, "snapshot at S=%llu A=%llu L=%llu, trailing %u entries",
         (unsigned long long)S, (unsigned long long)A,
         (unsigned long long)n->sm.L, trailing);
    return 0;
}

/* libuv threadpool: wait (bounded) until the applier has the entries up to
** A, let it make them durable, then the manifest can be stored. A timeout
** fails this snapshot; raft retries after a later batch of applies. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n_bufs)
{
    struct rl_node *n = fsm->data;
    uint64_t A = n->snap_A;
    struct timespec dl = deadline_in(n->cfg.snapshot_timeout_ms);
    int ok = 1;
    pthread_mutex_lock(&n->mu);
    while (n->pub.applier_index < A && !n->stopping) {
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT)
            break;
    }
    if (n->pub.applier_index < A || n->stopping)
        ok = 0;
    pthread_mutex_unlock(&n->mu);
    uint64_t db_size = 0;
    if (ok && n->cfg.applier.snapshot_ready(n->cfg.applier.ctx, A, ms_left(&dl),
                                            &db_size) != 0)
        ok = 0;
    pthread_mutex_lock(&n->mu);
    if (ok)
        n->pub.snapshots_taken++;
    else
        n->pub.snapshots_failed++;
    pthread_mutex_unlock(&n->mu);
    if (!ok) {
        nlog(n, 1,
             "snapshot at applier index %llu not taken: the applier did "
             "not reach it within %u ms",
             (unsigned long long)A, n->cfg.snapshot_timeout_ms);
        return RAFT_IOERR;
    }
    if (*n_bufs == 1 && db_size)
        rl_manifest_patch_db_size((*bufs)[0].base, (*bufs)[0].len, db_size);
    return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    rl_fsm_snapshot_finalize(bufs, n_bufs);
    return 0;
}

/* Loop thread: never waits. The database's side of the restore happens on
** the applier thread when it reaches the marker queued here. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct rl_node *n = fsm->data;
    struct item *it = calloc(1, sizeof *it);
    if (it == NULL)
        return RAFT_NOMEM;
    char err[200];
    pthread_mutex_lock(&n->mu); /* the metadata table is read under mu */
    int rc =
        rl_fsm_restore(&n->sm, buf->base, buf->len, &it->m, err, sizeof err);
    if (rc == 0) {
        n->pub.L = n->sm.L;
        n->pub.restores++;
        n->pub.snapshot_index = it->m.S;
    }
    pthread_mutex_unlock(&n->mu);
    if (rc != 0) {
        free(it);
        if (rc == RL_EFMT_NOMEM)
            return RAFT_NOMEM;
        nlog(n, 0, "snapshot rejected: %s", err);
        return RAFT_MALFORMED;
    }
    it->type = ITEM_RESTORE;
    /* Waiters on entries the snapshot covers cannot learn their verdict. */
    struct req **pp = &n->lost;
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index <= it->m.S) {
            *pp = r->next;
            req_finish(n, r, RL_NODE_UNKNOWN,
                       "a snapshot replaced the entry's index: outcome "
                       "unknown");
        } else {
            pp = &r->next;
        }
    }
    nlog(n, 2, "restored snapshot S=%llu A=%llu L=%llu, %u members",
         (unsigned long long)it->m.S, (unsigned long long)it->m.A,
         (unsigned long long)it->m.L, it->m.n_members);
    queue_push(n, it);
    raft_free(buf->base);
    return 0;
}

/* ---- loop: leadership, barrier, proposals ---- */

static void apply_cb(struct raft_apply *a, int status, void *result)
{
    struct req *r = a->data;
    struct rl_node *n = r->node;
    if (status == 0) {
        r->res.effective = result == VERDICT_EFFECT;
        if (rl_timing_on) {
            if (n->tm_app_last >= r->res.index)
                r->tm[RL_T_APPENDED] = n->tm_app_at;
            if (n->tm_fsm_index == r->res.index)
                r->tm[RL_T_COMMITTED] = n->tm_fsm_at;
            r->tm[RL_T_APPLIED] = rl_timing_now();
        }
        req_finish(n, r, RL_NODE_OK, NULL);
    } else if (status == RAFT_LEADERSHIPLOST && !n->closing) {
        /* It may still commit under the next leader: wait for its index
        ** (lost_sweep), at most an election timeout. */
        r->lost_at = uv_now(&n->loop);
        r->next = n->lost;
        n->lost = r;
    } else {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s after the entry was appended: outcome "
                 "unknown",
                 raft_strerror(status));
        req_finish(n, r, RL_NODE_UNKNOWN, msg);
    }
}

static void submit_propose(struct rl_node *n, struct req *r)
{
    pthread_mutex_lock(&n->mu);
    int abandoned = r->abandoned;
    r->submitted = !abandoned;
    pthread_mutex_unlock(&n->mu);
    if (abandoned) {
        req_finish(n, r, RL_NODE_TIMEOUT, "abandoned before submission");
        return;
    }
    r->apply.data = r;
    if (rl_timing_on) { /* raft_apply calls io->append synchronously */
        r->tm[RL_T_LOOP] = rl_timing_now();
        n->tm_next = raft_last_index(&n->raft) + 1;
    }
    int rc = raft_apply(&n->raft, &r->apply, &r->buf, 1, apply_cb);
    n->tm_next = 0;
    if (rc == 0) {
        r->buf.base = NULL; /* raft owns it now */
        pthread_mutex_lock(&n->mu);
        r->res.index = r->apply.index;
        pthread_mutex_unlock(&n->mu);
        return;
    }
    if (rc == RAFT_NOTLEADER) {
        req_finish(n, r, RL_NODE_NOTLEADER, "not the leader");
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "raft_apply: %s (nothing appended)",
                 raft_errmsg(&n->raft));
        req_finish(n, r, RL_NODE_ERROR, msg);
    }
}

static int node_ready(struct rl_node *n)
{
    return raft_state(&n->raft) == RAFT_LEADER &&
           n->ready_term == n->raft.current_term;
}

static void propose_internal(struct rl_node *n, uint8_t kind,
                             const void *payload, size_t len)
{
    struct rl_entry_hdr h = {.kind = kind,
                             .origin_node = n->cfg.raft_id,
                             .origin_pid = (uint32_t)getpid(),
                             .payload_len = len};
    size_t size = rl_entry_size(len);
    struct req *r = req_new(REQ_PROPOSE);
    void *buf = size ? raft_malloc(size) : NULL;
    if (r == NULL || buf == NULL || rl_entry_encode(&h, payload, buf, size)) {
        free(r);
        raft_free(buf);
        return;
    }
    r->refs = 1;
    r->internal = 1;
    r->kind = kind;
    r->buf.base = buf;
    r->buf.len = size;
    r->node = n;
    if (kind == RL_ENTRY_META)
        n->meta_inflight = 1;
    submit_propose(n, r);
}

static void barrier_cb(struct raft_barrier *b, int status)
{
    struct rl_node *n = b->data;
    n->barrier_inflight = 0;
    if (status == 0 && raft_state(&n->raft) == RAFT_LEADER &&
        n->raft.current_term == n->barrier_term) {
        n->ready_term = n->barrier_term;
        nlog(n, 2, "leader ready in term %llu",
             (unsigned long long)n->ready_term);
    } else {
        n->barrier_term = 0;
    }
    free(b);
}

static void flush_pending(struct rl_node *n, int rc, const char *msg)
{
    while (n->pending) {
        struct req *r = n->pending;
        n->pending = r->next;
        r->next = NULL;
        if (rc == RL_NODE_OK)
            submit_propose(n, r);
        else
            req_finish(n, r, rc, msg);
    }
}

/* Issue the barrier of a new term, admit or refuse waiting proposals,
** announce our own metadata. Loop thread; not while closing. */
static void check_leader(struct rl_node *n)
{
    if (n->closing)
        return;
    struct raft *r = &n->raft;
    if (raft_state(r) != RAFT_LEADER) {
        if (n->pending)
            flush_pending(n, RL_NODE_NOTLEADER,
                          "leadership lost before the entry was appended");
        return;
    }
    if (n->barrier_term != r->current_term && !n->barrier_inflight) {
        struct raft_barrier *b = calloc(1, sizeof *b);
        if (b) {
            b->data = n;
            n->barrier_term = r->current_term;
            n->barrier_inflight = 1;
            int rc = raft_barrier(r, b, barrier_cb);
            if (rc != 0) {
                nlog(n, 1, "raft_barrier: %s", raft_errmsg(r));
                n->barrier_term = 0;
                n->barrier_inflight = 0;
                free(b);
            }
        }
    }
    if (!node_ready(n))
        return;
    if (n->pending)
        flush_pending(n, RL_NODE_OK, NULL);
    if (!n->meta_inflight) {
        pthread_mutex_lock(&n->mu);
        const struct rl_meta *m = meta_find_locked(n, n->cfg.raft_id, NULL);
        int current = m && rl_fsm_meta_equal(m, &n->self);
        pthread_mutex_unlock(&n->mu);
        if (!current) {
            uint8_t buf[1024];
            size_t len = rl_meta_encode(&n->self, buf, sizeof buf);
            if (len)
                propose_internal(n, RL_ENTRY_META, buf, len);
        }
    }
}

/* ---- loop: linearizable read points ---- */

/* Readers that arrived while a barrier was in flight wait for the next
** one: the in-flight barrier may predate their read. */
struct read_batch {
    struct raft_barrier b;
    struct rl_node *n;
    struct req *list;
};

static void read_flush(struct rl_node *n);

/* Fail every reader still waiting for a barrier: leadership is gone (or
** the node stops), so no barrier of this term can confirm them. They are
** definite refusals (a read changes nothing): the caller retries on the
** next leader. */
static void read_fail_waiting(struct rl_node *n, const char *msg)
{
    while (n->readers) {
        struct req *r = n->readers;
        n->readers = r->next;
        r->next = NULL;
        req_finish(n, r, n->closing ? RL_NODE_SHUTDOWN : RL_NODE_NOTLEADER,
                   n->closing ? "node is stopping" : msg);
    }
}

static void read_barrier_cb(struct raft_barrier *b, int status)
{
    struct read_batch *rb = b->data;
    struct rl_node *n = rb->n;
    n->read_inflight = 0;
    /* The barrier is applied: every FSM entry up to it is too, and the
    ** last of them is what the applier must reach. */
    uint64_t index = n->sm.A;
    while (rb->list) {
        struct req *r = rb->list;
        rb->list = r->next;
        if (status == 0) {
            r->res.index = index;
            req_finish(n, r, RL_NODE_OK, NULL);
        } else if (n->closing) {
            req_finish(n, r, RL_NODE_SHUTDOWN, "node is stopping");
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "leadership not confirmed: %s",
                     raft_strerror(status));
            req_finish(n, r, RL_NODE_NOTLEADER, msg);
        }
    }
    free(rb);
    /* A failed barrier means leadership was lost: raft 0.15 fails its
    ** requests from inside the step-down, while raft_state() still says
    ** leader and the leader's progress array is already freed, so a
    ** barrier issued from here would crash in raft's replication. The
    ** readers queued behind this one cannot be confirmed either. */
    if (status != 0)
        read_fail_waiting(n, "leadership lost before the read was "
                             "confirmed; retry on the new leader");
    else if (!n->closing)
        read_flush(n);
}

static void read_flush(struct rl_node *n)
{
    if (n->read_inflight || n->readers == NULL)
        return;
    /* raft_barrier only on a leader that has its leader state (see
    ** read_barrier_cb). */
    if (n->closing || raft_state(&n->raft) != RAFT_LEADER ||
        n->raft.leader_state.progress == NULL) {
        read_fail_waiting(n, "not the leader");
        return;
    }
    struct read_batch *rb = calloc(1, sizeof *rb);
    struct req *list = n->readers;
    n->readers = NULL;
    int rc = RAFT_NOMEM;
    if (rb) {
        rb->n = n;
        rb->list = list;
        rb->b.data = rb;
        rc = raft_barrier(&n->raft, &rb->b, read_barrier_cb);
    }
    if (rc == 0) {
        n->read_inflight = 1;
        pthread_mutex_lock(&n->mu);
        n->pub.read_barriers++;
        pthread_mutex_unlock(&n->mu);
        return;
    }
    free(rb);
    while (list) {
        struct req *r = list;
        list = r->next;
        req_finish(n, r,
                   rc == RAFT_NOTLEADER ? RL_NODE_NOTLEADER : RL_NODE_ERROR,
                   raft_strerror(rc));
    }
}

/* ---- loop: membership ---- */

static void change_done_cb(struct raft_change *c, int status)
{
    struct req *r = c->data;
    struct rl_node *n = r->node;
    if (status == 0) {
        req_finish(n, r, RL_NODE_OK, NULL);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "membership change failed: %s",
                 raft_strerror(status));
        req_finish(n, r, RL_NODE_UNKNOWN, msg);
    }
}

static void add_cb(struct raft_change *c, int status)
{
    struct req *r = c->data;
    struct rl_node *n = r->node;
    if (status != 0 || r->role == RL_ROLE_SPARE || n->closing) {
        change_done_cb(c, status ? status : (n->closing ? RAFT_SHUTDOWN : 0));
        return;
    }
    int rc = raft_assign(&n->raft, &r->change, r->id, r->role, change_done_cb);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "added as spare, raft_assign failed: %s",
                 raft_errmsg(&n->raft));
        req_finish(n, r, RL_NODE_ERROR, msg);
    }
}

static void transfer_cb(struct raft_transfer *t)
{
    struct req *r = t->data;
    struct rl_node *n = r->node;
    raft_id id = 0;
    const char *addr = NULL;
    raft_leader(&n->raft, &id, &addr);
    if (id != 0 && id != n->cfg.raft_id && (r->id == 0 || id == r->id)) {
        req_finish(n, r, RL_NODE_OK, NULL);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "leadership transfer did not complete (leader now %llu)",
                 (unsigned long long)id);
        req_finish(n, r, RL_NODE_ERROR, msg);
    }
}

static void run_req(struct rl_node *n, struct req *r)
{
    struct raft *raft = &n->raft;
    int rc = 0;
    if (n->closing) {
        req_finish(n, r, RL_NODE_SHUTDOWN, "node is stopping");
        return;
    }
    if (r->type == REQ_SNAPCFG) { /* any node: the config is local */
        struct rl_node_config *c = &n->cfg;
        if (r->threshold)
            c->snapshot_threshold = r->threshold;
        if (r->trailing)
            c->snapshot_trailing = r->trailing;
        if (r->threshold_bytes)
            c->snapshot_threshold_bytes = r->threshold_bytes;
        if (r->trailing_bytes)
            c->snapshot_trailing_bytes = r->trailing_bytes;
        if (!n->threshold_lowered)
            raft_set_snapshot_threshold(raft, c->snapshot_threshold);
        raft_set_snapshot_trailing(raft, c->snapshot_trailing);
        req_finish(n, r, RL_NODE_OK, NULL);
        return;
    }
    if (raft_state(raft) != RAFT_LEADER) {
        req_finish(n, r, RL_NODE_NOTLEADER, "not the leader");
        return;
    }
    r->change.data = r;
    r->transfer.data = r;
    switch (r->type) {
    case REQ_PROPOSE:
        if (node_ready(n)) {
            submit_propose(n, r);
        } else {
            /* Admitted once this term's barrier applied (DESIGN 4), in
            ** arrival order. */
            struct req **pp = &n->pending;
            while (*pp)
                pp = &(*pp)->next;
            r->next = NULL;
            *pp = r;
            check_leader(n);
        }
        return;
    case REQ_ADD:
        if (r->has_meta && node_ready(n)) {
            uint8_t buf[1024];
            size_t len = rl_meta_encode(&r->meta, buf, sizeof buf);
            if (len)
                propose_internal(n, RL_ENTRY_META, buf, len);
        }
        rc = raft_add(raft, &r->change, r->id, r->addr, add_cb);
        break;
    case REQ_ASSIGN:
        rc = raft_assign(raft, &r->change, r->id, r->role, change_done_cb);
        break;
    case REQ_REMOVE:
        rc = raft_remove(raft, &r->change, r->id, change_done_cb);
        break;
    case REQ_TRANSFER:
        rc = raft_transfer(raft, &r->transfer, r->id, transfer_cb);
        break;
    case REQ_READ: {
        struct req **pp = &n->readers;
        while (*pp)
            pp = &(*pp)->next;
        r->next = NULL;
        *pp = r;
        read_flush(n);
        return;
    }
    }
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s (nothing changed)", raft_errmsg(raft));
        req_finish(n, r,
                   rc == RAFT_NOTLEADER ? RL_NODE_NOTLEADER : RL_NODE_ERROR,
                   msg);
    }
}

/* ---- loop: status publication, stop ---- */

static void publish(struct rl_node *n)
{
    struct raft *r = &n->raft;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(r, &lid, &laddr);
    unsigned nm = r->configuration.n;
    struct rl_member *mem = nm ? calloc(nm, sizeof *mem) : NULL;
    int leader = raft_state(r) == RAFT_LEADER;
    for (unsigned i = 0; mem && i < nm; i++) {
        const struct raft_server *s = &r->configuration.servers[i];
        mem[i].raft_id = s->id;
        mem[i].role = s->role;
        mem[i].is_leader = s->id == lid;
        copy_str(mem[i].raft_addr, sizeof mem[i].raft_addr, s->address);
        mem[i].recent_contact = -1;
        if (leader && r->leader_state.progress) {
            mem[i].match_index = r->leader_state.progress[i].match_index;
            mem[i].recent_contact =
                s->id == r->id ? 1 : r->leader_state.progress[i].recent_recv;
        }
    }
    raft_time now = r->io->time(r->io);
    pthread_mutex_lock(&n->mu);
    struct rl_node_status *st = &n->pub;
    int changed = st->state != raft_state(r) || st->term != r->current_term;
    st->state = raft_state(r);
    st->ready = node_ready(n);
    st->term = r->current_term;
    st->leader_id = lid;
    copy_str(st->leader_addr, sizeof st->leader_addr, laddr);
    st->commit_index = r->commit_index;
    st->last_index = raft_last_index(r);
    st->fsm_applied = raft_last_applied(r);
    st->fsm_index = n->sm.A;
    st->L = n->sm.L;
    if (r->log.snapshot.last_index > st->snapshot_index)
        st->snapshot_index = r->log.snapshot.last_index;
    st->leader_contact_ms =
        st->state == RL_STATE_FOLLOWER && now >= r->election_timer_start
            ? (unsigned)(now - r->election_timer_start)
            : 0;
    for (unsigned i = 0; mem && i < nm; i++) {
        const struct rl_meta *m = meta_find_locked(n, mem[i].raft_id, NULL);
        if (m) {
            mem[i].has_meta = 1;
            mem[i].meta = *m;
        }
    }
    if (mem || nm == 0) {
        free(n->members);
        n->members = mem;
        n->n_members = nm;
    }
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (changed) { /* logged outside mu: the sink may call us */
        struct rl_meta lm;
        int st = raft_state(r);
        const char *who = NULL;
        if (lid && rl_node_meta(n, lid, NULL, &lm) == RL_NODE_OK &&
            lm.node_id[0])
            who = lm.node_id;
        nlog(n, 2, "%s in term %llu, leader %s",
             st == RAFT_LEADER      ? "leader"
             : st == RAFT_CANDIDATE ? "candidate"
             : st == RAFT_FOLLOWER  ? "follower"
                                    : "unavailable",
             (unsigned long long)r->current_term,
             who   ? who
             : lid ? "(a node whose id is not known yet)"
                   : "unknown");
    }
}

static int log_has_room(struct rl_node *n);
static void reload_begin(struct rl_node *n);

static void handle_close_cb(uv_handle_t *h)
{
    (void)h;
}

static void raft_closed_cb(struct raft *r)
{
    struct rl_node *n = r->data;
    uv_close((uv_handle_t *)&n->async, handle_close_cb);
}

static void begin_close(struct rl_node *n)
{
    n->closing = 1;
    pthread_mutex_lock(&n->mu);
    struct req *q = n->cmd_head;
    n->cmd_head = n->cmd_tail = NULL;
    for (struct req *r = q; r; r = r->next)
        r->taken = 1;
    pthread_mutex_unlock(&n->mu);
    while (q) {
        struct req *next = q->next;
        req_finish(n, q, RL_NODE_SHUTDOWN, "node is stopping");
        q = next;
    }
    flush_pending(n, RL_NODE_SHUTDOWN, "node is stopping");
    while (n->readers) {
        struct req *r = n->readers;
        n->readers = r->next;
        req_finish(n, r, RL_NODE_SHUTDOWN, "node is stopping");
    }
    while (n->lost) {
        struct req *r = n->lost;
        n->lost = r->next;
        req_finish(n, r, RL_NODE_UNKNOWN,
                   "node stopped after leadership was lost: outcome unknown");
    }
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, handle_close_cb);
    uv_timer_stop(&n->reload_timer);
    if (n->reload == RELOAD_NONE) {
        uv_close((uv_handle_t *)&n->reload_timer, handle_close_cb);
        raft_close(&n->raft, raft_closed_cb);
    } else if (n->reload == RELOAD_CLOSING) {
        /* reload_closed_cb, then the timer, finish the close. */
    } else {
        if (n->reload == RELOAD_CLOSED) {
            raft_uv_close(&n->io);
            rl_transport_close(&n->transport);
            n->reload = RELOAD_FREED;
        }
        uv_close((uv_handle_t *)&n->reload_timer, handle_close_cb);
        uv_close((uv_handle_t *)&n->async, handle_close_cb);
    }
}

static void async_cb(uv_async_t *h)
{
    struct rl_node *n = h->data;
    if (n->closing)
        return;
    pthread_mutex_lock(&n->mu);
    int stopping = n->stopping;
    if (n->reload && !stopping) {
        /* Commands wait for raft to be open again (reload_timer_cb). */
        pthread_mutex_unlock(&n->mu);
        return;
    }
    struct req *q = stopping ? NULL : n->cmd_head;
    if (!stopping) {
        n->cmd_head = n->cmd_tail = NULL;
        for (struct req *r = q; r; r = r->next)
            r->taken = 1;
    }
    pthread_mutex_unlock(&n->mu);
    if (stopping) {
        begin_close(n);
        return;
    }
    while (q) {
        struct req *next = q->next;
        q->next = NULL;
        run_req(n, q);
        q = next;
    }
    publish(n);
}

/* Lost proposals whose index raft applied without an FSM call there: a
** barrier or configuration entry of the next leader took the index (ours
** would have reached fsm_apply, and a restore covering it already failed
** it), so they were never committed. */
static void lost_sweep(struct rl_node *n)
{
    raft_index applied = raft_last_applied(&n->raft);
    uint64_t now = uv_now(&n->loop);
    raft_id lid = 0;
    const char *laddr = NULL;
    struct req **pp = &n->lost;
    /* A known leader decides the index soon (its next AppendEntries);
    ** with none known (this node is cut off) nobody may for long. */
    raft_leader(&n->raft, &lid, &laddr);
    while (*pp) {
        struct req *r = *pp;
        if (r->res.index > applied &&
            (lid != 0 || now - r->lost_at < n->raft.election_timeout)) {
            pp = &r->next;
            continue;
        }
        if (r->res.index > applied) {
            /* No leader known for an election timeout (this node is cut
            ** off): answer now rather than at the caller's deadline. */
            *pp = r->next;
            req_finish(n, r, RL_NODE_UNKNOWN,
                       "leadership lost after the entry was appended and no "
                       "leader is known to decide its index");
            continue;
        }
        *pp = r->next;
        req_finish(n, r, RL_NODE_NOTLEADER,
                   "leadership lost and the next leader put another entry "
                   "at its index: not committed");
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct rl_node *n = t->data;
    if (n->reload)
        return; /* raft is closed: nothing to sweep or publish */
    if (n->io_failed) {
        if (!n->io_failed_said) {
            n->io_failed_said = 1;
            nlog(n, 0,
                 "writing the Raft log in %s failed (%s): this node takes no "
                 "new entry until its log is reopened, which it does once "
                 "the disk has room (free space there)",
                 n->dir, n->io.errmsg[0] ? n->io.errmsg : "no detail");
        }
        if (log_has_room(n)) {
            reload_begin(n);
            return;
        }
    }
    if (n->lost)
        lost_sweep(n);
    if (n->transport.nodelay_failed > n->nodelay_failed_said) {
        n->nodelay_failed_said = n->transport.nodelay_failed;
        nlog(n, 1,
             "TCP_NODELAY refused on %lu Raft connection(s): commits "
             "may wait ~40 ms for delayed ACKs",
             n->nodelay_failed_said);
    }
    /* A stalled loop misses heartbeats and deposes leaders: say so. */
    uint64_t now = uv_now(&n->loop);
    if (n->last_tick && now - n->last_tick > n->cfg.heartbeat_timeout_ms * 5)
        nlog(n, 1, "loop thread stalled for %llu ms",
             (unsigned long long)(now - n->last_tick));
    n->last_tick = now;
    check_leader(n);
    publish(n);
}

/* ---- loop thread ---- */

static void init_close_cb(struct raft *r)
{
    (void)r;
}

/* ---- raft io wrapper: sees every append's status ---- */

struct append_wrap {
    struct raft_io_append mine; /* handed to raft_uv; mine.data = this */
    struct raft_io_append *orig;
    raft_io_append_cb cb;
    struct rl_node *n;
    uint64_t tm_last; /* timing: last index of a leader append, or 0 */
};

static struct rl_node *node_of_io(struct raft_io *io)
{
    return (struct rl_node *)((char *)io - offsetof(struct rl_node, io));
}

/* A failed append (not one canceled by a close) means raft_uv 0.15 will
** refuse every later write of the log: see "Log reload". */
static void append_failed(struct rl_node *n, int status)
{
    if (n->closing || n->reload || status == RAFT_CANCELED)
        return;
    n->io_failed = 1;
}

static void append_done(struct raft_io_append *req, int status)
{
    struct append_wrap *w = req->data;
    struct raft_io_append *orig = w->orig;
    raft_io_append_cb cb = w->cb;
    if (status != 0)
        append_failed(w->n, status);
    else if (w->tm_last) {
        w->n->tm_app_last = w->tm_last;
        w->n->tm_app_at = rl_timing_now();
    }
    free(w);
    orig->cb = cb;
    cb(orig, status);
}

static int append_wrapped(struct raft_io *io, struct raft_io_append *req,
                          const struct raft_entry entries[], unsigned n_ent,
                          raft_io_append_cb cb)
{
    struct rl_node *n = node_of_io(io);
    struct append_wrap *w = malloc(sizeof *w);
    int rv;
    if (w == NULL)
        return RAFT_NOMEM;
    w->mine.data = w;
    w->mine.cb = NULL;
    w->orig = req;
    w->cb = cb;
    w->n = n;
    w->tm_last = rl_timing_on && n->tm_next ? n->tm_next + n_ent - 1 : 0;
    req->cb = cb;
    rv = n->io_append(io, &w->mine, entries, n_ent, append_done);
    if (rv != 0) {
        free(w);
        append_failed(n, rv);
    }
    return rv;
}

/*
** raft 0.15 answers an append that completes on a follower to the leader
** it knows now: after a candidacy that ended in the follower state (a long
** append, e.g. 50 MB, outlasts the election timeout) that is none, the
** address is NULL, and raft_uv's send takes its strlen: SIGSEGV (seen in
** unit/test_node under load: strlen <- raft_uv send <- appendFollowerCb).
** Such a message has nowhere to go: refuse it (raft takes any send
** failure as a lost message and retries by its own timers).
*/
static int send_guarded(struct raft_io *io, struct raft_io_send *req,
                        const struct raft_message *m, raft_io_send_cb cb)
{
    struct rl_node *n = node_of_io(io);
    if (m->server_address == NULL)
        return RAFT_NOCONNECTION;
    if (n->ae_active && m->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
        m->server_id == n->ae_from && m->append_entries_result.rejected == 0 &&
        m->append_entries_result.last_log_index > n->ae_reached) {
        /* raft_uv encodes the message before send returns. */
        struct raft_message capped = *m;
        capped.append_entries_result.last_log_index = n->ae_reached;
        return n->io_send(io, req, &capped, cb);
    }
    return n->io_send(io, req, m, cb);
}

/* The transport's refusals (loop thread): warnings. */
static void transport_log(void *ctx, const char *msg)
{
    nlog(ctx, 1, "%s", msg);
}

/*
** raft 0.15 answers an AppendEntries it accepts at once (no entry to
** write: a heartbeat, or entries it has already) with its last stored
** index as "the point we reached", although the request vouched only for
** the entries up to prev_log_index + n_entries. An old leader keeps the
** entries it appended but never committed: its successor, which does not
** have them, reads the answer to its first heartbeat as a match of those
** indexes (capped at its own log, which by then holds its barrier there),
** ignores every later rejection of them as stale, and never sends the old
** leader the entries that would replace them. The old leader then applies
** nothing while that leader lasts (measured: a 30 MB proposal whose leader
** was paused mid-append; its writer waited for the time limit and got
** "outcome unknown"), and the leader may count it towards a quorum it does
** not have. recv_wrapped notes the request being handled; send_guarded
** caps the answer raft sends while handling it to what it vouched for,
** as the Raft paper's receiver does. An answer sent later (entries
** written) is left alone: it follows a write that truncated every entry
** after the new ones, so its last stored index is theirs.
*/
static void recv_wrapped(struct raft_io *io, struct raft_message *m)
{
    struct rl_node *n = node_of_io(io);
    if (m->type == RAFT_IO_APPEND_ENTRIES) {
        n->ae_active = 1;
        n->ae_from = m->server_id;
        n->ae_reached =
            m->append_entries.prev_log_index + m->append_entries.n_entries;
    }
    n->raft_recv(io, m);
    n->ae_active = 0;
}

static int start_wrapped(struct raft_io *io, unsigned msecs,
                         raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct rl_node *n = node_of_io(io);
    n->raft_recv = recv;
    return n->io_start(io, msecs, tick, recv_wrapped);
}

/*
** Initializes transport, raft_uv and raft and starts raft on the node's
** loop (the loop itself, async and timers are the caller's). On failure
** *stage says how far it got (2 transport, 3 io, 4 raft) for the caller to
** undo, and start_err why.
*/
static int raft_setup(struct rl_node *n, int *stage)
{
    struct rl_node_config *c = &n->cfg;
    int rc;
    *stage = 1;
    /* Nodelay off only for measurements (bench_node --no-nodelay, or the
    ** env var for whole-system benchmarks): never in production. */
    struct rl_transport_opts topts = {
        .nodelay = !c->no_nodelay && !getenv("RAFTLITE_BENCH_NO_NODELAY"),
        .tls = c->raft_tls,
        .log = transport_log,
        .log_ctx = n};
    if ((rc = rl_transport_init(&n->transport, &n->loop, &topts)) != 0) {
        snprintf(n->start_err, sizeof n->start_err, "Raft transport: %s",
                 n->transport.raft.errmsg[0] ? n->transport.raft.errmsg
                                             : raft_strerror(rc));
        return -1;
    }
    *stage = 2;
    if ((rc = raft_uv_init(&n->io, &n->loop, n->dir, &n->transport.raft)) !=
        0) {
        snprintf(n->start_err, sizeof n->start_err, "raft_uv_init(%s): %s",
                 n->dir, n->io.errmsg[0] ? n->io.errmsg : raft_strerror(rc));
        return -1;
    }
    *stage = 3;
    /* Measured: raft 0.15's raft_uv_init fills io->async_work but leaves
    ** io->version at 1, and raft_init then refuses an FSM with
    ** snapshot_async ("async snapshot requires io->version > 1"). The
    ** method is there: declare the version that has it. */
    if (n->io.version < 2 && n->io.async_work != NULL)
        n->io.version = 2;
    if (c->segment_size)
        raft_uv_set_segment_size(&n->io, c->segment_size);
    n->io_append = n->io.append;
    n->io.append = append_wrapped;
    n->io_send = n->io.send;
    n->io.send = send_guarded;
    n->io_start = n->io.start;
    n->io.start = start_wrapped;
    n->fsm.version = 3;
    n->fsm.data = n;
    n->fsm.apply = fsm_apply;
    n->fsm.snapshot = fsm_snapshot;
    n->fsm.restore = fsm_restore;
    n->fsm.snapshot_finalize = fsm_snapshot_finalize;
    n->fsm.snapshot_async = fsm_snapshot_async;
    if ((rc = raft_init(&n->raft, &n->io, &n->fsm, c->raft_id, c->raft_addr)) !=
        0) {
        snprintf(n->start_err, sizeof n->start_err, "raft_init(%s): %s",
                 c->raft_addr, raft_errmsg(&n->raft));
        return -1;
    }
    *stage = 4;
    n->raft.data = n;
    raft_set_election_timeout(&n->raft, c->election_timeout_ms);
    raft_set_heartbeat_timeout(&n->raft, c->heartbeat_timeout_ms);
    raft_set_snapshot_threshold(&n->raft, c->snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, c->snapshot_trailing);
    /* Our Raft snapshot is a small manifest: a send that failed (peer down)
    ** must be retried soon, not after raft's default 30 s, during which
    ** the follower gets nothing. */
    raft_set_install_snapshot_timeout(&n->raft, c->install_snapshot_timeout_ms);
    /* A follower that stalls (a 50 MB append) must not depose a healthy
    ** leader with a term bump when it comes back. */
    raft_set_pre_vote(&n->raft, !c->no_pre_vote);
    if (c->bootstrap && !n->reloads) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rc =
            raft_configuration_add(&conf, c->raft_id, c->raft_addr, RAFT_VOTER);
        if (rc == 0)
            rc = raft_bootstrap(&n->raft, &conf);
        raft_configuration_close(&conf);
        if (rc == RAFT_CANTBOOTSTRAP) {
            nlog(n, 2, "not pristine: bootstrap skipped");
        } else if (rc != 0) {
            snprintf(n->start_err, sizeof n->start_err, "raft_bootstrap: %s",
                     raft_errmsg(&n->raft));
            return -1;
        }
    }
    if ((rc = raft_start(&n->raft)) != 0) {
        const char *why = raft_errmsg(&n->raft);
        if (!why || !*why)
            why = n->io.errmsg[0] ? n->io.errmsg : n->transport.raft.errmsg;
        if (!*why) /* measured: raft 0.15 says nothing on a busy port */
            why = "raft gives no detail: is the address in use, or not an "
                  "address of this host?";
        snprintf(n->start_err, sizeof n->start_err,
                 "raft_start(%s, %s): %s (%s)", c->raft_addr, n->dir,
                 raft_strerror(rc), why);
        return -1;
    }
    return 0;
}

/*
** Log reload. raft_uv 0.15 marks itself errored at the first failed write
** of its log (a full disk while it creates or writes a segment) and then
** refuses every append until it is opened again: the node would never
** take another entry, though space came back. So when an append fails the
** loop waits until the data directory's filesystem has room again (three
** segments), then closes raft and raft_uv, opens them again on the same
** directory and loop, and starts raft: exactly what a process restart
** does, in this process. The FSM state is reset to that of a fresh start
** first (raft replays its snapshot and log into it); the applier skips
** what it already handed to the database. Commands wait in the queue
** meanwhile; proposals in flight end as raft_close ends them.
*/
static void reload_timer_cb(uv_timer_t *t);

static void reload_closed_cb(struct raft *r)
{
    struct rl_node *n = r->data;
    n->reload = RELOAD_CLOSED;
    /* raft_uv and the transport are freed from the loop, not from inside
    ** their own close path. */
    uv_timer_start(&n->reload_timer, reload_timer_cb, 0, 0);
}

static int log_has_room(struct rl_node *n)
{
    struct statvfs sv;
    uint64_t seg = n->cfg.segment_size ? n->cfg.segment_size : 8u << 20;
    if (statvfs(n->dir, &sv) != 0)
        return 1;
    return (uint64_t)sv.f_bavail * sv.f_frsize >= 3 * seg;
}

/* The FSM as a fresh process has it before raft_start replays into it. */
static void fsm_reset(struct rl_node *n)
{
    n->threshold_lowered = 0;
    n->snap_A = 0;
    n->barrier_term = n->ready_term = 0;
    pthread_mutex_lock(&n->mu);
    rl_fsm_clear(&n->sm);
    pthread_mutex_unlock(&n->mu);
}

static void reload_begin(struct rl_node *n)
{
    nlog(n, 1,
         "reopening the Raft log in %s: its write failed (%s) and the disk "
         "has room again",
         n->dir, n->io.errmsg[0] ? n->io.errmsg : "no detail");
    n->reload = RELOAD_CLOSING;
    raft_close(&n->raft, reload_closed_cb);
}

static void reload_timer_cb(uv_timer_t *t)
{
    struct rl_node *n = t->data;
    int stage;
    if (n->reload == RELOAD_CLOSED) {
        raft_uv_close(&n->io);
        rl_transport_close(&n->transport);
        n->reload = RELOAD_FREED;
        if (n->closing) { /* stopped while reopening: finish the stop */
            uv_close((uv_handle_t *)&n->reload_timer, handle_close_cb);
            uv_close((uv_handle_t *)&n->async, handle_close_cb);
            return;
        }
        /* Handles those closes started finish first (the port too). */
        uv_timer_start(&n->reload_timer, reload_timer_cb, 100, 0);
        return;
    }
    if (n->reload != RELOAD_FREED || n->closing)
        return;
    fsm_reset(n);
    if (raft_setup(n, &stage) != 0) {
        nlog(n, 0, "reopening the Raft log failed: %s (retrying)",
             n->start_err);
        if (stage >= 4) {
            n->reload = RELOAD_CLOSING;
            raft_close(&n->raft, reload_closed_cb);
            return;
        }
        if (stage >= 3)
            raft_uv_close(&n->io);
        if (stage >= 2)
            rl_transport_close(&n->transport);
        uv_timer_start(&n->reload_timer, reload_timer_cb, 1000, 0);
        return;
    }
    n->reload = RELOAD_NONE;
    n->io_failed = n->io_failed_said = 0;
    n->reloads++;
    pthread_mutex_lock(&n->mu);
    n->pub.log_reloads = n->reloads;
    pthread_mutex_unlock(&n->mu);
    nlog(n, 1, "Raft log reopened: the node takes entries again");
    publish(n);
    uv_async_send(&n->async); /* commands queued meanwhile */
}

static int loop_setup(struct rl_node *n)
{
    int rc, stage = 0;
    if ((rc = uv_loop_init(&n->loop)) != 0) {
        snprintf(n->start_err, sizeof n->start_err, "uv_loop_init: %s",
                 uv_strerror(rc));
        return -1;
    }
    if (raft_setup(n, &stage) != 0)
        goto fail;
    pthread_mutex_lock(&n->mu);
    n->pub.start_index = raft_last_index(&n->raft);
    pthread_mutex_unlock(&n->mu);
    n->async.data = n;
    n->tick.data = n;
    n->reload_timer.data = n;
    uv_async_init(&n->loop, &n->async, async_cb);
    uv_timer_init(&n->loop, &n->tick);
    uv_timer_init(&n->loop, &n->reload_timer);
    uv_timer_start(&n->tick, tick_cb, 0, TICK_MS);
    return 0;
fail:
    if (stage >= 4) {
        raft_close(&n->raft, init_close_cb);
        uv_run(&n->loop, UV_RUN_DEFAULT);
    }
    if (stage >= 3)
        raft_uv_close(&n->io);
    if (stage >= 2)
        rl_transport_close(&n->transport);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    return -1;
}

static void *loop_main(void *arg)
{
    struct rl_node *n = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    /* libuv writes without MSG_NOSIGNAL: a dead peer must not kill the
    ** host process (DESIGN 7). */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int rc = loop_setup(n);
    pthread_mutex_lock(&n->mu);
    n->started = rc == 0 ? 1 : -1;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (rc != 0)
        return NULL;
    publish(n);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    if (n->reload != RELOAD_FREED) { /* a reload may have freed them */
        raft_uv_close(&n->io);
        rl_transport_close(&n->transport);
    }
    /* Handles raft_uv_close may still have to close. */
    uv_run(&n->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&n->loop);
    if (rc != 0)
        nlog(n, 1, "uv_loop_close: %s", uv_strerror(rc));
    pthread_mutex_lock(&n->mu);
    n->pub.state = RL_STATE_UNAVAILABLE;
    n->pub.ready = 0;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* ---- applier thread ---- */

static void set_applier_index(struct rl_node *n, uint64_t index)
{
    pthread_mutex_lock(&n->mu);
    if (index > n->pub.applier_index) {
        n->pub.applier_index = index;
        pthread_cond_broadcast(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
}

/* Wait for an image (need_image) until installed or stopping. */
static void applier_restore(struct rl_node *n, struct item *it, uint64_t *skip)
{
    struct rl_applier *a = &n->cfg.applier;
    if (!a->restore(a->ctx, &it->m)) {
        pthread_mutex_lock(&n->mu);
        n->pub.need_image = 1;
        n->pub.need_image_A = it->m.A;
        pthread_mutex_unlock(&n->mu);
        nlog(n, 2, "database is behind snapshot A=%llu: fetching an image",
             (unsigned long long)it->m.A);
        for (;;) {
            int rc = a->need_image(a->ctx, &it->m);
            if (rc == 0 && a->applied_index(a->ctx) >= it->m.A)
                break;
            pthread_mutex_lock(&n->mu);
            struct timespec dl = deadline_in(IMAGE_RETRY_MS);
            if (!n->stopping)
                pthread_cond_timedwait(&n->qcv, &n->mu, &dl);
            int stop = n->stopping;
            pthread_mutex_unlock(&n->mu);
            if (stop)
                return;
        }
        pthread_mutex_lock(&n->mu);
        n->pub.need_image = 0;
        pthread_mutex_unlock(&n->mu);
    }
    *skip = a->applied_index(a->ctx);
    set_applier_index(n, *skip > it->m.A ? *skip : it->m.A);
}

static void *applier_main(void *arg)
{
    struct rl_node *n = arg;
    struct rl_applier *a = &n->cfg.applier;
    uint64_t skip = a->applied_index(a->ctx);
    /* Entries come in index order, except after a log reload, when raft
    ** replays from its snapshot what the applier already had: done
    ** drops those. */
    uint64_t done = 0;
    set_applier_index(n, skip);
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (n->q_head == NULL && !n->stopping)
            pthread_cond_wait(&n->qcv, &n->mu);
        if (n->stopping) {
            pthread_mutex_unlock(&n->mu);
            break;
        }
        struct item *it = n->q_head;
        n->q_head = it->next;
        if (n->q_head == NULL)
            n->q_tail = NULL;
        if (it->type == ITEM_ENTRY)
            n->pub.queue_bytes -= it->e.len;
        pthread_mutex_unlock(&n->mu);
        if (it->type == ITEM_RESTORE) {
            applier_restore(n, it, &skip);
            rl_manifest_clear(&it->m);
        } else if (it->e.index > done) {
            if (it->e.index > skip)
                a->apply(a->ctx, &it->e);
            done = it->e.index;
            set_applier_index(n, it->e.index);
        }
        free(it);
    }
    node_unref(n);
    return NULL;
}

/* ---- public API ---- */

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "data dir path too long: %s", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create data dir %s: %s", buf,
                         strerror(errno));
                return -1;
            }
            *p = c;
            if (c == 0)
                break;
        }
    }
    return 0;
}

int rl_node_start(const struct rl_node_config *cfg, struct rl_node **out,
                  char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    *out = NULL;
    const struct rl_applier *a = &cfg->applier;
    if (!cfg->dir || !cfg->raft_addr || !cfg->node_id || cfg->raft_id == 0 ||
        !a->apply || !a->applied_index || !a->snapshot_ready || !a->restore ||
        !a->need_image) {
        snprintf(err, errlen,
                 "rl_node_start: dir, raft_addr, node_id, a nonzero raft_id "
                 "and every applier callback are required");
        return RL_NODE_INVALID;
    }
    struct rl_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        snprintf(err, errlen, "out of memory");
        return RL_NODE_NOMEM;
    }
    n->cfg = *cfg;
    n->dir = strdup(cfg->dir);
    n->raft_addr = strdup(cfg->raft_addr);
    n->node_id = strdup(cfg->node_id);
    n->grpc_addr = strdup(cfg->grpc_addr ? cfg->grpc_addr : "");
    pthread_mutex_init(&n->mu, NULL);
    cond_init_mono(&n->cv);
    cond_init_mono(&n->qcv);
    n->refs = 1;
    if (!n->dir || !n->raft_addr || !n->node_id || !n->grpc_addr) {
        node_free(n);
        snprintf(err, errlen, "out of memory");
        return RL_NODE_NOMEM;
    }
    struct rl_node_config *c = &n->cfg;
    c->dir = n->dir;
    c->raft_addr = n->raft_addr;
    c->node_id = n->node_id;
    c->grpc_addr = n->grpc_addr;
    if (!c->election_timeout_ms)
        c->election_timeout_ms = 1000;
    if (!c->heartbeat_timeout_ms)
        c->heartbeat_timeout_ms = 100;
    if (!c->snapshot_threshold)
        c->snapshot_threshold = 1024;
    if (!c->snapshot_trailing)
        c->snapshot_trailing = 128;
    if (!c->snapshot_threshold_bytes)
        c->snapshot_threshold_bytes = DEFAULT_BYTES;
    if (!c->snapshot_trailing_bytes)
        c->snapshot_trailing_bytes = DEFAULT_BYTES;
    if (!c->snapshot_timeout_ms)
        c->snapshot_timeout_ms = 10000;
    if (!c->stop_wait_ms)
        c->stop_wait_ms = 2000;
    if (!c->install_snapshot_timeout_ms)
        c->install_snapshot_timeout_ms = 2000;
    if (rl_meta_set(&n->self, c->raft_id, c->node_id, c->raft_addr,
                    c->grpc_addr) != 0) {
        snprintf(err, errlen,
                 "node id, raft address or gRPC address empty or longer "
                 "than %d bytes",
                 RL_META_STR_MAX);
        node_free(n);
        return RL_NODE_INVALID;
    }
    n->pub.raft_id = c->raft_id;
    if (mkdir_p(c->dir, err, errlen) != 0) {
        node_free(n);
        return RL_NODE_ERROR;
    }
    if (pthread_create(&n->loop_thread, NULL, loop_main, n) != 0) {
        snprintf(err, errlen, "cannot create the loop thread");
        node_free(n);
        return RL_NODE_ERROR;
    }
    pthread_mutex_lock(&n->mu);
    while (n->started == 0)
        pthread_cond_wait(&n->cv, &n->mu);
    int ok = n->started == 1;
    pthread_mutex_unlock(&n->mu);
    if (!ok) {
        pthread_join(n->loop_thread, NULL);
        snprintf(err, errlen, "%s", n->start_err);
        node_free(n);
        return RL_NODE_ERROR;
    }
    pthread_mutex_lock(&n->mu);
    n->refs++;
    pthread_mutex_unlock(&n->mu);
    if (pthread_create(&n->applier_thread, NULL, applier_main, n) != 0) {
        n->refs--;
        snprintf(err, errlen, "cannot create the applier thread");
        rl_node_stop(n);
        return RL_NODE_ERROR;
    }
    n->applier_started = 1;
    *out = n;
    return RL_NODE_OK;
}

void rl_node_stop(struct rl_node *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_cond_broadcast(&n->qcv);
    uv_async_send(&n->async);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->loop_thread, NULL);
    if (n->applier_started) {
        pthread_t t = n->applier_thread;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += n->cfg.stop_wait_ms / 1000;
        ts.tv_nsec += (long)(n->cfg.stop_wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(t, NULL, &ts) != 0) {
            /* Stuck in a database callback (a client may hold its lock,
            ** e.g. exit() inside a transaction): leave it; it frees what
            ** it uses on return. */
            nlog(n, 1, "applier thread busy at stop: detached");
            pthread_detach(t);
        }
    }
    node_unref(n);
}

int rl_node_propose(struct rl_node *n, const struct rl_proposal *p,
                    unsigned timeout_ms, struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    if (p->kind < 1 || p->kind > RL_ENTRY_KIND_MAX ||
        (p->len > 0 && p->payload == NULL)) {
        copy_str(res->msg, sizeof res->msg, "bad entry kind or payload");
        return RL_NODE_INVALID;
    }
    size_t size = rl_entry_size(p->len);
    if (size == 0) {
        snprintf(res->msg, sizeof res->msg,
                 "payload of %zu bytes exceeds the %llu-byte limit", p->len,
                 (unsigned long long)RL_ENTRY_MAX_PAYLOAD);
        return RL_NODE_INVALID;
    }
    pthread_mutex_lock(&n->mu);
    int state = n->pub.state, stopping = n->stopping;
    res->leader_id = n->pub.leader_id;
    copy_str(res->leader_addr, sizeof res->leader_addr, n->pub.leader_addr);
    pthread_mutex_unlock(&n->mu);
    if (stopping) {
        copy_str(res->msg, sizeof res->msg, "node is stopping");
        return RL_NODE_SHUTDOWN;
    }
    if (state != RL_STATE_LEADER) {
        copy_str(res->msg, sizeof res->msg, "not the leader");
        return RL_NODE_NOTLEADER;
    }
    res->leader_id = 0;
    res->leader_addr[0] = 0;
    struct rl_entry_hdr h = {.kind = p->kind,
                             .base = p->base,
                             .origin_node = p->origin_node ? p->origin_node
                                                           : n->cfg.raft_id,
                             .origin_txn = p->origin_txn,
                             .origin_pid = p->origin_pid,
                             .payload_len = p->len};
    void *buf = raft_malloc(size);
    struct req *r = req_new(REQ_PROPOSE);
    if (buf == NULL || r == NULL) {
        raft_free(buf);
        free(r);
        copy_str(res->msg, sizeof res->msg, "out of memory");
        return RL_NODE_NOMEM;
    }
    rl_entry_encode(&h, p->payload, buf, size);
    if (rl_timing_on)
        r->tm[RL_T_PROPOSE] = rl_timing_now();
    r->node = n;
    r->buf.base = buf;
    r->buf.len = size;
    r->kind = p->kind;
    /* The checksum identifies the entry if leadership is lost. */
    const uint8_t *cb = (const uint8_t *)buf + 48;
    for (int i = 7; i >= 0; i--)
        r->checksum = (r->checksum << 8) | cb[i];
    return req_run(n, r, timeout_ms, res);
}

static int member_req(struct rl_node *n, int type, uint64_t id,
                      const char *addr, int role, const struct rl_meta *meta,
                      unsigned timeout_ms, struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    if ((type != REQ_TRANSFER && id == 0) ||
        (type == REQ_ADD && (!addr || strlen(addr) >= 256)) ||
        ((type == REQ_ADD || type == REQ_ASSIGN) &&
         (role < RL_ROLE_STANDBY || role > RL_ROLE_SPARE))) {
        copy_str(res->msg, sizeof res->msg, "bad id, address or role");
        return RL_NODE_INVALID;
    }
    struct req *r = req_new(type);
    if (r == NULL)
        return RL_NODE_NOMEM;
    r->node = n;
    r->id = id;
    r->role = role;
    if (addr)
        copy_str(r->addr, sizeof r->addr, addr);
    if (meta) {
        r->has_meta = 1;
        r->meta = *meta;
    }
    return req_run(n, r, timeout_ms, res);
}

int rl_node_add(struct rl_node *n, uint64_t id, const char *raft_addr, int role,
                const struct rl_meta *meta, unsigned timeout_ms,
                struct rl_result *res)
{
    return member_req(n, REQ_ADD, id, raft_addr, role, meta, timeout_ms, res);
}

int rl_node_assign(struct rl_node *n, uint64_t id, int role,
                   unsigned timeout_ms, struct rl_result *res)
{
    return member_req(n, REQ_ASSIGN, id, NULL, role, NULL, timeout_ms, res);
}

int rl_node_remove(struct rl_node *n, uint64_t id, unsigned timeout_ms,
                   struct rl_result *res)
{
    return member_req(n, REQ_REMOVE, id, NULL, 0, NULL, timeout_ms, res);
}

int rl_node_transfer(struct rl_node *n, uint64_t to, unsigned timeout_ms,
                     struct rl_result *res)
{
    return member_req(n, REQ_TRANSFER, to, NULL, 0, NULL, timeout_ms, res);
}

int rl_node_set_snapshot(struct rl_node *n, unsigned threshold,
                         unsigned trailing, uint64_t threshold_bytes,
                         uint64_t trailing_bytes, unsigned timeout_ms)
{
    struct rl_result res;
    memset(&res, 0, sizeof res);
    struct req *r = req_new(REQ_SNAPCFG);
    if (r == NULL)
        return RL_NODE_NOMEM;
    r->node = n;
    r->threshold = threshold;
    r->trailing = trailing;
    r->threshold_bytes = threshold_bytes;
    r->trailing_bytes = trailing_bytes;
    return req_run(n, r, timeout_ms, &res);
}

int rl_node_read_index(struct rl_node *n, unsigned timeout_ms,
                       struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    struct req *r = req_new(REQ_READ);
    if (r == NULL)
        return RL_NODE_NOMEM;
    r->node = n;
    return req_run(n, r, timeout_ms, res);
}

void rl_node_status(struct rl_node *n, struct rl_node_status *st)
{
    pthread_mutex_lock(&n->mu);
    *st = n->pub;
    pthread_mutex_unlock(&n->mu);
}

int rl_node_members(struct rl_node *n, struct rl_member **out, unsigned *count)
{
    pthread_mutex_lock(&n->mu);
    unsigned nm = n->n_members;
    struct rl_member *m = malloc((nm ? nm : 1) * sizeof *m);
    if (m && nm)
        memcpy(m, n->members, nm * sizeof *m);
    pthread_mutex_unlock(&n->mu);
    if (m == NULL)
        return RL_NODE_NOMEM;
    *out = m;
    *count = nm;
    return RL_NODE_OK;
}

int rl_node_meta(struct rl_node *n, uint64_t id, const char *node_id,
                 struct rl_meta *out)
{
    if (id == 0 && node_id == NULL)
        return RL_NODE_INVALID;
    pthread_mutex_lock(&n->mu);
    const struct rl_meta *m = meta_find_locked(n, id, node_id);
    if (m)
        *out = *m;
    pthread_mutex_unlock(&n->mu);
    return m ? RL_NODE_OK : RL_NODE_INVALID;
}

int rl_node_meta_current(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    const struct rl_meta *m = meta_find_locked(n, n->cfg.raft_id, NULL);
    int cur = m && rl_fsm_meta_equal(m, &n->self);
    pthread_mutex_unlock(&n->mu);
    return cur;
}

void rl_node_self_meta(struct rl_node *n, struct rl_meta *out)
{
    *out = n->self;
}

int rl_node_wait_applied(struct rl_node *n, uint64_t index, unsigned timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    int rc = RL_NODE_OK;
    pthread_mutex_lock(&n->mu);
    n->refs++; /* stays valid if rl_node_stop runs meanwhile */
    while (n->pub.applier_index < index) {
        if (n->stopping) {
            rc = RL_NODE_SHUTDOWN;
            break;
        }
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT) {
            rc = n->pub.applier_index >= index ? RL_NODE_OK : RL_NODE_TIMEOUT;
            break;
        }
    }
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
    return rc;
}

int rl_node_wait_leader(struct rl_node *n, unsigned timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    int rc = RL_NODE_OK;
    pthread_mutex_lock(&n->mu);
    n->refs++; /* stays valid if rl_node_stop runs meanwhile */
    for (;;) {
        const struct rl_node_status *s = &n->pub;
        if (s->leader_id != 0 && (s->leader_id != s->raft_id || s->ready))
            break;
        if (n->stopping) {
            rc = RL_NODE_SHUTDOWN;
            break;
        }
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT) {
            rc = RL_NODE_TIMEOUT;
            break;
        }
    }
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
    return rc;
}
