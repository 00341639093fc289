/*
** vfs/file.c -- the file object of the VFS seen from below the shim: which
** sqlite3_file is a main file of ours, its page size, its WAL, and the
** accessors of vfs.h that answer the same questions for other rooms.
**
** The base of vfs/: every other file of the room may call it, and it
** calls none of them (a file is ours when its methods are vfs.c's table,
** rlv_io_methods, compared by address only). What it must never do:
** change a file's state; take a lock; close() a descriptor of a database
** or -shm file (another descriptor's close would drop this process's
** POSIX locks).
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdint.h>
#include <stdlib.h>

#include "fault.h"

rl_file *rlv_main_file(sqlite3_file *f)
{
    if (!f || f->pMethods != &rlv_io_methods ||
        ((rl_file *)f)->kind != KIND_MAIN)
        return NULL;
    return (rl_file *)f;
}

/* Page size of the database file from its header (0 if it has none). */
uint32_t rlv_file_page_size(rl_file *p)
{
    uint8_t b[2];
    uint32_t v;
    if (p->sub->pMethods->xRead(p->sub, b, 2, 16) != SQLITE_OK)
        return 0;
    v = ((uint32_t)b[0] << 8) | b[1];
    return v == 1 ? 65536 : v;
}

int rl_vfs_is_replicated(sqlite3_file *f)
{
    return f && f->pMethods == &rlv_io_methods &&
           ((rl_file *)f)->kind == KIND_MAIN && ((rl_file *)f)->replicated;
}

const char *rl_vfs_path(sqlite3_file *f)
{
    return rl_vfs_is_replicated(f) ? ((rl_file *)f)->path : 0;
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

#ifdef RL_FAULTS
/* Fault builds only (fault.h): a copy of a file just synced, read through
** its own sqlite3_file (another descriptor's close() would drop this
** process's POSIX locks on it). */
void rlv_fault_keep_synced(rl_file *m, sqlite3_file *sub, const char *name)
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
