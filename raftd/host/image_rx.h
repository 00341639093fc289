/*
** raftd/host/image_rx.h -- the receiving half of an image fetch: checks each
** encoded ImageChunk a peer streams for "@image" (framing, chunk CRC-32,
** total size, order, stream CRC-32, then the image format and checksums
** through vfs/image.h's rl_image_check) and hands accepted bytes, in
** order, to a sink. Pure: no gRPC, no file, no clock, so that it is fuzzed
** (tests/fuzz/fuzz_image_rx.c) with every lie a hostile peer can tell;
** image_fetch.c drives it with a stream and a file.
**
** It must never pass the sink a byte that is not at the next offset of
** the image, more bytes than the stated total, or bytes after an error:
** errors stick (every later call returns the first error's code).
*/
#ifndef RL_IMAGE_RX_H
#define RL_IMAGE_RX_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

/* Writes n accepted bytes; 0, or -1 with errno set. */
typedef int (*rl_image_rx_sink)(void *arg, const uint8_t *p, size_t n);

typedef struct rl_image_rx {
    const char *peer;   /* named in errors */
    uint64_t min_index; /* an image below it is refused */
    rl_image_check chk;
    uint64_t received; /* image bytes accepted (and sunk) */
    uint64_t total;    /* total_size of the first chunk */
    uint32_t crc;      /* CRC-32 (zlib) of the bytes accepted */
    int last;          /* the chunk marked last was accepted */
    int failed;        /* status code of the first error, 0 if none */
    rl_image_rx_sink sink;
    void *arg;
} rl_image_rx;

void rl_image_rx_init(rl_image_rx *rx, const char *peer, uint64_t min_index,
                      rl_image_rx_sink sink, void *arg);
/* Takes one encoded ImageChunk. 0, or a status code (rpc.h: DATA_LOSS for
** a chunk that breaks the rules, FAILED_PRECONDITION for an image below
** min_index, INTERNAL when the sink fails) with err naming the cause. */
int rl_image_rx_take(rl_image_rx *rx, const uint8_t *msg, size_t len, char *err,
                     size_t errlen);
/* The stream ended: 0 if the last chunk came and the whole image checks
** out (rx->chk.info then describes it), else a status code with err. */
int rl_image_rx_finish(rl_image_rx *rx, char *err, size_t errlen);

#endif /* RL_IMAGE_RX_H */
