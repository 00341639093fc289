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
**     rejected (the check can fail).
** (Frames appended into a live database: test_walfmt_live.c.)
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
#include "lib/walfiles.h"

static int rl_checks;
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

    walfiles_setup("test_walfmt");

    test_hdr_codecs();
    test_shm_hdr_copies();
    test_index_errors();
    for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run_scenario(&scenarios[i]);
    test_truncate_and_stale();
    printf("test_walfmt: %d checks passed\n", rl_checks);
    return 0;
}
