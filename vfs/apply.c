/*
** vfs/apply.c -- apply: the WAL writer of replicated transactions. An
** rl_txn (or a stream of pages, an image install) is appended to the WAL as
** frames and published in the wal-index, under the write lock, so that
** every process, stock sqlite3 included, sees it as a commit of its own.
**
** What it must never do: publish a wal-index header before the frames it
** covers are written; leave a valid commit frame behind missing earlier
** frames (the commit frame is written last, in a write of its own); apply
** a record that does not fit the database (page size, order, count) or an
** entry the file already holds; restart a WAL a reader still uses.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>

#include "fault.h"

/*
** Begins a new WAL generation when the WAL is empty, or may restart: every
** frame is in the database file and no reader uses the WAL (READ1..4 can be
** taken exclusively). Same state change as SQLite's own restart, so
** readers, checkpointers and recovery agree with it. Publishes the new
** wal-index header (mxFrame 0, new salts) and writes the WAL header; *wh
** and *h describe the new generation. Leaves a WAL that readers still use
** alone (returns SQLITE_OK with h->mxFrame unchanged).
*/
static int new_generation(rl_file *m, sqlite3_file *wal, volatile void *r0,
                          uint32_t page_size, rl_shm_hdr *h, rl_wal_hdr *wh,
                          uint8_t whb[RL_WAL_HDR_SIZE])
{
    static const uint8_t nosalt[8];
    rl_wal_hdr old;
    rl_shm_hdr hn;
    uint32_t rnd[2];
    int restart = 0, have_old, rc;

    if (h->mxFrame) {
        if (*rl_shm_nbackfill(r0) != h->mxFrame)
            return SQLITE_OK;
        if (m->sub->pMethods->xShmLock(m->sub, SLOT_READ1, N_READERS1,
                                       SQLITE_SHM_LOCK |
                                           SQLITE_SHM_EXCLUSIVE) != SQLITE_OK)
            return SQLITE_OK; /* a reader still uses the WAL: append */
        restart = 1;
    }
    have_old =
        wal->pMethods->xRead(wal, whb, RL_WAL_HDR_SIZE, 0) == SQLITE_OK &&
        rl_wal_hdr_decode(whb, &old) == 0;
    sqlite3_randomness(sizeof rnd, (char *)rnd);
    rl_wal_new_generation(memcmp(h->aSalt, nosalt, 8) ? h : 0,
                          have_old ? old.ckpt_seq : 0, page_size, rnd, wh, &hn);
    rl_shm_hdr_write(r0, &hn);
    RL_FAULT("wal-restart"); /* published, WAL header not yet written */
    if (restart) {
        rl_shm_reset_ckpt(r0);
        m->sub->pMethods->xShmLock(m->sub, SLOT_READ1, N_READERS1,
                                   SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
    }
    *h = hn;
    rl_wal_hdr_encode(wh, whb);
    rc = wal->pMethods->xWrite(wal, whb, RL_WAL_HDR_SIZE, 0);
    return rc;
}

/* Writes k encoded frames from batch at frame number at. */
static int flush_frames(rl_file *m, sqlite3_file *wal, const uint8_t *batch,
                        uint32_t k, uint64_t szf, uint32_t page_size,
                        uint32_t at, char *err, size_t errlen)
{
    int rc;
    if (k == 0)
        return SQLITE_OK;
    rc = wal->pMethods->xWrite(wal, batch, (int)(k * szf),
                               rl_wal_frame_offset(page_size, at));
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: writing WAL frames: %s", m->path,
                 sqlite3_errstr(rc));
    return rc;
}

/*
** Writes the stream's frames from frame number first on, in batches, and
** indexes each in the wal-index above mx_frame (invisible to readers until
** the header is published). The commit frame (the last) goes in a write of
** its own after all others, so that a failure never leaves a valid commit
** frame behind earlier frames that are missing; its page is asked of the
** stream only once every earlier frame is written (see rl_page_stream).
** Checks the stream's order as it goes.
*/
static int write_frames(rl_file *m, sqlite3_file *wal, const rl_wal_hdr *wh,
                        const uint8_t *salt, const rl_page_stream *s,
                        uint32_t first, uint32_t mx_frame, uint32_t cksum[2],
                        uint64_t index, char *err, size_t errlen)
{
    uint64_t szf = RL_WAL_FRAME_HDR_SIZE + (uint64_t)s->page_size;
    /* The unix VFS writes at most 128 KiB - 1 bytes per call (it masks
    ** the length with 0x1ffff, as SQLite never writes more than a frame),
    ** so batches stay below that. */
    uint32_t per = (uint32_t)(0x1ffffu / szf), done, k = 0, prev = 0;
    uint8_t *batch;
    int rc = SQLITE_OK;
    if (per == 0)
        per = 1;
    batch = sqlite3_malloc64(per * szf);
    if (!batch)
        return rl_fail(err, errlen, SQLITE_NOMEM, "%s: out of memory", m->path);
    for (done = 0; done < s->n_pages && rc == SQLITE_OK; done++) {
        int commit = (done == s->n_pages - 1), e;
        uint32_t pgno = 0;
        const uint8_t *data = 0;
        uint8_t *fr;
        if (commit || k == per) {
            rc = flush_frames(m, wal, batch, k, szf, s->page_size,
                              first + done - k, err, errlen);
            k = 0;
            if (rc != SQLITE_OK)
                break;
        }
        rc = s->next(s->arg, &pgno, &data, err, errlen);
        if (rc != SQLITE_OK)
            break;
        if (pgno <= prev || pgno > s->db_pages || !data) {
            snprintf(err, errlen,
                     "%s: page entry %u (page %u after page %u) breaks the "
                     "transaction's order or size (%u pages)",
                     m->path, done, pgno, prev, s->db_pages);
            rc = SQLITE_ERROR;
            break;
        }
        prev = pgno;
        fr = batch + k * szf;
        rl_wal_frame_encode(wh, pgno, commit ? s->db_pages : 0, data, cksum,
                            fr);
        memcpy(fr + RL_WAL_FRAME_HDR_SIZE, data, s->page_size);
        e = rl_shm_append(rlv_shm_region, m, mx_frame, first + done, pgno);
        if (e != 0) {
            snprintf(err, errlen, "%s: wal-index update failed: %s", m->path,
                     rl_walfmt_errstr(e));
            rc = SQLITE_CORRUPT;
            break;
        }
        k++;
        if (commit && index) {
            /* The applied record's intent goes before the commit frame
            ** (record.c). */
            RL_FAULT("apply-intent-before");
            rc = rlv_rec_intent(m, index, salt, first + done, cksum);
            if (rc != SQLITE_OK) {
                snprintf(err, errlen, "%s: writing the applied record: %s",
                         m->path, sqlite3_errstr(rc));
                break;
            }
            RL_FAULT("apply-intent-after");
        }
    }
    if (rc == SQLITE_OK)
        rc = flush_frames(m, wal, batch, k, szf, s->page_size,
                          first + s->n_pages - k, err, errlen);
    sqlite3_free(batch);
    return rc;
}

/* The stream over an rl_txn's page array. */
typedef struct txn_iter {
    const rl_txn *t;
    uint32_t i;
} txn_iter;

static int txn_next(void *arg, uint32_t *pgno, const uint8_t **data, char *err,
                    size_t errlen)
{
    txn_iter *it = arg;
    (void)err;
    (void)errlen;
    *pgno = it->t->pages[it->i].pgno;
    *data = it->t->pages[it->i].data;
    it->i++;
    return SQLITE_OK;
}

int rl_vfs_apply(sqlite3_file *f, const rl_txn *t, uint64_t index,
                 int timeout_ms, uint32_t *frames, char *err, size_t errlen)
{
    txn_iter it;
    rl_page_stream s;
    *frames = 0;
    if (rl_txn_validate(t, err, errlen) != 0)
        return SQLITE_ERROR;
    it.t = t;
    it.i = 0;
    s.page_size = t->page_size;
    s.db_pages = t->db_pages;
    s.n_pages = t->n_pages;
    s.next = txn_next;
    s.arg = &it;
    return rl_vfs_apply_stream(f, &s, index, timeout_ms, frames, err, errlen);
}

int rl_vfs_apply_stream(sqlite3_file *f, const rl_page_stream *s,
                        uint64_t index, int timeout_ms, uint32_t *frames,
                        char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    volatile void *r0;
    rl_shm_hdr h;
    rl_wal_hdr wh;
    uint8_t whb[RL_WAL_HDR_SIZE];
    uint32_t cksum[2], first, db_ps;
    sqlite3_file *wal;
    int rc;

    *frames = 0;
    if (!rl_vfs_is_replicated(f))
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "apply: not a replicated database of the raft VFS");
    if (!s || !s->next || s->n_pages == 0 || s->n_pages > s->db_pages ||
        !rl_page_size_ok(s->page_size))
        return rl_fail(err, errlen, SQLITE_ERROR,
                       "%s: malformed page stream (page size, page or "
                       "database count)",
                       m->path);
    if (!m->wal || !m->wal->sub->pMethods)
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "%s: the applying connection has no open WAL yet "
                       "(read from it once first)",
                       m->path);
    if (m->holds_write)
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "%s: the applying connection is inside a write "
                       "transaction",
                       m->path);
    wal = m->wal->sub;

    /* As for writers: no stock writer may be inside a transaction. */
    rc = rl_vfs_lock_write(f, timeout_ms, err, errlen);
    if (rc != SQLITE_OK)
        return rc;

    r0 = rlv_shm_region(m, 0);
    if (!r0) {
        rc = rl_fail(err, errlen, SQLITE_IOERR_SHMMAP,
                     "%s: cannot map the wal-index", m->path);
        goto out;
    }
    if (rl_shm_hdr_read(r0, &h) != 0) {
        rc = rl_fail(err, errlen, SQLITE_BUSY_RECOVERY,
                     "%s: the wal-index header is not valid; a read on "
                     "the connection runs recovery, then retry",
                     m->path);
        goto out;
    }
    if (index) {
        rc = rlv_rec_read(m, &m->rec, err, errlen);
        if (rc != SQLITE_OK)
            goto out;
        rlv_rec_resolve(&m->rec, &h);
        if (index <= m->rec.next.index) {
            snprintf(err, errlen,
                     "%s: entry %llu is already applied (the file holds "
                     "%llu)",
                     m->path, (unsigned long long)index,
                     (unsigned long long)m->rec.next.index);
            rc = RL_VFS_APPLIED;
            goto out;
        }
    }

    /* The record must fit the database it is applied to. */
    db_ps = h.mxFrame ? rl_shm_page_size(&h) : rlv_file_page_size(m);
    if (db_ps && db_ps != s->page_size) {
        snprintf(err, errlen,
                 "%s: record page size %u does not match the database's %u",
                 m->path, s->page_size, db_ps);
        rc = SQLITE_ERROR;
        goto out;
    }

    /* Every frame backfilled (so the database file, synced by that
    ** checkpoint, holds the record's index): new_generation may now
    ** restart the WAL. */
    if (index && h.mxFrame && *rl_shm_nbackfill(r0) == h.mxFrame)
        rlv_rec_mark_backfilled(m);
    rc = new_generation(m, wal, r0, s->page_size, &h, &wh, whb);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: writing the WAL header: %s", m->path,
                 sqlite3_errstr(rc));
        goto out;
    }
    if (h.mxFrame > 0) {
        /* Appending: the WAL header on disk must be the one the wal-index
        ** describes. */
        rc = wal->pMethods->xRead(wal, whb, sizeof whb, 0);
        if (rc != SQLITE_OK || rl_wal_hdr_decode(whb, &wh) != 0 ||
            memcmp(whb + 16, h.aSalt, 8) != 0) {
            snprintf(err, errlen,
                     "%s: the WAL header does not match the wal-index",
                     m->path);
            rc = SQLITE_CORRUPT;
            goto out;
        }
    }
    /* The frame checksum chain continues from the last frame, or from the
    ** WAL header of a new generation. */
    cksum[0] = h.aFrameCksum[0];
    cksum[1] = h.aFrameCksum[1];

    /* Frames, indexed as they are written; readers see nothing until the
    ** header is published. */
    first = h.mxFrame + 1;
    RL_FAULT("apply-before-frames");
    rc = write_frames(m, wal, &wh, whb + 16, s, first, h.mxFrame, cksum, index,
                      err, errlen);
    if (rc != SQLITE_OK)
        goto unwrite;

    h.mxFrame = first + s->n_pages - 1;
    h.nPage = s->db_pages;
    h.aFrameCksum[0] = cksum[0];
    h.aFrameCksum[1] = cksum[1];
    h.iChange++;
    h.szPage = rl_shm_encode_page_size(s->page_size);
    h.bigEndCksum = (uint8_t)rl_wal_big_endian(&wh);
    memcpy(h.aSalt, whb + 16, 8);
    RL_FAULT("apply-after-frames");
    rl_shm_hdr_write(r0, &h);
    *frames = s->n_pages;
    RL_FAULT("apply-after-publish");
    rc = index ? rlv_rec_settle(m) : SQLITE_OK;
    RL_FAULT("apply-settle-after");
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: %s", m->path, rl_vfs_last_error(0));
    goto out;
unwrite:
    /* Nothing was published; break the checksum chain at the first new
    ** frame so that no recovery can ever take the frames for committed. */
    {
        static const uint8_t zero[RL_WAL_FRAME_HDR_SIZE];
        wal->pMethods->xWrite(wal, zero, sizeof zero,
                              rl_wal_frame_offset(s->page_size, first));
    }
out:
    rl_vfs_unlock_write(f);
    return rc;
}
