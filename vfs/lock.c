/*
** vfs/lock.c -- the lock protocol of replicated databases and the read
** gate: the shm methods of the VFS.
**
** The unix VFS implements the eight wal-index lock slots with POSIX locks
** on the -shm file. raftlite substitutes slot 0 (the WAL write lock) with
** an OFD lock on byte 0 of "<db>-raft/lock", one open file description per
** connection, so raftlite writers and appliers exclude each other across
** threads, connections and processes. Every raftlite connection also
** holds a *shared* lock on the real slot 0: a stock SQLite process can
** then neither write nor run WAL recovery while any raftlite process has
** the database open. Byte 1 of the lock file is the applier's intent
** lock: writers take it shared for a moment before byte 0, so an applier
** waiting for the write lock gets it ahead of waiting writers. Byte 2 is
** the read gate (rl_vfs_gate_close). Every read transaction begins with a
** shared read mark: there the gate, and a linearizable read's point, are
** checked.
**
** What it must never do: close() a descriptor of a database or -shm file
** (that drops the process's POSIX locks; the lock file is our own); grant
** slot 0 without the record resolved (rlv_rec_load) or while a stock
** writer may be inside a transaction; serve a read at a closed gate.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fsio.h"
#include "timing.h"

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

/* A linearizable read's point (see rl_port.read_point), refused with the
** reason as the connection's error. */
static int read_point(rl_file *p)
{
    char e[600] = "";
    uint64_t want = 0;
    int rc = rlv_port_read_point(p, &want, e, sizeof e);
    if (rc == SQLITE_OK && want) {
        /* A client process: the file must reflect want. The record's
        ** settled position (the older of its two) is what the file holds
        ** for certain; read without a lock, so a torn read is retried. */
        int waited = 0;
        for (;;) {
            if (rl_vfs_applied_settled((sqlite3_file *)p) >= want)
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
    rlv_ferr(p, SQLITE_BUSY_TIMEOUT,
             "raftlite: linearizable read on %s refused: %s (retried up to the "
             "connection's busy timeout; PRAGMA raft_consistency=local reads "
             "this node's possibly stale copy)",
             p->path, e);
    p->gate_err_seq = p->err_seq; /* retracted if a retry gets through */
    return 1;
}

/* Takes the shared lock on the real WAL write-lock slot that keeps stock
** writers and stock recovery out, if this connection does not hold it yet
** (a stock writer in the middle of a transaction makes it fail for now;
** the next shm call tries again). */
void rlv_hold_shared0(rl_file *p)
{
    if (!p->shm_shared0 &&
        p->sub->pMethods->xShmLock(p->sub, SLOT_WRITE, 1,
                                   SQLITE_SHM_LOCK | SQLITE_SHM_SHARED) ==
            SQLITE_OK)
        p->shm_shared0 = 1;
}

int rlv_shm_map(sqlite3_file *f, int region, int size, int extend,
                void volatile **pp)
{
    rl_file *p = (rl_file *)f;
    int rc = p->sub->pMethods->xShmMap(p->sub, region, size, extend, pp);
    if (rc == SQLITE_OK && p->kind == KIND_MAIN)
        p->shm_mapped = 1;
    if (rc == SQLITE_OK && p->kind == KIND_MAIN && p->replicated) {
        rlv_hold_shared0(p);
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
    rlv_ferr(p, SQLITE_BUSY_TIMEOUT,
             "raftlite: %s does not serve reads yet: %s (reads wait "
             "for it up to the connection's busy timeout)",
             p->path, got > 0 ? why : "its node is starting");
    p->gate_err_seq = p->err_seq; /* retracted if the wait ends in a read */
    return 1;
}

int rl_vfs_gate_close(sqlite3_file *f, const char *why, char *err,
                      size_t errlen)
{
    rl_file *p = rlv_main_file(f);
    char path[4096], tmp[4200];
    int fd, e;
    size_t n = strlen(why);
    if (!p || p->lock_fd < 0)
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "not a replicated database file");
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
    rl_file *p = rlv_main_file(f);
    if (p && p->lock_fd >= 0)
        ofd_lock(p->lock_fd, F_UNLCK, LOCK_BYTE_GATE);
}

int rlv_shm_lock(sqlite3_file *f, int ofst, int n, int flags)
{
    rl_file *p = (rl_file *)f;
    int rc = SQLITE_OK;
    if (p->kind != KIND_MAIN || !p->replicated)
        return p->sub->pMethods->xShmLock(p->sub, ofst, n, flags);

    if (p->shm_mapped)
        rlv_hold_shared0(p);

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
                rc = rlv_rec_load(p);
                if (rc == SQLITE_OK && !p->rec_unresolved)
                    rc = rlv_port_begin(p);
                if (rc != SQLITE_OK)
                    writer_unlock(p);
            }
            if (rc != SQLITE_OK)
                return rc;
            rlv_capture_reset(&p->cap);
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
            rlv_capture_reset(&p->cap);
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

void rlv_shm_barrier(sqlite3_file *f)
{
    rl_file *p = (rl_file *)f;
    p->sub->pMethods->xShmBarrier(p->sub);
}

int rlv_shm_unmap(sqlite3_file *f, int delete_flag)
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

int rl_vfs_writer_active(sqlite3_file *f)
{
    rl_file *m = (rl_file *)f;
    struct flock fl;
    if (!rl_vfs_is_replicated(f) || m->lock_fd < 0)
        return 0;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = LOCK_BYTE_WRITE;
    fl.l_len = 1;
    if (fcntl(m->lock_fd, F_OFD_GETLK, &fl) != 0)
        return 0;
    return fl.l_type != F_UNLCK;
}

int rl_vfs_lock_write(sqlite3_file *f, int timeout_ms, char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    int rc, waited;
    if (!rl_vfs_is_replicated(f))
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "lock: not a replicated database of the raft VFS");
    if (m->holds_write)
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "%s: the connection is inside a write transaction",
                       m->path);
    if (!m->shm_mapped)
        return rl_fail(err, errlen, SQLITE_MISUSE,
                       "%s: the connection has not read the database yet "
                       "(its wal-index is not open): read once first",
                       m->path);
    for (waited = 0; !m->shm_shared0; waited++) {
        rlv_hold_shared0(m);
        if (m->shm_shared0)
            break;
        if (waited >= timeout_ms)
            return rl_fail(err, errlen, SQLITE_BUSY,
                           "%s: a process without raftlite holds the WAL "
                           "write lock",
                           m->path);
        rl_sleep_ms(1);
    }
    rc = applier_lock(m, timeout_ms);
    if (rc != SQLITE_OK)
        return rl_fail(err, errlen, rc,
                       "%s: the write lock was not free in time (a "
                       "transaction left open blocks replication)",
                       m->path);
    return SQLITE_OK;
}

void rl_vfs_unlock_write(sqlite3_file *f)
{
    applier_unlock((rl_file *)f);
}
