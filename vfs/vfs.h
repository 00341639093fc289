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

/*
** Result codes. raftlite answers with SQLite's own codes, chosen by what a
** program should do (README "Errors"): SQLITE_BUSY_SNAPSHOT for a conflict
** (retry the transaction), SQLITE_BUSY where waiting can succeed (no
** leader yet, node catching up), SQLITE_READONLY for a write this node or
** process must refuse (a follower, a client process, a guard), SQLITE_FULL
** for a full disk, and an I/O error only where the outcome is unknown or
** something broke. A VFS cannot set SQLite's error text: raft_last_error()
** (rl_vfs_last_error) says what happened and what to do.
*/
#define RL_VFS_GUARD SQLITE_READONLY /* a write a replica must refuse */
/* rl_vfs_apply's answer for an entry the file already holds (its index is
** not above the applied record's): nothing was written. An extended code
** of SQLITE_MISUSE, so that a caller decides on the code, never on the
** message. */
#define RL_VFS_APPLIED (SQLITE_MISUSE | (1 << 8))

/* What a port's commit() is told and answers. */
typedef struct rl_commit_info {
    uint64_t base;  /* in: the applied index when the write lock was taken */
    uint64_t index; /* out: the Raft index that took effect (0: no applied
                       record is written, e.g. the test mirror) */
    void *ticket;   /* out: the port's handle of this transaction, handed
                       back to end() (NULL: none) */
} rl_commit_info;

/* A replicator port: where committed transactions go. commit() is called
** on the writer's thread while it holds the database write lock; it
** blocks until the transaction is durable in the replication log (or
** definitely refused) and returns SQLITE_OK to let the commit frame reach
** the file, or an SQLite error code with a message in err. begin()
** (optional) runs when a connection takes the write lock, with the index
** the database holds, and may answer SQLITE_BUSY to make the writer retry
** later. end() (optional) runs after commit() returned OK with an index,
** once the commit frame's write returned, with the ticket that commit()
** returned: ok says whether it reached the file (if not, the entry is
** committed in the log but not in this file). It settles exactly that
** transaction and runs once per such commit.
*/
typedef struct rl_port {
    void *ctx;
    int (*begin)(void *ctx, const char *db_path, uint64_t applied);
    int (*commit)(void *ctx, const char *db_path, const rl_txn *txn,
                  rl_commit_info *ci, char *err, size_t errlen);
    void (*end)(void *ctx, const char *db_path, void *ticket, int ok);
    /* A read transaction of a connection at raft_consistency
    ** linearizable is about to take its snapshot: returns SQLITE_OK once
    ** it has an index a quorum confirmed after this call began (DESIGN 8)
    ** and either the file reflects it (*wait_index 0) or the VFS is to wait
    ** until the file's applied record reaches *wait_index (a process that
    ** does not host the node cannot watch its applier); else an error code
    ** with err (the read is refused, never served stale). NULL: such
    ** reads are refused. */
    int (*read_point)(void *ctx, const char *db_path, uint64_t *wait_index,
                      char *err, size_t errlen);
} rl_port;

/* A position in the applied record: a Raft index and where its commit
** frame is in the WAL (the fingerprint). */
typedef struct rl_applied_pos {
    uint64_t index;
    uint8_t salt[8];
    uint32_t frame;
    uint32_t cksum[2];
    uint32_t flags; /* RL_REC_*; compared by nothing, cleared by a commit */
} rl_applied_pos;
/* The WAL was emptied or restarted after this state's commit frame was
** checkpointed (SQLite does either only with every frame backfilled and
** the database file synced): an empty WAL is then expected, not lost. */
#define RL_REC_BACKFILLED 1u
typedef struct rl_applied_rec {
    rl_applied_pos prev, next; /* equal when settled */
} rl_applied_rec;

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

/* The paths of the replicated databases this process has open, each once:
** a malloc'd array of *n malloc'd strings (free with rl_vfs_paths_free),
** or NULL when there are none. Copies: they carry no URI parameters. */
char **rl_vfs_replicated_paths(int *n);
void rl_vfs_paths_free(char **paths, int n);

/* Appends txn to the WAL of the database whose main file is f (an open
** connection's, from SQLITE_FCNTL_FILE_POINTER, with its WAL open: the
** connection has read once) and publishes it in the wal-index, under the
** database write lock, taken ahead of waiting writers; waits at most
** timeout_ms for it. A malformed record or one that does not fit the
** database is refused with SQLITE_ERROR and a message, touching nothing.
** index (nonzero) is recorded in "<db>-raft/applied" with the commit
** frame's position; 0 writes no record (the test mirror). *frames
** receives the number of frames appended. An index at or below the one
** the file's record holds is already in the file: RL_VFS_APPLIED, nothing
** written (a local writer wrote it, or an earlier attempt did). */
int rl_vfs_apply(struct sqlite3_file *f, const rl_txn *txn, uint64_t index,
                 int timeout_ms, uint32_t *frames, char *err, size_t errlen);

/*
** A transaction whose pages come one at a time, for an apply that must not
** hold them all in memory (an image install: a whole database). next()
** gives the following page: *pgno and *data (page_size bytes, valid until
** the next call); it returns SQLITE_OK, or an error code with err filled,
** which abandons the apply with nothing published. Pages must come in
** ascending order without duplicates, each <= db_pages, n_pages of them
** (the apply refuses any other sequence). next() is called for the last
** page only after every earlier frame is written, and that page's frame,
** the commit frame, is written after it returns: a source that checks a
** trailer (a checksum over all pages) checks it then, so that a bad one
** never commits.
*/
typedef struct rl_page_stream {
    uint32_t page_size;
    uint32_t db_pages; /* database size in pages after commit */
    uint32_t n_pages;  /* pages next() gives, >= 1 */
    int (*next)(void *arg, uint32_t *pgno, const uint8_t **data, char *err,
                size_t errlen);
    void *arg;
} rl_page_stream;

/* rl_vfs_apply of a page stream: same locks, checks, record and publish;
** memory stays at one batch of frames whatever the transaction's size. */
int rl_vfs_apply_stream(struct sqlite3_file *f, const rl_page_stream *s,
                        uint64_t index, int timeout_ms, uint32_t *frames,
                        char *err, size_t errlen);

/* The Raft index the database file reflects, from "<db>-raft/applied",
** resolved and checked against the WAL under the write lock (taken ahead
** of writers, at most timeout_ms). SQLITE_CORRUPT with a message when the
** record is damaged or does not describe the WAL (fingerprint mismatch);
** SQLITE_BUSY_RECOVERY when the wal-index needs recovery (read once on
** the connection, then retry). */
int rl_vfs_applied(struct sqlite3_file *f, int timeout_ms, uint64_t *index,
                   char *err, size_t errlen);

/* The index the file holds for certain, read without any lock: the older
** of the record's two states (what a commit in progress cannot take back).
** For a wait that must not compete with a writer (the applier waiting for
** a client process to write its own entry); 0 if the record cannot be read
** (absent, torn by a concurrent write, damaged): ask again, or lock. */
uint64_t rl_vfs_applied_settled(struct sqlite3_file *f);

/* The same for a caller that holds the write lock (rl_vfs_lock_write):
** neither takes nor releases it (vfs/image.c pairs an image with its index
** this way). */
int rl_vfs_applied_locked(struct sqlite3_file *f, uint64_t *index, char *err,
                          size_t errlen);

/* Records that the database file, as it is, reflects Raft index `index`
** (an initial image that is already in place). */
int rl_vfs_set_applied(struct sqlite3_file *f, uint64_t index, int timeout_ms,
                       char *err, size_t errlen);

/* Declares that the database file alone holds the applied record's index
** (its WAL was checkpointed and removed by SQLite: a stock process closing
** the database last), so that an empty WAL is not taken for a lost one. */
int rl_vfs_mark_backfilled(struct sqlite3_file *f, int timeout_ms, char *err,
                           size_t errlen);

/* Makes the WAL and the applied record durable (fsync): what the file
** reflects survives an OS crash. */
int rl_vfs_sync(struct sqlite3_file *f);

/* Makes every open connection of this process to db_path replicated, as if
** "<db>-raft/" had existed when they opened it (the directory must exist
** now). Fails if one of them is inside a write transaction. */
int rl_vfs_adopt(const char *db_path, char *err, size_t errlen);
/* Undoes rl_vfs_adopt for a setup that failed (connections outside a
** write transaction). */
void rl_vfs_unadopt(const char *db_path);

/* Takes / releases the database write lock ahead of writers, as apply
** does: while held, no commit is in progress, the wal-index header is the
** latest and the applied record is settled. */
int rl_vfs_lock_write(struct sqlite3_file *f, int timeout_ms, char *err,
                      size_t errlen);
void rl_vfs_unlock_write(struct sqlite3_file *f);
/* 1 while a writer of another open file description (another connection
** or process) holds the write lock of f's database; 0 when none does (or
** it cannot be asked). Takes no lock: a look, for waits that must not
** compete with the writer. */
int rl_vfs_writer_active(struct sqlite3_file *f);

/*
** The read gate (DESIGN 6 and 8: a node must not serve a file it cannot
** vouch for). While the host of a database holds the gate closed, every
** read transaction that another connection (of any process) begins on it
** through this VFS gets SQLITE_BUSY_TIMEOUT, a busy code, so SQLite calls
** the connection's busy handler and retries: reads wait for the gate as
** they wait for a lock, and fail with "database is locked" after the
** connection's busy timeout, with `why` in rl_vfs_last_error(). The gate is
** an OFD lock on byte 2 of "<db>-raft/lock" taken through f's description:
** f's own connection (the host's applier) is never gated by it, and the
** gate opens by itself if the host process dies. `why` is kept in
** "<db>-raft/gate" for readers in other processes. Stock SQLite processes
** (without the extension) are not gated.
*/
int rl_vfs_gate_close(struct sqlite3_file *f, const char *why, char *err,
                      size_t errlen);
void rl_vfs_gate_open(struct sqlite3_file *f);

/* Current wal-index header: SQLITE_OK, SQLITE_BUSY_RECOVERY or an error. */
struct rl_shm_hdr;
int rl_vfs_shm_header(struct sqlite3_file *f, struct rl_shm_hdr *h);
/* wal-index region i (32 KiB, see walfmt.h rl_shm_find); NULL on error. */
volatile void *rl_vfs_shm_region(struct sqlite3_file *f, int i);
/* The unix files under f: the database file, and the connection's open
** WAL (NULL until the connection has read once). For reading only. */
struct sqlite3_file *rl_vfs_db_file(struct sqlite3_file *f);
struct sqlite3_file *rl_vfs_wal_file(struct sqlite3_file *f);

/* PRAGMA hook: called for every PRAGMA whose name starts with "raft_" on a
** main database file of this VFS (replicated or not), before SQLite's own
** handling. Returns SQLITE_OK with *result set to sqlite3_mprintf'd text
** (one row, one column), an error code with *result the message, or
** SQLITE_NOTFOUND. */
typedef int (*rl_pragma_fn)(const char *db_path, int replicated,
                            const char *name, const char *arg, char **result);
void rl_vfs_set_pragma_handler(rl_pragma_fn fn);

/* Counters of what capture saw, process-wide; tests use them to prove a
** case was exercised (a spill overwritten in place, padding...). */
typedef struct rl_vfs_stats {
    uint64_t txns;            /* records handed to a port */
    uint64_t frames;          /* frame headers written by SQLite */
    uint64_t page_overwrites; /* page images rewritten in place */
    uint64_t after_commit;    /* writes after the commit frame */
    uint64_t refused;         /* commits the port refused */
    uint64_t rolled_back;     /* transactions ended with frames, no commit */
    uint64_t gated;           /* read transactions held at a closed gate */
} rl_vfs_stats;
void rl_vfs_get_stats(rl_vfs_stats *out);

/* The last raftlite error on this thread (empty string if none) and its
** extended code; cleared by rl_vfs_clear_error(). */
const char *rl_vfs_last_error(int *code);

/* The last refusal about main file f (a file of this VFS) and its number
** in the process-wide error sequence (*seq), or NULL (*seq 0) if none.
** The text lives until the file's next error or its close. Called by the
** connection that owns f, on its thread. */
const char *rl_vfs_file_error(struct sqlite3_file *f, uint64_t *seq);

/* This thread's last error if it concerns no open file (its file was
** closed, or it was about none), with its number in *seq; else NULL (*seq
** 0). A connection takes it as its own when it is newer than what it has
** seen: the one case where another connection's error on the same thread
** could be taken (documented with raft_last_error). */
const char *rl_vfs_orphan_error(uint64_t *seq);

/* The connection whose statement ended with the orphan error numbered seq
** took it: no later statement (of any connection) takes it again. */
void rl_vfs_orphan_taken(uint64_t seq);

/* A new number of the error sequence, for an error kept elsewhere (the
** raft_* functions' errors, kept on their connection). */
uint64_t rl_vfs_error_number(void);

/* The write state of main file f: -1 not a replicated file of this VFS;
** 0 no write lock held; 1 write lock held and no frame written yet (after
** sqlite3_db_cacheflush: the transaction changed no page); 2 frames
** written by the transaction in progress. */
int rl_vfs_write_state(struct sqlite3_file *f);

/* The number the next error will exceed: errors numbered above a value
** read here happened after it. */
uint64_t rl_vfs_error_seq(void);
void rl_vfs_clear_error(void);
void rl_vfs_set_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* RL_VFS_H */
