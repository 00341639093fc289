/*
** vfs/image.h -- consistent database images: the out-of-band copy of a
** replicated database that a node fetches from a peer when its own file
** does not satisfy a restored snapshot (DESIGN 6), or on GENESIS.
**
** An image is the database's pages 1..N exactly as one read transaction
** sees them, paired with the index of the applied record at that moment,
** framed so that a receiver can check every byte before it installs
** anything. This module knows SQLite files and nothing of Raft or gRPC: the
** source reads through an open connection of the raft VFS, the install
** streams the pages as one transaction through rl_vfs_apply_stream.
**
** Image format, version 1 (integers little-endian):
**
**   header (48 bytes)
**     0   magic "RLIMAGE\0"
**     8   u32 version = 1
**     12  u32 page_size (power of two, 512..65536)
**     16  u32 n_pages (database size in pages, 1..4294967294)
**     20  u32 flags = 0
**     24  u64 index (the applied record's index the pages reflect)
**     32  u64 reserved = 0
**     40  u32 reserved = 0
**     44  u32 crc32c of bytes [0, 44)
**   body: n_pages x page_size bytes, page 1 first; page 1 must begin with
**         "SQLite format 3\0" and carry page_size at its bytes 16..17
**   trailer (16 bytes)
**     0   magic "RLIMGEND"
**     8   u32 crc32c of the body
**     12  u32 n_pages again
**
** An image is exactly 48 + n_pages * page_size + 16 bytes. The CRC of the
** body sits in a trailer because the source streams pages as it reads them
** (memory stays bounded: a page at a time) and knows the CRC only at the
** end. The checker (rl_image_check) accepts an image fed in pieces of any
** size and refuses the first byte that breaks the format; nothing is
** installed from an image the checker did not finish.
**
** vfs/imagefmt.c holds the format and the checker (pure code, fuzzed by
** tests/fuzz/fuzz_image.c); vfs/image.c the source and the install.
*/
#ifndef RL_IMAGE_H
#define RL_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define RL_IMAGE_MAGIC        "RLIMAGE\0"
#define RL_IMAGE_END_MAGIC    "RLIMGEND"
#define RL_IMAGE_VERSION      1u
#define RL_IMAGE_HDR_SIZE     48
#define RL_IMAGE_TRAILER_SIZE 16
#define RL_IMAGE_MAX_PAGES    4294967294u /* SQLite's largest page count */

/* Return codes: 0 success, negative errors (a message says more). */
#define RL_IMAGE_OK      0
#define RL_IMAGE_EFORMAT (-1) /* malformed: magic, version, sizes, page 1 */
#define RL_IMAGE_ECKSUM  (-2) /* a checksum does not match */
#define RL_IMAGE_ESHORT  (-3) /* the image ended early */
#define RL_IMAGE_ELONG   (-4) /* bytes after the trailer */
#define RL_IMAGE_EIO     (-5) /* reading or writing a file failed */
#define RL_IMAGE_ENOMEM  (-6)
#define RL_IMAGE_EDB     (-7) /* SQLite / VFS refused (message says why) */
#define RL_IMAGE_EARG    (-8) /* caller broke a documented precondition */
#define RL_IMAGE_EBUSY   (-9) /* the database kept changing: try again */

typedef struct rl_image_info {
    uint64_t index;
    uint32_t page_size;
    uint32_t n_pages;
} rl_image_info;

/* Total encoded size of an image with these page size and count. */
uint64_t rl_image_size(const rl_image_info *info);

/* Encodes the header / trailer. The header's info must be valid
** (page size, 1 <= n_pages <= RL_IMAGE_MAX_PAGES): RL_IMAGE_EARG if not. */
int rl_image_hdr_encode(const rl_image_info *info,
                        uint8_t out[RL_IMAGE_HDR_SIZE]);
void rl_image_trailer_encode(uint32_t body_crc, uint32_t n_pages,
                             uint8_t out[RL_IMAGE_TRAILER_SIZE]);
/* Decodes and checks a header; 0 or EFORMAT/ECKSUM with a message. */
int rl_image_hdr_decode(const uint8_t in[RL_IMAGE_HDR_SIZE],
                        rl_image_info *info, char *err, size_t errlen);

/*
** Streaming checker of an encoded image. Feed it the bytes in order, in
** pieces of any size; after the first error every call returns that error
** again. finish() succeeds only if exactly one whole, valid image was fed.
*/
typedef struct rl_image_check {
    int state; /* private */
    int rc;    /* first error, or 0 */
    uint8_t buf[RL_IMAGE_HDR_SIZE];
    uint32_t have; /* bytes in buf */
    rl_image_info info;
    uint64_t body;     /* body bytes accepted */
    uint64_t body_len; /* n_pages * page_size once the header is known */
    uint32_t crc;      /* crc32c of the body so far */
    char msg[256];
} rl_image_check;

void rl_image_check_init(rl_image_check *c);
/* 0, or a negative code with err saying which rule broke. */
int rl_image_check_feed(rl_image_check *c, const void *data, size_t n,
                        char *err, size_t errlen);
/* 1 once the header was fed and decoded (c->info is then valid). */
int rl_image_check_has_header(const rl_image_check *c);
int rl_image_check_finish(rl_image_check *c, char *err, size_t errlen);

/* Checks a whole image file; fills *info on success. */
int rl_image_verify_file(const char *path, rl_image_info *info, char *err,
                         size_t errlen);

/* ---- the parts below use SQLite (vfs/image.c); the format and checker
** above are pure code (vfs/imagefmt.c, fuzzed) ---- */

struct sqlite3;

/*
** Image source. Opens a consistent image of the replicated database that
** db (a connection of the raft VFS, used by this thread only until close)
** has as "main": takes the database write lock (no commit in progress),
** begins a read transaction on db, reads the applied record's index and the
** wal-index header (then exactly the read transaction's snapshot), releases
** the write lock, and from then on produces the image bytes a page at a
** time: each page from the latest WAL frame of the snapshot that holds it,
** or from the database file. The read transaction keeps checkpoints and WAL
** restarts from overwriting what the snapshot needs; writers go on. db must
** have no transaction open. timeout_ms bounds the wait for the write lock.
*/
typedef struct rl_image_src rl_image_src;
int rl_image_src_open(struct sqlite3 *db, int timeout_ms, rl_image_src **out,
                      char *err, size_t errlen);
const rl_image_info *rl_image_src_info(const rl_image_src *s);
/* Copies up to n next bytes of the image into buf; *got = 0 at the end.
** 0 or a negative code with a message. */
int rl_image_src_read(rl_image_src *s, uint8_t *buf, size_t n, size_t *got,
                      char *err, size_t errlen);
/* Ends the read transaction and frees s. NULL-safe. */
void rl_image_src_close(rl_image_src *s);

/* Writes the consistent image of db's main database to path (created or
** truncated, fsynced); *info receives its header. */
int rl_image_save(struct sqlite3 *db, const char *path, int timeout_ms,
                  rl_image_info *info, char *err, size_t errlen);

/*
** Installs a verified image file into db's main database (a replicated
** database of the raft VFS, opened by the caller, no transaction open):
** streams its pages, a page at a time, as one transaction of database size
** n_pages through rl_vfs_apply_stream with the image's index, checking every
** byte on the way (format, both CRCs) and the trailer before the commit
** frame is written, so the applied record says that index and every
** connection, stock readers included, sees the new content at once. A
** malformed, truncated or corrupted image, an image older than the
** database's applied record, or a page size other than the database's is
** refused and nothing is changed; an image at the very index the database
** already reflects is accepted without change (a retried install). *index
** (may be NULL) receives the image's index. Memory: one page and one batch
** of frames, whatever the image's size (the refused image's frames stay
** unpublished in the WAL, past its end, and are overwritten later).
*/
int rl_image_install_ex(struct sqlite3 *db, const char *image_path,
                        int timeout_ms, uint64_t *index, char *err,
                        size_t errlen);
/* rl_image_install_ex with a 10 s lock timeout. */
int rl_image_install(struct sqlite3 *db, const char *image_path, char *err,
                     size_t errlen);

/* Text naming an RL_IMAGE_* code. */
const char *rl_image_errstr(int rc);

#endif /* RL_IMAGE_H */
