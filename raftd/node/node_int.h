/*
** raftd/node/node_int.h -- the internals the files of the Raft node share:
** the node's struct, its requests and applier items, and the functions one
** file of raftd/node/ calls in another. Which thread owns what:
**
**   - the loop thread (loop.c) owns the uv loop, raft_uv and struct raft:
**     every raft_* call and every FSM callback (raftfsm.c) runs there, and
**     it never blocks on anything but n->mu for a few instructions;
**   - the applier thread (applier.c) hands FSM verdicts to the database
**     (struct rl_applier) in log order, and may block in those callbacks;
**   - any other thread (node.c's and membership.c's callers) talks to the
**     loop through the command queue (request.c) plus uv_async_send, and
**     reads what the loop publishes under n->mu.
** One libuv threadpool thread runs snapshot_async (raftfsm.c), which waits
** (bounded) for the applier.
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
**     L, the metadata table and the manifests are pure code in fsm.c.
**
** Private to raftd/node/: nothing outside this directory may include it.
** Nothing in the node may call SQLite or include a header of vfs/.
*/
#ifndef RL_NODE_INT_H
#define RL_NODE_INT_H

#include "node.h"
#include "fsm.h"
#include "transport.h"
#include "timing.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
    rl_err rc;
    struct rl_result res;
    /* REQ_PROPOSE */
    struct raft_apply apply;
    struct raft_buffer buf; /* owned by us while base != NULL */
    uint64_t checksum;
    uint8_t kind;
    uint64_t origin_node; /* whose write: a lease of its own holds nothing */
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

/* Log reload states (see reload.c). */
enum { RELOAD_NONE = 0, RELOAD_CLOSING, RELOAD_CLOSED, RELOAD_FREED };

/* One element of the applier queue. */
struct item {
    struct item *next;
    int type;
    struct rl_applied e;
    struct rl_manifest m; /* ITEM_RESTORE; owns m.members */
    uint8_t data[];       /* the entry's payload copy */
};

/* A follower's write lease as its leader holds it (lease.c): until_ms is
** CLOCK_MONOTONIC; raft_id 0 = a free slot. */
#define RL_LEASE_MAX 16
/* How far behind the commit index a follower may be and get a lease. */
#define RL_LEASE_LAG 64
struct rl_lease {
    uint64_t raft_id;
    int64_t until_ms;
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
    /* Loop only, rl_timing_on only (lib/timing.h): the index the next
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
    /* Write leases (lease.c): the holders under mu, the proposals whose
    ** answer waits for them loop only. */
    struct rl_lease leases[RL_LEASE_MAX];
    struct req *gated;
    int read_inflight;   /* a read barrier is in flight */
    /* Pushing the commit index to the followers (request.c
    ** node_push_commit): asked under mu, served by the loop. */
    int push_wanted;     /* under mu: rl_node_push_commit asked */
    int push_inflight;   /* loop: a push barrier is in flight */
    int push_again;      /* loop: asked again while it flew */
    uint64_t last_tick;  /* uv_now of the last tick */

    /* Reopening the Raft log (loop thread only; see "Log reload"). */
    int (*io_append)(struct raft_io *, struct raft_io_append *,
                     const struct raft_entry[], unsigned, raft_io_append_cb);
    int (*io_send)(struct raft_io *, struct raft_io_send *,
                   const struct raft_message *, raft_io_send_cb);
    int (*io_start)(struct raft_io *, unsigned, raft_io_tick_cb,
                    raft_io_recv_cb);
    raft_io_recv_cb raft_recv; /* raft's own receive callback */
    int (*io_set_term)(struct raft_io *, raft_term);
    /* Under mu: the highest term raft stored or is storing (confirm.c);
    ** never behind raft, so a member's answer is never stale. */
    uint64_t term_stored;
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
    /* Loop only: the role, term, leader and configuration indexes
    ** node_publish last published. */
    int seen_state;
    raft_term seen_term;
    raft_id seen_leader;
    raft_index seen_conf, seen_conf_pending; /* configuration indexes */
    /* The board (board.c; loop thread): its file, -1 if none, and what
    ** it says. */
    int board_fd;
    int board_state;
    uint64_t board_L;
    struct rl_member *members;
    unsigned n_members;

    /* Applier (under mu). */
    pthread_t applier_thread;
    int applier_started;
    struct item *q_head, *q_tail;
};

/* The functions below are shared between the files of raftd/node/ only:
** hidden from the dynamic symbol table of raftlite.so. */
#pragma GCC visibility push(hidden)

/* The metadata table (n->sm.metas) is written on the loop thread under mu
** and read by any thread under mu. Call with mu held. */
static inline const struct rl_meta *
node_meta_find_locked(struct rl_node *n, uint64_t id, const char *node_id)
{
    return rl_fsm_meta_find(&n->sm, id, node_id);
}

/* ---- node.c: helpers and the node's lifetime ---- */

/* Log through cfg.log (or errors and warnings to stderr); never under mu. */
void node_log(struct rl_node *n, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void node_copy_str(char *dst, size_t cap, const char *src);
/* A CLOCK_MONOTONIC deadline ms from now, and the ms left until one. */
struct timespec node_deadline_in(unsigned ms);
unsigned node_ms_left(const struct timespec *dl);
/* Free a node once its owner, its applier thread and every blocked caller
** are done (node_unref drops one reference, under mu). */
void node_free(struct rl_node *n);
void node_unref(struct rl_node *n);

/* ---- request.c: requests, proposals, read points (loop thread unless
** said otherwise) ---- */

/* A request with the caller's and the loop's references (any thread). */
struct req *node_req_new(int type);
/* Hand a request to the loop and wait for its result, at most timeout_ms
** (caller's thread). Takes over the caller's reference. */
rl_err node_req_run(struct rl_node *n, struct req *r, unsigned timeout_ms,
                    struct rl_result *res);
/* Call with n->mu held. */
void node_req_unref_locked(struct req *r);
/* Publish a request's result (first call wins), drop the loop's ref. */
void node_req_finish(struct rl_node *n, struct req *r, rl_err rc,
                     const char *msg);
/* A leader whose barrier of this term applied: it takes proposals. */
int node_ready(struct rl_node *n);
void node_submit_propose(struct rl_node *n, struct req *r);
void node_propose_internal(struct rl_node *n, uint8_t kind, const void *payload,
                           size_t len);
/* Submit (rc OK) or fail every proposal waiting for the barrier. */
void node_flush_pending(struct rl_node *n, rl_err rc, const char *msg);
/* Issue this term's barrier, admit waiting proposals, announce metadata. */
void node_check_leader(struct rl_node *n);
/* Loop thread: a barrier whose AppendEntries carry the commit index to
** every follower now (rl_node_push_commit); one in flight at a time, and
** one more after it when asked meanwhile. */
void node_push_commit(struct rl_node *n);
/* Issue a read barrier for the readers waiting, if none is in flight. */
void node_read_flush(struct rl_node *n);
/* Answer proposals that lost leadership once their index is decided. */
void node_lost_sweep(struct rl_node *n);
/* Answers held for write leases (lease.c): after raft handled a message
** (a holder's progress) and every tick (leases that ended), answer what
** no live holder blocks any more. */
void node_held_recheck(struct rl_node *n);
/* Leadership lost, log reload, close: clears the leases and answers every
** held proposal (each committed). */
void node_held_release_all(struct rl_node *n);

/* ---- membership.c (loop thread) ---- */

/* Submit REQ_ADD, REQ_ASSIGN, REQ_REMOVE or REQ_TRANSFER to raft on the
** leader; a refusal finishes the request (nothing changed). */
void node_member_submit(struct rl_node *n, struct req *r);

/* ---- raftfsm.c (loop thread; snapshot_async on the threadpool) ---- */

/* Fill n->fsm: the raft_fsm whose callbacks decide verdicts (fsm.c) and
** queue them for the applier. */
void node_fsm_init(struct rl_node *n);

/* ---- applier.c ---- */

/* Queue an item for the applier thread (loop thread). */
void node_queue_push(struct rl_node *n, struct item *it);
/* The applier thread's body; drops its node reference on return. */
void *node_applier_main(void *arg);

/* ---- raftio.c (loop thread) ---- */

/* Initialize transport, raft_uv (wrapped) and raft, and start raft on the
** node's loop. On failure *stage says how far it got (2 transport, 3 io,
** 4 raft) for the caller to undo, and n->start_err why. */
int node_raft_setup(struct rl_node *n, int *stage);

/* ---- reload.c (loop thread) ---- */

/* On a tick while the log is failed: say so once, and begin reopening it
** once the disk has room. Returns 1 if a reload began (raft is closing). */
int node_reload_check(struct rl_node *n);

/* ---- status.c (loop thread) ---- */

/* Publish raft's state under mu for other threads (status, members). */
void node_publish(struct rl_node *n);
/* node_publish if raft's role, term, leader or configuration changed since the
*last
** publication: after raft handled a message (an election won or lost), so
** that no caller routes by a leader that is gone for up to a tick. */
void node_publish_changed(struct rl_node *n);

/* ---- board.c ---- */

/* Opens cfg.board_path, emptied, then posting "unavailable". One that
** cannot be made is logged and the node runs without (readers ask). */
void node_board_open(struct rl_node *n);
/* Loop thread: posts pub's role and L if they changed since the last
** post. Call it after every change of either, before anything answers a
** writer. */
void node_board_post(struct rl_node *n);

/* ---- lease.c (loop thread) ---- */

/* How long a lease lasts: a third of an election timeout, 100 ms at least. */
unsigned node_lease_ms(const struct rl_node *n);
/* Whether the answer for index, origin's write, must wait: a live holder
** other than origin has not stored it. 0 on a node that does not lead. */
int node_lease_blocks(struct rl_node *n, uint64_t index, uint64_t origin);
/* Leadership lost, log reload, close: every lease is void. */
void node_lease_clear(struct rl_node *n);

/* ---- confirm.c ---- */

/* Wraps io.set_term (after raft_uv_init): publishes each new term. */
void node_confirm_setup(struct rl_node *n);
/* After raft_start: the term raft loaded. */
void node_confirm_started(struct rl_node *n);

/* ---- loop.c (loop thread) ---- */

void node_handle_close_cb(uv_handle_t *h);
/* The loop thread's body (started by rl_node_start). */
void *node_loop_main(void *arg);

#pragma GCC visibility pop

#endif /* RL_NODE_INT_H */
