/*
** raftd/host/door.c -- a host's local door: the Unix socket
** "<db>-raft/door" where the client processes of this machine (other
** processes with the database open: a second shell, a web worker) hand
** the host their commits, write-lock hints and read points (doormsg.h)
** instead of calling its gRPC sidecar. A local round trip costs a few
** microseconds where a gRPC call costs a few hundred.
**
** Who may knock: the socket lives in "<db>-raft/" (0700) with mode 0600,
** and each connection's peer credentials must be this process's user or
** root; anyone else is greeted with REFUSED (and may use gRPC, under its
** rules). The door takes the origin of a commit from itself (its node)
** and the peer's pid, never from the message. Limits: at most
** DOOR_MAX_CONNS connections (later ones are greeted FULL), a message once
** begun must arrive within DOOR_MSG_MS (plus time for its size), a body of
** at most RL_ENTRY_MAX_PAYLOAD bytes, every decode checked (fuzzed).
**
** It must never act on a partial or malformed message, and never outlive
** its host: rl_host_door_stop joins every thread before the node stops.
*/
#include "host_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "doormsg.h"
#include "entry.h"

#define DOOR_MAX_CONNS 64
#define DOOR_MSG_MS    10000
#define DOOR_SEND_MS   5000

struct door_conn {
    struct rl_door *d;
    int fd;
    pid_t pid; /* the peer's, from SO_PEERCRED */
    pthread_t th;
    int done; /* under d->mu: the thread has ended (join it) */
    struct door_conn *next;
};

struct rl_door {
    rl_host *h;
    int lfd;
    int wake[2]; /* written once at stop, never read: stays readable */
    pthread_t accept_th;
    pthread_mutex_t mu;
    struct door_conn *conns; /* under mu */
    int nconns;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is readable (or writable, out) or the door closes: 1
** ready, 0 the door closes, -1 the deadline passed (deadline < 0: none). */
static int wait_fd(struct rl_door *d, int fd, int out, int64_t deadline)
{
    for (;;) {
        struct pollfd p[2] = {{fd, out ? POLLOUT : POLLIN, 0},
                              {d->wake[0], POLLIN, 0}};
        int tmo = -1, n;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return -1;
            tmo = left > 1000 ? 1000 : (int)left;
        }
        n = poll(p, 2, tmo);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0 && p[1].revents)
            return 0;
        if (n > 0 && p[0].revents)
            return 1;
    }
}

/* Reads n bytes within ms; with first_idle the first byte may take
** forever (an idle connection) and the ms count from it. 0 ok, -1 closed,
** cut, late or the door closes. */
static int read_all(struct rl_door *d, int fd, uint8_t *buf, size_t n,
                    int first_idle, int64_t ms)
{
    int64_t deadline = first_idle ? -1 : now_ms() + ms;
    size_t got = 0;
    while (got < n) {
        ssize_t r;
        if (wait_fd(d, fd, 0, deadline) != 1)
            return -1;
        r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return -1;
        }
        if (deadline < 0)
            deadline = now_ms() + ms;
        got += (size_t)r;
    }
    return 0;
}

static int send_all(int fd, const uint8_t *buf, size_t n)
{
    int64_t deadline = now_ms() + DOOR_SEND_MS;
    size_t sent = 0;
    while (sent < n) {
        ssize_t w = send(fd, buf + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                return -1;
            /* An answer is sent even while the door closes: wait on the
            ** socket alone. */
            struct pollfd p = {fd, POLLOUT, 0};
            int64_t left = deadline - now_ms();
            if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                return -1;
            continue;
        }
        sent += (size_t)w;
    }
    return 0;
}

/* One request, answered into out (room: RL_DOOR_HDR + 20 +
** RL_DOOR_TEXT_MAX): its length. */
static size_t serve(struct door_conn *c, const rl_door_req *r, uint8_t *out)
{
    rl_host *h = c->d->h;
    char why[RL_DOOR_TEXT_MAX + 1] = "";
    uint64_t index = 0, L = 0;
    __atomic_add_fetch(&h->door_calls, 1, __ATOMIC_RELAXED);
    if (r->kind == RL_DOOR_COMMIT) {
        rl_forward_txn f;
        int outcome;
        memset(&f, 0, sizeof f);
        f.payload = r->payload;
        f.len = r->len;
        f.base = r->base;
        f.origin_node = h->raft_id;
        f.origin_txn = r->txn;
        f.origin_pid = (uint32_t)c->pid;
        outcome = rl_host_propose_txn(h, &f, COMMIT_TIMEOUT_MS, &index, why,
                                      sizeof why);
        return rl_door_ans_put(out, (uint32_t)outcome, index, 0,
                               outcome == RL_OUTCOME_APPLIED ? "" : why);
    }
    if (r->kind == RL_DOOR_HINT
            ? rl_host_leader_L(h, r->wait_ms, &index, &L, why, sizeof why)
            : rl_host_read_index(h, r->wait_ms, &index, &L, why, sizeof why)) {
        if (!why[0])
            snprintf(why, sizeof why, "no answer from node %s", h->id.node_id);
        return rl_door_ans_put(out, 1, 0, 0, why);
    }
    return rl_door_ans_put(out, 0, index, L, "");
}

/* A connection's thread: greets, then serves requests in order until the
** peer leaves, breaks the protocol, or the door closes. */
static void *conn_main(void *arg)
{
    struct door_conn *c = arg;
    struct rl_door *d = c->d;
    uint8_t hd[RL_DOOR_HDR], ans[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX];
    char e[256];
    rl_door_hello_put(ans, RL_DOOR_OK);
    if (send_all(c->fd, ans, RL_DOOR_HDR + 4) == 0) {
        for (;;) {
            rl_door_hdr h;
            rl_door_req r;
            uint8_t *body;
            size_t n;
            if (read_all(d, c->fd, hd, sizeof hd, 1, DOOR_MSG_MS) != 0)
                break;
            if (rl_door_hdr_get(hd, RL_DOOR_COMMIT, RL_DOOR_READ,
                                (uint32_t)RL_ENTRY_MAX_PAYLOAD, &h, e,
                                sizeof e) != 0) {
                rl_host_log(d->h, 1,
                            "local door: process %ld sent %s; "
                            "closing its connection",
                            (long)c->pid, e);
                break;
            }
            /* Time to copy the body too: 1 ms per 100 kB. */
            body = malloc(h.len ? h.len : 1);
            if (!body) {
                rl_host_log(d->h, 1,
                            "local door: no memory for a %u-byte "
                            "message of process %ld",
                            h.len, (long)c->pid);
                break;
            }
            if (read_all(d, c->fd, body, h.len, 0,
                         DOOR_MSG_MS + h.len / 100000) != 0) {
                free(body);
                break;
            }
            if (rl_door_req_decode(&h, body, &r, e, sizeof e) != 0) {
                rl_host_log(d->h, 1,
                            "local door: process %ld sent %s; "
                            "closing its connection",
                            (long)c->pid, e);
                free(body);
                break;
            }
            n = serve(c, &r, ans);
            free(body);
            if (send_all(c->fd, ans, n) != 0)
                break;
        }
    }
    /* The peer sees the end now; the fd is closed when the thread is
    ** joined (reap), so that its number is not reused before. */
    shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_lock(&d->mu);
    c->done = 1;
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Joins and frees the connections whose threads ended (all of them when
** every thread is known to end: at stop, after the wake). */
static void reap(struct rl_door *d, int all)
{
    struct door_conn **pp = &d->conns, *dead = NULL;
    pthread_mutex_lock(&d->mu);
    while (*pp) {
        struct door_conn *c = *pp;
        if (all || c->done) {
            *pp = c->next;
            c->next = dead;
            dead = c;
            d->nconns--;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&d->mu);
    while (dead) {
        struct door_conn *c = dead;
        dead = c->next;
        pthread_join(c->th, NULL);
        close(c->fd);
        free(c);
    }
}

static void greet_and_close(int fd, uint32_t status)
{
    uint8_t b[RL_DOOR_HDR + 4];
    rl_door_hello_put(b, status);
    (void)!send(fd, b, sizeof b, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void *accept_main(void *arg)
{
    struct rl_door *d = arg;
    int refused_logged = 0;
    for (;;) {
        struct ucred cr;
        socklen_t crlen = sizeof cr;
        struct door_conn *c;
        int fd, n;
        if (wait_fd(d, d->lfd, 0, -1) != 1)
            break;
        fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        reap(d, 0);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
            cr.pid <= 0 || (cr.uid != geteuid() && cr.uid != 0)) {
            if (!refused_logged++)
                rl_host_log(d->h, 1,
                            "local door: refused a process of "
                            "user %ld (only user %ld and root may use it)",
                            (long)cr.uid, (long)geteuid());
            greet_and_close(fd, RL_DOOR_REFUSED);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        n = d->nconns;
        pthread_mutex_unlock(&d->mu);
        c = n < DOOR_MAX_CONNS ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            greet_and_close(fd, RL_DOOR_FULL);
            continue;
        }
        c->d = d;
        c->fd = fd;
        c->pid = cr.pid;
        if (pthread_create(&c->th, NULL, conn_main, c) != 0) {
            free(c);
            greet_and_close(fd, RL_DOOR_FULL);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        c->next = d->conns;
        d->conns = c;
        d->nconns++;
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

void rl_host_door_start(rl_host *h)
{
    struct rl_door *d;
    struct sockaddr_un sa;
    char path[PATH_MAX];
    if (rl_host_path(path, sizeof path, h->db_path, DOOR_SUFFIX) != 0 ||
        strlen(path) >= sizeof sa.sun_path) {
        rl_host_log(h, 1,
                    "no local door: the path of %s-raft/door is longer "
                    "than a Unix socket's; client processes use gRPC",
                    h->db_path);
        return;
    }
    d = calloc(1, sizeof *d);
    if (!d)
        return;
    d->h = h;
    d->lfd = -1;
    d->wake[0] = d->wake[1] = -1;
    pthread_mutex_init(&d->mu, NULL);
    memcpy(d->path, path, strlen(path) + 1); /* fits: checked above */
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* A door left by a host that died: this process holds the host lock,
    ** so no live host owns it. */
    unlink(path);
    if (pipe2(d->wake, O_CLOEXEC) != 0 ||
        (d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(d->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        chmod(path, 0600) != 0 || listen(d->lfd, 64) != 0 ||
        pthread_create(&d->accept_th, NULL, accept_main, d) != 0) {
        rl_host_log(h, 1,
                    "no local door at %s: %s; client processes use "
                    "gRPC",
                    path, strerror(errno));
        if (d->lfd >= 0) {
            close(d->lfd);
            unlink(path);
        }
        if (d->wake[0] >= 0) {
            close(d->wake[0]);
            close(d->wake[1]);
        }
        pthread_mutex_destroy(&d->mu);
        free(d);
        return;
    }
    h->door = d;
}

void rl_host_door_stop(rl_host *h)
{
    struct rl_door *d = h->door;
    if (!d)
        return;
    h->door = NULL;
    /* Unlinked first: a client connecting from now on finds no door and
    ** uses gRPC, or the next host's door. */
    unlink(d->path);
    (void)!write(d->wake[1], "x", 1);
    pthread_join(d->accept_th, NULL);
    close(d->lfd);
    /* Every connection's thread sees the wake once its request (if any)
    ** is answered. */
    reap(d, 1);
    close(d->wake[0]);
    close(d->wake[1]);
    pthread_mutex_destroy(&d->mu);
    free(d);
}
