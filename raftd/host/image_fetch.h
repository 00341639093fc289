/*
** raftd/host/image_fetch.h -- fetching a consistent database image from a peer
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

#include "err.h"
#include "image.h"
#include "rpc.h"

struct sqlite3;

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
** Reads only the header of peer_grpc's current image (a 48-byte transfer):
** its index, page size and page count. A joining node can create its empty
** database with the cluster's page size before it becomes replicated (an
** image installs only into a database of its own page size). Returns 0 or
** a status code with err, as rl_image_fetch.
*/
int rl_image_probe(rl_rpc_client *cl, const char *peer_grpc, int64_t timeout_ms,
                   rl_image_info *info, char *err, size_t errlen);

/*
** Before a node joins: gives db's main database, which must be empty (at
** most one page, no schema) and not yet replicated, the page size of the
** cluster's images, asked from peer_grpc with rl_image_probe (an image
** installs only into a database of its own page size, and SQLite cannot
** change the page size of a WAL database). A database in WAL mode is put
** back in rollback mode for the change; the caller sets WAL mode after.
** Returns 0 (also when the page size already matches), or a status code
** with err: the peer serves no image (then the joiner may go on with its
** default page size and rely on the cluster's database having it). *local
** says whether a failure is the joiner's own database's (RL_ERR_HOLDS_DATA:
** not empty; RL_ERR_IO, RL_ERR_NOMEM: it could not be read or changed) or
** not (RL_OK: the peer's answer, or none).
*/
int rl_image_prepare_joiner(rl_rpc_client *cl, const char *peer_grpc,
                            struct sqlite3 *db, int64_t timeout_ms,
                            uint32_t *page_size, rl_err *local, char *err,
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
int rl_image_restore(rl_rpc_client *cl, const char *const *peers, size_t n,
                     struct sqlite3 *db, const char *tmp_path,
                     uint64_t min_index, uint64_t *index, char *err,
                     size_t errlen);

/* One integer from a PRAGMA or a one-value query on db; -1 on error (the
** joiner's checks here, and setup.c's). */
int64_t rl_image_query_int(struct sqlite3 *db, const char *sql);

#endif /* RL_IMAGE_FETCH_H */
