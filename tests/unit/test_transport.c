/*
** tests/unit/test_transport.c -- raftd/transport.c against real TCP on
** 127.0.0.1: a connection dialled and accepted through rl_transport has
** TCP_NODELAY on both ends (getsockopt on each end's descriptor), and
** without the option on neither (so the check can fail); the handshake's
** id and address still reach the accept callback; a failed dial and a
** dial cancelled by close each call back exactly once (ASan: nothing
** leaks). This test plays raft_uv's part: it calls the interface's
** methods the way raft_uv does and owns the streams it is handed.
*/
#include "transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/check.h"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_transport: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static uv_loop_t loop;

static int port_free(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* A free port in 20000..31999 (below the ephemeral range), not `avoid`. */
static int pick_port(int avoid)
{
    for (int tries = 0; tries < 1000; tries++) {
        int p = 20000 + rand() % 12000;
        if (p != avoid && port_free(p))
            return p;
    }
    die("no free port below 32768");
    return 0;
}

/* TCP_NODELAY of the descriptor under a libuv stream: 0 or 1. */
static int nodelay_of(uv_stream_t *s)
{
    uv_os_fd_t fd;
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(uv_fileno((uv_handle_t *)s, &fd) == 0);
    CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0);
    return v != 0;
}

struct seen {
    int accepts, connects, closes;
    int status;                 /* last connect status */
    raft_id id;                 /* accepted peer's id */
    char address[64];           /* accepted peer's address */
    uv_stream_t *acc, *dialled; /* ours to close */
};
static struct seen seen;

static void accept_cb(struct raft_uv_transport *t, raft_id id,
                      const char *address, struct uv_stream_s *stream)
{
    CHECK(t->data == &seen); /* the transport raft_uv was given */
    seen.accepts++;
    seen.id = id;
    snprintf(seen.address, sizeof seen.address, "%s", address);
    seen.acc = stream;
}

static void connect_cb(struct raft_uv_connect *req, struct uv_stream_s *stream,
                       int status)
{
    CHECK(req->data == &seen);
    seen.connects++;
    seen.status = status;
    if (status == 0)
        seen.dialled = stream;
    else
        CHECK(stream == NULL); /* raft_uv_tcp freed it */
}

static void close_cb(struct raft_uv_transport *t)
{
    (void)t;
    seen.closes++;
}

static void free_handle(uv_handle_t *h)
{
    raft_free(h); /* raft_uv_tcp allocated it with raft's allocator */
}

/* Runs the loop until *flag reaches want, at most 5 s. */
static void run_until(int *flag, int want)
{
    time_t end = time(NULL) + 5;
    while (*flag < want) {
        CHECK(time(NULL) <= end);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void start(struct rl_transport *t, int nodelay, raft_id id,
                  const char *addr, int listen)
{
    struct rl_transport_opts o = {.nodelay = nodelay};
    CHECK(rl_transport_init(t, &loop, &o) == 0);
    t->raft.data = &seen;
    CHECK(t->raft.init(&t->raft, id, addr) == 0);
    if (listen)
        CHECK(t->raft.listen(&t->raft, accept_cb) == 0);
}

static void stop(struct rl_transport *t)
{
    int want = seen.closes + 1;
    t->raft.close(&t->raft, close_cb);
    run_until(&seen.closes, want);
    rl_transport_close(t);
}

/* Dial B -> A through two transports; returns with both streams closed. */
static void pair(int nodelay)
{
    char a_addr[32], b_addr[32];
    int pa = pick_port(0), pb = pick_port(pa);
    snprintf(a_addr, sizeof a_addr, "127.0.0.1:%d", pa);
    snprintf(b_addr, sizeof b_addr, "127.0.0.1:%d", pb);
    struct rl_transport a, b;
    memset(&seen, 0, sizeof seen);
    start(&a, nodelay, 1, a_addr, 1);
    start(&b, nodelay, 2, b_addr, 0);
    struct raft_uv_connect req = {.data = &seen};
    CHECK(b.raft.connect(&b.raft, &req, 1, a_addr, connect_cb) == 0);
    run_until(&seen.connects, 1);
    CHECK(seen.status == 0 && seen.dialled != NULL);
    run_until(&seen.accepts, 1);
    CHECK(seen.id == 2 && strcmp(seen.address, b_addr) == 0);
    int d = nodelay_of(seen.dialled), c = nodelay_of(seen.acc);
    printf("  nodelay option %d: dialling end TCP_NODELAY=%d, accepting end "
           "%d\n",
           nodelay, d, c);
    CHECK(d == nodelay && c == nodelay);
    CHECK(a.conns == 1 && b.conns == 1);
    CHECK(a.nodelay_failed == 0 && b.nodelay_failed == 0);
    uv_close((uv_handle_t *)seen.dialled, free_handle);
    uv_close((uv_handle_t *)seen.acc, free_handle);
    stop(&a);
    stop(&b);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    srand((unsigned)(getpid() ^ time(NULL)));
    CHECK(uv_loop_init(&loop) == 0);

    printf("a connection through rl_transport has TCP_NODELAY on both "
           "ends\n");
    pair(1);
    printf("with the option off it has it on neither (the check can "
           "fail)\n");
    pair(0);

    printf("a dial to a closed port fails once, with a message\n");
    struct rl_transport b;
    char addr[32], dead[32];
    memset(&seen, 0, sizeof seen);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", pick_port(0));
    snprintf(dead, sizeof dead, "127.0.0.1:%d", pick_port(0));
    start(&b, 1, 2, addr, 0);
    struct raft_uv_connect req = {.data = &seen};
    CHECK(b.raft.connect(&b.raft, &req, 1, dead, connect_cb) == 0);
    run_until(&seen.connects, 1);
    printf("  status %d: %s\n", seen.status, b.raft.errmsg);
    CHECK(seen.status == RAFT_NOCONNECTION && b.raft.errmsg[0] != '\0');
    CHECK(b.conns == 0);

    printf("closing with a dial in flight cancels it once\n");
    CHECK(b.raft.connect(&b.raft, &req, 1, dead, connect_cb) == 0);
    stop(&b);
    CHECK(seen.connects == 2 && seen.status == RAFT_CANCELED);

    uv_run(&loop, UV_RUN_DEFAULT); /* handles still closing */
    CHECK(uv_loop_close(&loop) == 0);
    printf("test_transport: ok\n");
    return 0;
}
