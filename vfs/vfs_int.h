/*
** vfs/vfs_int.h -- what the files of the replicating VFS share: the file
** object (rl_file), the lock slots and bytes, and the few functions one
** file of vfs/ calls in another.
**
** Included by the .c files of vfs/ only: nothing outside vfs/ may see an
*rl_file (the
** module's interface is vfs.h). Everything declared here is hidden from
** the extension's exported symbols. What it must never do: grow into a
** second interface; a function only one file uses stays static there.
**
** The files, one mechanism each, from the top down (a file calls only
** files below it; tests/tree/test_no_circles.py checks no two call each
** other):
**   vfs.c      the shim: xOpen, the forwarding methods, the guards that
**              refuse misuse, PRAGMAs, the list of open main files
**   apply.c    the WAL writer of replicated transactions (rl_vfs_apply)
**   record_api.c the applied record's calls that take the write lock
**              (rl_vfs_applied, rl_vfs_set_applied, ...)
**   lock.c     the lock protocol (slot 0 on "<db>-raft/lock", the
**              applier's intent) and the read gate: the shm methods
**   capture.c  a committing transaction's WAL frames -> one rl_txn
**   port.c     the only calls of the replicator port (rl_port)
**   record.c   the applied record "<db>-raft/applied" and its checks
**   error.c    the error channel (raft_last_error's source)
**   file.c     the base: which file is ours, its page size and WAL, the
**              accessors of vfs.h
*/
#ifndef RL_VFS_INT_H
#define RL_VFS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "errbuf.h"
#include "sqlite3ext.h"
#include "vfs.h"
#include "walfmt.h"

#pragma GCC visibility push(hidden)

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
    int lock_fd;              /* "<db>-raft/lock", -1 if none */
    int rec_fd;               /* "<db>-raft/applied", -1 if none */
    rl_file *next_main;       /* KIND_MAIN: list of open main files (vfs.c) */
    uint64_t applied_at_lock; /* applied index when the write lock was taken */
    rl_applied_rec rec;       /* the record as resolved under the write lock */
    uint64_t pending;   /* index the commit in progress records (0 none) */
    void *ticket;       /* its port ticket (rl_commit_info), for end() */
    int rec_unresolved; /* lock taken for WAL recovery with an intent left
                           unresolved (see rlv_rec_load) */
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

/* vfs.c: the methods of every file this VFS opens (a file is ours when
** its pMethods is this table). */
extern const sqlite3_io_methods rlv_io_methods;

/* file.c: f as a main database file of this VFS (replicated or not), or
** NULL when it is none. */
rl_file *rlv_main_file(sqlite3_file *f);
/* file.c: the page size in the database file's header (0 if none). */
uint32_t rlv_file_page_size(rl_file *p);
#ifdef RL_FAULTS
/* file.c: fault builds only: a copy of a file just synced (fault.h). */
void rlv_fault_keep_synced(rl_file *m, sqlite3_file *sub, const char *name);
#endif

/* error.c: an error about file f (a main file, or the WAL of one), kept on
** this thread and on its main file; and forgetting f when it closes. */
void rlv_ferr(rl_file *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rlv_error_forget(rl_file *m);

/* capture.c: the counters (vfs.h rl_vfs_stats). */
extern rl_vfs_stats rlv_stats; /* updated with __atomic builtins */
#define STAT_ADD(field, n)                                                     \
    __atomic_add_fetch(&rlv_stats.field, (n), __ATOMIC_RELAXED)

/* lock.c: the shm methods (the lock protocol and the read gate), and the
** shared lock on the real slot 0 that keeps stock writers out. */
int rlv_shm_map(sqlite3_file *f, int region, int size, int extend,
                void volatile **pp);
int rlv_shm_lock(sqlite3_file *f, int ofst, int n, int flags);
void rlv_shm_barrier(sqlite3_file *f);
int rlv_shm_unmap(sqlite3_file *f, int delete_flag);
void rlv_hold_shared0(rl_file *p);

/* capture.c: a write to the WAL of a replicated database, and dropping
** what the transaction in progress captured. */
int rlv_wal_write(rl_file *w, const void *buf, int amt, sqlite3_int64 off);
void rlv_capture_reset(rl_capture *c);

/* port.c: each call of the replicator port, in one place. */
int rlv_port_begin(rl_file *m);
int rlv_port_commit(rl_file *m, const rl_txn *t, rl_commit_info *ci, char *err,
                    size_t errlen);
void rlv_port_end(rl_file *m, void *ticket, int ok);
int rlv_port_read_point(rl_file *m, uint64_t *wait_index, char *err,
                        size_t errlen);

/* record.c: the applied record (see there), and the wal-index. */
volatile void *rlv_shm_region(void *arg, int i);
int rlv_shm_latest(rl_file *m, rl_shm_hdr *h);
int rlv_rec_read(rl_file *m, rl_applied_rec *r, char *err, size_t errlen);
void rlv_rec_resolve(rl_applied_rec *r, const rl_shm_hdr *h);
int rlv_rec_load(rl_file *m);
int rlv_rec_intent(rl_file *m, uint64_t index, const uint8_t salt[8],
                   uint32_t frame, const uint32_t cksum[2]);
void rlv_rec_mark_backfilled(rl_file *m);
int rlv_rec_settle(rl_file *m);
/* The record as written to "<db>-raft/applied" (an I/O error set with
** rlv_ferr), and the record resolved against h and checked against the
** WAL and database file: its index (both with the write lock held). */
int rlv_rec_write(rl_file *m, const rl_applied_rec *r);
int rlv_rec_current(rl_file *m, const rl_shm_hdr *h, uint64_t *index, char *err,
                    size_t errlen);

#pragma GCC visibility pop

#endif /* RL_VFS_INT_H */
