/*
** ext/ext.c -- entry point of the raftlite SQLite extension.
**
** sqlite3_raftlite_init() is what `.load ./build/raftlite` calls. It
** registers VFS "raft" as the default VFS and the raft_* SQL functions.
** It must return SQLITE_OK_LOAD_PERMANENTLY: the shell's `.open` after
** `.load` otherwise crashes (measured); and it registers the functions
** through sqlite3_auto_extension as well, because functions registered by
** `.load` are gone after `.open` (measured).
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include "ext.h"
#include "host.h"
#include "sidecar.h"
#include "sql.h"
#include "vfs.h"

#define RL_VERSION "0.1.0"

/* Busy timeout given to every connection: the stock shell's is 0, and a
** replicated database's writers wait for each other and for the applier. */
#define RL_DEFAULT_BUSY_MS 10000

int rl_test_mode(void)
{
    const char *v = getenv("RAFTLITE_TEST");
    return v && strcmp(v, "1") == 0;
}

static void version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, RL_VERSION, -1, SQLITE_STATIC);
}

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
    int rows;      /* a row changed since the last commit/rollback (the
                      update hook; total_changes counts an autocommit
                      statement's rows only after its commit hook ran) */
    int bypassed;  /* replicated main opened before .load: refuse commits */
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

/* raft_test_stats(NAME): a counter of the VFS (test-only). */
static void test_stats_func(sqlite3_context *ctx, int argc,
                            sqlite3_value **argv)
{
    const char *name = (const char *)sqlite3_value_text(argv[0]);
    rl_vfs_stats st;
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"txns", offsetof(rl_vfs_stats, txns)},
        {"frames", offsetof(rl_vfs_stats, frames)},
        {"page_overwrites", offsetof(rl_vfs_stats, page_overwrites)},
        {"after_commit", offsetof(rl_vfs_stats, after_commit)},
        {"refused", offsetof(rl_vfs_stats, refused)},
        {"rolled_back", offsetof(rl_vfs_stats, rolled_back)},
        {"gated", offsetof(rl_vfs_stats, gated)},
    };
    size_t i;
    (void)argc;
    rl_vfs_get_stats(&st);
    for (i = 0; name && i < sizeof fields / sizeof fields[0]; i++) {
        if (strcmp(name, fields[i].name) == 0) {
            uint64_t v;
            memcpy(&v, (const char *)&st + fields[i].off, sizeof v);
            sqlite3_result_int64(ctx, (sqlite3_int64)v);
            return;
        }
    }
    sqlite3_result_error(ctx, "raft_test_stats: unknown counter", -1);
}

/*
** Node settings from URI parameters of the database name
** (`.open file:n1.db?raft_tls_cert=...`): TLS of the sidecar, the auth
** file (raft_auth=FILE) and raft_insecure=1 (non-loopback addresses
** without TLS: a trusted private network), all stored with the identity so
** later opens reuse them; Raft timeouts and the snapshot policy (this run
** only).
*/
void rl_uri_config(const char *zName, rl_host_config *cfg, rl_rpc_tls *tls)
{
    const char *cert = sqlite3_uri_parameter(zName, "raft_tls_cert");
    const char *ca = sqlite3_uri_parameter(zName, "raft_tls_ca");
    if (cert || ca) {
        memset(tls, 0, sizeof *tls);
        tls->cert_file = cert;
        tls->key_file = sqlite3_uri_parameter(zName, "raft_tls_key");
        tls->ca_file = ca;
        tls->client_auth =
            sqlite3_uri_boolean(zName, "raft_tls_client_auth", 0);
        cfg->tls = tls;
    }
    cfg->auth_file = sqlite3_uri_parameter(zName, "raft_auth");
    if (sqlite3_uri_parameter(zName, "raft_insecure"))
        cfg->insecure = sqlite3_uri_boolean(zName, "raft_insecure", 0) ? 1 : -1;
    cfg->election_timeout_ms =
        (unsigned)sqlite3_uri_int64(zName, "raft_election_ms", 0);
    cfg->heartbeat_timeout_ms =
        (unsigned)sqlite3_uri_int64(zName, "raft_heartbeat_ms", 0);
    cfg->snapshot_threshold =
        (unsigned)sqlite3_uri_int64(zName, "raft_snapshot_threshold", 0);
    cfg->snapshot_trailing =
        (unsigned)sqlite3_uri_int64(zName, "raft_snapshot_trailing", 0);
    {
        /* The gRPC sidecar's message limit (raftd's -max-msg-bytes). */
        sqlite3_int64 m = sqlite3_uri_int64(zName, "raft_max_msg_bytes", 0);
        if (m >= 1024 && m <= 0x7fffffff)
            cfg->max_msg_bytes = (size_t)m;
        else if (m != 0)
            fprintf(stderr,
                    "raftlite: warning: raft_max_msg_bytes=%lld is outside "
                    "1024..2147483647; the default (4 MiB) is used\n",
                    (long long)m);
    }
}

/*
** Which port serves a replicated database opened in this process: the
** test mirror when it is on, else the hosts' port. Opening a database
** that has a stored node identity restarts its node here when no process
** hosts it (this process then hosts it; otherwise it is a client).
*/
static const rl_port *resolve_port(const char *db_path)
{
    const rl_port *mirror = rl_mirror_port();
    rl_identity id;
    char err[512];
    if (mirror)
        return mirror;
    if (db_path && !rl_host_find(db_path) && !rl_host_setting_up(db_path) &&
        rl_identity_read(db_path, &id, err, sizeof err) == 0 &&
        !rl_host_running(db_path, NULL, NULL, 0)) {
        rl_host_config cfg;
        rl_rpc_tls tls;
        rl_host *h;
        memset(&cfg, 0, sizeof cfg);
        rl_uri_config(db_path, &cfg, &tls);
        cfg.db_path = db_path;
        cfg.log_level = rl_log_level();
        cfg.serve = rl_sidecar_start; /* its gRPC sidecar */
        if (rl_host_open(&cfg, &h, err, sizeof err) != 0)
            fprintf(stderr, "raftlite: cannot restart the node of %s: %s\n",
                    db_path, err);
    }
    return rl_host_port(db_path);
}

/*
** Host takeover (issue 17): a process that has a replicated database open
** as a client takes over hosting its node when the host exits, without
** the database being reopened. A watcher thread looks every
** TAKEOVER_POLL_MS: a database whose node runs nowhere (the host lock is
** free) and has a stored identity is restarted here, as opening it would
** (resolve_port). Two clients racing both try; the host lock lets one win.
** It runs outside every SQLite call of the program's connections: a node
** start opens connections of its own and must not happen inside one.
*/
#define TAKEOVER_POLL_MS 500
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cv = PTHREAD_COND_INITIALIZER;
static pthread_t watch_th;
static int watch_on, watch_stop;

static void takeover_once(void)
{
    int n = 0;
    char **paths = rl_vfs_replicated_paths(&n);
    for (int i = 0; i < n; i++) {
        const char *p = paths[i];
        rl_identity id;
        rl_host_config cfg;
        rl_host *h;
        char err[512];
        if (rl_host_find(p) || rl_host_setting_up(p) ||
            rl_identity_read(p, &id, err, sizeof err) != 0 ||
            rl_host_running(p, NULL, NULL, 0))
            continue;
        /* The stored identity carries the node's TLS settings; URI
        ** parameters of the original open are not known here. */
        memset(&cfg, 0, sizeof cfg);
        cfg.db_path = p;
        cfg.log_level = rl_log_level();
        cfg.serve = rl_sidecar_start; /* its gRPC sidecar */
        if (rl_host_open(&cfg, &h, err, sizeof err) == 0)
            fprintf(stderr,
                    "raftlite: %s: its host exited; this process (pid %ld) "
                    "hosts node %s now\n",
                    p, (long)getpid(), id.node_id);
    }
    if (paths)
        rl_vfs_paths_free(paths, n);
}

static void *watch_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&watch_mu);
    while (!watch_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TAKEOVER_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&watch_cv, &watch_mu, &ts);
        if (watch_stop)
            break;
        pthread_mutex_unlock(&watch_mu);
        takeover_once();
        pthread_mutex_lock(&watch_mu);
    }
    pthread_mutex_unlock(&watch_mu);
    return NULL;
}

/* atexit, before the nodes stop: no takeover during shutdown. */
static void watch_end(void)
{
    pthread_mutex_lock(&watch_mu);
    watch_stop = 1;
    pthread_cond_broadcast(&watch_cv);
    pthread_mutex_unlock(&watch_mu);
    if (watch_on)
        pthread_join(watch_th, NULL);
    watch_on = 0;
}

static void watch_start(void)
{
    if (pthread_create(&watch_th, NULL, watch_main, NULL) == 0) {
        watch_on = 1;
        atexit(watch_end); /* registered after rl_host_close_all: runs first */
    }
}

int rl_log_level(void)
{
    const char *v = getenv("RAFTLITE_LOG");
    return v ? atoi(v) : 1;
}

static int conn_commit(void *arg);
static void conn_rollback(void *arg);
static void conn_update(void *arg, int op, const char *db, const char *tbl,
                        sqlite3_int64 rowid);

static int register_functions(sqlite3 *db, char **pzErr,
                              const sqlite3_api_routines *api)
{
    int rc;
    (void)pzErr;
    (void)api;
    sqlite3_busy_timeout(db, RL_DEFAULT_BUSY_MS);
    rc = sqlite3_create_function(db, "raft_version", 0,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC, 0,
                                 version_func, 0, 0);
    if (rc == SQLITE_OK) {
        rl_conn *c = sqlite3_malloc(sizeof *c);
        if (!c)
            return SQLITE_NOMEM;
        memset(c, 0, sizeof *c);
        c->db = db;
        c->seen = rl_vfs_error_seq();
        /* The function owns c: conn_free runs when db closes. */
        rc = sqlite3_create_function_v2(db, "raft_last_error", 0, SQLITE_UTF8,
                                        c, last_error_func, 0, 0, conn_free);
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
    }
    if (rc == SQLITE_OK)
        rc = rl_sql_register(db);
    if (rc == SQLITE_OK && rl_test_mode())
        rc = rl_mirror_register(db);
    if (rc == SQLITE_OK && rl_test_mode())
        rc = sqlite3_create_function(db, "raft_test_stats", 1, SQLITE_UTF8, 0,
                                     test_stats_func, 0, 0);
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
static void guard_opened_before_load(sqlite3 *db)
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

int sqlite3_raftlite_init(sqlite3 *db, char **pzErrMsg,
                          const sqlite3_api_routines *pApi)
{
    int rc;
    SQLITE_EXTENSION_INIT2(pApi);
    rc = rl_vfs_register(1, resolve_port);
    {
        /* Nodes stop when the shell exits (.exit, end of input). */
        static int once;
        if (!once++) {
            atexit(rl_host_close_all);
            if (!rl_test_mode())
                watch_start();
        }
    }
    if (rc == SQLITE_OK)
        rl_sql_init();
    if (rc == SQLITE_OK)
        rc = register_functions(db, pzErrMsg, pApi);
    if (rc == SQLITE_OK)
        guard_opened_before_load(db); /* after: it marks the conn */
    if (rc == SQLITE_OK)
        rc = sqlite3_auto_extension((void (*)(void))register_functions);
    return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
}
