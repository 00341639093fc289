/*
** tests/unit/lib/fixture_shim.c -- see fixture_shim.h. Test code only.
*/
#include "fixture_shim.h"

#include <stddef.h>
#include <stdlib.h>

#include "check.h"

#define MAX_SHIMS 8

static struct rl_shim *shims[MAX_SHIMS];

static struct rl_shim *shim_of(struct raft_io *io)
{
    for (unsigned i = 0; i < MAX_SHIMS; i++)
        if (shims[i] && shims[i]->io == io)
            return shims[i];
    CHECK(0, "no shim wraps this raft_io");
    return NULL;
}

/* One wrapped request. The fixture sets the data field of async work to
** the raft instance, so a wrapper is found from the address of its own
** request (first member), never from data. */
struct wrap {
    union {
        struct raft_io_append append;
        struct raft_io_send send;
        struct raft_io_snapshot_put put;
        struct raft_io_snapshot_get get;
        struct raft_io_async_work work;
    } mine;
    void *orig;       /* raft's request */
    void (*cb)(void); /* raft's callback, cast back where called */
    struct rl_shim *sh;
    int disk;
};

static struct wrap *wrap_new(struct rl_shim *sh, void *orig, void (*cb)(void),
                             int disk)
{
    struct wrap *w = calloc(1, sizeof *w);
    CHECK(w);
    w->orig = orig;
    w->cb = cb;
    w->sh = sh;
    w->disk = disk;
    return w;
}

/* The request was taken (rv 0): count it; else drop the wrapper. */
static int wrap_submitted(struct wrap *w, int rv)
{
    if (rv != 0) {
        free(w);
        return rv;
    }
    w->sh->pending++;
    w->sh->disk_pending += w->disk;
    return 0;
}

/* The callback is due: uncount, free, hand back raft's request. */
static void *wrap_done(struct wrap *w, void (**cb)(void))
{
    void *orig = w->orig;
    *cb = w->cb;
    w->sh->pending--;
    w->sh->disk_pending -= w->disk;
    free(w);
    return orig;
}

/* A disk write fails: once armed and due, then every write until the
** server restarts (raft_uv 0.15 refuses all writes after one failed). */
static int disk_fails(struct rl_shim *sh)
{
    if (sh->io_failed)
        return 1;
    if (!sh->fault_armed)
        return 0;
    if (sh->fault_after > 0) {
        sh->fault_after--;
        return 0;
    }
    sh->fault_armed = 0;
    sh->io_failed = 1;
    return 1;
}

static void append_cb(struct raft_io_append *req, int status)
{
    void (*cb)(void);
    struct raft_io_append *orig = wrap_done((struct wrap *)req, &cb);
    ((raft_io_append_cb)cb)(orig, status);
}

static int w_append(struct raft_io *io, struct raft_io_append *req,
                    const struct raft_entry entries[], unsigned n,
                    raft_io_append_cb cb)
{
    struct rl_shim *sh = shim_of(io);
    if (disk_fails(sh))
        return RAFT_IOERR;
    struct wrap *w = wrap_new(sh, req, (void (*)(void))cb, 1);
    req->cb = cb;
    return wrap_submitted(
        w, sh->orig.append(io, &w->mine.append, entries, n, append_cb));
}

static void send_cb(struct raft_io_send *req, int status)
{
    struct wrap *w = (struct wrap *)req;
    struct rl_shim *sh = w->sh;
    /* The fixture delivers the message at now + latency. */
    if (*sh->now + sh->latency > sh->last_delivery)
        sh->last_delivery = *sh->now + sh->latency;
    void (*cb)(void);
    struct raft_io_send *orig = wrap_done(w, &cb);
    ((raft_io_send_cb)cb)(orig, status);
}

/*
** raft 0.15 bug (replication.c replicationUpdate, recv_append_entries.c):
** a follower answers an AppendEntries it accepts at once (nothing new to
** write) with its last stored index, and the leader takes that, capped at
** its own last index, as the follower's match index. A follower still
** holding entries of an older term past the leader's log (a deposed
** leader's, or from before a restart) is then counted as having the
** leader's new entries at those indexes: the leader commits with it, and
** ignores its rejections for good (progress.c "match index is up to date
** -> ignore"). With fix_match such an answer claims only what the request
** proved: prev_log_index + n_entries.
*/
static int w_send(struct raft_io *io, struct raft_io_send *req,
                  const struct raft_message *m, raft_io_send_cb cb)
{
    struct rl_shim *sh = shim_of(io);
    struct raft_message capped;
    if (sh->fix_match && sh->in_recv &&
        m->type == RAFT_IO_APPEND_ENTRIES_RESULT &&
        m->append_entries_result.rejected == 0 &&
        m->append_entries_result.last_log_index > sh->ae_end) {
        capped = *m;
        capped.append_entries_result.last_log_index = sh->ae_end;
        m = &capped;
        sh->capped++;
    }
    struct wrap *w = wrap_new(sh, req, (void (*)(void))cb, 0);
    req->cb = cb;
    return wrap_submitted(w, sh->orig.send(io, &w->mine.send, m, send_cb));
}

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
    void (*cb)(void);
    struct raft_io_snapshot_put *orig = wrap_done((struct wrap *)req, &cb);
    ((raft_io_snapshot_put_cb)cb)(orig, status);
}

static int w_put(struct raft_io *io, unsigned trailing,
                 struct raft_io_snapshot_put *req,
                 const struct raft_snapshot *snap, raft_io_snapshot_put_cb cb)
{
    struct rl_shim *sh = shim_of(io);
    if (disk_fails(sh))
        return RAFT_IOERR;
    /* trailing 0 (an installed snapshot) empties the disk's log when the
    ** put completes, through io->truncate(io, 1): see w_truncate. */
    if (trailing == 0)
        sh->installing = snap->index;
    struct wrap *w = wrap_new(sh, req, (void (*)(void))cb, 1);
    req->cb = cb;
    return wrap_submitted(
        w, sh->orig.snapshot_put(io, trailing, &w->mine.put, snap, put_cb));
}

static void get_cb(struct raft_io_snapshot_get *req, struct raft_snapshot *snap,
                   int status)
{
    void (*cb)(void);
    struct raft_io_snapshot_get *orig = wrap_done((struct wrap *)req, &cb);
    ((raft_io_snapshot_get_cb)cb)(orig, snap, status);
}

static int w_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                 raft_io_snapshot_get_cb cb)
{
    struct rl_shim *sh = shim_of(io);
    struct wrap *w = wrap_new(sh, req, (void (*)(void))cb, 1);
    req->cb = cb;
    return wrap_submitted(w, sh->orig.snapshot_get(io, &w->mine.get, get_cb));
}

static int work_fn(struct raft_io_async_work *req)
{
    struct raft_io_async_work *orig = ((struct wrap *)req)->orig;
    return orig->work(orig);
}

static void work_cb(struct raft_io_async_work *req, int status)
{
    void (*cb)(void);
    struct raft_io_async_work *orig = wrap_done((struct wrap *)req, &cb);
    ((raft_io_async_work_cb)cb)(orig, status);
}

static int w_work(struct raft_io *io, struct raft_io_async_work *req,
                  raft_io_async_work_cb cb)
{
    struct rl_shim *sh = shim_of(io);
    struct wrap *w = wrap_new(sh, req, (void (*)(void))cb, 0);
    w->mine.work.work = work_fn;
    req->cb = cb;
    return wrap_submitted(w, sh->orig.async_work(io, &w->mine.work, work_cb));
}

static int w_set_term(struct raft_io *io, raft_term term)
{
    struct rl_shim *sh = shim_of(io);
    return disk_fails(sh) ? RAFT_IOERR : sh->orig.set_term(io, term);
}

static int w_set_vote(struct raft_io *io, raft_id id)
{
    struct rl_shim *sh = shim_of(io);
    return disk_fails(sh) ? RAFT_IOERR : sh->orig.set_vote(io, id);
}

static int w_truncate(struct raft_io *io, raft_index index)
{
    struct rl_shim *sh = shim_of(io);
    if (sh->installing && index == 1) { /* the installed snapshot's */
        int rv = sh->orig.truncate(io, 1);
        if (rv == 0)
            sh->io_start = sh->installing + 1;
        sh->installing = 0;
        return rv;
    }
    CHECK(index >= sh->io_start,
          "truncate at %llu, below the disk's first index %llu",
          (unsigned long long)index, (unsigned long long)sh->io_start);
    return sh->orig.truncate(io, index - sh->io_start + 1);
}

static int w_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                  struct raft_snapshot **snap, raft_index *start_index,
                  struct raft_entry **entries, size_t *n_entries)
{
    struct rl_shim *sh = shim_of(io);
    int rv = sh->orig.load(io, term, voted_for, snap, start_index, entries,
                           n_entries);
    if (rv == 0 && *n_entries > 0)
        *start_index = sh->io_start;
    return rv;
}

static void w_recv(struct raft_io *io, struct raft_message *m)
{
    struct rl_shim *sh = shim_of(io);
    if (m->type != RAFT_IO_APPEND_ENTRIES) {
        sh->raft_recv(io, m);
        return;
    }
    sh->ae_end = m->append_entries.prev_log_index + m->append_entries.n_entries;
    sh->in_recv = 1;
    sh->raft_recv(io, m);
    sh->in_recv = 0;
}

static int w_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                   raft_io_recv_cb recv)
{
    struct rl_shim *sh = shim_of(io);
    sh->raft_recv = recv;
    return sh->orig.start(io, msecs, tick, w_recv);
}

void rl_shim_install(struct rl_shim *sh, struct raft_io *io,
                     const raft_time *now)
{
    unsigned i = 0;
    while (i < MAX_SHIMS && shims[i] && shims[i] != sh && shims[i]->io != io)
        i++;
    CHECK(i < MAX_SHIMS, "more than %d shims", MAX_SHIMS);
    shims[i] = sh;
    sh->io = io;
    sh->orig = *io;
    sh->now = now;
    sh->io_start = 1;
    sh->latency = 15; /* the fixture's default */
    io->append = w_append;
    io->send = w_send;
    io->snapshot_put = w_put;
    io->snapshot_get = w_get;
    io->async_work = w_work;
    io->truncate = w_truncate;
    io->load = w_load;
    io->set_term = w_set_term;
    io->set_vote = w_set_vote;
    io->start = w_start;
}

void rl_shim_fault(struct rl_shim *sh, int after)
{
    sh->fault_after = after;
    sh->fault_armed = 1;
}

void rl_shim_reset_faults(struct rl_shim *sh)
{
    sh->fault_armed = 0;
    sh->io_failed = 0;
}

unsigned rl_shim_latency(struct rl_shim *sh, unsigned ms)
{
    raft_time floor =
        sh->last_delivery > *sh->now ? sh->last_delivery - *sh->now : 0;
    if (ms < floor)
        ms = (unsigned)floor;
    sh->latency = ms;
    return ms;
}
