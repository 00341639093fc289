/*
** raftd/host/image_fetch.c -- downloads a consistent database image from a peer
** (see image_fetch.h) and verifies it whole before anyone may install it.
** Each chunk is checked by image_rx.c (pure, fuzzed) before its bytes
** reach the temporary file.
**
** What it must never do: leave a file at tmp_path after a failure, accept
** an image whose chunks, format or checksums do not check out, or keep a
** peer streaming after it gave up (the call is cancelled). The image's
** index is checked as soon as the header arrives, so an image too old
** costs one chunk, not the whole transfer.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "errbuf.h"
#include "fault.h"
#include "fsio.h"
#include "image.h"
#include "image_fetch.h"
#include "image_rx.h"
#include "raftlite.pb-c.h"
#include "peers.h" /* RL_SVC_INTERNAL only: the method names */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

/* The message into (err, errlen), and the status code code. */
#define fail(err, errlen, code, ...)                                           \
    (rl_seterr(err, errlen, __VA_ARGS__), (code))

/* The server's default ImageChunk size (service_rpc.c, reqcheck.c). */
#define FETCH_CHUNK (1u << 20)

/* The sink of image_rx.c: the fetched bytes go to the temporary file. */
static int sink_fd(void *arg, const uint8_t *p, size_t n)
{
    return rl_write_all(*(int *)arg, p, n);
}

int rl_image_fetch_ex(rl_rpc_client *cl, const char *peer_grpc,
                      const char *tmp_path, uint64_t min_index,
                      int64_t timeout_ms, uint64_t *index, char *err,
                      size_t errlen)
{
    Proto__FetchImageRequest req = PROTO__FETCH_IMAGE_REQUEST__INIT;
    rl_rpc_stream *st;
    rl_rpc_buf msg;
    rl_image_rx rx;
    uint8_t *buf;
    size_t n;
    char serr[RL_RPC_ERRMAX];
    int code = RL_RPC_OK, got, status, fd;

    *index = 0;
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, RL_RPC_INTERNAL, "cannot create %s: %s",
                    tmp_path, strerror(errno));
    rl_image_rx_init(&rx, peer_grpc, min_index, sink_fd, &fd);

    req.name = (char *)RL_IMAGE_FETCH_NAME;
    req.min_index = min_index;
    /* Chunks this client can receive: the peer's default (1 MiB) may be
    ** over this node's -max-msg-bytes (an ImageChunk adds < 128 bytes). */
    if (rl_rpc_client_max_msg(cl) < FETCH_CHUNK + 128)
        req.chunk_bytes = rl_rpc_client_max_msg(cl) > 256
                              ? (uint32_t)(rl_rpc_client_max_msg(cl) - 128)
                              : 128;
    n = proto__fetch_image_request__get_packed_size(&req);
    buf = malloc(n ? n : 1);
    if (!buf) {
        code = fail(err, errlen, RL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    proto__fetch_image_request__pack(&req, buf);
    st = rl_rpc_stream_open(cl, peer_grpc, RL_SVC_INTERNAL "FetchImage",
                            timeout_ms > 0 ? timeout_ms
                                           : RL_IMAGE_FETCH_TIMEOUT_MS,
                            serr, sizeof serr);
    if (!st) {
        free(buf);
        code = fail(err, errlen, RL_RPC_UNAVAILABLE,
                    "cannot call FetchImage on %s: %s", peer_grpc, serr);
        goto out;
    }
    got =
        rl_rpc_stream_send(st, buf, n) == 0 && rl_rpc_stream_close_send(st) == 0
            ? 1
            : -1;
    free(buf);
    while (got == 1 && (got = rl_rpc_stream_recv(st, &msg)) == 1) {
        code = rl_image_rx_take(&rx, msg.data, msg.len, err, errlen);
        rl_rpc_buf_free(&msg);
        if (code != RL_RPC_OK)
            break;
        RL_FAULT("image-fetch"); /* a chunk is in tmp, the stream goes on */
    }
    if (code != RL_RPC_OK)
        rl_rpc_stream_cancel(st);
    status = rl_rpc_stream_finish(st, serr, sizeof serr);
    if (code != RL_RPC_OK)
        goto out;
    if (status != RL_RPC_OK) {
        code = fail(err, errlen, status, "FetchImage from %s: %s%s", peer_grpc,
                    serr,
                    status == RL_RPC_RESOURCE_EXHAUSTED
                        ? " (this node's message limit: raftd -max-msg-bytes "
                          "raises it)"
                        : "");
        goto out;
    }
    code = rl_image_rx_finish(&rx, err, errlen);
    if (code != RL_RPC_OK)
        goto out;
    if (fsync(fd) != 0) {
        code = fail(err, errlen, RL_RPC_INTERNAL, "fsync %s: %s", tmp_path,
                    strerror(errno));
        goto out;
    }
    *index = rx.chk.info.index;
out:
    close(fd); /* our own file: no SQLite lock on it */
    if (code != RL_RPC_OK)
        unlink(tmp_path);
    return code;
}

int rl_image_fetch(rl_rpc_client *cl, const char *peer_grpc,
                   const char *tmp_path, uint64_t min_index, uint64_t *index,
                   char *err, size_t errlen)
{
    return rl_image_fetch_ex(cl, peer_grpc, tmp_path, min_index, 0, index, err,
                             errlen);
}

int rl_image_restore(rl_rpc_client *cl, const char *const *peers, size_t n,
                     struct sqlite3 *db, const char *tmp_path,
                     uint64_t min_index, uint64_t *index, char *err,
                     size_t errlen)
{
    char one[768];
    size_t i, used = 0;
    int code = RL_RPC_UNAVAILABLE;
    *index = 0;
    if (err && errlen)
        snprintf(err, errlen, "no peer to fetch an image from");
    for (i = 0; i < n; i++) {
        uint64_t got = 0;
        if (!peers[i] || !peers[i][0])
            continue;
        code = rl_image_fetch(cl, peers[i], tmp_path, min_index, &got, one,
                              sizeof one);
        if (code == RL_RPC_OK) {
            int rc = rl_image_install(db, tmp_path, one, sizeof one);
            unlink(tmp_path);
            if (rc == RL_IMAGE_OK) {
                *index = got;
                return RL_RPC_OK;
            }
            code = RL_RPC_INTERNAL;
        }
        /* err lists every peer's reason: "peer: why; peer: why". */
        if (err && errlen > used + 1) {
            int k = snprintf(err + used, errlen - used, "%s%s: %s",
                             used ? "; " : "", peers[i], one);
            used += k > 0 ? (size_t)k : 0;
            if (used >= errlen)
                used = errlen - 1;
        }
    }
    return code;
}

int rl_image_probe(rl_rpc_client *cl, const char *peer_grpc, int64_t timeout_ms,
                   rl_image_info *info, char *err, size_t errlen)
{
    Proto__FetchImageRequest req = PROTO__FETCH_IMAGE_REQUEST__INIT;
    uint8_t hdr[RL_IMAGE_HDR_SIZE], rbuf[16];
    uint64_t have = 0, total = 0;
    rl_rpc_stream *st;
    rl_rpc_buf msg;
    char serr[RL_RPC_ERRMAX], why[256];
    size_t n;
    int code = RL_RPC_OK, got, status;

    memset(info, 0, sizeof *info);
    req.name = (char *)RL_IMAGE_FETCH_NAME;
    req.length = RL_IMAGE_HDR_SIZE;
    n = proto__fetch_image_request__get_packed_size(&req);
    if (n > sizeof rbuf)
        return fail(err, errlen, RL_RPC_INTERNAL, "probe request too large");
    proto__fetch_image_request__pack(&req, rbuf);
    st = rl_rpc_stream_open(cl, peer_grpc, RL_SVC_INTERNAL "FetchImage",
                            timeout_ms > 0 ? timeout_ms : 30000, serr,
                            sizeof serr);
    if (!st)
        return fail(err, errlen, RL_RPC_UNAVAILABLE,
                    "cannot call FetchImage on %s: %s", peer_grpc, serr);
    got = rl_rpc_stream_send(st, rbuf, n) == 0 &&
                  rl_rpc_stream_close_send(st) == 0
              ? 1
              : -1;
    while (got == 1 && (got = rl_rpc_stream_recv(st, &msg)) == 1) {
        Proto__ImageChunk *c =
            proto__image_chunk__unpack(NULL, msg.len, msg.data);
        rl_rpc_buf_free(&msg);
        if (!c || c->offset != have || c->data.len > RL_IMAGE_HDR_SIZE - have ||
            (c->data.len == 0 && !c->last) ||
            (uint32_t)crc32(crc32(0L, Z_NULL, 0), c->data.data,
                            (uInt)c->data.len) != c->crc32) {
            code = fail(err, errlen, RL_RPC_DATA_LOSS,
                        "image header from %s: malformed chunk", peer_grpc);
        } else {
            memcpy(hdr + have, c->data.data, c->data.len);
            have += c->data.len;
            total = c->total_size;
        }
        if (c)
            proto__image_chunk__free_unpacked(c, NULL);
        if (code != RL_RPC_OK)
            break;
    }
    if (code != RL_RPC_OK)
        rl_rpc_stream_cancel(st);
    status = rl_rpc_stream_finish(st, serr, sizeof serr);
    if (code != RL_RPC_OK)
        return code;
    if (status != RL_RPC_OK)
        return fail(err, errlen, status, "FetchImage from %s: %s", peer_grpc,
                    serr);
    if (have != RL_IMAGE_HDR_SIZE)
        return fail(err, errlen, RL_RPC_DATA_LOSS,
                    "image header from %s: %llu of %d bytes", peer_grpc,
                    (unsigned long long)have, RL_IMAGE_HDR_SIZE);
    if (rl_image_hdr_decode(hdr, info, why, sizeof why) != 0)
        return fail(err, errlen, RL_RPC_DATA_LOSS, "image header from %s: %s",
                    peer_grpc, why);
    if (rl_image_size(info) != total)
        return fail(err, errlen, RL_RPC_DATA_LOSS,
                    "image header from %s: total size %llu, header says %llu",
                    peer_grpc, (unsigned long long)total,
                    (unsigned long long)rl_image_size(info));
    return RL_RPC_OK;
}

int64_t rl_image_query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int rl_image_prepare_joiner(rl_rpc_client *cl, const char *peer_grpc,
                            sqlite3 *db, int64_t timeout_ms,
                            uint32_t *page_size, rl_err *local, char *err,
                            size_t errlen)
{
    rl_image_info info;
    char *sql, *msg = NULL;
    int64_t cur, pages, tables;
    int code, rc;
    *page_size = 0;
    *local = RL_OK;
    code = rl_image_probe(cl, peer_grpc, timeout_ms, &info, err, errlen);
    if (code != RL_RPC_OK)
        return code;
    *page_size = info.page_size;
    cur = rl_image_query_int(db, "PRAGMA main.page_size");
    pages = rl_image_query_int(db, "PRAGMA main.page_count");
    tables = rl_image_query_int(db, "SELECT count(*) FROM main.sqlite_schema");
    *local = RL_ERR_IO; /* from here on, failures are the database's */
    if (cur < 0 || pages < 0 || tables < 0)
        return fail(err, errlen, RL_RPC_INTERNAL, "cannot read %s: %s",
                    sqlite3_db_filename(db, "main"), sqlite3_errmsg(db));
    if (cur == (int64_t)info.page_size) {
        *local = RL_OK;
        return RL_RPC_OK;
    }
    if (pages > 1 || tables != 0) {
        *local = RL_ERR_HOLDS_DATA;
        return fail(err, errlen, RL_RPC_FAILED_PRECONDITION,
                    "%s holds data: a joining node needs an empty database",
                    sqlite3_db_filename(db, "main"));
    }
    /* An empty file takes the page size at once; a one-page database
    ** (WAL mode was set, or an empty schema was written) is rebuilt by
    ** VACUUM, which cannot change the page size in WAL mode. */
    sql = sqlite3_mprintf("%sPRAGMA main.page_size=%u;%s",
                          pages ? "PRAGMA main.journal_mode=DELETE;" : "",
                          info.page_size, pages ? "VACUUM main;" : "");
    if (!sql) {
        *local = RL_ERR_NOMEM;
        return fail(err, errlen, RL_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    sqlite3_free(sql);
    if (rc != SQLITE_OK) {
        code = fail(err, errlen, RL_RPC_INTERNAL,
                    "cannot give %s the cluster's page size %u: %s",
                    sqlite3_db_filename(db, "main"), info.page_size,
                    msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    if (pages && rl_image_query_int(db, "PRAGMA main.page_size") !=
                     (int64_t)info.page_size)
        return fail(err, errlen, RL_RPC_INTERNAL,
                    "%s kept page size %lld (the cluster's is %u)",
                    sqlite3_db_filename(db, "main"), (long long)cur,
                    info.page_size);
    *local = RL_OK;
    return RL_RPC_OK;
}
