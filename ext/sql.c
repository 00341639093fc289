/*
** ext/sql.c -- raftlite's cluster SQL surface: raft_bootstrap, raft_join,
** raft_remove, raft_transfer, raft_leader, the raft_nodes eponymous
** table-valued function and PRAGMA raft_status (CLUSTER_SPEC.md).
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

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
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

/* ---- the gRPC client of a process that does not host the database ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_rpc_client *g_client;

static void client_free(void)
{
    pthread_mutex_lock(&g_mu);
    rl_rpc_client_free(g_client);
    g_client = NULL;
    pthread_mutex_unlock(&g_mu);
}

/* A client for the sidecar of db_path's host: with the TLS settings the
** identity stores (the host serves with them), else the process's shared
** plaintext client (created on first use). Release with client_put. */
static rl_rpc_client *client_get(const char *db_path, char *err, size_t errlen)
{
    rl_rpc_client *cl;
    rl_identity ident;
    char e[ERRLEN];
    if (rl_identity_read(db_path, &ident, e, sizeof(e)) == 0 &&
        (ident.tls_cert[0] || ident.tls_ca[0])) {
        rl_rpc_tls tls;
        memset(&tls, 0, sizeof(tls));
        tls.ca_file = ident.tls_ca[0] ? ident.tls_ca : NULL;
        if (ident.tls_client_auth) {
            tls.cert_file = ident.tls_cert;
            tls.key_file = ident.tls_key;
        }
        return rl_rpc_client_new(&tls, 0, err, errlen);
    }
    pthread_mutex_lock(&g_mu);
    if (!g_client) {
        g_client = rl_rpc_client_new(NULL, 0, err, errlen);
        if (g_client) {
            atexit(client_free);
        }
    }
    cl = g_client;
    pthread_mutex_unlock(&g_mu);
    return cl;
}

static void client_put(rl_rpc_client *cl)
{
    int shared;
    pthread_mutex_lock(&g_mu);
    shared = cl == g_client;
    pthread_mutex_unlock(&g_mu);
    if (cl && !shared) {
        rl_rpc_client_free(cl);
    }
}

/* Whether a failed cluster call may succeed if retried: no leader was
** known or reachable, so nothing changed. */
static int no_leader(const char *err)
{
    return strncmp(err, RL_CLUSTER_NO_LEADER, strlen(RL_CLUSTER_NO_LEADER)) ==
           0;
}

/* Pause before retrying such a call, while time is left. 1 to retry. */
static int retry_pause(int64_t deadline)
{
    if (rl_rpc_now_ms() + RETRY_MS >= deadline) {
        return 0;
    }
    struct timespec ts = {0, RETRY_MS * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 1;
}

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
    rl_host_config cfg;
    rl_rpc_tls tls;
    char err[ERRLEN];
    (void)argc;
    if (!(id = text_arg(ctx, fn, argv, 0, "node id")) ||
        !(raft = text_arg(ctx, fn, argv, 1, "raft address")) ||
        !(grpc = text_arg(ctx, fn, argv, 2, "gRPC address")) ||
        !addr_ok(ctx, fn, "raft address", raft) ||
        !addr_ok(ctx, fn, "gRPC address", grpc) ||
        !(path = main_path(ctx, fn)) || no_node_yet(ctx, fn, path) != 0) {
        return;
    }
    memset(&cfg, 0, sizeof(cfg));
    rl_uri_config(path, &cfg, &tls);
    cfg.db_path = path;
    cfg.node_id = id;
    cfg.raft_addr = raft;
    cfg.grpc_addr = grpc;
    cfg.bootstrap = 1;
    cfg.log_level = rl_log_level();
    cfg.serve = rl_sidecar_start; /* its gRPC sidecar */
    err[0] = 0;
    /* Starts the node, waits until it leads and proposes the database's
    ** data as the initial state (GENESIS) if it holds any. */
    if (rl_host_bootstrap(sqlite3_context_db_handle(ctx), &cfg, err,
                          sizeof(err)) != 0) {
        errorf(ctx, "%s: %s", fn, err[0] ? err : "the node did not start");
        return;
    }
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
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
    rl_host_config cfg;
    rl_rpc_tls tls;
    char err[ERRLEN];
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
    memset(&cfg, 0, sizeof(cfg));
    rl_uri_config(path, &cfg, &tls);
    cfg.db_path = path;
    cfg.node_id = id;
    cfg.raft_addr = raft;
    cfg.grpc_addr = grpc;
    cfg.join = peer;
    cfg.log_level = rl_log_level();
    cfg.serve = rl_sidecar_start; /* its gRPC sidecar */
    err[0] = 0;
    /* Starts the node, asks the peer to add it (a follower forwards to the
    ** leader) and waits until it applied the leader's commit index. */
    if (rl_host_bootstrap(sqlite3_context_db_handle(ctx), &cfg, err,
                          sizeof(err)) != 0) {
        errorf(ctx, "%s: %s", fn, err[0] ? err : "the node did not start");
        return;
    }
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
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
        } else if (!(cl = client_get(main_path(ctx, fn), err, sizeof(err)))) {
            rc = -1;
            break;
        } else {
            rc = rl_cluster_remove(cl, grpc, id, left, err, sizeof(err));
            client_put(cl);
        }
    } while (rc != 0 && no_leader(err) && retry_pause(deadline));
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
        } else if (!(cl = client_get(main_path(ctx, fn), err, sizeof(err)))) {
            rc = -1;
            break;
        } else {
            rc = rl_cluster_transfer(cl, grpc, id, left, lid, sizeof(lid), err,
                                     sizeof(err));
            client_put(cl);
        }
    } while (rc != 0 && no_leader(err) && retry_pause(deadline));
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
    } else if (!(cl = client_get(main_path(ctx, fn), err, sizeof(err)))) {
        rc = -1;
    } else {
        rc = rl_cluster_leader(cl, grpc, RL_CLUSTER_TIMEOUT_MS, &m, err,
                               sizeof(err));
        client_put(cl);
    }
    if (rc < 0) {
        errorf(ctx, "%s: %s", fn, err);
    } else if (rc == 0 || !m.node_id[0]) {
        sqlite3_result_null(ctx); /* none known (or not its id yet) */
    } else {
        sqlite3_result_text(ctx, m.node_id, -1, SQLITE_TRANSIENT);
    }
}

/* ---- raft_nodes ---- */

enum {
    COL_ID,
    COL_RAFT_ID,
    COL_RAFT_ADDR,
    COL_GRPC_ADDR,
    COL_ROLE,
    COL_IS_LEADER,
    COL_MATCH_INDEX,
    COL_LAST_CONTACT
};

typedef struct nodes_vtab {
    sqlite3_vtab base;
    sqlite3 *db;
} nodes_vtab;

typedef struct nodes_cursor {
    sqlite3_vtab_cursor base;
    struct rl_member *ms; /* malloc'ed */
    unsigned count, i;
    int on_leader; /* answered by the leader: match/contact are known */
} nodes_cursor;

/* An eponymous table of db with the given columns. */
static int vtab_connect(sqlite3 *db, const char *schema, sqlite3_vtab **out)
{
    nodes_vtab *v;
    int rc = sqlite3_declare_vtab(db, schema);
    if (rc != SQLITE_OK) {
        return rc;
    }
    v = sqlite3_malloc(sizeof(*v));
    if (!v) {
        return SQLITE_NOMEM;
    }
    memset(v, 0, sizeof(*v));
    v->db = db;
    *out = &v->base;
    return SQLITE_OK;
}

static int nodes_connect(sqlite3 *db, void *aux, int argc,
                         const char *const *argv, sqlite3_vtab **out,
                         char **pzErr)
{
    (void)aux;
    (void)argc;
    (void)argv;
    (void)pzErr;
    return vtab_connect(db,
                        "CREATE TABLE x(id TEXT, raft_id INTEGER, "
                        "raft_addr TEXT, grpc_addr TEXT, role TEXT, "
                        "is_leader INTEGER, match_index INTEGER, "
                        "last_contact INTEGER)",
                        out);
}

static int nodes_disconnect(sqlite3_vtab *vt)
{
    sqlite3_free(vt);
    return SQLITE_OK;
}

/* raft_nodes and raft_status are small tables scanned whole. */
static int small_best_index(sqlite3_vtab *vt, sqlite3_index_info *info)
{
    (void)vt;
    info->estimatedCost = 10;
    info->estimatedRows = 10;
    return SQLITE_OK;
}

/* A zeroed cursor of sz bytes (its first member a sqlite3_vtab_cursor). */
static int cursor_new(size_t sz, sqlite3_vtab_cursor **out)
{
    sqlite3_vtab_cursor *c = sqlite3_malloc64(sz);
    if (!c) {
        return SQLITE_NOMEM;
    }
    memset(c, 0, sz);
    *out = c;
    return SQLITE_OK;
}

static int nodes_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
    (void)vt;
    return cursor_new(sizeof(nodes_cursor), out);
}

static int nodes_close(sqlite3_vtab_cursor *cur)
{
    nodes_cursor *c = (nodes_cursor *)cur;
    free(c->ms);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int vtab_error(sqlite3_vtab *vt, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int vtab_error(sqlite3_vtab *vt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sqlite3_free(vt->zErrMsg);
    vt->zErrMsg = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    /* Both tables' vtabs are nodes_vtab: raft_last_error() says it too. */
    rl_conn_error(((nodes_vtab *)vt)->db,
                  vt->zErrMsg ? vt->zErrMsg : "out of memory");
    return SQLITE_ERROR;
}

static int nodes_filter(sqlite3_vtab_cursor *cur, int idxNum,
                        const char *idxStr, int argc, sqlite3_value **argv)
{
    nodes_cursor *c = (nodes_cursor *)cur;
    nodes_vtab *v = (nodes_vtab *)cur->pVtab;
    const char *path = sqlite3_db_filename(v->db, "main");
    char grpc[RL_META_STR_MAX + 1], err[ERRLEN];
    rl_identity ident;
    rl_rpc_client *cl;
    rl_host *h;
    long pid = 0;
    int rc;
    (void)idxNum;
    (void)idxStr;
    (void)argc;
    (void)argv;
    free(c->ms);
    c->ms = NULL;
    c->count = c->i = 0;
    if (!path || !*path) {
        return vtab_error(cur->pVtab,
                          "raft_nodes: the main database is in memory or "
                          "temporary, not a raft node; .open FILE first");
    }
    if ((h = rl_host_find(path)) != NULL) {
        struct rl_node_status st;
        rl_node_status(rl_host_node(h), &st);
        c->on_leader = st.state == RL_STATE_LEADER;
        if (rl_node_members(rl_host_node(h), &c->ms, &c->count) != RL_NODE_OK) {
            c->ms = NULL;
            c->count = 0;
            return vtab_error(cur->pVtab, "raft_nodes: cannot read the "
                                          "cluster configuration");
        }
        return SQLITE_OK;
    }
    if (rl_host_running(path, &pid, grpc, sizeof(grpc)) && grpc[0]) {
        err[0] = 0;
        if (!(cl = client_get(path, err, sizeof(err)))) {
            return vtab_error(cur->pVtab, "raft_nodes: %s", err);
        }
        rc = rl_cluster_nodes(cl, grpc, RL_CLUSTER_TIMEOUT_MS, &c->ms,
                              &c->count, err, sizeof(err));
        client_put(cl);
        if (rc != 0) {
            return vtab_error(cur->pVtab, "raft_nodes: %s", err);
        }
        c->on_leader = c->count > 0 && c->ms[0].recent_contact >= 0;
        return SQLITE_OK;
    }
    rc = rl_identity_read(path, &ident, err, sizeof(err));
    if (rc == 0) {
        return vtab_error(cur->pVtab,
                          "raft_nodes: no process hosts node '%s' of %s; "
                          "reopen the database (.open) to restart it",
                          ident.node_id, path);
    }
    if (rc < 0) {
        return vtab_error(cur->pVtab, "raft_nodes: %s", err);
    }
    return vtab_error(cur->pVtab,
                      "raft_nodes: %s is not a raft node; SELECT "
                      "raft_bootstrap(...) or raft_join(...)",
                      path);
}

static int nodes_next(sqlite3_vtab_cursor *cur)
{
    ((nodes_cursor *)cur)->i++;
    return SQLITE_OK;
}

static int nodes_eof(sqlite3_vtab_cursor *cur)
{
    nodes_cursor *c = (nodes_cursor *)cur;
    return c->i >= c->count;
}

static int nodes_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int i)
{
    nodes_cursor *c = (nodes_cursor *)cur;
    const struct rl_member *m = &c->ms[c->i];
    switch (i) {
    case COL_ID:
        if (m->has_meta) {
            sqlite3_result_text(ctx, m->meta.node_id, -1, SQLITE_TRANSIENT);
        }
        break;
    case COL_RAFT_ID:
        /* Same bits as the unsigned id (PRAGMA raft_status shows the same
        ** signed value). */
        sqlite3_result_int64(ctx, (sqlite3_int64)m->raft_id);
        break;
    case COL_RAFT_ADDR:
        sqlite3_result_text(ctx, m->raft_addr, -1, SQLITE_TRANSIENT);
        break;
    case COL_GRPC_ADDR:
        if (m->has_meta) {
            sqlite3_result_text(ctx, m->meta.grpc_addr, -1, SQLITE_TRANSIENT);
        }
        break;
    case COL_ROLE:
        sqlite3_result_text(ctx,
                            m->role == RL_ROLE_VOTER     ? "voter"
                            : m->role == RL_ROLE_STANDBY ? "standby"
                                                         : "spare",
                            -1, SQLITE_STATIC);
        break;
    case COL_IS_LEADER:
        sqlite3_result_int(ctx, m->is_leader ? 1 : 0);
        break;
    case COL_MATCH_INDEX:
        if (c->on_leader) {
            sqlite3_result_int64(ctx, (sqlite3_int64)m->match_index);
        }
        break;
    case COL_LAST_CONTACT:
        if (c->on_leader && m->recent_contact >= 0) {
            sqlite3_result_int(ctx, m->recent_contact);
        }
        break;
    }
    return SQLITE_OK;
}

static int nodes_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    *rowid = ((nodes_cursor *)cur)->i + 1;
    return SQLITE_OK;
}

static sqlite3_module nodes_module = {
    0,                /* iVersion */
    0,                /* xCreate: NULL makes it eponymous-only */
    nodes_connect,    /* xConnect */
    small_best_index, /* xBestIndex */
    nodes_disconnect, /* xDisconnect */
    0,                /* xDestroy */
    nodes_open,       /* xOpen */
    nodes_close,      /* xClose */
    nodes_filter,     /* xFilter */
    nodes_next,       /* xNext */
    nodes_eof,        /* xEof */
    nodes_column,     /* xColumn */
    nodes_rowid,      /* xRowid */
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0, /* xUpdate .. xShadowName */
};

/* ---- PRAGMA raft_status and the raft_status table ---- */

/* The status of db_path's node into *cs: from this process's host, or
** asked of the hosting process. SQLITE_OK, or an error with *errmsg
** (sqlite3_malloc'ed) naming the cause and the fix. */
static int status_get(const char *db_path, int replicated,
                      rl_cluster_status *cs, char **errmsg)
{
    char grpc[RL_META_STR_MAX + 1], err[ERRLEN];
    rl_identity ident;
    rl_rpc_client *cl;
    rl_host *h;
    long pid = 0;
    int rc;
    *errmsg = NULL;
    if ((h = rl_host_find(db_path)) != NULL) {
        rl_cluster_node_status(h, cs);
        return SQLITE_OK;
    }
    if (rl_host_running(db_path, &pid, grpc, sizeof(grpc)) && grpc[0]) {
        err[0] = 0;
        rc = -1;
        if ((cl = client_get(db_path, err, sizeof(err))) != NULL) {
            rc = rl_cluster_get_status(cl, grpc, RL_CLUSTER_TIMEOUT_MS, cs, err,
                                       sizeof(err));
            client_put(cl);
        }
        if (rc == 0) {
            return SQLITE_OK;
        }
        *errmsg = sqlite3_mprintf("raft_status: %s is hosted by process "
                                  "%ld: %s",
                                  db_path, pid, err);
        return SQLITE_ERROR;
    }
    rc = rl_identity_read(db_path, &ident, err, sizeof(err));
    if (rc == 0) {
        *errmsg = sqlite3_mprintf("raft_status: no process hosts node "
                                  "'%s' of %s; reopen the database "
                                  "(.open) to restart it",
                                  ident.node_id, db_path);
    } else if (rc < 0) {
        *errmsg = sqlite3_mprintf("raft_status: %s", err);
    } else {
        *errmsg = sqlite3_mprintf("raft_status: %s is not a raft node%s; "
                                  "SELECT raft_bootstrap(...) or "
                                  "raft_join(...)",
                                  db_path,
                                  replicated ? " (its -raft directory "
                                               "holds no identity)"
                                             : "");
    }
    return SQLITE_ERROR;
}

/*
** PRAGMA raft_status answers through SQLITE_FCNTL_PRAGMA, whose one
** result SQLite also uses as the column's name (pragma.c): the value is
** the JSON object, and so is the name. SELECT * FROM raft_status has fixed
** columns (name, value).
*/
int rl_sql_pragma(const char *db_path, int replicated, const char *name,
                  const char *arg, char **result)
{
    char json[8192];
    rl_cluster_status cs;
    int rc;
    *result = NULL;
    if (strcmp(name, "raft_status") != 0) {
        return SQLITE_NOTFOUND;
    }
    if (arg) {
        *result = sqlite3_mprintf("PRAGMA raft_status takes no argument; "
                                  "write PRAGMA raft_status");
        return SQLITE_ERROR;
    }
    rc = status_get(db_path, replicated, &cs, result);
    if (rc != SQLITE_OK) {
        return rc;
    }
    rl_cluster_status_json(&cs, json, sizeof(json));
    *result = sqlite3_mprintf("%s", json);
    return *result ? SQLITE_OK : SQLITE_NOMEM;
}

/* raft_status: one row (name, value) per field of PRAGMA raft_status. */
enum {
    ST_ID,
    ST_RAFT_ID,
    ST_STATE,
    ST_TERM,
    ST_LEADER,
    ST_LEADER_GRPC,
    ST_COMMIT,
    ST_APPLIED,
    ST_LAST,
    ST_SNAPSHOT,
    ST_COUNT
};

static const char *const status_names[ST_COUNT] = {
    "id",         "raft_id",       "state",        "term",
    "leader",     "leader_grpc",   "commit_index", "applied_index",
    "last_index", "snapshot_index"};

typedef struct status_cursor {
    sqlite3_vtab_cursor base;
    rl_cluster_status cs;
    int i;
} status_cursor;

static int status_connect(sqlite3 *db, void *aux, int argc,
                          const char *const *argv, sqlite3_vtab **out,
                          char **pzErr)
{
    (void)aux;
    (void)argc;
    (void)argv;
    (void)pzErr;
    return vtab_connect(db, "CREATE TABLE x(name TEXT, value)", out);
}

static int status_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
    (void)vt;
    return cursor_new(sizeof(status_cursor), out);
}

static int status_close(sqlite3_vtab_cursor *cur)
{
    sqlite3_free(cur);
    return SQLITE_OK;
}

static int status_filter(sqlite3_vtab_cursor *cur, int idxNum,
                         const char *idxStr, int argc, sqlite3_value **argv)
{
    status_cursor *c = (status_cursor *)cur;
    nodes_vtab *v = (nodes_vtab *)cur->pVtab;
    const char *path = sqlite3_db_filename(v->db, "main");
    sqlite3_file *f = NULL;
    char *msg = NULL;
    int rc;
    (void)idxNum;
    (void)idxStr;
    (void)argc;
    (void)argv;
    c->i = ST_COUNT;
    if (!path || !*path) {
        return vtab_error(cur->pVtab,
                          "raft_status: the main database is in memory or "
                          "temporary, not a raft node; .open FILE first");
    }
    sqlite3_file_control(v->db, "main", SQLITE_FCNTL_FILE_POINTER, &f);
    rc = status_get(path, f && rl_vfs_is_replicated(f), &c->cs, &msg);
    if (rc != SQLITE_OK) {
        rc = vtab_error(cur->pVtab, "%s", msg ? msg : "out of memory");
        sqlite3_free(msg);
        return rc;
    }
    c->i = 0;
    return SQLITE_OK;
}

static int status_next(sqlite3_vtab_cursor *cur)
{
    ((status_cursor *)cur)->i++;
    return SQLITE_OK;
}

static int status_eof(sqlite3_vtab_cursor *cur)
{
    return ((status_cursor *)cur)->i >= ST_COUNT;
}

static void result_text_or_null(sqlite3_context *ctx, int known, const char *s)
{
    if (known && s && *s) {
        sqlite3_result_text(ctx, s, -1, SQLITE_TRANSIENT);
    } else {
        sqlite3_result_null(ctx);
    }
}

static int status_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx,
                         int col)
{
    status_cursor *c = (status_cursor *)cur;
    const rl_cluster_status *s = &c->cs;
    if (col == 0) {
        sqlite3_result_text(ctx, status_names[c->i], -1, SQLITE_STATIC);
        return SQLITE_OK;
    }
    switch (c->i) {
    case ST_ID:
        sqlite3_result_text(ctx, s->id, -1, SQLITE_TRANSIENT);
        break;
    case ST_RAFT_ID: /* the same bits as raft_nodes.raft_id */
        sqlite3_result_int64(ctx, (sqlite3_int64)s->raft_id);
        break;
    case ST_STATE:
        sqlite3_result_text(ctx, s->state ? s->state : "unavailable", -1,
                            SQLITE_TRANSIENT);
        break;
    case ST_TERM:
        sqlite3_result_int64(ctx, (sqlite3_int64)s->term);
        break;
    case ST_LEADER:
        result_text_or_null(ctx, s->leader_known, s->leader);
        break;
    case ST_LEADER_GRPC:
        result_text_or_null(ctx, s->leader_known, s->leader_grpc);
        break;
    case ST_COMMIT:
        sqlite3_result_int64(ctx, (sqlite3_int64)s->commit_index);
        break;
    case ST_APPLIED:
        sqlite3_result_int64(ctx, (sqlite3_int64)s->applied_index);
        break;
    case ST_LAST:
        sqlite3_result_int64(ctx, (sqlite3_int64)s->last_index);
        break;
    default:
        sqlite3_result_int64(ctx, (sqlite3_int64)s->snapshot_index);
        break;
    }
    return SQLITE_OK;
}

static int status_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    *rowid = ((status_cursor *)cur)->i + 1;
    return SQLITE_OK;
}

static const sqlite3_module status_module = {
    .iVersion = 0,
    .xConnect = status_connect,
    .xBestIndex = small_best_index,
    .xDisconnect = nodes_disconnect,
    .xOpen = status_open,
    .xClose = status_close,
    .xFilter = status_filter,
    .xNext = status_next,
    .xEof = status_eof,
    .xColumn = status_column,
    .xRowid = status_rowid,
};

/* ---- registration ---- */

void rl_sql_init(void)
{
    rl_vfs_set_pragma_handler(rl_sql_pragma);
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
        rc = sqlite3_create_module(db, "raft_nodes", &nodes_module, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_create_module(db, "raft_status", &status_module, NULL);
    }
    return rc;
}
