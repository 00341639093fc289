/*
** vfs/record.c -- the applied record "<db>-raft/applied": which Raft index
** the database file reflects, kept in step with the WAL, and the checks
** that the WAL and database file are the ones it describes.
**
** What it must never do: let the record claim an entry the WAL lacks, or
** miss one the WAL has (the intent is written before a commit frame, the
** settled state after it, both under the write lock); write or resolve the
** record without the write lock; take a WAL it cannot vouch for (rec_check)
** for a good one.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "fault.h"

/*
** "<db>-raft/applied" says which Raft index the database file reflects: the
** last database-changing entry whose commit frame reached the WAL. It is
** written twice per commit, both times under the write lock:
**   - before the commit frame: an *intent* {prev = current, next = the new
**     index with the WAL position its commit frame will have};
**   - after the commit frame reached the file: settled {next, next}.
** A crash between the two leaves an intent; whoever next holds the write
** lock resolves it from the WAL: next if the wal-index shows the commit
** frame (same salts, mxFrame >= its frame number), prev otherwise. So the
** record never claims an entry the WAL lacks and never misses one it has,
** and replay after a restart starts exactly after what the file holds.
** The WAL position (salts, frame, frame checksum) is the fingerprint that
** ties the record to the WAL it describes.
**
**   0  4 magic "RLA1"   4  4 version (1)
**   8  per state (prev, then next at 40): 8 index, 8 salts (as in the
**      WAL), 4 frame number, 4 flags (RL_REC_*; 0 in records older than
**      the flag), 8 frame checksum words
**   72 4 crc32c of bytes [0, 72)   76 4 reserved
*/
#define REC_MAGIC   0x31414c52u /* "RLA1" */
#define REC_SIZE    80
#define REC_VERSION 1

static void rec_put_state(uint8_t *p, const rl_applied_pos *s)
{
    rl_put_le64(p, s->index);
    memcpy(p + 8, s->salt, 8);
    rl_put_le32(p + 16, s->frame);
    rl_put_le32(p + 20, s->flags);
    rl_put_le32(p + 24, s->cksum[0]);
    rl_put_le32(p + 28, s->cksum[1]);
}

static void rec_get_state(const uint8_t *p, rl_applied_pos *s)
{
    s->index = rl_get_le64(p);
    memcpy(s->salt, p + 8, 8);
    s->frame = rl_get_le32(p + 16);
    s->flags = rl_get_le32(p + 20);
    s->cksum[0] = rl_get_le32(p + 24);
    s->cksum[1] = rl_get_le32(p + 28);
}

/* Reads the record: 0 (an absent or empty file reads as all zero: nothing
** applied), or SQLITE_CORRUPT with err naming the cause. */
int rlv_rec_read(rl_file *m, rl_applied_rec *r, char *err, size_t errlen)
{
    uint8_t b[REC_SIZE];
    ssize_t n;
    memset(r, 0, sizeof *r);
    if (m->rec_fd < 0)
        return SQLITE_OK;
    n = pread(m->rec_fd, b, sizeof b, 0);
    if (n == 0)
        return SQLITE_OK;
    if (n != REC_SIZE || rl_get_le32(b) != REC_MAGIC ||
        rl_get_le32(b + 4) != REC_VERSION ||
        rl_get_le32(b + 72) != rl_crc32c(0, b, 72)) {
        snprintf(err, errlen,
                 "%s-raft/applied is damaged (%s); the node cannot tell what "
                 "its database holds",
                 m->path,
                 n < 0           ? strerror(errno)
                 : n != REC_SIZE ? "wrong size"
                                 : "bad magic, version or checksum");
        return SQLITE_CORRUPT;
    }
    rec_get_state(b + 8, &r->prev);
    rec_get_state(b + 40, &r->next);
    return SQLITE_OK;
}

/* Takes no lock (vfs.h): the older of the record's two states, which a
** commit in progress cannot take back; 0 when the record cannot be read. */
uint64_t rl_vfs_applied_settled(sqlite3_file *f)
{
    rl_applied_rec r;
    char e[200];
    if (!rl_vfs_is_replicated(f) ||
        rlv_rec_read((rl_file *)f, &r, e, sizeof e) != SQLITE_OK)
        return 0;
    return r.prev.index < r.next.index ? r.prev.index : r.next.index;
}

int rlv_rec_write(rl_file *m, const rl_applied_rec *r)
{
    uint8_t b[REC_SIZE];
    memset(b, 0, sizeof b);
    rl_put_le32(b, REC_MAGIC);
    rl_put_le32(b + 4, REC_VERSION);
    rec_put_state(b + 8, &r->prev);
    rec_put_state(b + 40, &r->next);
    rl_put_le32(b + 72, rl_crc32c(0, b, 72));
    if (m->rec_fd < 0 || pwrite(m->rec_fd, b, sizeof b, 0) != REC_SIZE) {
        rlv_ferr(m, SQLITE_IOERR_WRITE,
                 "raftlite: cannot write %s-raft/applied: %s", m->path,
                 m->rec_fd < 0 ? "not open" : strerror(errno));
        return SQLITE_IOERR_WRITE;
    }
    return SQLITE_OK;
}

static int pos_equal(const rl_applied_pos *a, const rl_applied_pos *b)
{
    return a->index == b->index && memcmp(a->salt, b->salt, 8) == 0 &&
           a->frame == b->frame && a->cksum[0] == b->cksum[0] &&
           a->cksum[1] == b->cksum[1];
}

/* Whether the wal-index header h shows state s's commit frame. */
static int wal_shows(const rl_shm_hdr *h, const rl_applied_pos *s)
{
    return s->frame && memcmp(h->aSalt, s->salt, 8) == 0 &&
           h->mxFrame >= s->frame;
}

/* Resolves an intent against the WAL (the caller holds the write lock, so
** h is the latest header and no commit is in progress). */
void rlv_rec_resolve(rl_applied_rec *r, const rl_shm_hdr *h)
{
    if (pos_equal(&r->prev, &r->next))
        return;
    if (wal_shows(h, &r->next))
        r->prev = r->next;
    else
        r->next = r->prev;
}

/* Reads the latest wal-index header (write lock held). */
int rlv_shm_latest(rl_file *m, rl_shm_hdr *h)
{
    volatile void *r0 = rlv_shm_region(m, 0);
    if (!r0)
        return SQLITE_IOERR_SHMMAP;
    if (rl_shm_hdr_read(r0, h) != 0)
        return SQLITE_BUSY_RECOVERY;
    return SQLITE_OK;
}

/* At the write lock: read and resolve the record, remember the base.
** A lock taken while the wal-index header is invalid is WAL recovery's
** (a writer always holds a valid snapshot): it is granted whatever the
** record says, since recovery commits nothing and refusing it would lock
** the database for good. The record is then dealt with at the next lock:
** an intent left by a crash is resolved; a damaged record is reported to
** whoever asks (the host rebuilds the database, raftd/host/rebuild.c). */
int rlv_rec_load(rl_file *m)
{
    rl_shm_hdr h;
    char err[256];
    int rc = rlv_rec_read(m, &m->rec, err, sizeof err);
    if (rc != SQLITE_OK) {
        if (rlv_shm_latest(m, &h) == SQLITE_BUSY_RECOVERY) {
            m->rec_unresolved = 1;
            m->applied_at_lock = 0;
            return SQLITE_OK;
        }
        rlv_ferr(m, rc, "raftlite: %s", err);
        return rc;
    }
    m->rec_unresolved = 0;
    if (!pos_equal(&m->rec.prev, &m->rec.next)) {
        rc = rlv_shm_latest(m, &h);
        if (rc == SQLITE_BUSY_RECOVERY) {
            /* An intent left by a crash, and recovery's lock (above). */
            m->rec_unresolved = 1;
            m->applied_at_lock = 0;
            return SQLITE_OK;
        }
        if (rc != SQLITE_OK)
            return rc;
        rlv_rec_resolve(&m->rec, &h);
        rc = rlv_rec_write(m, &m->rec);
        if (rc != SQLITE_OK)
            return rc;
    }
    m->applied_at_lock = m->rec.next.index;
    return SQLITE_OK;
}

/* Before a commit frame: the intent. */
int rlv_rec_intent(rl_file *m, uint64_t index, const uint8_t salt[8],
                   uint32_t frame, const uint32_t cksum[2])
{
    rl_applied_rec r;
    r.prev = m->rec.next;
    memset(&r.next, 0, sizeof r.next); /* flags 0: its commit frame is in
                                          the WAL, not backfilled */
    r.next.index = index;
    memcpy(r.next.salt, salt, 8);
    r.next.frame = frame;
    r.next.cksum[0] = cksum[0];
    r.next.cksum[1] = cksum[1];
    m->rec = r;
    return rlv_rec_write(m, &r);
}

/* The WAL is about to be emptied (truncated to 0) or restarted by this
** connection, which holds the write lock: SQLite does either only once
** every frame is backfilled into the synced database file, so the
** settled record's index now lives in the database file alone. Marked
** before the WAL changes: a crash in between leaves a WAL that still
** shows the commit frame, where the mark means nothing. Without the mark
** an empty WAL beside a record that names a frame is a lost WAL
** (rec_check). */
void rlv_rec_mark_backfilled(rl_file *m)
{
    if (m->rec_unresolved || !pos_equal(&m->rec.prev, &m->rec.next) ||
        m->rec.next.frame == 0 || (m->rec.next.flags & RL_REC_BACKFILLED))
        return;
    m->rec.prev.flags |= RL_REC_BACKFILLED;
    m->rec.next.flags |= RL_REC_BACKFILLED;
    if (rlv_rec_write(m, &m->rec) != SQLITE_OK) {
        /* Not fatal: the next start finds an empty WAL without the mark and
        ** rebuilds from a peer, which is safe. */
        m->rec.prev.flags &= ~RL_REC_BACKFILLED;
        m->rec.next.flags &= ~RL_REC_BACKFILLED;
    }
}

/* After the commit frame reached the file: settled. */
int rlv_rec_settle(rl_file *m)
{
    m->rec.prev = m->rec.next;
    return rlv_rec_write(m, &m->rec);
}

volatile void *rlv_shm_region(void *arg, int i)
{
    rl_file *m = arg;
    void volatile *p = 0;
    if (m->sub->pMethods->xShmMap(m->sub, i, RL_SHM_REGION_SIZE, 1, &p) !=
        SQLITE_OK)
        return 0;
    return p;
}

/* ------------------------------------------------ record and accessors */

int rl_vfs_shm_header(sqlite3_file *f, struct rl_shm_hdr *h)
{
    if (!rl_vfs_is_replicated(f))
        return SQLITE_MISUSE;
    return rlv_shm_latest((rl_file *)f, h);
}

volatile void *rl_vfs_shm_region(sqlite3_file *f, int i)
{
    if (!rl_vfs_is_replicated(f))
        return 0;
    return rlv_shm_region(f, i);
}

/*
** The pages 1..n of the database as the wal-index shows it must each be in
** the database file or in the WAL: a database file missing, replaced by an
** empty one or truncated behind raftlite's back leaves holes that SQLite
** would read as a malformed database (or, worse, as other content). One
** hash lookup per page past the file's end: the file normally holds
** them all, and a joiner whose image is still in the WAL finds each there.
*/
static int db_holes(rl_file *m, const rl_shm_hdr *h, uint32_t page_size,
                    uint32_t n, char *err, size_t errlen)
{
    sqlite3_int64 size = 0;
    uint32_t have, pg;
    if (!page_size || !n ||
        m->sub->pMethods->xFileSize(m->sub, &size) != SQLITE_OK)
        return 0;
    have = (uint32_t)(size / page_size);
    for (pg = have + 1; pg <= n; pg++) {
        uint32_t fr = 0;
        if (h->mxFrame &&
            rl_shm_find(rlv_shm_region, m, 1, h->mxFrame, pg, &fr) != 0)
            fr = 0;
        if (!fr) {
            snprintf(err, errlen,
                     "%s: the database file holds %u pages and page %u of "
                     "%u is in neither it nor the WAL: the database file was "
                     "removed, replaced or truncated",
                     m->path, have, pg, n);
            return 1;
        }
    }
    return 0;
}

/*
** Frames after the applied record's commit frame: only SQLite's sync
** padding (copies of the commit frame, each flagged as a commit of the same
** size) may follow it; anything else was committed by a process that did
** not go through raftlite (a stock sqlite3 while no node ran).
*/
static int frames_after(rl_file *m, sqlite3_file *wal, const rl_shm_hdr *h,
                        const uint8_t *commit_hdr, char *err, size_t errlen)
{
    const rl_applied_pos *s = &m->rec.next;
    uint32_t ps = rl_shm_page_size(h), fn;
    uint8_t fh[RL_WAL_FRAME_HDR_SIZE];
    for (fn = s->frame + 1; fn <= h->mxFrame; fn++) {
        if (wal->pMethods->xRead(wal, fh, sizeof fh,
                                 (sqlite3_int64)rl_wal_frame_offset(ps, fn)) !=
                SQLITE_OK ||
            memcmp(fh, commit_hdr, 8) != 0) {
            snprintf(err, errlen,
                     "%s: the WAL holds %u frames after the commit frame of "
                     "the last applied entry (index %llu, frame %u): "
                     "committed by a process without raftlite",
                     m->path, h->mxFrame - s->frame,
                     (unsigned long long)s->index, s->frame);
            return 1;
        }
    }
    return 0;
}

/*
** Checks that the WAL is the one the settled record describes: its commit
** frame is where the record says, with the same checksum, or the WAL was
** emptied since (mxFrame 0: everything is in the database file). Returns
** 0, or 1 with err saying how they differ.
*/
static int rec_check(rl_file *m, const rl_shm_hdr *h, char *err, size_t errlen)
{
    const rl_applied_pos *s = &m->rec.next;
    sqlite3_file *wal = rl_vfs_wal_file((sqlite3_file *)m);
    uint8_t fh[RL_WAL_FRAME_HDR_SIZE];
    uint32_t ps = h->mxFrame ? rl_shm_page_size(h) : rlv_file_page_size(m);
    uint32_t n = h->mxFrame ? h->nPage : 0;
    if (s->index == 0)
        return 0; /* nothing applied (or a rebuild reset it): nothing to
                     vouch for */
    if (!h->mxFrame) {
        /* The file alone: its header's page count, when valid (the
        ** version-valid-for number equals the change counter). */
        uint8_t b[100];
        sqlite3_int64 size = 0;
        if (m->sub->pMethods->xFileSize(m->sub, &size) == SQLITE_OK &&
            size == 0) {
            snprintf(err, errlen,
                     "%s: the database file is empty and its WAL too, but "
                     "the applied record says index %llu: the database was "
                     "removed",
                     m->path, (unsigned long long)s->index);
            return 1;
        }
        if (size >= 100 &&
            m->sub->pMethods->xRead(m->sub, b, 100, 0) == SQLITE_OK &&
            memcmp(b + 24, b + 92, 4) == 0)
            n = rl_get_be32(b + 28);
    }
    if (db_holes(m, h, ps, n, err, errlen))
        return 1;
    if (h->mxFrame == 0 && s->frame && !(s->flags & RL_REC_BACKFILLED)) {
        snprintf(err, errlen,
                 "%s: the WAL is empty or missing, but the applied record "
                 "(index %llu) names its commit frame %u and no checkpoint "
                 "moved that frame into the database file: the WAL was lost, "
                 "or a process without raftlite checkpointed and removed it",
                 m->path, (unsigned long long)s->index, s->frame);
        return 1;
    }
    if (h->mxFrame == 0 || s->index == 0)
        return 0;
    if (memcmp(h->aSalt, s->salt, 8) == 0 && h->mxFrame < s->frame) {
        snprintf(err, errlen,
                 "%s: the WAL ends at frame %u, before the commit frame %u "
                 "of the last applied entry (index %llu): its tail was lost "
                 "(truncated, or not synced before a crash)",
                 m->path, h->mxFrame, s->frame, (unsigned long long)s->index);
        return 1;
    }
    if (memcmp(h->aSalt, s->salt, 8) != 0) {
        /* A later WAL generation with frames no record describes. */
        snprintf(err, errlen,
                 "%s: the WAL holds %u frames of a generation the applied "
                 "record (index %llu) does not describe: written by a process "
                 "without raftlite, or the record is stale",
                 m->path, h->mxFrame, (unsigned long long)s->index);
        return 1;
    }
    if (!wal ||
        wal->pMethods->xRead(wal, fh, sizeof fh,
                             (sqlite3_int64)rl_wal_frame_offset(
                                 rl_shm_page_size(h), s->frame)) != SQLITE_OK ||
        rl_get_be32(fh + 16) != s->cksum[0] ||
        rl_get_be32(fh + 20) != s->cksum[1]) {
        snprintf(err, errlen,
                 "%s: WAL frame %u is not the commit frame the applied record "
                 "(index %llu) describes",
                 m->path, s->frame, (unsigned long long)s->index);
        return 1;
    }
    return frames_after(m, wal, h, fh, err, errlen);
}

/* The record resolved against the latest wal-index header h and checked
** against the WAL and database file (write lock held): its index in
** *index, or SQLITE_CORRUPT (or an I/O error) with err. */
int rlv_rec_current(rl_file *m, const rl_shm_hdr *h, uint64_t *index, char *err,
                    size_t errlen)
{
    int rc = rlv_rec_read(m, &m->rec, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    if (!pos_equal(&m->rec.prev, &m->rec.next)) {
        rlv_rec_resolve(&m->rec, h);
        rc = rlv_rec_write(m, &m->rec);
        if (rc != SQLITE_OK)
            return rl_fail(err, errlen, rc, "%s", rl_vfs_last_error(0));
    }
    if (rec_check(m, h, err, errlen))
        return SQLITE_CORRUPT;
    *index = m->rec.next.index;
    return SQLITE_OK;
}

int rl_vfs_sync(sqlite3_file *f)
{
    rl_file *m = (rl_file *)f;
    sqlite3_file *wal = rl_vfs_wal_file(f);
    int rc = SQLITE_OK;
    if (!rl_vfs_is_replicated(f))
        return SQLITE_MISUSE;
    /* The record first: the applier may go on meanwhile, and a durable
    ** record must never claim a commit frame the durable WAL lacks (the
    ** WAL synced second holds every frame the record synced first names,
    ** unless the WAL restarted in between: then the start finds the
    ** mismatch and rebuilds, see raftd/host/rebuild.c). */
    if (m->rec_fd >= 0 && fdatasync(m->rec_fd) != 0)
        rc = SQLITE_IOERR_FSYNC;
#ifdef RL_FAULTS
    if (rc == SQLITE_OK && m->rec_fd >= 0 && rl_fault_synced_on()) {
        uint8_t b[REC_SIZE];
        ssize_t n = pread(m->rec_fd, b, sizeof b, 0);
        rl_fault_save(m->path, "applied", b, n > 0 ? (size_t)n : 0);
    }
#endif
    if (rc == SQLITE_OK && wal)
        rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
#ifdef RL_FAULTS
    if (rc == SQLITE_OK && wal)
        rlv_fault_keep_synced(m, wal, "wal");
#endif
    return rc;
}

/*
** rl_vfs_applied for a caller that already holds the write lock
** (rl_vfs_lock_write), so that an image pairs its pages with its index
** atomically: the lock is neither taken nor released here (OFD locks of
** one description do not nest: taking it again and releasing it would
** drop the caller's lock).
*/
int rl_vfs_applied_locked(sqlite3_file *f, uint64_t *index, char *err,
                          size_t errlen)
{
    rl_file *m = (rl_file *)f;
    rl_shm_hdr h;
    int rc;
    *index = 0;
    if (!rl_vfs_is_replicated(f))
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "applied: not a replicated database of the raft VFS");
    rc = rlv_shm_latest(m, &h);
    if (rc != SQLITE_OK)
        return rl_fail(err, errlen, rc, "%s: the wal-index header is not valid",
                       m->path);
    return rlv_rec_current(m, &h, index, err, errlen);
}
