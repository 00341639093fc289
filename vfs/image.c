/*
** vfs/image.c -- consistent database images of a replicated database: the
** source (a read transaction's snapshot streamed a page at a time, paired
** with the applied record's index), saving one to a file, verifying a file,
** and installing one as a single WAL commit (format: vfs/image.h).
**
** What it must never do: produce an image whose pages and index come from
** different moments; hold more than a page (source) or a batch of frames
** (install) of the database in memory; commit anything from an image it has
** not checked whole; leave a database half-installed. It knows SQLite files and
*nothing of Raft or
** gRPC.
**
** Why the snapshot is consistent. The source takes the database write lock
** (no commit can be in progress or start), begins a read transaction on its
** connection, and reads the applied record and the wal-index header before
** releasing the lock: with no writer able to commit, the header it reads is
** the one the read transaction saw, and the record matches it. Afterwards
** the read transaction protects the snapshot:
**   - if frames of the snapshot were not yet backfilled (nBackfill <
**     mxFrame) the reader holds a read mark > 0 whose value is at most
**     mxFrame: no writer can restart the WAL (that needs READ1..4
**     exclusively) and no checkpoint can backfill past the mark, so WAL
**     frames 1..mxFrame stay as they are and the database file's pages that
**     no such frame holds do not change;
**   - if every frame was backfilled (nBackfill == mxFrame, checked after
**     the read began, still under the lock) the database file alone holds
**     the snapshot, and the reader's read mark (0, or one >= nBackfill)
**     keeps any checkpoint from writing a later page into it. The WAL may
**     then be restarted and reused, so it is not read at all.
** Each page is the latest WAL frame <= mxFrame that holds it (rl_shm_find)
** or else the database file's page, exactly as the reader would see it.
** The wal-index is read first on this connection outside the lock, so a
** recovery (which takes the write lock on this very connection) never runs
** while the source holds it.
*/
#include "sqlite3ext.h"
#include "bytes.h"
#include "errbuf.h"
#include "fsio.h"
SQLITE_EXTENSION_INIT3

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "image.h"
#include "txn.h"
#include "vfs.h"
#include "walfmt.h"

#define IO_CHUNK (1u << 20)

struct rl_image_src {
    sqlite3 *db;
    sqlite3_file *f; /* main file (raft VFS) */
    sqlite3_file *dbf, *wal;
    rl_image_info info;
    uint32_t mx_frame; /* snapshot's mxFrame; 0: read the db file only */
    int in_txn;        /* the read transaction is open */
    uint64_t pos;      /* bytes of the image produced so far */
    uint64_t size;     /* rl_image_size(&info) */
    uint32_t crc;      /* crc32c of the pages produced */
    uint8_t hdr[RL_IMAGE_HDR_SIZE];
    uint8_t trailer[RL_IMAGE_TRAILER_SIZE];
    uint8_t *page;    /* one page */
    uint32_t page_no; /* page held in page[], 0 none */
};

static sqlite3_file *main_file(sqlite3 *db)
{
    sqlite3_file *f = 0;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) !=
        SQLITE_OK)
        return 0;
    return f;
}

/* Reads once on db so that its WAL is open and the wal-index valid
** (recovery, if needed, runs here and not under the source's lock).
** target: db is an install's target, whose content the image replaces
** whole: a malformed database is no reason to refuse it, as long as its
** WAL is open (a rebuild installs over exactly such files). */
static int warm(sqlite3 *db, int target, char *err, size_t errlen)
{
    char *msg = 0;
    int rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", 0, 0, &msg);
    sqlite3_file *f = NULL;
    if (target && (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) &&
        sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) ==
            SQLITE_OK &&
        f && rl_vfs_wal_file(f)) {
        sqlite3_free(msg);
        return RL_IMAGE_OK;
    }
    if (rc != SQLITE_OK) {
        rl_fail(err, errlen, RL_IMAGE_EDB, "%s: cannot read the database: %s",
                sqlite3_db_filename(db, "main"),
                msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return RL_IMAGE_EDB;
    }
    return RL_IMAGE_OK;
}

static volatile void *region_cb(void *arg, int i)
{
    return rl_vfs_shm_region(arg, i);
}

/* Reads page pgno of the snapshot into s->page. */
static int src_page(rl_image_src *s, uint32_t pgno, char *err, size_t errlen)
{
    uint32_t ps = s->info.page_size, frame = 0;
    int rc;
    if (s->mx_frame) {
        int e = rl_shm_find(region_cb, s->f, 1, s->mx_frame, pgno, &frame);
        if (e != 0)
            return rl_fail(err, errlen, RL_IMAGE_EDB,
                           "wal-index lookup of page %u failed: %s", pgno,
                           rl_walfmt_errstr(e));
    }
    if (frame) {
        rc = s->wal->pMethods->xRead(
            s->wal, s->page, (int)ps,
            (sqlite3_int64)rl_wal_frame_offset(ps, frame) +
                RL_WAL_FRAME_HDR_SIZE);
        if (rc != SQLITE_OK)
            return rl_fail(err, errlen, RL_IMAGE_EIO,
                           "reading WAL frame %u (page %u): %s", frame, pgno,
                           sqlite3_errstr(rc));
    } else {
        rc = s->dbf->pMethods->xRead(s->dbf, s->page, (int)ps,
                                     (sqlite3_int64)(pgno - 1) * ps);
        /* A page past the file's end reads as zeros, as SQLite's pager
        ** reads it (the unix VFS zero-fills a short read). */
        if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ)
            return rl_fail(err, errlen, RL_IMAGE_EIO,
                           "reading page %u of the database file: %s", pgno,
                           sqlite3_errstr(rc));
    }
    s->page_no = pgno;
    return RL_IMAGE_OK;
}

/* Takes the snapshot: lock, read transaction, record and header, unlock.
** Fills s->info and s->mx_frame. */
static int src_snapshot(rl_image_src *s, int timeout_ms, char *err,
                        size_t errlen)
{
    const char *path = sqlite3_db_filename(s->db, "main");
    rl_shm_hdr h, h0;
    volatile void *r0;
    uint32_t nbackfill;
    uint64_t index = 0;
    char *msg = 0;
    int rc;

    rc = rl_vfs_lock_write(s->f, timeout_ms, err, errlen);
    if (rc != SQLITE_OK)
        return RL_IMAGE_EDB;
    /* A valid header now, under the lock, means the read below runs no
    ** recovery: recovery would take the write lock on this very connection
    ** and release it (OFD locks of one description do not nest). */
    rc = rl_vfs_shm_header(s->f, &h0);
    if (rc != SQLITE_OK) {
        rl_vfs_unlock_write(s->f);
        return rl_fail(err, errlen, RL_IMAGE_EBUSY,
                       "%s: the wal-index header is not valid (%s)", path,
                       sqlite3_errstr(rc));
    }
    rc = sqlite3_exec(s->db, "BEGIN; SELECT count(*) FROM sqlite_schema", 0, 0,
                      &msg);
    if (rc != SQLITE_OK) {
        rl_fail(err, errlen, RL_IMAGE_EDB, "%s: cannot begin a read: %s", path,
                msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        rl_vfs_unlock_write(s->f);
        return RL_IMAGE_EDB;
    }
    s->in_txn = !sqlite3_get_autocommit(s->db);
    rc = rl_vfs_applied_locked(s->f, &index, err, errlen);
    if (rc == SQLITE_OK && (rc = rl_vfs_shm_header(s->f, &h)) != SQLITE_OK)
        rl_fail(err, errlen, 0, "%s: the wal-index header is not valid (%s)",
                path, sqlite3_errstr(rc));
    r0 = rc == SQLITE_OK ? rl_vfs_shm_region(s->f, 0) : 0;
    if (rc == SQLITE_OK && !r0) {
        rl_fail(err, errlen, 0, "%s: cannot map the wal-index", path);
        rc = SQLITE_IOERR_SHMMAP;
    }
    nbackfill = r0 ? *rl_shm_nbackfill(r0) : 0;
    rl_vfs_unlock_write(s->f);
    if (rc != SQLITE_OK)
        return RL_IMAGE_EDB;
    /* Nothing may have moved while the lock was held: otherwise the read
    ** transaction's snapshot and the header and index read after it could
    ** differ. */
    if (h.mxFrame != h0.mxFrame || h.iChange != h0.iChange ||
        memcmp(h.aSalt, h0.aSalt, 8) != 0)
        return rl_fail(err, errlen, RL_IMAGE_EBUSY,
                       "%s: the WAL changed while the image's snapshot was "
                       "taken",
                       path);
    if (!s->in_txn)
        return rl_fail(err, errlen, RL_IMAGE_EDB,
                       "%s: the read transaction did not stay open", path);

    s->info.index = index;
    s->info.n_pages = h.nPage;
    s->dbf = rl_vfs_db_file(s->f);
    if (h.mxFrame) {
        s->info.page_size = rl_shm_page_size(&h);
        if (nbackfill < h.mxFrame) {
            uint8_t salt[8];
            s->wal = rl_vfs_wal_file(s->f);
            if (!s->wal)
                return rl_fail(err, errlen, RL_IMAGE_EDB,
                               "%s: the connection has no open WAL", path);
            /* The WAL on disk must be the generation the header names. */
            rc = s->wal->pMethods->xRead(s->wal, salt, 8, 16);
            if (rc != SQLITE_OK || memcmp(salt, h.aSalt, 8) != 0)
                return rl_fail(
                    err, errlen, RL_IMAGE_EDB,
                    "%s: the WAL header does not match the wal-index", path);
            s->mx_frame = h.mxFrame;
        }
    }
    if (!s->info.page_size || !s->info.n_pages) {
        /* No WAL frame: the database file's own header and size. */
        uint8_t b[100];
        sqlite3_int64 sz = 0;
        rc = s->dbf->pMethods->xFileSize(s->dbf, &sz);
        if (rc != SQLITE_OK)
            return rl_fail(err, errlen, RL_IMAGE_EIO, "%s: cannot stat: %s",
                           path, sqlite3_errstr(rc));
        if (sz < 100)
            return rl_fail(err, errlen, RL_IMAGE_EDB,
                           "%s: the database is empty: there is no image to "
                           "serve (write to it first)",
                           path);
        rc = s->dbf->pMethods->xRead(s->dbf, b, sizeof b, 0);
        if (rc != SQLITE_OK)
            return rl_fail(err, errlen, RL_IMAGE_EIO,
                           "%s: cannot read the database header: %s", path,
                           sqlite3_errstr(rc));
        if (!s->info.page_size) {
            uint32_t v = rl_get_be16(b + 16);
            s->info.page_size = v == 1 ? 65536 : v;
        }
        if (!s->info.n_pages && s->info.page_size)
            s->info.n_pages =
                (uint32_t)((sz + s->info.page_size - 1) / s->info.page_size);
    }
    if (rl_image_hdr_encode(&s->info, s->hdr) != RL_IMAGE_OK)
        return rl_fail(err, errlen, RL_IMAGE_EDB,
                       "%s: cannot image a database of page size %u and %u "
                       "pages",
                       path, s->info.page_size, s->info.n_pages);
    s->size = rl_image_size(&s->info);
    return RL_IMAGE_OK;
}

int rl_image_src_open(sqlite3 *db, int timeout_ms, rl_image_src **out,
                      char *err, size_t errlen)
{
    rl_image_src *s;
    int rc, tries;
    *out = 0;
    if (!sqlite3_get_autocommit(db))
        return rl_fail(err, errlen, RL_IMAGE_EARG,
                       "image source: the connection has a transaction open; "
                       "use a connection of its own");
    s = sqlite3_malloc64(sizeof *s);
    if (!s)
        return rl_fail(err, errlen, RL_IMAGE_ENOMEM, "out of memory");
    memset(s, 0, sizeof *s);
    s->db = db;
    s->f = main_file(db);
    if (!rl_vfs_is_replicated(s->f)) {
        sqlite3_free(s);
        return rl_fail(err, errlen, RL_IMAGE_EARG,
                       "%s is not a replicated database opened with the raft "
                       "VFS: no image can be taken of it",
                       sqlite3_db_filename(db, "main"));
    }
    /* A snapshot that found the wal-index being recovered or changing is
    ** taken again (recovery runs in warm(), outside the lock). */
    for (tries = 0;; tries++) {
        rc = warm(db, 0, err, errlen);
        if (rc == RL_IMAGE_OK)
            rc = src_snapshot(s, timeout_ms, err, errlen);
        if (rc != RL_IMAGE_EBUSY || tries == 3)
            break;
        if (s->in_txn) {
            sqlite3_exec(db, "COMMIT", 0, 0, 0);
            s->in_txn = 0;
        }
        memset(&s->info, 0, sizeof s->info);
        s->mx_frame = 0;
        s->wal = 0;
    }
    if (rc == RL_IMAGE_OK) {
        s->page = sqlite3_malloc64(s->info.page_size);
        if (!s->page)
            rc = rl_fail(err, errlen, RL_IMAGE_ENOMEM, "out of memory");
    }
    if (rc != RL_IMAGE_OK) {
        rl_image_src_close(s);
        return rc;
    }
    *out = s;
    return RL_IMAGE_OK;
}

const rl_image_info *rl_image_src_info(const rl_image_src *s)
{
    return &s->info;
}

int rl_image_src_read(rl_image_src *s, uint8_t *buf, size_t n, size_t *got,
                      char *err, size_t errlen)
{
    uint64_t body_end = s->size - RL_IMAGE_TRAILER_SIZE;
    uint32_t ps = s->info.page_size;
    size_t done = 0;
    int rc;
    while (done < n && s->pos < s->size) {
        size_t k;
        if (s->pos < RL_IMAGE_HDR_SIZE) {
            k = RL_IMAGE_HDR_SIZE - (size_t)s->pos;
            k = k < n - done ? k : n - done;
            memcpy(buf + done, s->hdr + s->pos, k);
        } else if (s->pos < body_end) {
            uint64_t off = s->pos - RL_IMAGE_HDR_SIZE;
            uint32_t pgno = (uint32_t)(off / ps) + 1, in = (uint32_t)(off % ps);
            if (s->page_no != pgno) {
                rc = src_page(s, pgno, err, errlen);
                if (rc != RL_IMAGE_OK)
                    return rc;
                s->crc = rl_crc32c(s->crc, s->page, ps);
                if (pgno == s->info.n_pages)
                    rl_image_trailer_encode(s->crc, s->info.n_pages,
                                            s->trailer);
            }
            k = ps - in;
            k = k < n - done ? k : n - done;
            memcpy(buf + done, s->page + in, k);
        } else {
            uint64_t off = s->pos - body_end;
            k = RL_IMAGE_TRAILER_SIZE - (size_t)off;
            k = k < n - done ? k : n - done;
            memcpy(buf + done, s->trailer + off, k);
        }
        done += k;
        s->pos += k;
    }
    *got = done;
    return RL_IMAGE_OK;
}

void rl_image_src_close(rl_image_src *s)
{
    if (!s)
        return;
    if (s->in_txn)
        sqlite3_exec(s->db, "COMMIT", 0, 0, 0); /* a read: cannot fail */
    sqlite3_free(s->page);
    sqlite3_free(s);
}

/* ------------------------------------------------------------- files */

/* Reads exactly n bytes or fewer at end of file; -1 on error. */
static ssize_t read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int rl_image_save(sqlite3 *db, const char *path, int timeout_ms,
                  rl_image_info *info, char *err, size_t errlen)
{
    rl_image_src *s = 0;
    uint8_t *buf = 0;
    size_t got;
    int fd = -1, rc;
    rc = rl_image_src_open(db, timeout_ms, &s, err, errlen);
    if (rc != RL_IMAGE_OK)
        return rc;
    buf = sqlite3_malloc(IO_CHUNK);
    if (!buf) {
        rc = rl_fail(err, errlen, RL_IMAGE_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = rl_fail(err, errlen, RL_IMAGE_EIO, "cannot create %s: %s", path,
                     strerror(errno));
        goto out;
    }
    for (;;) {
        rc = rl_image_src_read(s, buf, IO_CHUNK, &got, err, errlen);
        if (rc != RL_IMAGE_OK || got == 0)
            break;
        if (rl_write_all(fd, buf, got) != 0) {
            rc = rl_fail(err, errlen, RL_IMAGE_EIO, "writing %s: %s", path,
                         strerror(errno));
            break;
        }
    }
    if (rc == RL_IMAGE_OK && fsync(fd) != 0)
        rc = rl_fail(err, errlen, RL_IMAGE_EIO, "fsync %s: %s", path,
                     strerror(errno));
    if (rc == RL_IMAGE_OK && info)
        *info = s->info;
out:
    if (fd >= 0) {
        close(fd); /* a file of our own: no SQLite lock on it */
        if (rc != RL_IMAGE_OK)
            unlink(path);
    }
    sqlite3_free(buf);
    rl_image_src_close(s);
    return rc;
}

int rl_image_verify_file(const char *path, rl_image_info *info, char *err,
                         size_t errlen)
{
    rl_image_check c;
    uint8_t *buf;
    ssize_t r;
    int fd, rc = RL_IMAGE_OK;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rl_fail(err, errlen, RL_IMAGE_EIO, "cannot open image %s: %s",
                       path, strerror(errno));
    buf = sqlite3_malloc(IO_CHUNK);
    if (!buf) {
        close(fd);
        return rl_fail(err, errlen, RL_IMAGE_ENOMEM, "out of memory");
    }
    rl_image_check_init(&c);
    while ((r = read_full(fd, buf, IO_CHUNK)) > 0) {
        rc = rl_image_check_feed(&c, buf, (size_t)r, err, errlen);
        if (rc != RL_IMAGE_OK)
            break;
    }
    if (r < 0)
        rc = rl_fail(err, errlen, RL_IMAGE_EIO, "reading image %s: %s", path,
                     strerror(errno));
    else if (rc == RL_IMAGE_OK)
        rc = rl_image_check_finish(&c, err, errlen);
    if (rc == RL_IMAGE_OK && info)
        *info = c.info;
    sqlite3_free(buf);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------ install */

/*
** The install's page stream over an image file: reads a page at a time,
** feeds every byte to the checker, and with the last page reads the
** trailer (and one byte more: a longer file is refused) and finishes the
** check, before the apply writes the commit frame. So what is checked is
** exactly what is installed, and a bad image never commits.
*/
typedef struct install_src {
    const char *path;
    int fd;
    rl_image_check c;
    uint32_t page_size, n_pages, next; /* next page number to give */
    uint8_t *page;
    int rc; /* RL_IMAGE_* of an image fault, 0 if none */
} install_src;

static int install_next(void *arg, uint32_t *pgno, const uint8_t **data,
                        char *err, size_t errlen)
{
    install_src *is = arg;
    ssize_t r = read_full(is->fd, is->page, is->page_size);
    int rc;
    if (r < 0) {
        is->rc = rl_fail(err, errlen, RL_IMAGE_EIO, "reading image %s: %s",
                         is->path, strerror(errno));
        return SQLITE_IOERR_READ;
    }
    rc = rl_image_check_feed(&is->c, is->page, (size_t)r, err, errlen);
    if (rc == RL_IMAGE_OK && (size_t)r < is->page_size)
        rc = rl_image_check_finish(&is->c, err, errlen); /* says short */
    if (rc == RL_IMAGE_OK && is->next == is->n_pages) {
        uint8_t tail[RL_IMAGE_TRAILER_SIZE + 1];
        r = read_full(is->fd, tail, sizeof tail);
        if (r < 0) {
            is->rc = rl_fail(err, errlen, RL_IMAGE_EIO, "reading image %s: %s",
                             is->path, strerror(errno));
            return SQLITE_IOERR_READ;
        }
        rc = rl_image_check_feed(&is->c, tail, (size_t)r, err, errlen);
        if (rc == RL_IMAGE_OK)
            rc = rl_image_check_finish(&is->c, err, errlen);
    }
    if (rc != RL_IMAGE_OK) {
        is->rc = rc;
        return SQLITE_CORRUPT;
    }
    *pgno = is->next++;
    *data = is->page;
    return SQLITE_OK;
}

int rl_image_install_ex(sqlite3 *db, const char *image_path, int timeout_ms,
                        uint64_t *index, char *err, size_t errlen)
{
    sqlite3_file *f = main_file(db);
    const char *path = sqlite3_db_filename(db, "main");
    install_src is;
    rl_page_stream ps;
    uint8_t hdr[RL_IMAGE_HDR_SIZE];
    uint64_t cur = 0;
    uint32_t frames = 0;
    struct stat st;
    ssize_t r;
    char e2[512];
    int rc;

    if (!rl_vfs_is_replicated(f))
        return rl_fail(err, errlen, RL_IMAGE_EARG,
                       "%s is not a replicated database opened with the raft "
                       "VFS: cannot install an image into it",
                       path);
    if (!sqlite3_get_autocommit(db))
        return rl_fail(err, errlen, RL_IMAGE_EARG,
                       "%s: the installing connection has a transaction open",
                       path);
    memset(&is, 0, sizeof is);
    is.path = image_path;
    is.fd = open(image_path, O_RDONLY | O_CLOEXEC);
    if (is.fd < 0)
        return rl_fail(err, errlen, RL_IMAGE_EIO, "cannot open image %s: %s",
                       image_path, strerror(errno));
    rl_image_check_init(&is.c);
    r = read_full(is.fd, hdr, sizeof hdr);
    if (r < 0) {
        rc = rl_fail(err, errlen, RL_IMAGE_EIO, "reading image %s: %s",
                     image_path, strerror(errno));
        goto out;
    }
    rc = rl_image_check_feed(&is.c, hdr, (size_t)r, err, errlen);
    if (rc == RL_IMAGE_OK && !rl_image_check_has_header(&is.c))
        rc = rl_image_check_finish(&is.c, err, errlen); /* truncated header */
    if (rc != RL_IMAGE_OK)
        goto out;
    /* A file of another size than its header announces is refused before
    ** anything is written. */
    if (fstat(is.fd, &st) != 0 ||
        (uint64_t)st.st_size != rl_image_size(&is.c.info)) {
        rc = rl_fail(err, errlen, RL_IMAGE_ESHORT,
                     "image %s is %lld bytes, its header announces %llu: "
                     "truncated or corrupted; fetch it again",
                     image_path, (long long)st.st_size,
                     (unsigned long long)rl_image_size(&is.c.info));
        goto out;
    }
    rc = warm(db, 1, err, errlen);
    if (rc != RL_IMAGE_OK)
        goto out;
    if (!rl_vfs_wal_file(f)) {
        rc = rl_fail(err, errlen, RL_IMAGE_EDB,
                     "%s is not in WAL mode: a replicated database must be "
                     "(PRAGMA journal_mode=WAL before it became replicated)",
                     path);
        goto out;
    }
    if (rl_vfs_applied(f, timeout_ms, &cur, e2, sizeof e2) != SQLITE_OK) {
        rc = rl_fail(err, errlen, RL_IMAGE_EDB, "%s", e2);
        goto out;
    }
    if (is.c.info.index == cur && cur != 0) {
        /* Already there (an install retried after it landed), if the
        ** image is sound. */
        rc = rl_image_verify_file(image_path, 0, err, errlen);
        if (rc == RL_IMAGE_OK && index)
            *index = cur;
        goto out;
    }
    if (is.c.info.index <= cur) {
        rc = rl_fail(err, errlen, RL_IMAGE_EDB,
                     "%s already reflects index %llu; the image is at %llu: "
                     "fetch a newer image",
                     path, (unsigned long long)cur,
                     (unsigned long long)is.c.info.index);
        goto out;
    }
    is.page_size = is.c.info.page_size;
    is.n_pages = is.c.info.n_pages;
    is.next = 1;
    is.page = sqlite3_malloc64(is.page_size);
    if (!is.page) {
        rc = rl_fail(err, errlen, RL_IMAGE_ENOMEM, "out of memory");
        goto out;
    }
    ps.page_size = is.page_size;
    ps.db_pages = is.n_pages;
    ps.n_pages = is.n_pages;
    ps.next = install_next;
    ps.arg = &is;
    RL_FAULT("image-install");
    rc = rl_vfs_apply_stream(f, &ps, is.c.info.index, timeout_ms, &frames, e2,
                             sizeof e2);
    if (rc != SQLITE_OK) {
        /* An image fault's message is the image's own. */
        if (is.rc != RL_IMAGE_OK)
            rc = rl_fail(err, errlen, is.rc, "image %s refused: %s", image_path,
                         e2);
        else
            rc = rl_fail(err, errlen, RL_IMAGE_EDB,
                         "installing image at %llu: %s",
                         (unsigned long long)is.c.info.index, e2);
        goto out;
    }
    if (index)
        *index = is.c.info.index;
    rc = RL_IMAGE_OK;
out:
    sqlite3_free(is.page);
    close(is.fd); /* a file of our own: no SQLite lock on it */
    return rc;
}

int rl_image_install(sqlite3 *db, const char *image_path, char *err,
                     size_t errlen)
{
    return rl_image_install_ex(db, image_path, 10000, 0, err, errlen);
}
