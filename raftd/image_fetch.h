/*
** raftd/image_fetch.h -- fetching a consistent database image from a peer
** over gRPC (RaftliteInternal.FetchImage with name RL_IMAGE_FETCH_NAME),
** the client side of DESIGN 6's out-of-band image transfer.
**
** The peer streams the image (vfs/image.h format) in chunks, each with its
** offset and CRC-32; the client checks the chunk framing, the image format
** and both image checksums as the bytes arrive, writes them to a temporary
** file and reports the image's index. Nothing reaches the database here:
** the caller installs a fetched file with rl_image_install (vfs/image.h).
** A fetch that fails for any reason leaves no file behind.
*/
#ifndef RL_IMAGE_FETCH_H
#define RL_IMAGE_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

/* The FetchImageRequest.name that asks for the consistent image. */
#define RL_IMAGE_FETCH_NAME "@image"

/* Default limit of one whole fetch. */
#define RL_IMAGE_FETCH_TIMEOUT_MS (10 * 60 * 1000)

/*
** Downloads the image of peer_grpc's database into tmp_path (created or
** truncated; fsynced), verified whole, and sets *index to its index.
** An image below min_index is refused (by the peer before it streams, and
** checked again here): the caller then asks another peer. Returns 0, or a
** gRPC status code (rpc.h; UNAVAILABLE for a peer that cannot be reached,
** FAILED_PRECONDITION for an image too old, DATA_LOSS for a corrupted
** stream, INTERNAL for local file errors) with err naming the cause;
** tmp_path is then removed.
*/
int rl_image_fetch(rl_rpc_client *cl, const char *peer_grpc,
                   const char *tmp_path, uint64_t min_index, uint64_t *index,
                   char *err, size_t errlen);
/* The same with a time limit for the whole fetch (<= 0: the default). */
int rl_image_fetch_ex(rl_rpc_client *cl, const char *peer_grpc,
                      const char *tmp_path, uint64_t min_index,
                      int64_t timeout_ms, uint64_t *index, char *err,
                      size_t errlen);

/*
** The need_image step in one call: tries peers[0..n) in order (NULL or
** empty entries are skipped), fetching into tmp_path an image at index >=
** min_index, and installs the first good one into db (rl_image_install:
** a replicated WAL database of the image's page size, no transaction
** open). tmp_path is removed in every case. Returns 0 with *index set, or
** the status of the last failure with err listing each peer's reason
** (the caller retries after a pause). An install the database refuses
** counts as a failure of that peer's image (INTERNAL).
*/
struct sqlite3;
int rl_image_restore(rl_rpc_client *cl, const char *const *peers, size_t n,
                     struct sqlite3 *db, const char *tmp_path,
                     uint64_t min_index, uint64_t *index, char *err,
                     size_t errlen);

#endif /* RL_IMAGE_FETCH_H */
