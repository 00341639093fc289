/*
** tests/unit/lib/vfsdb.h -- the database helpers of the unit tests that
** drive the raft VFS through SQLite (test_image, test_image_fetch): a port
** that numbers commits (no Raft), the scratch directory, run a statement
** that must succeed, open through "raft", make a database replicated, read
** one integer.
**
** Header-only, after lib/check.h (a failure is a CHECK) and vfs.h. Test
** code only; nothing under raftd/, vfs/ or ext/ may include it.
*/
#ifndef RL_TEST_VFSDB_H
#define RL_TEST_VFSDB_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

/* The port of every replicated database (resolver): each commit takes the
** next index (commits counts them), under the database write lock. */
static uint64_t next_index __attribute__((unused));
static unsigned commits __attribute__((unused));

static int port_commit(void *ctx, const char *db_path, const rl_txn *txn,
                       rl_commit_info *ci, char *err, size_t errlen)
{
    (void)ctx;
    (void)db_path;
    (void)txn;
    (void)err;
    (void)errlen;
    ci->index = __atomic_add_fetch(&next_index, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&commits, 1, __ATOMIC_SEQ_CST);
    return SQLITE_OK;
}

static const rl_port test_port = {0, 0, port_commit, 0, 0};

static const rl_port *resolver(const char *db_path) __attribute__((unused));
static const rl_port *resolver(const char *db_path)
{
    (void)db_path;
    return &test_port;
}

/* The test's scratch directory, removed by cleanup() unless RL_KEEP. */
static char tmpdir[256];

static void cleanup(void) __attribute__((unused));
static void cleanup(void)
{
    char cmd[300];
    if (tmpdir[0] && !getenv("RL_KEEP")) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

static void exec_ok(sqlite3 *db, const char *sql) __attribute__((unused));
static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = 0;
    int rc = sqlite3_exec(db, sql, 0, 0, &msg);
    CHECK(rc == SQLITE_OK, "%s: %s (%s)", sql, msg ? msg : "",
          rl_vfs_last_error(0));
    sqlite3_free(msg);
}

/* A connection of the raft VFS to path (created if missing). */
static sqlite3 *open_raft(const char *path) __attribute__((unused));
static sqlite3 *open_raft(const char *path)
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
static void make_replicated(const char *path) __attribute__((unused));
static void make_replicated(const char *path)
{
    char dir[600];
    sqlite3 *db = open_raft(path);
    exec_ok(db, "PRAGMA journal_mode=WAL");
    sqlite3_close(db);
    snprintf(dir, sizeof dir, "%s-raft", path);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
}

/* The one integer sql answers. */
static int64_t one_int(sqlite3 *db, const char *sql) __attribute__((unused));
static int64_t one_int(sqlite3 *db, const char *sql)
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
