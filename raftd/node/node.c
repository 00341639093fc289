/*
** raftd/node/node.c -- the Raft node's public face (node.h): start and
** stop, the calls other threads make (propose, snapshot policy, read
** point, status, members, metadata, waits), and the node's lifetime
** (references, free). The internals it relies on are in node_int.h.
**
** Every function here runs on a caller's thread: it reaches the loop only
** through a request (request.c) and reads only what the loop published
** under n->mu. It must never call raft_* on the node's raft (that is the
** loop thread's), never block without a deadline, and never call SQLite.
*/
#include "node_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

const char *rl_node_strerror(rl_err rc)
{
    switch (rc) {
    case RL_OK:
        return "ok";
    case RL_ERR_NOTLEADER:
        return "not the leader (nothing was appended)";
    case RL_ERR_UNKNOWN:
        return "outcome unknown (appended, then leadership, the node or the "
               "time limit was lost)";
    case RL_ERR_SHUTDOWN:
        return "node is stopping";
    case RL_ERR_TIMEOUT:
        return "timed out before the node took the request";
    case RL_ERR_INVALID:
        return "invalid argument";
    case RL_ERR_NOMEM:
        return "out of memory";
    case RL_ERR_RAFT:
        return "raft refused the request";
    default: /* codes the node never returns */
        break;
    }
    return rl_err_name(rc);
}

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "data dir path too long: %s", path);
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "cannot create data dir %s: %s", buf,
                         strerror(errno));
                return -1;
            }
            *p = c;
            if (c == 0)
                break;
        }
    }
    return 0;
}

rl_err rl_node_start(const struct rl_node_config *cfg, struct rl_node **out,
                     char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    *out = NULL;
    const struct rl_applier *a = &cfg->applier;
    if (!cfg->dir || !cfg->raft_addr || !cfg->node_id || cfg->raft_id == 0 ||
        !a->apply || !a->applied_index || !a->snapshot_ready || !a->restore ||
        !a->need_image) {
        snprintf(err, errlen,
                 "rl_node_start: dir, raft_addr, node_id, a nonzero raft_id "
                 "and every applier callback are required");
        return RL_ERR_INVALID;
    }
    struct rl_node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        snprintf(err, errlen, "out of memory");
        return RL_ERR_NOMEM;
    }
    n->cfg = *cfg;
    n->dir = strdup(cfg->dir);
    n->raft_addr = strdup(cfg->raft_addr);
    n->node_id = strdup(cfg->node_id);
    n->grpc_addr = strdup(cfg->grpc_addr ? cfg->grpc_addr : "");
    pthread_mutex_init(&n->mu, NULL);
    cond_init_mono(&n->cv);
    cond_init_mono(&n->qcv);
    n->refs = 1;
    if (!n->dir || !n->raft_addr || !n->node_id || !n->grpc_addr) {
        node_free(n);
        snprintf(err, errlen, "out of memory");
        return RL_ERR_NOMEM;
    }
    struct rl_node_config *c = &n->cfg;
    c->dir = n->dir;
    c->raft_addr = n->raft_addr;
    c->node_id = n->node_id;
    c->grpc_addr = n->grpc_addr;
    if (!c->election_timeout_ms)
        c->election_timeout_ms = 1000;
    if (!c->heartbeat_timeout_ms)
        c->heartbeat_timeout_ms = 100;
    if (!c->snapshot_threshold)
        c->snapshot_threshold = 1024;
    if (!c->snapshot_trailing)
        c->snapshot_trailing = 128;
    if (!c->snapshot_threshold_bytes)
        c->snapshot_threshold_bytes = DEFAULT_BYTES;
    if (!c->snapshot_trailing_bytes)
        c->snapshot_trailing_bytes = DEFAULT_BYTES;
    if (!c->snapshot_timeout_ms)
        c->snapshot_timeout_ms = 10000;
    if (!c->stop_wait_ms)
        c->stop_wait_ms = 2000;
    if (!c->install_snapshot_timeout_ms)
        c->install_snapshot_timeout_ms = 2000;
    if (rl_meta_set(&n->self, c->raft_id, c->node_id, c->raft_addr,
                    c->grpc_addr) != 0) {
        snprintf(err, errlen,
                 "node id, raft address or gRPC address empty or longer "
                 "than %d bytes",
                 RL_META_STR_MAX);
        node_free(n);
        return RL_ERR_INVALID;
    }
    n->pub.raft_id = c->raft_id;
    if (mkdir_p(c->dir, err, errlen) != 0) {
        node_free(n);
        return RL_ERR_RAFT;
    }
    node_board_open(n); /* none, or one it could not make: logged */
    if (pthread_create(&n->loop_thread, NULL, node_loop_main, n) != 0) {
        snprintf(err, errlen, "cannot create the loop thread");
        node_free(n);
        return RL_ERR_RAFT;
    }
    pthread_mutex_lock(&n->mu);
    while (n->started == 0)
        pthread_cond_wait(&n->cv, &n->mu);
    int ok = n->started == 1;
    pthread_mutex_unlock(&n->mu);
    if (!ok) {
        pthread_join(n->loop_thread, NULL);
        snprintf(err, errlen, "%s", n->start_err);
        node_free(n);
        return RL_ERR_RAFT;
    }
    pthread_mutex_lock(&n->mu);
    n->refs++;
    pthread_mutex_unlock(&n->mu);
    if (pthread_create(&n->applier_thread, NULL, node_applier_main, n) != 0) {
        n->refs--;
        snprintf(err, errlen, "cannot create the applier thread");
        rl_node_stop(n);
        return RL_ERR_RAFT;
    }
    n->applier_started = 1;
    *out = n;
    return RL_OK;
}

void rl_node_stop(struct rl_node *n)
{
    if (n == NULL)
        return;
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_cond_broadcast(&n->qcv);
    uv_async_send(&n->async);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->loop_thread, NULL);
    if (n->applier_started) {
        pthread_t t = n->applier_thread;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += n->cfg.stop_wait_ms / 1000;
        ts.tv_nsec += (long)(n->cfg.stop_wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(t, NULL, &ts) != 0) {
            /* Stuck in a database callback (a client may hold its lock,
            ** e.g. exit() inside a transaction): leave it; it frees what
            ** it uses on return. */
            node_log(n, 1, "applier thread busy at stop: detached");
            pthread_detach(t);
        }
    }
    node_unref(n);
}

void *rl_node_entry_alloc(size_t payload_len)
{
    size_t size = rl_entry_size(payload_len);
    return size ? raft_malloc(size) : NULL;
}

void rl_node_entry_free(void *entry)
{
    if (entry)
        raft_free(entry);
}

/* What a proposal is checked for before its entry goes to the loop: kind,
** size, and a node that leads and is not stopping (raced: the loop checks
** again). RL_OK, or the error with res->msg (and the leader as known, for
** NOTLEADER). Owns nothing. */
static rl_err propose_check(struct rl_node *n, const struct rl_proposal *p,
                            struct rl_result *res)
{
    if (p->kind < 1 || p->kind > RL_ENTRY_KIND_MAX) {
        node_copy_str(res->msg, sizeof res->msg, "bad entry kind or payload");
        return RL_ERR_INVALID;
    }
    if (rl_entry_size(p->len) == 0) {
        snprintf(res->msg, sizeof res->msg,
                 "payload of %zu bytes exceeds the %llu-byte limit", p->len,
                 (unsigned long long)RL_ENTRY_MAX_PAYLOAD);
        return RL_ERR_INVALID;
    }
    pthread_mutex_lock(&n->mu);
    int state = n->pub.state, stopping = n->stopping;
    res->leader_id = n->pub.leader_id;
    node_copy_str(res->leader_addr, sizeof res->leader_addr,
                  n->pub.leader_addr);
    pthread_mutex_unlock(&n->mu);
    if (stopping) {
        node_copy_str(res->msg, sizeof res->msg, "node is stopping");
        return RL_ERR_SHUTDOWN;
    }
    if (state != RL_STATE_LEADER) {
        node_copy_str(res->msg, sizeof res->msg, "not the leader");
        return RL_ERR_NOTLEADER;
    }
    res->leader_id = 0;
    res->leader_addr[0] = 0;
    return RL_OK;
}

/*
** Seals entry (its payload already in place, p checked by propose_check)
** and hands it to the loop in a request. Takes entry over on every path:
** freed here if no request can carry it; once in the request, the request
** owns it (r->buf, freed with the request by node_req_unref_locked) until
** raft_apply accepts it, and raft owns it from then on.
*/
static rl_err propose_submit(struct rl_node *n, const struct rl_proposal *p,
                             void *entry, unsigned timeout_ms,
                             struct rl_result *res)
{
    size_t size = rl_entry_size(p->len);
    struct rl_entry_hdr h = {.kind = p->kind,
                             .base = p->base,
                             .origin_node = p->origin_node ? p->origin_node
                                                           : n->cfg.raft_id,
                             .origin_txn = p->origin_txn,
                             .origin_pid = p->origin_pid,
                             .payload_len = p->len};
    if (rl_entry_seal(&h, entry, size) != 0) {
        rl_node_entry_free(entry); /* not expected: p was checked */
        node_copy_str(res->msg, sizeof res->msg, "bad entry header");
        return RL_ERR_INVALID;
    }
    struct req *r = node_req_new(REQ_PROPOSE);
    if (r == NULL) {
        rl_node_entry_free(entry);
        node_copy_str(res->msg, sizeof res->msg, "out of memory");
        return RL_ERR_NOMEM;
    }
    if (rl_timing_on)
        r->tm[RL_T_PROPOSE] = rl_timing_now();
    r->node = n;
    r->buf.base = entry;
    r->buf.len = size;
    r->kind = p->kind;
    r->origin_node = h.origin_node;
    /* The checksum identifies the entry if leadership is lost. */
    r->checksum = rl_entry_checksum(entry, size);
    return node_req_run(n, r, timeout_ms, res);
}

rl_err rl_node_propose_entry(struct rl_node *n, const struct rl_proposal *p,
                             void *entry, unsigned timeout_ms,
                             struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    if (entry == NULL) {
        node_copy_str(res->msg, sizeof res->msg, "no entry buffer");
        return RL_ERR_INVALID;
    }
    rl_err rc = propose_check(n, p, res);
    if (rc != RL_OK) {
        rl_node_entry_free(entry);
        return rc;
    }
    return propose_submit(n, p, entry, timeout_ms, res);
}

rl_err rl_node_propose(struct rl_node *n, const struct rl_proposal *p,
                       unsigned timeout_ms, struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    if (p->len > 0 && p->payload == NULL) {
        node_copy_str(res->msg, sizeof res->msg, "bad entry kind or payload");
        return RL_ERR_INVALID;
    }
    rl_err rc = propose_check(n, p, res);
    if (rc != RL_OK)
        return rc;
    void *entry = rl_node_entry_alloc(p->len);
    if (entry == NULL) {
        node_copy_str(res->msg, sizeof res->msg, "out of memory");
        return RL_ERR_NOMEM;
    }
    if (p->len > 0)
        memcpy(rl_node_entry_payload(entry), p->payload, p->len);
    return propose_submit(n, p, entry, timeout_ms, res);
}

rl_err rl_node_set_snapshot(struct rl_node *n, unsigned threshold,
                            unsigned trailing, uint64_t threshold_bytes,
                            uint64_t trailing_bytes, unsigned timeout_ms)
{
    struct rl_result res;
    memset(&res, 0, sizeof res);
    struct req *r = node_req_new(REQ_SNAPCFG);
    if (r == NULL)
        return RL_ERR_NOMEM;
    r->node = n;
    r->threshold = threshold;
    r->trailing = trailing;
    r->threshold_bytes = threshold_bytes;
    r->trailing_bytes = trailing_bytes;
    return node_req_run(n, r, timeout_ms, &res);
}

rl_err rl_node_read_index(struct rl_node *n, unsigned timeout_ms,
                          struct rl_result *res)
{
    memset(res, 0, sizeof *res);
    struct req *r = node_req_new(REQ_READ);
    if (r == NULL)
        return RL_ERR_NOMEM;
    r->node = n;
    return node_req_run(n, r, timeout_ms, res);
}

void rl_node_push_commit(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    if (!n->stopping) {
        n->push_wanted = 1;
        uv_async_send(&n->async);
    }
    pthread_mutex_unlock(&n->mu);
}

void rl_node_status(struct rl_node *n, struct rl_node_status *st)
{
    pthread_mutex_lock(&n->mu);
    *st = n->pub;
    pthread_mutex_unlock(&n->mu);
}

rl_err rl_node_members(struct rl_node *n, struct rl_member **out,
                       unsigned *count)
{
    pthread_mutex_lock(&n->mu);
    unsigned nm = n->n_members;
    struct rl_member *m = malloc((nm ? nm : 1) * sizeof *m);
    if (m && nm)
        memcpy(m, n->members, nm * sizeof *m);
    pthread_mutex_unlock(&n->mu);
    if (m == NULL)
        return RL_ERR_NOMEM;
    *out = m;
    *count = nm;
    return RL_OK;
}

rl_err rl_node_meta(struct rl_node *n, uint64_t id, const char *node_id,
                    struct rl_meta *out)
{
    if (id == 0 && node_id == NULL)
        return RL_ERR_INVALID;
    pthread_mutex_lock(&n->mu);
    const struct rl_meta *m = node_meta_find_locked(n, id, node_id);
    if (m)
        *out = *m;
    pthread_mutex_unlock(&n->mu);
    return m ? RL_OK : RL_ERR_INVALID;
}

int rl_node_meta_current(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    const struct rl_meta *m = node_meta_find_locked(n, n->cfg.raft_id, NULL);
    int cur = m && rl_fsm_meta_equal(m, &n->self);
    pthread_mutex_unlock(&n->mu);
    return cur;
}

void rl_node_self_meta(struct rl_node *n, struct rl_meta *out)
{
    *out = n->self;
}

/* Wait under mu until reached(n, arg), the node stops or timeout_ms
** pass. A reference keeps n valid if rl_node_stop runs meanwhile. */
static rl_err wait_for(struct rl_node *n, unsigned timeout_ms,
                       int (*reached)(const struct rl_node *, uint64_t),
                       uint64_t arg)
{
    struct timespec dl = node_deadline_in(timeout_ms);
    rl_err rc = RL_OK;
    pthread_mutex_lock(&n->mu);
    n->refs++;
    while (!reached(n, arg)) {
        if (n->stopping) {
            rc = RL_ERR_SHUTDOWN;
            break;
        }
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) == ETIMEDOUT) {
            rc = reached(n, arg) ? RL_OK : RL_ERR_TIMEOUT;
            break;
        }
    }
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
    return rc;
}

static int applied_reached(const struct rl_node *n, uint64_t index)
{
    return n->pub.applier_index >= index;
}

/* Some node is known as leader (this one: ready). */
static int leader_known(const struct rl_node *n, uint64_t unused)
{
    const struct rl_node_status *s = &n->pub;
    (void)unused;
    return s->leader_id != 0 && (s->leader_id != s->raft_id || s->ready);
}

rl_err rl_node_wait_applied(struct rl_node *n, uint64_t index,
                            unsigned timeout_ms)
{
    return wait_for(n, timeout_ms, applied_reached, index);
}

rl_err rl_node_wait_leader(struct rl_node *n, unsigned timeout_ms)
{
    return wait_for(n, timeout_ms, leader_known, 0);
}
