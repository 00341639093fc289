/*
** tests/unit/test_image.c -- consistent database images (vfs/image.c,
** vfs/imagefmt.c) against real SQLite databases of the raft VFS.
**
** The VFS is registered with a port whose commit accepts every transaction
** and hands out increasing indexes, so local writes pass and the applied
** record advances as under a node. The source database gets a workload of
** several tables, blobs with overflow pages and thousands of pages, partly
** checkpointed; images are taken while another connection keeps writing
** (and checkpointing) between the pages the source reads, in the three WAL
** states a snapshot can be in (frames not yet backfilled; every frame
** backfilled, so writers restart and overwrite the WAL; no WAL frame at
** all). Each image must hold exactly the read transaction's content and
** index; installed into a second replicated database it must pass
** integrity_check and show that content; once both databases hold the same
** state and are checkpointed, the files must be byte-identical. Malformed
** images (a byte flipped anywhere, truncated, lengthened, older) are
** refused and leave the target untouched.
**
**   test_image                      run the tests
**   test_image --write-seeds DIR    seed corpus for tests/fuzz/fuzz_image
*/
#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "txn.h"
#include "vfs.h"

#include "lib/check.h"
#include "lib/vfsdb.h"
#include "lib/rng.h"

/* Deterministic, so a failure reproduces (tests/unit/lib/rng.h). */
static struct rl_rng rng = {0x2545f4914f6cdd1dull};

static uint32_t rnd(void)
{
    return rl_rng_u32(&rng);
}

/* ------------------------------------------------------------- helpers */

static char *path_of(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", rl_db_dir, name);
    return p;
}

/* Fingerprint of a database's whole content as db's current read sees it:
** schema, then every row of every table in rowid order, typed. */
typedef struct content {
    uint32_t crc;
    uint64_t rows, bytes;
} content;

static void content_of(sqlite3 *db, content *c)
{
    sqlite3_stmt *tabs, *st;
    memset(c, 0, sizeof *c);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT name, sql FROM sqlite_schema ORDER BY "
                             "type, name",
                             -1, &tabs, 0) == SQLITE_OK,
          "schema: %s", sqlite3_errmsg(db));
    while (sqlite3_step(tabs) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tabs, 0);
        const char *sql = (const char *)sqlite3_column_text(tabs, 1);
        char *q;
        c->crc = rl_crc32c(c->crc, name, strlen(name));
        if (sql)
            c->crc = rl_crc32c(c->crc, sql, strlen(sql));
        if (!sql || strncmp(sql, "CREATE TABLE", 12) != 0)
            continue;
        q = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY rowid", name);
        CHECK(q && sqlite3_prepare_v2(db, q, -1, &st, 0) == SQLITE_OK, "%s: %s",
              q, sqlite3_errmsg(db));
        while (sqlite3_step(st) == SQLITE_ROW) {
            int i, n = sqlite3_column_count(st);
            c->rows++;
            for (i = 0; i < n; i++) {
                uint8_t t = (uint8_t)sqlite3_column_type(st, i);
                const void *b = sqlite3_column_blob(st, i);
                int len = sqlite3_column_bytes(st, i);
                c->crc = rl_crc32c(c->crc, &t, 1);
                if (b)
                    c->crc = rl_crc32c(c->crc, b, (size_t)len);
                c->bytes += (uint64_t)len;
            }
        }
        sqlite3_finalize(st);
        sqlite3_free(q);
    }
    sqlite3_finalize(tabs);
}

static int content_eq(const content *a, const content *b)
{
    return a->crc == b->crc && a->rows == b->rows && a->bytes == b->bytes;
}

static uint64_t applied(sqlite3 *db)
{
    sqlite3_file *f = 0;
    uint64_t idx = 0;
    char err[256];
    /* rl_vfs_applied needs the connection's shm open: read once. */
    rl_db_int(db, "SELECT count(*) FROM sqlite_schema");
    CHECK(sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) ==
              SQLITE_OK,
          "file pointer");
    CHECK(rl_vfs_applied(f, 5000, &idx, err, sizeof err) == SQLITE_OK, "%s",
          err);
    return idx;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b;
    long n;
    CHECK(f, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = malloc((size_t)n + 1);
    CHECK(b && fread(b, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

/* ------------------------------------------------------------ workload */

static void workload_init(sqlite3 *db)
{
    int i;
    rl_db_exec(db, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT);"
                   "CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);"
                   "CREATE TABLE log(t TEXT, n INT);"
                   "CREATE INDEX log_n ON log(n);");
    for (i = 0; i < 20; i++) {
        char sql[256];
        rl_db_exec(db, "BEGIN");
        snprintf(sql, sizeof sql,
                 "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM "
                 "c WHERE x < 100) INSERT INTO kv(v) SELECT "
                 "hex(randomblob(100 + %d)) FROM c",
                 i);
        rl_db_exec(db, sql);
        rl_db_exec(db, "INSERT INTO blobs(b) VALUES (randomblob(200000))");
        rl_db_exec(db, "INSERT INTO log VALUES ('init', abs(random()) % 1000)");
        rl_db_exec(db, "COMMIT");
        if (i == 9)
            rl_db_exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
    }
}

/* One small random write transaction (plus, sometimes, a checkpoint that
** must not disturb an image being read). */
static void workload_step(sqlite3 *db, int k)
{
    char sql[256];
    switch (rnd() % 5) {
    case 0:
        snprintf(sql, sizeof sql,
                 "UPDATE kv SET v = hex(randomblob(150)) WHERE k %% 37 = %u",
                 rnd() % 37);
        break;
    case 1:
        snprintf(sql, sizeof sql,
                 "INSERT INTO blobs(b) VALUES (randomblob(%u))",
                 1000 + rnd() % 30000);
        break;
    case 2:
        snprintf(sql, sizeof sql, "DELETE FROM blobs WHERE id %% 7 = %u",
                 rnd() % 7);
        break;
    case 3:
        snprintf(sql, sizeof sql, "INSERT INTO log VALUES ('step', %d)", k);
        break;
    default:
        snprintf(sql, sizeof sql,
                 "DELETE FROM kv WHERE k IN (SELECT k FROM kv ORDER BY "
                 "random() LIMIT 20)");
        break;
    }
    rl_db_exec(db, sql);
    if (k % 7 == 3)
        rl_db_exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
}

/* ------------------------------------------------------------- scenarios */

/*
** Takes an image of src through a private connection while w writes
** between page reads; checks the image against the snapshot's content
** (read on the source's own connection, inside its read transaction) and
** writes it to out. Returns the image's index; *snap gets the content.
*/
static uint64_t image_under_writes(const char *src, sqlite3 *w, const char *out,
                                   int writes, content *snap)
{
    sqlite3 *s = rl_db_open_raft(src);
    rl_image_src *img;
    rl_image_check chk;
    char err[512];
    uint8_t buf[3000]; /* not a page multiple: reads straddle pages */
    size_t got;
    uint64_t idx, before = rl_db_next_index, produced = 0;
    FILE *f;
    int rc, k = 0;

    rc = rl_image_src_open(s, 5000, &img, err, sizeof err);
    CHECK(rc == RL_IMAGE_OK, "src_open: %s", err);
    idx = rl_image_src_info(img)->index;
    CHECK(idx == before, "image index %llu, the record is at %llu",
          (unsigned long long)idx, (unsigned long long)before);
    content_of(s, snap); /* the read transaction's view */
    f = fopen(out, "wb");
    CHECK(f, "create %s", out);
    rl_image_check_init(&chk);
    for (;;) {
        rc = rl_image_src_read(img, buf, sizeof buf, &got, err, sizeof err);
        CHECK(rc == RL_IMAGE_OK, "src_read: %s", err);
        if (got == 0)
            break;
        CHECK(rl_image_check_feed(&chk, buf, got, err, sizeof err) == 0,
              "checker: %s", err);
        CHECK(fwrite(buf, 1, got, f) == got, "write");
        produced += got;
        if (k < writes && (produced / sizeof buf) % 3 == 0) {
            workload_step(w, k);
            k++;
        }
    }
    CHECK(fclose(f) == 0, "close");
    CHECK(rl_image_check_finish(&chk, err, sizeof err) == 0, "finish: %s", err);
    CHECK(produced == rl_image_size(rl_image_src_info(img)),
          "produced %llu bytes", (unsigned long long)produced);
    CHECK(k == writes, "only %d of %d writes ran during the image", k, writes);
    CHECK(rl_db_next_index > idx || writes == 0, "writers committed meanwhile");
    {
        /* The snapshot's view did not move while writers committed. */
        content again;
        content_of(s, &again);
        CHECK(content_eq(&again, snap), "read transaction moved");
    }
    rl_image_src_close(img);
    sqlite3_close(s);
    return idx;
}

static void check_installed(const char *dst, const content *want, uint64_t idx)
{
    sqlite3 *d = rl_db_open_raft(dst);
    content got;
    sqlite3_stmt *st;
    content_of(d, &got);
    CHECK(content_eq(&got, want),
          "installed content differs: crc %08x rows %llu bytes %llu, want "
          "%08x %llu %llu",
          got.crc, (unsigned long long)got.rows, (unsigned long long)got.bytes,
          want->crc, (unsigned long long)want->rows,
          (unsigned long long)want->bytes);
    CHECK(sqlite3_prepare_v2(d, "PRAGMA integrity_check", -1, &st, 0) ==
              SQLITE_OK,
          "integrity_check");
    CHECK(sqlite3_step(st) == SQLITE_ROW &&
              strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0,
          "integrity_check: %s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    CHECK(applied(d) == idx, "applied %llu, want %llu",
          (unsigned long long)applied(d), (unsigned long long)idx);
    sqlite3_close(d);
}

static void install_ok(const char *dst, const char *image, uint64_t idx)
{
    sqlite3 *d = rl_db_open_raft(dst);
    uint64_t got = 0;
    char err[512];
    int rc = rl_image_install_ex(d, image, 5000, &got, err, sizeof err);
    CHECK(rc == RL_IMAGE_OK, "install %s: %s", image, err);
    CHECK(got == idx, "install index %llu want %llu", (unsigned long long)got,
          (unsigned long long)idx);
    sqlite3_close(d);
}

/* The image must be refused with code want_rc and leave dst as it was. */
static void install_refused(const char *dst, const char *image, int want_rc,
                            const char *what)
{
    sqlite3 *d = rl_db_open_raft(dst);
    content before, after;
    uint64_t a0 = applied(d);
    char err[512] = "";
    int rc;
    content_of(d, &before);
    rc = rl_image_install_ex(d, image, 5000, 0, err, sizeof err);
    CHECK(rc == want_rc, "%s: install gave %d (%s), want %d", what, rc, err,
          want_rc);
    CHECK(err[0], "%s: no message", what);
    content_of(d, &after);
    CHECK(content_eq(&before, &after) && applied(d) == a0,
          "%s: target changed by a refused image", what);
    sqlite3_close(d);
}

static void checkpoint_truncate(const char *path)
{
    sqlite3 *d = rl_db_open_raft(path);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(d, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st,
                             0) == SQLITE_OK,
          "checkpoint");
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0,
          "checkpoint busy on %s", path);
    sqlite3_finalize(st);
    sqlite3_close(d);
}

static void files_identical(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
    CHECK(na == nb, "sizes differ: %zu vs %zu", na, nb);
    CHECK(memcmp(x, y, na) == 0, "contents differ");
    free(x);
    free(y);
}

static uint64_t wal_size(const char *db)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s-wal", db);
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static void test_images(void)
{
    const char *src = path_of("src.db"), *dst = path_of("dst.db");
    const char *img1 = path_of("i1.img"), *img2 = path_of("i2.img"),
               *img3 = path_of("i3.img"), *img4 = path_of("i4.img"),
               *bad = path_of("bad.img");
    sqlite3 *w;
    content c1, c2, c3, c4;
    uint64_t i1, i2, i3, i4;
    uint8_t *b;
    size_t n;
    char err[512];
    int k;

    rl_db_make_replicated(src);
    rl_db_make_replicated(dst);
    w = rl_db_open_raft(src);
    /* Keep SQLite's automatic checkpoints out: the test places them. */
    rl_db_exec(w, "PRAGMA wal_autocheckpoint=0");
    workload_init(w);
    CHECK(rl_db_int(w, "PRAGMA page_count") > 1000, "workload too small");
    CHECK(rl_db_next_index >= 20, "port saw the commits");

    /* 1: frames not yet backfilled (writes after a partial checkpoint),
    ** more than the 4062 frames the first wal-index block indexes, so page
    ** lookups cross hash blocks. */
    rl_db_exec(w,
               "UPDATE blobs SET b = randomblob(length(b)) WHERE id % 2 = 0");
    for (k = 0; k < 4; k++)
        rl_db_exec(w, "UPDATE blobs SET b = randomblob(length(b))");
    rl_db_exec(w,
               "UPDATE blobs SET b = randomblob(length(b)) WHERE id % 3 = 0");
    CHECK(wal_size(src) > 4200ull * (4096 + 24), "WAL of %llu bytes",
          (unsigned long long)wal_size(src));
    i1 = image_under_writes(src, w, img1, 60, &c1);
    install_ok(dst, img1, i1);
    check_installed(dst, &c1, i1);

    /* 2: every frame backfilled, WAL not reset: the writers that follow
    ** restart it and overwrite the frames the snapshot would have used. */
    rl_db_exec(w, "PRAGMA wal_checkpoint(PASSIVE)");
    i2 = image_under_writes(src, w, img2, 60, &c2);
    install_ok(dst, img2, i2);
    check_installed(dst, &c2, i2);

    /* 3: no WAL frame at all (TRUNCATE), then a shrink (VACUUM) before
    ** the writes during the image. */
    rl_db_exec(w, "DELETE FROM blobs WHERE id % 3 = 0");
    checkpoint_truncate(src);
    CHECK(wal_size(src) == 0, "WAL truncated");
    i3 = image_under_writes(src, w, img3, 40, &c3);
    rl_db_exec(w, "DELETE FROM blobs WHERE id % 2 = 0; VACUUM");
    install_ok(dst, img3, i3);
    check_installed(dst, &c3, i3);

    /* Refusals: older, equal (accepted as no-op), corrupted anywhere,
    ** truncated, lengthened. The target stays at image 3. */
    install_refused(dst, img1, RL_IMAGE_EDB, "older image");
    install_ok(dst, img3, i3);
    b = read_file(img3, &n);
    {
        size_t at[] = {0,
                       13,
                       30,
                       47,
                       RL_IMAGE_HDR_SIZE + 1,
                       RL_IMAGE_HDR_SIZE + 17,
                       RL_IMAGE_HDR_SIZE + 5000,
                       n / 2,
                       n - 17,
                       n - 9,
                       n - 1};
        size_t i;
        for (i = 0; i < sizeof at / sizeof at[0]; i++) {
            int want;
            b[at[i]] ^= 0x20;
            write_file(bad, b, n);
            want = at[i] < 8 ||
                           (at[i] >= RL_IMAGE_HDR_SIZE &&
                            at[i] < RL_IMAGE_HDR_SIZE + 18) ||
                           at[i] >= n - 16 + 12 ||
                           (at[i] >= n - 16 && at[i] < n - 8)
                       ? RL_IMAGE_EFORMAT
                       : RL_IMAGE_ECKSUM;
            install_refused(dst, bad, want, "flipped byte");
            CHECK(rl_image_verify_file(bad, 0, err, sizeof err) == want,
                  "verify flipped byte at %zu", at[i]);
            b[at[i]] ^= 0x20;
        }
        write_file(bad, b, n - 1);
        install_refused(dst, bad, RL_IMAGE_ESHORT, "truncated by 1");
        write_file(bad, b, n / 3);
        install_refused(dst, bad, RL_IMAGE_ESHORT, "truncated to a third");
        write_file(bad, b, 20);
        install_refused(dst, bad, RL_IMAGE_ESHORT, "truncated header");
        write_file(bad, b, 0);
        install_refused(dst, bad, RL_IMAGE_ESHORT, "empty file");
        {
            uint8_t *l = malloc(n + 1);
            CHECK(l, "oom");
            memcpy(l, b, n);
            l[n] = 0;
            write_file(bad, l, n + 1);
            install_refused(dst, bad, RL_IMAGE_ESHORT, "one byte too many");
            CHECK(rl_image_verify_file(bad, 0, err, sizeof err) ==
                      RL_IMAGE_ELONG,
                  "verify long: %s", err);
            free(l);
        }
        CHECK(rl_image_verify_file(img3, 0, err, sizeof err) == RL_IMAGE_OK,
              "%s", err);
    }
    free(b);

    /* Same state on both sides, quiet: images install over a bigger
    ** database (the VACUUM shrank src), then checkpointed files are
    ** byte-identical. */
    i4 = image_under_writes(src, w, img4, 0, &c4);
    {
        /* A newer image whose fault shows only at its end (a body byte of
        ** the last page, then the trailer's CRC): the install streams its
        ** frames into the WAL before it can know, and must still publish
        ** nothing; the sound image installs over the leftovers. */
        b = read_file(img4, &n);
        b[n - RL_IMAGE_TRAILER_SIZE - 3] ^= 0x01;
        write_file(bad, b, n);
        install_refused(dst, bad, RL_IMAGE_ECKSUM, "last page flipped");
        b[n - RL_IMAGE_TRAILER_SIZE - 3] ^= 0x01;
        b[n - RL_IMAGE_TRAILER_SIZE + 9] ^= 0x01;
        write_file(bad, b, n);
        install_refused(dst, bad, RL_IMAGE_ECKSUM, "trailer CRC flipped");
        free(b);
    }
    install_ok(dst, img4, i4);
    check_installed(dst, &c4, i4);
    sqlite3_close(w);
    checkpoint_truncate(src);
    checkpoint_truncate(dst);
    files_identical(src, dst);

    /* Not replicated: no image, no install. */
    {
        sqlite3 *p = rl_db_open_raft(path_of("plain.db"));
        rl_image_src *s;
        rl_db_exec(p, "CREATE TABLE t(x)");
        CHECK(rl_image_src_open(p, 100, &s, err, sizeof err) == RL_IMAGE_EARG &&
                  strstr(err, "not a replicated"),
              "plain source: %s", err);
        CHECK(rl_image_install(p, img4, err, sizeof err) == RL_IMAGE_EARG,
              "plain target: %s", err);
        sqlite3_close(p);
    }
    /* A source connection inside a transaction is refused. */
    {
        sqlite3 *s = rl_db_open_raft(src);
        rl_image_src *img;
        rl_db_exec(s, "BEGIN; SELECT 1 FROM kv LIMIT 1");
        CHECK(rl_image_src_open(s, 100, &img, err, sizeof err) == RL_IMAGE_EARG,
              "source in a transaction: %s", err);
        rl_db_exec(s, "COMMIT");
        sqlite3_close(s);
    }
    printf("images: indexes %llu %llu %llu %llu, %llu rows at the end\n",
           (unsigned long long)i1, (unsigned long long)i2,
           (unsigned long long)i3, (unsigned long long)i4,
           (unsigned long long)c4.rows);
}

/* ------------------------------------------------------- format alone */

/* A minimal valid image in memory: n pages of size ps, page 1 with an
** SQLite header. */
static uint8_t *make_image(uint32_t ps, uint32_t n, uint64_t index, size_t *len)
{
    rl_image_info info = {index, ps, n};
    uint64_t sz = rl_image_size(&info);
    uint8_t *b = malloc(sz);
    uint32_t i;
    CHECK(b, "oom");
    CHECK(rl_image_hdr_encode(&info, b) == 0, "encode");
    for (i = 0; i < n * ps; i++)
        b[RL_IMAGE_HDR_SIZE + i] = (uint8_t)rnd();
    memcpy(b + RL_IMAGE_HDR_SIZE, "SQLite format 3", 16);
    b[RL_IMAGE_HDR_SIZE + 16] = (uint8_t)(ps == 65536 ? 0 : ps >> 8);
    b[RL_IMAGE_HDR_SIZE + 17] = (uint8_t)(ps == 65536 ? 1 : ps);
    rl_image_trailer_encode(rl_crc32c(0, b + RL_IMAGE_HDR_SIZE, (size_t)n * ps),
                            n, b + sz - RL_IMAGE_TRAILER_SIZE);
    *len = (size_t)sz;
    return b;
}

static void test_format(void)
{
    size_t len, i, cut;
    uint8_t *b = make_image(512, 3, 77, &len);
    rl_image_info info;
    rl_image_check c;
    char err[256];
    CHECK(len == 48 + 3 * 512 + 16, "size");
    CHECK(rl_image_hdr_decode(b, &info, err, sizeof err) == 0 &&
              info.index == 77 && info.page_size == 512 && info.n_pages == 3,
          "decode: %s", err);
    /* Any split feeds the same verdict. */
    for (cut = 0; cut <= len; cut += 7) {
        rl_image_check_init(&c);
        CHECK(rl_image_check_feed(&c, b, cut, err, sizeof err) == 0, "%s", err);
        CHECK(rl_image_check_feed(&c, b + cut, len - cut, err, sizeof err) == 0,
              "%s", err);
        CHECK(rl_image_check_finish(&c, err, sizeof err) == 0, "%s", err);
    }
    /* Byte at a time; every flip of every byte is refused. */
    rl_image_check_init(&c);
    for (i = 0; i < len; i++)
        CHECK(rl_image_check_feed(&c, b + i, 1, err, sizeof err) == 0, "%s",
              err);
    CHECK(rl_image_check_finish(&c, err, sizeof err) == 0, "%s", err);
    for (i = 0; i < len; i++) {
        int rc;
        b[i] ^= 1;
        rl_image_check_init(&c);
        rc = rl_image_check_feed(&c, b, len, err, sizeof err);
        if (rc == 0)
            rc = rl_image_check_finish(&c, err, sizeof err);
        CHECK(rc < 0 && err[0], "flip at %zu accepted", i);
        b[i] ^= 1;
    }
    /* Every truncation is refused as short. */
    for (i = 0; i < len; i++) {
        rl_image_check_init(&c);
        CHECK(rl_image_check_feed(&c, b, i, err, sizeof err) == 0, "%s", err);
        CHECK(rl_image_check_finish(&c, err, sizeof err) == RL_IMAGE_ESHORT,
              "truncated at %zu accepted", i);
    }
    /* Errors stick. */
    rl_image_check_init(&c);
    CHECK(rl_image_check_feed(&c, "XXXXXXXX", 8, err, sizeof err) == 0, "8");
    CHECK(rl_image_check_feed(&c, b + 8, len - 8, err, sizeof err) ==
              RL_IMAGE_EFORMAT,
          "bad magic");
    CHECK(rl_image_check_feed(&c, b, 1, err, sizeof err) == RL_IMAGE_EFORMAT,
          "sticky");
    /* Header rules. */
    {
        rl_image_info bad = {1, 1000, 1};
        uint8_t h[RL_IMAGE_HDR_SIZE];
        CHECK(rl_image_hdr_encode(&bad, h) == RL_IMAGE_EARG, "page size");
        bad.page_size = 65536;
        bad.n_pages = 0;
        CHECK(rl_image_hdr_encode(&bad, h) == RL_IMAGE_EARG, "0 pages");
        bad.n_pages = 2;
        CHECK(rl_image_hdr_encode(&bad, h) == 0, "64K pages");
        CHECK(rl_image_hdr_decode(h, &info, err, sizeof err) == 0 &&
                  info.page_size == 65536,
              "64K decode");
        h[8] = 2; /* version 2, checksum fixed */
        {
            uint32_t crc = rl_crc32c(0, h, 44);
            memcpy(h + 44, &crc, 4); /* little-endian host */
        }
        CHECK(rl_image_hdr_decode(h, &info, err, sizeof err) ==
                      RL_IMAGE_EFORMAT &&
                  strstr(err, "version"),
              "version: %s", err);
    }
    free(b);
    b = make_image(65536, 1, 1, &len);
    rl_image_check_init(&c);
    CHECK(rl_image_check_feed(&c, b, len, err, sizeof err) == 0 &&
              rl_image_check_finish(&c, err, sizeof err) == 0,
          "64K image: %s", err);
    free(b);
}

static int write_seeds(const char *dir)
{
    static const uint32_t shapes[][2] = {
        {512, 1}, {512, 3}, {1024, 2}, {4096, 1}};
    size_t i;
    for (i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t len;
        uint8_t *b = make_image(shapes[i][0], shapes[i][1], i * 1000, &len);
        char p[600];
        snprintf(p, sizeof p, "%s/seed-valid-%zu", dir, i);
        write_file(p, b, len);
        b[len - 10] ^= 1;
        snprintf(p, sizeof p, "%s/seed-badcrc-%zu", dir, i);
        write_file(p, b, len);
        snprintf(p, sizeof p, "%s/seed-short-%zu", dir, i);
        write_file(p, b, len / 2);
        free(b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
        return write_seeds(argv[2]);
    rl_db_setup("test_image");
    test_format();
    test_images();
    printf("test_image: %d checks passed\n", rl_checks);
    return 0;
}
