/*
** vfs/capture.c -- capture: a committing transaction's WAL writes turned
** into one transaction record (rl_txn) handed to the replicator port.
**
** A write transaction runs between SQLite taking slot 0 and releasing it
** (lock.c). Every WAL write in between is copied, by WAL offset, into
** per-frame buffers (a spilled page overwritten in place simply replaces
** its buffer; a frame header written anew starts that frame over, since a
** savepoint rollback rewinds the WAL and reuses offsets). The first
** complete frame whose header carries a non-zero "database size after
** commit" is the commit frame: the record is built (last image per page
** number, frames after the commit frame and pages above the new size
** dropped; the record borrows the frame buffers, it copies no page) and
** handed to the port before the commit frame's page data reaches the
** file. The port encodes it into the entry it proposes: the one copy of
** the pages between capture and the Raft log. Padding frames and
** checksum rewrites that follow pass through. Releasing slot 0 discards
** whatever was captured, so a rolled-back transaction yields no record.
**
** What it must never do: let a transaction the port refused become
** visible, locally or to stock readers, now or after a crash (a refused
** commit frame never reaches the file and its header is zeroed); let a
** commit frame reach the file before the applied record's intent names
** it; call the port other than through port.c.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "fault.h"
#include "timing.h"

rl_vfs_stats rlv_stats;

void rl_vfs_get_stats(rl_vfs_stats *out)
{
    out->txns = __atomic_load_n(&rlv_stats.txns, __ATOMIC_RELAXED);
    out->frames = __atomic_load_n(&rlv_stats.frames, __ATOMIC_RELAXED);
    out->page_overwrites =
        __atomic_load_n(&rlv_stats.page_overwrites, __ATOMIC_RELAXED);
    out->after_commit =
        __atomic_load_n(&rlv_stats.after_commit, __ATOMIC_RELAXED);
    out->refused = __atomic_load_n(&rlv_stats.refused, __ATOMIC_RELAXED);
    out->rolled_back =
        __atomic_load_n(&rlv_stats.rolled_back, __ATOMIC_RELAXED);
    out->gated = __atomic_load_n(&rlv_stats.gated, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- capture */

void rlv_capture_reset(rl_capture *c)
{
    uint32_t i;
    for (i = 0; i < c->n; i++)
        sqlite3_free(c->frames[i].buf);
    sqlite3_free(c->frames);
    memset(c, 0, sizeof *c);
}

/* The frame buffer of frame number fn, created on first use. */
static rl_frame *capture_frame(rl_capture *c, uint32_t fn)
{
    uint32_t i;
    if (c->n == 0)
        c->first = fn;
    if (fn < c->first) {
        /* A write below the first frame of this transaction: shift. */
        uint32_t shift = c->first - fn;
        if (c->n + shift > c->alloc) {
            uint32_t na = (c->n + shift) * 2;
            rl_frame *nf = sqlite3_realloc64(c->frames, na * sizeof *nf);
            if (!nf)
                return 0;
            memset(nf + c->alloc, 0, (na - c->alloc) * sizeof *nf);
            c->frames = nf;
            c->alloc = na;
        }
        memmove(c->frames + shift, c->frames, c->n * sizeof *c->frames);
        memset(c->frames, 0, shift * sizeof *c->frames);
        c->n += shift;
        c->first = fn;
    }
    i = fn - c->first;
    if (i >= c->alloc) {
        uint32_t na = c->alloc ? c->alloc * 2 : 64;
        rl_frame *nf;
        while (na <= i)
            na *= 2;
        nf = sqlite3_realloc64(c->frames, na * sizeof *nf);
        if (!nf)
            return 0;
        memset(nf + c->alloc, 0, (na - c->alloc) * sizeof *nf);
        c->frames = nf;
        c->alloc = na;
    }
    if (i >= c->n)
        c->n = i + 1;
    if (!c->frames[i].buf) {
        c->frames[i].buf =
            sqlite3_malloc64(RL_WAL_FRAME_HDR_SIZE + (uint64_t)c->page_size);
        if (!c->frames[i].buf)
            return 0;
        memset(c->frames[i].buf, 0, RL_WAL_FRAME_HDR_SIZE + c->page_size);
    }
    return &c->frames[i];
}

static int frame_complete(const rl_capture *c, const rl_frame *f)
{
    return f->buf && f->hdr_bytes >= RL_WAL_FRAME_HDR_SIZE &&
           f->page_bytes >= c->page_size;
}

/* Learns the page size from the WAL header on disk when this transaction
** appends to an existing WAL (it then writes no header). */
static int capture_page_size(rl_file *w)
{
    uint8_t hdr[RL_WAL_HDR_SIZE];
    uint32_t ps;
    int rc = w->sub->pMethods->xRead(w->sub, hdr, sizeof hdr, 0);
    if (rc != SQLITE_OK)
        return rc;
    ps = rl_get_be32(hdr + 8);
    if (!rl_page_size_ok(ps))
        return SQLITE_CORRUPT;
    w->main->cap.page_size = ps;
    return SQLITE_OK;
}

/*
** Copies one WAL write into the capture. *commit_fn receives the frame
** number of a commit frame this write completes (0 if none).
*/
static int capture_write(rl_file *w, const uint8_t *buf, int amt,
                         sqlite3_int64 off, uint32_t *commit_fn)
{
    rl_capture *c = &w->main->cap;
    sqlite3_int64 end = off + amt;
    *commit_fn = 0;
    if (off < RL_WAL_HDR_SIZE) {
        /* The WAL header: a new WAL (or a restarted one) begins. */
        if (off == 0 && amt >= 12) {
            uint32_t ps = rl_get_be32(buf + 8);
            if (!rl_page_size_ok(ps))
                return SQLITE_CORRUPT;
            if (c->n && c->page_size != ps)
                return SQLITE_CORRUPT;
            c->page_size = ps;
        }
        if (end <= RL_WAL_HDR_SIZE)
            return SQLITE_OK;
        buf += RL_WAL_HDR_SIZE - off;
        off = RL_WAL_HDR_SIZE;
    }
    if (!c->page_size) {
        int rc = capture_page_size(w);
        if (rc != SQLITE_OK)
            return rc;
    }
    while (off < end) {
        uint64_t szf = RL_WAL_FRAME_HDR_SIZE + (uint64_t)c->page_size;
        uint64_t rel = (uint64_t)(off - RL_WAL_HDR_SIZE);
        uint32_t fn = (uint32_t)(rel / szf) + 1;
        uint32_t in = (uint32_t)(rel % szf);
        uint32_t take = (uint32_t)((szf - in) < (uint64_t)(end - off)
                                       ? (szf - in)
                                       : (uint64_t)(end - off));
        rl_frame *f = capture_frame(c, fn);
        if (!f)
            return SQLITE_NOMEM;
        memcpy(f->buf + in, buf, take);
        if (in == 0)
            STAT_ADD(frames, 1);
        else if (in == RL_WAL_FRAME_HDR_SIZE && f->page_bytes >= c->page_size)
            STAT_ADD(page_overwrites, 1);
        if (in == 0) {
            /* A frame header written anew starts a new frame at this
            ** offset (a savepoint rollback rewinds the WAL and reuses
            ** offsets): its page counts only once written after it. */
            f->hdr_bytes = 0;
            f->page_bytes = 0;
        }
        if (in < RL_WAL_FRAME_HDR_SIZE) {
            uint32_t h = RL_WAL_FRAME_HDR_SIZE - in;
            f->hdr_bytes += take < h ? take : h;
            if (take > h)
                f->page_bytes += take - h;
        } else {
            f->page_bytes += take;
        }
        if (!*commit_fn && frame_complete(c, f) && rl_get_be32(f->buf + 4))
            *commit_fn = fn;
        buf += take;
        off += take;
    }
    return SQLITE_OK;
}

/*
** Builds the record of the transaction whose commit frame is commit_fn from
** the frames [first, commit_fn] in WAL order; rl_txn_build keeps the last
** image of each page and drops pages above the new database size. Frames
** after the commit frame (padding, or leftovers of a savepoint rollback)
** are not part of the transaction. t borrows the frames' page data
** (rl_txn_build copies none): it is valid while c holds them, i.e. until
** rlv_capture_reset (slot 0 taken or released, the file closed), which
** cannot run on this connection while capture_commit, which frees t, runs.
*/
static int capture_build(rl_capture *c, uint32_t commit_fn, rl_txn *t,
                         char *err, size_t errlen)
{
    uint32_t i, last = commit_fn - c->first;
    rl_page *frames;
    int rc;
    memset(t, 0, sizeof *t);
    if (commit_fn < c->first || last >= c->n) {
        snprintf(err, errlen, "commit frame %u outside captured frames",
                 commit_fn);
        return SQLITE_CORRUPT;
    }
    frames = sqlite3_malloc64((uint64_t)(last + 1) * sizeof *frames);
    if (!frames)
        return SQLITE_NOMEM;
    for (i = 0; i <= last; i++) {
        const rl_frame *f = &c->frames[i];
        if (!frame_complete(c, f)) {
            snprintf(err, errlen,
                     "frame %u of the transaction was not fully written",
                     c->first + i);
            sqlite3_free(frames);
            return SQLITE_CORRUPT;
        }
        frames[i].pgno = rl_get_be32(f->buf);
        frames[i].data = f->buf + RL_WAL_FRAME_HDR_SIZE;
    }
    rc = rl_txn_build(t, c->page_size, rl_get_be32(c->frames[last].buf + 4),
                      last + 1, frames, err, errlen);
    sqlite3_free(frames);
    if (rc == RL_TXN_ENOMEM)
        return SQLITE_NOMEM;
    return rc == 0 ? SQLITE_OK : SQLITE_CORRUPT;
}

/* ------------------------------------------------------------- commit */

/*
** Makes sure the commit frame's page bytes have room on disk before the
** transaction is proposed: once Raft commits it, a failed write of that
** frame (ENOSPC) would report a failure for a write that took effect.
** Zeros go where the write completing the commit frame is about to put
** the page (never over its header, which SQLite may have written
** already): nothing valid can come of them if a crash follows.
*/
static int reserve_commit_frame(rl_file *w, uint32_t commit_fn)
{
    static const uint8_t zeros[65536];
    uint32_t ps = w->main->cap.page_size;
    int rc;
    if (ps == 0 || ps > sizeof zeros)
        return SQLITE_OK; /* capture_build refuses it */
    rc = w->sub->pMethods->xWrite(
        w->sub, zeros, (int)ps,
        (sqlite3_int64)rl_wal_frame_offset(ps, commit_fn) +
            RL_WAL_FRAME_HDR_SIZE);
    return rc == SQLITE_FULL ? SQLITE_FULL : SQLITE_OK;
}

/*
** Called when the write in progress completes the commit frame commit_fn:
** builds the record and hands it to the port. On refusal the frame header
** already on disk is zeroed so that no recovery can ever resurrect the
** transaction, and the error is returned to SQLite, which rolls back.
*/
static int capture_commit(rl_file *w, uint32_t commit_fn)
{
    rl_file *m = w->main;
    rl_capture *c = &m->cap;
    rl_txn t;
    char err[512];
    int rc;

    err[0] = 0;
    memset(&t, 0, sizeof t);
    if (rl_timing_on)
        rl_timing_begin();
    rc = reserve_commit_frame(w, commit_fn);
    if (rc == SQLITE_OK)
        rc = capture_build(c, commit_fn, &t, err, sizeof err);
    if (rc == SQLITE_FULL) {
        rlv_ferr(m, SQLITE_FULL,
                 "raftlite: %s: the disk is full: the WAL cannot "
                 "hold the transaction's commit frame; nothing was "
                 "written (free space, then retry)",
                 m->path);
    } else if (rc != SQLITE_OK) {
        rlv_ferr(m, SQLITE_IOERR,
                 "raftlite: cannot capture the transaction on %s: %s", m->path,
                 err[0] ? err : sqlite3_errstr(rc));
        rc = SQLITE_IOERR;
    } else if (!m->port) {
        rlv_ferr(m, SQLITE_READONLY,
                 "raftlite: %s is replicated but no raft node serves "
                 "it in this process; start its node (raft_bootstrap "
                 "or raft_join) or write through its host",
                 m->path);
        rc = SQLITE_READONLY;
    } else {
        rl_commit_info ci;
        memset(&ci, 0, sizeof ci);
        if (m->rec_unresolved) {
            /* Not expected (a writer's lock sees a valid wal-index), but
            ** never commit on an unknown base. */
            rc = rlv_rec_load(m);
            if (rc == SQLITE_OK && m->rec_unresolved)
                rc = SQLITE_BUSY;
            if (rc != SQLITE_OK)
                snprintf(err, sizeof err,
                         "the applied record could not be resolved against "
                         "the WAL; retry the transaction");
        }
        ci.base = m->applied_at_lock;
        if (rc == SQLITE_OK)
            rc = rlv_port_commit(m, &t, &ci, err, sizeof err);
        if (rl_timing_on)
            rl_timing_mark(RL_T_RETURNED);
        if (rc != SQLITE_OK) {
            rlv_ferr(m, rc, "raftlite: commit on %s failed: %s", m->path,
                     err[0] ? err : sqlite3_errstr(rc));
        } else if (ci.index) {
            /* The entry took effect: record the intent before the commit
            ** frame can reach the file. */
            const rl_frame *cf = &c->frames[commit_fn - c->first];
            const uint32_t cksum[2] = {rl_get_be32(cf->buf + 16),
                                       rl_get_be32(cf->buf + 20)};
            RL_FAULT("writer-intent-before");
            rc = rlv_rec_intent(m, ci.index, cf->buf + 8, commit_fn, cksum);
            RL_FAULT("writer-intent-after");
            if (rc == SQLITE_OK) {
                m->pending = ci.index;
                m->ticket = ci.ticket;
            } else {
                rlv_port_end(m, ci.ticket, 0);
            }
        }
    }
    rl_txn_free(&t);
    STAT_ADD(txns, rc == SQLITE_OK);
    STAT_ADD(refused, rc != SQLITE_OK);
    if (rc == SQLITE_OK) {
        c->committed = 1;
    } else {
        static const uint8_t zero[RL_WAL_FRAME_HDR_SIZE];
        uint64_t szf = RL_WAL_FRAME_HDR_SIZE + (uint64_t)c->page_size;
        w->sub->pMethods->xWrite(w->sub, zero, sizeof zero,
                                 RL_WAL_HDR_SIZE + (commit_fn - 1) * szf);
    }
    return rc;
}

int rlv_wal_write(rl_file *w, const void *buf, int amt, sqlite3_int64 off)
{
    rl_file *m = w->main;
    uint32_t commit_fn = 0;
    int rc;
    if (off == 0)
        RL_FAULT("wal-restart"); /* SQLite's writer starts a generation */
    if (!m->holds_write) {
        rlv_ferr(m, RL_VFS_GUARD,
                 "raftlite: refused a WAL write to replicated database "
                 "%s without the write lock (locking_mode=EXCLUSIVE is "
                 "not supported on replicated databases)",
                 m->path);
        return RL_VFS_GUARD;
    }
    if (off == 0)
        rlv_rec_mark_backfilled(m); /* a restart: everything was backfilled */
    if (m->cap.committed) {
        STAT_ADD(after_commit, 1);
    } else {
        rc = capture_write(w, buf, amt, off, &commit_fn);
        if (rc != SQLITE_OK) {
            rlv_ferr(m, rc, "raftlite: capture failed on %s: %s", m->path,
                     sqlite3_errstr(rc));
            return rc == SQLITE_NOMEM ? SQLITE_IOERR_NOMEM : SQLITE_IOERR;
        }
        if (commit_fn) {
            rc = capture_commit(w, commit_fn);
            if (rc != SQLITE_OK)
                return rc;
        }
    }
    rc = w->sub->pMethods->xWrite(w->sub, buf, amt, off);
    if (m->pending) {
        /* This write completed the commit frame of an entry that took
        ** effect: settle the record, and tell the port whether the
        ** frame reached the file (if not, the node applies it). */
        int ok = rc == SQLITE_OK;
        m->pending = 0;
        RL_FAULT("writer-settle-before");
        if (ok && rlv_rec_settle(m) != SQLITE_OK)
            ok = 0;
        RL_FAULT("writer-settle-after");
        rlv_port_end(m, m->ticket, ok);
        m->ticket = NULL;
        if (rl_timing_on)
            rl_timing_mark(RL_T_FRAMED);
    }
    return rc;
}

/* vfs.h: 2 once the transaction in progress wrote a frame. */
int rl_vfs_write_state(struct sqlite3_file *f)
{
    rl_file *p = rlv_main_file(f);
    if (!p || !p->replicated)
        return -1;
    if (!p->holds_write)
        return 0;
    return p->cap.n > 0 ? 2 : 1;
}
