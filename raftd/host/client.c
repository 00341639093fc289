/*
** raftd/host/client.c -- the replicator port's work in a process that does
** not host the node of a replicated database it has open (a "client
** process": another process on this machine holds the host lock). Its
** writes, write-lock hints and linearizable reads go to that host's local
** door (door.c: a Unix socket, "<db>-raft/door"), or to its gRPC sidecar
** when it has no door for this process.
**
** This file must never write the database or propose anything itself: the
** host decides; a client only asks and reports the answer.
*/
#include "host_int.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "doormsg.h"
#include "errbuf.h"

SQLITE_EXTENSION_INIT3

/* A client process's gRPC client for its host's sidecar: plaintext ones
** are shared by the process (made once: a channel per call would cost a
** connection per commit); with TLS settings one per call (*owned). */
static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_rpc_client *client_plain;

static void client_plain_free(void)
{
    pthread_mutex_lock(&client_mu);
    rl_rpc_client_free(client_plain);
    client_plain = NULL;
    pthread_mutex_unlock(&client_mu);
}

rl_rpc_client *rl_host_client_get(const rl_identity *id, int *owned, char *err,
                                  size_t errlen)
{
    rl_rpc_client *cl;
    *owned = 0;
    if (id->tls_cert[0] || id->tls_ca[0]) {
        rl_rpc_tls tls;
        memset(&tls, 0, sizeof tls);
        tls.ca_file = id->tls_ca[0] ? id->tls_ca : NULL;
        if (id->tls_client_auth) {
            tls.cert_file = id->tls_cert;
            tls.key_file = id->tls_key;
        }
        *owned = 1;
        return rl_rpc_client_new(&tls, 0, err, errlen);
    }
    pthread_mutex_lock(&client_mu);
    if (!client_plain) {
        client_plain = rl_rpc_client_new(NULL, 0, err, errlen);
        if (client_plain)
            atexit(client_plain_free);
    }
    cl = client_plain;
    pthread_mutex_unlock(&client_mu);
    return cl;
}

/* ------------------------------------------------------- the local door */

/*
** A client process's connections to its host's local door (door.c,
** doormsg.h): idle ones are kept (up to DOOR_IDLE, with the host's pid
** they were made for) so that a write costs no connect. A call takes one
** (or makes one), sends, reads the answer and puts it back; any failure
** closes it. Requests of one process's threads run side by side, each on
** its own connection.
*/
#define DOOR_IDLE 8

struct door_idle {
    int fd;
    long pid;   /* the host's */
    pid_t mine; /* the process that connected (a fork's child has its
                   parent's connections: they are not its own) */
    char path[PATH_MAX];
};
static pthread_mutex_t door_mu = PTHREAD_MUTEX_INITIALIZER;
static struct door_idle door_idle[DOOR_IDLE]; /* under door_mu */
static int door_nidle;
static int door_atexit;

static void door_close_all(void)
{
    pthread_mutex_lock(&door_mu);
    while (door_nidle > 0)
        close(door_idle[--door_nidle].fd);
    pthread_mutex_unlock(&door_mu);
}

/* Waits for fd (nonblocking) until deadline: 0 ready, -1 late. */
static int door_wait(int fd, short ev, int64_t deadline)
{
    struct pollfd p = {fd, ev, 0};
    for (;;) {
        int64_t left = deadline - rl_rpc_now_ms();
        int n;
        if (left <= 0)
            return -1;
        n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* Sends the whole request: 0, or -1 (errno; *any: a byte left). */
static int door_send(int fd, struct iovec *iov, int niov, int64_t deadline,
                     int *any)
{
    struct msghdr m;
    *any = 0;
    while (niov > 0) {
        ssize_t w;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)niov;
        w = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN || door_wait(fd, POLLOUT, deadline) != 0)
                return -1;
            continue;
        }
        if (w > 0)
            *any = 1;
        while (niov > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Reads one message of kind into hd and body (room: max bytes, at most
** 20 + RL_DOOR_TEXT_MAX): 0, or -1 with e. The door sends one message
** per request (and the greeting before any), so whatever has arrived is
** this message: it is read in one go, usually one recv. */
static int door_read(int fd, uint32_t kind, uint32_t max, rl_door_hdr *hd,
                     uint8_t *body, int64_t deadline, char *e, size_t elen)
{
    uint8_t buf[RL_DOOR_HDR + 20 + RL_DOOR_TEXT_MAX];
    size_t got = 0, want = RL_DOOR_HDR;
    if (max > sizeof buf - RL_DOOR_HDR)
        max = sizeof buf - RL_DOOR_HDR;
    while (got < want) {
        ssize_t r;
        if (door_wait(fd, POLLIN, deadline) != 0) {
            r = -1;
        } else {
            r = recv(fd, buf + got, RL_DOOR_HDR + max - got, MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
        }
        if (r <= 0) {
            rl_seterr(e, elen, "%s",
                      got < RL_DOOR_HDR
                          ? "the door closed or did not answer in time"
                          : "the door's answer was cut");
            return -1;
        }
        got += (size_t)r;
        if (want == RL_DOOR_HDR && got >= RL_DOOR_HDR) {
            if (rl_door_hdr_get(buf, kind, kind, max, hd, e, elen) != 0)
                return -1;
            want = RL_DOOR_HDR + hd->len;
        }
    }
    memcpy(body, buf + RL_DOOR_HDR, hd->len);
    return 0;
}

/* A new connection to the door at path, greeted OK: its fd, or -1 (no
** door, or one that will not serve this process: use gRPC). */
static int door_connect(const char *path)
{
    struct sockaddr_un sa;
    rl_door_hdr hd;
    uint8_t body[4];
    uint32_t status = RL_DOOR_REFUSED;
    char e[128];
    int fd;
    if (strlen(path) >= sizeof sa.sun_path)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    /* A Unix socket's connect does not block while its backlog has room;
    ** a full one (EAGAIN) counts as no door. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        door_read(fd, RL_DOOR_HELLO, 4, &hd, body, rl_rpc_now_ms() + 2000, e,
                  sizeof e) != 0 ||
        rl_door_hello_decode(&hd, body, &status, e, sizeof e) != 0 ||
        status != RL_DOOR_OK) {
        close(fd);
        return -1;
    }
    return fd;
}

/* An idle connection to path made for host *pid, else a new one; *kept
** says which. With *pid < 0: an idle one made for any host (its pid in
** *pid), never a new one. -1: no door (or none kept). */
static int door_take(const char *path, long *pid, int *kept)
{
    int fd = -1;
    pthread_mutex_lock(&door_mu);
    for (int i = 0; i < door_nidle;) {
        if (door_idle[i].mine != getpid()) {
            /* A fork's copy: its parent keeps using the connection. */
            close(door_idle[i].fd);
            door_idle[i] = door_idle[--door_nidle];
            continue;
        }
        if ((*pid < 0 || door_idle[i].pid == *pid) &&
            !strcmp(door_idle[i].path, path)) {
            fd = door_idle[i].fd;
            *pid = door_idle[i].pid;
            door_idle[i] = door_idle[--door_nidle];
            break;
        }
        i++;
    }
    if (!door_atexit) {
        door_atexit = 1;
        atexit(door_close_all);
    }
    pthread_mutex_unlock(&door_mu);
    *kept = fd >= 0;
    return fd >= 0 || *pid < 0 ? fd : door_connect(path);
}

static void door_put(int fd, const char *path, long pid)
{
    pthread_mutex_lock(&door_mu);
    if (door_nidle < DOOR_IDLE) {
        door_idle[door_nidle].fd = fd;
        door_idle[door_nidle].pid = pid;
        door_idle[door_nidle].mine = getpid();
        snprintf(door_idle[door_nidle].path, PATH_MAX, "%s", path);
        door_nidle++;
        fd = -1;
    }
    pthread_mutex_unlock(&door_mu);
    if (fd >= 0)
        close(fd);
}

enum { DOOR_ANSWERED = 0, DOOR_NONE = 1, DOOR_LOST = 2 };

/*
** One request to the door of db_path's host (pid): DOOR_ANSWERED with
** *ans; DOOR_NONE when there is no door or the request never wholly left
** (the host acts on whole requests only: nothing happened; use gRPC);
** DOOR_LOST when it left but no answer came within wait_ms (e says why).
** A kept connection whose host is gone fails at its first byte: one new
** connection is tried then. *pid < 0: only a kept connection, made for
** any host (a live one is to the host of now: a host that ends closes
** its connections; its pid in *pid), and DOOR_NONE when there is none or
** it failed.
*/
static int door_call(const char *db_path, long *pid, const struct iovec *req,
                     int niov, unsigned wait_ms, rl_door_ans *ans, char *e,
                     size_t elen)
{
    char path[PATH_MAX];
    struct iovec iov[2];
    uint8_t body[20 + RL_DOOR_TEXT_MAX];
    rl_door_hdr hd;
    size_t total = 0;
    int fd, kept, any = 0, only_kept = *pid < 0;
    if (niov > 2 ||
        rl_host_path(path, sizeof path, db_path, DOOR_SUFFIX) != 0 ||
        (fd = door_take(path, pid, &kept)) < 0)
        return DOOR_NONE;
    for (int i = 0; i < niov; i++)
        total += req[i].iov_len;
    for (;;) {
        memcpy(iov, req, (size_t)niov * sizeof *iov);
        /* The door's own allowance (door.c): 10 s, plus 1 ms per 100 kB. */
        if (door_send(fd, iov, niov,
                      rl_rpc_now_ms() + 10000 + (int64_t)(total / 100000),
                      &any) == 0)
            break;
        close(fd);
        if (!kept || any || only_kept || (fd = door_connect(path)) < 0)
            return DOOR_NONE;
        kept = 0;
    }
    if (door_read(fd, RL_DOOR_ANSWER, sizeof body, &hd, body,
                  rl_rpc_now_ms() + wait_ms, e, elen) != 0 ||
        rl_door_ans_decode(&hd, body, ans, e, elen) != 0) {
        close(fd);
        return DOOR_LOST;
    }
    door_put(fd, path, *pid);
    return DOOR_ANSWERED;
}

/* ------------------------------------------------------------ commit */

static uint64_t next_txn; /* this process's transaction ids (atomic) */

/* The commit through the host's gRPC sidecar (a host with no door). */
static int commit_via_grpc(const char *db_path, const char *grpc,
                           const uint8_t *buf, size_t n, rl_commit_info *ci,
                           char *err, size_t errlen)
{
    rl_identity id;
    rl_rpc_client *cl;
    rl_forward_txn f;
    uint64_t index = 0;
    int outcome = RL_OUTCOME_NOT_APPLIED, rc, owned = 0;
    char e[512], who[300];
    if (rl_identity_read(db_path, &id, e, sizeof e) != 0) {
        snprintf(err, errlen,
                 "%s is hosted by another process but its node identity "
                 "cannot be read (%s); nothing was written",
                 db_path, e);
        return SQLITE_READONLY;
    }
    cl = rl_host_client_get(&id, &owned, e, sizeof e);
    if (!cl) {
        snprintf(err, errlen, "cannot make a gRPC client for the host: %s", e);
        return SQLITE_READONLY;
    }
    memset(&f, 0, sizeof f);
    f.payload = buf;
    f.len = n;
    f.base = ci->base;
    f.origin_node = rl_raft_id_of(id.node_id);
    f.origin_txn = __atomic_add_fetch(&next_txn, 1, __ATOMIC_RELAXED);
    f.origin_pid = (uint32_t)getpid();
    snprintf(who, sizeof who, "the host of node %s", id.node_id);
    rc = rl_host_forward_send(cl, who, grpc, &f, &index, &outcome, err, errlen);
    if (owned)
        rl_rpc_client_free(cl);
    rl_host_writer.outcome = outcome;
    if (rc == SQLITE_OK)
        ci->index = index;
    return rc;
}

/*
** A client process (the node is hosted by process pid on this machine):
** its transaction goes to the host's local door (or, without one, its
** gRPC sidecar at grpc), which commits it (or relays it to the leader)
** with the host's node and this process as its origin. The writer then
** writes its frames itself; the host's applier, which needs the write
** lock this writer holds, finds them there ("already applied"), or
** writes them if this process died first.
*/
static int commit_via_host(const char *db_path, long pid, const char *grpc,
                           const uint8_t *buf, size_t n, rl_commit_info *ci,
                           char *err, size_t errlen)
{
    uint8_t head[RL_DOOR_HDR + RL_DOOR_COMMIT_FIXED];
    struct iovec iov[2];
    rl_door_ans ans;
    char e[256];
    int rc;
    if (rl_door_commit_head(head, ci->base,
                            __atomic_add_fetch(&next_txn, 1, __ATOMIC_RELAXED),
                            n) == 0) {
        iov[0].iov_base = head;
        iov[0].iov_len = sizeof head;
        iov[1].iov_base = (void *)buf;
        iov[1].iov_len = n;
        switch (door_call(db_path, &pid, iov, 2, COMMIT_TIMEOUT_MS + 5000, &ans,
                          e, sizeof e)) {
        case DOOR_ANSWERED:
            rl_host_writer.outcome = (int)ans.status;
            rc = rl_host_outcome_rc((int)ans.status);
            if (rc == SQLITE_OK)
                ci->index = ans.index;
            else
                snprintf(err, errlen, "%s", ans.text);
            return rc;
        case DOOR_LOST:
            rl_host_writer.outcome = RL_OUTCOME_UNKNOWN;
            snprintf(err, errlen,
                     "outcome unknown: the transaction was handed to its "
                     "host (process %ld, %s-raft/door) but no answer came "
                     "back (%s); it may still commit (every node will then "
                     "apply it): check before retrying",
                     pid, db_path, e);
            return SQLITE_IOERR;
        default:
            break; /* no door: nothing was sent */
        }
    }
    if (!grpc[0]) {
        snprintf(err, errlen,
                 "%s is hosted by process %ld, which has no local door and "
                 "no gRPC address; write through that process",
                 db_path, pid);
        return SQLITE_BUSY;
    }
    return commit_via_grpc(db_path, grpc, buf, n, ci, err, errlen);
}

/* The port's commit in a client process whose host (process pid) serves
** gRPC at grpc ("" none). */
int rl_host_client_commit(const char *db_path, long pid, const char *grpc,
                          const rl_txn *txn, rl_commit_info *ci, char *err,
                          size_t errlen)
{
    size_t n = rl_txn_encoded_size(txn);
    uint8_t *buf = n ? malloc(n) : NULL;
    int rc;
    if (!buf || rl_txn_encode(txn, buf, n) != 0) {
        free(buf);
        snprintf(err, errlen, "cannot encode a %zu-byte transaction", n);
        return SQLITE_IOERR_NOMEM;
    }
    rc = commit_via_host(db_path, pid, grpc, buf, n, ci, err, errlen);
    free(buf);
    return rc;
}

/* ------------------------------------------------- begin and read point */

/* Asks db_path's host (process pid, gRPC grpc) at its door, else by
** gRPC: a HINT (the leader's L in *L) or a READ (a read point in *index).
** 0, or -1 with e. pid < 0: on a kept door connection only (door_call),
** 1 when there is none. */
static int ask_host(const char *db_path, long pid, const char *grpc,
                    uint32_t kind, unsigned wait_ms, uint64_t *index,
                    uint64_t *L, char *e, size_t elen)
{
    uint8_t req[RL_DOOR_HDR + 4];
    struct iovec iov;
    rl_door_ans ans;
    rl_identity id;
    rl_rpc_client *cl;
    int owned = 0, rc;
    rl_door_ask_put(req, kind, wait_ms);
    iov.iov_base = req;
    iov.iov_len = sizeof req;
    switch (door_call(db_path, &pid, &iov, 1, wait_ms + 2000, &ans, e, elen)) {
    case DOOR_ANSWERED:
        if (ans.status != 0) {
            rl_seterr(e, elen, "%s", ans.text);
            return -1;
        }
        *index = ans.index;
        *L = ans.L;
        return 0;
    case DOOR_LOST: {
        char why[256];
        snprintf(why, sizeof why, "%s", e); /* e is the output too */
        rl_seterr(e, elen, "its host (process %ld) did not answer: %s", pid,
                  why);
        return -1;
    }
    default:
        break;
    }
    if (pid < 0)
        return 1; /* no connection kept */
    if (!grpc[0]) {
        rl_seterr(e, elen, "its host (process %ld) has no door or gRPC", pid);
        return -1;
    }
    if (rl_identity_read(db_path, &id, e, elen) != 0 ||
        (cl = rl_host_client_get(&id, &owned, e, elen)) == NULL)
        return -1;
    /* One call: the host answers from its read barrier when it leads,
    ** else from a round it asks the leader for (shared with its other
    ** readers: RL_READ_RELAY). */
    rc = rl_cluster_read_hint(
        cl, grpc, wait_ms,
        kind == RL_DOOR_HINT ? RL_READ_HINT | RL_READ_RELAY : RL_READ_RELAY,
        index, L, e, elen);
    if (owned)
        rl_rpc_client_free(cl);
    return rc == 0 ? 0 : -1;
}

/* The port's begin in a client process: wait for what the leader already
** committed, as a follower's writer does. A host that leads posts its L
** on its board (raftd/node/board.c) before any of its writers hears of
** it: the client reads it there, as the host's own writer would from its
** node, with no call. Otherwise it asks its host. */
int rl_host_client_begin(const char *db_path, uint64_t applied)
{
    long pid = 0;
    char grpc[512] = "", e[RL_DOOR_TEXT_MAX + 64], board[PATH_MAX];
    struct rl_node_board b;
    uint64_t ci = 0, L = 0;
    int kept;
    if (!rl_host_running(db_path, &pid, grpc, sizeof grpc))
        return SQLITE_OK; /* no host: the commit says why */
    if (rl_host_path(board, sizeof board, db_path, "-raft/board") == 0 &&
        rl_node_board_read(board, &b) == 0 && b.state == RL_STATE_LEADER) {
        rl_host_writer.target = 0;
        return applied < b.L ? SQLITE_BUSY : SQLITE_OK;
    }
    kept = rl_host_behind_kept(applied);
    if (kept >= 0)
        return kept ? SQLITE_BUSY : SQLITE_OK;
    /* A host that cannot be asked is not held against the writer: its
    ** commit decides. */
    if (ask_host(db_path, pid, grpc, RL_DOOR_HINT, 1000, &ci, &L, e,
                 sizeof e) != 0)
        L = 0;
    return rl_host_behind_answer(L, applied) ? SQLITE_BUSY : SQLITE_OK;
}

/* The port's read point in a client process: through its host; the VFS
** then waits for the file to reach it. */
int rl_host_client_read_point(const char *db_path, uint64_t *wait_index,
                              char *err, size_t errlen)
{
    uint64_t index = 0, L = 0;
    char e[RL_DOOR_TEXT_MAX + 64] = "";
    long pid = 0;
    char grpc[512] = "";
    int rc;
    /* A kept door connection is to the host of now: no need to look at
    ** the host lock first (four system calls a read). */
    rc = ask_host(db_path, -1, "", RL_DOOR_READ, READ_POINT_MS, &index, &L, e,
                  sizeof e);
    if (rc == 0) {
        *wait_index = index;
        return SQLITE_OK;
    }
    if (rc < 0) {
        snprintf(err, errlen, "no read point from its host: %s", e);
        return SQLITE_BUSY;
    }
    if (!rl_host_running(db_path, &pid, grpc, sizeof grpc)) {
        snprintf(err, errlen, "no process hosts its node now");
        return SQLITE_BUSY;
    }
    if (ask_host(db_path, pid, grpc, RL_DOOR_READ, READ_POINT_MS, &index, &L, e,
                 sizeof e) != 0) {
        snprintf(err, errlen, "no read point from its host (process %ld): %s",
                 pid, e);
        return SQLITE_BUSY;
    }
    *wait_index = index;
    return SQLITE_OK;
}
