/*
** vfs/record_api.c -- the applied record's calls for the host (vfs.h):
** each takes the write lock as apply does (lock.c), resolves and checks
** or writes the record (record.c) and releases the lock.
**
** Above lock.c and record.c: neither calls this file. What it must never
** do: touch the record without holding the write lock, or return holding
** it.
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <string.h>

/* The prologue of the record's API calls: the write lock (as apply takes
** it) and the latest wal-index header. On an error nothing is held. */
static int lock_latest(sqlite3_file *f, int timeout_ms, rl_shm_hdr *h,
                       char *err, size_t errlen)
{
    rl_file *m = (rl_file *)f;
    int rc = rl_vfs_lock_write(f, timeout_ms, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    rc = rlv_shm_latest(m, h);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: the wal-index header is not valid", m->path);
        rl_vfs_unlock_write(f);
    }
    return rc;
}

int rl_vfs_applied(sqlite3_file *f, int timeout_ms, uint64_t *index, char *err,
                   size_t errlen)
{
    rl_shm_hdr h;
    int rc;
    *index = 0;
    rc = lock_latest(f, timeout_ms, &h, err, errlen);
    if (rc != SQLITE_OK)
        return rc;
    rc = rlv_rec_current((rl_file *)f, &h, index, err, errlen);
    rl_vfs_unlock_write(f);
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
    rc = rlv_rec_read(m, &m->rec, err, errlen);
    if (rc == SQLITE_OK) {
        m->rec_unresolved = 0;
        rlv_rec_resolve(&m->rec, &h);
        rlv_rec_mark_backfilled(m);
    }
    rl_vfs_unlock_write(f);
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
        rc = rlv_rec_write(m, &m->rec);
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "%s", rl_vfs_last_error(0));
    }
    rl_vfs_unlock_write(f);
    return rc;
}
