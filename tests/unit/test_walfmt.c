/*
** tests/unit/test_walfmt.c -- vfs/walfmt against files stock SQLite wrote.
**
** For several page sizes (512 .. 65536) the test lets libsqlite3 write a
** WAL-mode database (wal_autocheckpoint=0, so nothing leaves the WAL) with
** enough frames to fill more than two wal-index regions, then, with the
** connection still open, takes copies of its -wal and -shm files and checks:
**   - the WAL header decodes and every frame continues the checksum chain;
**   - rl_shm_hdr_read of the stock wal-index agrees with the WAL (mxFrame,
**     nPage, salts, frame checksum, page size) and rl_shm_hdr_write
**     reproduces the stock header bytes;
**   - rebuilding the hash index from the frames with rl_shm_append gives
**     regions byte-identical to the stock ones (header excepted), and
**     rl_shm_find agrees with the stock index and a linear scan;
**   - re-encoding the WAL with big-endian checksum words is accepted by a
**     fresh SQLite connection's recovery (all data back), and re-encoding
**     that back gives the stock bytes; a WAL with the wrong word order is
**     rejected (the check can fail);
**   - frames appended and published by walfmt alone (WAL write, hash index,
**     header) into a live database are seen by stock readers, while a
**     reader inside an older snapshot keeps it.
** Plus negative cases of every decoder and the hash-index edge cases.
**
** Copies of the -shm (and main db) file are made by a forked child: classic
** POSIX locks belong to the process and ANY close() of a descriptor of the
** file drops all of them, so this process must never open and close the
** files SQLite holds locks on. The child's open/read/close releases only the
** child's locks (it inherits none). The -wal file is locked by nobody, so
** reading or writing it through our own descriptor is safe; it is copied
** the same way anyway, for uniformity.
*/
#include "walfmt.h"
#include "bytes.h"

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

#include "lib/check.h"
#include "lib/mem.h"

static int rl_checks;
static char tmp_root[256];

/* ---- scratch files ---- */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (tmp_root[0])
        nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_of(char *out, size_t n, const char *dir, const char *name)
{
    int k = snprintf(out, n, "%s/%s", dir, name);
    CHECK(k > 0 && (size_t)k < n, "path too long");
}

static void make_dir(char *out, size_t n, const char *name)
{
    path_of(out, n, tmp_root, name);
    CHECK(mkdir(out, 0700) == 0, "mkdir %s: %s", out, strerror(errno));
}

/* Copies src to dst in a child process (see the file comment for why). */
static void copy_via_child(const char *src, const char *dst)
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
static uint8_t *read_file(const char *path, size_t *len)
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

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(write(fd, p, n) == (ssize_t)n, "write %s", path);
    CHECK(close(fd) == 0, "close %s", path);
}

/* Snapshot of a live database's -wal and -shm (and optionally main file). */
static uint8_t *snap(const char *dir, const char *file, size_t *len)
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

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    CHECK(rc == SQLITE_OK, "%s: %s", sql, err ? err : sqlite3_errstr(rc));
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    CHECK(rc == SQLITE_OK, "open %s: %s", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void close_db(sqlite3 *db)
{
    int rc = sqlite3_close(db);
    CHECK(rc == SQLITE_OK, "close: %s", sqlite3_errstr(rc));
}

/* Text of the first row of a query, columns joined by '|'. */
static void query(sqlite3 *db, const char *sql, char *out, size_t n)
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

static volatile void *mem_region(void *arg, int i)
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

static void mem_free(mem_regions *m)
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

static volatile void *view_region(void *arg, int i)
{
    view *v = arg;
    if (i < 0 || (size_t)(i + 1) * RL_SHM_REGION_SIZE > v->len)
        return NULL;
    return v->buf + (size_t)i * RL_SHM_REGION_SIZE;
}

/* The live wal-index of an open connection, through its VFS methods. */
static volatile void *live_region(void *arg, int i)
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
static void wal_decode_x(const uint8_t *buf, size_t len, wal *w, int strict);

static void wal_decode(const uint8_t *buf, size_t len, wal *w)
{
    wal_decode_x(buf, len, w, 1);
}

static void wal_decode_x(const uint8_t *buf, size_t len, wal *w, int strict)
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

static void wal_free(wal *w)
{
    free(w->pgno);
    free(w->commit);
    free(w->cksum);
}

/* Re-encodes a WAL with another magic (checksum word order), keeping
** everything else; returns a new buffer of the same length. */
static uint8_t *wal_reencode(const uint8_t *buf, size_t len, const wal *w,
                             uint32_t magic)
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

/* ---- scenario: a database written by stock SQLite ---- */

typedef struct scenario {
    uint32_t page_size;
    uint32_t min_frames; /* the plan must produce at least this many */
    int big_rows;        /* rows of the first, large transaction */
    int blob;            /* their blob size */
    int updates;         /* rows updated in the second transaction */
    int small_txns;      /* one-row transactions afterwards */
    int vacuum;          /* delete half and VACUUM (shrinks the db) */
} scenario;

static void write_scenario(sqlite3 *db, const scenario *s)
{
    char sql[512];
    int i;
    snprintf(sql, sizeof(sql),
             "PRAGMA page_size=%u; PRAGMA journal_mode=WAL;"
             "PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=OFF;"
             "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);",
             s->page_size);
    exec(db, sql);
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
             "WHERE i<%d) INSERT INTO t SELECT i, randomblob(%d) FROM c;",
             s->big_rows, s->blob);
    exec(db, sql);
    if (s->updates) {
        snprintf(sql, sizeof(sql),
                 "UPDATE t SET b = randomblob(%d) WHERE id <= %d;", s->blob,
                 s->updates);
        exec(db, sql);
    }
    for (i = 0; i < s->small_txns; i++) {
        snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, randomblob(%d));",
                 1000000 + i, 10 + i % 200);
        exec(db, sql);
    }
    if (s->vacuum) {
        exec(db, "DELETE FROM t WHERE id % 2 = 0;");
        exec(db, "VACUUM;");
    }
}

/* Latest frame in [min, mx] holding each page, by linear scan. */
static uint32_t *scan_latest(const wal *w, uint32_t min, uint32_t mx,
                             uint32_t max_pgno)
{
    uint32_t *last = rl_xmalloc((max_pgno + 1) * sizeof(uint32_t));
    uint32_t f;
    memset(last, 0, (max_pgno + 1) * sizeof(uint32_t));
    for (f = min ? min : 1; f <= mx; f++) {
        if (w->pgno[f] <= max_pgno)
            last[w->pgno[f]] = f;
    }
    return last;
}

static uint32_t max_pgno_of(const wal *w)
{
    uint32_t f, m = 0;
    for (f = 1; f <= w->n_frames; f++)
        if (w->pgno[f] > m)
            m = w->pgno[f];
    return m;
}

static void check_find(const wal *w, view *stock, mem_regions *mine,
                       uint32_t min, uint32_t mx)
{
    uint32_t top = max_pgno_of(w) + 3;
    uint32_t *want = scan_latest(w, min, mx, top);
    uint32_t p;
    for (p = 1; p <= top; p++) {
        uint32_t a = 99, b = 99;
        int rc = rl_shm_find(view_region, stock, min, mx, p, &a);
        CHECK(rc == 0, "find in stock index: %s", rl_walfmt_errstr(rc));
        rc = rl_shm_find(mem_region, mine, min, mx, p, &b);
        CHECK(rc == 0, "find in rebuilt index: %s", rl_walfmt_errstr(rc));
        CHECK(a == want[p] && b == want[p],
              "page %u in frames [%u,%u]: stock index %u, rebuilt %u, scan %u",
              p, min, mx, a, b, want[p]);
    }
    free(want);
}

/* Builds an index of frames 1..upto of w into m, each transaction's frames
** appended with mx_frame = the previous commit frame. */
static void rebuild(const wal *w, mem_regions *m, uint32_t upto)
{
    uint32_t f, mx = 0;
    for (f = 1; f <= upto; f++) {
        int rc = rl_shm_append(mem_region, m, mx, f, w->pgno[f]);
        CHECK(rc == 0, "append frame %u: %s", f, rl_walfmt_errstr(rc));
        if (w->commit[f])
            mx = f;
    }
}

/* Regions 0..last of a and b are equal (region 0 from byte 136). */
static int regions_equal(volatile void *(*fa)(void *, int), void *a,
                         volatile void *(*fb)(void *, int), void *b, int last)
{
    int i;
    for (i = 0; i <= last; i++) {
        size_t from = i == 0 ? RL_SHM_HDR_SIZE : 0;
        const uint8_t *ra = (const uint8_t *)fa(a, i);
        const uint8_t *rb = (const uint8_t *)fb(b, i);
        if (ra == NULL || rb == NULL)
            return 0;
        if (memcmp(ra + from, rb + from, RL_SHM_REGION_SIZE - from) != 0) {
            size_t k;
            for (k = from; k < RL_SHM_REGION_SIZE && ra[k] == rb[k]; k++)
                ;
            fprintf(stderr, "region %d differs first at byte %zu\n", i, k);
            return 0;
        }
    }
    return 1;
}

/* SQLite's recovery of a WAL we wrote: a fresh directory with a copy of the
** main file and the given WAL, no -shm. Returns the digest and the
** checkpoint's frame count in out. */
static void recover_copy(const char *dbfile_copy, const uint8_t *walbuf,
                         size_t len, const char *name, char *out, size_t n)
{
    char dir[512], db[600], walp[640], src[512], ck[100];
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

static void run_scenario(const scenario *s)
{
    char dir[512], db[600], name[64], digest[256], got[300], want[300];
    char dbcopy[600];
    sqlite3 *c;
    uint8_t *walbuf, *shmbuf;
    size_t wallen, shmlen;
    wal w;
    rl_shm_hdr sh;
    view stock;
    mem_regions mine;
    int rc, last_region, i;

    snprintf(name, sizeof(name), "ps%u", s->page_size);
    make_dir(dir, sizeof(dir), name);
    path_of(db, sizeof(db), dir, "t.db");
    c = open_db(db);
    write_scenario(c, s);
    query(c, DIGEST_SQL, digest, sizeof(digest)); /* also sets a read mark */

    /* Snapshots while the connection (and so the -shm) is alive. */
    walbuf = snap(dir, "t.db-wal", &wallen);
    shmbuf = snap(dir, "t.db-shm", &shmlen);
    snprintf(dbcopy, sizeof(dbcopy), "%s/%s-main", tmp_root, name);
    {
        char src[600];
        path_of(src, sizeof(src), dir, "t.db");
        copy_via_child(src, dbcopy);
    }

    /* The WAL: header and every frame's checksum. */
    wal_decode(walbuf, wallen, &w);
    CHECK(w.hdr.page_size == s->page_size, "page size %u", w.hdr.page_size);
    CHECK(w.hdr.magic ==
              (RL_WAL_MAGIC | (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)),
          "stock magic is the host order: %08x", w.hdr.magic);
    CHECK(w.n_frames >= s->min_frames, "ps %u: only %u frames, want >= %u",
          s->page_size, w.n_frames, s->min_frames);
    CHECK(w.last_commit == w.n_frames, "WAL ends with its commit frame");

    /* The stock wal-index header agrees with the WAL. */
    rc = rl_shm_hdr_read(shmbuf, &sh);
    CHECK(rc == 0, "stock shm header: %s", rl_walfmt_errstr(rc));
    CHECK(sh.mxFrame == w.last_commit, "mxFrame %u vs WAL %u", sh.mxFrame,
          w.last_commit);
    CHECK(sh.nPage == w.commit[w.last_commit], "nPage %u vs commit %u",
          sh.nPage, w.commit[w.last_commit]);
    CHECK(memcmp(sh.aSalt, walbuf + 16, 8) == 0, "salts");
    CHECK(sh.aFrameCksum[0] == w.cksum[w.last_commit][0] &&
              sh.aFrameCksum[1] == w.cksum[w.last_commit][1],
          "frame checksum");
    CHECK(rl_shm_page_size(&sh) == s->page_size, "shm page size %u",
          rl_shm_page_size(&sh));
    CHECK(sh.szPage == rl_shm_encode_page_size(s->page_size), "szPage %u",
          sh.szPage);
    CHECK(sh.bigEndCksum == (w.hdr.magic & 1), "bigEndCksum");
    CHECK(*rl_shm_nbackfill(shmbuf) == 0, "nothing checkpointed");
    CHECK(*rl_shm_readmark(shmbuf, 0) == 0, "read mark 0 is 0");
    {
        int seen = 0;
        for (i = 1; i < RL_SHM_NREADER; i++)
            seen |= *rl_shm_readmark(shmbuf, i) == sh.mxFrame;
        CHECK(seen, "a read mark holds mxFrame %u", sh.mxFrame);
    }
    {
        /* Our writer reproduces the stock header bytes exactly. */
        uint32_t hdr[RL_SHM_HDR_SIZE / 4];
        rl_shm_hdr h2 = sh;
        memset(hdr, 0, sizeof(hdr));
        h2.aCksum[0] = h2.aCksum[1] = 0;
        rl_shm_hdr_write(hdr, &h2);
        CHECK(memcmp(hdr, shmbuf, 96) == 0, "rl_shm_hdr_write bytes");
    }

    /* Rebuild the hash index from the frames: byte-identical regions. */
    last_region = rl_shm_region_of(sh.mxFrame);
    CHECK(shmlen >= (size_t)(last_region + 1) * RL_SHM_REGION_SIZE,
          "shm holds %zu bytes for %d regions", shmlen, last_region + 1);
    stock.buf = shmbuf;
    stock.len = (shmlen + RL_SHM_REGION_SIZE - 1) / RL_SHM_REGION_SIZE *
                RL_SHM_REGION_SIZE;
    memset(&mine, 0, sizeof(mine));
    rebuild(&w, &mine, w.n_frames);
    CHECK(regions_equal(mem_region, &mine, view_region, &stock, last_region),
          "ps %u: rebuilt index differs from the stock one", s->page_size);

    /* Lookups: latest, an early snapshot, a window with a minimum. */
    check_find(&w, &stock, &mine, 0, sh.mxFrame);
    check_find(&w, &stock, &mine, 0, w.n_frames / 3);
    check_find(&w, &stock, &mine, w.n_frames / 2, sh.mxFrame);

    /* Byte orders: big-endian words, accepted by SQLite's recovery. */
    {
        uint8_t *be = wal_reencode(walbuf, wallen, &w, RL_WAL_MAGIC | 1);
        uint8_t *le;
        wal wb;
        uint32_t f, differ = 0;
        for (f = 1; f <= w.n_frames; f++) {
            uint64_t off = rl_wal_frame_offset(s->page_size, f);
            differ += memcmp(be + off + 16, walbuf + off + 16, 8) != 0;
        }
        CHECK(differ == w.n_frames, "%u of %u frames changed checksum", differ,
              w.n_frames);
        wal_decode(be, wallen, &wb);
        CHECK(rl_wal_big_endian(&wb.hdr) && wb.n_frames == w.n_frames,
              "big-endian WAL decodes");
        wal_free(&wb);
        snprintf(name, sizeof(name), "ps%u-be", s->page_size);
        recover_copy(dbcopy, be, wallen, name, got, sizeof(got));
        snprintf(want, sizeof(want), "%s ckpt 0|%u|%u", digest, w.n_frames,
                 w.n_frames);
        CHECK(strcmp(got, want) == 0,
              "SQLite recovery of the big-endian WAL: got %s, want %s", got,
              want);
        /* ... and back: the stock little-endian bytes again. */
        le = wal_reencode(be, wallen, &w, RL_WAL_MAGIC);
        CHECK(memcmp(le, walbuf, wallen) == 0, "LE re-encode is the stock WAL");
        snprintf(name, sizeof(name), "ps%u-le", s->page_size);
        recover_copy(dbcopy, le, wallen, name, got, sizeof(got));
        CHECK(strcmp(got, want) == 0, "recovery of LE: got %s", got);
        /* Control: big-endian checksums under a little-endian magic are
        ** refused by SQLite (no frame survives), so the checks above can
        ** fail. */
        {
            rl_wal_hdr h = w.hdr;
            uint8_t hb[32];
            h.magic = RL_WAL_MAGIC;
            rl_wal_hdr_encode(&h, hb);
            memcpy(be, hb, 32);
            /* frame 1 now fails: the chain starts from another header
            ** checksum and reads the words in the other order */
            snprintf(name, sizeof(name), "ps%u-mixed", s->page_size);
            recover_copy(dbcopy, be, wallen, name, got, sizeof(got));
            CHECK(strstr(got, "no such table") != NULL,
                  "SQLite accepted wrong-order checksums: %s", got);
        }
        free(le);
        free(be);
    }

    close_db(c);
    mem_free(&mine);
    wal_free(&w);
    free(walbuf);
    free(shmbuf);
    printf("ps %5u: %u frames, %d regions, nPage %u: ok\n", s->page_size,
           sh.mxFrame, last_region + 1, sh.nPage);
}

/* ---- index edge cases on the 512-byte scenario's frames ---- */

static void test_truncate_and_stale(void)
{
    char dir[512], db[600];
    sqlite3 *c;
    uint8_t *walbuf;
    size_t wallen;
    wal w;
    mem_regions full, part;
    static const uint32_t cuts[] = {1, 100, 4061, 4062, 4063, 5000, 8158, 8159};
    size_t k;
    scenario s = {512, 8300, 5000, 300, 4000, 10, 0};

    make_dir(dir, sizeof(dir), "stale");
    path_of(db, sizeof(db), dir, "t.db");
    c = open_db(db);
    write_scenario(c, &s);
    walbuf = snap(dir, "t.db-wal", &wallen);
    close_db(c);
    wal_decode(walbuf, wallen, &w);
    CHECK(w.n_frames > 8300, "enough frames: %u", w.n_frames);

    for (k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        uint32_t m = cuts[k], f;
        int r = rl_shm_region_of(m);
        memset(&full, 0, sizeof(full));
        memset(&part, 0, sizeof(part));
        /* Everything indexed, as if a writer died before committing the
        ** frames above m; truncation to m equals an index built to m. */
        for (f = 1; f <= w.n_frames; f++)
            CHECK(rl_shm_append(mem_region, &full, f - 1, f, w.pgno[f]) == 0,
                  "append %u", f);
        for (f = 1; f <= m; f++)
            CHECK(rl_shm_append(mem_region, &part, f - 1, f, w.pgno[f]) == 0,
                  "append %u", f);
        CHECK(rl_shm_truncate(mem_region, &full, m) == 0, "truncate");
        CHECK(regions_equal(mem_region, &full, mem_region, &part, r),
              "truncate to %u", m);
        mem_free(&full);

        /* Stale entries left by a dead writer, then a new writer appends
        ** other pages from m+1 with mx_frame = m: the append removes them
        ** itself, and the index equals a clean one. */
        memset(&full, 0, sizeof(full));
        for (f = 1; f <= w.n_frames; f++)
            CHECK(rl_shm_append(mem_region, &full, f - 1, f, w.pgno[f]) == 0,
                  "append %u", f);
        for (f = m + 1; f <= m + 300; f++) {
            uint32_t pg = 7 + (f * 13) % 997;
            CHECK(rl_shm_append(mem_region, &full, m, f, pg) == 0,
                  "append over stale %u", f);
            CHECK(rl_shm_append(mem_region, &part, m, f, pg) == 0,
                  "append clean %u", f);
        }
        CHECK(regions_equal(mem_region, &full, mem_region, &part,
                            rl_shm_region_of(m + 300)),
              "stale entries above %u removed", m);
        {
            uint32_t fr = 0;
            /* a page only the dead writer wrote is gone */
            CHECK(rl_shm_find(mem_region, &full, 0, m + 300, 1000000, &fr) ==
                          0 &&
                      fr == 0,
                  "page 1000000");
        }
        mem_free(&full);
        mem_free(&part);
    }
    wal_free(&w);
    free(walbuf);
}

static volatile void *null_region(void *arg, int i)
{
    (void)arg;
    (void)i;
    return NULL;
}

static void test_index_errors(void)
{
    mem_regions m;
    uint32_t f, fr;
    int rc;

    memset(&m, 0, sizeof(m));
    CHECK(rl_shm_append(mem_region, &m, 0, 1, 0) == RL_WALFMT_EARG, "pgno 0");
    CHECK(rl_shm_append(mem_region, &m, 5, 5, 1) == RL_WALFMT_EARG,
          "frame not above mx_frame");
    CHECK(rl_shm_append(null_region, NULL, 0, 1, 1) == RL_WALFMT_EMAP, "map");
    CHECK(rl_shm_truncate(null_region, NULL, 3) == RL_WALFMT_EMAP, "map");
    CHECK(rl_shm_truncate(null_region, NULL, 0) == 0, "truncate 0 is a no-op");
    CHECK(rl_shm_find(null_region, NULL, 0, 3, 1, &fr) == RL_WALFMT_EMAP,
          "map");
    CHECK(rl_shm_find(null_region, NULL, 0, 0, 1, &fr) == 0 && fr == 0,
          "empty WAL");

    /* Region boundaries. */
    CHECK(rl_shm_region_of(0) == 0 && rl_shm_region_of(1) == 0 &&
              rl_shm_region_of(4062) == 0 && rl_shm_region_of(4063) == 1 &&
              rl_shm_region_of(4062 + 4096) == 1 &&
              rl_shm_region_of(4062 + 4096 + 1) == 2 &&
              rl_shm_region_of(0xffffffffu) == 1048576,
          "region_of");

    /* Appending never touches region 0's header or read marks. */
    {
        uint8_t *r0 = (uint8_t *)mem_region(&m, 0);
        memset(r0, 0xa5, RL_SHM_HDR_SIZE);
        CHECK(rl_shm_append(mem_region, &m, 0, 1, 42) == 0, "append 1");
        for (f = 0; f < RL_SHM_HDR_SIZE; f++)
            CHECK(r0[f] == 0xa5, "header byte %u touched", f);
    }

    /* All frames of one page: every probe collides; still fine. */
    for (f = 2; f <= RL_SHM_NPAGE_ONE; f++)
        CHECK(rl_shm_append(mem_region, &m, f - 1, f, 42) == 0, "append %u", f);
    CHECK(rl_shm_find(mem_region, &m, 0, 4000, 42, &fr) == 0 && fr == 4000,
          "latest of many: %u", fr);
    CHECK(rl_shm_find(mem_region, &m, 4001, 4062, 43, &fr) == 0 && fr == 0,
          "absent");

    /* A full hash table (every slot set): append and find stop. */
    {
        volatile uint16_t *h =
            (volatile uint16_t *)((uint8_t *)mem_region(&m, 1) + 16384);
        volatile uint32_t *pg = (volatile uint32_t *)mem_region(&m, 1);
        /* Slots all taken but page slot 2 free: no cleanup, probing runs
        ** out of its collision budget. */
        for (f = 0; f < RL_SHM_NSLOT; f++)
            h[f] = 1;
        for (f = 0; f < 4096; f++)
            pg[f] = 0;
        pg[0] = 1;
        rc = rl_shm_append(mem_region, &m, 4063, 4064, 9);
        CHECK(rc == RL_WALFMT_ECORRUPT, "full table append: %d", rc);
        rc = rl_shm_find(mem_region, &m, 0, 4062 + 4096, 9, &fr);
        CHECK(rc == RL_WALFMT_ECORRUPT, "full table find: %d", rc);
        /* A slot pointing past the page array: refused, not read. */
        for (f = 0; f < RL_SHM_NSLOT; f++)
            h[f] = 0;
        h[(9 * 383) & 8191] = 60000;
        rc = rl_shm_find(mem_region, &m, 0, 4062 + 4096, 9, &fr);
        CHECK(rc == RL_WALFMT_ECORRUPT, "slot out of range: %d", rc);
        /* Stale page slot that truncation cannot reach (appended out of
        ** order): refused. */
        for (f = 0; f < 4096; f++)
            pg[f] = 0;
        pg[5] = 77;
        rc = rl_shm_append(mem_region, &m, 4062, 4063 + 5, 9);
        CHECK(rc == RL_WALFMT_ECORRUPT, "unreachable stale slot: %d", rc);
    }
    mem_free(&m);
    for (rc = RL_WALFMT_EARG; rc < 0; rc++)
        CHECK(strlen(rl_walfmt_errstr(rc)) > 20, "errstr %d", rc);
    CHECK(strcmp(rl_walfmt_errstr(0), "ok") == 0, "errstr 0");
}

/* ---- header and frame decoders ---- */

static void test_hdr_codecs(void)
{
    rl_wal_hdr h = {RL_WAL_MAGIC, RL_WAL_VERSION, 4096, 3,
                    0x01020304u,  0xa0b0c0d0u,    0,    0};
    rl_wal_hdr d;
    uint8_t b[32], page[4096], fh[24], bad[32];
    uint32_t ck[2], ck0[2], pg, cm;
    int be;

    for (be = 0; be < 2; be++) {
        h.magic = RL_WAL_MAGIC | (uint32_t)be;
        rl_wal_hdr_encode(&h, b);
        CHECK(rl_wal_hdr_decode(b, &d) == 0, "decode");
        CHECK(memcmp(&d, &h, sizeof(h)) == 0, "round trip");
        CHECK(b[0] == 0x37 && b[3] == (0x82 | be), "big-endian magic");
        memcpy(bad, b, 32);
        bad[1] ^= 1;
        CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_EMAGIC, "magic");
        memcpy(bad, b, 32);
        bad[27] ^= 1;
        CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_ECKSUM, "checksum");
        memcpy(bad, b, 32);
        bad[20] ^= 1;
        CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_ECKSUM, "salt bit");
        {
            rl_wal_hdr x = h;
            x.version = 3007001;
            rl_wal_hdr_encode(&x, bad);
            CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_EVERSION, "version");
            x = h;
            x.page_size = 1000;
            rl_wal_hdr_encode(&x, bad);
            CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_EPAGESIZE, "1000");
            x.page_size = 256;
            rl_wal_hdr_encode(&x, bad);
            CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_EPAGESIZE, "256");
            x.page_size = 131072;
            rl_wal_hdr_encode(&x, bad);
            CHECK(rl_wal_hdr_decode(bad, &d) == RL_WALFMT_EPAGESIZE, "128K");
            x.page_size = 65536;
            rl_wal_hdr_encode(&x, bad);
            CHECK(rl_wal_hdr_decode(bad, &d) == 0, "64K is fine");
        }

        /* Frames: valid, then each way to be invalid, cksum untouched. */
        memset(page, 0x3c, sizeof(page));
        ck[0] = h.cksum1;
        ck[1] = h.cksum2;
        rl_wal_frame_encode(&h, 7, 9, page, ck, fh);
        ck0[0] = h.cksum1;
        ck0[1] = h.cksum2;
        CHECK(rl_wal_frame_decode(&h, fh, page, ck0, &pg, &cm) == 1 &&
                  pg == 7 && cm == 9 && ck0[0] == ck[0] && ck0[1] == ck[1],
              "frame round trip");
        {
            uint8_t f2[24];
            uint32_t c2[2];
            memcpy(f2, fh, 24);
            f2[9] ^= 1; /* salt */
            c2[0] = h.cksum1;
            c2[1] = h.cksum2;
            CHECK(rl_wal_frame_decode(&h, f2, page, c2, &pg, &cm) == 0 &&
                      c2[0] == h.cksum1 && c2[1] == h.cksum2,
                  "salt mismatch");
            page[100] ^= 1; /* data */
            CHECK(rl_wal_frame_decode(&h, fh, page, c2, &pg, &cm) == 0,
                  "data bit");
            page[100] ^= 1;
            memcpy(f2, fh, 24);
            f2[7] ^= 1; /* commit field is checksummed */
            CHECK(rl_wal_frame_decode(&h, f2, page, c2, &pg, &cm) == 0,
                  "commit bit");
            /* pgno 0 with a correct checksum is still invalid */
            c2[0] = h.cksum1;
            c2[1] = h.cksum2;
            rl_wal_frame_encode(&h, 0, 0, page, c2, f2);
            c2[0] = h.cksum1;
            c2[1] = h.cksum2;
            CHECK(rl_wal_frame_decode(&h, f2, page, c2, &pg, &cm) == 0,
                  "pgno 0");
        }
    }

    /* Checksum word order is independent of the host: known vector. */
    {
        uint8_t v[8] = {0, 0, 0, 1, 0, 0, 0, 2};
        uint32_t o[2];
        rl_wal_cksum(1, v, 8, NULL, o);
        CHECK(o[0] == 1 && o[1] == 3, "big-endian words %u %u", o[0], o[1]);
        rl_wal_cksum(0, v, 8, NULL, o);
        CHECK(o[0] == 0x01000000u && o[1] == 0x03000000u,
              "little-endian words");
    }

    CHECK(rl_shm_encode_page_size(65536) == 1 &&
              rl_shm_encode_page_size(512) == 512 &&
              rl_shm_encode_page_size(32768) == 32768,
          "szPage encoding");
}

/* Writes g into both copies of r0's header with a valid checksum, whatever
** its fields say: a header only the field under test makes wrong. */
static void shm_hdr_forge(uint32_t *r0, rl_shm_hdr *g)
{
    uint8_t bytes[48];
    uint32_t ck[2];
    memcpy(bytes, g, 48);
    rl_wal_cksum(__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__, bytes, 40, NULL, ck);
    g->aCksum[0] = ck[0];
    g->aCksum[1] = ck[1];
    memcpy(r0, g, 48);
    memcpy(r0 + 12, g, 48);
}

static void test_shm_hdr_copies(void)
{
    uint32_t r0[RL_SHM_REGION_SIZE / 4];
    rl_shm_hdr h, g;

    memset(r0, 0, sizeof(r0));
    CHECK(rl_shm_hdr_read(r0, &g) == RL_WALFMT_ENOTINIT, "all zero");
    memset(&h, 0, sizeof(h));
    h.iChange = 5;
    h.szPage = 4096;
    h.mxFrame = 77;
    h.nPage = 12;
    h.aFrameCksum[0] = 0xdeadbeef;
    memcpy(h.aSalt, "saltsalt", 8);
    rl_shm_hdr_write(r0, &h);
    CHECK(h.isInit == 1 && h.iVersion == RL_WAL_VERSION, "write sets fields");
    CHECK(rl_shm_hdr_read(r0, &g) == 0 && memcmp(&g, &h, sizeof(h)) == 0,
          "read back");
    CHECK(memcmp(r0, r0 + 12, 48) == 0, "two equal copies");
    /* a torn update: copy 2 new, copy 1 old */
    r0[12 + 4] = 78;
    CHECK(rl_shm_hdr_read(r0, &g) == RL_WALFMT_EHDRCOPY, "copies differ");
    r0[12 + 4] = 77;
    /* a field changed in both copies without a new checksum */
    r0[4] = r0[12 + 4] = 78;
    CHECK(rl_shm_hdr_read(r0, &g) == RL_WALFMT_ECKSUM, "checksum");
    r0[4] = r0[12 + 4] = 77;
    CHECK(rl_shm_hdr_read(r0, &g) == 0, "restored");
    /* isInit 0 in both copies (checksum recomputed: only isInit is wrong) */
    g.isInit = 0;
    shm_hdr_forge(r0, &g);
    CHECK(rl_shm_hdr_read(r0, &g) == RL_WALFMT_ENOTINIT, "isInit 0");
    /* wrong version with a valid checksum */
    h.isInit = 1;
    rl_shm_hdr_write(r0, &h);
    rl_shm_hdr_read(r0, &g);
    g.iVersion = 3007001;
    shm_hdr_forge(r0, &g);
    CHECK(rl_shm_hdr_read(r0, &g) == RL_WALFMT_EVERSION, "version");
    /* checkpoint info offsets */
    CHECK((uint8_t *)rl_shm_nbackfill(r0) == (uint8_t *)r0 + 96 &&
              (uint8_t *)rl_shm_readmark(r0, 0) == (uint8_t *)r0 + 100 &&
              (uint8_t *)rl_shm_readmark(r0, 4) == (uint8_t *)r0 + 116 &&
              (uint8_t *)rl_shm_nbackfill_attempted(r0) == (uint8_t *)r0 + 128,
          "ckpt info offsets");
}

/* ---- apply: frames written and published by walfmt alone ---- */

#define T0_SQL                                                                 \
    "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);"                          \
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "            \
    "WHERE i<400) INSERT INTO t SELECT i, zeroblob(100 + i * 7 % 900) FROM c;"
#define T1_SQL                                                                 \
    "BEGIN; UPDATE t SET b = printf('%0*d', 50 + id % 300, id) "               \
    "WHERE id % 3 = 0;"                                                        \
    "WITH RECURSIVE c(i) AS (SELECT 401 UNION ALL SELECT i+1 FROM c "          \
    "WHERE i<2500) INSERT INTO t SELECT i, printf('%0*d', 1200, i) FROM c;"    \
    "COMMIT;"

static sqlite3 *open_wal_db(const char *path)
{
    sqlite3 *c = open_db(path);
    exec(c, "PRAGMA wal_autocheckpoint=0;");
    return c;
}

static void test_apply_live(void)
{
    char da[512], dbb[512], pa[600], pb[600], base[600], tmp[700];
    char want[256], got[256], old[256];
    sqlite3 *ca, *cb, *ra, *snapr;
    uint8_t *bwal, *awal;
    size_t blen, alen;
    wal wb, wa;
    sqlite3_file *fa = NULL;
    rl_shm_hdr sh;
    uint32_t f, t1_first, n_pages = 0, db_size, ck[2], mx;
    uint32_t *pg_frame;
    int rc, fd;

    /* A base database, closed (checkpointed), copied to A and B. */
    path_of(base, sizeof(base), tmp_root, "base.db");
    {
        sqlite3 *c = open_db(base);
        exec(c, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;"
                "CREATE TABLE k(x);");
        close_db(c);
    }
    make_dir(da, sizeof(da), "applyA");
    make_dir(dbb, sizeof(dbb), "applyB");
    path_of(pa, sizeof(pa), da, "t.db");
    path_of(pb, sizeof(pb), dbb, "t.db");
    copy_via_child(base, pa);
    copy_via_child(base, pb);

    /* T0 through SQLite on both (deterministic, so identical pages), then
    ** T1 on B only. */
    ca = open_wal_db(pa);
    cb = open_wal_db(pb);
    exec(ca, T0_SQL);
    exec(cb, T0_SQL);
    query(ca, DIGEST_SQL, old, sizeof(old));
    exec(cb, T1_SQL);
    query(cb, DIGEST_SQL, want, sizeof(want));
    CHECK(strcmp(want, old) != 0, "T1 changes the data");

    /* T1's final page images from B's WAL. */
    bwal = snap(dbb, "t.db-wal", &blen);
    wal_decode(bwal, blen, &wb);
    for (t1_first = 1; !wb.commit[t1_first]; t1_first++)
        ;
    t1_first++; /* first frame after T0's commit */
    CHECK(t1_first <= wb.n_frames && wb.last_commit == wb.n_frames,
          "T1 frames in B");
    db_size = wb.commit[wb.last_commit];
    pg_frame = rl_xmalloc((db_size + 1) * sizeof(uint32_t));
    memset(pg_frame, 0, (db_size + 1) * sizeof(uint32_t));
    for (f = t1_first; f <= wb.n_frames; f++)
        if (wb.pgno[f] <= db_size)
            pg_frame[wb.pgno[f]] = f;
    for (f = 1; f <= db_size; f++)
        n_pages += pg_frame[f] != 0;

    /* Readers of A: one between transactions, one inside a snapshot. */
    ra = open_wal_db(pa);
    snapr = open_wal_db(pa);
    query(ra, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, old) == 0, "A before");
    exec(snapr, "BEGIN;");
    query(snapr, DIGEST_SQL, got, sizeof(got));

    /* The applier: A's connection ca, its shm through xShmMap, holding the
    ** WAL write lock as SQLite's own writer would. */
    rc = sqlite3_file_control(ca, "main", SQLITE_FCNTL_FILE_POINTER, &fa);
    CHECK(rc == SQLITE_OK && fa && fa->pMethods->iVersion >= 2, "file");
    rc = fa->pMethods->xShmLock(fa, 0, 1,
                                SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
    CHECK(rc == SQLITE_OK, "WAL write lock: %d", rc);
    {
        volatile void *r0 = live_region(fa, 0);
        CHECK(r0 != NULL, "map region 0");
        rc = rl_shm_hdr_read(r0, &sh);
        CHECK(rc == 0, "live header: %s", rl_walfmt_errstr(rc));
    }
    awal = snap(da, "t.db-wal", &alen);
    wal_decode(awal, alen, &wa);
    CHECK(wa.last_commit == sh.mxFrame && wa.n_frames == sh.mxFrame,
          "A's WAL ends at mxFrame");
    CHECK(memcmp(sh.aSalt, awal + 16, 8) == 0 &&
              sh.aFrameCksum[0] == wa.cksum[sh.mxFrame][0],
          "A's header matches its WAL");

    /* Frames at mxFrame+1.., continuing A's checksum chain with A's salts,
    ** written through our own descriptor of the -wal (nobody locks it). */
    snprintf(tmp, sizeof(tmp), "%s-wal", pa);
    fd = open(tmp, O_WRONLY);
    CHECK(fd >= 0, "open A wal");
    ck[0] = sh.aFrameCksum[0];
    ck[1] = sh.aFrameCksum[1];
    mx = sh.mxFrame;
    {
        uint32_t i = 0, pgno;
        uint8_t fh[24];
        for (pgno = 1; pgno <= db_size; pgno++) {
            const uint8_t *img;
            uint64_t off;
            if (!pg_frame[pgno])
                continue;
            i++;
            img = bwal + rl_wal_frame_offset(4096, pg_frame[pgno]) + 24;
            rl_wal_frame_encode(&wa.hdr, pgno, i == n_pages ? db_size : 0, img,
                                ck, fh);
            off = rl_wal_frame_offset(4096, mx + i);
            CHECK(pwrite(fd, fh, 24, (off_t)off) == 24, "pwrite header");
            CHECK(pwrite(fd, img, 4096, (off_t)off + 24) == 4096,
                  "pwrite page");
        }
        CHECK(i == n_pages, "all pages written");
    }
    CHECK(close(fd) == 0, "close A wal");

    /* Index, then publish: the header last, as SQLite does. */
    {
        uint32_t i = 0, pgno;
        for (pgno = 1; pgno <= db_size; pgno++) {
            if (!pg_frame[pgno])
                continue;
            i++;
            rc = rl_shm_append(live_region, fa, mx, mx + i, pgno);
            CHECK(rc == 0, "live append: %s", rl_walfmt_errstr(rc));
        }
        sh.mxFrame = mx + n_pages;
        sh.nPage = db_size;
        sh.aFrameCksum[0] = ck[0];
        sh.aFrameCksum[1] = ck[1];
        sh.iChange++;
        rl_shm_hdr_write(live_region(fa, 0), &sh);
    }
    fa->pMethods->xShmLock(fa, 0, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);

    /* Stock readers see T1; the open snapshot keeps the old state. */
    query(ra, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, want) == 0, "reader after apply: %s, want %s", got, want);
    query(snapr, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, old) == 0, "snapshot kept: %s", got);
    exec(snapr, "COMMIT;");
    query(snapr, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, want) == 0, "snapshot reader after its commit");
    query(ra, "PRAGMA integrity_check", got, sizeof(got));
    CHECK(strcmp(got, "ok") == 0, "integrity after apply: %s", got);
    /* SQLite's own writer continues after our frames. */
    exec(ca, "INSERT INTO t VALUES(99999, 'after');");
    exec(cb, "INSERT INTO t VALUES(99999, 'after');");
    query(ra, DIGEST_SQL, got, sizeof(got));
    query(cb, DIGEST_SQL, want, sizeof(want));
    CHECK(strcmp(got, want) == 0, "stock write after apply: %s vs %s", got,
          want);

    /* Last close checkpoints our frames into the file; a fresh open then
    ** reads them from the main file. */
    close_db(ra);
    close_db(snapr);
    close_db(ca);
    close_db(cb);
    ca = open_db(pa);
    query(ca, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, want) == 0, "after checkpoint: %s", got);
    query(ca, "PRAGMA integrity_check", got, sizeof(got));
    CHECK(strcmp(got, "ok") == 0, "integrity after checkpoint: %s", got);
    close_db(ca);
    printf("apply: %u pages published by walfmt at frames %u..%u: ok\n",
           n_pages, mx + 1, mx + n_pages);

    free(pg_frame);
    wal_free(&wa);
    wal_free(&wb);
    free(awal);
    free(bwal);
}

/* ---- a new WAL generation, started by walfmt ---- */

static void test_restart_live(void)
{
    char dir[512], p[600], tmp[700], got[256], want[256], dbcopy[600];
    sqlite3 *c, *r;
    sqlite3_file *fc = NULL;
    uint8_t *wb, page1[4096], fh[24];
    size_t wl;
    wal w0, w1, w2;
    rl_shm_hdr cur, ns;
    rl_wal_hdr nw;
    uint8_t whdr[32];
    const uint32_t rnd[2] = {0x11111111u, 0x2468ace0u};
    uint32_t f, ck[2], last1 = 0;
    volatile void *r0;
    int rc, fd;

    make_dir(dir, sizeof(dir), "restart");
    path_of(p, sizeof(p), dir, "t.db");
    c = open_wal_db(p);
    exec(c, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);"
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
            "WHERE i<300) INSERT INTO t SELECT i, randomblob(500) FROM c;"
            "INSERT INTO t VALUES(5000, 'x');");
    wb = snap(dir, "t.db-wal", &wl);
    wal_decode(wb, wl, &w0);
    free(wb);

    /* Reference: how stock SQLite's writer restarts a checkpointed WAL. */
    query(c, "PRAGMA wal_checkpoint(PASSIVE)", got, sizeof(got));
    snprintf(want, sizeof(want), "0|%u|%u", w0.n_frames, w0.n_frames);
    CHECK(strcmp(got, want) == 0, "checkpoint: %s", got);
    /* (user_version puts page 1 in this generation, for use below) */
    exec(c, "BEGIN; INSERT INTO t VALUES(5001, 'y'); PRAGMA user_version=7;"
            "COMMIT;");
    wb = snap(dir, "t.db-wal", &wl);
    wal_decode_x(wb, wl, &w1, 0);
    free(wb);
    CHECK(w1.hdr.salt1 == w0.hdr.salt1 + 1 &&
              w1.hdr.ckpt_seq == w0.hdr.ckpt_seq + 1 &&
              w1.hdr.magic == w0.hdr.magic && w1.last_commit >= 1,
          "stock restart: salt1 %08x->%08x seq %u->%u", w0.hdr.salt1,
          w1.hdr.salt1, w0.hdr.ckpt_seq, w1.hdr.ckpt_seq);
    for (f = 1; f <= w1.n_frames; f++)
        if (w1.pgno[f] == 1)
            last1 = f;
    CHECK(last1 != 0, "page 1 in the WAL");

    /* Checkpoint again: now walfmt restarts, as the applier would. */
    query(c, "PRAGMA wal_checkpoint(PASSIVE)", got, sizeof(got));
    query(c, DIGEST_SQL, want, sizeof(want));
    r = open_wal_db(p);
    query(r, DIGEST_SQL, got, sizeof(got));
    rc = sqlite3_file_control(c, "main", SQLITE_FCNTL_FILE_POINTER, &fc);
    CHECK(rc == SQLITE_OK && fc, "file pointer");
    rc = fc->pMethods->xShmLock(fc, 0, 1,
                                SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
    CHECK(rc == SQLITE_OK, "write lock");
    r0 = live_region(fc, 0);
    CHECK(r0 && rl_shm_hdr_read(r0, &cur) == 0, "header");
    CHECK(*rl_shm_nbackfill(r0) == cur.mxFrame && cur.mxFrame > 0,
          "fully checkpointed: %u of %u", *rl_shm_nbackfill(r0), cur.mxFrame);
    rc = fc->pMethods->xShmLock(fc, 4, 4,
                                SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
    CHECK(rc == SQLITE_OK, "READ(1..4) exclusive: %d", rc);
    wb = snap(dir, "t.db-wal", &wl);
    {
        rl_wal_hdr wcur;
        CHECK(rl_wal_hdr_decode(wb, &wcur) == 0, "current WAL header");
        rl_wal_new_generation(&cur, wcur.ckpt_seq, 4096, rnd, &nw, &ns);
        CHECK(nw.salt1 == wcur.salt1 + 1 && nw.salt2 == rnd[1] &&
                  nw.ckpt_seq == wcur.ckpt_seq + 1 &&
                  nw.magic == w0.hdr.magic && ns.mxFrame == 0 &&
                  rl_get_be32(ns.aSalt) == nw.salt1 &&
                  rl_get_be32(ns.aSalt + 4) == nw.salt2 &&
                  ns.nPage == cur.nPage && ns.iChange == cur.iChange,
              "new generation follows SQLite's rule");
    }
    /* Page 1 as last written, with user_version (offset 60) = 1234. */
    memcpy(page1, wb + rl_wal_frame_offset(4096, last1) + 24, 4096);
    free(wb);
    page1[60] = 0;
    page1[61] = 0;
    page1[62] = 0x04;
    page1[63] = 0xd2;
    rl_shm_hdr_write(r0, &ns);
    rl_shm_reset_ckpt(r0);
    fc->pMethods->xShmLock(fc, 4, 4, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
    CHECK(*rl_shm_nbackfill(r0) == 0 && *rl_shm_readmark(r0, 1) == 0 &&
              *rl_shm_readmark(r0, 2) == RL_READMARK_NOT_USED &&
              *rl_shm_readmark(r0, 4) == RL_READMARK_NOT_USED,
          "checkpoint info reset");
    /* The new header, then frame 1 (a commit) over the old generation. */
    rl_wal_hdr_encode(&nw, whdr);
    snprintf(tmp, sizeof(tmp), "%s-wal", p);
    fd = open(tmp, O_WRONLY);
    CHECK(fd >= 0, "open wal");
    CHECK(pwrite(fd, whdr, 32, 0) == 32, "pwrite WAL header");
    ck[0] = ns.aFrameCksum[0];
    ck[1] = ns.aFrameCksum[1];
    CHECK(ck[0] == nw.cksum1 && ck[1] == nw.cksum2, "chain starts at header");
    rl_wal_frame_encode(&nw, 1, ns.nPage, page1, ck, fh);
    CHECK(pwrite(fd, fh, 24, 32) == 24 && pwrite(fd, page1, 4096, 56) == 4096,
          "pwrite frame");
    CHECK(close(fd) == 0, "close wal");
    rc = rl_shm_append(live_region, fc, 0, 1, 1);
    CHECK(rc == 0, "append: %s", rl_walfmt_errstr(rc));
    ns.mxFrame = 1;
    ns.aFrameCksum[0] = ck[0];
    ns.aFrameCksum[1] = ck[1];
    ns.iChange++;
    rl_shm_hdr_write(r0, &ns);
    fc->pMethods->xShmLock(fc, 0, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);

    /* Stock readers see it, data intact. */
    query(r, "PRAGMA user_version", got, sizeof(got));
    CHECK(strcmp(got, "1234") == 0, "user_version after restart: %s", got);
    query(r, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, want) == 0, "data after restart: %s vs %s", got, want);
    query(r, "PRAGMA integrity_check", got, sizeof(got));
    CHECK(strcmp(got, "ok") == 0, "integrity: %s", got);

    /* Recovery accepts exactly our one frame; the old generation's frames
    ** behind it fail on salt1. */
    snprintf(dbcopy, sizeof(dbcopy), "%s/restart-main", tmp_root);
    copy_via_child(p, dbcopy);
    wb = snap(dir, "t.db-wal", &wl);
    CHECK(wl > 56 + 4096 + 24, "old frames remain behind ours (%zu bytes)", wl);
    recover_copy(dbcopy, wb, wl, "restart-rec", got, sizeof(got));
    {
        char w2s[300];
        snprintf(w2s, sizeof(w2s), "%s ckpt 0|1|1", want);
        CHECK(strcmp(got, w2s) == 0, "recovery after restart: %s", got);
    }
    free(wb);

    /* Stock writer continues the new generation's chain. */
    exec(c, "INSERT INTO t VALUES(6000, 'z');");
    wb = snap(dir, "t.db-wal", &wl);
    wal_decode_x(wb, wl, &w2, 0);
    CHECK(w2.hdr.salt1 == nw.salt1 && w2.pgno[1] == 1 && w2.last_commit > 1,
          "stock frames follow ours: %u valid", w2.last_commit);
    free(wb);
    query(c, DIGEST_SQL, want, sizeof(want));
    close_db(r);
    close_db(c);
    c = open_db(p);
    query(c, "PRAGMA user_version", got, sizeof(got));
    CHECK(strcmp(got, "1234") == 0, "user_version after reopen: %s", got);
    query(c, DIGEST_SQL, got, sizeof(got));
    CHECK(strcmp(got, want) == 0, "data after reopen");
    query(c, "PRAGMA integrity_check", got, sizeof(got));
    CHECK(strcmp(got, "ok") == 0, "integrity after reopen: %s", got);
    close_db(c);
    wal_free(&w0);
    wal_free(&w1);
    wal_free(&w2);
    printf("restart: new WAL generation by walfmt (salt1 %08x): ok\n",
           nw.salt1);
}

int main(void)
{
    /* Several page sizes; 512 fills more than two regions (> 4062 + 4096
    ** frames), 4096 more than one and shrinks the database with VACUUM. */
    static const scenario scenarios[] = {
        {512, 8300, 5000, 300, 4000, 50, 0},
        {1024, 300, 300, 700, 100, 20, 0},
        {4096, 4100, 2500, 3000, 1500, 30, 1},
        {8192, 100, 100, 6000, 50, 10, 0},
        {32768, 40, 30, 30000, 10, 5, 1},
        {65536, 50, 40, 60000, 15, 5, 0},
    };
    size_t i;
    const char *tmpdir = getenv("TMPDIR");

    snprintf(tmp_root, sizeof(tmp_root), "%s/test_walfmt.XXXXXX",
             tmpdir && *tmpdir ? tmpdir : "/tmp");
    CHECK(mkdtemp(tmp_root) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(cleanup);

    test_hdr_codecs();
    test_shm_hdr_copies();
    test_index_errors();
    for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run_scenario(&scenarios[i]);
    test_truncate_and_stale();
    test_apply_live();
    test_restart_live();
    printf("test_walfmt: %d checks passed\n", rl_checks);
    return 0;
}
