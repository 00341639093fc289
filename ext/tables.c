/*
** ext/tables.c -- the cluster as tables: raft_nodes (one row per member,
** eponymous table-valued function), raft_status and PRAGMA raft_status
** (this node's Raft state as JSON), for the connection's main database,
** asked of its node in this process or over gRPC of its host.
**
** It must never change the cluster: reads only.
*/
#include "tables.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cluster.h"
#include "conn.h"
#include "host.h"
#include "node.h"
#include "sqlite3ext.h"
#include "vfs.h"
SQLITE_EXTENSION_INIT3

#define ERRLEN 1024

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
        if (!(cl = rl_ext_client_get(path, err, sizeof(err)))) {
            return vtab_error(cur->pVtab, "raft_nodes: %s", err);
        }
        rc = rl_cluster_nodes(cl, grpc, RL_CLUSTER_TIMEOUT_MS, &c->ms,
                              &c->count, err, sizeof(err));
        rl_ext_client_put(cl);
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
        if ((cl = rl_ext_client_get(db_path, err, sizeof(err))) != NULL) {
            rc = rl_cluster_get_status(cl, grpc, RL_CLUSTER_TIMEOUT_MS, cs, err,
                                       sizeof(err));
            rl_ext_client_put(cl);
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
int rl_tables_pragma(const char *db_path, int replicated, const char *name,
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
    ST_READ_POINTS,
    ST_READ_ROUNDS,
    ST_LOCAL_CALLS,
    ST_FORWARD_SESSIONS,
    ST_COUNT
};

static const char *const status_names[ST_COUNT] = {
    "id",          "raft_id",         "state",        "term",
    "leader",      "leader_grpc",     "commit_index", "applied_index",
    "last_index",  "snapshot_index",  "read_points",  "read_rounds",
    "local_calls", "forward_sessions"};

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
    case ST_STATE:
        sqlite3_result_text(ctx, s->state ? s->state : "unavailable", -1,
                            SQLITE_TRANSIENT);
        break;
    case ST_LEADER:
        result_text_or_null(ctx, s->leader_known, s->leader);
        break;
    case ST_LEADER_GRPC:
        result_text_or_null(ctx, s->leader_known, s->leader_grpc);
        break;
    default: {
        /* The integer rows. raft_id has the same bits as
        ** raft_nodes.raft_id (a signed view of the unsigned id). */
        const uint64_t v[ST_COUNT] = {
            [ST_RAFT_ID] = s->raft_id,
            [ST_TERM] = s->term,
            [ST_COMMIT] = s->commit_index,
            [ST_APPLIED] = s->applied_index,
            [ST_LAST] = s->last_index,
            [ST_SNAPSHOT] = s->snapshot_index,
            [ST_READ_POINTS] = s->read_points,
            [ST_READ_ROUNDS] = s->read_rounds,
            [ST_LOCAL_CALLS] = s->local_calls,
            [ST_FORWARD_SESSIONS] = s->forward_sessions,
        };
        sqlite3_result_int64(ctx, (sqlite3_int64)v[c->i]);
        break;
    }
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

int rl_tables_register(sqlite3 *db)
{
    int rc = sqlite3_create_module(db, "raft_nodes", &nodes_module, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_create_module(db, "raft_status", &status_module, NULL);
    }
    return rc;
}
