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

#include "config.h"
#include "conn.h"
#include "host.h"
#include "sidecar.h"
#include "mirror.h"
#include "sql.h"
#include "vfs.h"

#define RL_VERSION "0.1.0"

/* Busy timeout given to every connection: the stock shell's is 0, and a
** replicated database's writers wait for each other and for the applier. */
#define RL_DEFAULT_BUSY_MS 10000

static void version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, RL_VERSION, -1, SQLITE_STATIC);
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
    if (rc == SQLITE_OK)
        rc = rl_conn_attach(db);
    if (rc == SQLITE_OK)
        rc = rl_sql_register(db);
    if (rc == SQLITE_OK && rl_test_mode())
        rc = rl_mirror_register(db);
    if (rc == SQLITE_OK && rl_test_mode())
        rc = sqlite3_create_function(db, "raft_test_stats", 1, SQLITE_UTF8, 0,
                                     test_stats_func, 0, 0);
    return rc;
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
        rl_conn_guard_opened_before_load(db); /* after: it marks the conn */
    if (rc == SQLITE_OK)
        rc = sqlite3_auto_extension((void (*)(void))register_functions);
    return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
}
