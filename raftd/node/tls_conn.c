/*
** raftd/node/tls_conn.c -- one connection of the Raft transport's TLS
** half, on its own thread: TCP connect (dial) or the accepted socket, the
** TLS handshake, the peer's certificate checked against the node it must
** be, raft's preamble, then a socketpair whose other end raft gets, and
** the pump between that pair and the SSL connection until either closes.
**
** Runs on the connection's thread, except tls_conn_start and
** tls_conn_run (loop thread). It must never hand raft a stream whose peer
** was not verified, never call raft or libuv (except uv_async_send), never
** wait without watching the transport's stop eventfd, and never report a
** refusal the transport's own close caused.
*/
#include "tls_int.h"

uint64_t tls_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- logging */

/* Any thread: queue a refusal for the loop to log (dropped if full). */
void tls_queue_log(struct rl_tls *tls, const char *msg)
{
    pthread_mutex_lock(&tls->mu);
    if (tls->nlogq < LOG_QUEUE) {
        snprintf(tls->logq[tls->nlogq], sizeof tls->logq[0], "%.500s", msg);
        tls->nlogq++;
    }
    pthread_mutex_unlock(&tls->mu);
}

/* The first OpenSSL error of this thread's queue, or `dflt`. */
const char *tls_ssl_reason(char *buf, size_t n, const char *dflt)
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

int tls_split_addr(const char *addr, char *host, size_t hn, char *port,
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
            uint64_t now = tls_now_ms();
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
            c->stopped = 1; /* not the peer's doing: never reported */
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
        snprintf(why, n, "%s: %s", op,
                 tls_ssl_reason(buf, sizeof buf, "failed"));
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
    uint64_t deadline = tls_now_ms() + HANDSHAKE_MS;
    char host[256], port[32];
    if (tls_split_addr(c->address, host, sizeof host, port, sizeof port) != 0) {
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
    uint64_t deadline = tls_now_ms() + HANDSHAKE_MS;
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
    if (rc != 0 && c->ssl && !c->stopped &&
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
        tls_queue_log(tls, msg);
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
struct conn *tls_conn_start(struct rl_tls *tls, int dial, int fd, char *why,
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

int tls_conn_run(struct conn *c, char *why, size_t n)
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
