/*
** raftd/node/raftio.c -- raft_uv as the node uses it: the transport
** (transport.c), raft_uv wrapped so the node sees every append's status
** (a failed one starts the log reload, reload.c) and caps the answers
** raft 0.15 gets wrong, and raft itself set up and started.
**
** Loop thread only. The wrappers must never change what reaches the disk
** or the wire beyond the two raft 0.15 fixes described below, and never
** block.
*/
#include "node_int.h"

#include <stdio.h>
#include <stdlib.h>

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
    struct rl_node *n = w->n;
    free(w);
    orig->cb = cb;
    cb(orig, status);
    /* A leader's own store can commit (a configuration too). */
    if (!n->closing && !n->reload)
        node_publish_changed(n);
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
    /* A follower's writer trusting its write lease (lease.c) compares its
    ** file with this node's last log index: publish it before raft can
    ** tell the leader the entries are stored (after this append), so that
    ** no answer the leader gives can precede it. raft has put the entries
    ** in its log before it asks for their write. */
    pthread_mutex_lock(&n->mu);
    n->pub.last_index = raft_last_index(&n->raft);
    pthread_mutex_unlock(&n->mu);
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
    node_log(ctx, 1, "%s", msg);
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
    node_publish_changed(n);
    if (n->gated)
        node_held_recheck(n); /* a holder's progress may have moved */
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
int node_raft_setup(struct rl_node *n, int *stage)
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
    node_confirm_setup(n);
    node_fsm_init(n);
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
            node_log(n, 2, "not pristine: bootstrap skipped");
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
    node_confirm_started(n);
    return 0;
}
