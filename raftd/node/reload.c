/*
** raftd/node/reload.c -- the log reload: reopening the Raft log in this
** process after a write of it failed.
**
** raft_uv 0.15 marks itself errored at the first failed write
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
**
** Loop thread only. It must never reopen the log while raft may still
** write it (raft_close first, raft_uv freed from the loop), never lose the
** applier's place (the applier skips what it already had), and never run
** once the node is stopping (begin_close in loop.c finishes the close).
*/
#include "node_int.h"

#include <stdio.h>
#include <sys/statvfs.h>

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
    node_log(n, 1,
             "reopening the Raft log in %s: its write failed (%s) and the disk "
             "has room again",
             n->dir, n->io.errmsg[0] ? n->io.errmsg : "no detail");
    n->reload = RELOAD_CLOSING;
    node_held_release_all(n);
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
            uv_close((uv_handle_t *)&n->reload_timer, node_handle_close_cb);
            uv_close((uv_handle_t *)&n->async, node_handle_close_cb);
            return;
        }
        /* Handles those closes started finish first (the port too). */
        uv_timer_start(&n->reload_timer, reload_timer_cb, 100, 0);
        return;
    }
    if (n->reload != RELOAD_FREED || n->closing)
        return;
    fsm_reset(n);
    if (node_raft_setup(n, &stage) != 0) {
        node_log(n, 0, "reopening the Raft log failed: %s (retrying)",
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
    node_log(n, 1, "Raft log reopened: the node takes entries again");
    node_publish(n);
    uv_async_send(&n->async); /* commands queued meanwhile */
}

int node_reload_check(struct rl_node *n)
{
    if (!n->io_failed_said) {
        n->io_failed_said = 1;
        node_log(n, 0,
                 "writing the Raft log in %s failed (%s): this node takes no "
                 "new entry until its log is reopened, which it does once "
                 "the disk has room (free space there)",
                 n->dir, n->io.errmsg[0] ? n->io.errmsg : "no detail");
    }
    if (!log_has_room(n))
        return 0;
    reload_begin(n);
    return 1;
}
