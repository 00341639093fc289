/*
** tests/unit/test_transport.c -- raftd/node/transport.c against real TCP on
** 127.0.0.1: a connection dialled and accepted through rl_transport has
** TCP_NODELAY on both ends (getsockopt on each end's descriptor), and
** without the option on neither (so the check can fail); the handshake's
** id and address still reach the accept callback; a failed dial and a
** dial cancelled by close each call back exactly once (ASan: nothing
** leaks). This test plays raft_uv's part: it calls the interface's
** methods the way raft_uv does and owns the streams it is handed.
**
** The TLS transport (tls_transport.c), with certificates made here in
** memory (OpenSSL, EC P-256) and written to a temporary directory: two
** node certificates of one CA connect, the preamble's id and address
** arrive, bytes cross both ways; refused, each with its reason logged and
** no stream handed to "raft": a node certificate of another CA, a client
** certificate of the right CA, a node certificate whose id is not the
** one claimed in the preamble; a dial whose server is another node fails
** with RAFT_NOCONNECTION; a certificate that does not name the node is
** reported at start; a dial stuck in its handshake is cancelled once by
** close.
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

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "lib/check.h"
#include "lib/ports.h"

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

/* A free port in 20000..31999 (below the ephemeral range), not `avoid`. */
static int pick_port(int avoid)
{
    int p;
    if (rl_test_pick_ports(&p, 1, avoid) != 0)
        die("no free port below 32768");
    return p;
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

/* Two free loopback addresses (32 bytes each). */
static void two_addrs(char *a_addr, char *b_addr)
{
    int pa = pick_port(0), pb = pick_port(pa);
    snprintf(a_addr, 32, "127.0.0.1:%d", pa);
    snprintf(b_addr, 32, "127.0.0.1:%d", pb);
}

/* Dial B -> A through two transports; returns with both streams closed. */
static void pair(int nodelay)
{
    char a_addr[32], b_addr[32];
    two_addrs(a_addr, b_addr);
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

/* ------------------------------------------------------------- TLS */

static char tmpdir[64];
static char logged[8][512];
static int nlogged;

static void capture_log(void *ctx, const char *msg)
{
    (void)ctx;
    printf("  logged: %s\n", msg);
    if (nlogged < 8)
        snprintf(logged[nlogged], sizeof logged[0], "%s", msg);
    nlogged++;
}

static int logged_has(const char *needle)
{
    for (int i = 0; i < nlogged && i < 8; i++)
        if (strstr(logged[i], needle))
            return 1;
    return 0;
}

/* Node ids of the test: "a" is raft id 1, "b" 2, "c" 3, others 99. */
static uint64_t id_of(const char *node)
{
    if (!strcmp(node, "a"))
        return 1;
    if (!strcmp(node, "b"))
        return 2;
    if (!strcmp(node, "c"))
        return 3;
    return 99;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    CHECK(e != NULL);
    CHECK(X509_add_ext(x, e, -1) == 1);
    X509_EXTENSION_free(e);
}

/*
** Writes DIR/NAME.pem and DIR/NAME.key: a CA when issuer is NULL (its
** certificate and key are returned in *cert / *key for signing), else a
** certificate signed by issuer/ikey with the subjectAltName san.
*/
static void make_cert(const char *name, X509 *issuer, EVP_PKEY *ikey,
                      const char *san, X509 **cert, EVP_PKEY **key)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    CHECK(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_set_pubkey(x, k);
    if (issuer) {
        add_ext(x, issuer, NID_subject_alt_name, san);
    } else {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    CHECK(X509_sign(x, issuer ? ikey : k, EVP_sha256()) > 0);
    char path[128];
    snprintf(path, sizeof path, "%s/%s.pem", tmpdir, name);
    FILE *f = fopen(path, "w");
    CHECK(f && PEM_write_X509(f, x) == 1 && fclose(f) == 0);
    snprintf(path, sizeof path, "%s/%s.key", tmpdir, name);
    f = fopen(path, "w");
    CHECK(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1 &&
          fclose(f) == 0);
    if (cert) {
        *cert = x;
        *key = k;
    } else {
        X509_free(x);
        EVP_PKEY_free(k);
    }
}

static void tls_start(struct rl_transport *t, const char *cert, raft_id id,
                      const char *addr, int listen)
{
    char c[128], k[128], ca[128];
    snprintf(c, sizeof c, "%s/%s.pem", tmpdir, cert);
    snprintf(k, sizeof k, "%s/%s.key", tmpdir, cert);
    snprintf(ca, sizeof ca, "%s/ca.pem", tmpdir);
    struct rl_transport_tls tls = {
        .cert_file = c, .key_file = k, .ca_file = ca, .raft_id_of = id_of};
    struct rl_transport_opts o = {
        .nodelay = 1, .tls = &tls, .log = capture_log};
    CHECK(rl_transport_init(t, &loop, &o) == 0);
    t->raft.data = &seen;
    CHECK(t->raft.init(&t->raft, id, addr) == 0);
    if (listen)
        CHECK(t->raft.listen(&t->raft, accept_cb) == 0);
}

static char got[64];
static size_t ngot;

static void read_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h, (void)size;
    buf->base = got + ngot;
    buf->len = sizeof got - ngot;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n > 0)
        ngot += (size_t)n;
    if (n < 0 || ngot == sizeof got)
        uv_read_stop(s);
}

static int wrote;
static void write_cb(uv_write_t *w, int status)
{
    (void)w;
    CHECK(status == 0);
    wrote++;
}

/* Sends text from one stream and waits for it on the other. */
static void cross(uv_stream_t *from, uv_stream_t *to, const char *text)
{
    uv_write_t w;
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    int want = wrote + 1;
    ngot = 0;
    CHECK(uv_read_start(to, read_alloc, read_cb) == 0);
    CHECK(uv_write(&w, from, &b, 1, write_cb) == 0);
    run_until(&wrote, want);
    time_t end = time(NULL) + 5;
    while (ngot < strlen(text)) {
        CHECK(time(NULL) <= end);
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    uv_read_stop(to);
    CHECK(ngot == strlen(text) && memcmp(got, text, ngot) == 0);
}

/*
** B (certificate bcert, raft id bid) dials A (node "a", raft id 1) as the
** node with raft id `dial`. Returns the number of streams A accepted;
** a refusal must be logged with `needle` (by A, or by B when B refuses).
*/
static int tls_pair(const char *bcert, raft_id bid, raft_id dial,
                    const char *needle)
{
    char a_addr[32], b_addr[32];
    two_addrs(a_addr, b_addr);
    struct rl_transport a, b;
    memset(&seen, 0, sizeof seen);
    nlogged = 0;
    tls_start(&a, "a", 1, a_addr, 1);
    tls_start(&b, bcert, bid, b_addr, 0);
    struct raft_uv_connect req = {.data = &seen};
    CHECK(b.raft.connect(&b.raft, &req, dial, a_addr, connect_cb) == 0);
    run_until(&seen.connects, 1);
    int accepted;
    if (!needle) {
        CHECK(seen.status == 0 && seen.dialled != NULL);
        run_until(&seen.accepts, 1);
        CHECK(seen.id == bid && strcmp(seen.address, b_addr) == 0);
        CHECK(seen.acc->type == UV_NAMED_PIPE); /* the socketpair end */
        cross(seen.dialled, seen.acc, "AppendEntries, through TLS");
        cross(seen.acc, seen.dialled, "and its result, back");
        CHECK(a.conns == 1 && b.conns == 1 && nlogged == 0);
    } else {
        /* B's own warning may come first (its certificate does not name
        ** raft id bid): wait for the refusal's line. */
        time_t end = time(NULL) + 5;
        while (!logged_has(needle)) {
            CHECK(time(NULL) <= end);
            uv_run(&loop, UV_RUN_NOWAIT);
            usleep(1000);
        }
        printf("  refused as expected\n");
        /* The refusing side handed raft nothing. */
        if (seen.status == 0)
            CHECK(seen.accepts == 0 && a.conns == 0);
        else
            CHECK(seen.status == RAFT_NOCONNECTION && b.conns == 0);
    }
    accepted = seen.accepts;
    if (seen.dialled)
        uv_close((uv_handle_t *)seen.dialled, free_handle);
    if (seen.acc)
        uv_close((uv_handle_t *)seen.acc, free_handle);
    stop(&a);
    stop(&b);
    return accepted;
}

static void tls_tests(void)
{
    X509 *ca, *other;
    EVP_PKEY *cakey, *otherkey;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rltransport-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    make_cert("ca", NULL, NULL, NULL, &ca, &cakey);
    make_cert("otherca", NULL, NULL, NULL, &other, &otherkey);
    make_cert("a", ca, cakey, "URI:raftlite:node:a", NULL, NULL);
    make_cert("b", ca, cakey, "URI:raftlite:node:b", NULL, NULL);
    make_cert("c", ca, cakey, "URI:raftlite:node:c", NULL, NULL);
    make_cert("rogue", other, otherkey, "URI:raftlite:node:b", NULL, NULL);
    make_cert("app", ca, cakey, "URI:raftlite:client:app", NULL, NULL);

    printf("TLS: two node certificates of the CA connect; bytes cross\n");
    CHECK(tls_pair("b", 2, 1, NULL) == 1);
    printf("TLS: a node certificate of another CA is refused\n");
    CHECK(tls_pair("rogue", 2, 1, "peer certificate refused") == 0);
    printf("TLS: a client certificate of the CA is refused\n");
    CHECK(tls_pair("app", 2, 1, "is not a node certificate") == 0);
    printf("TLS: node c claiming raft id 2 in the preamble is refused\n");
    CHECK(tls_pair("c", 2, 1, "preamble claims raft id 2") == 0);
    printf("TLS: dialling raft id 3 at node a's address fails\n");
    CHECK(tls_pair("b", 2, 3, "not the node being dialled") == 0);

    printf("TLS: a node whose certificate names another node says so at "
           "start\n");
    {
        struct rl_transport w;
        char addr[32];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", pick_port(0));
        nlogged = 0;
        memset(&seen, 0, sizeof seen);
        tls_start(&w, "b", 1, addr, 0); /* b's certificate, raft id 1 */
        CHECK(nlogged == 1 && strstr(logged[0], "does not name it"));
        stop(&w);
        nlogged = 0;
        tls_start(&w, "a", 1, addr, 0); /* its own: silent */
        CHECK(nlogged == 0);
        stop(&w);
    }

    printf("TLS: closing with a dial stuck in its handshake cancels it "
           "once\n");
    int lfd = socket(AF_INET, SOCK_STREAM, 0), port = pick_port(0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
          listen(lfd, 4) == 0); /* never accepts, never answers */
    char silent[32], b_addr[32];
    snprintf(silent, sizeof silent, "127.0.0.1:%d", port);
    snprintf(b_addr, sizeof b_addr, "127.0.0.1:%d", pick_port(port));
    struct rl_transport b;
    memset(&seen, 0, sizeof seen);
    tls_start(&b, "b", 2, b_addr, 0);
    struct raft_uv_connect req = {.data = &seen};
    CHECK(b.raft.connect(&b.raft, &req, 1, silent, connect_cb) == 0);
    usleep(100 * 1000);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(seen.connects == 0);
    stop(&b);
    CHECK(seen.connects == 1 && seen.status == RAFT_CANCELED);
    close(lfd);

    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(otherkey);
    const char *names[] = {"ca", "otherca", "a", "b", "c", "rogue", "app"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s.pem", tmpdir, names[i]);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s.key", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
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

    tls_tests();

    uv_run(&loop, UV_RUN_DEFAULT); /* handles still closing */
    CHECK(uv_loop_close(&loop) == 0);
    printf("test_transport: ok\n");
    return 0;
}
