/*
** tests/unit/test_walfmt_live.c -- vfs/walfmt writing into live databases
** of stock SQLite: frames appended and published by walfmt alone (WAL
** write, hash index, header) are seen by stock readers, while a reader
** inside an older snapshot keeps it; and a WAL restarted by walfmt
** (rl_wal_new_generation) is one SQLite's readers, writers and
** checkpointers agree with.
**
** The helpers (scratch files, copies made by a child process, wal-index
** regions, a decoded WAL) are tests/unit/lib/walfiles.h's.
*/
#include "bytes.h"
#include "walfmt.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "lib/check.h"
#include "lib/mem.h"
#include "lib/walfiles.h"

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
    walfiles_setup("test_walfmt_live");
    test_apply_live();
    test_restart_live();
    printf("test_walfmt_live: %d checks passed\n", rl_checks);
    return 0;
}
