/*
** raftd/host/setup.c -- making a database replicated: bootstrap (a
** one-node cluster whose initial state is the database as it is) and join
** (an empty database that receives the cluster's as an image).
**
** This file must never leave a half-made node behind: on failure before
** the cluster knows the node, "<db>-raft/" and the adoption are undone.
*/
#include "host_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_fetch.h"

SQLITE_EXTENSION_INIT3

/* How long bootstrap waits for the one-node cluster to lead. */
#define LEAD_TIMEOUT_MS 10000

/* The genesis entry: this node's file, as it is, is the initial state. */
static int host_genesis(rl_host *h, char *err, size_t errlen)
{
    struct rl_proposal p;
    struct rl_result res;
    int rc;
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_GENESIS;
    p.origin_pid = (uint32_t)getpid();
    rc = rl_node_propose(h->node, &p, LEAD_TIMEOUT_MS, &res);
    if (rc != RL_NODE_OK) {
        snprintf(err, errlen, "proposing the genesis entry: %s",
                 res.msg[0] ? res.msg : rl_node_strerror(rc));
        return -1;
    }
    if (rl_node_wait_applied(h->node, res.index, LEAD_TIMEOUT_MS) !=
        RL_NODE_OK) {
        snprintf(err, errlen, "the genesis entry was not applied in time");
        return -1;
    }
    return 0;
}

static pthread_mutex_t setup_mu = PTHREAD_MUTEX_INITIALIZER;
static char setup_path[PATH_MAX];

int rl_host_setting_up(const char *db_path)
{
    int r;
    pthread_mutex_lock(&setup_mu);
    r = setup_path[0] && strcmp(setup_path, db_path) == 0;
    pthread_mutex_unlock(&setup_mu);
    return r;
}

static void set_setup(const char *path)
{
    pthread_mutex_lock(&setup_mu);
    snprintf(setup_path, sizeof setup_path, "%s", path ? path : "");
    pthread_mutex_unlock(&setup_mu);
}

/* Removes what a failed setup created: "<db>-raft/" and everything the
** node wrote in it (all flat files). */
static void remove_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[PATH_MAX];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p)
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_setup(const char *db_path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s-raft/raft", db_path);
    remove_dir_files(p);
    snprintf(p, sizeof p, "%s-raft", db_path);
    remove_dir_files(p);
}

/*
** A joiner installs the cluster's database as an image, which only fits a
** database of the same page size, and SQLite cannot change the page size
** once the file is in WAL mode: ask the peer for its image's page size
** first (rl_image_prepare_joiner). A peer that cannot say (unreachable,
** no image yet) leaves the default; the join itself then reports the
** peer's state. -1 with err only when the database could not be changed.
*/
static int join_page_size(sqlite3 *db, const rl_host_config *cfg, char *err,
                          size_t errlen)
{
    rl_rpc_tls t;
    rl_rpc_client *cl;
    uint32_t ps = 0;
    char why[1024];
    int code;
    rl_err local;
    if (cfg->tls) {
        t = *cfg->tls;
        t.client_auth = 0;
    }
    cl = rl_rpc_client_new(cfg->tls ? &t : NULL, cfg->max_msg_bytes, err,
                           errlen);
    if (!cl)
        return -1;
    code = rl_image_prepare_joiner(cl, cfg->join, db, 10000, &ps, &local, why,
                                   sizeof why);
    rl_rpc_client_free(cl);
    /* The joiner's own database failed (not empty, unreadable), or the
    ** call could not even be made: the join cannot go on. */
    if (local != RL_OK || code == RL_RPC_INTERNAL ||
        code == RL_RPC_RESOURCE_EXHAUSTED) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (code == RL_RPC_UNAVAILABLE || code == RL_RPC_DEADLINE_EXCEEDED) {
        snprintf(err, errlen,
                 "cannot reach the node at %s (%s): is a raftlite node "
                 "serving gRPC there? Give the gRPC address of a running "
                 "member",
                 cfg->join, why);
        return -1;
    }
    if (code != RL_RPC_OK)
        rl_host_log(NULL, 1,
                    "joining: the page size of %s's image is unknown (%s)",
                    cfg->join, why);
    return 0;
}

int rl_host_bootstrap(sqlite3 *db, const rl_host_config *cfg, char *err,
                      size_t errlen)
{
    const char *path = sqlite3_db_filename(db, "main");
    char dir[PATH_MAX];
    rl_host_config c = *cfg;
    rl_host *h = NULL;
    rl_identity id;
    struct stat st;
    int64_t v;
    int made_dir = 0, adopted = 0;

    if (!path || !path[0]) {
        snprintf(err, errlen,
                 "the main database is in memory or temporary: .open a "
                 "database file first");
        return -1;
    }
    if (snprintf(dir, sizeof dir, "%s-raft", path) >= (int)sizeof dir) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    if (rl_identity_read(path, &id, err, errlen) == 0) {
        snprintf(err, errlen,
                 "%s is already node '%s' (its node restarts when the "
                 "database is opened)",
                 path, id.node_id);
        return -1;
    }
    if (rl_host_find(path) || rl_host_running(path, NULL, NULL, 0)) {
        snprintf(err, errlen, "%s already has a running node", path);
        return -1;
    }
    if (!sqlite3_get_autocommit(db)) {
        snprintf(err, errlen,
                 "a transaction is open on this connection: COMMIT or "
                 "ROLLBACK it first");
        return -1;
    }
    if (cfg->join) {
        v = rl_image_query_int(db, "SELECT count(*) FROM main.sqlite_schema");
        if (v != 0 || rl_image_query_int(db, "PRAGMA main.page_count") > 1) {
            snprintf(err, errlen,
                     "%s already holds data; a joining node receives the "
                     "cluster's database: join with an empty database file",
                     path);
            return -1;
        }
        if (join_page_size(db, cfg, err, errlen) != 0)
            return -1;
    }
    /* WAL mode first, while the file is still an ordinary database. */
    if (sqlite3_exec(db, "PRAGMA main.journal_mode=WAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        rl_image_query_int(db, "SELECT count(*) FROM main.sqlite_schema") < 0) {
        snprintf(err, errlen, "cannot put %s in WAL mode: %s", path,
                 sqlite3_errmsg(db));
        return -1;
    }
    set_setup(path);
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
            goto fail;
        }
        made_dir = 1;
    }
    if (rl_vfs_adopt(path, err, errlen) != SQLITE_OK)
        goto fail;
    adopted = 1;
    c.db_path = path;
    c.bootstrap = cfg->join ? 0 : 1;
    if (rl_host_open(&c, &h, err, errlen) != 0)
        goto fail;
    if (!cfg->join) {
        if (rl_node_wait_leader(h->node, LEAD_TIMEOUT_MS) != RL_NODE_OK) {
            snprintf(err, errlen,
                     "the new one-node cluster did not elect itself within "
                     "%d ms",
                     LEAD_TIMEOUT_MS);
            goto fail;
        }
        /* A database that holds data (or has a page size others would not
        ** guess) becomes the initial state through a genesis entry:
        ** joiners receive it as an image. */
        v = rl_image_query_int(h->adb, "SELECT count(*) FROM sqlite_schema");
        if (v != 0 || rl_image_query_int(h->adb, "PRAGMA page_count") > 1 ||
            rl_image_query_int(h->adb, "PRAGMA page_size") != 4096) {
            if (host_genesis(h, err, errlen) != 0)
                goto fail;
        }
    } else {
        struct rl_meta self;
        char lg[RL_META_STR_MAX + 1];
        uint64_t target = 0;
        /* Ask the peer (a follower forwards to the leader); retried while
        ** the cluster has no leader. */
        rl_host_self(h, &self);
        if (rl_cluster_join(h->cl, cfg->join, &self, 15000, lg, sizeof lg, err,
                            errlen) != 0)
            goto fail;
        /* Caught up: applied the leader's read index as of now, i.e. its
        ** last FSM entry (a commit index may be a configuration entry,
        ** which never reaches the applier: waiting for it would hang). */
        if (rl_cluster_read_index(h->cl, lg, 15000, NULL, &target, NULL, err,
                                  errlen) != 0)
            goto fail_joined;
        if (rl_node_wait_applied(h->node, target, 60000) != RL_NODE_OK) {
            snprintf(err, errlen,
                     "joined, but this node did not catch up to index %llu "
                     "within 60 s",
                     (unsigned long long)target);
            goto fail_joined;
        }
    }
    set_setup(NULL);
    return 0;

fail_joined:
    /* The cluster has this node as a member now: keep the node running
    ** (it keeps catching up) rather than undo a membership change. */
    set_setup(NULL);
    return -1;
fail:
    if (h)
        rl_host_close(h);
    if (adopted)
        rl_vfs_unadopt(path);
    if (made_dir)
        remove_setup(path);
    set_setup(NULL);
    return -1;
}

/* host.h: the path-taking entry of fresh.c's confirmation (ext/'s commit
** hook asks it for a write transaction that changed nothing). */
int rl_host_confirm_unchanged(const char *db_path, char *why, size_t whylen)
{
    rl_host *h = rl_host_find(db_path);
    long pid = 0;
    char grpc[512] = "";
    int began = rl_host_writer.began;
    uint64_t base = rl_host_writer.base;
    why[0] = 0;
    if (h)
        return rl_host_fresh_confirm(h, began, base, COMMIT_TIMEOUT_MS, why,
                                     whylen) == RL_OUTCOME_APPLIED
                   ? 0
                   : -1;
    if (rl_host_setting_up(db_path))
        return 0;
    if (rl_host_running(db_path, &pid, grpc, sizeof grpc))
        snprintf(why, whylen,
                 "%s is hosted by process %ld (gRPC %s): this process cannot "
                 "prove that a transaction which changed nothing read the "
                 "latest state; nothing was written: write through that node",
                 db_path, pid, grpc[0] ? grpc : "?");
    else
        return 0; /* no node runs anywhere: nothing newer to be stale
                     against (a write with pages is refused by the port) */
    return -1;
}
