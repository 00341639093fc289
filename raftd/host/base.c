/*
** raftd/host/base.c -- what every file of raftd/host/ uses about a host:
** its log, its paths, whether a host holds a database's host lock, the
** host a port slot names, who leads (in words, for messages), the
** accessors of host.h, and the state the
** applier publishes under h->mu (applied, stopping, the node's arrival).
**
** The room's base: every other file of the room may call it, and it calls
** none of them. What it must never do: open, start or stop anything, or
** hold h->mu across anything but a few field reads and writes.
*/
#include "host_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

SQLITE_EXTENSION_INIT3

int rl_host_path(char *out, size_t n, const char *a, const char *b)
{
    return snprintf(out, n, "%s%s", a, b) < (int)n ? 0 : -1;
}

void rl_host_log(const rl_host *h, int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    char msg[1024];
    va_list ap;
    if (level > (h ? h->log_level : 1))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "raftlite[%s] %s: %s\n", h ? h->id.node_id : "-",
            names[level < 0   ? 0
                  : level > 3 ? 3
                              : level],
            msg);
}

/* Whether a process holds db_path's host lock (its pid and gRPC address
** from the lock file). */
int rl_host_running(const char *db_path, long *pid, char *grpc, size_t grpc_len)
{
    char path[PATH_MAX], buf[600];
    int fd, held = 0;
    if (rl_host_path(path, sizeof path, db_path, "-raft/host") != 0)
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK)
        held = 1;
    if (held && (pid || grpc)) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        long p = 0;
        char g[512] = "";
        buf[n > 0 ? n : 0] = 0;
        if (sscanf(buf, "%ld %511s", &p, g) < 1)
            p = 0;
        if (pid)
            *pid = p;
        if (grpc)
            snprintf(grpc, grpc_len, "%s", g);
    }
    close(fd);
    return held;
}

rl_host *rl_host_port_host(void *slot)
{
    return __atomic_load_n(&((struct rl_host_port *)slot)->h, __ATOMIC_ACQUIRE);
}

struct rl_node *rl_host_node(rl_host *h)
{
    return h->node;
}
const char *rl_host_db_path(const rl_host *h)
{
    return h->db_path;
}
rl_rpc_client *rl_host_client(rl_host *h)
{
    return h->cl;
}
void rl_host_self(const rl_host *h, struct rl_meta *out)
{
    rl_meta_set(out, h->raft_id, h->id.node_id, h->id.raft_addr, h->grpc_adv);
}
uint64_t rl_host_applied(rl_host *h)
{
    uint64_t a;
    pthread_mutex_lock(&h->mu);
    a = h->applied;
    pthread_mutex_unlock(&h->mu);
    return a;
}

/* The leader's metadata when this node follows one whose gRPC address it
** knows and it has a gRPC client to call it with: 0; else -1 with why. */
int rl_host_leader_meta(rl_host *h, const struct rl_node_status *st,
                        struct rl_meta *m, char *err, size_t errlen)
{
    char who[600];
    if (st->leader_id != 0 && st->leader_id != st->raft_id &&
        rl_node_meta(h->node, st->leader_id, NULL, m) == RL_NODE_OK &&
        m->grpc_addr[0] && h->cl)
        return 0;
    rl_host_leader_text(h, who, sizeof who);
    snprintf(err, errlen, "node %s is a %s and %s", h->id.node_id,
             st->state == RL_STATE_FOLLOWER ? "follower" : "candidate", who);
    return -1;
}

/* Read rounds are the ReadIndex calls this host asked of the leader plus
** the read barriers its node ran while leading (for its own readers and
** the followers' ReadIndex calls). */
void rl_host_counts(rl_host *h, struct rl_host_counts *out)
{
    struct rl_node_status st;
    memset(&st, 0, sizeof st);
    if (h->node)
        rl_node_status(h->node, &st);
    out->read_points = __atomic_load_n(&h->read_points, __ATOMIC_RELAXED);
    out->read_rounds =
        __atomic_load_n(&h->read_rounds, __ATOMIC_RELAXED) + st.read_barriers;
    out->local_calls = __atomic_load_n(&h->door_calls, __ATOMIC_RELAXED);
    out->forward_sessions = 0;
    if (h->cl) { /* its only kept streams are forward sessions (peers.c) */
        uint64_t reused;
        rl_rpc_kept_counts(h->cl, &out->forward_sessions, &reused);
    }
}

void rl_host_advance(rl_host *h, uint64_t index, int db_changed)
{
    pthread_mutex_lock(&h->mu);
    if (db_changed && index > h->db_index)
        h->db_index = index;
    if (index > h->applied)
        h->applied = index;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

int rl_host_stopping(rl_host *h)
{
    int s;
    pthread_mutex_lock(&h->mu);
    s = h->stopping;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* The applier thread may need the node (a restore at start finding the file
** behind) before rl_node_start has returned it to us: 1 once h->node is
** set, 0 if the host stops first. */
int rl_host_wait_node(rl_host *h)
{
    int ready;
    pthread_mutex_lock(&h->mu);
    while (!h->node_ready && !h->stopping)
        pthread_cond_wait(&h->cv, &h->mu);
    ready = h->node_ready;
    pthread_mutex_unlock(&h->mu);
    return ready;
}

/* A read on the applier connection: opens the WAL, runs recovery. */
int rl_host_applier_read(rl_host *h)
{
    int rc = sqlite3_exec(h->adb, "SELECT count(*) FROM sqlite_schema", NULL,
                          NULL, NULL);
    if (rc != SQLITE_OK)
        rl_host_log(h, 1, "read on %s failed: %s", h->db_path,
                    sqlite3_errmsg(h->adb));
    return rc;
}

/* Who leads, in words, for messages ("the leader is n1 (gRPC ...)"). */
void rl_host_leader_text(rl_host *h, char *out, size_t n)
{
    struct rl_node_status st;
    struct rl_meta m;
    rl_node_status(h->node, &st);
    if (st.leader_id == 0)
        snprintf(out, n, "no leader is known right now (election?)");
    else if (rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK)
        snprintf(out, n, "the leader is %s (gRPC %s)", m.node_id,
                 m.grpc_addr[0] ? m.grpc_addr : "?");
    else
        snprintf(out, n, "the leader is raft id %llu at %s",
                 (unsigned long long)st.leader_id, st.leader_addr);
}
