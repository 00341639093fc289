/*
** raftd/host/image_rx.c -- checks the ImageChunks of an image fetch as they
** arrive (see image_rx.h). The peer is not trusted: every field of every
** chunk is checked before a byte reaches the sink, and the image's own
** format and checksums (rl_image_check) are checked on the same bytes.
**
** What it must never do: sink a byte out of order, past the stated total,
** after the last chunk or after an error; accept a stream that cannot
** progress (a chunk with no bytes that is not the last); accept an image
** whose index is below the one asked for.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "image_rx.h"
#include "raftlite.pb-c.h"
#include "rpc.h"

static int fail(rl_image_rx *rx, char *err, size_t errlen, int code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(rl_image_rx *rx, char *err, size_t errlen, int code,
                const char *fmt, ...)
{
    va_list ap;
    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    rx->failed = code;
    return code;
}

void rl_image_rx_init(rl_image_rx *rx, const char *peer, uint64_t min_index,
                      rl_image_rx_sink sink, void *arg)
{
    memset(rx, 0, sizeof *rx);
    rx->peer = peer;
    rx->min_index = min_index;
    rx->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    rx->sink = sink;
    rx->arg = arg;
    rl_image_check_init(&rx->chk);
}

/* The framing rules of one decoded chunk: 0, or a status with err. */
static int check_frame(rl_image_rx *rx, const Proto__ImageChunk *c, char *err,
                       size_t errlen)
{
    const char *p = rx->peer;
    if (rx->last)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: a chunk after the last one", p);
    if (c->offset != rx->received)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: chunk at offset %llu, expected %llu", p,
                    (unsigned long long)c->offset,
                    (unsigned long long)rx->received);
    if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), c->data.data,
                        (uInt)c->data.len) != c->crc32)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: chunk at offset %llu fails its CRC-32", p,
                    (unsigned long long)c->offset);
    if (rx->received == 0 && c->total_size == 0)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: the first chunk states no total size", p);
    if (rx->received != 0 && c->total_size != rx->total)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: total size changed mid-stream (%llu, "
                    "then %llu)",
                    p, (unsigned long long)rx->total,
                    (unsigned long long)c->total_size);
    if (c->data.len > c->total_size - rx->received)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: more bytes than the stated total %llu", p,
                    (unsigned long long)c->total_size);
    /* A peer that sends empty chunks forever would hold the fetch until
    ** its time limit: only the last chunk may be empty. */
    if (c->data.len == 0 && !c->last)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: an empty chunk at offset %llu that is not "
                    "the last (a stream that does not progress)",
                    p, (unsigned long long)c->offset);
    return 0;
}

int rl_image_rx_take(rl_image_rx *rx, const uint8_t *msg, size_t len, char *err,
                     size_t errlen)
{
    Proto__ImageChunk *c;
    char why[256];
    int code, had_header;
    if (rx->failed)
        return fail(rx, err, errlen, rx->failed,
                    "image from %s: a chunk after the stream failed", rx->peer);
    c = proto__image_chunk__unpack(NULL, len, msg);
    if (!c)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s: a chunk is not a valid ImageChunk",
                    rx->peer);
    code = check_frame(rx, c, err, errlen);
    if (code != 0)
        goto out;
    rx->total = c->total_size;
    had_header = rl_image_check_has_header(&rx->chk);
    if (rl_image_check_feed(&rx->chk, c->data.data, c->data.len, why,
                            sizeof why) != 0) {
        code = fail(rx, err, errlen, RL_RPC_DATA_LOSS, "image from %s: %s",
                    rx->peer, why);
        goto out;
    }
    if (!had_header && rl_image_check_has_header(&rx->chk)) {
        const rl_image_info *in = &rx->chk.info;
        if (in->index < rx->min_index) {
            code = fail(rx, err, errlen, RL_RPC_FAILED_PRECONDITION,
                        "image from %s is at index %llu, below the %llu "
                        "needed: ask another peer",
                        rx->peer, (unsigned long long)in->index,
                        (unsigned long long)rx->min_index);
            goto out;
        }
        if (rl_image_size(in) != rx->total) {
            code = fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                        "image from %s: the stream's total size %llu is not "
                        "the image's %llu",
                        rx->peer, (unsigned long long)rx->total,
                        (unsigned long long)rl_image_size(in));
            goto out;
        }
    }
    if (c->data.len && rx->sink(rx->arg, c->data.data, c->data.len) != 0) {
        code = fail(rx, err, errlen, RL_RPC_INTERNAL,
                    "writing the fetched image: %s", strerror(errno));
        goto out;
    }
    rx->crc = (uint32_t)crc32(rx->crc, c->data.data, (uInt)c->data.len);
    rx->received += c->data.len;
    if (c->last) {
        rx->last = 1;
        if (rx->received != rx->total)
            code = fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                        "image from %s: the last chunk ends at %llu of %llu "
                        "bytes",
                        rx->peer, (unsigned long long)rx->received,
                        (unsigned long long)rx->total);
        else if (c->stream_crc32 != rx->crc)
            code = fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                        "image from %s: the stream fails its stream CRC-32",
                        rx->peer);
    }
out:
    proto__image_chunk__free_unpacked(c, NULL);
    return code;
}

int rl_image_rx_finish(rl_image_rx *rx, char *err, size_t errlen)
{
    char why[256];
    if (rx->failed)
        return fail(rx, err, errlen, rx->failed,
                    "image from %s: the stream had failed", rx->peer);
    if (!rx->last)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS,
                    "image from %s ended after %llu bytes without its last "
                    "chunk",
                    rx->peer, (unsigned long long)rx->received);
    if (rl_image_check_finish(&rx->chk, why, sizeof why) != 0)
        return fail(rx, err, errlen, RL_RPC_DATA_LOSS, "image from %s: %s",
                    rx->peer, why);
    return 0;
}
