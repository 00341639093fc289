/*
** raftd/node/loop.c -- the node's loop thread: sets up the uv loop and
** raft (raftio.c), takes the commands other threads queue (request.c,
** membership.c), ticks (lost proposals, leadership, warnings), has
** raft's state published under n->mu (status.c), and closes everything at
** stop.
**
** Runs on the loop thread only. It must never block on anything but
** n->mu for a few instructions (a stalled loop misses heartbeats and
** deposes leaders), never hold n->mu across a raft_* call, and never call
** the applier or SQLite.
*/
#include "node_int.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append r to a list of requests, keeping arrival order. */
static void list_append(struct req **list, struct req *r)
{
    while (*list)
        list = &(*list)->next;
    r->next = NULL;
    *list = r;
}

/* Run one command taken off the queue. */
static void run_req(struct rl_node *n, struct req *r)
{
    struct raft *raft = &n->raft;
    if (n->closing) {
        node_req_finish(n, r, RL_ERR_SHUTDOWN, "node is stopping");
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
        node_req_finish(n, r, RL_OK, NULL);
        return;
    }
    if (raft_state(raft) != RAFT_LEADER) {
        node_req_finish(n, r, RL_ERR_NOTLEADER, "not the leader");
        return;
    }
    switch (r->type) {
    case REQ_PROPOSE:
        if (node_ready(n)) {
            node_submit_propose(n, r);
        } else {
            /* Admitted once this term's barrier applied (DESIGN 4), in
            ** arrival order. */
            list_append(&n->pending, r);
            node_check_leader(n);
        }
        return;
    case REQ_READ:
        list_append(&n->readers, r);
        node_read_flush(n);
        return;
    default:
        node_member_submit(n, r);
    }
}

void node_handle_close_cb(uv_handle_t *h)
{
    (void)h;
}

static void raft_closed_cb(struct raft *r)
{
    struct rl_node *n = r->data;
    uv_close((uv_handle_t *)&n->async, node_handle_close_cb);
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
        node_req_finish(n, q, RL_ERR_SHUTDOWN, "node is stopping");
        q = next;
    }
    node_held_release_all(n);
    node_flush_pending(n, RL_ERR_SHUTDOWN, "node is stopping");
    while (n->readers) {
        struct req *r = n->readers;
        n->readers = r->next;
        node_req_finish(n, r, RL_ERR_SHUTDOWN, "node is stopping");
    }
    while (n->lost) {
        struct req *r = n->lost;
        n->lost = r->next;
        node_req_finish(
            n, r, RL_ERR_UNKNOWN,
            "node stopped after leadership was lost: outcome unknown");
    }
    uv_timer_stop(&n->tick);
    uv_close((uv_handle_t *)&n->tick, node_handle_close_cb);
    uv_timer_stop(&n->reload_timer);
    if (n->reload == RELOAD_NONE) {
        uv_close((uv_handle_t *)&n->reload_timer, node_handle_close_cb);
        raft_close(&n->raft, raft_closed_cb);
    } else if (n->reload == RELOAD_CLOSING) {
        /* reload_closed_cb, then the timer, finish the close. */
    } else {
        if (n->reload == RELOAD_CLOSED) {
            raft_uv_close(&n->io);
            rl_transport_close(&n->transport);
            n->reload = RELOAD_FREED;
        }
        uv_close((uv_handle_t *)&n->reload_timer, node_handle_close_cb);
        uv_close((uv_handle_t *)&n->async, node_handle_close_cb);
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
    int push = n->push_wanted;
    n->push_wanted = 0;
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
    if (push)
        node_push_commit(n);
    node_publish(n);
}

static void tick_cb(uv_timer_t *t)
{
    struct rl_node *n = t->data;
    if (n->reload)
        return; /* raft is closed: nothing to sweep or node_publish */
    if (n->io_failed && node_reload_check(n))
        return;
    if (n->lost)
        node_lost_sweep(n);
    if (n->gated)
        node_held_recheck(n); /* leases that ended */
    if (n->transport.nodelay_failed > n->nodelay_failed_said) {
        n->nodelay_failed_said = n->transport.nodelay_failed;
        node_log(n, 1,
                 "TCP_NODELAY refused on %lu Raft connection(s): commits "
                 "may wait ~40 ms for delayed ACKs",
                 n->nodelay_failed_said);
    }
    /* A stalled loop misses heartbeats and deposes leaders: say so. */
    uint64_t now = uv_now(&n->loop);
    if (n->last_tick && now - n->last_tick > n->cfg.heartbeat_timeout_ms * 5)
        node_log(n, 1, "loop thread stalled for %llu ms",
                 (unsigned long long)(now - n->last_tick));
    n->last_tick = now;
    node_check_leader(n);
    node_publish(n);
}

static void init_close_cb(struct raft *r)
{
    (void)r;
}

static int loop_setup(struct rl_node *n)
{
    int rc, stage = 0;
    if ((rc = uv_loop_init(&n->loop)) != 0) {
        snprintf(n->start_err, sizeof n->start_err, "uv_loop_init: %s",
                 uv_strerror(rc));
        return -1;
    }
    if (node_raft_setup(n, &stage) != 0)
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

void *node_loop_main(void *arg)
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
    node_publish(n);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    if (n->reload != RELOAD_FREED) { /* a reload may have freed them */
        raft_uv_close(&n->io);
        rl_transport_close(&n->transport);
    }
    /* Handles raft_uv_close may still have to close. */
    uv_run(&n->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&n->loop);
    if (rc != 0)
        node_log(n, 1, "uv_loop_close: %s", uv_strerror(rc));
    pthread_mutex_lock(&n->mu);
    n->pub.state = RL_STATE_UNAVAILABLE;
    n->pub.ready = 0;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    node_board_post(n); /* no longer leading: readers ask */
    return NULL;
}
