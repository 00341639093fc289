/*
** vfs/imagefmt.c -- the database image format (vfs/image.h) as pure
** functions: header and trailer encoding, and the streaming checker that
** every received image passes before anything of it is used.
**
** What it must never do: read outside the bytes it is given, accept an
** image whose every byte it did not check, or allocate (the checker's state
** is a fixed struct, so a peer cannot make it grow). No I/O, no SQLite.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bytes.h"
#include "errbuf.h"
#include "image.h"
#include "txn.h"

enum { ST_HDR = 0, ST_BODY, ST_TRAILER, ST_DONE };

uint64_t rl_image_size(const rl_image_info *info)
{
    return RL_IMAGE_HDR_SIZE + (uint64_t)info->n_pages * info->page_size +
           RL_IMAGE_TRAILER_SIZE;
}

int rl_image_hdr_encode(const rl_image_info *info,
                        uint8_t out[RL_IMAGE_HDR_SIZE])
{
    if (!rl_page_size_ok(info->page_size) || info->n_pages == 0 ||
        info->n_pages > RL_IMAGE_MAX_PAGES)
        return RL_IMAGE_EARG;
    memset(out, 0, RL_IMAGE_HDR_SIZE);
    memcpy(out, RL_IMAGE_MAGIC, 8);
    rl_put_le32(out + 8, RL_IMAGE_VERSION);
    rl_put_le32(out + 12, info->page_size);
    rl_put_le32(out + 16, info->n_pages);
    rl_put_le64(out + 24, info->index);
    rl_put_le32(out + 44, rl_crc32c(0, out, 44));
    return RL_IMAGE_OK;
}

void rl_image_trailer_encode(uint32_t body_crc, uint32_t n_pages,
                             uint8_t out[RL_IMAGE_TRAILER_SIZE])
{
    memcpy(out, RL_IMAGE_END_MAGIC, 8);
    rl_put_le32(out + 8, body_crc);
    rl_put_le32(out + 12, n_pages);
}

int rl_image_hdr_decode(const uint8_t in[RL_IMAGE_HDR_SIZE],
                        rl_image_info *info, char *err, size_t errlen)
{
    uint32_t v, ps, n;
    memset(info, 0, sizeof *info);
    if (memcmp(in, RL_IMAGE_MAGIC, 8) != 0)
        return rl_fail(err, errlen, RL_IMAGE_EFORMAT,
                       "not a raftlite database image (bad magic): the peer "
                       "sent something else; fetch it again from a raftlite "
                       "node");
    if (rl_get_le32(in + 44) != rl_crc32c(0, in, 44))
        return rl_fail(err, errlen, RL_IMAGE_ECKSUM,
                       "image header checksum mismatch: the image is "
                       "corrupted; fetch it again");
    v = rl_get_le32(in + 8);
    if (v != RL_IMAGE_VERSION)
        return rl_fail(err, errlen, RL_IMAGE_EFORMAT,
                       "image format version %u is not supported (this build "
                       "reads version %u): upgrade this node",
                       v, RL_IMAGE_VERSION);
    ps = rl_get_le32(in + 12);
    n = rl_get_le32(in + 16);
    if (!rl_page_size_ok(ps))
        return rl_fail(err, errlen, RL_IMAGE_EFORMAT,
                       "image page size %u is not a power of two in 512..65536",
                       ps);
    if (n == 0 || n > RL_IMAGE_MAX_PAGES)
        return rl_fail(err, errlen, RL_IMAGE_EFORMAT,
                       "image page count %u is out of range (1..%u)", n,
                       RL_IMAGE_MAX_PAGES);
    if (rl_get_le32(in + 20) != 0 || rl_get_le64(in + 32) != 0 ||
        rl_get_le32(in + 40) != 0)
        return rl_fail(err, errlen, RL_IMAGE_EFORMAT,
                       "image header has reserved fields set: written by a "
                       "newer raftlite; upgrade this node");
    info->page_size = ps;
    info->n_pages = n;
    info->index = rl_get_le64(in + 24);
    return RL_IMAGE_OK;
}

void rl_image_check_init(rl_image_check *c)
{
    memset(c, 0, sizeof *c);
}

int rl_image_check_has_header(const rl_image_check *c)
{
    return c->state != ST_HDR;
}

/* Records the first error; later calls repeat it. */
static int check_fail(rl_image_check *c, int rc, char *err, size_t errlen)
{
    c->rc = rc;
    return rl_fail(err, errlen, rc, "%s", c->msg);
}

/* Page 1 must be an SQLite database header of the image's page size; the
** first 18 body bytes are checked as they arrive (p holds body bytes from
** body offset c->body on). */
static int check_page1(rl_image_check *c, const uint8_t *p, size_t n)
{
    static const uint8_t magic[16] = "SQLite format 3";
    uint8_t ps[2];
    uint64_t off;
    ps[0] = (uint8_t)(c->info.page_size == 65536 ? 0 : c->info.page_size >> 8);
    ps[1] = (uint8_t)(c->info.page_size == 65536 ? 1 : c->info.page_size);
    for (off = c->body; off < 18 && off - c->body < n; off++) {
        uint8_t b = p[off - c->body];
        uint8_t want = off < 16 ? magic[off] : ps[off - 16];
        if (b != want) {
            snprintf(c->msg, sizeof c->msg,
                     off < 16 ? "image page 1 is not an SQLite database "
                                "header (byte %u): the image is corrupted"
                              : "image page 1 states another page size than "
                                "the image header (byte %u): the image is "
                                "corrupted",
                     (unsigned)off);
            return RL_IMAGE_EFORMAT;
        }
    }
    return RL_IMAGE_OK;
}

/* Takes into c->buf what of the n bytes at p belongs to a part of `size`
** bytes (the header or the trailer) that c->buf holds c->have of: the
** count taken. */
static size_t gather(rl_image_check *c, const uint8_t *p, size_t n,
                     uint32_t size)
{
    size_t k = size - c->have;
    k = k < n ? k : n;
    memcpy(c->buf + c->have, p, k);
    c->have += (uint32_t)k;
    return k;
}

int rl_image_check_feed(rl_image_check *c, const void *data, size_t n,
                        char *err, size_t errlen)
{
    const uint8_t *p = data;
    int rc;
    if (c->rc)
        return rl_fail(err, errlen, c->rc, "%s", c->msg);
    while (n > 0) {
        size_t k;
        switch (c->state) {
        case ST_HDR:
            k = gather(c, p, n, RL_IMAGE_HDR_SIZE);
            if (c->have == RL_IMAGE_HDR_SIZE) {
                rc = rl_image_hdr_decode(c->buf, &c->info, c->msg,
                                         sizeof c->msg);
                if (rc)
                    return check_fail(c, rc, err, errlen);
                c->body_len = (uint64_t)c->info.n_pages * c->info.page_size;
                c->have = 0;
                c->state = ST_BODY;
            }
            break;
        case ST_BODY:
            k = c->body_len - c->body < n ? (size_t)(c->body_len - c->body) : n;
            if (c->body < 18 && (rc = check_page1(c, p, k)) != 0)
                return check_fail(c, rc, err, errlen);
            c->crc = rl_crc32c(c->crc, p, k);
            c->body += k;
            if (c->body == c->body_len)
                c->state = ST_TRAILER;
            break;
        case ST_TRAILER:
            k = gather(c, p, n, RL_IMAGE_TRAILER_SIZE);
            if (c->have == RL_IMAGE_TRAILER_SIZE) {
                if (memcmp(c->buf, RL_IMAGE_END_MAGIC, 8) != 0 ||
                    rl_get_le32(c->buf + 12) != c->info.n_pages) {
                    snprintf(c->msg, sizeof c->msg,
                             "image trailer is malformed (after %llu body "
                             "bytes): the image is corrupted or truncated",
                             (unsigned long long)c->body);
                    return check_fail(c, RL_IMAGE_EFORMAT, err, errlen);
                }
                if (rl_get_le32(c->buf + 8) != c->crc) {
                    snprintf(c->msg, sizeof c->msg,
                             "image pages checksum mismatch (crc32c %08x, "
                             "trailer says %08x): the image is corrupted; "
                             "fetch it again",
                             c->crc, rl_get_le32(c->buf + 8));
                    return check_fail(c, RL_IMAGE_ECKSUM, err, errlen);
                }
                c->state = ST_DONE;
            }
            break;
        default:
            snprintf(c->msg, sizeof c->msg,
                     "%zu bytes after the image trailer: not one image", n);
            return check_fail(c, RL_IMAGE_ELONG, err, errlen);
        }
        p += k;
        n -= k;
    }
    return RL_IMAGE_OK;
}

int rl_image_check_finish(rl_image_check *c, char *err, size_t errlen)
{
    if (c->rc)
        return rl_fail(err, errlen, c->rc, "%s", c->msg);
    if (c->state == ST_DONE)
        return RL_IMAGE_OK;
    if (c->state == ST_HDR)
        snprintf(c->msg, sizeof c->msg,
                 "image truncated inside its header (%u of %d bytes)", c->have,
                 RL_IMAGE_HDR_SIZE);
    else if (c->state == ST_BODY)
        snprintf(c->msg, sizeof c->msg,
                 "image truncated after %llu of %llu page bytes",
                 (unsigned long long)c->body, (unsigned long long)c->body_len);
    else
        snprintf(c->msg, sizeof c->msg,
                 "image truncated inside its trailer (%u of %d bytes)", c->have,
                 RL_IMAGE_TRAILER_SIZE);
    return check_fail(c, RL_IMAGE_ESHORT, err, errlen);
}

const char *rl_image_errstr(int rc)
{
    switch (rc) {
    case RL_IMAGE_OK:
        return "ok";
    case RL_IMAGE_EFORMAT:
        return "malformed image";
    case RL_IMAGE_ECKSUM:
        return "image checksum mismatch";
    case RL_IMAGE_ESHORT:
        return "image truncated";
    case RL_IMAGE_ELONG:
        return "bytes after the image";
    case RL_IMAGE_EIO:
        return "image file I/O error";
    case RL_IMAGE_ENOMEM:
        return "out of memory";
    case RL_IMAGE_EDB:
        return "database refused the image";
    case RL_IMAGE_EARG:
        return "bad argument";
    case RL_IMAGE_EBUSY:
        return "database busy: try again";
    default:
        return "unknown image error";
    }
}
