/*
** raftd/host.c -- a replicated database's Raft node hosted in this process
** (see host.h).
**
** Write path: a local writer commits (VFS capture) -> host_commit proposes
** the transaction as a TXN entry with the writer's base -> the FSM decides
** (effective iff base == L) -> only then may the commit frame reach the
** file, and the VFS records the index. Apply path: the node's applier
** thread hands every committed entry to host_apply, which writes the
** entries of other origins through rl_vfs_apply on the host's own
** connection and skips those a local writer wrote itself.
**
** Invariants relied on:
**   - at most one local writer per database holds the write lock, so at
**     most one proposal of this process is in flight per database;
**   - an entry this process proposed is applied by the applier unless its
**     writer says (port end(), ok = 1) that its commit frame reached the
**     file: an entry is never written twice, never skipped;
**   - nothing here runs on the Raft loop thread.
** This file must never write to the database except through rl_vfs_apply
** and rl_vfs_set_applied.
*/
#include "host.h"
#include "fsio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "auth.h"
#include "cluster.h"
#include "fault.h"
#include "image_fetch.h"
#include "node.h"
#include "transport.h"
#include "walfmt.h"
#include "raftlite.pb-c.h"
#include "service.h"
#include "txn.h"
#include "vfs.h"

#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

/* How long a local commit waits for its entry to be decided. */
#define COMMIT_TIMEOUT_MS 15000
/* How long bootstrap waits for the one-node cluster to lead. */
#define LEAD_TIMEOUT_MS 10000
/* Apply retries: lock waits per attempt, pause between failed attempts. */
#define APPLY_LOCK_MS  5000
#define APPLY_RETRY_MS 200
/* raft_uv segment size of hosted nodes. */
#define HOST_SEGMENT_SIZE (1u << 20)

enum { LT_PROPOSING = 0, LT_WRITTEN, LT_NOT_WRITTEN };

/* An entry this process proposed, until the applier has seen it. */
struct local_txn {
    uint64_t origin_txn;
    uint64_t index; /* once known */
    int state;      /* LT_* */
    struct local_txn *next;
};

struct rl_host {
    char *db_path; /* as SQLite names the file (absolute) */
    char *dir;     /* "<db>-raft" */
    rl_identity id;
    struct rl_auth *auth; /* the loaded auth file (NULL: none) */
    uint64_t raft_id;
    struct rl_transport_tls raft_tls; /* Raft mTLS (node config points here) */
    int host_fd; /* "<db>-raft/host", flock'ed exclusively */
    int log_level;
    size_t max_msg;
    int workers, grace_ms;
    int64_t max_call_ms, max_stream_ms, stream_idle_ms; /* sidecar limits */
    int max_client_calls;
    /* The gRPC address peers dial: the identity's, with the PoC's
    ** ":PORT" (listen on every interface) read as 127.0.0.1:PORT. */
    char grpc_adv[RL_META_STR_MAX + 1];
    struct rl_node *node;
    sqlite3 *adb;     /* the applier's connection, open for the host's life */
    sqlite3_file *af; /* its main file */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t applied;  /* highest index the database reflects */
    uint64_t db_index; /* last database-changing index in the file */
    struct local_txn *local;
    uint64_t next_txn;
    uint32_t ckpt_frames; /* applier thread only */
    /* Applier thread only: CLOCK_MONOTONIC seconds since an image has
    ** been needed with no peer address known, 0 when not. */
    time_t no_peer_since;
    int rebuild; /* the file is not what its record says: see rebuild_begin */
    int node_ready; /* h->node is set (rl_node_start returned); under mu */
    int stopping;
    /* The read gate (see gate_main); gate_* fields: the gate thread only,
    ** after rl_host_open closed it. */
    pthread_t gate_thread;
    int gate_started;
    int gate_closed;
    int gate_caught_up; /* applied what the log held at start, once */
    time_t gate_since;  /* CLOCK_MONOTONIC seconds: closed since */
    char gate_why[512];
    rl_rpc_client *cl;
    rl_service *svc;
    rl_rpc_server *srv;
    rl_host *next; /* registry */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_host *hosts;

/* ------------------------------------------------------------- logging */

static void hlog(const rl_host *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hlog(const rl_host *h, int level, const char *fmt, ...)
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

static void node_log(void *ctx, int level, const char *msg)
{
    hlog(ctx, level, "%s", msg);
}

/* ------------------------------------------------------------ identity */

static int path_join(char *out, size_t n, const char *a, const char *b)
{
    return snprintf(out, n, "%s%s", a, b) < (int)n ? 0 : -1;
}

/* identity file: three lines "node_id=...", "raft_addr=...",
** "grpc_addr=..." */
int rl_identity_read(const char *db_path, rl_identity *id, char *err,
                     size_t errlen)
{
    char path[PATH_MAX];
    FILE *f;
    memset(id, 0, sizeof *id);
    if (path_join(path, sizeof path, db_path, "-raft/identity") != 0) {
        snprintf(err, errlen, "path too long: %s", db_path);
        return -1;
    }
    f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    {
        /* One byte more than the limit tells a file that is too large. */
        char *buf = malloc(RL_IDENTITY_MAX + 1);
        size_t n = buf ? fread(buf, 1, RL_IDENTITY_MAX + 1, f) : 0;
        char why[128];
        int bad = !buf || ferror(f) || n > RL_IDENTITY_MAX;
        fclose(f);
        if (bad) {
            snprintf(err, errlen, "cannot read %s: %s", path,
                     !buf ? "out of memory"
                     : n > RL_IDENTITY_MAX
                         ? "larger than an identity file can be"
                         : "read error");
            free(buf);
            return -1;
        }
        if (rl_identity_parse(buf, n, id, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s is damaged: %s", path, why);
            free(buf);
            return -1;
        }
        free(buf);
    }
    return 0;
}

static int identity_write(const char *db_path, const rl_identity *id, char *err,
                          size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *f;
    if (path_join(path, sizeof path, db_path, "-raft/identity") != 0 ||
        path_join(tmp, sizeof tmp, db_path, "-raft/identity.tmp") != 0) {
        snprintf(err, errlen, "path too long: %s", db_path);
        return -1;
    }
    {
        /* Private: it names the node's TLS files. */
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f && fd >= 0)
            close(fd); /* our own file: no SQLite lock lives on it */
    }
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    fprintf(f,
            "node_id=%s\nraft_addr=%s\ngrpc_addr=%s\ntls_cert=%s\n"
            "tls_key=%s\ntls_ca=%s\ntls_client_auth=%d\n"
            "auth_file=%s\ninsecure=%d\n",
            id->node_id, id->raft_addr, id->grpc_addr, id->tls_cert,
            id->tls_key, id->tls_ca, id->tls_client_auth, id->auth_file,
            id->insecure);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    fclose(f);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- host lock */

int rl_host_running(const char *db_path, long *pid, char *grpc, size_t grpc_len)
{
    char path[PATH_MAX], buf[600];
    int fd, held = 0;
    if (path_join(path, sizeof path, db_path, "-raft/host") != 0)
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

static int host_lock(rl_host *h, char *err, size_t errlen)
{
    char path[PATH_MAX], buf[600];
    int n;
    if (path_join(path, sizeof path, h->db_path, "-raft/host") != 0) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    h->host_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (h->host_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(h->host_fd, LOCK_EX | LOCK_NB) != 0) {
        long pid = 0;
        char grpc[512] = "";
        close(h->host_fd);
        h->host_fd = -1;
        rl_host_running(h->db_path, &pid, grpc, sizeof grpc);
        snprintf(err, errlen,
                 "%s is hosted by process %ld (gRPC %s); a database has one "
                 "node per machine: use that process, or stop it first",
                 h->db_path, pid, grpc[0] ? grpc : "?");
        return -1;
    }
    n = snprintf(buf, sizeof buf, "%ld %s\n", (long)getpid(),
                 h->grpc_adv[0] ? h->grpc_adv : "-");
    if (ftruncate(h->host_fd, 0) != 0 || pwrite(h->host_fd, buf, n, 0) != n)
        hlog(h, 1, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------ registry */

rl_host *rl_host_find(const char *db_path)
{
    rl_host *h;
    if (!db_path)
        return NULL;
    pthread_mutex_lock(&reg_mu);
    for (h = hosts; h; h = h->next)
        if (strcmp(h->db_path, db_path) == 0)
            break;
    pthread_mutex_unlock(&reg_mu);
    return h;
}

static void reg_remove(rl_host *h)
{
    pthread_mutex_lock(&reg_mu);
    for (rl_host **pp = &hosts; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
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

/* ---------------------------------------------------------- local txns */

static struct local_txn *local_find(rl_host *h, uint64_t origin_txn)
{
    for (struct local_txn *t = h->local; t; t = t->next)
        if (t->origin_txn == origin_txn)
            return t;
    return NULL;
}

static void local_drop(rl_host *h, struct local_txn *lt)
{
    for (struct local_txn **pp = &h->local; *pp; pp = &(*pp)->next)
        if (*pp == lt) {
            *pp = lt->next;
            free(lt);
            return;
        }
}

static void advance(rl_host *h, uint64_t index, int db_changed)
{
    pthread_mutex_lock(&h->mu);
    if (db_changed && index > h->db_index)
        h->db_index = index;
    if (index > h->applied)
        h->applied = index;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* --------------------------------------------------------------- port */

static void leader_text(rl_host *h, char *out, size_t n)
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

/*
** What the writer's thread learnt about its current write transaction, for
** the sidecar's write_done hook (svc_write_done): the applied index its
** write lock saw and the commit's verdict with its reason. SQLite itself
** only reports "disk I/O error" for a refused commit.
*/
static _Thread_local struct {
    int began;     /* port_begin ran for the current write lock */
    uint64_t base; /* the applied index it saw */
    int committed; /* port_commit ran */
    int outcome;   /* RL_OUTCOME_* of that commit */
    char why[768]; /* its reason when refused */
    /* The leader's L this thread's writer waits for (see leader_target):
    ** kept across the busy handler's retries of one write lock, so that a
    ** leader that keeps committing is no moving target. */
    uint64_t target;
    int64_t target_at; /* rl_rpc_now_ms() when asked */
} tl_w;

/* How long a remembered target stays the one to wait for. */
#define TARGET_KEEP_MS 2000

/*
** Whether a writer on a node that is not the leader (a follower, or a
** client process through its host at target_grpc) must wait before its
** write lock: its base (applied) is behind the L the leader had when the
** writer first asked. The first ask of a write lock costs one round trip
** (ReadIndex hint_only, no quorum); the busy handler's retries compare
** with the remembered L only. A leader that cannot be asked is not held
** against the writer: its commit decides.
*/
static int behind_leader(rl_rpc_client *cl, const char *target_grpc,
                         uint64_t local_L, uint64_t applied)
{
    int64_t now = rl_rpc_now_ms();
    uint64_t ci = 0, L = 0;
    char e[256];
    if (tl_w.target && now - tl_w.target_at < TARGET_KEEP_MS) {
        if (applied < tl_w.target)
            return 1;
        tl_w.target = 0;
        return 0;
    }
    tl_w.target = 0;
    if (!cl || !target_grpc ||
        rl_cluster_read_hint(cl, target_grpc, 1000, 1, &ci, &L, e, sizeof e) !=
            0)
        L = 0;
    if (L < local_L)
        L = local_L; /* what this node's own log already decided */
    if (applied >= L)
        return 0;
    tl_w.target = L;
    tl_w.target_at = now;
    return 1;
}

static rl_rpc_client *host_client_get(const rl_identity *id, int *owned,
                                      char *err, size_t errlen);

static int port_begin(void *ctx, const char *db_path, uint64_t applied)
{
    rl_host *h = rl_host_find(db_path);
    struct rl_node_status st;
    (void)ctx;
    tl_w.began = 1;
    tl_w.base = applied;
    tl_w.committed = 0;
    if (!h) {
        /* A client process: wait for what the leader already committed,
        ** as a follower's writer does, asking through its host. */
        long pid = 0;
        char grpc[512] = "", e[256];
        rl_identity id;
        rl_rpc_client *cl;
        int owned = 0, behind = 0;
        if (rl_host_running(db_path, &pid, grpc, sizeof grpc) && grpc[0] &&
            rl_identity_read(db_path, &id, e, sizeof e) == 0 &&
            (cl = host_client_get(&id, &owned, e, sizeof e)) != NULL) {
            behind = behind_leader(cl, grpc, 0, applied);
            if (owned)
                rl_rpc_client_free(cl);
        }
        return behind ? SQLITE_BUSY : SQLITE_OK;
    }
    if (!h->node)
        return SQLITE_OK;
    /* A writer whose base is behind what the log already decided is
    ** doomed (its entry could never take effect): let the applier catch
    ** up first (the busy handler retries). */
    rl_node_status(h->node, &st);
    if (st.state == RL_STATE_LEADER || st.leader_id == 0 ||
        st.leader_id == st.raft_id)
        return applied < st.L ? SQLITE_BUSY : SQLITE_OK;
    {
        /* A follower learns a commit only with the leader's next message:
        ** a transaction begun now on a base the leader already passed
        ** would conflict with a write that finished before it began.
        ** Wait for the leader's L (behind_leader). */
        struct rl_meta m;
        int known =
            rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK &&
            m.grpc_addr[0];
        return behind_leader(h->cl, known ? m.grpc_addr : NULL, st.L, applied)
                   ? SQLITE_BUSY
                   : SQLITE_OK;
    }
}

/*
** Whether the leader's Raft log has room for an entry of n bytes: raft_uv
** 0.15 writes its log no more after one failed segment write (ENOSPC
** included) until the node reopens it (node.c, "Log reload"), and the
** leader loses its leadership meanwhile, so it refuses a write that could
** make it fail: the writer gets a clean SQLITE_FULL instead.
** Room means the entry plus two open segments (raft_uv prepares the next
** segment ahead with fallocate). A filesystem that cannot be asked
** (statvfs fails) is not held against the write.
*/
static int log_has_room(rl_host *h, size_t n, char *err, size_t errlen)
{
    struct statvfs sv;
    uint64_t free_b, need = (uint64_t)n + 2u * HOST_SEGMENT_SIZE;
    if (statvfs(h->dir, &sv) != 0)
        return 1;
    free_b = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (free_b >= need)
        return 1;
    snprintf(err, errlen,
             "the disk is full: %s has %llu KiB free, below the %llu KiB "
             "the Raft log needs for this transaction; nothing was written "
             "(free space, then retry)",
             h->dir, (unsigned long long)(free_b / 1024),
             (unsigned long long)((need + 1023) / 1024));
    return 0;
}

/*
** What a proposal's result means for the writer that made it: an SQLite
** code (SQLITE_OK: it took effect) with err, and *outcome (RL_OUTCOME_*).
** Shared by the leader's own writers and the transactions followers
** forward (svc_propose_txn), so both say the same thing.
*/
static int proposal_result(rl_host *h, int rc, const struct rl_result *res,
                           uint64_t base, int *outcome, char *err,
                           size_t errlen)
{
    char who[600];
    if (rc == RL_NODE_OK && res->effective) {
        *outcome = RL_OUTCOME_APPLIED;
        return SQLITE_OK;
    }
    *outcome = RL_OUTCOME_NOT_APPLIED;
    switch (rc) {
    case RL_NODE_OK:
        *outcome = RL_OUTCOME_CONFLICT;
        snprintf(err, errlen,
                 "conflict: entry %llu did not take effect because another "
                 "transaction committed first (this one read index %llu); "
                 "nothing was written: retry the transaction",
                 (unsigned long long)res->index, (unsigned long long)base);
        return SQLITE_BUSY_SNAPSHOT;
    case RL_NODE_NOTLEADER:
        *outcome = RL_OUTCOME_NOT_LEADER;
        leader_text(h, who, sizeof who);
        snprintf(err, errlen,
                 "not the leader any more (%s); nothing was written: retry "
                 "on the leader",
                 who);
        return SQLITE_READONLY;
    case RL_NODE_UNKNOWN:
        *outcome = RL_OUTCOME_UNKNOWN;
        snprintf(err, errlen,
                 "outcome unknown: %s after the transaction was appended to "
                 "the Raft log; it may still commit (every node will then "
                 "apply it): check before retrying",
                 res->msg[0] ? res->msg : "leadership was lost");
        return SQLITE_IOERR; /* outcome unknown: never a retryable code */
    case RL_NODE_TIMEOUT:
        snprintf(err, errlen,
                 "the Raft node did not take the transaction within %d ms; "
                 "nothing was written",
                 COMMIT_TIMEOUT_MS);
        return SQLITE_BUSY; /* nothing written: a retry can succeed */
    case RL_NODE_SHUTDOWN:
        *outcome = RL_OUTCOME_UNKNOWN;
        snprintf(err, errlen,
                 "the node is stopping: outcome unknown (it commits only if "
                 "it reached a quorum)");
        return SQLITE_IOERR;
    default:
        snprintf(err, errlen, "raft refused the transaction: %s",
                 res->msg[0] ? res->msg : rl_node_strerror(rc));
        return SQLITE_IOERR;
    }
}

/* Registers a transaction of this process's writer as proposing: the
** applier leaves its entry to that writer (port_end settles it). */
static struct local_txn *local_add(rl_host *h)
{
    struct local_txn *lt = calloc(1, sizeof *lt);
    if (!lt)
        return NULL;
    pthread_mutex_lock(&h->mu);
    lt->origin_txn = ++h->next_txn;
    lt->state = LT_PROPOSING;
    lt->next = h->local;
    h->local = lt;
    pthread_mutex_unlock(&h->mu);
    return lt;
}

/* The writer's proposal ended: index if it took effect (the writer writes
** its frames; port_end settles it), else not written by this writer. If
** the entry surely is not in the log (definite), forget it now; if it may
** be, it reaches the applier, which applies it if it took effect (outcome
** unknown) or skips it. */
static void local_settle(rl_host *h, struct local_txn *lt, uint64_t index,
                         int definite)
{
    pthread_mutex_lock(&h->mu);
    if (index) {
        lt->index = index;
    } else {
        lt->state = LT_NOT_WRITTEN;
        if (definite)
            local_drop(h, lt);
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/*
** A follower's writer: its transaction goes to the leader's sidecar
** (ForwardTxn), which proposes it with this node, process and transaction
** as its origin, and answers once it took effect. The writer then writes
** its frames at once, without waiting for this node's FSM, which learns
** the commit only with the leader's next message (up to a heartbeat, 100
** ms, later). That is safe: the entry is committed on a quorum, so every
** future leader has it and this node will apply it with the same verdict
** (effective); no entry between the writer's base and it took effect (its
** verdict says so), so the applier has nothing to write in between; and a
** file ahead of its node's FSM is what every restart looks like already
** (host_apply skips entries the file has). The applier, reaching the
** entry, finds it written (or waits for the writer, as on the leader).
*/
/*
** Sends f to the sidecar at target (the leader's, or this node's host's
** for a client process) and maps the answer to the writer's SQLite code:
** SQLITE_OK when it took effect as *index; *outcome is RL_OUTCOME_*.
** who names the receiver in messages.
*/
static int forward_send(rl_rpc_client *cl, const char *who, const char *target,
                        const rl_forward_txn *f, uint64_t *index, int *outcome,
                        char *err, size_t errlen)
{
    int sent = 0;
    char e[1024];
    *index = 0;
    if (rl_cluster_forward_txn(cl, target, f, COMMIT_TIMEOUT_MS, outcome, index,
                               &sent, e, sizeof e) != 0) {
        if (*outcome == RL_OUTCOME_NOT_APPLIED) {
            snprintf(err, errlen,
                     "%s (gRPC %s) did not take the transaction: %s; nothing "
                     "was written: retry",
                     who, target, e);
            return SQLITE_BUSY;
        }
        snprintf(err, errlen,
                 "outcome unknown: the transaction was sent to %s (gRPC %s) "
                 "but no answer came back (%s); it may still commit (every "
                 "node will then apply it): check before retrying",
                 who, target, e);
        return SQLITE_IOERR;
    }
    if (*outcome == RL_OUTCOME_APPLIED)
        return SQLITE_OK;
    snprintf(err, errlen, "%s", e);
    switch (*outcome) {
    case RL_OUTCOME_CONFLICT:
        return SQLITE_BUSY_SNAPSHOT;
    case RL_OUTCOME_UNKNOWN:
        return SQLITE_IOERR;
    default: /* not leader any more, full, timeout: nothing written */
        return SQLITE_BUSY;
    }
}

static int commit_forward(rl_host *h, const struct rl_node_status *st,
                          const uint8_t *buf, size_t n, rl_commit_info *ci,
                          char *err, size_t errlen)
{
    struct rl_meta leader;
    struct local_txn *lt;
    rl_forward_txn f;
    uint64_t index = 0;
    int outcome, rc;
    char who[300];
    if (rl_node_meta(h->node, st->leader_id, NULL, &leader) != RL_NODE_OK ||
        !leader.grpc_addr[0]) {
        snprintf(err, errlen,
                 "not the leader, and the leader (raft id %llu at %s) has no "
                 "gRPC address known here yet; nothing was written: retry",
                 (unsigned long long)st->leader_id, st->leader_addr);
        tl_w.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_BUSY;
    }
    if (!h->cl) {
        snprintf(err, errlen,
                 "not the leader, and this node has no gRPC client to "
                 "forward the transaction with; nothing was written: write "
                 "on the leader");
        tl_w.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_READONLY;
    }
    lt = local_add(h);
    if (!lt) {
        snprintf(err, errlen, "out of memory");
        return SQLITE_IOERR_NOMEM;
    }
    memset(&f, 0, sizeof f);
    f.payload = buf;
    f.len = n;
    f.base = ci->base;
    f.origin_node = h->raft_id;
    f.origin_txn = lt->origin_txn;
    f.origin_pid = (uint32_t)getpid();
    snprintf(who, sizeof who, "the leader %s", leader.node_id);
    rc = forward_send(h->cl, who, leader.grpc_addr, &f, &index, &outcome, err,
                      errlen);
    tl_w.outcome = outcome;
    if (rc == SQLITE_OK) {
        local_settle(h, lt, index, 0);
        ci->index = index;
    } else {
        local_settle(h, lt, 0, outcome != RL_OUTCOME_UNKNOWN);
    }
    return rc;
}

/*
** A client process (the node is hosted by another process on this
** machine): its transaction goes to the host's sidecar, which commits it
** (or relays it to the leader) with the host's node and this process as
** its origin. The writer then writes its frames itself; the host's
** applier, which needs the write lock this writer holds, finds them there
** ("already applied"), or writes them if this process died first.
*/
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

static rl_rpc_client *host_client_get(const rl_identity *id, int *owned,
                                      char *err, size_t errlen)
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

static int commit_via_host(const char *db_path, const char *grpc,
                           const uint8_t *buf, size_t n, rl_commit_info *ci,
                           char *err, size_t errlen)
{
    static uint64_t next_txn;
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
    cl = host_client_get(&id, &owned, e, sizeof e);
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
    rc = forward_send(cl, who, grpc, &f, &index, &outcome, err, errlen);
    if (owned)
        rl_rpc_client_free(cl);
    tl_w.outcome = outcome;
    if (rc == SQLITE_OK)
        ci->index = index;
    return rc;
}

static int port_commit_run(void *ctx, const char *db_path, const rl_txn *txn,
                           rl_commit_info *ci, char *err, size_t errlen)
{
    rl_host *h = rl_host_find(db_path);
    struct rl_node_status st;
    struct rl_proposal p;
    struct rl_result res;
    struct local_txn *lt;
    uint8_t *buf;
    size_t n;
    int rc, outcome;
    char who[600];
    rl_identity id;
    (void)ctx;

    if (!h) {
        long pid = 0;
        char grpc[512] = "";
        if (rl_host_running(db_path, &pid, grpc, sizeof grpc) && grpc[0]) {
            n = rl_txn_encoded_size(txn);
            buf = n ? malloc(n) : NULL;
            if (!buf || rl_txn_encode(txn, buf, n) != 0) {
                free(buf);
                snprintf(err, errlen, "cannot encode a %zu-byte transaction",
                         n);
                return SQLITE_IOERR_NOMEM;
            }
            rc = commit_via_host(db_path, grpc, buf, n, ci, err, errlen);
            free(buf);
            return rc;
        }
    }
    if (!h || !h->node) {
        long pid = 0;
        char grpc[512] = "";
        if (rl_host_running(db_path, &pid, grpc, sizeof grpc))
            snprintf(err, errlen,
                     "%s is hosted by process %ld (gRPC %s); write through "
                     "that node (this process is a client: it reads locally)",
                     db_path, pid, grpc[0] ? grpc : "?");
        else if (rl_identity_read(db_path, &id, who, sizeof who) == 1)
            snprintf(err, errlen,
                     "%s is replicated but no raft node serves it: it has no "
                     "node identity; make it a node with raft_bootstrap(...) "
                     "or raft_join(...)",
                     db_path);
        else
            snprintf(err, errlen,
                     "%s is replicated but no raft node serves it in this "
                     "process (its restart failed: see stderr); fix the "
                     "cause and reopen the database",
                     db_path);
        return SQLITE_READONLY; /* this process may not write it */
    }
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER &&
        (st.leader_id == 0 || st.leader_id == st.raft_id)) {
        leader_text(h, who, sizeof who);
        snprintf(err, errlen,
                 "not the leader: node %s is a %s and %s; nothing was "
                 "written: retry once a leader is elected",
                 h->id.node_id,
                 st.state == RL_STATE_FOLLOWER ? "follower" : "candidate", who);
        tl_w.outcome = RL_OUTCOME_NOT_LEADER;
        return SQLITE_BUSY; /* no leader known (an election): waiting helps */
    }
    n = rl_txn_encoded_size(txn);
    if (st.state == RL_STATE_LEADER && !log_has_room(h, n, err, errlen))
        return SQLITE_FULL;
    buf = n ? malloc(n) : NULL;
    if (!buf) {
        snprintf(err, errlen, "out of memory encoding a %zu-byte transaction",
                 n);
        return SQLITE_IOERR_NOMEM;
    }
    if (rl_txn_encode(txn, buf, n) != 0) {
        free(buf);
        snprintf(err, errlen, "cannot encode the transaction");
        return SQLITE_IOERR;
    }
    if (st.state != RL_STATE_LEADER) {
        rc = commit_forward(h, &st, buf, n, ci, err, errlen);
        free(buf);
        return rc;
    }
    lt = local_add(h);
    if (!lt) {
        free(buf);
        snprintf(err, errlen, "out of memory");
        return SQLITE_IOERR_NOMEM;
    }
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_TXN;
    p.base = ci->base;
    p.origin_txn = lt->origin_txn;
    p.origin_pid = (uint32_t)getpid();
    p.payload = buf;
    p.len = n;
    rc = rl_node_propose(h->node, &p, COMMIT_TIMEOUT_MS, &res);
    free(buf);
    rc = proposal_result(h, rc, &res, ci->base, &outcome, err, errlen);
    tl_w.outcome = outcome;
    if (rc == SQLITE_OK) {
        local_settle(h, lt, res.index, 0);
        ci->index = res.index;
        return SQLITE_OK;
    }
    local_settle(h, lt, 0, outcome != RL_OUTCOME_UNKNOWN);
    return rc;
}

/*
** The sidecar's propose_txn hook (service.h): a follower's transaction,
** forwarded with ForwardTxn, proposed here with its origin. The payload
** is checked first: an entry that took effect must be applicable on
** every node, so nothing malformed may enter the log.
*/
static int svc_propose_txn(void *ctx, const struct rl_txn_asm *a,
                           int64_t remaining_ms, uint64_t *index, char *why,
                           size_t whylen)
{
    rl_host *h = ctx;
    struct rl_proposal p;
    struct rl_result res;
    struct rl_node_status st;
    rl_txn t;
    int rc, outcome;
    unsigned tmo = remaining_ms > COMMIT_TIMEOUT_MS ? COMMIT_TIMEOUT_MS
                   : remaining_ms > 0               ? (unsigned)remaining_ms
                                                    : 1;
    char e[256];
    *index = 0;
    if (!h->node) {
        snprintf(why, whylen, "this node is not running");
        return RL_OUTCOME_NOT_APPLIED;
    }
    if (rl_txn_decode(a->data, (size_t)a->received, &t, e, sizeof e) != 0) {
        snprintf(why, whylen,
                 "the forwarded transaction is malformed (%s); nothing was "
                 "written",
                 e);
        return RL_OUTCOME_NOT_APPLIED;
    }
    rl_txn_free(&t);
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER) {
        /* A client process's transaction reached its host, a follower:
        ** relay it to the leader with its origin unchanged. */
        struct rl_meta m;
        rl_forward_txn f;
        char who[300];
        if (st.leader_id == 0 || st.leader_id == st.raft_id ||
            rl_node_meta(h->node, st.leader_id, NULL, &m) != RL_NODE_OK ||
            !m.grpc_addr[0] || !h->cl) {
            leader_text(h, who, sizeof who);
            snprintf(why, whylen,
                     "node %s is not the leader and cannot relay to it (%s); "
                     "nothing was written: retry",
                     h->id.node_id, who);
            return RL_OUTCOME_NOT_LEADER;
        }
        memset(&f, 0, sizeof f);
        f.payload = a->data;
        f.len = (size_t)a->received;
        f.base = a->base;
        f.origin_node = a->origin_node;
        f.origin_txn = a->origin_txn;
        f.origin_pid = a->origin_pid;
        snprintf(who, sizeof who, "the leader %s", m.node_id);
        forward_send(h->cl, who, m.grpc_addr, &f, index, &outcome, why, whylen);
        return outcome;
    }
    if (!log_has_room(h, (size_t)a->received, why, whylen))
        return RL_OUTCOME_NOT_APPLIED;
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_TXN;
    p.base = a->base;
    p.origin_node = a->origin_node;
    p.origin_txn = a->origin_txn;
    p.origin_pid = a->origin_pid;
    p.payload = a->data;
    p.len = (size_t)a->received;
    rc = rl_node_propose(h->node, &p, tmo, &res);
    *index = rc == RL_NODE_OK ? res.index : 0;
    proposal_result(h, rc, &res, a->base, &outcome, why, whylen);
    return outcome;
}

/* The replicator's commit, recording its verdict for svc_write_done. */
static int port_commit(void *ctx, const char *db_path, const rl_txn *txn,
                       rl_commit_info *ci, char *err, size_t errlen)
{
    int rc;
    tl_w.outcome = RL_OUTCOME_NOT_APPLIED; /* unless port_commit_run says */
    rc = port_commit_run(ctx, db_path, txn, ci, err, errlen);
    tl_w.committed = 1;
    if (rc == SQLITE_OK)
        tl_w.outcome = RL_OUTCOME_APPLIED;
    snprintf(tl_w.why, sizeof tl_w.why, "%s", rc == SQLITE_OK ? "" : err);
    return rc;
}

/*
** The sidecar's write_done hook (service.h), on the writer's thread after
** its COMMIT returned rc. A transaction that went through Raft reports the
** replicator's verdict. One that changed no page never reached Raft, yet
** its answer (rows affected, values read) came from this node's file: it
** is acknowledged only after a read index proves this node still leads and
** no entry took effect after the index it read (DESIGN 8).
*/
static int confirm_unchanged(rl_host *h, int began, uint64_t base, unsigned tmo,
                             char *why, size_t whylen);

static int svc_write_done(void *ctx, int rc, int64_t remaining_ms, char *why,
                          size_t whylen)
{
    rl_host *h = ctx;
    int began = tl_w.began, committed = tl_w.committed;
    uint64_t base = tl_w.base;
    unsigned tmo;
    tl_w.began = tl_w.committed = 0;
    why[0] = 0;
    if (committed) {
        if (rc == SQLITE_OK)
            return RL_OUTCOME_APPLIED;
        if (tl_w.outcome == RL_OUTCOME_APPLIED) {
            snprintf(why, whylen,
                     "the transaction took effect in the Raft log but this "
                     "node's commit of it failed (the applier writes it)");
            return RL_OUTCOME_APPLIED;
        }
        snprintf(why, whylen, "%s", tl_w.why);
        return tl_w.outcome;
    }
    if (rc != SQLITE_OK)
        return RL_OUTCOME_NOT_APPLIED; /* SQLite's own reason applies */
    tmo = remaining_ms > COMMIT_TIMEOUT_MS ? COMMIT_TIMEOUT_MS
          : remaining_ms > 0               ? (unsigned)remaining_ms
                                           : 1;
    return confirm_unchanged(h, began, base, tmo, why, whylen);
}

/*
** A write transaction that changed nothing answered from this node's file:
** RL_OUTCOME_APPLIED only if a read index proves the node still leads and
** no entry took effect after base (the index its write lock saw; began 0:
** unknown, the index the file reflects is taken).
*/
static int confirm_unchanged(rl_host *h, int began, uint64_t base, unsigned tmo,
                             char *why, size_t whylen)
{
    struct rl_result res;
    struct rl_node_status st;
    int nrc;
    char who[600];
    if (!h->node)
        return RL_OUTCOME_APPLIED;
    if (!began) { /* no base recorded: the index the file reflects */
        pthread_mutex_lock(&h->mu);
        base = h->db_index;
        pthread_mutex_unlock(&h->mu);
    }
    rl_node_status(h->node, &st);
    if (st.state != RL_STATE_LEADER && st.leader_id != 0 &&
        st.leader_id != st.raft_id) {
        /* A follower: the leader's read point, and its L then. Nothing
        ** took effect after base as of a moment after the transaction
        ** began: its answer is as fresh as a linearizable read. */
        struct rl_meta m;
        uint64_t index = 0, L = 0;
        char e[512] = "";
        if (h->cl &&
            rl_node_meta(h->node, st.leader_id, NULL, &m) == RL_NODE_OK &&
            m.grpc_addr[0] &&
            rl_cluster_read_index(h->cl, m.grpc_addr, tmo, &index, &L, e,
                                  sizeof e) == 0) {
            if (L > base) {
                snprintf(why, whylen,
                         "conflict: index %llu took effect after the "
                         "transaction read the database at index %llu; "
                         "nothing was written: retry the transaction",
                         (unsigned long long)L, (unsigned long long)base);
                return RL_OUTCOME_CONFLICT;
            }
            return RL_OUTCOME_APPLIED;
        }
        leader_text(h, who, sizeof who);
        snprintf(why, whylen,
                 "the transaction changed nothing, and follower %s could not "
                 "get a read point from the leader (%s) to prove its answer "
                 "is fresh; nothing was written: retry (%s)",
                 h->id.node_id, e[0] ? e : "no gRPC address known", who);
        return RL_OUTCOME_NOT_LEADER;
    }
    memset(&res, 0, sizeof res);
    nrc = rl_node_read_index(h->node, tmo, &res);
    if (nrc != RL_NODE_OK) {
        leader_text(h, who, sizeof who);
        snprintf(why, whylen,
                 "not the leader: the transaction changed nothing, and node "
                 "%s could not prove it still leads (%s%s%s); nothing was "
                 "written: retry on the leader (%s)",
                 h->id.node_id, rl_node_strerror(nrc), res.msg[0] ? ": " : "",
                 res.msg, who);
        return RL_OUTCOME_NOT_LEADER;
    }
    rl_node_status(h->node, &st);
    if (st.L > base) {
        snprintf(why, whylen,
                 "conflict: index %llu took effect after the transaction "
                 "read the database at index %llu; nothing was written: "
                 "retry the transaction",
                 (unsigned long long)st.L, (unsigned long long)base);
        return RL_OUTCOME_CONFLICT;
    }
    return RL_OUTCOME_APPLIED;
}

int rl_host_confirm_unchanged(const char *db_path, char *why, size_t whylen)
{
    rl_host *h = rl_host_find(db_path);
    long pid = 0;
    char grpc[512] = "";
    int began = tl_w.began;
    uint64_t base = tl_w.base;
    why[0] = 0;
    if (h)
        return confirm_unchanged(h, began, base, COMMIT_TIMEOUT_MS, why,
                                 whylen) == RL_OUTCOME_APPLIED
                   ? 0
                   : -1;
    if (rl_host_setting_up(db_path))
        return 0;
    if (rl_host_running(db_path, &pid, grpc, sizeof grpc))
        snprintf(why, whylen,
                 "%s is hosted by process %ld (gRPC %s): this process cannot "
                 "prove that a transaction which changed nothing read the "
                 "latest state; nothing was written: write through that node",
                 db_path, pid, grpc[0] ? grpc : "?");
    else
        return 0; /* no node runs anywhere: nothing newer to be stale
                     against (a write with pages is refused by the port) */
    return -1;
}

static void port_end(void *ctx, const char *db_path, int ok)
{
    rl_host *h = rl_host_find(db_path);
    (void)ctx;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    /* The one proposal of this process whose writer holds the lock. */
    for (struct local_txn *t = h->local; t; t = t->next) {
        if (t->state == LT_PROPOSING && t->index) {
            t->state = ok ? LT_WRITTEN : LT_NOT_WRITTEN;
            if (ok && t->index > h->db_index)
                h->db_index = t->index;
            break;
        }
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/*
** rl_port.read_point (DESIGN 8): a quorum-confirmed commit index taken
** after the read began (the leader's raft barrier, shared by the reads
** waiting at that moment; a follower asks the leader's ReadIndex), then
** wait until this node's file reflects it. Each step is bounded: the
** VFS refuses the read and the busy handler retries, so a node cut off
** from a quorum answers "database is locked" with the reason, never data
** older than a write acknowledged anywhere.
*/
#define READ_POINT_MS 2000
static int port_read_point(void *ctx, const char *db_path, uint64_t *wait_index,
                           char *err, size_t errlen)
{
    rl_host *h = rl_host_find(db_path);
    struct rl_node_status st;
    struct rl_result res;
    uint64_t index = 0;
    int rc;
    char e[512] = "", who[600];
    (void)ctx;
    *wait_index = 0;
    if (!h) {
        /* A client process: the read point through its host; the VFS
        ** then waits for the file to reach it. */
        long pid = 0;
        char grpc[512] = "";
        rl_identity id;
        rl_rpc_client *cl;
        int owned = 0;
        if (!rl_host_running(db_path, &pid, grpc, sizeof grpc) || !grpc[0] ||
            rl_identity_read(db_path, &id, e, sizeof e) != 0 ||
            (cl = host_client_get(&id, &owned, e, sizeof e)) == NULL) {
            snprintf(err, errlen, "no process hosts its node now%s%s",
                     e[0] ? ": " : "", e);
            return SQLITE_BUSY;
        }
        {
            /* The leader's read point: its host says who leads. */
            struct rl_meta lm;
            rc = rl_cluster_leader(cl, grpc, READ_POINT_MS, &lm, e, sizeof e);
            if (rc == 1 && lm.grpc_addr[0])
                rc = rl_cluster_read_index(cl, lm.grpc_addr, READ_POINT_MS,
                                           &index, NULL, e, sizeof e);
            else if (rc == 0 || (rc == 1 && !lm.grpc_addr[0])) {
                snprintf(e, sizeof e, "its host knows no leader");
                rc = -1;
            }
        }
        if (owned)
            rl_rpc_client_free(cl);
        if (rc != 0) {
            snprintf(err, errlen,
                     "no read point from the leader (its host: gRPC %s): %s",
                     grpc, e);
            return SQLITE_BUSY;
        }
        *wait_index = index;
        return SQLITE_OK;
    }
    if (!h->node) {
        snprintf(err, errlen, "its node is not running in this process");
        return SQLITE_BUSY;
    }
    rl_node_status(h->node, &st);
    if (st.state == RL_STATE_LEADER) {
        memset(&res, 0, sizeof res);
        rc = rl_node_read_index(h->node, READ_POINT_MS, &res);
        if (rc != RL_NODE_OK) {
            snprintf(err, errlen,
                     "node %s could not confirm with a quorum that it still "
                     "leads (%s%s%s)",
                     h->id.node_id, rl_node_strerror(rc),
                     res.msg[0] ? ": " : "", res.msg);
            return SQLITE_BUSY;
        }
        index = res.index;
    } else {
        struct rl_meta m;
        if (st.leader_id == 0 || st.leader_id == st.raft_id ||
            rl_node_meta(h->node, st.leader_id, NULL, &m) != RL_NODE_OK ||
            !m.grpc_addr[0] || !h->cl) {
            leader_text(h, who, sizeof who);
            snprintf(err, errlen, "node %s is a %s and %s", h->id.node_id,
                     st.state == RL_STATE_FOLLOWER ? "follower" : "candidate",
                     who);
            return SQLITE_BUSY;
        }
        if (rl_cluster_read_index(h->cl, m.grpc_addr, READ_POINT_MS, &index,
                                  NULL, e, sizeof e) != 0) {
            snprintf(err, errlen,
                     "no read point from the leader %s (gRPC %s): %s",
                     m.node_id, m.grpc_addr, e);
            return SQLITE_BUSY;
        }
    }
    rc = rl_node_wait_applied(h->node, index, READ_POINT_MS);
    if (rc != RL_NODE_OK) {
        snprintf(err, errlen,
                 "node %s has not applied index %llu, the read point, within "
                 "%d ms (%s)",
                 h->id.node_id, (unsigned long long)index, READ_POINT_MS,
                 rl_node_strerror(rc));
        return SQLITE_BUSY;
    }
    return SQLITE_OK;
}

static const rl_port host_port = {NULL, port_begin, port_commit, port_end,
                                  port_read_point};

const rl_port *rl_host_port(void)
{
    return &host_port;
}

/* ------------------------------------------------------------ applier */

/* A read on the applier connection: opens the WAL, runs recovery. */
static int applier_read(rl_host *h)
{
    int rc = sqlite3_exec(h->adb, "SELECT count(*) FROM sqlite_schema", NULL,
                          NULL, NULL);
    if (rc != SQLITE_OK)
        hlog(h, 1, "read on %s failed: %s", h->db_path, sqlite3_errmsg(h->adb));
    return rc;
}

static int host_stopping(rl_host *h)
{
    int s;
    pthread_mutex_lock(&h->mu);
    s = h->stopping;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* Frames the applier appends between its checkpoints: the same as
** SQLite's auto-checkpoint, which never runs for frames it did not write. */
#define APPLIER_CKPT_FRAMES 1000

/* A passive checkpoint on the applier connection: on a follower nothing
** else moves the WAL into the database file. */
static void applier_checkpoint(rl_host *h)
{
    int log = 0, ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(h->adb, "main",
                                       SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        hlog(h, 1, "checkpoint of %s: %s", h->db_path, sqlite3_errmsg(h->adb));
}

/* Writes one TXN entry into the file; retries until done or stopping. */
static void apply_txn(rl_host *h, const struct rl_applied *e)
{
    rl_txn t;
    char err[512];
    uint32_t frames;
    unsigned attempts = 0, full = 0;
    if (rl_txn_decode(e->payload, e->len, &t, err, sizeof err) != 0) {
        hlog(h, 0,
             "entry %llu: transaction record is malformed (%s): not applied; "
             "this replica now differs from its peers",
             (unsigned long long)e->index, err);
        return;
    }
    for (;;) {
        int rc = rl_vfs_apply(h->af, &t, e->index, APPLY_LOCK_MS, &frames, err,
                              sizeof err);
        if (rc == SQLITE_OK) {
            if (full)
                hlog(h, 1, "disk space returned: applied entry %llu",
                     (unsigned long long)e->index);
            h->ckpt_frames += frames;
            if (h->ckpt_frames >= APPLIER_CKPT_FRAMES) {
                h->ckpt_frames = 0;
                applier_checkpoint(h);
            }
            break;
        }
        if (rc == SQLITE_MISUSE && strstr(err, "already applied"))
            break;
        if (rc == SQLITE_BUSY_RECOVERY)
            applier_read(h);
        if (host_stopping(h))
            break;
        if (rc == SQLITE_FULL) {
            /* Nothing was published: the file stays at the previous
            ** entry, which reads keep serving. Said once, then every
            ** 30 s, not at every retry. */
            if (full++ % 150 == 0)
                hlog(h, 0,
                     "applying entry %llu: %s: this node's disk is full; it "
                     "keeps serving reads of what it applied and applies "
                     "again by itself once space is freed (retrying)",
                     (unsigned long long)e->index, err);
        } else if (++attempts % 10 == 1)
            hlog(h, rc == SQLITE_BUSY ? 1 : 0,
                 "applying entry %llu: %s (retrying)",
                 (unsigned long long)e->index, err);
        rl_sleep_ms(APPLY_RETRY_MS);
    }
    rl_txn_free(&t);
}

static int fetch_image(rl_host *h, uint64_t min_index,
                       const struct rl_manifest *m);
static void rebuild_end(rl_host *h, uint64_t index);

/* The applier thread may need the node (a restore at start finding the file
** behind) before rl_node_start has returned it to us: 1 once h->node is
** set, 0 if the host stops first. */
static int wait_node(rl_host *h)
{
    int ready;
    pthread_mutex_lock(&h->mu);
    while (!h->node_ready && !h->stopping)
        pthread_cond_wait(&h->cv, &h->mu);
    ready = h->node_ready;
    pthread_mutex_unlock(&h->mu);
    return ready;
}

/*
** Rebuild, second half (applier thread): while h->rebuild is set the file's
** content is unknown, so no entry may be written on it. At the first entry
** the applier gets, fetch a peer's image at least as recent as the FSM's L
** (the last database-changing entry the FSM applied: the FSM is at or past
** this entry, so L covers every such entry up to it) and install it
** (vfs/image.c: one commit of every page, so whatever the WAL and file held
** is replaced); the entries the image covers are then skipped as usual. A
** snapshot restored at start asks for its image the usual way
** (host_restore finds db_index 0 below its L). Returns 1 when the entry is
** handled here.
*/
static int rebuild_apply(rl_host *h, const struct rl_applied *e)
{
    struct rl_node_status st;
    if (!wait_node(h))
        return 1;
    rl_node_status(h->node, &st);
    if (st.L == 0) {
        /* Nothing database-changing in the log yet. */
        advance(h, e->index, 0);
        return 1;
    }
    hlog(h, 1, "rebuilding %s: fetching an image at index >= %llu", h->db_path,
         (unsigned long long)st.L);
    while (!host_stopping(h) && fetch_image(h, st.L, NULL) != 0)
        rl_sleep_ms(1000);
    return host_stopping(h);
}

static void host_apply(void *ctx, const struct rl_applied *e)
{
    rl_host *h = ctx;
    uint64_t db_index;
    if (h->rebuild && rebuild_apply(h, e))
        return;
    pthread_mutex_lock(&h->mu);
    db_index = h->db_index;
    pthread_mutex_unlock(&h->mu);
    if (e->index <= db_index) {
        /* The file has it: restart replay, or a follower's writer that
        ** wrote its forwarded entry before this node learnt the commit. */
        if (e->kind == RL_ENTRY_TXN && e->origin_node == h->raft_id &&
            e->origin_pid == (uint32_t)getpid()) {
            struct local_txn *lt;
            pthread_mutex_lock(&h->mu);
            if ((lt = local_find(h, e->origin_txn)) &&
                lt->state != LT_PROPOSING)
                local_drop(h, lt);
            pthread_mutex_unlock(&h->mu);
        }
        advance(h, e->index, 0);
        return;
    }
    if (e->kind == RL_ENTRY_TXN && e->effective) {
        if (e->origin_node == h->raft_id &&
            e->origin_pid == (uint32_t)getpid()) {
            /* Proposed here: its writer may write it itself. */
            struct local_txn *lt;
            int state = LT_NOT_WRITTEN;
            pthread_mutex_lock(&h->mu);
            while ((lt = local_find(h, e->origin_txn)) &&
                   lt->state == LT_PROPOSING && !h->stopping)
                pthread_cond_wait(&h->cv, &h->mu);
            if (lt) {
                state = lt->state;
                local_drop(h, lt);
            }
            pthread_mutex_unlock(&h->mu);
            if (state == LT_WRITTEN) {
                advance(h, e->index, 1);
                return;
            }
        }
        apply_txn(h, e);
        advance(h, e->index, 1);
        return;
    }
    if (e->kind == RL_ENTRY_TXN && e->origin_node == h->raft_id &&
        e->origin_pid == (uint32_t)getpid()) {
        pthread_mutex_lock(&h->mu);
        struct local_txn *lt = local_find(h, e->origin_txn);
        if (lt)
            local_drop(h, lt);
        pthread_mutex_unlock(&h->mu);
    }
    if (e->kind == RL_ENTRY_GENESIS) {
        char err[512];
        if (e->origin_node == h->raft_id) {
            /* Our own file is the initial image. */
            if (rl_vfs_set_applied(h->af, e->index, APPLY_LOCK_MS, err,
                                   sizeof err) != SQLITE_OK)
                hlog(h, 0, "recording the genesis entry %llu: %s",
                     (unsigned long long)e->index, err);
            advance(h, e->index, 1);
            return;
        }
        while (!host_stopping(h) && fetch_image(h, e->index, NULL) != 0)
            rl_sleep_ms(1000);
        return;
    }
    advance(h, e->index, 0);
}

static uint64_t host_applied_index(void *ctx)
{
    return rl_host_applied(ctx);
}

static int host_snapshot_ready(void *ctx, uint64_t A, unsigned timeout_ms,
                               uint64_t *db_size)
{
    rl_host *h = ctx;
    struct timespec dl;
    int ok;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    while (h->applied < A && !h->stopping)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
            break;
    ok = h->applied >= A;
    pthread_mutex_unlock(&h->mu);
    (void)db_size;
    if (ok)
        RL_FAULT("snapshot-sync"); /* before the WAL and record are synced */
    /* The snapshot lets raft drop the entries up to A: what the file
    ** reflects must survive an OS crash first. */
    if (ok && rl_vfs_sync(h->af) != SQLITE_OK) {
        hlog(h, 1, "cannot sync %s before a snapshot", h->db_path);
        ok = 0;
    }
    return ok ? 0 : 1;
}

static int host_restore(void *ctx, const struct rl_manifest *m)
{
    rl_host *h = ctx;
    int ok;
    pthread_mutex_lock(&h->mu);
    ok = h->db_index >= m->L;
    if (ok && h->applied < m->A) {
        h->applied = m->A;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}

static int host_need_image(void *ctx, const struct rl_manifest *m)
{
    rl_host *h = ctx;
    int rc = fetch_image(h, m->L, m);
    if (rc == 0) {
        pthread_mutex_lock(&h->mu);
        if (h->applied < m->A)
            h->applied = m->A;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    return rc;
}

/* Fetches an image at index >= min_index from a peer and installs it
** (raftd/image_fetch.h), on the applier thread with the applier's
** connection. The known leader is asked first (most likely up to date),
** then every other member with a gRPC address. 0 once installed; the file
** then reflects the image's index, recorded as database-changing. */
static int fetch_image(rl_host *h, uint64_t min_index,
                       const struct rl_manifest *m)
{
    struct rl_member *mem = NULL;
    const char **peers = NULL;
    unsigned n = 0, i, k = 0, pass;
    char *tmp = NULL, err[2048];
    uint64_t idx = 0;
    int rc = 1;
    if (!wait_node(h))
        return 1;
    if (rl_node_members(h->node, &mem, &n) != RL_NODE_OK) {
        mem = NULL;
        n = 0;
    }
    peers = calloc(n + (m ? m->n_members : 0) + 1, sizeof *peers);
    tmp = sqlite3_mprintf("%s/image.tmp", h->dir);
    if (!peers || !tmp) {
        hlog(h, 0, "image fetch: out of memory");
        goto out;
    }
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < n; i++)
            if (mem[i].raft_id != h->raft_id && mem[i].has_meta &&
                mem[i].meta.grpc_addr[0] &&
                (pass == 0) == (mem[i].is_leader != 0))
                peers[k++] = mem[i].meta.grpc_addr;
    /* A node that just joined may know the cluster only from the
    ** snapshot's manifest so far: its members are peers too. */
    for (i = 0; m && i < m->n_members; i++) {
        unsigned j;
        const struct rl_meta *mm = &m->members[i];
        if (mm->raft_id == h->raft_id || !mm->grpc_addr[0])
            continue;
        for (j = 0; j < k && strcmp(peers[j], mm->grpc_addr) != 0; j++)
            ;
        if (j == k)
            peers[k++] = mm->grpc_addr;
    }
    if (k == 0) {
        /* A joiner applies the genesis entry before the raft thread has
        ** applied the metadata entries that follow it and name the peers'
        ** gRPC addresses: that is no fault for the first seconds. */
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!h->no_peer_since)
            h->no_peer_since = now.tv_sec;
        if (now.tv_sec - h->no_peer_since < 5) {
            hlog(h, 2,
                 "database needs an image at index >= %llu: no peer's "
                 "address known yet (retrying)",
                 (unsigned long long)min_index);
            goto out;
        }
    } else {
        h->no_peer_since = 0;
    }
    if (rl_image_restore(h->cl, peers, k, h->adb, tmp, min_index, &idx, err,
                         sizeof err) == RL_RPC_OK) {
        hlog(h, 2, "installed a database image at index %llu (needed >= %llu)",
             (unsigned long long)idx, (unsigned long long)min_index);
        if (h->rebuild)
            rebuild_end(h, idx);
        advance(h, idx, 1);
        rc = 0;
    } else {
        hlog(h, 1, "database needs an image at index >= %llu: %s (retrying)",
             (unsigned long long)min_index, err);
    }
out:
    sqlite3_free(tmp);
    free(peers);
    free(mem);
    return rc;
}

/* ---------------------------------------------------------- open/close */

/*
** Rebuild, first half (start path): the applied record does not describe
** the WAL beside it (rl_vfs_applied said SQLITE_CORRUPT), e.g. an OS crash
** kept a record whose commit frame the WAL lost, or lost a WAL restart the
** record saw. Neither the file nor the record can be trusted, and replay
** from the log would apply page images onto an unknown base. So the node
** starts with its database marked unknown: the record is reset to "nothing
** applied" at the WAL's current end (so images can be installed and
** writers on this node get SQLITE_BUSY until one is, since their base is
** behind L), and the applier fetches a peer's image before it writes
** anything (rebuild_apply, host_restore). The node's Raft log and
** identity are kept.
*/
static int rebuild_begin(rl_host *h, const char *why, char *err, size_t errlen)
{
    char e2[512], path[PATH_MAX];
    int fd;
    hlog(h, 0,
         "%s: %s; the local database cannot be trusted: discarding what "
         "it holds and rebuilding it from a peer's image",
         h->db_path, why);
    /* The marker first: a crash before the image is installed (and
    ** synced) must find the rebuild still to do, not a record that now
    ** matches its WAL. */
    if (path_join(path, sizeof path, h->dir, "/rebuild") != 0) {
        snprintf(err, errlen, "%s; path too long", why);
        return -1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "%s; cannot create %s: %s", why, path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd); /* our own marker file: no SQLite lock on it */
    fd = open(h->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            hlog(h, 1, "cannot sync %s: %s", h->dir, strerror(errno));
        close(fd);
    }
    if (rl_vfs_set_applied(h->af, 0, 10000, e2, sizeof e2) != SQLITE_OK) {
        snprintf(err, errlen, "%s; resetting its applied record failed: %s",
                 why, e2);
        return -1;
    }
    h->db_index = h->applied = 0;
    __atomic_store_n(&h->rebuild, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Rebuild done (applier thread): the image at index is installed; once it
** and its record are synced the marker goes. */
static void rebuild_end(rl_host *h, uint64_t index)
{
    char path[PATH_MAX];
    if (rl_vfs_sync(h->af) != SQLITE_OK) {
        hlog(h, 0,
             "%s: cannot sync the rebuilt database; the rebuild "
             "will be done again at the next start",
             h->db_path);
    } else if (path_join(path, sizeof path, h->dir, "/rebuild") == 0 &&
               unlink(path) != 0 && errno != ENOENT) {
        hlog(h, 1, "cannot remove %s: %s", path, strerror(errno));
    }
    hlog(h, 1, "%s rebuilt from a peer's image at index %llu", h->db_path,
         (unsigned long long)index);
    __atomic_store_n(&h->rebuild, 0, __ATOMIC_RELEASE);
}

/*
** The node has an identity, so its database file existed; missing or empty
** now, it was removed behind the node's back. SQLite cannot make an empty
** file a WAL database through the raft VFS (that takes a rollback journal,
** which the VFS refuses for a replicated database), so a fresh empty WAL
** database is made here through the unix VFS, with the page size of the
** WAL left beside it (else SQLite's default): the start check then finds
** the applied record naming frames the files lack, and the node rebuilds
** from a peer's image. Runs before any connection of this process has
** the file open (the opening connection is still in its xOpen), so the
** unix connection's close drops no lock of ours.
*/
static int recreate_removed_db(rl_host *h, char *err, size_t errlen)
{
    struct stat st;
    unsigned ps = 4096;
    uint8_t w[32];
    char *wal, *sql;
    sqlite3 *db = NULL;
    int fd, rc;
    if (stat(h->db_path, &st) == 0 && st.st_size > 0)
        return 0;
    wal = sqlite3_mprintf("%s-wal", h->db_path);
    fd = wal ? open(wal, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        rl_wal_hdr wh;
        if (read(fd, w, sizeof w) == (ssize_t)sizeof w &&
            rl_wal_hdr_decode(w, &wh) == 0)
            ps = wh.page_size;
        close(fd); /* no SQLite connection has it open yet */
    }
    sqlite3_free(wal);
    hlog(h, 0,
         "%s is missing or empty although node %s has an identity: it was "
         "removed; an empty database (page size %u) takes its place and is "
         "rebuilt from a peer's image",
         h->db_path, h->id.node_id, ps);
    sql = sqlite3_mprintf("PRAGMA page_size=%u; PRAGMA journal_mode=WAL;", ps);
    rc = sql ? sqlite3_open_v2(h->db_path, &db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                               "unix")
             : SQLITE_NOMEM;
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "cannot recreate the removed %s: %s", h->db_path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    sqlite3_free(sql);
    return rc == SQLITE_OK ? 0 : -1;
}

static int open_applier(rl_host *h, char *err, size_t errlen)
{
    int rc, stock_ckpt;
    struct stat st;
    char wal[PATH_MAX], shm[PATH_MAX];
    if (recreate_removed_db(h, err, errlen) != 0)
        return -1;
    /* Neither WAL nor wal-index: SQLite's last connection checkpointed
    ** everything into the database file and removed both on close, which
    ** a stock sqlite3 does (raftlite keeps them: PERSIST_WAL). That file
    ** then holds the applied index, and its empty WAL is not a lost one.
    ** (A WAL lost otherwise leaves the -shm, or an empty WAL, behind.) */
    snprintf(wal, sizeof wal, "%s-wal", h->db_path);
    snprintf(shm, sizeof shm, "%s-shm", h->db_path);
    stock_ckpt = stat(wal, &st) != 0 && stat(shm, &st) != 0;
    rc = sqlite3_open_v2(h->db_path, &h->adb,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, "raft");
    if (rc == SQLITE_OK)
        rc = sqlite3_file_control(h->adb, "main", SQLITE_FCNTL_FILE_POINTER,
                                  &h->af);
    if (rc == SQLITE_OK && !rl_vfs_is_replicated(h->af)) {
        snprintf(err, errlen, "%s is not a replicated database (no %s/)",
                 h->db_path, h->dir);
        return -1;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h->adb, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = applier_read(h);
    /* A malformed file (pages missing, garbage) still has its WAL open
    ** here: the start check below names what is wrong, else the
    ** malformation itself is the cause; either way the node rebuilds. */
    int malformed = (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) &&
                    rl_vfs_wal_file(h->af) != NULL;
    char why_malformed[300];
    snprintf(why_malformed, sizeof why_malformed,
             "%s: the database file is malformed (SQLite: %s)", h->db_path,
             sqlite3_errmsg(h->adb));
    if (malformed)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s for the applier: %s", h->db_path,
                 h->adb ? sqlite3_errmsg(h->adb) : "no memory");
        return -1;
    }
    sqlite3_busy_timeout(h->adb, 10000);
    if (stock_ckpt && !malformed) {
        char e2[512] = "";
        hlog(h, 1,
             "%s: its WAL and wal-index were removed by a checkpoint of a "
             "process without raftlite; the database file is taken as "
             "holding what the applied record says (a write by such a "
             "process cannot be told apart in this case)",
             h->db_path);
        if (rl_vfs_mark_backfilled(h->af, 10000, e2, sizeof e2) != SQLITE_OK)
            hlog(h, 1, "%s: %s", h->db_path, e2);
    }
    {
        char marker[PATH_MAX];
        if (path_join(marker, sizeof marker, h->dir, "/rebuild") == 0 &&
            access(marker, F_OK) == 0)
            return rebuild_begin(h, "a rebuild begun earlier did not finish",
                                 err, errlen);
    }
    for (int i = 0;; i++) {
        uint64_t idx;
        char e2[512];
        rc = rl_vfs_applied(h->af, 10000, &idx, e2, sizeof e2);
        if (rc == SQLITE_OK && malformed)
            return rebuild_begin(h, why_malformed, err, errlen);
        if (rc == SQLITE_OK) {
            h->db_index = h->applied = idx;
            return 0;
        }
        if (rc == SQLITE_BUSY_RECOVERY && i < 3) {
            applier_read(h);
            continue;
        }
        if (rc == SQLITE_CORRUPT)
            return rebuild_begin(h, e2, err, errlen);
        snprintf(err, errlen, "%s", e2);
        return -1;
    }
}

/*
** The read gate (vfs.h rl_vfs_gate_close). A node must never answer an
** older state than it answered before, nor a file it cannot vouch for
** (DESIGN 6). After a restart its file may be older than what it served:
** an OS crash drops the WAL's unsynced tail, and only the Raft log (which
** raft fsyncs) remembers how far the node had gone: every entry it applied
** was in its log. So reads wait from the start until the node applied
** every entry its log held when it started (start_index: such entries are
** applied once the node learns they committed, or are replaced by entries
** of a newer leader, which commit past them), and the database applier
** wrote them. The gate also stays closed during a rebuild (the file is
** unknown) and while the database waits for a peer's image (it is behind
** the cluster's snapshot, maybe far). Reads of other connections then get
** a busy code and wait in their busy handler (vfs.c gate_closed); the
** applier's own connection holds the gate and is not held by it.
*/
#define GATE_POLL_MS 20

/* Closing is said as a warning when the cause is not an ordinary start
** (a rebuild, an image), and opening too when reads waited long. */
static void gate_set(rl_host *h, int closed, int loud, const char *why)
{
    char err[512];
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (closed) {
        if (h->gate_closed && strcmp(why, h->gate_why) == 0)
            return;
        if (rl_vfs_gate_close(h->af, why, err, sizeof err) != SQLITE_OK)
            hlog(h, 0, "%s: %s", h->db_path, err);
        if (!h->gate_closed) {
            h->gate_since = now.tv_sec;
            hlog(h, loud ? 1 : 2, "%s: reads wait: %s", h->db_path, why);
        }
        snprintf(h->gate_why, sizeof h->gate_why, "%s", why);
        h->gate_closed = 1;
    } else if (h->gate_closed) {
        long waited = (long)(now.tv_sec - h->gate_since);
        rl_vfs_gate_open(h->af);
        h->gate_closed = 0;
        hlog(h, waited >= 5 ? 1 : 2, "%s: serving reads (after %ld s)",
             h->db_path, waited);
    }
}

/* Decides the gate from the node's state: 0 open; 1 closed (catching up
** after a start, waiting for an image), 2 closed for a rebuild (said as a
** warning); why filled. */
static int gate_wanted(rl_host *h, char *why, size_t n)
{
    struct rl_node_status st;
    rl_node_status(h->node, &st);
    if (__atomic_load_n(&h->rebuild, __ATOMIC_ACQUIRE)) {
        snprintf(why, n,
                 "node %s is rebuilding its database from a peer's image "
                 "(its files did not match its applied record; see its log)",
                 h->id.node_id);
        return 2;
    }
    if (st.need_image) {
        snprintf(why, n,
                 "node %s is behind the cluster's snapshot (index %llu) and "
                 "installs a peer's image first",
                 h->id.node_id, (unsigned long long)st.need_image_A);
        return 1; /* ordinary for a joiner: the image fetch logs its own
                     trouble */
    }
    if (!h->gate_caught_up) {
        if (st.fsm_applied >= st.start_index &&
            st.applier_index >= st.fsm_index) {
            h->gate_caught_up = 1;
            return 0;
        }
        snprintf(why, n,
                 "node %s restarted and catches up first: its log held "
                 "index %llu when it started, raft has applied %llu and the "
                 "database %llu (PRAGMA raft_status: applied_index) (%s)",
                 h->id.node_id, (unsigned long long)st.start_index,
                 (unsigned long long)st.fsm_applied,
                 (unsigned long long)rl_host_applied(h),
                 st.leader_id ? "a leader is known"
                              : "no leader reachable yet: a majority of the "
                                "cluster must be up");
        return 1;
    }
    return 0;
}

static void *gate_main(void *arg)
{
    rl_host *h = arg;
    char why[512];
    for (;;) {
        struct timespec dl;
        int stop;
        int closed = gate_wanted(h, why, sizeof why);
        gate_set(h, closed != 0, closed == 2, why);
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += GATE_POLL_MS * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->mu);
        if (!h->stopping)
            pthread_cond_timedwait(&h->cv, &h->mu, &dl);
        stop = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            break;
    }
    return NULL;
}

static void host_free(rl_host *h)
{
    if (h->srv)
        rl_rpc_server_free(h->srv, h->grace_ms);
    if (h->node) {
        pthread_mutex_lock(&h->mu);
        h->stopping = 1;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        if (h->gate_started)
            pthread_join(h->gate_thread, NULL); /* it uses h->node */
        rl_node_stop(h->node);
    }
    if (h->svc)
        rl_service_close(h->svc);
    rl_auth_free(h->auth); /* after the server: calls used it */
    if (h->cl)
        rl_rpc_client_free(h->cl);
    if (h->adb)
        sqlite3_close_v2(h->adb);
    if (h->host_fd >= 0)
        close(h->host_fd);
    while (h->local) {
        struct local_txn *t = h->local;
        h->local = t->next;
        free(t);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->db_path);
    free(h->dir);
    free(h);
}

static void tls_set(rl_identity *id, const rl_rpc_tls *t)
{
    if (!t)
        return;
    snprintf(id->tls_cert, sizeof id->tls_cert, "%s",
             t->cert_file ? t->cert_file : "");
    snprintf(id->tls_key, sizeof id->tls_key, "%s",
             t->key_file ? t->key_file : "");
    snprintf(id->tls_ca, sizeof id->tls_ca, "%s", t->ca_file ? t->ca_file : "");
    id->tls_client_auth = t->client_auth;
}

static void security_set(rl_identity *id, const rl_host_config *cfg)
{
    if (cfg->auth_file)
        snprintf(id->auth_file, sizeof id->auth_file, "%s", cfg->auth_file);
    if (cfg->insecure)
        id->insecure = cfg->insecure > 0;
}

/* Safe by default: a Raft or gRPC address other than loopback needs TLS
** (the node's certificate: the sidecar's, and the Raft transport's) or
** the operator's word that the network is trusted. */
static int exposed_check(const rl_identity *id, char *err, size_t errlen)
{
    static const char flag[] = "raftd -insecure (the URI parameter "
                               "raft_insecure=1 of a shell-hosted node)";
    int tls = id->tls_cert[0] != 0;
    /* Raft runs in TLS only with the CA as well (tls_transport.c). */
    if (rl_addr_exposed_check(id->raft_addr, "raft address",
                              tls && id->tls_ca[0] != 0, id->insecure, flag,
                              err, errlen) != 0)
        return -1;
    if (id->grpc_addr[0] &&
        rl_addr_exposed_check(id->grpc_addr, "gRPC address", tls, id->insecure,
                              flag, err, errlen) != 0)
        return -1;
    return 0;
}

/* The sidecar's TLS settings from the identity: NULL for plaintext. The
** server presents cert/key and (mutual TLS) checks clients against ca;
** the client verifies peers with ca and presents cert/key for mutual TLS. */
static const rl_rpc_tls *host_tls(const rl_host *h, rl_rpc_tls *t, int server)
{
    const rl_identity *id = &h->id;
    if (!id->tls_cert[0] && !id->tls_ca[0])
        return NULL;
    memset(t, 0, sizeof *t);
    t->cert_file = id->tls_cert[0] ? id->tls_cert : NULL;
    t->key_file = id->tls_key[0] ? id->tls_key : NULL;
    t->ca_file = id->tls_ca[0] ? id->tls_ca : NULL;
    t->client_auth = server ? id->tls_client_auth : 0;
    return t;
}

static int start_sidecar(rl_host *h, char *err, size_t errlen)
{
    rl_service_config sc;
    rl_service_hooks hooks;
    rl_rpc_server_config rc;
    rl_rpc_tls tls;
    char addr[300];
    if (!h->id.grpc_addr[0])
        return 0;
    memset(&sc, 0, sizeof sc);
    sc.node_id = h->id.node_id;
    sc.grpc_addr = h->grpc_adv;
    sc.max_msg_bytes = h->max_msg;
    sc.raft_addr = h->id.raft_addr;
    sc.db_path = h->db_path;
    sc.host = h;
    hooks.ctx = h;
    hooks.write_done = svc_write_done;
    hooks.propose_txn = svc_propose_txn;
    sc.hooks = &hooks; /* copied */
    h->svc = rl_service_open(&sc, err, errlen);
    if (!h->svc)
        return -1;
    if (h->id.auth_file[0] &&
        rl_auth_load(h->id.auth_file, &h->auth, err, errlen) != 0)
        return -1;
    /* Checked at every call before any handler (service_rpc.c). */
    rl_service_set_auth(h->svc, h->auth,
                        h->id.tls_cert[0] && h->id.tls_client_auth);
    if (h->auth && !(h->id.tls_cert[0] && h->id.tls_client_auth))
        hlog(h, 1,
             "the auth file %s is on without mutual TLS: calls between "
             "nodes (ReadIndex, ForwardTxn, FetchImage, forwarded writes) "
             "need node certificates and will be refused; a cluster of more "
             "than one node needs -tls-client-auth (raft_tls_client_auth=1)",
             h->id.auth_file);
    if (rl_rpc_listen_addr(h->id.grpc_addr, addr, sizeof addr) != 0) {
        snprintf(err, errlen, "gRPC address too long");
        return -1;
    }
    memset(&rc, 0, sizeof rc);
    rc.addr = addr;
    rc.tls = host_tls(h, &tls, 1);
    rc.max_msg_bytes = h->max_msg;
    rc.max_workers = h->workers;
    rc.max_call_ms = h->max_call_ms;
    rc.max_stream_ms = h->max_stream_ms;
    rc.stream_idle_ms = h->stream_idle_ms;
    rc.max_client_calls = h->max_client_calls;
    h->srv = rl_rpc_server_new(&rc, err, errlen);
    if (!h->srv)
        return -1;
    if (rl_service_register(h->svc, h->srv) != 0 ||
        rl_rpc_server_start(h->srv, err, errlen) < 0) {
        char e2[512];
        snprintf(e2, sizeof e2, "%s", err);
        snprintf(err, errlen, "cannot serve gRPC on %s: %s", addr, e2);
        return -1;
    }
    return 0;
}

int rl_host_open(const rl_host_config *cfg, rl_host **out, char *err,
                 size_t errlen)
{
    rl_host *h;
    struct rl_node_config nc;
    rl_rpc_tls tls;
    char raftdir[PATH_MAX];
    int rc;

    *out = NULL;
    if (!cfg->db_path) {
        snprintf(err, errlen, "no database path");
        return -1;
    }
    if (rl_host_find(cfg->db_path)) {
        snprintf(err, errlen, "%s already has a node in this process",
                 cfg->db_path);
        return -1;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->host_fd = -1;
    h->log_level = cfg->log_level;
    h->max_msg = cfg->max_msg_bytes;
    h->workers = cfg->workers;
    h->max_call_ms = cfg->max_call_ms;
    h->max_stream_ms = cfg->max_stream_ms;
    h->stream_idle_ms = cfg->stream_idle_ms;
    h->max_client_calls = cfg->max_client_calls;
    h->grace_ms = cfg->grace_ms > 0 ? cfg->grace_ms : 1000;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->db_path = strdup(cfg->db_path);
    h->dir = malloc(strlen(cfg->db_path) + 6);
    if (!h->db_path || !h->dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sprintf(h->dir, "%s-raft", cfg->db_path);

    /* Identity: stored, or given (and then stored). */
    rc = rl_identity_read(h->db_path, &h->id, err, errlen);
    if (rc < 0)
        goto fail;
    if (rc == 1) {
        if (!cfg->node_id || !cfg->raft_addr) {
            snprintf(err, errlen,
                     "%s has no stored node identity: start it with "
                     "raft_bootstrap(...) or raft_join(...)",
                     h->db_path);
            goto fail;
        }
        snprintf(h->id.node_id, sizeof h->id.node_id, "%s", cfg->node_id);
        snprintf(h->id.raft_addr, sizeof h->id.raft_addr, "%s", cfg->raft_addr);
        snprintf(h->id.grpc_addr, sizeof h->id.grpc_addr, "%s",
                 cfg->grpc_addr ? cfg->grpc_addr : "");
        tls_set(&h->id, cfg->tls);
        security_set(&h->id, cfg);
        if (exposed_check(&h->id, err, errlen) != 0 ||
            identity_write(h->db_path, &h->id, err, errlen) != 0)
            goto fail;
    } else if (cfg->tls || cfg->auth_file || cfg->insecure) {
        /* TLS, auth or -insecure given again (URI parameters or flags):
        ** they replace the stored settings. */
        tls_set(&h->id, cfg->tls);
        security_set(&h->id, cfg);
        if (exposed_check(&h->id, err, errlen) != 0 ||
            identity_write(h->db_path, &h->id, err, errlen) != 0)
            goto fail;
    } else if (exposed_check(&h->id, err, errlen) != 0) {
        goto fail;
    }
    if (cfg->node_id && strcmp(cfg->node_id, h->id.node_id) != 0) {
        snprintf(err, errlen,
                 "%s belongs to node '%s', not '%s': a database keeps the "
                 "identity it was started with",
                 h->db_path, h->id.node_id, cfg->node_id);
        goto fail;
    }
    h->raft_id = rl_raft_id_of(h->id.node_id);
    if (h->id.grpc_addr[0] == ':')
        snprintf(h->grpc_adv, sizeof h->grpc_adv, "127.0.0.1%.240s",
                 h->id.grpc_addr);
    else
        snprintf(h->grpc_adv, sizeof h->grpc_adv, "%s", h->id.grpc_addr);

    if (host_lock(h, err, errlen) != 0)
        goto fail;

    /* Registered before the applier opens its connection: the VFS's port
    ** lookups by path find it. */
    pthread_mutex_lock(&reg_mu);
    h->next = hosts;
    hosts = h;
    pthread_mutex_unlock(&reg_mu);

    if (open_applier(h, err, errlen) != 0)
        goto fail_reg;
    /* Closed before this process can read through the node: gate_main
    ** opens it once the node has caught up. */
    gate_set(h, 1, h->rebuild,
             h->rebuild ? "its database is being rebuilt from a peer's image"
                        : "its node is starting");
    h->cl = rl_rpc_client_new(host_tls(h, &tls, 0), h->max_msg, err, errlen);
    if (!h->cl)
        goto fail_reg;

    if (path_join(raftdir, sizeof raftdir, h->dir, "/raft") != 0) {
        snprintf(err, errlen, "path too long");
        goto fail_reg;
    }
    memset(&nc, 0, sizeof nc);
    nc.dir = raftdir;
    nc.raft_id = h->raft_id;
    nc.raft_addr = h->id.raft_addr;
    nc.node_id = h->id.node_id;
    nc.grpc_addr = h->grpc_adv;
    nc.bootstrap = cfg->bootstrap;
    nc.election_timeout_ms = cfg->election_timeout_ms;
    nc.heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
    nc.snapshot_threshold = cfg->snapshot_threshold;
    nc.snapshot_trailing = cfg->snapshot_trailing;
    /* 1 MiB segments: raft_uv preallocates open segments, and 8 MiB ones
    ** (its default) keep ~24 MB per node on disk; entries larger than a
    ** segment still fit (measured with 50 MB entries). */
    nc.segment_size = HOST_SEGMENT_SIZE;
    nc.applier.ctx = h;
    nc.applier.apply = host_apply;
    nc.applier.applied_index = host_applied_index;
    nc.applier.snapshot_ready = host_snapshot_ready;
    nc.applier.restore = host_restore;
    nc.applier.need_image = host_need_image;
    nc.log = node_log;
    nc.log_ctx = h;
    /* Raft traffic in mutual TLS whenever the node has a certificate, its
    ** key and the CA: the same files as the sidecar (README "Security"). */
    if (h->id.tls_cert[0] && h->id.tls_key[0] && h->id.tls_ca[0]) {
        h->raft_tls.cert_file = h->id.tls_cert;
        h->raft_tls.key_file = h->id.tls_key;
        h->raft_tls.ca_file = h->id.tls_ca;
        h->raft_tls.raft_id_of = rl_raft_id_of;
        nc.raft_tls = &h->raft_tls;
    } else if (h->id.tls_cert[0]) {
        hlog(h, 1,
             "Raft traffic is plaintext: mutual TLS on Raft needs the CA "
             "too (-tls-ca, or URI raft_tls_ca)");
    }
    if (rl_node_start(&nc, &h->node, err, errlen) != RL_NODE_OK) {
        h->node = NULL;
        goto fail_reg;
    }
    pthread_mutex_lock(&h->mu);
    h->node_ready = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (pthread_create(&h->gate_thread, NULL, gate_main, h) != 0) {
        snprintf(err, errlen, "cannot start a thread");
        goto fail_reg;
    }
    h->gate_started = 1;
    if (start_sidecar(h, err, errlen) != 0)
        goto fail_reg;
    hlog(h, 2, "node %s (raft %s, gRPC %s) hosts %s", h->id.node_id,
         h->id.raft_addr, h->id.grpc_addr[0] ? h->id.grpc_addr : "-",
         h->db_path);
    *out = h;
    return 0;

fail_reg:
    reg_remove(h);
fail:
    host_free(h);
    return -1;
}

void rl_host_close(rl_host *h)
{
    if (!h)
        return;
    reg_remove(h);
    host_free(h);
}

void rl_host_close_all(void)
{
    for (;;) {
        rl_host *h;
        pthread_mutex_lock(&reg_mu);
        h = hosts;
        pthread_mutex_unlock(&reg_mu);
        if (!h)
            break;
        rl_host_close(h);
    }
}

/* ------------------------------------------------------ cluster actions */

int rl_host_wait_leader(rl_host *h, unsigned timeout_ms)
{
    return rl_node_wait_leader(h->node, timeout_ms);
}

int rl_host_genesis(rl_host *h, char *err, size_t errlen)
{
    struct rl_proposal p;
    struct rl_result res;
    int rc;
    memset(&p, 0, sizeof p);
    p.kind = RL_ENTRY_GENESIS;
    p.origin_pid = (uint32_t)getpid();
    rc = rl_node_propose(h->node, &p, LEAD_TIMEOUT_MS, &res);
    if (rc != RL_NODE_OK) {
        snprintf(err, errlen, "proposing the genesis entry: %s",
                 res.msg[0] ? res.msg : rl_node_strerror(rc));
        return -1;
    }
    if (rl_node_wait_applied(h->node, res.index, LEAD_TIMEOUT_MS) !=
        RL_NODE_OK) {
        snprintf(err, errlen, "the genesis entry was not applied in time");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------- bootstrap and join */

static pthread_mutex_t setup_mu = PTHREAD_MUTEX_INITIALIZER;
static char setup_path[PATH_MAX];

int rl_host_setting_up(const char *db_path)
{
    int r;
    pthread_mutex_lock(&setup_mu);
    r = setup_path[0] && strcmp(setup_path, db_path) == 0;
    pthread_mutex_unlock(&setup_mu);
    return r;
}

static void set_setup(const char *path)
{
    pthread_mutex_lock(&setup_mu);
    snprintf(setup_path, sizeof setup_path, "%s", path ? path : "");
    pthread_mutex_unlock(&setup_mu);
}

/* Integer result of a one-value query on db, or -1. */
static int64_t query_int(sqlite3 *db, const char *sql)
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

/* Removes what a failed setup created: "<db>-raft/" and everything the
** node wrote in it (all flat files). */
static void remove_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[PATH_MAX];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p)
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void remove_setup(const char *db_path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s-raft/raft", db_path);
    remove_dir_files(p);
    snprintf(p, sizeof p, "%s-raft", db_path);
    remove_dir_files(p);
}

/*
** A joiner installs the cluster's database as an image, which only fits a
** database of the same page size, and SQLite cannot change the page size
** once the file is in WAL mode: ask the peer for its image's page size
** first (rl_image_prepare_joiner). A peer that cannot say (unreachable,
** no image yet) leaves the default; the join itself then reports the
** peer's state. -1 with err only when the database could not be changed.
*/
static int join_page_size(sqlite3 *db, const rl_host_config *cfg, char *err,
                          size_t errlen)
{
    rl_rpc_tls t;
    rl_rpc_client *cl;
    uint32_t ps = 0;
    char why[1024];
    int code;
    if (cfg->tls) {
        t = *cfg->tls;
        t.client_auth = 0;
    }
    cl = rl_rpc_client_new(cfg->tls ? &t : NULL, cfg->max_msg_bytes, err,
                           errlen);
    if (!cl)
        return -1;
    code =
        rl_image_prepare_joiner(cl, cfg->join, db, 10000, &ps, why, sizeof why);
    rl_rpc_client_free(cl);
    if (code == RL_RPC_INTERNAL || code == RL_RPC_RESOURCE_EXHAUSTED ||
        (code == RL_RPC_FAILED_PRECONDITION && strstr(why, "holds data"))) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (code == RL_RPC_UNAVAILABLE || code == RL_RPC_DEADLINE_EXCEEDED) {
        snprintf(err, errlen,
                 "cannot reach the node at %s (%s): is a raftlite node "
                 "serving gRPC there? Give the gRPC address of a running "
                 "member",
                 cfg->join, why);
        return -1;
    }
    if (code != RL_RPC_OK)
        hlog(NULL, 1, "joining: the page size of %s's image is unknown (%s)",
             cfg->join, why);
    return 0;
}

int rl_host_bootstrap(sqlite3 *db, const rl_host_config *cfg, char *err,
                      size_t errlen)
{
    const char *path = sqlite3_db_filename(db, "main");
    char dir[PATH_MAX];
    rl_host_config c = *cfg;
    rl_host *h = NULL;
    rl_identity id;
    struct stat st;
    int64_t v;
    int made_dir = 0, adopted = 0;

    if (!path || !path[0]) {
        snprintf(err, errlen,
                 "the main database is in memory or temporary: .open a "
                 "database file first");
        return -1;
    }
    if (snprintf(dir, sizeof dir, "%s-raft", path) >= (int)sizeof dir) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    if (rl_identity_read(path, &id, err, errlen) == 0) {
        snprintf(err, errlen,
                 "%s is already node '%s' (its node restarts when the "
                 "database is opened)",
                 path, id.node_id);
        return -1;
    }
    if (rl_host_find(path) || rl_host_running(path, NULL, NULL, 0)) {
        snprintf(err, errlen, "%s already has a running node", path);
        return -1;
    }
    if (!sqlite3_get_autocommit(db)) {
        snprintf(err, errlen,
                 "a transaction is open on this connection: COMMIT or "
                 "ROLLBACK it first");
        return -1;
    }
    if (cfg->join) {
        v = query_int(db, "SELECT count(*) FROM main.sqlite_schema");
        if (v != 0 || query_int(db, "PRAGMA main.page_count") > 1) {
            snprintf(err, errlen,
                     "%s already holds data; a joining node receives the "
                     "cluster's database: join with an empty database file",
                     path);
            return -1;
        }
        if (join_page_size(db, cfg, err, errlen) != 0)
            return -1;
    }
    /* WAL mode first, while the file is still an ordinary database. */
    if (sqlite3_exec(db, "PRAGMA main.journal_mode=WAL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        query_int(db, "SELECT count(*) FROM main.sqlite_schema") < 0) {
        snprintf(err, errlen, "cannot put %s in WAL mode: %s", path,
                 sqlite3_errmsg(db));
        return -1;
    }
    set_setup(path);
    if (stat(dir, &st) != 0) {
        if (mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
            goto fail;
        }
        made_dir = 1;
    }
    if (rl_vfs_adopt(path, err, errlen) != SQLITE_OK)
        goto fail;
    adopted = 1;
    c.db_path = path;
    c.bootstrap = cfg->join ? 0 : 1;
    if (rl_host_open(&c, &h, err, errlen) != 0)
        goto fail;
    if (!cfg->join) {
        if (rl_node_wait_leader(h->node, LEAD_TIMEOUT_MS) != RL_NODE_OK) {
            snprintf(err, errlen,
                     "the new one-node cluster did not elect itself within "
                     "%d ms",
                     LEAD_TIMEOUT_MS);
            goto fail;
        }
        /* A database that holds data (or has a page size others would not
        ** guess) becomes the initial state through a genesis entry:
        ** joiners receive it as an image. */
        v = query_int(h->adb, "SELECT count(*) FROM sqlite_schema");
        if (v != 0 || query_int(h->adb, "PRAGMA page_count") > 1 ||
            query_int(h->adb, "PRAGMA page_size") != 4096) {
            if (rl_host_genesis(h, err, errlen) != 0)
                goto fail;
        }
    } else {
        struct rl_meta self;
        char lg[RL_META_STR_MAX + 1];
        uint64_t target = 0;
        /* Ask the peer (a follower forwards to the leader); retried while
        ** the cluster has no leader. */
        rl_host_self(h, &self);
        if (rl_cluster_join(h->cl, cfg->join, &self, 15000, lg, sizeof lg, err,
                            errlen) != 0)
            goto fail;
        /* Caught up: applied the leader's read index as of now, i.e. its
        ** last FSM entry (a commit index may be a configuration entry,
        ** which never reaches the applier: waiting for it would hang). */
        if (rl_cluster_read_index(h->cl, lg, 15000, &target, NULL, err,
                                  errlen) != 0)
            goto fail_joined;
        if (rl_node_wait_applied(h->node, target, 60000) != RL_NODE_OK) {
            snprintf(err, errlen,
                     "joined, but this node did not catch up to index %llu "
                     "within 60 s",
                     (unsigned long long)target);
            goto fail_joined;
        }
    }
    set_setup(NULL);
    return 0;

fail_joined:
    /* The cluster has this node as a member now: keep the node running
    ** (it keeps catching up) rather than undo a membership change. */
    set_setup(NULL);
    return -1;
fail:
    if (h)
        rl_host_close(h);
    if (adopted)
        rl_vfs_unadopt(path);
    if (made_dir)
        remove_setup(path);
    set_setup(NULL);
    return -1;
}
