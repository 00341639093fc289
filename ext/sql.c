/*
** ext/sql.c -- raftlite's cluster SQL surface: raft_bootstrap, raft_join,
** raft_remove, raft_transfer and raft_leader (CLUSTER_SPEC.md); the raft_nodes
** and raft_status tables and PRAGMA raft_status are ext/tables.c's.
**
** Every one acts on the connection's main database. The node of that
** database runs in this process (rl_host_find: then it is asked directly)
** or in another process, its host (rl_host_running names its gRPC address:
** then it is asked over gRPC, so a shell that is a client sees the same
** cluster). Starting a node is the host's (rl_host_bootstrap); this file
** validates what the user typed first, so that every refusal names the fix.
**
** It must never start a node for a database that already has one, and
** never report success for an operation the cluster did not take.
*/
#include "sql.h"
#include "tables.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "client.h"
#include "cluster.h"
#include "config.h"
#include "conn.h"
#include "host.h"
#include "sidecar.h"
#include "node.h"
#include "sqlite3ext.h"
#include "vfs.h"
SQLITE_EXTENSION_INIT3

#define ERRLEN 1024
/* Pause between retries of a membership call that met no leader. */
#define RETRY_MS 100

/* ---- argument checks ---- */

static void errorf(sqlite3_context *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void errorf(sqlite3_context *ctx, const char *fmt, ...)
{
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    msg = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (msg) {
        sqlite3_result_error(ctx, msg, -1);
        rl_conn_error(sqlite3_context_db_handle(ctx), msg);
        sqlite3_free(msg);
    } else {
        sqlite3_result_error_nomem(ctx);
    }
}

/* Text of argument i, or NULL (with the error set) if it is NULL, empty,
** longer than RL_META_STR_MAX bytes or holds a NUL. */
static const char *text_arg(sqlite3_context *ctx, const char *fn,
                            sqlite3_value **argv, int i, const char *what)
{
    const char *s = (const char *)sqlite3_value_text(argv[i]), *p;
    int n = sqlite3_value_bytes(argv[i]);
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL || !s || n == 0) {
        errorf(ctx, "%s: %s is %s; give it as text, e.g. %s", fn, what,
               sqlite3_value_type(argv[i]) == SQLITE_NULL ? "NULL" : "empty",
               strcmp(what, "node id") == 0 ? "'node1'" : "'127.0.0.1:7001'");
        return NULL;
    }
    if (n > RL_META_STR_MAX) {
        errorf(ctx, "%s: %s is %d bytes; at most %d are allowed", fn, what, n,
               RL_META_STR_MAX);
        return NULL;
    }
    if ((int)strlen(s) != n) {
        errorf(ctx, "%s: %s contains a NUL byte; use plain text", fn, what);
        return NULL;
    }
    for (p = s; *p; p++) {
        /* The identity file stores one setting per line. */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            errorf(ctx,
                   "%s: %s contains the control character 0x%02x; use "
                   "printable text",
                   fn, what, (unsigned)(unsigned char)*p);
            return NULL;
        }
    }
    if (strcmp(what, "node id") == 0) {
        char err[ERRLEN];
        if (rl_node_id_check(s, RL_META_STR_MAX, "node id", err,
                             sizeof(err)) != 0) {
            errorf(ctx, "%s: %s", fn, err);
            return NULL;
        }
    }
    return s;
}

/* "host:port" with a non-empty host and a decimal port 1..65535. */
static int addr_ok(sqlite3_context *ctx, const char *fn, const char *what,
                   const char *a)
{
    char err[ERRLEN];
    if (a[0] == ':') {
        /* Other nodes dial this address: it must name a host. */
        errorf(ctx,
               "%s: %s '%s' is not host:port; write it like "
               "'127.0.0.1:7001'",
               fn, what, a);
        return 0;
    }
    if (rl_addr_check(
            a, strcmp(what, "raft address") == 0 ? RL_ADDR_RAFT : RL_ADDR_GRPC,
            what, err, sizeof(err)) != 0) {
        errorf(ctx, "%s: %s", fn, err);
        return 0;
    }
    return 1;
}

/* The main database's file path, or NULL (error set) if it has none. */
static const char *main_path(sqlite3_context *ctx, const char *fn)
{
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    const char *path = sqlite3_db_filename(db, "main");
    if (!path || !*path) {
        errorf(ctx,
               "%s: the main database is in memory or temporary; a "
               "raft node needs a database file: .open FILE first",
               fn);
        return NULL;
    }
    return path;
}

/*
** Starts the node of path (its settings from the URI parameters, its gRPC
** sidecar handed to the host) and answers id. peer NULL: bootstrap (waits
** until it leads and proposes the database's data as the initial state,
** GENESIS, if it holds any); else join through peer (which adds it; a
** follower forwards to the leader) and wait until it applied the leader's
** commit index.
*/
static void start_node(sqlite3_context *ctx, const char *fn, const char *path,
                       const char *id, const char *raft, const char *grpc,
                       const char *peer)
{
    rl_host_config cfg;
    rl_rpc_tls tls;
    char err[ERRLEN];
    memset(&cfg, 0, sizeof(cfg));
    rl_uri_config(path, &cfg, &tls);
    cfg.db_path = path;
    cfg.node_id = id;
    cfg.raft_addr = raft;
    cfg.grpc_addr = grpc;
    cfg.bootstrap = peer == NULL;
    cfg.join = peer;
    cfg.log_level = rl_log_level();
    cfg.serve = rl_sidecar_start; /* its gRPC sidecar */
    err[0] = 0;
    if (rl_host_bootstrap(sqlite3_context_db_handle(ctx), &cfg, err,
                          sizeof(err)) != 0) {
        errorf(ctx, "%s: %s", fn, err[0] ? err : "the node did not start");
        return;
    }
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
}

/* Refuses to start a node for a database that has one. 0 if none. */
static int no_node_yet(sqlite3_context *ctx, const char *fn, const char *path)
{
    rl_identity ident;
    char err[ERRLEN], grpc[RL_META_STR_MAX + 1];
    long pid = 0;
    int rc;
    if (rl_host_find(path)) {
        rc = rl_identity_read(path, &ident, err, sizeof(err));
        errorf(ctx,
               "%s: %s is already node '%s', hosted by this process; "
               "SELECT * FROM raft_nodes shows its cluster",
               fn, path, rc == 0 ? ident.node_id : "?");
        return -1;
    }
    rc = rl_identity_read(path, &ident, err, sizeof(err));
    if (rc < 0) {
        errorf(ctx, "%s: %s", fn, err);
        return -1;
    }
    if (rc == 0) {
        errorf(ctx,
               "%s: %s is already node '%s'; it restarts when the "
               "database is opened (.open), so it needs no %s",
               fn, path, ident.node_id, fn);
        return -1;
    }
    if (rl_host_running(path, &pid, grpc, sizeof(grpc))) {
        errorf(ctx, "%s: %s is hosted by process %ld (gRPC %s); run it there",
               fn, path, pid, grpc);
        return -1;
    }
    return 0;
}

static void bootstrap_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *fn = "raft_bootstrap", *id, *raft, *grpc, *path;
    (void)argc;
    if (!(id = text_arg(ctx, fn, argv, 0, "node id")) ||
        !(raft = text_arg(ctx, fn, argv, 1, "raft address")) ||
        !(grpc = text_arg(ctx, fn, argv, 2, "gRPC address")) ||
        !addr_ok(ctx, fn, "raft address", raft) ||
        !addr_ok(ctx, fn, "gRPC address", grpc) ||
        !(path = main_path(ctx, fn)) || no_node_yet(ctx, fn, path) != 0) {
        return;
    }
    start_node(ctx, fn, path, id, raft, grpc, NULL);
}

/* Whether the main database holds any schema object. -1 on error. */
static int db_empty(sqlite3_context *ctx, const char *fn)
{
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_schema LIMIT 1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) {
        return 0;
    }
    if (rc != SQLITE_DONE) {
        errorf(ctx, "%s: cannot read the database's schema: %s", fn,
               sqlite3_errmsg(db));
        return -1;
    }
    return 1;
}

static void join_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *fn = "raft_join", *id, *raft, *grpc, *peer, *path;
    int empty;
    (void)argc;
    if (!(id = text_arg(ctx, fn, argv, 0, "node id")) ||
        !(raft = text_arg(ctx, fn, argv, 1, "raft address")) ||
        !(grpc = text_arg(ctx, fn, argv, 2, "gRPC address")) ||
        !(peer = text_arg(ctx, fn, argv, 3, "peer gRPC address")) ||
        !addr_ok(ctx, fn, "raft address", raft) ||
        !addr_ok(ctx, fn, "gRPC address", grpc) ||
        !addr_ok(ctx, fn, "peer gRPC address", peer) ||
        !(path = main_path(ctx, fn)) || no_node_yet(ctx, fn, path) != 0) {
        return;
    }
    if (strcmp(peer, grpc) == 0) {
        errorf(ctx,
               "%s: the peer gRPC address %s is this node's own; give "
               "the gRPC address of a running member",
               fn, peer);
        return;
    }
    empty = db_empty(ctx, fn);
    if (empty < 0) {
        return;
    }
    if (!empty) {
        errorf(ctx,
               "%s: %s holds tables; a joining node receives the "
               "cluster's data, so it must start empty: .open a new file, "
               "or make this data a cluster with raft_bootstrap",
               fn, path);
        return;
    }
    start_node(ctx, fn, path, id, raft, grpc, peer);
}

/* Where the node of the main database runs: *h (this process), or *grpc
** (another process; *pid). 0 found, -1 with the error set. */
static int locate(sqlite3_context *ctx, const char *fn, rl_host **h, char *grpc,
                  size_t grpc_len, long *pid)
{
    const char *path = main_path(ctx, fn);
    rl_identity ident;
    char err[ERRLEN];
    int rc;
    *h = NULL;
    grpc[0] = 0;
    if (!path) {
        return -1;
    }
    if ((*h = rl_host_find(path)) != NULL) {
        return 0;
    }
    if (rl_host_running(path, pid, grpc, grpc_len)) {
        if (!grpc[0]) {
            errorf(ctx,
                   "%s: %s is hosted by process %ld, which names no gRPC "
                   "address; run it in that process",
                   fn, path, *pid);
            return -1;
        }
        return 0;
    }
    rc = rl_identity_read(path, &ident, err, sizeof(err));
    if (rc == 0) {
        errorf(ctx,
               "%s: no process hosts node '%s' of %s; reopen the "
               "database (.open) to restart it",
               fn, ident.node_id, path);
    } else if (rc < 0) {
        errorf(ctx, "%s: %s", fn, err);
    } else {
        errorf(ctx,
               "%s: %s is not a raft node; SELECT raft_bootstrap(id, "
               "raft_addr, grpc_addr) or raft_join(id, raft_addr, grpc_addr, "
               "peer_grpc_addr) first",
               fn, path);
    }
    return -1;
}

static void remove_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *fn = "raft_remove", *id;
    char grpc[RL_META_STR_MAX + 1], err[ERRLEN];
    rl_rpc_client *cl;
    rl_host *h;
    long pid = 0;
    int64_t deadline = rl_rpc_now_ms() + RL_CLUSTER_TIMEOUT_MS;
    int rc;
    (void)argc;
    if (!(id = text_arg(ctx, fn, argv, 0, "node id")) ||
        locate(ctx, fn, &h, grpc, sizeof(grpc), &pid) != 0) {
        return;
    }
    /* An election in progress (or one started by removing the leader)
    ** answers "no leader yet": nothing changed, so try again. */
    do {
        int64_t ms = deadline - rl_rpc_now_ms();
        unsigned left = ms > 0 ? (unsigned)ms : 1;
        err[0] = 0;
        if (h) {
            rc = rl_cluster_node_remove(h, id, left, err, sizeof(err));
        } else if (!(cl = rl_ext_client_get(main_path(ctx, fn), err,
                                            sizeof(err)))) {
            rc = -1;
            break;
        } else {
            rc = rl_cluster_remove(cl, grpc, id, left, err, sizeof(err));
            rl_ext_client_put(cl);
        }
    } while (rc == RL_ERR_NOLEADER && rl_ext_retry_pause(deadline));
    if (rc != 0) {
        errorf(ctx, "%s: %s", fn, err);
        return;
    }
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
}

static void transfer_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *fn = "raft_transfer", *id = "";
    char grpc[RL_META_STR_MAX + 1], err[ERRLEN], lid[RL_META_STR_MAX + 1];
    rl_rpc_client *cl;
    rl_host *h;
    long pid = 0;
    int64_t deadline = rl_rpc_now_ms() + RL_CLUSTER_TIMEOUT_MS;
    int rc;
    if (argc > 0 && sqlite3_value_type(argv[0]) != SQLITE_NULL &&
        sqlite3_value_bytes(argv[0]) > 0 &&
        !(id = text_arg(ctx, fn, argv, 0, "node id"))) {
        return;
    }
    if (locate(ctx, fn, &h, grpc, sizeof(grpc), &pid) != 0) {
        return;
    }
    do {
        int64_t ms = deadline - rl_rpc_now_ms();
        unsigned left = ms > 0 ? (unsigned)ms : 1;
        err[0] = lid[0] = 0;
        if (h) {
            rc = rl_cluster_node_transfer(h, id, left, lid, sizeof(lid), err,
                                          sizeof(err));
        } else if (!(cl = rl_ext_client_get(main_path(ctx, fn), err,
                                            sizeof(err)))) {
            rc = -1;
            break;
        } else {
            rc = rl_cluster_transfer(cl, grpc, id, left, lid, sizeof(lid), err,
                                     sizeof(err));
            rl_ext_client_put(cl);
        }
    } while (rc == RL_ERR_NOLEADER && rl_ext_retry_pause(deadline));
    if (rc != 0) {
        errorf(ctx, "%s: %s", fn, err);
        return;
    }
    sqlite3_result_text(ctx, lid, -1, SQLITE_TRANSIENT);
}

static void leader_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *fn = "raft_leader";
    char grpc[RL_META_STR_MAX + 1], err[ERRLEN];
    struct rl_meta m;
    rl_rpc_client *cl;
    rl_host *h;
    long pid = 0;
    int rc;
    (void)argc;
    (void)argv;
    if (locate(ctx, fn, &h, grpc, sizeof(grpc), &pid) != 0) {
        return;
    }
    err[0] = 0;
    if (h) {
        rc = rl_cluster_node_leader(h, &m);
    } else if (!(cl =
                     rl_ext_client_get(main_path(ctx, fn), err, sizeof(err)))) {
        rc = -1;
    } else {
        rc = rl_cluster_leader(cl, grpc, RL_CLUSTER_TIMEOUT_MS, &m, err,
                               sizeof(err));
        rl_ext_client_put(cl);
    }
    if (rc < 0) {
        errorf(ctx, "%s: %s", fn, err);
    } else if (rc == 0 || !m.node_id[0]) {
        sqlite3_result_null(ctx); /* none known (or not its id yet) */
    } else {
        sqlite3_result_text(ctx, m.node_id, -1, SQLITE_TRANSIENT);
    }
}

/* ---- registration ---- */

void rl_sql_init(void)
{
    rl_vfs_set_pragma_handler(rl_tables_pragma);
}

int rl_sql_register(sqlite3 *db)
{
    static const struct {
        const char *name;
        int argc;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
    } fns[] = {
        {"raft_bootstrap", 3, bootstrap_func},
        {"raft_join", 4, join_func},
        {"raft_remove", 1, remove_func},
        {"raft_transfer", 1, transfer_func},
        {"raft_transfer", 0, transfer_func},
        {"raft_leader", 0, leader_func},
    };
    size_t i;
    int rc = SQLITE_OK;
    for (i = 0; rc == SQLITE_OK && i < sizeof(fns) / sizeof(fns[0]); i++) {
        /* SQLITE_DIRECTONLY: a schema object (view, trigger) must not be
        ** able to change the cluster on someone's read. */
        rc = sqlite3_create_function(db, fns[i].name, fns[i].argc,
                                     SQLITE_UTF8 | SQLITE_DIRECTONLY, NULL,
                                     fns[i].fn, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = rl_tables_register(db);
    }
    return rc;
}
