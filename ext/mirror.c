/*
** ext/mirror.c -- the test-only "mirror" replicator.
**
** It proves capture and apply without Raft: in a process started with
** RAFTLITE_TEST=1 and RAFTLITE_MIRROR=<log>, every committed transaction of
** every replicated database is appended to <log> (one framed rl_txn
** record each); raft_mirror_apply(<log>) applies the records a database
** has not applied yet, through the VFS apply path, on a connection of its
** own. It is compiled in but inert unless RAFTLITE_TEST=1: it is not a
** replication mode and must never be used as one (no durability, no
** ordering between processes beyond O_APPEND).
**
** Log format: per record, u32 magic "RLMR" (little-endian), u32 zero, u64
** length, then the rl_txn encoding (a multiple of 8 bytes).
*/
#include "sqlite3ext.h"
#include "fsio.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "mirror.h"
#include "txn.h"
#include "vfs.h"

#define MIRROR_MAGIC 0x524d4c52u /* "RLMR" */

static int mirror_commit(void *ctx, const char *db_path, const rl_txn *txn,
                         rl_commit_info *ci, char *err, size_t errlen)
{
    (void)ci; /* no index: the mirror keeps its own position file */
    const char *log = ctx;
    size_t n = rl_txn_encoded_size(txn);
    uint8_t *buf = malloc(16 + n);
    uint32_t hdr[2] = {MIRROR_MAGIC, 0};
    uint64_t len = n;
    int fd, rc = SQLITE_OK;
    (void)db_path;
    if (getenv("RAFTLITE_MIRROR_REFUSE")) {
        /* Lets tests see a refusing port. */
        snprintf(err, errlen,
                 "mirror refuses commits "
                 "(RAFTLITE_MIRROR_REFUSE is set)");
        free(buf);
        return SQLITE_READONLY;
    }
    if (!buf)
        return SQLITE_IOERR_NOMEM;
    memcpy(buf, hdr, 8);
    memcpy(buf + 8, &len, 8);
    if (rl_txn_encode(txn, buf + 16, n) != 0) {
        snprintf(err, errlen, "cannot encode the transaction");
        free(buf);
        return SQLITE_IOERR;
    }
    fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || rl_write_all(fd, buf, 16 + n) != 0) {
        snprintf(err, errlen, "cannot append to mirror log %s: %s", log,
                 strerror(errno));
        rc = SQLITE_IOERR;
    }
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static rl_port mirror_port;

const rl_port *rl_mirror_port(void)
{
    const char *log;
    if (!rl_test_mode())
        return 0;
    log = getenv("RAFTLITE_MIRROR");
    if (!log || !*log)
        return 0;
    mirror_port.ctx = (void *)log;
    mirror_port.commit = mirror_commit;
    return &mirror_port;
}

/* Reads the file from byte offset from to its end; *n receives the number
** of bytes read. NULL with errno set on failure (ENOENT: no log yet). */
static uint8_t *slurp(const char *path, uint64_t from, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = 0;
    long sz;
    *n = 0;
    if (!f)
        return 0;
    if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 &&
        (uint64_t)sz >= from && fseek(f, (long)from, SEEK_SET) == 0) {
        size_t want = (size_t)((uint64_t)sz - from);
        buf = malloc(want + 1);
        if (buf && fread(buf, 1, want, f) != want) {
            free(buf);
            buf = 0;
        }
        *n = want;
    }
    fclose(f);
    return buf;
}

static uint64_t read_pos(const char *pos_path)
{
    FILE *f = fopen(pos_path, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

static int write_pos(const char *pos_path, uint64_t v)
{
    FILE *f = fopen(pos_path, "w");
    if (!f)
        return -1;
    fprintf(f, "%llu\n", (unsigned long long)v);
    return fclose(f);
}

/*
** raft_mirror_apply(LOG) -- applies the records of LOG after the position
** kept in "<db>-raft/mirror-pos-<LOG's file name>" to the main database of
** this connection,
** on a private connection of its own; returns the number of WAL frames
** appended.
*/
static void mirror_apply_func(sqlite3_context *ctx, int argc,
                              sqlite3_value **argv)
{
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    const char *log = (const char *)sqlite3_value_text(argv[0]);
    sqlite3_file *mf = 0;
    sqlite3 *adb = 0;
    sqlite3_file *af = 0;
    const char *path;
    char *pos_path = 0, *msg = 0;
    uint8_t *buf = 0;
    size_t n = 0;
    uint64_t pos, start;
    int rc;
    uint64_t frames_total = 0;
    (void)argc;

    if (!rl_test_mode()) {
        sqlite3_result_error(ctx,
                             "raft_mirror_apply() is a test-only function: "
                             "set RAFTLITE_TEST=1",
                             -1);
        return;
    }
    if (!log) {
        sqlite3_result_error(ctx, "raft_mirror_apply(LOG): LOG is NULL", -1);
        return;
    }
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &mf) !=
            SQLITE_OK ||
        !rl_vfs_is_replicated(mf)) {
        sqlite3_result_error(ctx,
                             "raft_mirror_apply: the main database is not "
                             "replicated (no <db>-raft/ directory)",
                             -1);
        return;
    }
    path = rl_vfs_path(mf);
    {
        const char *base = strrchr(log, '/');
        pos_path = sqlite3_mprintf("%s-raft/mirror-pos-%s", path,
                                   base ? base + 1 : log);
    }
    if (!pos_path) {
        sqlite3_result_error_nomem(ctx);
        goto out;
    }
    start = pos = read_pos(pos_path);
    errno = 0;
    buf = slurp(log, start, &n);
    if (!buf && errno != ENOENT) {
        msg = sqlite3_mprintf("raft_mirror_apply: cannot read %s", log);
        goto out;
    }

    rc = sqlite3_open_v2(path, &adb, SQLITE_OPEN_READWRITE, "raft");
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(adb, "SELECT count(*) FROM sqlite_schema", 0, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_file_control(adb, "main", SQLITE_FCNTL_FILE_POINTER, &af);
    if (rc != SQLITE_OK) {
        msg = sqlite3_mprintf("raft_mirror_apply: cannot open %s: %s", path,
                              adb ? sqlite3_errmsg(adb) : "out of memory");
        goto out;
    }

    while (buf && pos - start + 16 <= n) {
        uint32_t magic;
        uint64_t len;
        rl_txn t;
        char err[512];
        uint32_t frames = 0;
        const uint8_t *rec = buf + (pos - start);
        memcpy(&magic, rec, 4);
        memcpy(&len, rec + 8, 8);
        if (magic != MIRROR_MAGIC || len > n - (pos - start) - 16) {
            msg = sqlite3_mprintf("raft_mirror_apply: log damaged at offset "
                                  "%llu",
                                  (unsigned long long)pos);
            goto out;
        }
        if (rl_txn_decode(rec + 16, (size_t)len, &t, err, sizeof err)) {
            msg = sqlite3_mprintf("raft_mirror_apply: bad record at %llu: %s",
                                  (unsigned long long)pos, err);
            goto out;
        }
        rc = rl_vfs_apply(af, &t, 0, 10000, &frames, err, sizeof err);
        if (rc == SQLITE_BUSY_RECOVERY) {
            sqlite3_exec(adb, "SELECT count(*) FROM sqlite_schema", 0, 0, 0);
            rc = rl_vfs_apply(af, &t, 0, 10000, &frames, err, sizeof err);
        }
        rl_txn_free(&t);
        if (rc != SQLITE_OK) {
            msg = sqlite3_mprintf("raft_mirror_apply: %s (%s)", err,
                                  sqlite3_errstr(rc));
            goto out;
        }
        frames_total += frames;
        pos += 16 + len;
        if (write_pos(pos_path, pos) != 0) {
            msg =
                sqlite3_mprintf("raft_mirror_apply: cannot write %s", pos_path);
            goto out;
        }
    }
out:
    if (adb)
        sqlite3_close(adb);
    if (msg) {
        sqlite3_result_error(ctx, msg, -1);
        sqlite3_free(msg);
    } else {
        sqlite3_result_int64(ctx, (sqlite3_int64)frames_total);
    }
    free(buf);
    sqlite3_free(pos_path);
}

int rl_mirror_register(sqlite3 *db)
{
    return sqlite3_create_function(db, "raft_mirror_apply", 1, SQLITE_UTF8, 0,
                                   mirror_apply_func, 0, 0);
}
