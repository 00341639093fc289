/*
** tests/fuzz/fuzz_image_rx.c -- libFuzzer target for the receiving half of
** an image fetch (raftd/host/image_rx.c): what a joining or catching-up node
** does with the ImageChunks a peer streams. The peer is hostile.
**
** The first input byte picks a mode:
**   even: the rest is a list of records (2-byte little-endian length, then
**         that many bytes), each fed as one encoded ImageChunk: arbitrary
**         protobuf bytes.
**   odd:  the rest is [ncuts][cuts...][lies][payload]: the payload is cut
**         into chunks (sizes from the cuts) framed correctly (offsets,
**         CRC-32s, total size, stream CRC-32), then the bits of `lies`
**         break one rule each (a wrong offset, CRC, total, stream CRC, a
**         missing last chunk, a chunk after the last, an empty chunk).
** Invariants (abort on violation): the sink receives exactly a prefix of
** the bytes sent, in order, never more than the stated total, nothing
** after an error; errors stick and name the cause; an accepted stream is
** exactly a payload that the image checker accepts whole, with no lie
** told; an honest stream of a valid image is accepted. Built by
** raftd/module.mk as build/fuzz/fuzz_image_rx; seeded with the images of
** test_image --write-seeds (tests/fuzz/test_fuzz_image_rx.sh).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "image.h"
#include "image_rx.h"
#include "raftlite.pb-c.h"
#include "rpc.h"

#define REQUIRE(c)                                                             \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "fuzz_image_rx: %s:%d: %s\n", __FILE__, __LINE__,  \
                    #c);                                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* What the sink saw. */
typedef struct sunk {
    uint8_t *buf;
    size_t len, cap;
} sunk;

static int sink(void *arg, const uint8_t *p, size_t n)
{
    sunk *s = arg;
    REQUIRE(n > 0);
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2;
        uint8_t *b = realloc(s->buf, cap);
        REQUIRE(b != NULL);
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

/* Feeds one encoded chunk; checks what any answer must satisfy. */
static int feed(rl_image_rx *rx, sunk *s, const uint8_t *m, size_t n,
                int *failed)
{
    char err[512] = "";
    size_t before = s->len;
    int rc = rl_image_rx_take(rx, m, n, err, sizeof err);
    if (rc != 0) {
        REQUIRE(err[0] != '\0');
        REQUIRE(rc == RL_RPC_DATA_LOSS || rc == RL_RPC_FAILED_PRECONDITION);
        REQUIRE(!*failed || rc == *failed); /* errors stick */
        /* A refused chunk sinks nothing, except when the stream's last
        ** chunk fails the end-of-stream checks after its bytes went. */
        REQUIRE(s->len == before || rx->last);
        *failed = rc;
    } else {
        REQUIRE(!*failed);
    }
    REQUIRE(s->len == rx->received);
    REQUIRE(rx->received <= rx->total || rx->received == 0);
    return rc;
}

static void raw_mode(const uint8_t *d, size_t n)
{
    rl_image_rx rx;
    sunk s = {0};
    int failed = 0;
    char err[512];
    rl_image_rx_init(&rx, "peer", 0, sink, &s);
    while (n >= 2) {
        size_t k = (size_t)d[0] | (size_t)d[1] << 8;
        d += 2;
        n -= 2;
        if (k > n)
            k = n;
        feed(&rx, &s, d, k, &failed);
        d += k;
        n -= k;
    }
    if (rl_image_rx_finish(&rx, err, sizeof err) == 0) {
        rl_image_check c;
        REQUIRE(!failed);
        rl_image_check_init(&c);
        REQUIRE(rl_image_check_feed(&c, s.buf, s.len, err, sizeof err) == 0);
        REQUIRE(rl_image_check_finish(&c, err, sizeof err) == 0);
        REQUIRE(rl_image_size(&c.info) == s.len);
    }
    free(s.buf);
}

enum {
    LIE_OFFSET = 1,     /* one chunk names a wrong offset */
    LIE_CRC = 2,        /* one chunk's CRC-32 is wrong */
    LIE_TOTAL = 4,      /* a later chunk states another total */
    LIE_STREAM = 8,     /* the stream CRC-32 is wrong */
    LIE_NOLAST = 16,    /* no chunk is marked last */
    LIE_EXTRA = 32,     /* a chunk after the last */
    LIE_EMPTY = 64,     /* an empty chunk that is not the last */
    LIE_FIRSTTOT = 128, /* the first chunk's total is not the payload's */
};

static size_t pack_chunk(Proto__ImageChunk *c, uint8_t **out)
{
    size_t n = proto__image_chunk__get_packed_size(c);
    *out = malloc(n ? n : 1);
    REQUIRE(*out != NULL);
    REQUIRE(proto__image_chunk__pack(c, *out) == n);
    return n;
}

static void framed_mode(const uint8_t *d, size_t n)
{
    const uint8_t *cuts;
    size_t ncuts, off = 0, i = 0, len, nchunks = 0;
    uint8_t lies, *m;
    uint32_t scrc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint64_t total;
    rl_image_rx rx;
    sunk s = {0};
    int failed = 0, ok, whole_ok;
    char err[512];
    rl_image_check c;
    if (n < 2)
        return;
    ncuts = d[0] % 16;
    if (n < 2 + ncuts)
        return;
    cuts = d + 1;
    lies = d[1 + ncuts];
    d += 2 + ncuts;
    n -= 2 + ncuts;
    total = n + ((lies & LIE_FIRSTTOT) ? 1u + (ncuts ? cuts[0] : 0u) : 0u);
    rl_image_rx_init(&rx, "peer", 0, sink, &s);
    do {
        Proto__ImageChunk ch = PROTO__IMAGE_CHUNK__INIT;
        size_t k = ncuts ? (size_t)cuts[i % ncuts] * 97 + 1 : n;
        if (k > n - off)
            k = n - off;
        ch.offset = off;
        ch.data.data = (uint8_t *)d + off;
        ch.data.len = k;
        ch.crc32 = (uint32_t)crc32(crc32(0L, Z_NULL, 0), d + off, (uInt)k);
        ch.total_size = total;
        scrc = (uint32_t)crc32(scrc, d + off, (uInt)k);
        off += k;
        ch.last = off >= n && !(lies & LIE_NOLAST);
        if (ch.last)
            ch.stream_crc32 = scrc ^ ((lies & LIE_STREAM) ? 1u : 0u);
        if (nchunks == 1 || (off >= n && nchunks == 0)) {
            /* One lie each on the second chunk (or the only one). */
            if (lies & LIE_OFFSET)
                ch.offset += 1;
            if (lies & LIE_CRC)
                ch.crc32 ^= 0x80000000u;
            if ((lies & LIE_TOTAL) && nchunks == 1)
                ch.total_size += 4096;
        }
        if ((lies & LIE_EMPTY) && nchunks == 0) {
            Proto__ImageChunk e = PROTO__IMAGE_CHUNK__INIT;
            e.offset = 0;
            e.total_size = total;
            e.crc32 = (uint32_t)crc32(0L, Z_NULL, 0);
            len = pack_chunk(&e, &m);
            feed(&rx, &s, m, len, &failed);
            free(m);
        }
        len = pack_chunk(&ch, &m);
        feed(&rx, &s, m, len, &failed);
        free(m);
        nchunks++;
        i++;
    } while (off < n);
    if (lies & LIE_EXTRA) {
        Proto__ImageChunk ex = PROTO__IMAGE_CHUNK__INIT;
        uint8_t b = 0;
        ex.offset = off;
        ex.data.data = &b;
        ex.data.len = 1;
        ex.crc32 = (uint32_t)crc32(crc32(0L, Z_NULL, 0), &b, 1);
        ex.total_size = total;
        ex.last = 1;
        len = pack_chunk(&ex, &m);
        feed(&rx, &s, m, len, &failed);
        free(m);
    }
    ok = rl_image_rx_finish(&rx, err, sizeof err) == 0;
    REQUIRE(ok || err[0] != '\0');
    /* The sink saw a prefix of what was sent: the payload, then the
    ** extra chunk's zero byte (accepted when no chunk was marked last and
    ** the stated total leaves room for it). */
    REQUIRE(s.len <= n + ((lies & LIE_EXTRA) ? 1 : 0));
    REQUIRE(memcmp(s.buf ? s.buf : d, d, s.len < n ? s.len : n) == 0);
    REQUIRE(s.len <= n || s.buf[n] == 0);
    rl_image_check_init(&c);
    whole_ok = rl_image_check_feed(&c, d, n, err, sizeof err) == 0 &&
               rl_image_check_finish(&c, err, sizeof err) == 0;
    /* Every lie is told, except LIE_TOTAL when there is no second chunk
    ** to tell it on. */
    if (ok) {
        REQUIRE(whole_ok);
        REQUIRE(s.len == n);
        REQUIRE(!(lies & (LIE_STREAM | LIE_NOLAST | LIE_EXTRA | LIE_EMPTY |
                          LIE_FIRSTTOT)));
        REQUIRE(!(lies & (LIE_OFFSET | LIE_CRC)));
        REQUIRE(nchunks == 1 || !(lies & LIE_TOTAL));
    } else if (whole_ok && !(lies & 0xff)) {
        REQUIRE(0); /* an honest stream of a valid image was refused */
    }
    free(s.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        framed_mode(data + 1, size - 1);
    else
        raw_mode(data + 1, size - 1);
    return 0;
}
