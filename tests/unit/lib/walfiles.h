/*
** tests/unit/lib/walfiles.h -- files SQLite wrote, for the WAL format tests
** (test_walfmt, test_walfmt_live): a scratch directory, copies made by a
** child process, connections in WAL mode, the wal-index regions (private,
** copied or live) and a decoded WAL.
**
** Copies of the -shm (and main db) file are made by a forked child: classic
** POSIX locks belong to the process and ANY close() of a descriptor of the
** file drops all of them, so a test must never open and close the files
** SQLite holds locks on. Test code only; nothing under raftd/, vfs/ or ext/
** may include it.
*/
#ifndef RL_TEST_WALFILES_H
#define RL_TEST_WALFILES_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "walfmt.h"

#include "check.h"
#include "mem.h"

static char tmp_root[256];

/* ---- scratch files ---- */

static inline int rm_entry(const char *path, const struct stat *st, int flag,
                           struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void cleanup(void)
{
    if (tmp_root[0])
        nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void path_of(char *out, size_t n, const char *dir,
                           const char *name)
{
    int k = snprintf(out, n, "%s/%s", dir, name);
    CHECK(k > 0 && (size_t)k < n, "path too long");
}

static inline void make_dir(char *out, size_t n, const char *name)
{
    path_of(out, n, tmp_root, name);
    CHECK(mkdir(out, 0700) == 0, "mkdir %s: %s", out, strerror(errno));
}

/* Copies src to dst in a child process (see the file comment for why). */
static inline void copy_via_child(const char *src, const char *dst)
{
    int status;
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        char buf[65536];
        ssize_t n;
        int in = open(src, O_RDONLY);
        int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (in < 0 || out < 0)
            _exit(2);
        while ((n = read(in, buf, sizeof(buf))) > 0) {
            char *p = buf;
            while (n > 0) {
                ssize_t w = write(out, p, (size_t)n);
                if (w <= 0)
                    _exit(3);
                p += w;
                n -= w;
            }
        }
        _exit(n == 0 && close(out) == 0 ? 0 : 4);
    }
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "copy %s -> %s failed (status 0x%x)", src, dst, status);
}

/* Reads a file this process alone uses (a copy). The buffer is padded to
** a multiple of the region size so that region views stay in bounds. */
static inline uint8_t *read_file(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0, cap;
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(fstat(fd, &st) == 0, "fstat");
    cap = ((size_t)st.st_size + RL_SHM_REGION_SIZE - 1) / RL_SHM_REGION_SIZE *
          RL_SHM_REGION_SIZE;
    buf = rl_xmalloc(cap);
    memset(buf, 0, cap);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        CHECK(n > 0, "read %s: %s", path, strerror(errno));
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

static inline void write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(write(fd, p, n) == (ssize_t)n, "write %s", path);
    CHECK(close(fd) == 0, "close %s", path);
}

/* Snapshot of a live database's -wal and -shm (and optionally main file). */
static inline uint8_t *snap(const char *dir, const char *file, size_t *len)
{
    char src[512], dst[512];
    path_of(src, sizeof(src), dir, file);
    snprintf(dst, sizeof(dst), "%s/copy-%d", tmp_root, (int)getpid());
    copy_via_child(src, dst);
    {
        uint8_t *b = read_file(dst, len);
        unlink(dst);
        return b;
    }
}

/* ---- SQLite helpers ---- */

static inline void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    CHECK(rc == SQLITE_OK, "%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static inline sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    CHECK(rc == SQLITE_OK, "open %s: %s", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static inline void close_db(sqlite3 *db)
{
    int rc = sqlite3_close(db);
    CHECK(rc == SQLITE_OK, "close: %s", sqlite3_errstr(rc));
}

/* Text of the first row of a query, columns joined by '|'. */
static inline void query(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    size_t used = 0;
    int i;
    CHECK(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    rc = sqlite3_step(st);
    CHECK(rc == SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    out[0] = 0;
    for (i = 0; i < sqlite3_column_count(st); i++) {
        const char *v = (const char *)sqlite3_column_text(st, i);
        int k = snprintf(out + used, n - used, "%s%s", i ? "|" : "",
                         v ? v : "NULL");
        CHECK(k >= 0 && used + (size_t)k < n, "query result too long");
        used += (size_t)k;
    }
    sqlite3_finalize(st);
}

#define DIGEST_SQL                                                             \
    "SELECT count(*), sum(id), sum(length(b)), "                               \
    "sum(unicode(substr(hex(b), 1 + id % 37, 1)) * id) FROM t"

/* ---- region accessors ---- */

#define MAX_REGIONS 64

/* Private regions, allocated (zeroed) on demand. Each is its own exact
** 32 KiB allocation so ASan catches an access past a region. */
typedef struct mem_regions {
    uint8_t *r[MAX_REGIONS];
} mem_regions;

static inline volatile void *mem_region(void *arg, int i)
{
    mem_regions *m = arg;
    if (i < 0 || i >= MAX_REGIONS)
        return NULL;
    if (m->r[i] == NULL) {
        m->r[i] = rl_xmalloc(RL_SHM_REGION_SIZE);
        memset(m->r[i], 0, RL_SHM_REGION_SIZE);
    }
    return m->r[i];
}

static inline void mem_free(mem_regions *m)
{
    int i;
    for (i = 0; i < MAX_REGIONS; i++) {
        free(m->r[i]);
        m->r[i] = NULL;
    }
}

/* A read-only view of a copied -shm file. */
typedef struct view {
    uint8_t *buf;
    size_t len; /* padded to whole regions */
} view;

static inline volatile void *view_region(void *arg, int i)
{
    view *v = arg;
    if (i < 0 || (size_t)(i + 1) * RL_SHM_REGION_SIZE > v->len)
        return NULL;
    return v->buf + (size_t)i * RL_SHM_REGION_SIZE;
}

/* The live wal-index of an open connection, through its VFS methods. */
static inline volatile void *live_region(void *arg, int i)
{
    sqlite3_file *f = arg;
    void volatile *p = NULL;
    int rc = f->pMethods->xShmMap(f, i, RL_SHM_REGION_SIZE, 1, &p);
    return rc == SQLITE_OK ? p : NULL;
}

/* ---- a decoded WAL ---- */

typedef struct wal {
    rl_wal_hdr hdr;
    uint32_t n_frames;
    uint32_t *pgno;       /* [1..n] */
    uint32_t *commit;     /* [1..n] */
    uint32_t (*cksum)[2]; /* chain after frame f, [0] = header's */
    uint32_t last_commit;
} wal;

/* Decodes every frame of buf, which must all be valid (strict), or stops at
** the first invalid one as SQLite's recovery does. */
static inline void wal_decode_x(const uint8_t *buf, size_t len, wal *w,
                                int strict);

static inline void wal_decode(const uint8_t *buf, size_t len, wal *w)
{
    wal_decode_x(buf, len, w, 1);
}

static inline void wal_decode_x(const uint8_t *buf, size_t len, wal *w,
                                int strict)
{
    uint32_t f, ck[2];
    size_t fsz;
    int rc = rl_wal_hdr_decode(buf, &w->hdr);
    CHECK(rc == 0, "WAL header: %s", rl_walfmt_errstr(rc));
    fsz = (size_t)w->hdr.page_size + RL_WAL_FRAME_HDR_SIZE;
    CHECK((len - RL_WAL_HDR_SIZE) % fsz == 0, "WAL length %zu not whole", len);
    w->n_frames = (uint32_t)((len - RL_WAL_HDR_SIZE) / fsz);
    w->pgno = rl_xmalloc((w->n_frames + 1) * sizeof(uint32_t));
    w->commit = rl_xmalloc((w->n_frames + 1) * sizeof(uint32_t));
    w->cksum = rl_xmalloc((w->n_frames + 1) * sizeof(*w->cksum));
    w->last_commit = 0;
    ck[0] = w->hdr.cksum1;
    ck[1] = w->hdr.cksum2;
    w->cksum[0][0] = ck[0];
    w->cksum[0][1] = ck[1];
    for (f = 1; f <= w->n_frames; f++) {
        const uint8_t *fh = buf + rl_wal_frame_offset(w->hdr.page_size, f);
        int ok = rl_wal_frame_decode(&w->hdr, fh, fh + RL_WAL_FRAME_HDR_SIZE,
                                     ck, &w->pgno[f], &w->commit[f]);
        if (!ok && !strict) {
            w->n_frames = f - 1;
            break;
        }
        CHECK(ok, "frame %u of %u fails the checksum chain", f, w->n_frames);
        w->cksum[f][0] = ck[0];
        w->cksum[f][1] = ck[1];
        if (w->commit[f])
            w->last_commit = f;
    }
}

static inline void wal_free(wal *w)
{
    free(w->pgno);
    free(w->commit);
    free(w->cksum);
}

/* Re-encodes a WAL with another magic (checksum word order), keeping
** everything else; returns a new buffer of the same length. */
static inline uint8_t *wal_reencode(const uint8_t *buf, size_t len,
                                    const wal *w, uint32_t magic)
{
    uint8_t *out = rl_xmalloc(len);
    rl_wal_hdr h = w->hdr;
    uint32_t f, ck[2];
    memcpy(out, buf, len);
    h.magic = magic;
    rl_wal_hdr_encode(&h, out);
    ck[0] = h.cksum1;
    ck[1] = h.cksum2;
    for (f = 1; f <= w->n_frames; f++) {
        uint64_t off = rl_wal_frame_offset(h.page_size, f);
        rl_wal_frame_encode(&h, w->pgno[f], w->commit[f],
                            out + off + RL_WAL_FRAME_HDR_SIZE, ck, out + off);
    }
    return out;
}

/* SQLite's recovery of a WAL we wrote: a fresh directory with a copy of the
** main file and the given WAL, no -shm. Returns the digest and the
** checkpoint's frame count in out. */
static inline void recover_copy(const char *dbfile_copy, const uint8_t *walbuf,
                                size_t len, const char *name, char *out,
                                size_t n)
{
    char dir[512], db[600], walp[640], src[640], ck[100];
    sqlite3 *c;
    make_dir(dir, sizeof(dir), name);
    path_of(db, sizeof(db), dir, "t.db");
    snprintf(walp, sizeof(walp), "%s-wal", db);
    snprintf(src, sizeof(src), "%s", dbfile_copy);
    {
        size_t l;
        uint8_t *b = read_file(src, &l);
        write_file(db, b, l);
        free(b);
    }
    write_file(walp, walbuf, len);
    c = open_db(db);
    {
        /* An unknown table means recovery took no frame. */
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(c, DIGEST_SQL, -1, &st, NULL) != SQLITE_OK) {
            snprintf(out, n, "error: %s", sqlite3_errmsg(c));
            close_db(c);
            return;
        }
        sqlite3_finalize(st);
    }
    query(c, DIGEST_SQL, out, n);
    query(c, "PRAGMA integrity_check", ck, sizeof(ck));
    CHECK(strcmp(ck, "ok") == 0, "%s: integrity_check: %s", name, ck);
    query(c, "PRAGMA wal_checkpoint(PASSIVE)", ck, sizeof(ck));
    {
        size_t k = strlen(out);
        snprintf(out + k, n - k, " ckpt %s", ck);
    }
    close_db(c);
}

/* The scratch directory "$TMPDIR/<name>.XXXXXX" in tmp_root, removed at
** exit. */
static inline void walfiles_setup(const char *name)
{
    const char *tmpdir = getenv("TMPDIR");
    snprintf(tmp_root, sizeof(tmp_root), "%s/%s.XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp", name);
    CHECK(mkdtemp(tmp_root) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(cleanup);
}

#endif
