/*
** tests/unit/test_image_fetch.c -- the image client (raftd/host/image_fetch.c)
** against the real FetchImage "@image" service (raftd/api/service_rpc.c over
** the gRPC wrapper) in this process, and against a fake peer that breaks
** the stream in each way a network or a bad peer can.
**
** The VFS is registered with a port that accepts every commit and hands
** out increasing indexes; a writer thread commits one numbered row per
** transaction while the image is taken, so the fetched image's index must
** name exactly the rows it holds. The fetched file is installed into a
** second replicated database and checked. Refusals (image below min_index,
** unreachable peer, corrupted / gapped / short / mis-checksummed streams)
** must fail with the documented status and leave no file behind.
*/
#include <sqlite3.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "image.h"
#include "image_fetch.h"
#include "raftlite.pb-c.h"
#include "rpc.h"
#include "service.h"
#include "vfs.h"

#include "lib/check.h"
#include "lib/vfsdb.h"

/* ------------------------------------------------------------- helpers */

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", rl_db_dir, name);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int port_free(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Starts srv on a free port below 32768 on 127.0.0.1; returns the port. */
static int start_on_free_port(rl_rpc_server **srv,
                              int (*add)(rl_rpc_server *, void *), void *arg)
{
    static int seeded;
    int tries;
    if (!seeded) {
        srand((unsigned)time(0) ^ (unsigned)getpid());
        seeded = 1;
    }
    for (tries = 0; tries < 50; tries++) {
        rl_rpc_server_config cfg = {0};
        char addr[64], err[512];
        int port = 20000 + rand() % 12000, got;
        /* gRPC binds with SO_REUSEPORT, so a port in use by another
        ** server would not fail its start: probe it without. */
        if (!port_free(port))
            continue;
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        cfg.addr = addr;
        *srv = rl_rpc_server_new(&cfg, err, sizeof err);
        CHECK(*srv, "server: %s", err);
        CHECK(add(*srv, arg) == 0, "register");
        got = rl_rpc_server_start(*srv, err, sizeof err);
        if (got > 0)
            return got;
        rl_rpc_server_free(*srv, 0);
    }
    CHECK(0, "no free port below 32768");
    return -1;
}

/* --------------------------------------------------------- writer thread */

typedef struct writer {
    const char *path;
    int stop;
    int done;
} writer;

/* One numbered row per transaction: row n is committed at index base+n. */
static void *writer_main(void *arg)
{
    writer *w = arg;
    sqlite3 *db = rl_db_open_raft(w->path);
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        rl_db_exec(db, "INSERT INTO seq(n, pad) VALUES ((SELECT "
                       "coalesce(max(n), 0) + 1 FROM seq), randomblob(3000))");
        w->done++;
    }
    sqlite3_close(db);
    return 0;
}

/* ------------------------------------------------------------ fake peer */

enum { FAKE_FLIP, FAKE_GAP, FAKE_SHORT, FAKE_BADCRC, FAKE_TOTAL };
static int fake_mode;
static uint8_t *fake_img;
static size_t fake_len;

static int fake_send(rl_rpc_call *call, uint64_t off, const uint8_t *data,
                     size_t n, uint32_t crc, int last, uint32_t scrc,
                     uint64_t total)
{
    Proto__ImageChunk ic = PROTO__IMAGE_CHUNK__INIT;
    uint8_t *out = malloc(n + 128);
    size_t k;
    int rc;
    CHECK(out, "oom");
    ic.offset = off;
    ic.data.data = (uint8_t *)data;
    ic.data.len = n;
    ic.crc32 = crc;
    ic.total_size = total;
    ic.last = last;
    ic.stream_crc32 = scrc;
    k = proto__image_chunk__pack(&ic, out);
    rc = rl_rpc_call_send(call, out, k);
    free(out);
    return rc;
}

/* Streams fake_img in 4 KiB chunks, broken as fake_mode says. */
static int fake_fetch_cb(rl_rpc_call *call, void *arg)
{
    rl_rpc_buf msg;
    uint8_t *img = malloc(fake_len);
    uint64_t off = 0;
    uint32_t scrc = (uint32_t)crc32(0L, Z_NULL, 0);
    (void)arg;
    CHECK(img, "oom");
    memcpy(img, fake_img, fake_len);
    if (rl_rpc_call_recv(call, &msg) == 1)
        rl_rpc_buf_free(&msg);
    if (fake_mode == FAKE_FLIP)
        img[fake_len / 2] ^= 4; /* chunk CRCs computed after: image CRC */
    while (off < fake_len) {
        size_t n = fake_len - off < 4096 ? fake_len - off : 4096;
        uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), img + off, (uInt)n);
        int last = off + n >= fake_len;
        if (fake_mode == FAKE_GAP && off == 8192) {
            off += n;
            continue;
        }
        if (fake_mode == FAKE_SHORT && last)
            break;
        if (fake_mode == FAKE_BADCRC && off == 4096)
            c ^= 1;
        scrc = (uint32_t)crc32(scrc, img + off, (uInt)n);
        if (fake_send(call, off, img + off, n, c, last, last ? scrc : 0,
                      fake_mode == FAKE_TOTAL ? fake_len + 4096 : fake_len) !=
            0)
            break;
        off += n;
    }
    free(img);
    return RL_RPC_OK;
}

static int add_fake(rl_rpc_server *s, void *arg)
{
    (void)arg;
    return rl_rpc_server_add(s, RL_SVC_INTERNAL "FetchImage", fake_fetch_cb,
                             NULL);
}

static int add_service(rl_rpc_server *s, void *arg)
{
    return rl_service_register(arg, s);
}

/* ----------------------------------------------------------------- main */

int main(void)
{
    char src[512], dst[512], tmp[512], saved[512], target[64], fake[64],
        err[1024];
    rl_service_config sc = {0};
    rl_service *svc;
    rl_rpc_server *srv, *fsrv;
    rl_rpc_client *cl;
    sqlite3 *w, *d;
    writer wr = {0};
    pthread_t th;
    uint64_t idx = 0, base_idx, rows;
    rl_image_info info;
    int code, port, i;

    rl_db_setup("test_image_fetch");
    path_of(src, sizeof src, "src.db");
    path_of(dst, sizeof dst, "dst.db");
    path_of(tmp, sizeof tmp, "fetch.img");
    path_of(saved, sizeof saved, "saved.img");
    rl_db_make_replicated(src);
    rl_db_make_replicated(dst);

    w = rl_db_open_raft(src);
    rl_db_exec(w, "CREATE TABLE seq(n INTEGER PRIMARY KEY, pad BLOB);"
                  "CREATE TABLE big(b BLOB);"
                  "INSERT INTO big SELECT randomblob(100000) FROM "
                  "(SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL "
                  "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL "
                  "SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL "
                  "SELECT 10)");
    base_idx =
        rl_db_next_index; /* seq row n is committed at index base_idx + n */

    sc.node_id = "n1";
    sc.grpc_addr = "127.0.0.1:1";
    sc.raft_addr = "127.0.0.1:2";
    sc.db_path = src;
    svc = rl_service_open(&sc, err, sizeof err);
    CHECK(svc, "service: %s", err);
    port = start_on_free_port(&srv, add_service, svc);
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    cl = rl_rpc_client_new(NULL, 0, err, sizeof err);
    CHECK(cl, "client: %s", err);

    /* A fetch while a writer commits: the image's index names its rows. */
    wr.path = src;
    CHECK(pthread_create(&th, 0, writer_main, &wr) == 0, "thread");
    while (__atomic_load_n(&wr.done, __ATOMIC_RELAXED) < 20)
        usleep(1000);
    code = rl_image_fetch(cl, target, tmp, 0, &idx, err, sizeof err);
    CHECK(code == RL_RPC_OK, "fetch: %d %s", code, err);
    {
        int at = __atomic_load_n(&wr.done, __ATOMIC_RELAXED);
        while (__atomic_load_n(&wr.done, __ATOMIC_RELAXED) < at + 2)
            usleep(1000);
    }
    __atomic_store_n(&wr.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, 0);
    CHECK(idx > base_idx + 19 && idx < rl_db_next_index,
          "image index %llu within the writes (%llu..%llu)",
          (unsigned long long)idx, (unsigned long long)base_idx,
          (unsigned long long)rl_db_next_index);
    CHECK(rl_image_verify_file(tmp, &info, err, sizeof err) == 0 &&
              info.index == idx,
          "verify: %s", err);
    d = rl_db_open_raft(dst);
    CHECK(rl_image_install(d, tmp, err, sizeof err) == RL_IMAGE_OK,
          "install: %s", err);
    rows = (uint64_t)rl_db_int(d, "SELECT count(*) FROM seq");
    CHECK(rows == idx - base_idx &&
              rl_db_int(d, "SELECT max(n) FROM seq") == (int64_t)rows,
          "image at %llu holds %llu rows, want %llu", (unsigned long long)idx,
          (unsigned long long)rows, (unsigned long long)(idx - base_idx));
    CHECK(rl_db_int(d, "SELECT count(*) FROM big WHERE length(b) = 100000") ==
              10,
          "blobs");
    CHECK(rl_db_int(d, "SELECT count(*) FROM pragma_integrity_check WHERE "
                       "integrity_check = 'ok'") == 1,
          "integrity_check");
    sqlite3_close(d);
    printf("fetched image at index %llu with %llu rows while %d writes ran\n",
           (unsigned long long)idx, (unsigned long long)rows, wr.done);

    /* Too old for the caller: refused before streaming, no file left. */
    code = rl_image_fetch(cl, target, tmp, rl_db_next_index + 1, &idx, err,
                          sizeof err);
    CHECK(code == RL_RPC_FAILED_PRECONDITION && strstr(err, "below") &&
              !exists(tmp),
          "min_index: %d %s", code, err);
    /* Exactly current: accepted. */
    code = rl_image_fetch(cl, target, tmp, rl_db_next_index, &idx, err,
                          sizeof err);
    CHECK(code == RL_RPC_OK && idx == rl_db_next_index, "current: %d %s", code,
          err);

    /* The header alone: a 48-byte transfer naming index and page size. */
    {
        rl_image_info pi;
        CHECK(rl_image_verify_file(tmp, &info, err, sizeof err) == 0, "%s",
              err);
        code = rl_image_probe(cl, target, 5000, &pi, err, sizeof err);
        CHECK(code == RL_RPC_OK && pi.index == rl_db_next_index &&
                  pi.page_size == 4096 && pi.n_pages == info.n_pages &&
                  pi.index == info.index,
              "probe: %d %s (index %llu, %u pages)", code, err,
              (unsigned long long)pi.index, pi.n_pages);
    }

    /* Unreachable peer. */
    code = rl_image_fetch_ex(cl, "127.0.0.1:1", tmp, 0, 3000, &idx, err,
                             sizeof err);
    CHECK((code == RL_RPC_UNAVAILABLE || code == RL_RPC_DEADLINE_EXCEEDED) &&
              !exists(tmp),
          "unreachable: %d %s", code, err);

    /* A fake peer breaking the stream in each way. */
    CHECK(rl_image_save(w, saved, 5000, &info, err, sizeof err) == 0, "%s",
          err);
    {
        FILE *f = fopen(saved, "rb");
        CHECK(f, "open saved");
        fake_len = (size_t)rl_image_size(&info);
        fake_img = malloc(fake_len);
        CHECK(fake_img && fread(fake_img, 1, fake_len, f) == fake_len,
              "read saved");
        fclose(f);
    }
    port = start_on_free_port(&fsrv, add_fake, 0);
    snprintf(fake, sizeof fake, "127.0.0.1:%d", port);
    {
        /* A peer that sends more than the header asked for. */
        rl_image_info pi;
        fake_mode = FAKE_FLIP;
        code = rl_image_probe(cl, fake, 5000, &pi, err, sizeof err);
        CHECK(code == RL_RPC_DATA_LOSS, "probe of a fake peer: %d %s", code,
              err);
    }
    for (i = FAKE_FLIP; i <= FAKE_TOTAL; i++) {
        static const char *const what[] = {"flipped byte", "gap", "short",
                                           "chunk CRC", "total size"};
        fake_mode = i;
        code = rl_image_fetch(cl, fake, tmp, 0, &idx, err, sizeof err);
        CHECK(code == RL_RPC_DATA_LOSS && err[0] && !exists(tmp),
              "fake %s: %d %s", what[i], code, err);
        printf("fake peer, %s: refused (%s)\n", what[i], err);
    }

    /* need_image in one call: skips empty entries, an unreachable peer and
    ** a corrupting one, installs from the good one; all bad: every reason
    ** listed. tmp never stays. */
    {
        char dst2[512];
        const char *peers[] = {NULL, "", "127.0.0.1:1", fake, target};
        sqlite3 *d2;
        path_of(dst2, sizeof dst2, "dst2.db");
        rl_db_make_replicated(dst2);
        d2 = rl_db_open_raft(dst2);
        fake_mode = FAKE_FLIP;
        code = rl_image_restore(cl, peers, 5, d2, tmp, rl_db_next_index, &idx,
                                err, sizeof err);
        CHECK(code == RL_RPC_OK && idx == rl_db_next_index && !exists(tmp),
              "restore: %d %s", code, err);
        CHECK(rl_db_int(d2, "SELECT count(*) FROM seq") == (int64_t)wr.done,
              "restored rows");
        code =
            rl_image_restore(cl, peers, 4, d2, tmp, 0, &idx, err, sizeof err);
        CHECK(code == RL_RPC_DATA_LOSS && strstr(err, "127.0.0.1:1: ") &&
                  strstr(err, fake) && !exists(tmp),
              "restore from bad peers: %d %s", code, err);
        printf("restore from bad peers: %s\n", err);
        code = rl_image_restore(cl, peers + 4, 1, d2, tmp, 0, &idx, err,
                                sizeof err);
        CHECK(code == RL_RPC_OK, "same index again is a no-op: %s", err);
        rl_db_exec(w, "INSERT INTO big VALUES (1)");
        code = rl_image_restore(cl, peers + 4, 1, d2, tmp, 0, &idx, err,
                                sizeof err);
        CHECK(code == RL_RPC_OK && idx == rl_db_next_index, "newer: %d %s",
              code, err);
        sqlite3_close(d2);
    }
    /* A good image the database refuses (another page size): INTERNAL,
    ** the database untouched. */
    {
        char dst3[512], dir[600];
        const char *peers[] = {target};
        sqlite3 *d3;
        path_of(dst3, sizeof dst3, "dst3.db");
        d3 = rl_db_open_raft(dst3);
        rl_db_exec(d3, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL;"
                       "CREATE TABLE keep(x); INSERT INTO keep VALUES (42)");
        sqlite3_close(d3);
        snprintf(dir, sizeof dir, "%s-raft", dst3);
        CHECK(mkdir(dir, 0755) == 0, "mkdir");
        d3 = rl_db_open_raft(dst3);
        code =
            rl_image_restore(cl, peers, 1, d3, tmp, 0, &idx, err, sizeof err);
        CHECK(code == RL_RPC_INTERNAL && strstr(err, "page size") &&
                  !exists(tmp),
              "page size mismatch: %d %s", code, err);
        CHECK(rl_db_int(d3, "SELECT x FROM keep") == 42, "untouched");
        sqlite3_close(d3);
        printf("install refused: %s\n", err);
    }
    free(fake_img);
    rl_rpc_server_free(fsrv, 100);

    rl_rpc_client_free(cl);
    rl_rpc_server_free(srv, 100);
    rl_service_close(svc);
    sqlite3_close(w);
    printf("test_image_fetch: %d checks passed\n", rl_checks);
    return 0;
}
