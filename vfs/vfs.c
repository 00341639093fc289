/*
** vfs/vfs.c -- the replicating VFS "raft", a shim over "unix".
**
** What it is for: see vfs.h. In short, for a replicated database it turns
** each committed WAL transaction into one rl_txn handed to a replicator
** port, applies rl_txn records to the WAL and wal-index, and refuses every
** write that could fork the replica.
**
** What it must never do: know anything of Raft; close() a descriptor of a
** database or -shm file (that drops the process's POSIX locks: all file
** access goes through the unix VFS's own handles); let a transaction the
** port refused become visible, locally or to stock readers, now or after a
** crash (a refused commit frame never reaches the file and its header is
** zeroed); publish a wal-index header before the frames it covers are
** written.
**
** Locks. The unix VFS implements the eight wal-index lock slots with POSIX
** locks on the -shm file. raftlite substitutes slot 0 (the WAL write lock)
** with an OFD lock on byte 0 of "<db>-raft/lock", one open file description
** per connection, so raftlite writers and appliers exclude each other
** across threads, connections and processes. Every raftlite connection
** also holds a *shared* lock on the real slot 0: a stock SQLite process
** can then neither write nor run WAL recovery while any raftlite process
** has the database open. Byte 1 of the lock file is the applier's intent
** lock: writers take it shared for a moment before byte 0, so an applier
** waiting for the write lock gets it ahead of waiting writers.
**
** Capture. A write transaction runs between SQLite taking slot 0 and
** releasing it. Every WAL write in between is copied, by WAL offset, into
** per-frame buffers (a spilled page overwritten in place simply replaces
** its buffer; a frame header written anew starts that frame over, since a
** savepoint rollback rewinds the WAL and reuses offsets). The first
** complete frame whose header carries a non-zero "database size after
** commit" is the commit frame: the record is built (last image per page
** number, frames after the commit frame and pages above the new size
** dropped) and handed to the port before the commit frame's page data
** reaches the file. Padding frames and
** checksum rewrites that follow pass through. Releasing slot 0 discards
** whatever was captured, so a rolled-back transaction yields no record.
*/
#include "sqlite3ext.h"
#include "fsio.h"
#include "bytes.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>

#include "fault.h"
#include "timing.h"
#include "vfs.h"
#include "walfmt.h"

#define RL_VFS_NAME "raft"

/* Slots of the wal-index lock array (as wal.c numbers them). */
#define SLOT_WRITE 0
#define SLOT_CKPT  1
#define SLOT_READ1 4
#define N_READERS1 4 /* READ1..READ4 */

/* Bytes of "<db>-raft/lock". */
#define LOCK_BYTE_WRITE  0
#define LOCK_BYTE_INTENT 1
#define LOCK_BYTE_GATE   2 /* the read gate: see rl_vfs_gate_close */

/* wal-index slots of the read marks: WAL_READ_LOCK(0..4). */
#define SLOT_READ0 3
#define SLOT_READN 7

enum { KIND_OTHER = 0, KIND_MAIN, KIND_WAL };

typedef struct rl_frame {
    uint8_t *buf;        /* 24-byte header then the page */
    uint32_t hdr_bytes;  /* header bytes written since the header began */
    uint32_t page_bytes; /* page bytes written since the header began */
} rl_frame;

/* Frames written by the transaction in progress, by frame number. */
typedef struct rl_capture {
    uint32_t page_size; /* 0 until known */
    uint32_t first;     /* frame number of frames[0] */
    uint32_t n;         /* frames[0..n) in use */
    uint32_t alloc;
    rl_frame *frames;
    int committed; /* the commit frame was handed to the port */
} rl_capture;

typedef struct rl_file rl_file;
struct rl_file {
    sqlite3_file base;
    sqlite3_file *sub; /* the unix file, allocated right after this struct */
    int kind;
    int replicated;   /* KIND_MAIN: "<db>-raft/" existed at open */
    const char *path; /* KIND_MAIN: database path (SQLite keeps it alive) */
    rl_file *main;    /* KIND_WAL: its database's main file */
    rl_file *wal;     /* KIND_MAIN: the connection's open WAL, if any */
    const rl_port *port;
    int lock_fd;        /* "<db>-raft/lock", -1 if none */
    int rec_fd;         /* "<db>-raft/applied", -1 if none */
    rl_file *next_main; /* KIND_MAIN: list of open main files (mains_mu) */
    uint64_t applied_at_lock; /* applied index when the write lock was taken */
    rl_applied_rec rec;       /* the record as resolved under the write lock */
    uint64_t pending;   /* index the commit in progress records (0 none) */
    int rec_unresolved; /* lock taken for WAL recovery with an intent left
                           unresolved (see rec_load) */
    int holds_write;    /* this connection holds the substituted slot 0 */
    int holds_ckpt;     /* ... holds the checkpointer lock exclusively */
    int shm_shared0;    /* ... holds a shared lock on the real slot 0 */
    int shm_mapped;
    /* KIND_MAIN: what PRAGMA synchronous=X on this connection asked for
    ** (0 = never set: a replica then skips the WAL's commit-time sync, as
    ** NORMAL does; else level + 1). See wal_commit_sync_skipped. */
    int sync_asked;
    rl_capture cap;
    /* KIND_MAIN: the last refusal on this file, for raft_last_error() of
    ** the connection that owns it (rl_vfs_file_error); err_seq orders it
    ** against the connection's other errors, 0 when none (or retracted). */
    char *err;
    uint64_t err_seq;
    uint64_t gate_err_seq; /* err_seq of a read-gate wait, 0 if none */
    /* KIND_MAIN: PRAGMA raft_consistency (or the URI parameter) asked for
    ** linearizable reads on this connection. */
    int linearizable;
};

static sqlite3_vfs *unix_vfs;
static rl_vfs_stats stats; /* updated with __atomic builtins */

#define STAT_ADD(field, n)                                                     \
    __atomic_add_fetch(&stats.field, (n), __ATOMIC_RELAXED)

void rl_vfs_get_stats(rl_vfs_stats *out)
{
    out->txns = __atomic_load_n(&stats.txns, __ATOMIC_RELAXED);
    out->frames = __atomic_load_n(&stats.frames, __ATOMIC_RELAXED);
    out->page_overwrites =
        __atomic_load_n(&stats.page_overwrites, __ATOMIC_RELAXED);
    out->after_commit = __atomic_load_n(&stats.after_commit, __ATOMIC_RELAXED);
    out->refused = __atomic_load_n(&stats.refused, __ATOMIC_RELAXED);
    out->rolled_back = __atomic_load_n(&stats.rolled_back, __ATOMIC_RELAXED);
    out->gated = __atomic_load_n(&stats.gated, __ATOMIC_RELAXED);
}

static rl_port_resolver port_resolver;

/* Every open main database file of this VFS, for rl_vfs_adopt. */
static pthread_mutex_t mains_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_file *mains;
static sqlite3_vfs rl_vfs_obj;
static const sqlite3_io_methods rl_io_methods;

/*
** Error channel. A VFS cannot set SQLite's error text. The last refusal on
** a thread is kept here (rl_vfs_last_error) and, when it concerns a file,
** on that main file too (ferr), so a connection can tell which errors are
** its own: ext/ asks rl_vfs_file_error() for the files of a connection.
** Every error takes the next number of one process-wide sequence.
*/
static _Thread_local int tl_code;
static _Thread_local char tl_msg[1024];
static _Thread_local uint64_t tl_seq;     /* number of tl_msg */
static _Thread_local const void *tl_file; /* the file it concerns, if open */
static uint64_t err_seq_next;             /* __atomic */

static void set_error_v(int code, const char *fmt, va_list ap)
{
    tl_code = code;
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
}

void rl_vfs_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, fmt, ap);
    va_end(ap);
    tl_file = NULL;
    tl_seq = __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
}

static _Thread_local uint64_t tl_taken; /* orphans up to this are owned */

const char *rl_vfs_orphan_error(uint64_t *seq)
{
    if (tl_file || !tl_seq || tl_seq <= tl_taken) {
        *seq = 0;
        return NULL;
    }
    *seq = tl_seq;
    return tl_msg;
}

void rl_vfs_orphan_taken(uint64_t seq)
{
    if (seq > tl_taken)
        tl_taken = seq;
}

uint64_t rl_vfs_error_number(void)
{
    return __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
}

uint64_t rl_vfs_error_seq(void)
{
    return __atomic_load_n(&err_seq_next, __ATOMIC_RELAXED);
}

/* An error about file f (a main file, or the WAL of one). */
static void ferr(rl_file *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ferr(rl_file *f, int code, const char *fmt, ...)
{
    rl_file *m = f && f->kind != KIND_MAIN ? f->main : f;
    va_list ap;
    va_start(ap, fmt);
    set_error_v(code, fmt, ap);
    va_end(ap);
    tl_seq = __atomic_add_fetch(&err_seq_next, 1, __ATOMIC_RELAXED);
    tl_file = m;
    if (m) {
        sqlite3_free(m->err);
        m->err = sqlite3_mprintf("%s", tl_msg);
        m->err_seq = tl_seq;
    }
}

const char *rl_vfs_file_error(struct sqlite3_file *f, uint64_t *seq)
{
    rl_file *p = (rl_file *)f;
    *seq = 0;
    if (!f || f->pMethods != &rl_io_methods || p->kind != KIND_MAIN ||
        !p->err_seq || !p->err)
        return NULL;
    *seq = p->err_seq;
    return p->err;
}

int rl_vfs_write_state(struct sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    if (!f || f->pMethods != &rl_io_methods || p->kind != KIND_MAIN ||
        !p->replicated)
        return -1;
    if (!p->holds_write)
        return 0;
    return p->cap.n > 0 ? 2 : 1;
}

const char *rl_vfs_last_error(int *code)
{
    if (code)
        *code = tl_code;
    return tl_msg;
}

void rl_vfs_clear_error(void)
{
    tl_code = 0;
    tl_msg[0] = 0;
}

/*
** OFD locks on the lock file. Non-blocking: returns 0, or EAGAIN when
** another description holds a conflicting lock, or another errno.
*/
static int ofd_lock(int fd, short type, off_t byte)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return (errno == EACCES || errno == EAGAIN) ? EAGAIN : errno;
}

static int writer_lock(rl_file *m)
{
    int e;
    if (m->lock_fd < 0)
        return SQLITE_IOERR_LOCK;
    /* Yield to an applier that announced itself. */
    e = ofd_lock(m->lock_fd, F_RDLCK, LOCK_BYTE_INTENT);
    if (e)
        return e == EAGAIN ? SQLITE_BUSY : SQLITE_IOERR_LOCK;
    e = ofd_lock(m->lock_fd, F_WRLCK, LOCK_BYTE_WRITE);
    ofd_lock(m->lock_fd, F_UNLCK, LOCK_BYTE_INTENT);
    if (e)
        return e == EAGAIN ? SQLITE_BUSY : SQLITE_IOERR_LOCK;
    return SQLITE_OK;
}

static void writer_unlock(rl_file *m)
{
    if (m->lock_fd >= 0)
        ofd_lock(m->lock_fd, F_UNLCK, LOCK_BYTE_WRITE);
}

/* The applier's way in: intent first, then the write byte, polling until
** timeout_ms. */
static int applier_lock(rl_file *m, int timeout_ms)
{
    int waited = 0, e;
    for (;;) {
        e = ofd_lock(m->lock_fd, F_WRLCK, LOCK_BYTE_INTENT);
        if (e == 0)
            break;
        if (e != EAGAIN)
            return SQLITE_IOERR_LOCK;
        if (waited >= timeout_ms)
            return SQLITE_BUSY;
        rl_sleep_ms(1);
        waited++;
    }
    for (;;) {
        e = ofd_lock(m->lock_fd, F_WRLCK, LOCK_BYTE_WRITE);
        if (e == 0)
            return SQLITE_OK;
        if (e != EAGAIN || waited >= timeout_ms) {
            ofd_lock(m->lock_fd, F_UNLCK, LOCK_BYTE_INTENT);
            return e == EAGAIN ? SQLITE_BUSY : SQLITE_IOERR_LOCK;
        }
        rl_sleep_ms(1);
        waited++;
    }
}

static void applier_unlock(rl_file *m)
{
    ofd_lock(m->lock_fd, F_UNLCK, LOCK_BYTE_WRITE);
    ofd_lock(m->lock_fd, F_UNLCK, LOCK_BYTE_INTENT);
}

/* --------------------------------------------------------- applied record */

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
static int rec_read(rl_file *m, rl_applied_rec *r, char *err, size_t errlen)
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

static int rec_write(rl_file *m, const rl_applied_rec *r)
{
    uint8_t b[REC_SIZE];
    memset(b, 0, sizeof b);
    rl_put_le32(b, REC_MAGIC);
    rl_put_le32(b + 4, REC_VERSION);
    rec_put_state(b + 8, &r->prev);
    rec_put_state(b + 40, &r->next);
    rl_put_le32(b + 72, rl_crc32c(0, b, 72));
    if (m->rec_fd < 0 || pwrite(m->rec_fd, b, sizeof b, 0) != REC_SIZE) {
        ferr(m, SQLITE_IOERR_WRITE,
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
static void rec_resolve(rl_applied_rec *r, const rl_shm_hdr *h)
{
    if (pos_equal(&r->prev, &r->next))
        return;
    if (wal_shows(h, &r->next))
        r->prev = r->next;
    else
        r->next = r->prev;
}

static volatile void *shm_region(void *arg, int i);

/* Reads the latest wal-index header (write lock held). */
static int shm_latest(rl_file *m, rl_shm_hdr *h)
{
    volatile void *r0 = shm_region(m, 0);
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
** whoever asks (the host rebuilds the database, raftd/host.c). */
static int rec_load(rl_file *m)
{
    rl_shm_hdr h;
    char err[256];
    int rc = rec_read(m, &m->rec, err, sizeof err);
    if (rc != SQLITE_OK) {
        if (shm_latest(m, &h) == SQLITE_BUSY_RECOVERY) {
            m->rec_unresolved = 1;
            m->applied_at_lock = 0;
            return SQLITE_OK;
        }
        ferr(m, rc, "raftlite: %s", err);
        return rc;
    }
    m->rec_unresolved = 0;
    if (!pos_equal(&m->rec.prev, &m->rec.next)) {
        rc = shm_latest(m, &h);
        if (rc == SQLITE_BUSY_RECOVERY) {
            /* An intent left by a crash, and recovery's lock (above). */
            m->rec_unresolved = 1;
            m->applied_at_lock = 0;
            return SQLITE_OK;
        }
        if (rc != SQLITE_OK)
            return rc;
        rec_resolve(&m->rec, &h);
        rc = rec_write(m, &m->rec);
        if (rc != SQLITE_OK)
            return rc;
    }
    m->applied_at_lock = m->rec.next.index;
    return SQLITE_OK;
}

/* Before a commit frame: the intent. */
static int rec_intent(rl_file *m, const rl_applied_pos *next)
{
    rl_applied_rec r;
    r.prev = m->rec.next;
    r.next = *next;
    r.next.flags = 0; /* its commit frame is in the WAL, not backfilled */
    m->rec = r;
    return rec_write(m, &r);
}

/* The WAL is about to be emptied (truncated to 0) or restarted by this
** connection, which holds the write lock: SQLite does either only once
** every frame is backfilled into the synced database file, so the
** settled record's index now lives in the database file alone. Marked
** before the WAL changes: a crash in between leaves a WAL that still
** shows the commit frame, where the mark means nothing. Without the mark
** an empty WAL beside a record that names a frame is a lost WAL
** (rec_check). */
static void rec_mark_backfilled(rl_file *m)
{
    if (m->rec_unresolved || !pos_equal(&m->rec.prev, &m->rec.next) ||
        m->rec.next.frame == 0 || (m->rec.next.flags & RL_REC_BACKFILLED))
        return;
    m->rec.prev.flags |= RL_REC_BACKFILLED;
    m->rec.next.flags |= RL_REC_BACKFILLED;
    if (rec_write(m, &m->rec) != SQLITE_OK) {
        /* Not fatal: the next start finds an empty WAL without the mark and
        ** rebuilds from a peer, which is safe. */
        m->rec.prev.flags &= ~RL_REC_BACKFILLED;
        m->rec.next.flags &= ~RL_REC_BACKFILLED;
    }
}

/* After the commit frame reached the file: settled. */
static int rec_settle(rl_file *m)
{
    m->rec.prev = m->rec.next;
    return rec_write(m, &m->rec);
}

/* ---------------------------------------------------------------- capture */

static void capture_reset(rl_capture *c)
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
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
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
            if (ps < 512 || ps > 65536 || (ps & (ps - 1)))
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
** are not part of the transaction.
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
** Called when the write in progress completes the commit frame commit_fn:
** builds the record and hands it to the port. On refusal the frame header
** already on disk is zeroed so that no recovery can ever resurrect the
** transaction, and the error is returned to SQLite, which rolls back.
*/
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
        ferr(m, SQLITE_FULL,
             "raftlite: %s: the disk is full: the WAL cannot "
             "hold the transaction's commit frame; nothing was "
             "written (free space, then retry)",
             m->path);
    } else if (rc != SQLITE_OK) {
        ferr(m, SQLITE_IOERR,
             "raftlite: cannot capture the transaction on %s: %s", m->path,
             err[0] ? err : sqlite3_errstr(rc));
        rc = SQLITE_IOERR;
    } else if (!m->port) {
        ferr(m, SQLITE_READONLY,
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
            rc = rec_load(m);
            if (rc == SQLITE_OK && m->rec_unresolved)
                rc = SQLITE_BUSY;
            if (rc != SQLITE_OK)
                snprintf(err, sizeof err,
                         "the applied record could not be resolved against "
                         "the WAL; retry the transaction");
        }
        ci.base = m->applied_at_lock;
        if (rc == SQLITE_OK)
            rc = m->port->commit(m->port->ctx, m->path, &t, &ci, err,
                                 sizeof err);
        if (rl_timing_on)
            rl_timing_mark(RL_T_RETURNED);
        if (rc != SQLITE_OK) {
            ferr(m, rc, "raftlite: commit on %s failed: %s", m->path,
                 err[0] ? err : sqlite3_errstr(rc));
        } else if (ci.index) {
            /* The entry took effect: record the intent before the commit
            ** frame can reach the file. */
            const rl_frame *cf = &c->frames[commit_fn - c->first];
            rl_applied_pos next;
            next.index = ci.index;
            memcpy(next.salt, cf->buf + 8, 8);
            next.frame = commit_fn;
            next.cksum[0] = rl_get_be32(cf->buf + 16);
            next.cksum[1] = rl_get_be32(cf->buf + 20);
            RL_FAULT("writer-intent-before");
            rc = rec_intent(m, &next);
            RL_FAULT("writer-intent-after");
            if (rc == SQLITE_OK)
                m->pending = ci.index;
            else if (m->port->end)
                m->port->end(m->port->ctx, m->path, 0);
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

/* ---------------------------------------------------------- io methods */

static int guard(rl_file *f, int code, const char *fmt, const char *path)
{
    ferr(f, code, fmt, path);
    return code;
}

static int rl_close(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    int rc;
    if (p->kind == KIND_WAL && p->main && p->main->wal == p)
        p->main->wal = 0;
    if (p->kind == KIND_MAIN) {
        rl_file **pp;
        pthread_mutex_lock(&mains_mu);
        for (pp = &mains; *pp; pp = &(*pp)->next_main)
            if (*pp == p) {
                *pp = p->next_main;
                break;
            }
        pthread_mutex_unlock(&mains_mu);
        if (p->wal)
            p->wal->main = 0;
        capture_reset(&p->cap);
        if (p->lock_fd >= 0)
            close(p->lock_fd); /* our own lock file: no SQLite locks on it */
        p->lock_fd = -1;
        if (p->rec_fd >= 0)
            close(p->rec_fd);
        p->rec_fd = -1;
        sqlite3_free(p->err);
        p->err = NULL;
        /* Its last error outlives it on this thread: a failed ATTACH
        ** closes the file whose refusal explains the failure. */
        if (tl_file == p)
            tl_file = NULL;
    }
    rc = p->sub->pMethods->xClose(p->sub);
    return rc;
}

static int rl_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xRead(p->sub, buf, amt, off);
}

static int wal_write(rl_file *w, const void *buf, int amt, sqlite3_int64 off)
{
    rl_file *m = w->main;
    uint32_t commit_fn = 0;
    int rc;
    if (off == 0)
        RL_FAULT("wal-restart"); /* SQLite's writer starts a generation */
    if (!m->holds_write)
        return guard(m, RL_ERR_GUARD,
                     "raftlite: refused a WAL write to replicated database "
                     "%s without the write lock (locking_mode=EXCLUSIVE is "
                     "not supported on replicated databases)",
                     m->path);
    if (off == 0)
        rec_mark_backfilled(m); /* a restart: everything was backfilled */
    if (m->cap.committed) {
        STAT_ADD(after_commit, 1);
    } else {
        rc = capture_write(w, buf, amt, off, &commit_fn);
        if (rc != SQLITE_OK) {
            ferr(m, rc, "raftlite: capture failed on %s: %s", m->path,
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
        uint64_t idx = m->pending;
        int ok = rc == SQLITE_OK;
        m->pending = 0;
        RL_FAULT("writer-settle-before");
        if (ok && rec_settle(m) != SQLITE_OK)
            ok = 0;
        RL_FAULT("writer-settle-after");
        (void)idx;
        if (m->port && m->port->end)
            m->port->end(m->port->ctx, m->path, ok);
        if (rl_timing_on)
            rl_timing_mark(RL_T_FRAMED);
    }
    return rc;
}

static int rl_write(sqlite3_file *f, const void *buf, int amt,
                    sqlite3_int64 off)
{
    rl_file *p = (rl_file *)f;
    if (p->kind == KIND_WAL && p->main && p->main->replicated)
        return wal_write(p, buf, amt, off);
    if (p->kind == KIND_MAIN && p->replicated && !p->holds_ckpt)
        return guard(p, RL_ERR_GUARD,
                     "raftlite: refused a write to the main file of "
                     "replicated database %s outside a checkpoint",
                     p->path);
    if (p->kind == KIND_MAIN && p->replicated)
        RL_FAULT(
            "checkpoint-write"); /* a checkpoint's write to the main file */
    return p->sub->pMethods->xWrite(p->sub, buf, amt, off);
}

static int rl_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    rl_file *p = (rl_file *)f;
    if (p->kind == KIND_WAL && p->main && p->main->replicated &&
        !p->main->holds_write && !p->main->holds_ckpt)
        return guard(p->main, RL_ERR_GUARD,
                     "raftlite: refused to truncate the WAL of replicated "
                     "database %s without the write lock",
                     p->main->path);
    if (p->kind == KIND_MAIN && p->replicated && !p->holds_ckpt)
        return guard(p, RL_ERR_GUARD,
                     "raftlite: refused to truncate replicated database %s "
                     "outside a checkpoint",
                     p->path);
    if (p->kind == KIND_WAL && size == 0 && p->main && p->main->replicated &&
        p->main->holds_write)
        rec_mark_backfilled(p->main); /* wal_checkpoint(TRUNCATE) */
    return p->sub->pMethods->xTruncate(p->sub, size);
}

#ifdef RL_FAULTS
/* Fault builds only (fault.h): a copy of a file just synced, read through
** its own sqlite3_file (another descriptor's close() would drop this
** process's POSIX locks on it). */
static void fault_keep_synced(rl_file *m, sqlite3_file *sub, const char *name)
{
    sqlite3_int64 sz = 0, off;
    uint8_t *buf;
    if (!rl_fault_synced_on() || !m || !m->path ||
        sub->pMethods->xFileSize(sub, &sz) != SQLITE_OK)
        return;
    buf = malloc(sz ? (size_t)sz : 1);
    if (!buf)
        return;
    for (off = 0; off < sz; off += 65536) {
        int k = sz - off < 65536 ? (int)(sz - off) : 65536;
        if (sub->pMethods->xRead(sub, buf + off, k, off) != SQLITE_OK)
            break;
    }
    if (off >= sz)
        rl_fault_save(m->path, name, buf, (size_t)sz);
    free(buf);
}
#endif

/*
** synchronous on a replicated database defaults to NORMAL (DESIGN.md
** section 5, README "Durability"): the Raft log, fsynced on a quorum before
** COMMIT returns, is the durable record, and a node replays it after a
** crash. SQLite's pager keeps its own default (FULL in the stock shell), so
** the VFS drops the one sync NORMAL would not do: the WAL's sync right
** after this connection wrote an accepted commit frame (its WAL header and
** checkpoint syncs happen outside that window and still run). A connection
** that set PRAGMA synchronous itself gets exactly what it asked for.
*/
static int wal_commit_sync_skipped(rl_file *p)
{
    rl_file *m = p->main;
    return p->kind == KIND_WAL && m && m->replicated && m->cap.committed &&
           m->sync_asked == 0;
}

/* PRAGMA synchronous on any main database file (it may become replicated
** later on this connection): remember an explicit level; answer a query
** on a replica with the level in effect. Returns SQLITE_NOTFOUND to let
** SQLite go on (it applies the level to its pager as usual). */
static int pragma_synchronous(rl_file *p, char **a)
{
    static const char *const names[] = {"off", "normal", "full", "extra"};
    const char *val = a[2];
    if (val) {
        int lvl = -1;
        for (int i = 0; i < 4; i++)
            if (sqlite3_stricmp(val, names[i]) == 0)
                lvl = i;
        if (lvl < 0 && val[0] >= '0' && val[0] <= '3' && val[1] == 0)
            lvl = val[0] - '0';
        if (lvl >= 0)
            p->sync_asked = lvl + 1;
        return SQLITE_NOTFOUND;
    }
    if (p->replicated && p->sync_asked == 0) {
        a[0] = sqlite3_mprintf("1");
        return a[0] ? SQLITE_OK : SQLITE_NOMEM;
    }
    return SQLITE_NOTFOUND;
}

static int rl_sync(sqlite3_file *f, int flags)
{
    rl_file *p = (rl_file *)f;
    if (wal_commit_sync_skipped(p))
        return SQLITE_OK;
    int rc = p->sub->pMethods->xSync(p->sub, flags);
#ifdef RL_FAULTS
    if (rc == SQLITE_OK && p->kind == KIND_WAL && p->main &&
        p->main->replicated)
        fault_keep_synced(p->main, p->sub, "wal");
    if (rc == SQLITE_OK && p->kind == KIND_MAIN && p->replicated)
        fault_keep_synced(p, p->sub, "db");
#endif
    return rc;
}

static int rl_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xFileSize(p->sub, size);
}

static int rl_lock(sqlite3_file *f, int level)
{
    rl_file *p = (rl_file *)f;
    /* In WAL mode SQLite asks for EXCLUSIVE only to leave WAL mode, for
    ** locking_mode=EXCLUSIVE, and to checkpoint-and-delete on the last
    ** close. A replica allows none of them. */
    if (p->kind == KIND_MAIN && p->replicated &&
        level == SQLITE_LOCK_EXCLUSIVE) {
        /* Without the shm mapped this is locking_mode=EXCLUSIVE opening
        ** the WAL: fail at once (SQLITE_BUSY would make the busy handler
        ** wait out its timeout first). Otherwise it is a close or an
        ** attempt to leave WAL mode: "locked" skips or refuses it. */
        if (!p->shm_mapped)
            return guard(p, RL_ERR_GUARD,
                         "raftlite: replicated database %s cannot be used "
                         "with locking_mode=EXCLUSIVE",
                         p->path);
        return SQLITE_BUSY;
    }
    return p->sub->pMethods->xLock(p->sub, level);
}

static int rl_unlock(sqlite3_file *f, int level)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xUnlock(p->sub, level);
}

static int rl_check_reserved(sqlite3_file *f, int *out)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xCheckReservedLock(p->sub, out);
}

/* Page size of the database file from its header (0 if it has none). */
static uint32_t file_page_size(rl_file *p)
{
    uint8_t b[2];
    uint32_t v;
    if (p->sub->pMethods->xRead(p->sub, b, 2, 16) != SQLITE_OK)
        return 0;
    v = ((uint32_t)b[0] << 8) | b[1];
    return v == 1 ? 65536 : v;
}

static int pragma_refuse(char **a, const char *fmt, rl_file *p, const char *val)
{
    a[0] = sqlite3_mprintf(fmt, p->path, val);
    ferr(p, SQLITE_ERROR, "%s", a[0] ? a[0] : "refused");
    return SQLITE_ERROR;
}

/* SQLITE_FCNTL_PRAGMA on a replicated database: refuse what would fork
** or break the replica. Returns SQLITE_NOTFOUND to let SQLite go on. */
static int replicated_pragma(rl_file *p, char **a)
{
    const char *name = a[1], *val = a[2];
    if (!name || !val)
        return SQLITE_NOTFOUND;
    if (sqlite3_stricmp(name, "journal_mode") == 0 &&
        sqlite3_stricmp(val, "wal") != 0)
        return pragma_refuse(a,
                             "raftlite: %s is replicated and stays in WAL "
                             "mode; journal_mode=%s refused",
                             p, val);
    if (sqlite3_stricmp(name, "locking_mode") == 0 &&
        sqlite3_stricmp(val, "normal") != 0)
        return pragma_refuse(a,
                             "raftlite: %s is replicated; locking_mode=%s "
                             "refused (only NORMAL is supported)",
                             p, val);
    if (sqlite3_stricmp(name, "page_size") == 0) {
        uint32_t cur = file_page_size(p);
        long want = strtol(val, 0, 10);
        if (cur == 0 || want != (long)cur)
            return pragma_refuse(a,
                                 "raftlite: %s is replicated; its page size "
                                 "cannot change (page_size=%s refused)",
                                 p, val);
    }
    return SQLITE_NOTFOUND;
}

static rl_pragma_fn pragma_handler;

void rl_vfs_set_pragma_handler(rl_pragma_fn fn)
{
    pragma_handler = fn;
}

/* PRAGMA raft_consistency [= local | linearizable]: per connection (its
** main file), answered with the level in force. */
static int pragma_consistency(rl_file *p, char **a)
{
    const char *val = a[2];
    if (val) {
        if (sqlite3_stricmp(val, "linearizable") == 0)
            p->linearizable = 1;
        else if (sqlite3_stricmp(val, "local") == 0)
            p->linearizable = 0;
        else {
            a[0] = sqlite3_mprintf("raftlite: raft_consistency=%s: expected "
                                   "local or linearizable",
                                   val);
            ferr(p, SQLITE_ERROR, "%s", a[0] ? a[0] : "bad value");
            return SQLITE_ERROR;
        }
    }
    a[0] = sqlite3_mprintf("%s", p->linearizable ? "linearizable" : "local");
    return SQLITE_OK;
}

/* A linearizable read's point (see rl_port.read_point), refused with the
** reason as the connection's error. */
static int read_point(rl_file *p)
{
    char e[600] = "";
    int rc = SQLITE_ERROR;
    uint64_t want = 0;
    if (p->port && p->port->read_point)
        rc = p->port->read_point(p->port->ctx, p->path, &want, e, sizeof e);
    else
        snprintf(e, sizeof e, "this process has no Raft node for it");
    if (rc == SQLITE_OK && want) {
        /* A client process: the file must reflect want. The record's
        ** settled position (the older of its two) is what the file holds
        ** for certain; read without a lock, so a torn read is retried. */
        int waited = 0;
        for (;;) {
            rl_applied_rec r;
            char re[200];
            if (rec_read(p, &r, re, sizeof re) == SQLITE_OK &&
                (r.prev.index < r.next.index ? r.prev.index : r.next.index) >=
                    want)
                break;
            if (waited >= 2000) {
                snprintf(e, sizeof e,
                         "the file has not reached index %llu, the read "
                         "point, within 2000 ms",
                         (unsigned long long)want);
                rc = SQLITE_BUSY;
                break;
            }
            usleep(1000);
            waited++;
        }
    }
    if (rc == SQLITE_OK)
        return 0;
    ferr(p, SQLITE_BUSY_TIMEOUT,
         "raftlite: linearizable read on %s refused: %s (retried up to the "
         "connection's busy timeout; PRAGMA raft_consistency=local reads "
         "this node's possibly stale copy)",
         p->path, e);
    p->gate_err_seq = p->err_seq; /* retracted if a retry gets through */
    return 1;
}

static int rl_file_control(sqlite3_file *f, int op, void *arg)
{
    rl_file *p = (rl_file *)f;
    if (p->kind == KIND_MAIN && op == SQLITE_FCNTL_PRAGMA &&
        ((char **)arg)[1] &&
        sqlite3_stricmp(((char **)arg)[1], "raft_consistency") == 0)
        return pragma_consistency(p, (char **)arg);
    if (p->kind == KIND_MAIN && op == SQLITE_FCNTL_PRAGMA && pragma_handler) {
        char **a = (char **)arg;
        if (a[1] && sqlite3_strnicmp(a[1], "raft_", 5) == 0) {
            int rc = pragma_handler(p->path, p->replicated, a[1], a[2], &a[0]);
            if (rc != SQLITE_NOTFOUND)
                return rc;
        }
    }
    if (p->kind == KIND_MAIN && op == SQLITE_FCNTL_PRAGMA &&
        ((char **)arg)[1] &&
        sqlite3_stricmp(((char **)arg)[1], "synchronous") == 0) {
        int rc = pragma_synchronous(p, (char **)arg);
        if (rc != SQLITE_NOTFOUND)
            return rc;
    }
    if (p->kind == KIND_MAIN && p->replicated) {
        if (op == SQLITE_FCNTL_PRAGMA) {
            int rc = replicated_pragma(p, (char **)arg);
            if (rc != SQLITE_NOTFOUND)
                return rc;
        } else if (op == SQLITE_FCNTL_PERSIST_WAL) {
            /* A replica's WAL is never deleted by a closing connection. */
            *(int *)arg = 1;
            return SQLITE_OK;
        }
    }
    if (op == SQLITE_FCNTL_VFSNAME) {
        /* As SQLite's own shims do: this VFS's name in front of the
        ** name of the VFS below ("raft/unix"). */
        char *below = NULL;
        int rc = p->sub->pMethods->xFileControl(p->sub, op, &below);
        char *name =
            sqlite3_mprintf("%s/%s", RL_VFS_NAME,
                            rc == SQLITE_OK && below ? below : unix_vfs->zName);
        sqlite3_free(below);
        if (!name)
            return SQLITE_NOMEM;
        *(char **)arg = name;
        return SQLITE_OK;
    }
    return p->sub->pMethods->xFileControl(p->sub, op, arg);
}

static int rl_sector_size(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xSectorSize(p->sub);
}

static int rl_device_characteristics(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xDeviceCharacteristics(p->sub);
}

/* Takes the shared lock on the real WAL write-lock slot that keeps stock
** writers and stock recovery out, if this connection does not hold it yet
** (a stock writer in the middle of a transaction makes it fail for now;
** the next shm call tries again). */
static void hold_shared0(rl_file *p)
{
    if (!p->shm_shared0 &&
        p->sub->pMethods->xShmLock(p->sub, SLOT_WRITE, 1,
                                   SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) ==
            SQLITE_OK)
        p->shm_shared0 = 1;
}

static int rl_shm_map(sqlite3_file *f, int region, int size, int extend,
                      void volatile **pp)
{
    rl_file *p = (rl_file *)f;
    int rc = p->sub->pMethods->xShmMap(p->sub, region, size, extend, pp);
    if (rc == SQLITE_OK && p->kind == KIND_MAIN)
        p->shm_mapped = 1;
    if (rc == SQLITE_OK && p->kind == KIND_MAIN && p->replicated) {
        hold_shared0(p);
    }
    return rc;
}

/*
** Is the read gate closed to this connection? F_OFD_GETLK reports a lock
** another description holds; the gate's own holder (the host's applier
** connection) never sees its own lock. On "closed" the reason the host
** left in "<db>-raft/gate" becomes this thread's error.
*/
static int gate_closed(rl_file *p)
{
    struct flock fl;
    char path[4096], why[512];
    ssize_t got = 0;
    int fd;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = LOCK_BYTE_GATE;
    fl.l_len = 1;
    if (fcntl(p->lock_fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        return 0;
    STAT_ADD(gated, 1);
    snprintf(path, sizeof path, "%s-raft/gate", p->path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        got = read(fd, why, sizeof why - 1);
        close(fd); /* our own file: no SQLite lock lives on it */
    }
    why[got > 0 ? got : 0] = 0;
    ferr(p, SQLITE_BUSY_TIMEOUT,
         "raftlite: %s does not serve reads yet: %s (reads wait "
         "for it up to the connection's busy timeout)",
         p->path, got > 0 ? why : "its node is starting");
    p->gate_err_seq = p->err_seq; /* retracted if the wait ends in a read */
    return 1;
}

int rl_vfs_gate_close(sqlite3_file *f, const char *why, char *err,
                      size_t errlen)
{
    rl_file *p = (rl_file *)f;
    char path[4096], tmp[4200];
    int fd, e;
    size_t n = strlen(why);
    if (f->pMethods != &rl_io_methods || p->kind != KIND_MAIN ||
        p->lock_fd < 0) {
        snprintf(err, errlen, "not a replicated database file");
        return SQLITE_MISUSE;
    }
    /* The reason first, then the lock: a reader that sees the lock finds
    ** this reason (or an earlier one), never none. Written whole by
    ** rename so a reader never reads half of it. */
    snprintf(path, sizeof path, "%s-raft/gate", p->path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, why, n) != (ssize_t)n || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        /* The gate still closes: refusing reads matters more than why. */
    }
    e = ofd_lock(p->lock_fd, F_WRLCK, LOCK_BYTE_GATE);
    if (e) {
        snprintf(err, errlen, "cannot take the read gate of %s: %s", p->path,
                 e == EAGAIN ? "held by another connection" : strerror(e));
        return e == EAGAIN ? SQLITE_BUSY : SQLITE_IOERR_LOCK;
    }
    return SQLITE_OK;
}

void rl_vfs_gate_open(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    if (f->pMethods == &rl_io_methods && p->kind == KIND_MAIN &&
        p->lock_fd >= 0)
        ofd_lock(p->lock_fd, F_UNLCK, LOCK_BYTE_GATE);
}

static int rl_shm_lock(sqlite3_file *f, int ofst, int n, int flags)
{
    rl_file *p = (rl_file *)f;
    int rc = SQLITE_OK;
    if (p->kind != KIND_MAIN || !p->replicated)
        return p->sub->pMethods->xShmLock(p->sub, ofst, n, flags);

    if (p->shm_mapped)
        hold_shared0(p);

    /* Every read transaction begins with a shared read mark: the gate's
    ** place. A busy code other than plain SQLITE_BUSY is returned by wal.c
    ** as is (no WAL_RETRY loop), and the btree layer runs the busy handler
    ** for any busy code before it gives up. */
    if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) && n == 1 &&
        ofst >= SLOT_READ0 && ofst <= SLOT_READN) {
        if (gate_closed(p))
            return SQLITE_BUSY_TIMEOUT;
        if (p->linearizable && read_point(p))
            return SQLITE_BUSY_TIMEOUT;
        /* A read that waited at the gate and got through: the wait was
        ** no error of the statement's (raft_last_error stays clean). */
        if (p->gate_err_seq && p->gate_err_seq == p->err_seq)
            p->err_seq = 0;
        p->gate_err_seq = 0;
    }

    if (ofst == SLOT_WRITE) {
        if (flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE)) {
            /* Without the shared lock on the real slot a stock writer may
            ** be inside a transaction right now: wait for it. */
            if (!p->shm_shared0)
                return SQLITE_BUSY;
            rc = writer_lock(p);
            if (rc == SQLITE_OK) {
                rc = rec_load(p);
                if (rc == SQLITE_OK && !p->rec_unresolved && p->port &&
                    p->port->begin)
                    rc = p->port->begin(p->port->ctx, p->path,
                                        p->applied_at_lock);
                if (rc != SQLITE_OK)
                    writer_unlock(p);
            }
            if (rc != SQLITE_OK)
                return rc;
            capture_reset(&p->cap);
            p->pending = 0;
            p->holds_write = 1;
        } else if (flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE)) {
            if (p->cap.n && !p->cap.committed)
                STAT_ADD(rolled_back, 1);
            if (p->holds_write) {
                writer_unlock(p);
                p->holds_write = 0;
            }
            if (rl_timing_on)
                rl_timing_end(); /* the commit's last point, if one ran */
            capture_reset(&p->cap);
        } else {
            return SQLITE_IOERR_SHMLOCK; /* SQLite never shares slot 0 */
        }
        ofst++;
        n--;
        if (n == 0)
            return SQLITE_OK;
    }
    rc = p->sub->pMethods->xShmLock(p->sub, ofst, n, flags);
    if (rc == SQLITE_OK && ofst <= SLOT_CKPT && SLOT_CKPT < ofst + n &&
        (flags & SQLITE_SHM_EXCLUSIVE))
        p->holds_ckpt = (flags & SQLITE_SHM_LOCK) != 0;
    return rc;
}

static void rl_shm_barrier(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    p->sub->pMethods->xShmBarrier(p->sub);
}

static int rl_shm_unmap(sqlite3_file *f, int delete_flag)
{
    rl_file *p = (rl_file *)f;
    if (p->kind == KIND_MAIN && p->replicated) {
        /* The shm of a replica stays: stock readers may have it mapped. */
        delete_flag = 0;
        if (p->holds_write)
            writer_unlock(p);
        p->holds_write = p->holds_ckpt = p->shm_shared0 = 0;
    }
    if (p->kind == KIND_MAIN)
        p->shm_mapped = 0;
    return p->sub->pMethods->xShmUnmap(p->sub, delete_flag);
}

static int rl_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xFetch(p->sub, off, amt, pp);
}

static int rl_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xUnfetch(p->sub, off, page);
}

static const sqlite3_io_methods rl_io_methods = {
    3,
    rl_close,
    rl_read,
    rl_write,
    rl_truncate,
    rl_sync,
    rl_file_size,
    rl_lock,
    rl_unlock,
    rl_check_reserved,
    rl_file_control,
    rl_sector_size,
    rl_device_characteristics,
    rl_shm_map,
    rl_shm_lock,
    rl_shm_barrier,
    rl_shm_unmap,
    rl_fetch,
    rl_unfetch,
};

/* ------------------------------------------------------------ vfs calls */

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The main file of the database a journal or WAL named zName belongs to,
** if it is one of ours. */
static rl_file *owner_of(const char *zName)
{
    sqlite3_file *mf;
    if (!zName)
        return 0;
    mf = sqlite3_database_file_object(zName);
    if (!mf || mf->pMethods != &rl_io_methods)
        return 0;
    return ((rl_file *)mf)->kind == KIND_MAIN ? (rl_file *)mf : 0;
}

/* Opens "<db>-raft/lock" and "<db>-raft/applied" for main file p. */
static int open_raft_files(rl_file *p)
{
    char *lock = sqlite3_mprintf("%s-raft/lock", p->path);
    char *rec = sqlite3_mprintf("%s-raft/applied", p->path);
    int rc = SQLITE_OK;
    if (!lock || !rec) {
        rc = SQLITE_NOMEM;
        goto out;
    }
    p->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (p->lock_fd >= 0)
        p->rec_fd = open(rec, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (p->lock_fd < 0 || p->rec_fd < 0) {
        ferr(p, SQLITE_CANTOPEN, "raftlite: cannot open %s: %s",
             p->lock_fd < 0 ? lock : rec, strerror(errno));
        if (p->lock_fd >= 0)
            close(p->lock_fd);
        p->lock_fd = p->rec_fd = -1;
        rc = SQLITE_CANTOPEN;
    }
out:
    sqlite3_free(lock);
    sqlite3_free(rec);
    return rc;
}

static int rl_open(sqlite3_vfs *vfs, sqlite3_filename zName, sqlite3_file *f,
                   int flags, int *out_flags)
{
    rl_file *p = (rl_file *)f;
    int rc;
    (void)vfs;
    memset(p, 0, sizeof *p);
    p->sub = (sqlite3_file *)&p[1];
    p->lock_fd = -1;
    p->rec_fd = -1;

    if ((flags & SQLITE_OPEN_MAIN_DB) && zName) {
        char *dir = sqlite3_mprintf("%s-raft", zName);
        if (!dir)
            return SQLITE_NOMEM;
        p->kind = KIND_MAIN;
        p->path = zName;
        p->replicated = dir_exists(dir);
        p->linearizable =
            sqlite3_uri_parameter(zName, "raft_consistency") &&
            sqlite3_stricmp(sqlite3_uri_parameter(zName, "raft_consistency"),
                            "linearizable") == 0;
        if (p->replicated) {
            rc = open_raft_files(p);
            if (rc != SQLITE_OK) {
                sqlite3_free(dir);
                return rc;
            }
            p->port = port_resolver ? port_resolver(zName) : 0;
        }
        sqlite3_free(dir);
    } else if (flags & SQLITE_OPEN_WAL) {
        /* Linked whether or not the database is replicated yet: a
        ** database adopted later (rl_vfs_adopt) captures through it. */
        rl_file *m = owner_of(zName);
        if (m) {
            p->kind = KIND_WAL;
            p->main = m;
            m->wal = p;
        }
    } else if (flags & SQLITE_OPEN_MAIN_JOURNAL) {
        rl_file *m = owner_of(zName);
        if (m && m->replicated) {
            ferr(m, SQLITE_CANTOPEN,
                 "raftlite: %s is replicated and must stay in WAL "
                 "mode; a rollback journal was refused",
                 m->path);
            return SQLITE_CANTOPEN;
        }
    }

    rc = unix_vfs->xOpen(unix_vfs, zName, p->sub, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (p->lock_fd >= 0)
            close(p->lock_fd);
        if (p->rec_fd >= 0)
            close(p->rec_fd);
        if (p->kind == KIND_WAL)
            p->main->wal = 0;
        p->base.pMethods = 0;
        return rc;
    }
    p->base.pMethods = &rl_io_methods;
    if (p->kind == KIND_MAIN) {
        pthread_mutex_lock(&mains_mu);
        p->next_main = mains;
        mains = p;
        pthread_mutex_unlock(&mains_mu);
    }
    return SQLITE_OK;
}

static int rl_delete(sqlite3_vfs *vfs, const char *zName, int sync_dir)
{
    (void)vfs;
    return unix_vfs->xDelete(unix_vfs, zName, sync_dir);
}

static int rl_access(sqlite3_vfs *vfs, const char *zName, int flags, int *out)
{
    (void)vfs;
    return unix_vfs->xAccess(unix_vfs, zName, flags, out);
}

static int rl_full_pathname(sqlite3_vfs *vfs, const char *zName, int n,
                            char *out)
{
    (void)vfs;
    return unix_vfs->xFullPathname(unix_vfs, zName, n, out);
}

static void *rl_dlopen(sqlite3_vfs *vfs, const char *zPath)
{
    (void)vfs;
    return unix_vfs->xDlOpen(unix_vfs, zPath);
}

static void rl_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    unix_vfs->xDlError(unix_vfs, n, msg);
}

static void (*rl_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return unix_vfs->xDlSym(unix_vfs, h, sym);
}

static void rl_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    unix_vfs->xDlClose(unix_vfs, h);
}

static int rl_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return unix_vfs->xRandomness(unix_vfs, n, out);
}

static int rl_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return unix_vfs->xSleep(unix_vfs, us);
}

static int rl_current_time(sqlite3_vfs *vfs, double *t)
{
    (void)vfs;
    return unix_vfs->xCurrentTime(unix_vfs, t);
}

static int rl_get_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    return unix_vfs->xGetLastError(unix_vfs, n, msg);
}

static int rl_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
    (void)vfs;
    return unix_vfs->xCurrentTimeInt64(unix_vfs, t);
}

int rl_vfs_register(int make_default, rl_port_resolver resolver)
{
    if (!unix_vfs) {
        unix_vfs = sqlite3_vfs_find("unix");
        if (!unix_vfs)
            return SQLITE_ERROR;
        rl_vfs_obj.iVersion = 2;
        rl_vfs_obj.szOsFile = (int)sizeof(rl_file) + unix_vfs->szOsFile;
        rl_vfs_obj.mxPathname = unix_vfs->mxPathname;
        rl_vfs_obj.zName = RL_VFS_NAME;
        rl_vfs_obj.xOpen = rl_open;
        rl_vfs_obj.xDelete = rl_delete;
        rl_vfs_obj.xAccess = rl_access;
        rl_vfs_obj.xFullPathname = rl_full_pathname;
        rl_vfs_obj.xDlOpen = rl_dlopen;
        rl_vfs_obj.xDlError = rl_dlerror;
        rl_vfs_obj.xDlSym = rl_dlsym;
        rl_vfs_obj.xDlClose = rl_dlclose;
        rl_vfs_obj.xRandomness = rl_randomness;
        rl_vfs_obj.xSleep = rl_sleep;
        rl_vfs_obj.xCurrentTime = rl_current_time;
        rl_vfs_obj.xGetLastError = rl_get_last_error;
        rl_vfs_obj.xCurrentTimeInt64 = rl_current_time_int64;
    }
    port_resolver = resolver;
    return sqlite3_vfs_register(&rl_vfs_obj, make_default);
}

int rl_vfs_is_replicated(sqlite3_file *f)
{
    return f && f->pMethods == &rl_io_methods &&
           ((rl_file *)f)->kind == KIND_MAIN && ((rl_file *)f)->replicated;
}

const char *rl_vfs_path(sqlite3_file *f)
{
    return rl_vfs_is_replicated(f) ? ((rl_file *)f)->path : 0;
}

/* --------------------------------------------------------------- apply */

static volatile void *shm_region(void *arg, int i)
{
    rl_file *m = arg;
    void volatile *p = 0;
    if (m->sub->pMethods->xShmMap(m->sub, i, RL_SHM_REGION_SIZE, 1, &p) !=
        SQLITE_OK)
        return 0;
    return p;
}

static int apply_fail(char *err, size_t errlen, int rc, const char *fmt,
                      const char *a)
{
    snprintf(err, errlen, fmt, a);
    return rc;
}

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
        return apply_fail(err, errlen, SQLITE_NOMEM, "%s: out of memory",
                          m->path);
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
        e = rl_shm_append(shm_region, m, mx_frame, first + done, pgno);
        if (e != 0) {
            snprintf(err, errlen, "%s: wal-index update failed: %s", m->path,
                     rl_walfmt_errstr(e));
            rc = SQLITE_CORRUPT;
            break;
        }
        k++;
        if (commit && index) {
            /* The applied record's intent goes first (see above). */
            rl_applied_pos next;
            next.index = index;
            memcpy(next.salt, salt, 8);
            next.frame = first + done;
            next.cksum[0] = cksum[0];
            next.cksum[1] = cksum[1];
            RL_FAULT("apply-intent-before");
            rc = rec_intent(m, &next);
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
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: not a replicated database of the raft VFS",
                          "apply");
    if (!s || !s->next || s->n_pages == 0 || s->n_pages > s->db_pages ||
        s->page_size < 512 || s->page_size > 65536 ||
        (s->page_size & (s->page_size - 1)))
        return apply_fail(err, errlen, SQLITE_ERROR,
                          "%s: malformed page stream (page size, page or "
                          "database count)",
                          m->path);
    if (!m->wal || !m->wal->sub->pMethods)
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: the applying connection has no open WAL yet "
                          "(read from it once first)",
                          m->path);
    if (m->holds_write)
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: the applying connection is inside a write "
                          "transaction",
                          m->path);
    wal = m->wal->sub;

    /* As for writers: no stock writer may be inside a transaction. */
    rc = rl_vfs_lock_write(f, timeout_ms, err, errlen);
    if (rc != SQLITE_OK)
        return rc;

    r0 = shm_region(m, 0);
    if (!r0) {
        rc = apply_fail(err, errlen, SQLITE_IOERR_SHMMAP,
                        "%s: cannot map the wal-index", m->path);
        goto out;
    }
    if (rl_shm_hdr_read(r0, &h) != 0) {
        rc = apply_fail(err, errlen, SQLITE_BUSY_RECOVERY,
                        "%s: the wal-index header is not valid; a read on "
                        "the connection runs recovery, then retry",
                        m->path);
        goto out;
    }
    if (index) {
        rc = rec_read(m, &m->rec, err, errlen);
        if (rc != SQLITE_OK)
            goto out;
        rec_resolve(&m->rec, &h);
        if (index <= m->rec.next.index) {
            snprintf(err, errlen,
                     "%s: entry %llu is already applied (the file holds "
                     "%llu)",
                     m->path, (unsigned long long)index,
                     (unsigned long long)m->rec.next.index);
            rc = SQLITE_MISUSE;
            goto out;
        }
    }

    /* The record must fit the database it is applied to. */
    db_ps = h.mxFrame ? rl_shm_page_size(&h) : file_page_size(m);
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
        rec_mark_backfilled(m);
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
    rc = index ? rec_settle(m) : SQLITE_OK;
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
    applier_unlock(m);
    return rc;
}

/* ------------------------------------------------ record and accessors */

int rl_vfs_lock_write(sqlite3_file *f, int timeout_ms, char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    int rc, waited;
    if (!rl_vfs_is_replicated(f))
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: not a replicated database of the raft VFS",
                          "lock");
    if (m->holds_write)
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: the connection is inside a write transaction",
                          m->path);
    if (!m->shm_mapped)
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: the connection has not read the database yet "
                          "(its wal-index is not open): read once first",
                          m->path);
    for (waited = 0; !m->shm_shared0; waited++) {
        hold_shared0(m);
        if (m->shm_shared0)
            break;
        if (waited >= timeout_ms)
            return apply_fail(err, errlen, SQLITE_BUSY,
                              "%s: a process without raftlite holds the WAL "
                              "write lock",
                              m->path);
        rl_sleep_ms(1);
    }
    rc = applier_lock(m, timeout_ms);
    if (rc != SQLITE_OK)
        return apply_fail(err, errlen, rc,
                          "%s: the write lock was not free in time (a "
                          "transaction left open blocks replication)",
                          m->path);
    return SQLITE_OK;
}

void rl_vfs_unlock_write(sqlite3_file *f)
{
    applier_unlock((rl_file *)f);
}

int rl_vfs_shm_header(sqlite3_file *f, struct rl_shm_hdr *h)
{
    if (!rl_vfs_is_replicated(f))
        return SQLITE_MISUSE;
    return shm_latest((rl_file *)f, h);
}

volatile void *rl_vfs_shm_region(sqlite3_file *f, int i)
{
    if (!rl_vfs_is_replicated(f))
        return 0;
    return shm_region(f, i);
}

sqlite3_file *rl_vfs_db_file(sqlite3_file *f)
{
    return rl_vfs_is_replicated(f) ? ((rl_file *)f)->sub : 0;
}

sqlite3_file *rl_vfs_wal_file(sqlite3_file *f)
{
    rl_file *m = (rl_file *)f;
    if (!rl_vfs_is_replicated(f) || !m->wal || !m->wal->sub->pMethods)
        return 0;
    return m->wal->sub;
}

/*
** Checks that the WAL is the one the settled record describes: its commit
** frame is where the record says, with the same checksum, or the WAL was
** emptied since (mxFrame 0: everything is in the database file). Returns
** 0, or 1 with err saying how they differ.
*/
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
            rl_shm_find(shm_region, m, 1, h->mxFrame, pg, &fr) != 0)
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

static int rec_check(rl_file *m, const rl_shm_hdr *h, char *err, size_t errlen)
{
    const rl_applied_pos *s = &m->rec.next;
    sqlite3_file *wal = rl_vfs_wal_file((sqlite3_file *)m);
    uint8_t fh[RL_WAL_FRAME_HDR_SIZE];
    uint32_t ps = h->mxFrame ? rl_shm_page_size(h) : file_page_size(m);
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

/* The prologue of the record's API calls: the write lock (as apply takes
** it) and the latest wal-index header. On an error nothing is held. */
static int lock_latest(sqlite3_file *f, int timeout_ms, rl_shm_hdr *h,
                       char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    int rc = rl_vfs_lock_write(f, timeout_ms, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    rc = shm_latest(m, h);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: the wal-index header is not valid", m->path);
        applier_unlock(m);
    }
    return rc;
}

int rl_vfs_applied(sqlite3_file *f, int timeout_ms, uint64_t *index, char *err,
                   size_t errlen)
{
    rl_file *m = (rl_file *)f;
    rl_shm_hdr h;
    int rc;
    *index = 0;
    rc = lock_latest(f, timeout_ms, &h, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    rc = rec_read(m, &m->rec, err, errlen);
    if (rc != SQLITE_OK)
        goto out;
    if (!pos_equal(&m->rec.prev, &m->rec.next)) {
        rec_resolve(&m->rec, &h);
        rc = rec_write(m, &m->rec);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "%s", rl_vfs_last_error(0));
            goto out;
        }
    }
    if (rec_check(m, &h, err, errlen)) {
        rc = SQLITE_CORRUPT;
        goto out;
    }
    *index = m->rec.next.index;
out:
    applier_unlock(m);
    return rc;
}

char **rl_vfs_replicated_paths(int *n)
{
    char **out = NULL;
    int cap = 0;
    rl_file *p;
    *n = 0;
    pthread_mutex_lock(&mains_mu);
    for (p = mains; p; p = p->next_main) {
        int seen = 0;
        if (!p->replicated)
            continue;
        for (int i = 0; i < *n && !seen; i++)
            seen = strcmp(out[i], p->path) == 0;
        if (seen)
            continue;
        if (*n == cap) {
            char **o = realloc(out, (size_t)(cap ? 2 * cap : 8) * sizeof *o);
            if (!o)
                break;
            out = o;
            cap = cap ? 2 * cap : 8;
        }
        if (!(out[*n] = strdup(p->path)))
            break;
        (*n)++;
    }
    pthread_mutex_unlock(&mains_mu);
    if (*n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

void rl_vfs_paths_free(char **paths, int n)
{
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

int rl_vfs_adopt(const char *db_path, char *err, size_t errlen)
{
    rl_file *p;
    int rc = SQLITE_OK;
    /* Resolved before taking mains_mu: a resolver may open connections. */
    const rl_port *port = port_resolver ? port_resolver(db_path) : 0;
    pthread_mutex_lock(&mains_mu);
    for (p = mains; p && rc == SQLITE_OK; p = p->next_main) {
        if (p->replicated || strcmp(p->path, db_path) != 0)
            continue;
        if (p->holds_write) {
            snprintf(err, errlen,
                     "%s: a connection of this process is inside a write "
                     "transaction; COMMIT or ROLLBACK it first",
                     db_path);
            rc = SQLITE_BUSY;
            break;
        }
        rc = open_raft_files(p);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "%s", rl_vfs_last_error(0));
            break;
        }
        p->replicated = 1;
        p->port = port;
        if (p->shm_mapped)
            hold_shared0(p);
    }
    pthread_mutex_unlock(&mains_mu);
    return rc;
}

int rl_vfs_mark_backfilled(sqlite3_file *f, int timeout_ms, char *err,
                           size_t errlen)
{
    rl_file *m = (rl_file *)f;
    rl_shm_hdr h;
    int rc = lock_latest(f, timeout_ms, &h, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    rc = rec_read(m, &m->rec, err, errlen);
    if (rc == SQLITE_OK) {
        m->rec_unresolved = 0;
        rec_resolve(&m->rec, &h);
        rec_mark_backfilled(m);
    }
    applier_unlock(m);
    return rc;
}

int rl_vfs_set_applied(sqlite3_file *f, uint64_t index, int timeout_ms,
                       char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    rl_shm_hdr h;
    int rc = lock_latest(f, timeout_ms, &h, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    {
        rl_applied_pos pos;
        memset(&pos, 0, sizeof pos);
        pos.index = index;
        memcpy(pos.salt, h.aSalt, 8);
        pos.frame = h.mxFrame;
        pos.cksum[0] = h.aFrameCksum[0];
        pos.cksum[1] = h.aFrameCksum[1];
        m->rec.prev = m->rec.next = pos;
        rc = rec_write(m, &m->rec);
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "%s", rl_vfs_last_error(0));
    }
    applier_unlock(m);
    return rc;
}

void rl_vfs_unadopt(const char *db_path)
{
    rl_file *p;
    pthread_mutex_lock(&mains_mu);
    for (p = mains; p; p = p->next_main) {
        if (!p->replicated || strcmp(p->path, db_path) != 0 || p->holds_write)
            continue;
        if (p->shm_shared0)
            p->sub->pMethods->xShmLock(p->sub, SLOT_WRITE, 1,
                                       SQLITE_SHM_UNLOCK | SQLITE_SHM_SHARED);
        p->shm_shared0 = 0;
        if (p->lock_fd >= 0)
            close(p->lock_fd);
        if (p->rec_fd >= 0)
            close(p->rec_fd);
        p->lock_fd = p->rec_fd = -1;
        p->replicated = 0;
        p->port = 0;
    }
    pthread_mutex_unlock(&mains_mu);
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
    ** mismatch and rebuilds, see raftd/host.c). */
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
        fault_keep_synced(m, wal, "wal");
#endif
    return rc;
}

/* ------------------------------------------ images (vfs/image.c), helper */

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
        return apply_fail(err, errlen, SQLITE_MISUSE,
                          "%s: not a replicated database of the raft VFS",
                          "applied");
    rc = shm_latest(m, &h);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: the wal-index header is not valid", m->path);
        return rc;
    }
    rc = rec_read(m, &m->rec, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    if (!pos_equal(&m->rec.prev, &m->rec.next)) {
        rec_resolve(&m->rec, &h);
        rc = rec_write(m, &m->rec);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "%s", rl_vfs_last_error(0));
            return rc;
        }
    }
    if (rec_check(m, &h, err, errlen))
        return SQLITE_CORRUPT;
    *index = m->rec.next.index;
    return SQLITE_OK;
}
