/*
** tests/fuzz/fuzz_image.c -- libFuzzer target for the database image
** checker (vfs/imagefmt.c), which faces the network: every image a node
** fetches from a peer passes it before anything is installed.
**
** Each input is checked three ways: as is, whole; as is, fed in pieces
** whose sizes the input's first bytes choose (the verdict must not depend
** on how the stream was cut); and with its header and body checksums
** recomputed, so that mutations reach the rules behind them (page 1, the
** trailer, sizes). An accepted image must be exactly the size its header
** announces, re-encode to the same header and carry the CRC it states.
** Any violation aborts (libFuzzer reports a crash); ASan/UBSan catch
** out-of-bounds reads. Built by vfs/module.mk as build/fuzz/fuzz_image.
*/
#include "image.h"
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_image: %s:%d: %s\n", __FILE__, __LINE__,     \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Whole-buffer verdict; fills *info when accepted. */
static int check_whole(const uint8_t *buf, size_t len, rl_image_info *info)
{
    rl_image_check c;
    char err[256] = "";
    int rc;
    rl_image_check_init(&c);
    rc = rl_image_check_feed(&c, buf, len, err, sizeof err);
    if (rc == 0)
        rc = rl_image_check_finish(&c, err, sizeof err);
    if (rc != 0) {
        REQUIRE(rc < 0 && err[0] != '\0');
        /* Errors stick. */
        REQUIRE(rl_image_check_feed(&c, buf, len ? 1 : 0, err, sizeof err) ==
                rc);
        REQUIRE(rl_image_check_finish(&c, err, sizeof err) == rc);
        return rc;
    }
    *info = c.info;
    return 0;
}

static int check_split(const uint8_t *buf, size_t len, const uint8_t *cuts,
                       size_t ncuts)
{
    rl_image_check c;
    char err[256] = "";
    size_t off = 0, i = 0;
    int rc = 0;
    rl_image_check_init(&c);
    while (off < len && rc == 0) {
        size_t k = ncuts ? (size_t)cuts[i++ % ncuts] * 3 + 1 : len;
        if (k > len - off)
            k = len - off;
        rc = rl_image_check_feed(&c, buf + off, k, err, sizeof err);
        off += k;
    }
    if (rc == 0)
        rc = rl_image_check_finish(&c, err, sizeof err);
    return rc;
}

static void verify_accepted(const uint8_t *buf, size_t len,
                            const rl_image_info *info)
{
    uint8_t h[RL_IMAGE_HDR_SIZE], t[RL_IMAGE_TRAILER_SIZE];
    uint64_t body = (uint64_t)info->n_pages * info->page_size;
    REQUIRE(rl_image_size(info) == len);
    REQUIRE(rl_image_hdr_encode(info, h) == 0);
    REQUIRE(memcmp(h, buf, RL_IMAGE_HDR_SIZE) == 0);
    rl_image_trailer_encode(rl_crc32c(0, buf + RL_IMAGE_HDR_SIZE, body),
                            info->n_pages, t);
    REQUIRE(memcmp(t, buf + len - RL_IMAGE_TRAILER_SIZE, sizeof t) == 0);
    REQUIRE(memcmp(buf + RL_IMAGE_HDR_SIZE, "SQLite format 3", 16) == 0);
}

static void try_all(const uint8_t *buf, size_t len, const uint8_t *cuts,
                    size_t ncuts)
{
    rl_image_info info;
    int rc = check_whole(buf, len, &info);
    /* The same verdict however the bytes were cut. */
    REQUIRE(check_split(buf, len, cuts, ncuts) == rc);
    if (rc == 0)
        verify_accepted(buf, len, &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    size_t ncuts = size > 4 ? 4 : size;
    try_all(data, size, data, ncuts);
    if (size < RL_IMAGE_HDR_SIZE)
        return 0;
    /* Fix the checksums so the deeper rules are reached. */
    copy = malloc(size);
    REQUIRE(copy != NULL);
    memcpy(copy, data, size);
    {
        uint32_t crc = rl_crc32c(0, copy, 44);
        copy[44] = (uint8_t)crc;
        copy[45] = (uint8_t)(crc >> 8);
        copy[46] = (uint8_t)(crc >> 16);
        copy[47] = (uint8_t)(crc >> 24);
    }
    if (size >= RL_IMAGE_HDR_SIZE + RL_IMAGE_TRAILER_SIZE) {
        size_t body = size - RL_IMAGE_HDR_SIZE - RL_IMAGE_TRAILER_SIZE;
        uint32_t crc = rl_crc32c(0, copy + RL_IMAGE_HDR_SIZE, body);
        uint8_t *t = copy + size - RL_IMAGE_TRAILER_SIZE + 8;
        t[0] = (uint8_t)crc;
        t[1] = (uint8_t)(crc >> 8);
        t[2] = (uint8_t)(crc >> 16);
        t[3] = (uint8_t)(crc >> 24);
    }
    try_all(copy, size, data, ncuts);
    free(copy);
    return 0;
}
