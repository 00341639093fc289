/*
** vfs/vfs.h -- interface of the replicating VFS.
**
** The VFS "raft" wraps "unix". A database is *replicated* when the
** directory "<db>-raft/" exists beside it when the database is opened;
** every other file passes straight through. For a replicated database the
** VFS
**   - captures each committed write transaction as one rl_txn (final page
**     images, page size, database size) and hands it to the database's
**     replicator port at the commit frame, before the frame reaches disk;
**   - applies rl_txn records it is given to the WAL and wal-index
**     (rl_vfs_apply), so every process, stock sqlite3 included, sees them;
**   - refuses what would fork the replica behind the port's back: rollback
**     journals, locking_mode=EXCLUSIVE, page size changes, WAL writes
**     without the write lock, main-file writes outside a checkpoint, and
**     (while any raftlite process has the file open) stock writers.
**
** This module knows SQLite files and nothing of Raft.
*/
#ifndef RL_VFS_H
#define RL_VFS_H

#include <stddef.h>
#include <stdint.h>

#include "txn.h"

struct sqlite3_file;

/* Extended result codes of raftlite (documented in README). A VFS cannot
** set SQLite's error text, so the shell prints "disk I/O error" for all of
** them; rl_vfs_last_error() and raft_last_error() say what happened. */
#define RL_IOERR_REFUSED   (10 | (200 << 8)) /* replicator refused commit */
#define RL_IOERR_GUARD     (10 | (203 << 8)) /* write a replica must refuse */

/* A replicator port: where committed transactions go. commit() is called
** on the writer's thread while it holds the database write lock; it
** blocks until the transaction is durable in the replication log and
** applied (or definitely refused) and returns SQLITE_OK to let the commit
** frame reach the file, or an SQLite error code with a message in err.
** begin() (optional) runs when a connection takes the write lock and may
** answer SQLITE_BUSY to make the writer retry later. */
typedef struct rl_port {
    void *ctx;
    int (*begin)(void *ctx, const char *db_path);
    int (*commit)(void *ctx, const char *db_path, const rl_txn *txn, char *err,
                  size_t errlen);
} rl_port;

/* Chooses the port of a replicated database when it is opened (NULL: no
** node for it in this process; its writes are refused). */
typedef const rl_port *(*rl_port_resolver)(const char *db_path);

/* Registers VFS "raft" over "unix" (as the default VFS when make_default).
** Idempotent. */
int rl_vfs_register(int make_default, rl_port_resolver resolver);

/* Whether f (from SQLITE_FCNTL_FILE_POINTER) is a replicated main
** database file of this VFS. */
int rl_vfs_is_replicated(struct sqlite3_file *f);
const char *rl_vfs_path(struct sqlite3_file *f);

/* Appends txn to the WAL of the database whose main file is f (an open
** connection's, from SQLITE_FCNTL_FILE_POINTER, with its WAL open: the
** connection has read once) and publishes it in the wal-index, under the
** database write lock, taken ahead of waiting writers; waits at most
** timeout_ms for it. A malformed record or one that does not fit the
** database is refused with SQLITE_ERROR and a message, touching nothing.
** *frames receives the number of frames appended. */
int rl_vfs_apply(struct sqlite3_file *f, const rl_txn *txn, int timeout_ms,
                 uint32_t *frames, char *err, size_t errlen);

/* Counters of what capture saw, process-wide; tests use them to prove a
** case was exercised (a spill overwritten in place, padding...). */
typedef struct rl_vfs_stats {
    uint64_t txns;            /* records handed to a port */
    uint64_t frames;          /* frame headers written by SQLite */
    uint64_t page_overwrites; /* page images rewritten in place */
    uint64_t after_commit;    /* writes after the commit frame */
    uint64_t refused;         /* commits the port refused */
    uint64_t rolled_back;     /* transactions ended with frames, no commit */
} rl_vfs_stats;
void rl_vfs_get_stats(rl_vfs_stats *out);

/* The last raftlite error on this thread (empty string if none) and its
** extended code; cleared by rl_vfs_clear_error(). */
const char *rl_vfs_last_error(int *code);
void rl_vfs_clear_error(void);
void rl_vfs_set_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* RL_VFS_H */
