/*
** raftd/host/rebuild.c -- the applier's connection and the database's
** trust: opening it at start (reading the applied index, recreating a
** removed file), rebuilding a database whose files do not match its
** applied record, and installing a peer's image (a joiner, a node behind
** the cluster's snapshot, a rebuild).
**
** This file must never write an entry onto a file whose content is unknown:
** while a rebuild is under way only a whole image may be installed.
*/
#include "host_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsio.h"
#include "image_fetch.h"
#include "walfmt.h"

SQLITE_EXTENSION_INIT3

static void rebuild_end(rl_host *h, uint64_t index);

/*
** Rebuild, second half (applier thread): while h->rebuild is set the file's
** content is unknown, so no entry may be written on it. At the first entry
** the applier gets, fetch a peer's image at least as recent as the FSM's L
** (the last database-changing entry the FSM applied: the FSM is at or past
** this entry, so L covers every such entry up to it) and install it
** (vfs/image.c: one commit of every page, so whatever the WAL and file held
** is replaced); the entries the image covers are then skipped as usual. A
** snapshot restored at start asks for its image the usual way
** (host_restore finds db_index 0 below its L). Returns 1 when the entry is
** handled here.
*/
int rl_host_rebuild_apply(rl_host *h, const struct rl_applied *e)
{
    struct rl_node_status st;
    if (!rl_host_wait_node(h))
        return 1;
    rl_node_status(h->node, &st);
    if (st.L == 0) {
        /* Nothing database-changing in the log yet. */
        rl_host_advance(h, e->index, 0);
        return 1;
    }
    rl_host_log(h, 1, "rebuilding %s: fetching an image at index >= %llu",
                h->db_path, (unsigned long long)st.L);
    while (!rl_host_stopping(h) && rl_host_fetch_image(h, st.L, NULL) != 0)
        rl_sleep_ms(1000);
    return rl_host_stopping(h);
}

/* Fetches an image at index >= min_index from a peer and installs it
** (image_fetch.h), on the applier thread with the applier's
** connection. The known leader is asked first (most likely up to date),
** then every other member with a gRPC address. 0 once installed; the file
** then reflects the image's index, recorded as database-changing. */
int rl_host_fetch_image(rl_host *h, uint64_t min_index,
                        const struct rl_manifest *m)
{
    struct rl_member *mem = NULL;
    const char **peers = NULL;
    unsigned n = 0, i, k = 0, pass;
    char *tmp = NULL, err[2048];
    uint64_t idx = 0;
    int rc = 1;
    if (!rl_host_wait_node(h))
        return 1;
    if (rl_node_members(h->node, &mem, &n) != RL_NODE_OK) {
        mem = NULL;
        n = 0;
    }
    peers = calloc(n + (m ? m->n_members : 0) + 1, sizeof *peers);
    tmp = sqlite3_mprintf("%s/image.tmp", h->dir);
    if (!peers || !tmp) {
        rl_host_log(h, 0, "image fetch: out of memory");
        goto out;
    }
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < n; i++)
            if (mem[i].raft_id != h->raft_id && mem[i].has_meta &&
                mem[i].meta.grpc_addr[0] &&
                (pass == 0) == (mem[i].is_leader != 0))
                peers[k++] = mem[i].meta.grpc_addr;
    /* A node that just joined may know the cluster only from the
    ** snapshot's manifest so far: its members are peers too. */
    for (i = 0; m && i < m->n_members; i++) {
        unsigned j;
        const struct rl_meta *mm = &m->members[i];
        if (mm->raft_id == h->raft_id || !mm->grpc_addr[0])
            continue;
        for (j = 0; j < k && strcmp(peers[j], mm->grpc_addr) != 0; j++)
            ;
        if (j == k)
            peers[k++] = mm->grpc_addr;
    }
    if (k == 0) {
        /* A joiner applies the genesis entry before the raft thread has
        ** applied the metadata entries that follow it and name the peers'
        ** gRPC addresses: that is no fault for the first seconds. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!h->no_peer_since)
            h->no_peer_since = now.tv_sec;
        if (now.tv_sec - h->no_peer_since < 5) {
            rl_host_log(h, 2,
                        "database needs an image at index >= %llu: no peer's "
                        "address known yet (retrying)",
                        (unsigned long long)min_index);
            goto out;
        }
    } else {
        h->no_peer_since = 0;
    }
    if (rl_image_restore(h->cl, peers, k, h->adb, tmp, min_index, &idx, err,
                         sizeof err) == RL_RPC_OK) {
        rl_host_log(h, 2,
                    "installed a database image at index %llu (needed >= %llu)",
                    (unsigned long long)idx, (unsigned long long)min_index);
        if (h->rebuild)
            rebuild_end(h, idx);
        rl_host_advance(h, idx, 1);
        rc = 0;
    } else {
        rl_host_log(h, 1,
                    "database needs an image at index >= %llu: %s (retrying)",
                    (unsigned long long)min_index, err);
    }
out:
    sqlite3_free(tmp);
    free(peers);
    free(mem);
    return rc;
}

/*
** Rebuild, first half (start path): the applied record does not describe
** the WAL beside it (rl_vfs_applied said SQLITE_CORRUPT), e.g. an OS crash
** kept a record whose commit frame the WAL lost, or lost a WAL restart the
** record saw. Neither the file nor the record can be trusted, and replay
** from the log would apply page images onto an unknown base. So the node
** starts with its database marked unknown: the record is reset to "nothing
** applied" at the WAL's current end (so images can be installed and
** writers on this node get SQLITE_BUSY until one is, since their base is
** behind L), and the applier fetches a peer's image before it writes
** anything (rl_host_rebuild_apply, host_restore). The node's Raft log and
** identity are kept.
*/
static int rebuild_begin(rl_host *h, const char *why, char *err, size_t errlen)
{
    char e2[512], path[PATH_MAX];
    int fd;
    rl_host_log(h, 0,
                "%s: %s; the local database cannot be trusted: discarding what "
                "it holds and rebuilding it from a peer's image",
                h->db_path, why);
    /* The marker first: a crash before the image is installed (and
    ** synced) must find the rebuild still to do, not a record that now
    ** matches its WAL. */
    if (rl_host_path(path, sizeof path, h->dir, "/rebuild") != 0) {
        snprintf(err, errlen, "%s; path too long", why);
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s; cannot create %s: %s", why, path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd); /* our own marker file: no SQLite lock on it */
    fd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            rl_host_log(h, 1, "cannot sync %s: %s", h->dir, strerror(errno));
        close(fd);
    }
    if (rl_vfs_set_applied(h->af, 0, 10000, e2, sizeof e2) != SQLITE_OK) {
        snprintf(err, errlen, "%s; resetting its applied record failed: %s",
                 why, e2);
        return -1;
    }
    h->db_index = h->applied = 0;
    __atomic_store_n(&h->rebuild, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Rebuild done (applier thread): the image at index is installed; once it
** and its record are synced the marker goes. */
static void rebuild_end(rl_host *h, uint64_t index)
{
    char path[PATH_MAX];
    if (rl_vfs_sync(h->af) != SQLITE_OK) {
        rl_host_log(h, 0,
                    "%s: cannot sync the rebuilt database; the rebuild "
                    "will be done again at the next start",
                    h->db_path);
    } else if (rl_host_path(path, sizeof path, h->dir, "/rebuild") == 0 &&
               unlink(path) != 0 && errno != ENOENT) {
        rl_host_log(h, 1, "cannot remove %s: %s", path, strerror(errno));
    }
    rl_host_log(h, 1, "%s rebuilt from a peer's image at index %llu",
                h->db_path, (unsigned long long)index);
    __atomic_store_n(&h->rebuild, 0, __ATOMIC_RELEASE);
}

/*
** The node has an identity, so its database file existed; missing or empty
** now, it was removed behind the node's back. SQLite cannot make an empty
** file a WAL database through the raft VFS (that takes a rollback journal,
** which the VFS refuses for a replicated database), so a fresh empty WAL
** database is made here through the unix VFS, with the page size of the
** WAL left beside it (else SQLite's default): the start check then finds
** the applied record naming frames the files lack, and the node rebuilds
** from a peer's image. Runs before any connection of this process has
** the file open (the opening connection is still in its xOpen), so the
** unix connection's close drops no lock of ours.
*/
static int recreate_removed_db(rl_host *h, char *err, size_t errlen)
{
    struct stat st;
    unsigned ps = 4096;
    uint8_t w[32];
    char *wal, *sql;
    sqlite3 *db = NULL;
    int fd, rc;
    if (stat(h->db_path, &st) == 0 && st.st_size > 0)
        return 0;
    wal = sqlite3_mprintf("%s-wal", h->db_path);
    fd = wal ? open(wal, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        rl_wal_hdr wh;
        if (read(fd, w, sizeof w) == (ssize_t)sizeof w &&
            rl_wal_hdr_decode(w, &wh) == 0)
            ps = wh.page_size;
        close(fd); /* no SQLite connection has it open yet */
    }
    sqlite3_free(wal);
    rl_host_log(
        h, 0,
        "%s is missing or empty although node %s has an identity: it was "
        "removed; an empty database (page size %u) takes its place and is "
        "rebuilt from a peer's image",
        h->db_path, h->id.node_id, ps);
    sql = sqlite3_mprintf("PRAGMA page_size=%u; PRAGMA journal_mode=WAL;", ps);
    rc = sql ? sqlite3_open_v2(h->db_path, &db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                               "unix")
             : SQLITE_NOMEM;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot recreate the removed %s: %s", h->db_path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    sqlite3_free(sql);
    return rc == SQLITE_OK ? 0 : -1;
}

int rl_host_open_applier(rl_host *h, char *err, size_t errlen)
{
    int rc, stock_ckpt;
    struct stat st;
    char wal[PATH_MAX], shm[PATH_MAX];
    if (recreate_removed_db(h, err, errlen) != 0)
        return -1;
    /* Neither WAL nor wal-index: SQLite's last connection checkpointed
    ** everything into the database file and removed both on close, which
    ** a stock sqlite3 does (raftlite keeps them: PERSIST_WAL). That file
    ** then holds the applied index, and its empty WAL is not a lost one.
    ** (A WAL lost otherwise leaves the -shm, or an empty WAL, behind.) */
    snprintf(wal, sizeof wal, "%s-wal", h->db_path);
    snprintf(shm, sizeof shm, "%s-shm", h->db_path);
    stock_ckpt = stat(wal, &st) != 0 && stat(shm, &st) != 0;
    rc = sqlite3_open_v2(h->db_path, &h->adb,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, "raft");
    if (rc == SQLITE_OK)
        rc = sqlite3_file_control(h->adb, "main", SQLITE_FCNTL_FILE_POINTER,
                                  &h->af);
    if (rc == SQLITE_OK && !rl_vfs_is_replicated(h->af)) {
        snprintf(err, errlen, "%s is not a replicated database (no %s/)",
                 h->db_path, h->dir);
        return -1;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->adb, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = rl_host_applier_read(h);
    /* A malformed file (pages missing, garbage) still has its WAL open
    ** here: the start check below names what is wrong, else the
    ** malformation itself is the cause; either way the node rebuilds. */
    int malformed = (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) &&
                    rl_vfs_wal_file(h->af) != NULL;
    char why_malformed[300];
    snprintf(why_malformed, sizeof why_malformed,
             "%s: the database file is malformed (SQLite: %s)", h->db_path,
             sqlite3_errmsg(h->adb));
    if (malformed)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s for the applier: %s", h->db_path,
                 h->adb ? sqlite3_errmsg(h->adb) : "no memory");
        return -1;
    }
    sqlite3_busy_timeout(h->adb, 10000);
    if (stock_ckpt && !malformed) {
        char e2[512] = "";
        rl_host_log(
            h, 1,
            "%s: its WAL and wal-index were removed by a checkpoint of a "
            "process without raftlite; the database file is taken as "
            "holding what the applied record says (a write by such a "
            "process cannot be told apart in this case)",
            h->db_path);
        if (rl_vfs_mark_backfilled(h->af, 10000, e2, sizeof e2) != SQLITE_OK)
            rl_host_log(h, 1, "%s: %s", h->db_path, e2);
    }
    {
        char marker[PATH_MAX];
        if (rl_host_path(marker, sizeof marker, h->dir, "/rebuild") == 0 &&
            access(marker, F_OK) == 0)
            return rebuild_begin(h, "a rebuild begun earlier did not finish",
                                 err, errlen);
    }
    for (int i = 0;; i++) {
        uint64_t idx;
        char e2[512];
        rc = rl_vfs_applied(h->af, 10000, &idx, e2, sizeof e2);
        if (rc == SQLITE_OK && malformed)
            return rebuild_begin(h, why_malformed, err, errlen);
        if (rc == SQLITE_OK) {
            h->db_index = h->applied = idx;
            return 0;
        }
        if (rc == SQLITE_BUSY_RECOVERY && i < 3) {
            rl_host_applier_read(h);
            continue;
        }
        if (rc == SQLITE_CORRUPT)
            return rebuild_begin(h, e2, err, errlen);
        snprintf(err, errlen, "%s", e2);
        return -1;
    }
}
