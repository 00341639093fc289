/*
** tests/unit/lib/vfsdb.h -- databases of the raft VFS for unit tests: open
** one, make one replicated, run SQL that must succeed, read one integer.
** Every failure ends the test through CHECK (check.h), with SQLite's
** message and the VFS's (rl_vfs_last_error).
**
** rl_db_setup(name) first: a scratch directory (removed at exit unless
** RL_KEEP is set) and the VFS registered with a port whose commit accepts
** every transaction and hands out increasing indexes (rl_db_next_index),
** so local writes pass and the applied record advances as under a node.
**
** Test code only; nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_VFSDB_H
#define RL_TEST_VFSDB_H

#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "vfs.h"

/* The last index the test port handed out (atomic: writers may run on
** several threads). */
static uint64_t rl_db_next_index __attribute__((unused));
/* The scratch directory of rl_db_setup. */
static char rl_db_dir[256] __attribute__((unused));

static inline int rl_db_port_commit(void *ctx, const char *db_path,
                                    const rl_txn *txn, rl_commit_info *ci,
                                    char *err, size_t errlen)
{
    (void)ctx;
    (void)db_path;
    (void)txn;
    (void)err;
    (void)errlen;
    ci->index = __atomic_add_fetch(&rl_db_next_index, 1, __ATOMIC_SEQ_CST);
    return SQLITE_OK;
}

static inline const rl_port *rl_db_resolver(const char *db_path)
{
    static const rl_port port = {0, 0, rl_db_port_commit, 0, 0};
    (void)db_path;
    return &port;
}

static inline void rl_db_cleanup(void)
{
    char cmd[300];
    if (rl_db_dir[0] && !getenv("RL_KEEP")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", rl_db_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", rl_db_dir);
    }
}

/* A scratch directory "$TMPDIR/<name>.XXXXXX" in rl_db_dir, removed at
** a normal exit (a failing CHECK leaves it for a look), and the VFS "raft"
** with the test port. */
static inline void rl_db_setup(const char *name)
{
    const char *base = getenv("TMPDIR");
    snprintf(rl_db_dir, sizeof rl_db_dir, "%s/%s.XXXXXX", base ? base : "/tmp",
             name);
    CHECK(mkdtemp(rl_db_dir), "mkdtemp: %s", strerror(errno));
    atexit(rl_db_cleanup);
    CHECK(rl_vfs_register(0, rl_db_resolver) == SQLITE_OK, "register");
}

static inline void rl_db_exec(sqlite3 *db, const char *sql)
{
    char *msg = 0;
    int rc = sqlite3_exec(db, sql, 0, 0, &msg);
    CHECK(rc == SQLITE_OK, "%s: %s (%s)", sql, msg ? msg : "",
          rl_vfs_last_error(0));
    sqlite3_free(msg);
}

/* A connection of the raft VFS, created if need be, waiting up to 10 s
** on locks. */
static inline sqlite3 *rl_db_open_raft(const char *path)
{
    sqlite3 *db = 0;
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "raft");
    CHECK(rc == SQLITE_OK, "open %s: %s", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/* A new replicated database: WAL mode set while it is plain, then
** "<db>-raft/" made (as raft_bootstrap does). */
static inline void rl_db_make_replicated(const char *path)
{
    char dir[600];
    sqlite3 *db = rl_db_open_raft(path);
    rl_db_exec(db, "PRAGMA journal_mode=WAL");
    sqlite3_close(db);
    snprintf(dir, sizeof dir, "%s-raft", path);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
}

/* The first column of the first row of sql, which must have one. */
static inline int64_t rl_db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &st, 0) == SQLITE_OK, "%s: %s", sql,
          sqlite3_errmsg(db));
    CHECK(sqlite3_step(st) == SQLITE_ROW, "%s: no row: %s", sql,
          sqlite3_errmsg(db));
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

#endif
