/*
** raftd/host/host.c -- a replicated database's Raft node hosted in this
** process (see host.h): open and close, the registry of this process's
** hosts and the port slots, taking the host lock, and the settings a host
** keeps (identity, TLS). What every file of the room uses about a host
** (its log, paths, accessors) is base.c.
**
** A host is opened in this order: identity, host lock, registry, the
** applier's connection (rebuild.c), the read gate closed (gate.c), the
** node started with the applier callbacks (applier.c), the gate thread.
** Its sidecar is not its business: ext/ or raftd/main.c starts it
** (raftd/api/sidecar.c) and registers its stop with rl_host_on_close.
** This file must never write to the database, nor start or know the gRPC
** service.
*/
#include "host_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

SQLITE_EXTENSION_INIT3

/* The hosts of this process (the only mutable global state besides the
** port's client-process channel, client.c). */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_host *hosts;

static void node_log(void *ctx, int level, const char *msg)
{
    rl_host_log(ctx, level, "%s", msg);
}

/* ----------------------------------------------------------- host lock */

static int host_lock(rl_host *h, char *err, size_t errlen)
{
    char path[PATH_MAX], buf[600];
    int n;
    if (rl_host_path(path, sizeof path, h->db_path, "-raft/host") != 0) {
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
        rl_host_log(h, 1, "cannot write %s: %s", path, strerror(errno));
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

static struct rl_host_port *ports; /* under reg_mu */

/* The slot of db_path, made if needed; reg_mu held. */
static struct rl_host_port *port_slot(const char *db_path)
{
    struct rl_host_port *p;
    for (p = ports; p; p = p->next)
        if (strcmp(p->db_path, db_path) == 0)
            return p;
    p = calloc(1, sizeof *p);
    if (!p || !(p->db_path = strdup(db_path))) {
        free(p);
        return NULL;
    }
    rl_host_port_init(&p->port, p);
    p->next = ports;
    ports = p;
    return p;
}

const rl_port *rl_host_port(const char *db_path)
{
    struct rl_host_port *p;
    if (!db_path)
        return NULL;
    pthread_mutex_lock(&reg_mu);
    p = port_slot(db_path);
    pthread_mutex_unlock(&reg_mu);
    return p ? &p->port : NULL;
}

/* Registers h and makes its database's port serve it: 0, or -1 (no
** memory for the slot). */
static int reg_add(rl_host *h)
{
    pthread_mutex_lock(&reg_mu);
    h->port = port_slot(h->db_path);
    if (h->port) {
        h->next = hosts;
        hosts = h;
        __atomic_store_n(&h->port->h, h, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&reg_mu);
    return h->port ? 0 : -1;
}

/* Unregisters h: its port serves no host from now on (a writer between
** its commit and its end finds none and leaves its ticket alone: the
** host's close frees it). */
static void reg_remove(rl_host *h)
{
    pthread_mutex_lock(&reg_mu);
    for (rl_host **pp = &hosts; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    if (h->port && __atomic_load_n(&h->port->h, __ATOMIC_RELAXED) == h)
        __atomic_store_n(&h->port->h, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&reg_mu);
}

static void host_free(rl_host *h)
{
    if (h->on_close)
        h->on_close(h->on_close_arg); /* the sidecar: before the node stops */
    rl_host_door_stop(h); /* likewise, and while the host lock is held */
    if (h->node) {
        pthread_mutex_lock(&h->mu);
        h->stopping = 1;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        if (h->gate_started)
            pthread_join(h->gate_thread, NULL); /* it uses h->node */
        rl_node_stop(h->node);
    }
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
    pthread_mutex_destroy(&h->rr_mu);
    pthread_cond_destroy(&h->rr_cv);
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
const rl_rpc_tls *rl_host_tls(const rl_host *h, rl_rpc_tls *t, int server)
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

int rl_host_open(const rl_host_config *cfg, rl_host **out, char *err,
                 size_t errlen)
{
    rl_host *h;
    struct rl_node_config nc;
    rl_rpc_tls tls;
    char raftdir[PATH_MAX], boardpath[PATH_MAX];
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
    pthread_mutex_init(&h->rr_mu, NULL);
    {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&h->rr_cv, &a);
        pthread_condattr_destroy(&a);
    }
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
            rl_identity_write(h->db_path, &h->id, err, errlen) != 0)
            goto fail;
    } else if (cfg->tls || cfg->auth_file || cfg->insecure) {
        /* TLS, auth or -insecure given again (URI parameters or flags):
        ** they replace the stored settings. */
        tls_set(&h->id, cfg->tls);
        security_set(&h->id, cfg);
        if (exposed_check(&h->id, err, errlen) != 0 ||
            rl_identity_write(h->db_path, &h->id, err, errlen) != 0)
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

    /* Registered before the applier opens its connection: connections
    ** opened from now on (the applier's, the sidecar's) resolve to a
    ** port that serves h. */
    if (reg_add(h) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }

    if (rl_host_open_applier(h, err, errlen) != 0)
        goto fail_reg;
    /* Closed before this process can read through the node: rl_host_gate_main
    ** opens it once the node has caught up. */
    rl_host_gate_set(h, 1, h->rebuild,
                     h->rebuild
                         ? "its database is being rebuilt from a peer's image"
                         : "its node is starting");
    h->cl = rl_rpc_client_new(rl_host_tls(h, &tls, 0), h->max_msg, err, errlen);
    if (!h->cl)
        goto fail_reg;

    if (rl_host_path(raftdir, sizeof raftdir, h->dir, "/raft") != 0 ||
        rl_host_path(boardpath, sizeof boardpath, h->dir, "/board") != 0) {
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
    rl_host_applier_init(h, &nc.applier);
    nc.log = node_log;
    nc.log_ctx = h;
    /* Where a client process reads whether this node leads, and its L,
    ** without a call (rl_host_client_begin). */
    nc.board_path = boardpath;
    /* Raft traffic in mutual TLS whenever the node has a certificate, its
    ** key and the CA: the same files as the sidecar (README "Security"). */
    if (h->id.tls_cert[0] && h->id.tls_key[0] && h->id.tls_ca[0]) {
        h->raft_tls.cert_file = h->id.tls_cert;
        h->raft_tls.key_file = h->id.tls_key;
        h->raft_tls.ca_file = h->id.tls_ca;
        h->raft_tls.raft_id_of = rl_raft_id_of;
        nc.raft_tls = &h->raft_tls;
    } else if (h->id.tls_cert[0]) {
        rl_host_log(
            h, 1,
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
    if (pthread_create(&h->gate_thread, NULL, rl_host_gate_main, h) != 0) {
        snprintf(err, errlen, "cannot start a thread");
        goto fail_reg;
    }
    h->gate_started = 1;
    rl_host_door_start(h);
    if (cfg->serve && cfg->serve(h, err, errlen) != 0)
        goto fail_reg;
    rl_host_log(h, 2, "node %s (raft %s, gRPC %s) hosts %s", h->id.node_id,
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

void rl_host_on_close(rl_host *h, void (*fn)(void *arg), void *arg)
{
    h->on_close = fn;
    h->on_close_arg = arg;
}

void rl_host_sidecar_config(const rl_host *h, rl_host_sidecar *out)
{
    memset(out, 0, sizeof *out);
    out->id = &h->id;
    out->db_path = h->db_path;
    out->grpc_adv = h->grpc_adv;
    out->max_msg_bytes = h->max_msg;
    out->workers = h->workers;
    out->grace_ms = h->grace_ms;
    out->max_call_ms = h->max_call_ms;
    out->max_stream_ms = h->max_stream_ms;
    out->stream_idle_ms = h->stream_idle_ms;
    out->max_client_calls = h->max_client_calls;
}
