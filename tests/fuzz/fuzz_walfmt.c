/*
** tests/fuzz/fuzz_walfmt.c -- libFuzzer target for the decoders of
** vfs/walfmt.c that read bytes another process wrote: the WAL header and
** frames, the wal-index header, and the hash index (find, truncate, append)
** over a wal-index whose content is arbitrary.
**
** Input: 16 bytes of parameters (mx_frame, pgno, min_frame, iFrame, each
** u32 little-endian), then a list of 6-byte writes (u32 offset modulo three
** regions, u16 value) applied to three zeroed 32 KiB regions, each its own
** exact allocation so ASan reports any access past a region. The first 32
** and 24+512 bytes of the input also go through the WAL decoders. Whatever
** the content, nothing may read out of bounds or loop forever, and a
** successful append must be found again (or the table reported corrupt).
** Built by vfs/module.mk as build/fuzz/fuzz_walfmt.
*/
#include "walfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NREG 3

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_walfmt: %s:%d: %s\n", __FILE__, __LINE__,    \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static volatile void *region(void *arg, int i)
{
    uint8_t **r = arg;
    return i >= 0 && i < NREG ? r[i] : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *r[NREG];
    uint32_t mx, pgno, minf, iframe, found;
    size_t k;
    int i, rc;

    if (size < 16)
        return 0;
    mx = le32(data);
    pgno = le32(data + 4);
    minf = le32(data + 8);
    iframe = le32(data + 12);

    /* WAL decoders on the raw input. */
    if (size >= 32) {
        rl_wal_hdr h;
        if (rl_wal_hdr_decode(data, &h) == 0)
            REQUIRE(h.page_size >= 512 && h.page_size <= 65536);
        if (size >= 32 + 24 + 512) {
            uint32_t ck[2] = {h.cksum1, h.cksum2}, p, c;
            h.page_size = 512; /* the page must fit the input */
            h.magic &= 1;
            if (rl_wal_frame_decode(&h, data + 32, data + 56, ck, &p, &c))
                REQUIRE(p != 0);
        }
    }

    for (i = 0; i < NREG; i++) {
        r[i] = calloc(1, RL_SHM_REGION_SIZE);
        REQUIRE(r[i] != NULL);
    }
    for (k = 16; k + 6 <= size; k += 6) {
        uint32_t off = le32(data + k) % (NREG * (RL_SHM_REGION_SIZE / 2));
        uint16_t v = (uint16_t)(data[k + 4] | (data[k + 5] << 8));
        /* u16 granularity keeps hash slots aligned */
        memcpy(r[off / (RL_SHM_REGION_SIZE / 2)] +
                   (off % (RL_SHM_REGION_SIZE / 2)) * 2,
               &v, 2);
    }

    {
        rl_shm_hdr sh;
        rc = rl_shm_hdr_read(r[0], &sh);
        REQUIRE(rc <= 0);
    }
    rc = rl_shm_find(region, r, minf, mx, pgno, &found);
    REQUIRE(rc == 0 || rc == RL_WALFMT_ECORRUPT || rc == RL_WALFMT_EMAP);
    if (rc == 0 && found)
        REQUIRE(found <= mx && found >= minf);
    if (rc == 0)
        rc = rl_shm_truncate(region, r, mx);
    rc = rl_shm_append(region, r, mx, iframe, pgno);
    if (rc == 0) {
        rc = rl_shm_find(region, r, 0, iframe, pgno, &found);
        REQUIRE(rc == RL_WALFMT_ECORRUPT || (rc == 0 && found == iframe));
    }
    for (i = 0; i < NREG; i++)
        free(r[i]);
    return 0;
}
