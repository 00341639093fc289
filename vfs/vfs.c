/*
** vfs/vfs.c -- the replicating VFS "raft", a shim over "unix": xOpen, the
** methods that forward to the unix file, and the guards that refuse what
** would fork a replica.
**
** What it is for: see vfs.h. A main database file is replicated when
** "<db>-raft/" exists beside it at open (or rl_vfs_adopt makes it so);
** its WAL is linked to it, and a rollback journal is refused. Writes to
** the main file outside a checkpoint, truncations without the locks,
** locking_mode=EXCLUSIVE, leaving WAL mode and page size changes are
** refused here; the mechanisms behind the shim live in their own files
** (vfs_int.h lists them).
**
** What it must never do: know anything of Raft; close() a descriptor of a
** database or -shm file (that drops the process's POSIX locks: all file
** access goes through the unix VFS's own handles); call the port except
** through port.c.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"

static sqlite3_vfs *unix_vfs;
static rl_port_resolver port_resolver;

/* Every open main database file of this VFS, for rl_vfs_adopt. */
static pthread_mutex_t mains_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_file *mains;
static sqlite3_vfs rl_vfs_obj;

/* A refusal of misuse: the error on file f, and its code for SQLite. */
static int guard(rl_file *f, int code, const char *fmt, const char *path)
{
    rlv_ferr(f, code, fmt, path);
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
        rlv_capture_reset(&p->cap);
        if (p->lock_fd >= 0)
            close(p->lock_fd); /* our own lock file: no SQLite locks on it */
        p->lock_fd = -1;
        if (p->rec_fd >= 0)
            close(p->rec_fd);
        p->rec_fd = -1;
        rlv_error_forget(p);
    }
    rc = p->sub->pMethods->xClose(p->sub);
    return rc;
}

static int rl_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
    rl_file *p = (rl_file *)f;
    return p->sub->pMethods->xRead(p->sub, buf, amt, off);
}

static int rl_write(sqlite3_file *f, const void *buf, int amt,
                    sqlite3_int64 off)
{
    rl_file *p = (rl_file *)f;
    if (p->kind == KIND_WAL && p->main && p->main->replicated)
        return rlv_wal_write(p, buf, amt, off);
    if (p->kind == KIND_MAIN && p->replicated && !p->holds_ckpt)
        return guard(p, RL_VFS_GUARD,
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
        return guard(p->main, RL_VFS_GUARD,
                     "raftlite: refused to truncate the WAL of replicated "
                     "database %s without the write lock",
                     p->main->path);
    if (p->kind == KIND_MAIN && p->replicated && !p->holds_ckpt)
        return guard(p, RL_VFS_GUARD,
                     "raftlite: refused to truncate replicated database %s "
                     "outside a checkpoint",
                     p->path);
    if (p->kind == KIND_WAL && size == 0 && p->main && p->main->replicated &&
        p->main->holds_write)
        rlv_rec_mark_backfilled(p->main); /* wal_checkpoint(TRUNCATE) */
    return p->sub->pMethods->xTruncate(p->sub, size);
}

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
        rlv_fault_keep_synced(p->main, p->sub, "wal");
    if (rc == SQLITE_OK && p->kind == KIND_MAIN && p->replicated)
        rlv_fault_keep_synced(p, p->sub, "db");
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
            return guard(p, RL_VFS_GUARD,
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

static int pragma_refuse(char **a, const char *fmt, rl_file *p, const char *val)
{
    a[0] = sqlite3_mprintf(fmt, p->path, val);
    rlv_ferr(p, SQLITE_ERROR, "%s", a[0] ? a[0] : "refused");
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
        uint32_t cur = rlv_file_page_size(p);
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
            rlv_ferr(p, SQLITE_ERROR, "%s", a[0] ? a[0] : "bad value");
            return SQLITE_ERROR;
        }
    }
    a[0] = sqlite3_mprintf("%s", p->linearizable ? "linearizable" : "local");
    return SQLITE_OK;
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

const sqlite3_io_methods rlv_io_methods = {
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
    rlv_shm_map,
    rlv_shm_lock,
    rlv_shm_barrier,
    rlv_shm_unmap,
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
    if (!mf || mf->pMethods != &rlv_io_methods)
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
        rlv_ferr(p, SQLITE_CANTOPEN, "raftlite: cannot open %s: %s",
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
            rlv_ferr(m, SQLITE_CANTOPEN,
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
    p->base.pMethods = &rlv_io_methods;
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
            rlv_hold_shared0(p);
    }
    pthread_mutex_unlock(&mains_mu);
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
