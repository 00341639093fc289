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
** Threads: one loop waits on every connection (epoll) and reads each
** request's first bytes; a whole READ joins the next read round, which
** one round thread runs for all READs queued (round_main); anything else
** (COMMIT, HINT, a request in pieces) goes to a worker, started when none
** is idle, at most one per connection.
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "doormsg.h"
#include "entry.h"

#define DOOR_MAX_CONNS 64
#define DOOR_MSG_MS    10000
#define DOOR_SEND_MS   5000
/* How long a round waits at least and at most for the readers of the
** last (take_reads). */
#define GATHER_MIN_US 300
#define GATHER_MAX_US 2000

/*
** Who owns a connection: the loop thread while it waits in the epoll set
** (armed one-shot, so that at most one event is reported per request);
** the round thread from the moment the loop queues its READ; a worker
** from the moment the loop queues anything else; and the loop again once
** that thread re-armed it (rearm), after which that thread never touches
** it. Only the loop closes and frees a connection, and only one it owns:
** a thread done with a broken one shuts it down and re-arms it, and the
** loop then reads its end. So an fd is never closed while another thread
** may still use its number.
*/
struct door_conn {
    struct rl_door *d;
    int fd;
    pid_t pid; /* the peer's, from SO_PEERCRED */
    /* The request's first bytes as the loop read them (a whole READ or
    ** HINT fits; a worker reads the rest of anything longer). */
    uint8_t head[RL_DOOR_HDR + 4];
    size_t got;
    uint32_t wait_ms;        /* a queued READ's timeout */
    struct door_conn *next;  /* every connection: the loop's list */
    struct door_conn *qnext; /* in the READ queue or the work queue */
};

struct rl_door {
    rl_host *h;
    int lfd, ep;
    int wake[2]; /* written once at stop, never read: stays readable */
    pthread_t loop_th, round_th;
    pthread_mutex_t mu;
    pthread_cond_t round_cv, work_cv;
    int stopping;                      /* under mu */
    struct door_conn *reads;           /* READs for the next round; under mu */
    int nreads;                        /* how many; under mu */
    struct door_conn *work, **wtail;   /* for the workers; under mu */
    pthread_t workers[DOOR_MAX_CONNS]; /* under mu */
    int nworkers, idle_workers;        /* under mu */
    struct door_conn *conns;           /* the loop thread's */
    int nconns;                        /* the loop thread's */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
    return now_us() / 1000;
}

/* Waits until fd is readable or the door closes: 1 ready, 0 the door
** closes, -1 the deadline passed. */
static int wait_fd(struct rl_door *d, int fd, int64_t deadline)
{
    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {d->wake[0], POLLIN, 0}};
        int64_t left = deadline - now_ms();
        int n;
        if (left <= 0)
            return -1;
        n = poll(p, 2, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0 && p[1].revents)
            return 0;
        if (n > 0 && p[0].revents)
            return 1;
    }
}

/* Reads n bytes within ms: 0, or -1 closed, cut, late or the door closes. */
static int read_all(struct rl_door *d, int fd, uint8_t *buf, size_t n,
                    int64_t ms)
{
    int64_t deadline = now_ms() + ms;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN || wait_fd(d, fd, deadline) != 1)
                return -1;
            continue;
        }
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

/* Hands c back to the loop (see struct door_conn): ready for its next
** request, or (ok 0) shut down, so that the loop reads its end and frees
** it. The caller never touches c afterwards. */
static void rearm(struct door_conn *c, int ok)
{
    struct epoll_event ev;
    c->got = 0;
    if (!ok)
        shutdown(c->fd, SHUT_RDWR);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c;
    if (epoll_ctl(c->d->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        /* Cannot happen while the door runs (the fd is in the set); the
        ** connection is then freed at stop. */
        rl_host_log(c->d->h, 1, "local door: epoll_ctl: %s", strerror(errno));
    }
}

static void bad_message(struct door_conn *c, const char *e)
{
    rl_host_log(c->d->h, 1,
                "local door: process %ld sent %s; closing its connection",
                (long)c->pid, e);
}

/* ------------------------------------------------------------ reads */

/*
** Takes the queued READs for the next round, waiting for the first (or
** the stop: NULL when nothing is left). A round then waits for as many
** as `expect`, the readers the last round answered plus those that
** queued during it, for up to as long as the last round took (wait_us:
** at least GATHER_MIN_US, at most GATHER_MAX_US). Readers that read in a
** loop come back within that time and share every round; without the
** wait each would arrive while a round runs and take the one after it,
** so that the readers split into two halves that alternate, two rounds
** for what one serves. The wait is about as long as the round it saves
** (GATHER_MIN_US when rounds are quicker), and readers that stopped cost
** it once: the next `expect` is what came.
*/
static struct door_conn *take_reads(struct rl_door *d, int expect,
                                    int64_t wait_us, int *n)
{
    struct door_conn *batch;
    pthread_mutex_lock(&d->mu);
    while (!d->reads && !d->stopping)
        pthread_cond_wait(&d->round_cv, &d->mu);
    if (d->nreads < expect && !d->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        if (wait_us < GATHER_MIN_US)
            wait_us = GATHER_MIN_US;
        if (wait_us > GATHER_MAX_US)
            wait_us = GATHER_MAX_US;
        until.tv_nsec += (long)wait_us * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (d->nreads < expect && !d->stopping &&
               pthread_cond_timedwait(&d->round_cv, &d->mu, &until) == 0)
            ;
    }
    batch = d->reads;
    *n = d->nreads;
    d->reads = NULL;
    d->nreads = 0;
    pthread_mutex_unlock(&d->mu);
    return batch;
}

/*
** The round thread: answers the queued READs together with one read
** point (rl_host_read_index_n), which begins after every one of them
** arrived, so it is linearizable for each. READs that arrive meanwhile
** wait for the next round (take_reads). One thread wakes for a round and
** none per reader: with many client processes reading at once, the
** wake-ups of a thread per connection were most of what a read cost
** (bench `anywhere`, bench/RESULTS.md).
*/
static void *round_main(void *arg)
{
    struct rl_door *d = arg;
    rl_host *h = d->h;
    uint8_t ans[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX];
    int expect = 0;
    int64_t took_us = 0; /* the last round's time */
    for (;;) {
        char why[RL_DOOR_TEXT_MAX + 1] = "";
        uint64_t index = 0, L = 0;
        uint32_t tmo = 0;
        size_t len;
        int nb, rc;
        struct door_conn *batch = take_reads(d, expect, took_us, &nb);
        int64_t t0 = now_us();
        if (!batch)
            break; /* stopping, and nothing left to answer */
        /* The round lasts as long as its most patient reader allows; one
        ** that gave up earlier has closed its connection. */
        for (struct door_conn *c = batch; c; c = c->qnext)
            if (c->wait_ms > tmo)
                tmo = c->wait_ms;
        rc = rl_host_read_index_n(h, (unsigned)nb, tmo, &index, &L, why,
                                  sizeof why);
        took_us = now_us() - t0;
        if (rc != 0 && !why[0])
            snprintf(why, sizeof why, "no answer from node %s", h->id.node_id);
        len = rc == 0 ? rl_door_ans_put(ans, 0, index, L, "")
                      : rl_door_ans_put(ans, 1, 0, 0, why);
        while (batch) {
            struct door_conn *c = batch;
            batch = c->qnext;
            rearm(c, send_all(c->fd, ans, len) == 0);
        }
        pthread_mutex_lock(&d->mu);
        expect = nb + d->nreads;
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

/* ------------------------------------------------------------ workers */

/* A COMMIT or HINT (or a request that came in pieces) of c, whose first
** c->got bytes the loop read: read the rest, serve it, answer. 0, or -1
** to close the connection. */
static int serve_rest(struct door_conn *c)
{
    struct rl_door *d = c->d;
    rl_host *h = d->h;
    uint8_t ans[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX], *body;
    char e[256], why[RL_DOOR_TEXT_MAX + 1] = "";
    uint64_t index = 0, L = 0;
    size_t have, n;
    rl_door_hdr hd;
    rl_door_req r;
    if (c->got < RL_DOOR_HDR &&
        read_all(d, c->fd, c->head + c->got, RL_DOOR_HDR - c->got,
                 DOOR_MSG_MS) != 0)
        return -1;
    if (rl_door_hdr_get(c->head, RL_DOOR_COMMIT, RL_DOOR_READ,
                        (uint32_t)RL_ENTRY_MAX_PAYLOAD, &hd, e,
                        sizeof e) != 0) {
        bad_message(c, e);
        return -1;
    }
    body = malloc(hd.len ? hd.len : 1);
    if (!body) {
        rl_host_log(h, 1,
                    "local door: no memory for a %u-byte message of "
                    "process %ld",
                    hd.len, (long)c->pid);
        return -1;
    }
    have = c->got > RL_DOOR_HDR ? c->got - RL_DOOR_HDR : 0;
    if (have > hd.len) {
        /* One request at a time: nothing may follow it before its
        ** answer. */
        snprintf(e, sizeof e,
                 "a message of kind %u and %u bytes followed by %zu more "
                 "before its answer",
                 hd.kind, hd.len, have - hd.len);
        bad_message(c, e);
        free(body);
        return -1;
    }
    memcpy(body, c->head + RL_DOOR_HDR, have);
    /* Time to copy the body too: 1 ms per 100 kB. */
    if (read_all(d, c->fd, body + have, hd.len - have,
                 DOOR_MSG_MS + hd.len / 100000) != 0) {
        free(body);
        return -1;
    }
    if (rl_door_req_decode(&hd, body, &r, e, sizeof e) != 0) {
        bad_message(c, e);
        free(body);
        return -1;
    }
    __atomic_add_fetch(&h->door_calls, 1, __ATOMIC_RELAXED);
    if (r.kind == RL_DOOR_COMMIT) {
        rl_forward_txn f;
        int outcome;
        memset(&f, 0, sizeof f);
        f.payload = r.payload;
        f.len = r.len;
        f.base = r.base;
        f.origin_node = h->raft_id;
        f.origin_txn = r.txn;
        f.origin_pid = (uint32_t)c->pid;
        outcome = rl_host_propose_txn(h, &f, COMMIT_TIMEOUT_MS, &index, why,
                                      sizeof why);
        n = rl_door_ans_put(ans, (uint32_t)outcome, index, 0,
                            outcome == RL_OUTCOME_APPLIED ? "" : why);
    } else if (r.kind == RL_DOOR_HINT
                   ? rl_host_leader_L(h, r.wait_ms, &index, &L, why, sizeof why)
                   : rl_host_read_index(h, r.wait_ms, &index, &L, why,
                                        sizeof why)) {
        if (!why[0])
            snprintf(why, sizeof why, "no answer from node %s", h->id.node_id);
        n = rl_door_ans_put(ans, 1, 0, 0, why);
    } else {
        n = rl_door_ans_put(ans, 0, index, L, "");
    }
    free(body);
    return send_all(c->fd, ans, n);
}

/* A worker: serves the work queue; at stop, what is queued is served
** before it ends (a request read whole is answered). */
static void *work_main(void *arg)
{
    struct rl_door *d = arg;
    for (;;) {
        struct door_conn *c;
        pthread_mutex_lock(&d->mu);
        d->idle_workers++;
        while (!d->work && !d->stopping)
            pthread_cond_wait(&d->work_cv, &d->mu);
        d->idle_workers--;
        c = d->work;
        if (c) {
            d->work = c->qnext;
            if (!d->work)
                d->wtail = &d->work;
        }
        pthread_mutex_unlock(&d->mu);
        if (!c)
            break;
        rearm(c, serve_rest(c) == 0);
    }
    return NULL;
}

/* ------------------------------------------------------------ the loop */

/* Frees c, which the loop owns (armed or just read). */
static void conn_free(struct rl_door *d, struct door_conn *c)
{
    struct door_conn **pp = &d->conns;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    d->nconns--;
    epoll_ctl(d->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Queues c for a worker, starting one when none is idle (at most one per
** connection: a request that stalls mid-message holds its worker, not
** the others). 0, or -1 when no thread could be had. */
static int to_worker(struct rl_door *d, struct door_conn *c)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    c->qnext = NULL;
    *d->wtail = c;
    d->wtail = &c->qnext;
    if (d->idle_workers == 0 && d->nworkers < DOOR_MAX_CONNS) {
        if (pthread_create(&d->workers[d->nworkers], NULL, work_main, d) == 0)
            d->nworkers++;
        else if (d->nworkers == 0)
            rc = -1;
    }
    if (rc != 0) {
        /* Take it back: nobody would serve it. */
        struct door_conn **pp = &d->work;
        while (*pp != c)
            pp = &(*pp)->qnext;
        *pp = NULL;
        d->wtail = pp;
    }
    pthread_cond_signal(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* c (the loop's) is readable: reads what came, at most a READ's whole
** size; a whole READ joins the next round, anything else goes to a
** worker. */
static void readable(struct rl_door *d, struct door_conn *c)
{
    rl_door_hdr hd;
    rl_door_req r;
    char e[256];
    ssize_t got = recv(c->fd, c->head, sizeof c->head, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        rearm(c, 1);
        return;
    }
    if (got <= 0) {
        conn_free(d, c); /* the peer left, or a thread shut it down */
        return;
    }
    c->got = (size_t)got;
    if (c->got == sizeof c->head &&
        rl_door_hdr_get(c->head, RL_DOOR_COMMIT, RL_DOOR_READ,
                        (uint32_t)RL_ENTRY_MAX_PAYLOAD, &hd, e,
                        sizeof e) == 0 &&
        hd.kind == RL_DOOR_READ) {
        if (rl_door_req_decode(&hd, c->head + RL_DOOR_HDR, &r, e, sizeof e) !=
            0) {
            bad_message(c, e);
            conn_free(d, c);
            return;
        }
        __atomic_add_fetch(&d->h->door_calls, 1, __ATOMIC_RELAXED);
        c->wait_ms = r.wait_ms;
        pthread_mutex_lock(&d->mu);
        c->qnext = d->reads;
        d->reads = c;
        d->nreads++;
        pthread_cond_signal(&d->round_cv);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    /* A bad header is told by the worker, which reads it first. */
    if (to_worker(d, c) != 0)
        conn_free(d, c);
}

static void greet_and_close(int fd, uint32_t status)
{
    uint8_t b[RL_DOOR_HDR + 4];
    rl_door_hello_put(b, status);
    (void)!send(fd, b, sizeof b, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/* Accepts one connection: greeted OK and armed, or greeted and closed. */
static void accept_one(struct rl_door *d, int *refused_logged)
{
    struct ucred cr;
    socklen_t crlen = sizeof cr;
    struct door_conn *c;
    struct epoll_event ev;
    uint8_t hello[RL_DOOR_HDR + 4];
    int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
        cr.pid <= 0 || (cr.uid != geteuid() && cr.uid != 0)) {
        if (!(*refused_logged)++)
            rl_host_log(d->h, 1,
                        "local door: refused a process of user %ld (only "
                        "user %ld and root may use it)",
                        (long)cr.uid, (long)geteuid());
        greet_and_close(fd, RL_DOOR_REFUSED);
        return;
    }
    c = d->nconns < DOOR_MAX_CONNS ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        greet_and_close(fd, RL_DOOR_FULL);
        return;
    }
    c->d = d;
    c->fd = fd;
    c->pid = cr.pid;
    rl_door_hello_put(hello, RL_DOOR_OK);
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c;
    /* A new socket's buffer takes the greeting at once. */
    if (send_all(fd, hello, sizeof hello) != 0 ||
        epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        free(c);
        return;
    }
    c->next = d->conns;
    d->conns = c;
    d->nconns++;
}

/* The loop: accepts, and reads every request's first bytes, until the
** door closes. */
static void *loop_main(void *arg)
{
    struct rl_door *d = arg;
    int refused_logged = 0;
    for (;;) {
        struct epoll_event ev[32];
        int n = epoll_wait(d->ep, ev, 32, -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &d->wake)
                return NULL;
            if (ev[i].data.ptr == &d->lfd)
                accept_one(d, &refused_logged);
            else
                readable(d, ev[i].data.ptr);
        }
    }
    return NULL;
}

/* Frees what start made (threads not started or joined). */
static void door_free(struct rl_door *d)
{
    while (d->conns) {
        struct door_conn *c = d->conns;
        d->conns = c->next;
        close(c->fd);
        free(c);
    }
    if (d->ep >= 0)
        close(d->ep);
    if (d->lfd >= 0)
        close(d->lfd);
    if (d->wake[0] >= 0) {
        close(d->wake[0]);
        close(d->wake[1]);
    }
    pthread_cond_destroy(&d->round_cv);
    pthread_cond_destroy(&d->work_cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* The wake pipe, the epoll set and the listening socket at sa (mode
** 0600), both in the set: 0, or -1 with errno. */
static int door_listen(struct rl_door *d, const struct sockaddr_un *sa)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    if (pipe2(d->wake, O_CLOEXEC) != 0 ||
        (d->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(d->lfd, (const struct sockaddr *)sa, sizeof *sa) != 0 ||
        chmod(sa->sun_path, 0600) != 0 || listen(d->lfd, 64) != 0)
        return -1;
    ev.data.ptr = &d->lfd;
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, d->lfd, &ev) != 0)
        return -1;
    ev.data.ptr = &d->wake;
    return epoll_ctl(d->ep, EPOLL_CTL_ADD, d->wake[0], &ev);
}

void rl_host_door_start(rl_host *h)
{
    struct rl_door *d;
    struct sockaddr_un sa;
    char path[PATH_MAX];
    int rc;
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
    d->lfd = d->ep = -1;
    d->wake[0] = d->wake[1] = -1;
    d->wtail = &d->work;
    pthread_mutex_init(&d->mu, NULL);
    {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&d->round_cv, &a);
        pthread_condattr_destroy(&a);
    }
    pthread_cond_init(&d->work_cv, NULL);
    memcpy(d->path, path, strlen(path) + 1); /* fits: checked above */
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* A door left by a host that died: this process holds the host lock,
    ** so no live host owns it. */
    unlink(path);
    rc = door_listen(d, &sa) != 0
             ? errno
             : pthread_create(&d->round_th, NULL, round_main, d);
    if (rc != 0) {
        rl_host_log(h, 1, "no local door at %s: %s; client processes use gRPC",
                    path, strerror(rc));
        if (d->lfd >= 0)
            unlink(path);
        door_free(d);
        return;
    }
    rc = pthread_create(&d->loop_th, NULL, loop_main, d);
    if (rc != 0) {
        rl_host_log(h, 1, "no local door at %s: %s; client processes use gRPC",
                    path, strerror(rc));
        pthread_mutex_lock(&d->mu);
        d->stopping = 1;
        pthread_cond_broadcast(&d->round_cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->round_th, NULL);
        unlink(path);
        door_free(d);
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
    pthread_join(d->loop_th, NULL);
    /* The round thread answers the READs queued, the workers the requests
    ** queued or being read (a worker reading a message sees the wake and
    ** drops it), then they end. Nothing frees a connection meanwhile: the
    ** loop has ended. */
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    pthread_cond_broadcast(&d->round_cv);
    pthread_cond_broadcast(&d->work_cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->round_th, NULL);
    for (int i = 0; i < d->nworkers; i++)
        pthread_join(d->workers[i], NULL);
    door_free(d);
}
