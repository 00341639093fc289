/*
** ext/conn.c -- what the extension keeps per connection: raft_last_error()
** and the commit hooks that refuse what a replicated database must not
** commit (a transaction over two replicated files, an unchanged write
** transaction whose node cannot prove it leads, a database opened before
** .load).
**
** It must never call up into ext.c or sql.c (they call it), nor keep a
** connection's state past its close (conn_free runs when the db closes).
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "conn.h"
#include "host.h"
#include "mirror.h"
#include "vfs.h"

static int conn_commit(void *arg);
static void conn_rollback(void *arg);
static void conn_update(void *arg, int op, const char *db, const char *tbl,
                        sqlite3_int64 rowid);

/*
** raft_last_error(), per connection. A VFS cannot set SQLite's error text,
** so the shell prints "disk I/O error" or "database is locked"; this says
** what really happened and what to do. It describes the connection's last
** failed statement and is empty after a statement that succeeded.
**
** Errors reach a connection two ways: the VFS keeps the last refusal on
** each main file (rl_vfs_file_error), and the raft_* functions report
** theirs with rl_conn_error. Every error carries a number of one
** process-wide sequence; a connection remembers up to which number it has
** accounted (seen). When a statement ends (SQLITE_TRACE_PROFILE fires for
** every statement that ran, failed or not), the newest error above `seen`
** becomes the connection's error, or it is cleared if there is none.
** Invariant relied on: the files of a connection and its raft_* calls are
** used only by the thread running that connection's statement.
*/
typedef struct rl_conn rl_conn;
struct rl_conn {
    sqlite3 *db;
    char *err;     /* the last failed statement's detail, NULL if none */
    uint64_t seen; /* errors numbered up to this are accounted for */
    char *fn_err;  /* the last raft_* function error, and its number */
    uint64_t fn_seq;
    int rows;     /* a row changed since the last commit/rollback (the
                     update hook; total_changes counts an autocommit
                     statement's rows only after its commit hook ran) */
    int bypassed; /* replicated main opened before .load: refuse commits */
    /* Schema names ("main", "aux"...) whose rows the transaction changed
    ** (the update hook), up to RL_CONN_DBS; ndbs counts them all. */
    char dbs[4][64];
    int ndbs;
    rl_conn *next; /* conns list (conns_mu) */
};

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_conn *conns;

void rl_conn_error(sqlite3 *db, const char *msg)
{
    rl_conn *c;
    pthread_mutex_lock(&conns_mu);
    for (c = conns; c && c->db != db; c = c->next) {
    }
    pthread_mutex_unlock(&conns_mu);
    if (!c)
        return;
    sqlite3_free(c->fn_err);
    c->fn_err = sqlite3_mprintf("%s", msg);
    /* Numbered like the VFS's errors, so the newest wins. */
    c->fn_seq = rl_vfs_error_number();
}

/* The newest error of c numbered above c->seen, or NULL; *orphan: its
** number if it is this thread's orphan error (vfs.h), else 0. */
static const char *conn_newest(rl_conn *c, uint64_t *orphan)
{
    const char *best = NULL, *name, *e;
    uint64_t best_seq = c->seen, seq;
    int i;
    if (c->fn_err && c->fn_seq > best_seq) {
        best = c->fn_err;
        best_seq = c->fn_seq;
    }
    *orphan = 0;
    if ((e = rl_vfs_orphan_error(&seq)) != NULL && seq > best_seq) {
        best = e;
        best_seq = seq;
        *orphan = seq;
    }
    for (i = 0; (name = sqlite3_db_name(c->db, i)) != NULL; i++) {
        sqlite3_file *f = NULL;
        if (sqlite3_file_control(c->db, name, SQLITE_FCNTL_FILE_POINTER, &f) !=
                SQLITE_OK ||
            !f || !f->pMethods)
            continue;
        e = rl_vfs_file_error(f, &seq);
        if (e && seq > best_seq) {
            best = e;
            best_seq = seq;
            *orphan = 0;
        }
    }
    return best;
}

static int conn_trace(unsigned type, void *ctx, void *p, void *x)
{
    rl_conn *c = ctx;
    const char *e;
    uint64_t orphan;
    (void)p;
    (void)x;
    if (type != SQLITE_TRACE_PROFILE)
        return 0;
    /* A statement ended: its errors are the connection's error. */
    e = conn_newest(c, &orphan);
    if (orphan)
        rl_vfs_orphan_taken(orphan);
    if (e) {
        char *copy = sqlite3_mprintf("%s", e);
        sqlite3_free(c->err);
        c->err = copy;
    } else {
        sqlite3_free(c->err);
        c->err = NULL;
    }
    c->seen = rl_vfs_error_seq();
    return 0;
}

static void conn_free(void *arg)
{
    rl_conn *c = arg, **pp;
    pthread_mutex_lock(&conns_mu);
    for (pp = &conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&conns_mu);
    sqlite3_free(c->err);
    sqlite3_free(c->fn_err);
    sqlite3_free(c);
}

static void last_error_func(sqlite3_context *ctx, int argc,
                            sqlite3_value **argv)
{
    rl_conn *c = sqlite3_user_data(ctx);
    /* An error since the last statement ended (a failed prepare, say)
    ** is newer than the last statement's. */
    uint64_t orphan;
    const char *e = conn_newest(c, &orphan);
    (void)argc;
    (void)argv;
    if (!e)
        e = c->err ? c->err : "";
    sqlite3_result_text(ctx, e, -1, SQLITE_TRANSIENT);
}

/* Attaches the per-connection state to db: raft_last_error(), the
** statement trace and the commit, rollback and update hooks. */
int rl_conn_attach(sqlite3 *db)
{
    int rc;
    rl_conn *c = sqlite3_malloc(sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    c->db = db;
    c->seen = rl_vfs_error_seq();
    /* The function owns c: conn_free runs when db closes. */
    rc = sqlite3_create_function_v2(db, "raft_last_error", 0, SQLITE_UTF8, c,
                                    last_error_func, 0, 0, conn_free);
    if (rc == SQLITE_OK) {
        pthread_mutex_lock(&conns_mu);
        c->next = conns;
        conns = c;
        pthread_mutex_unlock(&conns_mu);
        rc = sqlite3_trace_v2(db, SQLITE_TRACE_PROFILE, conn_trace, c);
        sqlite3_commit_hook(db, conn_commit, c);
        sqlite3_rollback_hook(db, conn_rollback, c);
        sqlite3_update_hook(db, conn_update, c);
    }
    return rc;
}

static rl_conn *conn_of(sqlite3 *db)
{
    rl_conn *c;
    pthread_mutex_lock(&conns_mu);
    for (c = conns; c && c->db != db; c = c->next) {
    }
    pthread_mutex_unlock(&conns_mu);
    return c;
}

/*
** A write transaction that changed no row was answered (rows affected,
** values read) from this node's file, and nothing of it goes through
** Raft when it changed no page either: it may commit only where the node
** proves it still leads (DESIGN 8; an old leader paused or cut off
** answered "0 rows" from stale state). A transaction whose pages did
** change without a row (DDL, say) pays the same one read index and then
** commits through Raft. 1 refuses the commit (SQLite rolls back:
** SQLITE_CONSTRAINT_COMMITHOOK) with raft_last_error() saying why.
*/
static int confirm_unchanged_txn(rl_conn *c)
{
    const char *name;
    int i;
    for (i = 0; (name = sqlite3_db_name(c->db, i)) != NULL; i++) {
        sqlite3_file *f = NULL;
        const char *path;
        char why[1024], *msg;
        if (sqlite3_file_control(c->db, name, SQLITE_FCNTL_FILE_POINTER, &f) !=
                SQLITE_OK ||
            !f || !f->pMethods || rl_vfs_write_state(f) < 1)
            continue; /* not replicated, or not written by this txn */
        path = sqlite3_db_filename(c->db, name);
        if (!path || rl_host_confirm_unchanged(path, why, sizeof why) == 0)
            continue;
        msg = sqlite3_mprintf("raftlite: commit on %s refused: %s", path, why);
        rl_conn_error(c->db, msg ? msg : why);
        sqlite3_free(msg);
        return 1;
    }
    return 0;
}

/* Whether the transaction changed rows of schema name (update hook). */
static int conn_changed(const rl_conn *c, const char *name)
{
    for (int i = 0; i < c->ndbs && i < 4; i++)
        if (strcmp(c->dbs[i], name) == 0)
            return 1;
    return c->ndbs > 4; /* more than we keep: assume it did */
}

/*
** A transaction that wrote two replicated databases (main and an ATTACHed
** one) would commit as two Raft entries, one after the other: the first
** could take effect and the second not. Until such a commit can be one
** entry, it is refused whole (SQLite rolls both back). Written means rows
** changed (update hook) or pages written: BEGIN IMMEDIATE alone takes the
** write lock of every attached database without writing it. 1 refuses.
*/
static int refuse_two_replicated(rl_conn *c)
{
    const char *name, *first = NULL;
    int i;
    for (i = 0; (name = sqlite3_db_name(c->db, i)) != NULL; i++) {
        sqlite3_file *f = NULL;
        int st;
        char *msg;
        if (sqlite3_file_control(c->db, name, SQLITE_FCNTL_FILE_POINTER, &f) !=
                SQLITE_OK ||
            !f || !f->pMethods || (st = rl_vfs_write_state(f)) < 1)
            continue;
        if (st < 2 && !conn_changed(c, name))
            continue;
        if (!first) {
            first = name;
            continue;
        }
        msg = sqlite3_mprintf(
            "raftlite: this transaction writes two replicated databases, "
            "'%s' (%s) and '%s' (%s); their commits cannot be atomic "
            "together yet, so nothing was written: write each in a "
            "transaction of its own",
            first, sqlite3_db_filename(c->db, first), name,
            sqlite3_db_filename(c->db, name));
        rl_conn_error(c->db, msg ? msg : "raftlite: two replicated databases");
        sqlite3_free(msg);
        return 1;
    }
    return 0;
}

/* Commit hook of every connection. */
static int conn_commit(void *arg)
{
    rl_conn *c = arg;
    int rows = c->rows, two;
    c->rows = 0;
    two = refuse_two_replicated(c);
    c->ndbs = 0;
    if (two)
        return 1;
    if (c->bypassed) {
        /* Its replicated main database was opened before the extension
        ** existed: it bypasses raftlite, so its commits would fork the
        ** replica. */
        char *msg = sqlite3_mprintf(
            "raftlite: %s is replicated but was opened before .load, so it "
            "bypasses raftlite; writes are refused. Reopen it with .open "
            "after .load",
            sqlite3_db_filename(c->db, "main"));
        rl_conn_error(c->db, msg ? msg : "raftlite: writes are refused");
        sqlite3_free(msg);
        return 1;
    }
    if (rows || rl_mirror_port())
        return 0; /* rows changed: it goes through Raft (or the mirror) */
    return confirm_unchanged_txn(c);
}

static void conn_rollback(void *arg)
{
    ((rl_conn *)arg)->rows = 0;
    ((rl_conn *)arg)->ndbs = 0;
}

/* Fires for every row an INSERT, UPDATE or DELETE changes in a rowid
** table, before the commit hook. WITHOUT ROWID tables are not reported:
** their transactions take the confirmation too (one read index more,
** never a wrong answer). */
static void conn_update(void *arg, int op, const char *db, const char *tbl,
                        sqlite3_int64 rowid)
{
    rl_conn *c = arg;
    (void)op;
    (void)tbl;
    (void)rowid;
    c->rows = 1;
    if (!conn_changed(c, db) || c->ndbs == 0) {
        if (c->ndbs < 4)
            snprintf(c->dbs[c->ndbs], sizeof c->dbs[0], "%s", db);
        c->ndbs++;
    }
}

/*
** The shell opens a database named on its command line before `.load`
** runs, with the unix VFS. If that database is replicated, guard it: warn
** once on stderr and refuse its commits (raft_last_error() says why).
*/
void rl_conn_guard_opened_before_load(sqlite3 *db)
{
    sqlite3_file *f = 0;
    const char *path = sqlite3_db_filename(db, "main");
    char *dir;
    struct stat st;
    rl_conn *c;
    if (!path || !*path ||
        sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) !=
            SQLITE_OK ||
        rl_vfs_is_replicated(f))
        return;
    dir = sqlite3_mprintf("%s-raft", path);
    if (dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
        (c = conn_of(db)) != NULL) {
        fprintf(stderr,
                "raftlite: warning: %s is replicated but was opened before "
                ".load, so it bypasses raftlite and its writes are refused; "
                "reopen it with: .open %s\n",
                path, path);
        c->bypassed = 1;
    }
    sqlite3_free(dir);
}
