/*
** raftd/node/tls_transport.c -- the mutual-TLS variant of raftlite's Raft
** transport (see transport.h): every Raft byte, raft's connection preamble
** included, travels inside TLS, and both ends prove with a certificate of
** the cluster CA that they are the member node they claim to be.
**
** How: raft_uv reads and writes a uv_stream_t. Each connection gets a
** thread that opens (or accepts) the TCP socket, runs the TLS handshake,
** checks the peer's certificate (verified against the CA, role
** RL_CERT_NODE, and its node id: the id being dialled, or for an accepted
** connection the id the peer claims in raft's preamble), then creates a
** socketpair: one end goes to raft as a uv_pipe_t, the thread pumps bytes
** between the other end and the SSL connection until either side closes.
** Threads talk to the loop through one uv_async_t and the mutex `mu`.
**
** Raft's preamble (facts read from libraft 0.15's uv_tcp_connect.c and
** uv_tcp_listen.c; this is our own code): three little-endian u64 --
** protocol version 1, the sender's raft id, the length of the address
** field -- then the sender's address, NUL-terminated and padded with NULs
** to a multiple of 8 bytes. A dialler sends it, the acceptor reads it.
**
** It must never: hand raft a stream whose peer was not verified; block the
** loop thread (handshakes, DNS and connect run on the connection's thread);
** call raft's callbacks from any thread but the loop's; fire a dial's
** callback twice or not at all (RAFT_CANCELED when the transport closes
** first); let a thread outlive the transport (close waits for all of them);
** log the same refusal more than once a minute (raft redials every second).
*/
#include "tls_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bytes.h"
#include "certid.h"

#define PREAMBLE_PROTOCOL 1
#define ADDRESS_MAX       1024  /* longest preamble address accepted */
#define HANDSHAKE_MS      5000  /* TCP connect + TLS handshake + preamble */
#define MAX_CONNS         256   /* threads; more connections are refused */
#define LOG_QUEUE         16    /* refusals waiting for the loop */
#define LOG_MEMORY        32    /* recent refusals remembered for dedup */
#define LOG_REPEAT_MS     60000 /* the same refusal is logged once a minute */
#define PUMP_BUF          65536

enum { C_HANDSHAKE, C_READY, C_FAILED };

struct conn {
    struct rl_tls *tls;
    struct conn *next;  /* tls->conns (mu) */
    struct conn *later; /* the loop's private lists in async_cb */
    pthread_t th;
    int dial;   /* 1 dialled by us, 0 accepted */
    int fd;     /* TCP socket (the thread's) */
    int theirs; /* raft's socketpair end, until the loop takes it */
    SSL *ssl;
    raft_id id;                      /* dialled, or claimed in the preamble */
    char address[ADDRESS_MAX];       /* dialled, or claimed in the preamble */
    char peer[INET6_ADDRSTRLEN + 8]; /* remote IP, for logs */
    struct raft_uv_connect *req;     /* dial: raft's request */
    int state;                       /* C_* (mu) */
    int delivered;                   /* loop has acted on state (loop only) */
    int exited;                      /* thread is done (mu) */
};

struct rl_tls {
    struct rl_transport *t;
    uv_loop_t *loop;
    SSL_CTX *ctx;
    uint64_t (*raft_id_of)(const char *node_id);
    raft_id id;
    char address[ADDRESS_MAX];
    int stopfd; /* eventfd: readable once the transport closes */
    uv_async_t async;
    uv_poll_t lpoll;
    int lfd;
    int async_open, lpoll_open; /* handles initialized and not yet closed */
    int closing;                /* tr_close (or rl_tls_free) started */
    int free_when_closed;       /* rl_tls_free ran before handles closed */
    raft_uv_transport_close_cb close_cb;
    pthread_mutex_t mu;
    struct conn *conns;        /* live threads (mu) */
    unsigned nconns;           /* (mu) */
    char logq[LOG_QUEUE][512]; /* refusals for the loop to log (mu) */
    unsigned nlogq;            /* (mu) */
    struct {
        uint64_t hash, at;
    } said[LOG_MEMORY]; /* loop only */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct rl_tls *tls_of(struct raft_uv_transport *r)
{
    return ((struct rl_transport *)r)->tls; /* `raft` is the first member */
}

/* ------------------------------------------------------------- logging */

/* Any thread: queue a refusal for the loop to log (dropped if full). */
static void queue_log(struct rl_tls *tls, const char *msg)
{
    pthread_mutex_lock(&tls->mu);
    if (tls->nlogq < LOG_QUEUE) {
        snprintf(tls->logq[tls->nlogq], sizeof tls->logq[0], "%.500s", msg);
        tls->nlogq++;
    }
    pthread_mutex_unlock(&tls->mu);
}

/* Loop thread: log msg unless the same text was logged in the last
** LOG_REPEAT_MS (a refused peer redials every second). */
static void emit_log(struct rl_tls *tls, const char *msg)
{
    struct rl_transport *t = tls->t;
    uint64_t h = 0xcbf29ce484222325ull, now = now_ms();
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    unsigned oldest = 0;
    for (unsigned i = 0; i < LOG_MEMORY; i++) {
        if (tls->said[i].hash == h && tls->said[i].at &&
            now - tls->said[i].at < LOG_REPEAT_MS)
            return;
        if (tls->said[i].at < tls->said[oldest].at)
            oldest = i;
    }
    tls->said[oldest].hash = h;
    tls->said[oldest].at = now;
    t->tls_refused++;
    if (t->opts.log)
        t->opts.log(t->opts.log_ctx, msg);
    else
        fprintf(stderr, "raftlite: %s\n", msg);
}

/* The first OpenSSL error of this thread's queue, or `dflt`. */
static const char *ssl_reason(char *buf, size_t n, const char *dflt)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return dflt;
    const char *r = ERR_reason_error_string(e);
    snprintf(buf, n, "%s", r ? r : dflt);
    ERR_clear_error();
    return buf;
}

/* ------------------------------------------------------ socket helpers */

/* "host:port" or "[v6]:port" into host and port; -1 if malformed. */
static int split_addr(const char *addr, char *host, size_t hn, char *port,
                      size_t pn)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= pn)
        return -1;
    const char *h = addr;
    size_t len = (size_t)(colon - addr);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']')
        h++, len -= 2;
    if (len >= hn)
        return -1;
    memcpy(host, h, len);
    host[len] = '\0';
    snprintf(port, pn, "%s", colon + 1);
    return 0;
}

/*
** Waits until fd is ready for `events`: 0; -1 with why set when the
** transport closes or the deadline passes (deadline 0: none).
*/
static int wait_fd(struct conn *c, int fd, short events, uint64_t deadline,
                   char *why, size_t n)
{
    for (;;) {
        int ms = -1;
        if (deadline) {
            uint64_t now = now_ms();
            if (now >= deadline) {
                snprintf(why, n, "timed out after %d ms", HANDSHAKE_MS);
                return -1;
            }
            ms = (int)(deadline - now);
        }
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = c->tls->stopfd, .events = POLLIN}};
        int r = poll(p, 2, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, n, "poll: %s", strerror(errno));
            return -1;
        }
        if (p[1].revents) {
            snprintf(why, n, "transport closing");
            return -1;
        }
        if (p[0].revents)
            return 0;
    }
}

/*
** After an SSL call returned r <= 0: waits for what it needs and returns
** 1 (call it again), or -1 with why set (closed, failed, timed out).
*/
static int ssl_retry(struct conn *c, int r, uint64_t deadline, const char *op,
                     char *why, size_t n)
{
    char buf[160];
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c, c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                       deadline, why, n) == 0
                   ? 1
                   : -1;
    if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(why, n, "%s: connection closed by the peer", op);
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)
        snprintf(why, n, "%s: %s", op,
                 r == 0 || errno == 0 ? "connection closed by the peer"
                                      : strerror(errno));
    else
        snprintf(why, n, "%s: %s", op, ssl_reason(buf, sizeof buf, "failed"));
    return -1;
}

static int ssl_io_all(struct conn *c, int writing, void *buf, size_t len,
                      uint64_t deadline, char *why, size_t n)
{
    size_t done = 0;
    while (done < len) {
        int r = writing
                    ? SSL_write(c->ssl, (char *)buf + done, (int)(len - done))
                    : SSL_read(c->ssl, (char *)buf + done, (int)(len - done));
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        if (ssl_retry(c, r, deadline,
                      writing ? "sending the preamble" : "reading the preamble",
                      why, n) < 0)
            return -1;
    }
    return 0;
}

/*
** The TLS handshake, then the peer check: a certificate of the CA
** (OpenSSL verified it: SSL_VERIFY_PEER with FAIL_IF_NO_PEER_CERT) that
** names a node; its id goes to *cid.
*/
static int handshake(struct conn *c, uint64_t deadline, rl_cert_id *cid,
                     char *why, size_t n)
{
    if (!(c->ssl = SSL_new(c->tls->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
        snprintf(why, n, "out of memory (SSL_new)");
        return -1;
    }
    if (c->dial)
        SSL_set_connect_state(c->ssl);
    else
        SSL_set_accept_state(c->ssl);
    int r;
    while ((r = SSL_do_handshake(c->ssl)) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK) {
            snprintf(why, n, "TLS handshake: peer certificate refused (%s)",
                     X509_verify_cert_error_string(v));
            return -1;
        }
        if (ssl_retry(c, r, deadline, "TLS handshake", why, n) < 0)
            return -1;
    }
    X509 *cert = SSL_get_peer_certificate(c->ssl);
    if (!cert || SSL_get_verify_result(c->ssl) != X509_V_OK) {
        snprintf(why, n, "no verified peer certificate");
        X509_free(cert);
        return -1;
    }
    char err[200];
    int rc = rl_cert_identity(cert, cid, err, sizeof err);
    X509_free(cert);
    if (rc != 0) {
        snprintf(why, n, "peer certificate: %s", err);
        return -1;
    }
    if (cid->role != RL_CERT_NODE) {
        snprintf(why, n,
                 "peer certificate of '%s' is not a node certificate (it "
                 "needs the subjectAltName URI " RL_CERT_NODE_PREFIX "<id>)",
                 cid->name);
        return -1;
    }
    return 0;
}

static void set_nodelay(struct conn *c)
{
    int one = 1;
    if (c->tls->t->opts.nodelay &&
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        __atomic_add_fetch(&c->tls->t->nodelay_failed, 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------ connection thread */

/* The certificate's node must be c->id: the node dialled, or the one the
** accepted peer claims to be in its preamble. */
static int peer_id_check(struct conn *c, const rl_cert_id *cid, char *why,
                         size_t n)
{
    if (c->tls->raft_id_of(cid->name) == c->id)
        return 0;
    if (c->dial)
        snprintf(why, n,
                 "the server's certificate is node '%s', not the node being "
                 "dialled (raft id %llu)",
                 cid->name, (unsigned long long)c->id);
    else
        snprintf(why, n,
                 "certificate of node '%s' but the preamble claims raft id "
                 "%llu (another node's)",
                 cid->name, (unsigned long long)c->id);
    return -1;
}

static int dial_setup(struct conn *c, char *why, size_t n)
{
    uint64_t deadline = now_ms() + HANDSHAKE_MS;
    char host[256], port[32];
    if (split_addr(c->address, host, sizeof host, port, sizeof port) != 0) {
        snprintf(why, n, "malformed address");
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        snprintf(why, n, "resolving: %s", gai_strerror(g));
        return -1;
    }
    snprintf(why, n, "no address");
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        c->fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   a->ai_protocol);
        if (c->fd < 0) {
            snprintf(why, n, "socket: %s", strerror(errno));
            continue;
        }
        int r = connect(c->fd, a->ai_addr, a->ai_addrlen), err = 0;
        if (r != 0 && errno == EINPROGRESS) {
            socklen_t len = sizeof err;
            if (wait_fd(c, c->fd, POLLOUT, deadline, why, n) != 0) {
                close(c->fd), c->fd = -1;
                freeaddrinfo(ai);
                return -1;
            }
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            r = err ? -1 : 0;
        } else if (r != 0) {
            err = errno;
        }
        if (r == 0)
            break;
        snprintf(why, n, "connect: %s", strerror(err));
        close(c->fd), c->fd = -1;
    }
    freeaddrinfo(ai);
    if (c->fd < 0)
        return -1;
    set_nodelay(c);
    rl_cert_id cid;
    if (handshake(c, deadline, &cid, why, n) != 0)
        return -1;
    if (peer_id_check(c, &cid, why, n) != 0)
        return -1;
    /* Our preamble: who we are, inside TLS. */
    size_t alen = strlen(c->tls->address) + 1;
    alen = (alen + 7) / 8 * 8;
    uint8_t pre[24 + ADDRESS_MAX] = {0};
    rl_put_le64(pre, PREAMBLE_PROTOCOL);
    rl_put_le64(pre + 8, c->tls->id);
    rl_put_le64(pre + 16, alen);
    memcpy(pre + 24, c->tls->address, strlen(c->tls->address));
    return ssl_io_all(c, 1, pre, 24 + alen, deadline, why, n);
}

static int accept_setup(struct conn *c, char *why, size_t n)
{
    uint64_t deadline = now_ms() + HANDSHAKE_MS;
    set_nodelay(c);
    rl_cert_id cid;
    if (handshake(c, deadline, &cid, why, n) != 0)
        return -1;
    uint8_t pre[24];
    if (ssl_io_all(c, 0, pre, sizeof pre, deadline, why, n) != 0)
        return -1;
    uint64_t proto = rl_get_le64(pre), alen = rl_get_le64(pre + 16);
    c->id = rl_get_le64(pre + 8);
    if (proto != PREAMBLE_PROTOCOL || alen == 0 || alen > ADDRESS_MAX) {
        snprintf(why, n,
                 "node '%s' sent a preamble raft 0.15 would not send "
                 "(protocol %llu, address of %llu bytes)",
                 cid.name, (unsigned long long)proto, (unsigned long long)alen);
        return -1;
    }
    if (ssl_io_all(c, 0, c->address, (size_t)alen, deadline, why, n) != 0)
        return -1;
    if (memchr(c->address, '\0', (size_t)alen) == NULL) {
        snprintf(why, n, "node '%s' sent an unterminated address", cid.name);
        return -1;
    }
    if (peer_id_check(c, &cid, why, n) != 0)
        return -1;
    return 0;
}

/*
** Moves bytes both ways between raft's socketpair end (`mine` is ours)
** and the SSL connection, all non-blocking, until either side closes or
** the transport does.
*/
static void pump_bufs(struct conn *c, int mine, char *up, char *dn);

/* After a non-blocking SSL_read/SSL_write returned r <= 0: 0 and the poll
** events the SSL connection waits for added to *ev, or -1 (closed, failed). */
static int ssl_wants(SSL *ssl, int r, short *ev)
{
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        *ev |= POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE)
        *ev |= POLLOUT;
    else
        return -1;
    return 0;
}

static void pump(struct conn *c, int mine)
{
    char *up = malloc(PUMP_BUF), *dn = malloc(PUMP_BUF);
    if (up && dn)
        pump_bufs(c, mine, up, dn);
    free(up);
    free(dn);
}

static void pump_bufs(struct conn *c, int mine, char *up, char *dn)
{
    size_t up_len = 0, up_off = 0, dn_len = 0, dn_off = 0;
    for (;;) {
        int progress = 0, r;
        short sev = 0, pev = 0;
        if (dn_len == 0) { /* peer -> raft */
            r = SSL_read(c->ssl, dn, PUMP_BUF);
            if (r > 0)
                dn_len = (size_t)r, dn_off = 0, progress = 1;
            else if (ssl_wants(c->ssl, r, &sev) != 0)
                return;
        }
        if (dn_len > 0) {
            ssize_t w = send(mine, dn + dn_off, dn_len - dn_off, MSG_NOSIGNAL);
            if (w > 0) {
                dn_off += (size_t)w, progress = 1;
                if (dn_off == dn_len)
                    dn_len = 0;
            } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                pev |= POLLOUT;
            } else {
                return;
            }
        }
        if (up_len == 0) { /* raft -> peer */
            ssize_t got = recv(mine, up, PUMP_BUF, 0);
            if (got > 0) {
                up_len = (size_t)got, up_off = 0, progress = 1;
            } else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                pev |= POLLIN;
            } else { /* raft closed its stream: say goodbye */
                SSL_shutdown(c->ssl);
                return;
            }
        }
        if (up_len > 0) {
            r = SSL_write(c->ssl, up + up_off, (int)(up_len - up_off));
            if (r > 0) {
                up_off += (size_t)r, progress = 1;
                if (up_off == up_len)
                    up_len = 0;
            } else if (ssl_wants(c->ssl, r, &sev) != 0) {
                return;
            }
        }
        if (progress)
            continue;
        struct pollfd p[3] = {{.fd = c->fd, .events = sev},
                              {.fd = mine, .events = pev},
                              {.fd = c->tls->stopfd, .events = POLLIN}};
        if (poll(p, 3, -1) < 0 && errno != EINTR)
            return;
        if (p[2].revents)
            return;
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct rl_tls *tls = c->tls;
    char why[400] = "";
    /* OpenSSL writes to the socket with send() without MSG_NOSIGNAL: a
    ** peer that resets would raise SIGPIPE and kill the process (a shell
    ** hosting the node included). Blocked here, it stays pending on this
    ** thread and is discarded when the thread ends; the write gets EPIPE. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    int pair[2] = {-1, -1};
    int rc = c->dial ? dial_setup(c, why, sizeof why)
                     : accept_setup(c, why, sizeof why);
    if (rc == 0 &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        snprintf(why, sizeof why, "socketpair: %s", strerror(errno));
        rc = -1;
    }
    if (rc == 0 && fcntl(pair[0], F_SETFL, O_NONBLOCK) != 0) {
        snprintf(why, sizeof why, "fcntl: %s", strerror(errno));
        close(pair[0]), close(pair[1]);
        rc = -1;
    }
    /* A peer that is down (DNS, connect) is raft's business, as on the
    ** plain path: only what happened once TLS started is reported. An
    ** accepted connection closed before its first byte is a port probe
    ** (the leader checks a joining node's Raft address so: cluster.c),
    ** not a peer refused: not reported. */
    if (rc != 0 && c->ssl && strcmp(why, "transport closing") != 0 &&
        (c->dial || !SSL_get_rbio(c->ssl) ||
         BIO_number_read(SSL_get_rbio(c->ssl)) > 0)) {
        char msg[800];
        if (c->dial)
            snprintf(
                msg, sizeof msg,
                "Raft TLS: connection to %.200s (raft id %llu) refused: %s",
                c->address, (unsigned long long)c->id, why);
        else
            snprintf(msg, sizeof msg,
                     "Raft TLS: connection from %s refused: %s", c->peer, why);
        queue_log(tls, msg);
    }
    ERR_clear_error();
    pthread_mutex_lock(&tls->mu);
    c->state = rc == 0 ? C_READY : C_FAILED;
    c->theirs = pair[1];
    pthread_mutex_unlock(&tls->mu);
    uv_async_send(&tls->async);
    if (rc == 0) {
        pump(c, pair[0]);
        close(pair[0]);
    }
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    ERR_clear_error();
    OPENSSL_thread_stop();
    pthread_mutex_lock(&tls->mu);
    c->exited = 1;
    pthread_mutex_unlock(&tls->mu);
    uv_async_send(&tls->async);
    return NULL;
}

/* Loop thread: a conn and its thread; NULL (and why) if refused. */
static struct conn *conn_start(struct rl_tls *tls, int dial, int fd, char *why,
                               size_t n)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, n, "out of memory");
        return NULL;
    }
    c->tls = tls;
    c->dial = dial;
    c->fd = fd;
    c->theirs = -1;
    pthread_mutex_lock(&tls->mu);
    if (tls->nconns >= MAX_CONNS) {
        pthread_mutex_unlock(&tls->mu);
        snprintf(why, n, "%d connections already open", MAX_CONNS);
        free(c);
        return NULL;
    }
    c->next = tls->conns;
    tls->conns = c;
    tls->nconns++;
    pthread_mutex_unlock(&tls->mu);
    return c;
}

static int conn_run(struct conn *c, char *why, size_t n)
{
    struct rl_tls *tls = c->tls;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* The pump's buffers are on the heap; the stack holds OpenSSL's
    ** handshake and getaddrinfo (NSS modules): 512 KiB, not glibc's 8 MiB
    ** default, since a cluster under attack may hold many threads. */
    pthread_attr_setstacksize(&attr, 512 * 1024);
    int e = pthread_create(&c->th, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    if (e == 0)
        return 0;
    snprintf(why, n, "pthread_create: %s", strerror(e));
    pthread_mutex_lock(&tls->mu);
    for (struct conn **p = &tls->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    tls->nconns--;
    pthread_mutex_unlock(&tls->mu);
    return -1;
}

/* ----------------------------------------------------------- loop side */

static void maybe_finish_close(struct rl_tls *tls);

static void pipe_free_cb(uv_handle_t *h)
{
    raft_free(h);
}

/* raft's stream over fd (raft frees it with RaftHeapFree after uv_close:
** allocate with raft_malloc). Closes fd and returns NULL on failure. */
static struct uv_stream_s *make_pipe(struct rl_tls *tls, int fd)
{
    uv_pipe_t *p = raft_malloc(sizeof *p);
    if (!p) {
        close(fd);
        return NULL;
    }
    if (uv_pipe_init(tls->loop, p, 0) != 0) {
        raft_free(p);
        close(fd);
        return NULL;
    }
    if (uv_pipe_open(p, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)p, pipe_free_cb);
        return NULL;
    }
    return (struct uv_stream_s *)p;
}

static void deliver(struct rl_tls *tls, struct conn *c)
{
    struct rl_transport *t = tls->t;
    struct uv_stream_s *s = NULL;
    if (c->state == C_READY && !tls->closing) {
        s = make_pipe(tls, c->theirs);
        c->theirs = -1;
    } else if (c->theirs >= 0) {
        close(c->theirs); /* the pump sees EOF and ends */
        c->theirs = -1;
    }
    if (s)
        t->conns++;
    if (c->dial) {
        struct raft_uv_connect *req = c->req;
        req->cb(req, s,
                s              ? 0
                : tls->closing ? RAFT_CANCELED
                               : RAFT_NOCONNECTION);
    } else if (s) {
        t->accept_cb(&t->raft, c->id, c->address, s);
    }
}

static void async_cb(uv_async_t *a)
{
    struct rl_tls *tls = a->data;
    struct conn *ready = NULL, *dead = NULL;
    char logs[LOG_QUEUE][512];
    unsigned nlogs;
    pthread_mutex_lock(&tls->mu);
    nlogs = tls->nlogq;
    memcpy(logs, tls->logq, sizeof logs[0] * nlogs);
    tls->nlogq = 0;
    for (struct conn **p = &tls->conns; *p;) {
        struct conn *c = *p;
        if (c->state != C_HANDSHAKE && !c->delivered) {
            c->delivered = 1;
            c->later = ready;
            ready = c;
        }
        if (c->exited) {
            *p = c->next;
            c->next = dead;
            dead = c;
            tls->nconns--;
        } else {
            p = &c->next;
        }
    }
    pthread_mutex_unlock(&tls->mu);
    for (unsigned i = 0; i < nlogs; i++)
        emit_log(tls, logs[i]);
    /* Oldest first is not needed: each conn is independent. */
    for (struct conn *c = ready; c; c = c->later)
        deliver(tls, c);
    while (dead) {
        struct conn *c = dead;
        dead = c->next;
        pthread_join(c->th, NULL);
        free(c);
    }
    maybe_finish_close(tls);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    struct rl_tls *tls = h->data;
    (void)status, (void)events;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(tls->lfd, (struct sockaddr *)&sa, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or an error the next poll retries */
        char why[200], peer[INET6_ADDRSTRLEN + 8] = "?";
        if (sa.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, peer,
                      sizeof peer);
        else if (sa.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, peer,
                      sizeof peer);
        struct conn *c = conn_start(tls, 0, fd, why, sizeof why);
        if (c) {
            snprintf(c->peer, sizeof c->peer, "%s", peer);
            if (conn_run(c, why, sizeof why) == 0)
                continue;
            free(c);
        }
        close(fd);
        char msg[400];
        snprintf(msg, sizeof msg, "Raft TLS: connection from %s refused: %s",
                 peer, why);
        emit_log(tls, msg);
    }
}

static void handle_closed(uv_handle_t *h)
{
    struct rl_tls *tls = h->data;
    if (h == (uv_handle_t *)&tls->lpoll) {
        close(tls->lfd);
        tls->lfd = -1;
        tls->lpoll_open = 0;
        if (tls->free_when_closed && !tls->async_open)
            rl_tls_free(tls);
        else
            maybe_finish_close(tls);
        return;
    }
    tls->async_open = 0;
    if (tls->free_when_closed) {
        if (!tls->lpoll_open)
            rl_tls_free(tls);
        return;
    }
    raft_uv_transport_close_cb cb = tls->close_cb;
    tls->close_cb = NULL;
    if (cb)
        cb(&tls->t->raft);
}

/* Once closing and every thread is gone and the listener closed: close
** the async handle; its close callback calls raft's close callback. */
static void maybe_finish_close(struct rl_tls *tls)
{
    if (!tls->closing || tls->lpoll_open || !tls->async_open ||
        uv_is_closing((uv_handle_t *)&tls->async))
        return;
    pthread_mutex_lock(&tls->mu);
    int busy = tls->conns != NULL;
    pthread_mutex_unlock(&tls->mu);
    if (!busy)
        uv_close((uv_handle_t *)&tls->async, handle_closed);
}

/* ------------------------------------------------ raft_uv_transport */

static int tr_init(struct raft_uv_transport *r, raft_id id, const char *address)
{
    struct rl_tls *tls = tls_of(r);
    if (strlen(address) >= sizeof tls->address) {
        snprintf(r->errmsg, sizeof r->errmsg, "address too long");
        return RAFT_INVALID;
    }
    tls->id = id;
    snprintf(tls->address, sizeof tls->address, "%s", address);
    int rv = uv_async_init(tls->loop, &tls->async, async_cb);
    if (rv != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "uv_async_init: %s",
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    tls->async.data = tls;
    tls->async_open = 1;
    /* Our own certificate must name us, or every peer refuses us: say so
    ** at start rather than once per refused connection on the peers. */
    X509 *own = SSL_CTX_get0_certificate(tls->ctx);
    rl_cert_id cid;
    char err[200], msg[400];
    if (!own || rl_cert_identity(own, &cid, err, sizeof err) != 0 ||
        cid.role != RL_CERT_NODE || tls->raft_id_of(cid.name) != id) {
        snprintf(msg, sizeof msg,
                 "Raft TLS: this node's certificate does not name it (it "
                 "needs the subjectAltName URI " RL_CERT_NODE_PREFIX
                 "<this node's id>): its peers will refuse its Raft "
                 "connections");
        emit_log(tls, msg);
    }
    return 0;
}

static int tr_listen(struct raft_uv_transport *r, raft_uv_accept_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    char host[256], port[32];
    tls->t->accept_cb = cb;
    if (split_addr(tls->address, host, sizeof host, port, sizeof port) != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "malformed address '%.200s'",
                 tls->address);
        return RAFT_INVALID;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (g != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "resolving '%.200s': %s",
                 tls->address, gai_strerror(g));
        return RAFT_IOERR;
    }
    int fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol),
        one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "listen on %.200s: %s",
                 tls->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return RAFT_IOERR;
    }
    freeaddrinfo(ai);
    int rv = uv_poll_init(tls->loop, &tls->lpoll, fd);
    if (rv == 0) {
        tls->lpoll.data = tls;
        tls->lfd = fd;
        tls->lpoll_open = 1;
        rv = uv_poll_start(&tls->lpoll, UV_READABLE, on_accept);
        if (rv == 0)
            return 0;
        uv_close((uv_handle_t *)&tls->lpoll, handle_closed);
    } else {
        close(fd);
    }
    snprintf(r->errmsg, sizeof r->errmsg, "listen on %.200s: %s", tls->address,
             uv_strerror(rv));
    return RAFT_IOERR;
}

static int tr_connect(struct raft_uv_transport *r, struct raft_uv_connect *req,
                      raft_id id, const char *address, raft_uv_connect_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    char why[200];
    if (strlen(address) >= ADDRESS_MAX) {
        snprintf(r->errmsg, sizeof r->errmsg, "address too long");
        return RAFT_NOCONNECTION;
    }
    struct conn *c = conn_start(tls, 1, -1, why, sizeof why);
    if (!c) {
        snprintf(r->errmsg, sizeof r->errmsg, "%s", why);
        return RAFT_NOCONNECTION;
    }
    c->id = id;
    snprintf(c->address, sizeof c->address, "%s", address);
    c->req = req;
    req->cb = cb;
    if (conn_run(c, why, sizeof why) != 0) {
        free(c);
        snprintf(r->errmsg, sizeof r->errmsg, "%s", why);
        return RAFT_NOCONNECTION;
    }
    return 0;
}

/* Stops the listener and every thread (they poll stopfd). */
static void stop_all(struct rl_tls *tls)
{
    uint64_t one = 1;
    tls->closing = 1;
    if (write(tls->stopfd, &one, sizeof one) != sizeof one) {
        /* An eventfd write fails only on overflow: it is readable then. */
    }
    if (tls->lpoll_open && !uv_is_closing((uv_handle_t *)&tls->lpoll)) {
        uv_poll_stop(&tls->lpoll);
        uv_close((uv_handle_t *)&tls->lpoll, handle_closed);
    }
}

static void tr_close(struct raft_uv_transport *r, raft_uv_transport_close_cb cb)
{
    struct rl_tls *tls = tls_of(r);
    tls->close_cb = cb;
    stop_all(tls);
    maybe_finish_close(tls);
}

/* -------------------------------------------------------------- setup */

int rl_tls_init(struct rl_transport *t, uv_loop_t *loop,
                const struct rl_transport_tls *cfg)
{
    struct rl_tls *tls = calloc(1, sizeof *tls);
    char buf[160];
    if (!tls) {
        snprintf(t->raft.errmsg, sizeof t->raft.errmsg, "out of memory");
        return RAFT_NOMEM;
    }
    tls->t = t;
    tls->loop = loop;
    tls->lfd = -1;
    tls->raft_id_of = cfg->raft_id_of;
    pthread_mutex_init(&tls->mu, NULL);
    tls->stopfd = eventfd(0, EFD_CLOEXEC);
    const char *what = NULL, *file = NULL;
    if (tls->stopfd < 0) {
        what = "eventfd";
    } else if (!(tls->ctx = SSL_CTX_new(TLS_method()))) {
        what = "SSL_CTX_new";
    } else if (!SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION)) {
        what = "TLS 1.2";
    } else if (SSL_CTX_use_certificate_chain_file(tls->ctx, cfg->cert_file) !=
               1) {
        what = "loading the certificate", file = cfg->cert_file;
    } else if (SSL_CTX_use_PrivateKey_file(tls->ctx, cfg->key_file,
                                           SSL_FILETYPE_PEM) != 1) {
        what = "loading the private key", file = cfg->key_file;
    } else if (SSL_CTX_check_private_key(tls->ctx) != 1) {
        what = "the private key does not match the certificate",
        file = cfg->key_file;
    } else if (SSL_CTX_load_verify_locations(tls->ctx, cfg->ca_file, NULL) !=
               1) {
        what = "loading the CA", file = cfg->ca_file;
    }
    if (what) {
        snprintf(t->raft.errmsg, sizeof t->raft.errmsg, "Raft TLS: %s%s%s: %s",
                 what, file ? " " : "", file ? file : "",
                 ssl_reason(buf, sizeof buf, "failed"));
        rl_tls_free(tls);
        return RAFT_INVALID;
    }
    SSL_CTX_set_verify(tls->ctx,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_mode(tls->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(tls->ctx, SSL_OP_NO_RENEGOTIATION);
    /* Raft connections are long-lived: no resumption tickets to store. */
    SSL_CTX_set_num_tickets(tls->ctx, 0);
    t->tls = tls;
    t->raft.init = tr_init;
    t->raft.listen = tr_listen;
    t->raft.connect = tr_connect;
    t->raft.close = tr_close;
    return 0;
}

void rl_tls_free(struct rl_tls *tls)
{
    if (!tls)
        return;
    if (tls->async_open || tls->lpoll_open) {
        /* Freed without tr_close (raft never started): stop the threads,
        ** wait for them, close the handles; the last close frees. */
        if (!tls->closing)
            stop_all(tls);
        for (;;) {
            pthread_mutex_lock(&tls->mu);
            struct conn *c = tls->conns;
            if (c)
                tls->conns = c->next;
            pthread_mutex_unlock(&tls->mu);
            if (!c)
                break;
            pthread_join(c->th, NULL);
            if (c->theirs >= 0)
                close(c->theirs);
            if (c->dial && !c->delivered)
                c->req->cb(c->req, NULL, RAFT_CANCELED);
            free(c);
        }
        tls->free_when_closed = 1;
        if (tls->t && tls->t->tls == tls)
            tls->t->tls = NULL;
        if (tls->async_open && !uv_is_closing((uv_handle_t *)&tls->async))
            uv_close((uv_handle_t *)&tls->async, handle_closed);
        return;
    }
    if (tls->t && tls->t->tls == tls)
        tls->t->tls = NULL;
    if (tls->ctx)
        SSL_CTX_free(tls->ctx);
    if (tls->stopfd >= 0)
        close(tls->stopfd);
    pthread_mutex_destroy(&tls->mu);
    free(tls);
}
