/*
** raftd/main.c -- the raftd daemon: hosts one raftlite node without a
** shell. It parses the node's flags and opens the node's database
** (<data>/<id>/<db>, as the PoC's data/<nodeID>/sqlite.db). With
** -bootstrap or -join, or when the database already is a node, it hosts
** the node (raftd/host/host.h: Raft, applier) with its gRPC sidecar
** (raftd/api/sidecar.h); restarting with the same flags resumes it. Without
*either it serves the gRPC API on the
** local database alone (standalone).
**
** Flags are Go-style, like the PoC's: "-flag value", "-flag=value", and the
** same with "--". A bad flag prints the usage and exits 2. SIGTERM and
** SIGINT stop the server gracefully: no new calls, calls in flight drain.
** It must never fork after the gRPC library started (grpc's own threads).
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "auth.h"
#include "host.h"
#include "sidecar.h"
#include "rpc.h"
#include "service.h"
#include "vfs.h"

#include <sqlite3.h>

typedef struct opts {
    const char *id, *grpc, *raft, *data, *join, *db, *log_level;
    const char *tls_cert, *tls_key, *tls_ca, *auth;
    int bootstrap, tls_client_auth, insecure;
    long max_msg, workers, grace_ms;
    long max_call_ms, max_stream_ms, stream_idle_ms, max_client_calls;
} opts;

static const char usage_text[] =
    "usage: raftd -id NAME [flags]\n"
    "  -id NAME            node id (required)\n"
    "  -grpc ADDR          gRPC listen address HOST:PORT (default "
    "127.0.0.1:50051);\n"
    "                      ':PORT' means every interface (0.0.0.0:PORT), as "
    "in the PoC\n"
    "  -raft ADDR          Raft address IP:PORT (needed with "
    "-bootstrap/-join)\n"
    "  -data DIR           data directory (default ./data); the database is\n"
    "                      DIR/<id>/<db>\n"
    "  -db NAME            database file name (default sqlite.db)\n"
    "  -join ADDR          gRPC address of a member to join\n"
    "  -bootstrap          start a new cluster with this node\n"
    "  -log-level LEVEL    debug, info, warn or error (default info)\n"
    "  -tls-cert FILE      server certificate (PEM); enables TLS\n"
    "  -tls-key FILE       server private key (PEM)\n"
    "  -tls-ca FILE        CA (PEM) that signs client and node certificates;\n"
    "                      with -tls-cert, Raft traffic runs in mutual TLS\n"
    "                      (the certificate needs URI:raftlite:node:<id>)\n"
    "  -tls-client-auth    require client certificates (mutual TLS)\n"
    "  -auth FILE          users, certificates and their permissions (README\n"
    "                      \"Security\"); mode 600\n"
    "  -insecure           allow -grpc/-raft addresses other than loopback\n"
    "                      without TLS: for a trusted private network only\n"
    "  -max-msg-bytes N    largest gRPC message in or out (default 4194304)\n"
    "  -workers N          calls served at once (default 64; each follower "
    "keeps one\n"
    "                      busy with its forward session while it writes)\n"
    "  -grace-ms N         drain time on SIGTERM before cancelling (default "
    "5000)\n"
    "  -max-call-ms N      longest a unary call may run, whatever the client's "
    "deadline\n"
    "                      (default 30000)\n"
    "  -max-stream-ms N    longest a streaming call (FetchImage, ForwardTxn) "
    "may run\n"
    "                      (default 3600000)\n"
    "  -stream-idle-ms N   longest wait for one message in or out of a call "
    "(default\n"
    "                      30000; a quiet forward session ends sooner, 15000)\n"
    "  -max-client-calls N calls one client (TLS identity or IP address) may "
    "have in\n"
    "                      service at once (default: -workers less an eighth, "
    "at least 1)\n"
    "Flags take the forms -flag value, -flag=value, --flag value, "
    "--flag=value.\n";

static int loglevel = 1; /* 0 debug, 1 info, 2 warn, 3 error */

static void logf_(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    va_list ap;
    if (level < loglevel) {
        return;
    }
    fprintf(stderr, "raftd: %s: ", names[level]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    fputs("raftd: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    return 2;
}

static int parse_long(const char *flag, const char *v, long lo, long hi,
                      long *out)
{
    char *end;
    long n;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        return bad("-%s needs a whole number from %ld to %ld, got '%s'", flag,
                   lo, hi, v);
    }
    *out = n;
    return 0;
}

static int parse_bool(const char *flag, const char *v, int *out)
{
    if (!v || !strcmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
    } else if (!strcmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
    } else {
        return bad("-%s is a switch: give it alone or as -%s=true/false", flag,
                   flag);
    }
    return 0;
}

static int known_valued(const char *name)
{
    static const char *const names[] = {
        "id",
        "grpc",
        "raft",
        "data",
        "join",
        "db",
        "log-level",
        "tls-cert",
        "tls-key",
        "tls-ca",
        "auth",
        "max-msg-bytes",
        "workers",
        "grace-ms",
        "max-call-ms",
        "max-stream-ms",
        "stream-idle-ms",
        "max-client-calls",
    };
    size_t i;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(name, names[i])) {
            return 1;
        }
    }
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    char err[512];
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char name[64];
        const char *eq;
        size_t n;
        if (a[0] != '-' || !a[1]) {
            return bad("unexpected argument '%s'", a);
        }
        a += a[1] == '-' ? 2 : 1;
        eq = strchr(a, '=');
        n = eq ? (size_t)(eq - a) : strlen(a);
        if (n == 0 || n >= sizeof(name)) {
            return bad("bad flag '%s'", argv[i]);
        }
        memcpy(name, a, n);
        name[n] = 0;
        if (eq) {
            val = eq + 1;
        }
        if (!strcmp(name, "h") || !strcmp(name, "help")) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (!strcmp(name, "bootstrap")) {
            if (parse_bool(name, val, &o->bootstrap)) {
                return 2;
            }
            continue;
        }
        if (!strcmp(name, "insecure")) {
            if (parse_bool(name, val, &o->insecure)) {
                return 2;
            }
            continue;
        }
        if (!strcmp(name, "tls-client-auth")) {
            if (parse_bool(name, val, &o->tls_client_auth)) {
                return 2;
            }
            continue;
        }
        if (!known_valued(name)) {
            return bad("unknown flag -%s", name);
        }
        if (!val) {
            if (i + 1 >= argc) {
                return bad("flag -%s needs a value", name);
            }
            val = argv[++i];
        }
        if (!strcmp(name, "id")) {
            o->id = val;
        } else if (!strcmp(name, "grpc")) {
            o->grpc = val;
        } else if (!strcmp(name, "raft")) {
            o->raft = val;
        } else if (!strcmp(name, "data")) {
            o->data = val;
        } else if (!strcmp(name, "join")) {
            o->join = val;
        } else if (!strcmp(name, "db")) {
            o->db = val;
        } else if (!strcmp(name, "log-level")) {
            o->log_level = val;
        } else if (!strcmp(name, "tls-cert")) {
            o->tls_cert = val;
        } else if (!strcmp(name, "tls-key")) {
            o->tls_key = val;
        } else if (!strcmp(name, "tls-ca")) {
            o->tls_ca = val;
        } else if (!strcmp(name, "auth")) {
            o->auth = val;
        } else if (!strcmp(name, "max-msg-bytes")) {
            if (parse_long(name, val, 1024, INT_MAX, &o->max_msg)) {
                return 2;
            }
        } else if (!strcmp(name, "workers")) {
            if (parse_long(name, val, 1, 4096, &o->workers)) {
                return 2;
            }
        } else if (!strcmp(name, "grace-ms")) {
            if (parse_long(name, val, 0, 3600000, &o->grace_ms)) {
                return 2;
            }
        } else if (!strcmp(name, "max-call-ms")) {
            if (parse_long(name, val, 1, 86400000, &o->max_call_ms)) {
                return 2;
            }
        } else if (!strcmp(name, "max-stream-ms")) {
            if (parse_long(name, val, 1, 604800000, &o->max_stream_ms)) {
                return 2;
            }
        } else if (!strcmp(name, "stream-idle-ms")) {
            if (parse_long(name, val, 1, 86400000, &o->stream_idle_ms)) {
                return 2;
            }
        } else if (!strcmp(name, "max-client-calls")) {
            if (parse_long(name, val, 1, 4096, &o->max_client_calls)) {
                return 2;
            }
        } else {
            return bad("unknown flag -%s", name);
        }
    }
    if (!o->id || !o->id[0]) {
        return bad("-id is required");
    }
    if (rl_node_id_check(o->id, RL_META_STR_MAX, "-id", err, sizeof err) !=
        0) {
        return bad("%s", err);
    }
    if (!o->db[0] || strchr(o->db, '/') || !strcmp(o->db, ".") ||
        !strcmp(o->db, "..")) {
        return bad("-db '%s' must be a plain file name", o->db);
    }
    if (!strcmp(o->log_level, "debug")) {
        loglevel = 0;
    } else if (!strcmp(o->log_level, "info")) {
        loglevel = 1;
    } else if (!strcmp(o->log_level, "warn")) {
        loglevel = 2;
    } else if (!strcmp(o->log_level, "error")) {
        loglevel = 3;
    } else {
        return bad("-log-level must be debug, info, warn or error, not '%s'",
                   o->log_level);
    }
    if (!o->tls_cert != !o->tls_key) {
        return bad("-tls-cert and -tls-key go together");
    }
    if ((o->tls_ca || o->tls_client_auth) && !o->tls_cert) {
        return bad("-tls-ca and -tls-client-auth need -tls-cert and -tls-key");
    }
    if (o->bootstrap && o->join) {
        return bad("-bootstrap and -join exclude each other: -bootstrap "
                   "starts a new cluster, -join ADDR joins the cluster of "
                   "the member at ADDR; give one");
    }
    if (rl_addr_check(o->grpc, RL_ADDR_GRPC, "-grpc", err, sizeof err) != 0 ||
        (o->raft[0] &&
         rl_addr_check(o->raft, RL_ADDR_RAFT, "-raft", err, sizeof err) != 0) ||
        (o->join &&
         rl_addr_check(o->join, RL_ADDR_GRPC, "-join", err, sizeof err) != 0)) {
        return bad("%s", err);
    }
    if (o->tls_client_auth && !o->tls_ca) {
        return bad("-tls-client-auth needs -tls-ca (the CA that signs client "
                   "certificates)");
    }
    /* Safe by default: an address others can reach needs TLS (Raft's
    ** needs the CA too: without it Raft stays plaintext), or the
    ** operator's -insecure (a trusted private network). */
    if (rl_addr_exposed_check(o->grpc, "-grpc", o->tls_cert != NULL,
                              o->insecure, "-insecure", err, sizeof err) ||
        (o->raft[0] &&
         rl_addr_exposed_check(o->raft, "-raft",
                               o->tls_cert != NULL && o->tls_ca != NULL,
                               o->insecure, "-insecure", err, sizeof err))) {
        logf_(3, "%s", err);
        return 1;
    }
    return 0;
}

static int mkdir_p(const char *dir)
{
    char buf[PATH_MAX];
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            buf[i] = c;
        }
    }
    return 0;
}

/*
** A path raftd keeps data in must be what it seems: not a symlink (one
** planted at DATA/ID would send the node's files elsewhere) and owned by
** this user. must_exist: a directory raftd just made. Returns 0, or 1
** after saying which path and why.
*/
static int private_path(const char *path, int must_exist)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (!must_exist && errno == ENOENT) {
            return 0;
        }
        logf_(3, "cannot inspect %s: %s", path, strerror(errno));
        return 1;
    }
    if (S_ISLNK(st.st_mode)) {
        logf_(3,
              "%s is a symbolic link; raftd keeps its data only in real "
              "files and directories: remove the link (or choose another "
              "-data)",
              path);
        return 1;
    }
    if (st.st_uid != geteuid()) {
        logf_(3,
              "%s is owned by user %ld, not by this user (%ld); raftd "
              "refuses data another user controls: fix the owner or choose "
              "another -data",
              path, (long)st.st_uid, (long)geteuid());
        return 1;
    }
    return 0;
}

static const struct rl_port *raftd_resolver(const char *db_path)
{
    return rl_host_port(db_path);
}

/*
** Hosts the node of the database at path until SIGTERM/SIGINT: resumes a
** stored node (whatever -bootstrap/-join say: restarting with the same
** flags resumes), or bootstraps / joins a new one.
*/
static int host_main(const opts *o, const char *path, sigset_t *set)
{
    sqlite3 *db = NULL;
    rl_host_config cfg;
    rl_rpc_tls tls;
    rl_host *h = NULL;
    rl_identity id;
    char err[1024];
    int sig, r, rc = 1;

    if (!o->raft || !o->raft[0]) {
        return bad("-raft IP:PORT is needed to run a cluster node");
    }
    if (rl_vfs_register(1, raftd_resolver) != SQLITE_OK ||
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        logf_(3, "cannot open %s: %s", path,
              db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return 1;
    }
    sqlite3_busy_timeout(db, 10000);
    memset(&cfg, 0, sizeof cfg);
    if (o->tls_cert) {
        memset(&tls, 0, sizeof tls);
        tls.cert_file = o->tls_cert;
        tls.key_file = o->tls_key;
        tls.ca_file = o->tls_ca;
        tls.client_auth = o->tls_client_auth;
        cfg.tls = &tls;
    }
    cfg.node_id = o->id;
    cfg.raft_addr = o->raft;
    cfg.grpc_addr = o->grpc;
    cfg.log_level = loglevel == 0   ? 3
                    : loglevel == 1 ? 2
                    : loglevel == 2 ? 1
                                    : 0;
    cfg.max_msg_bytes = (size_t)o->max_msg;
    cfg.workers = (int)o->workers;
    cfg.grace_ms = (int)o->grace_ms;
    cfg.max_call_ms = o->max_call_ms;
    cfg.max_stream_ms = o->max_stream_ms;
    cfg.stream_idle_ms = o->stream_idle_ms;
    cfg.max_client_calls = (int)o->max_client_calls;
    /* Flags state them every start: they replace the stored ones. */
    cfg.auth_file = o->auth ? o->auth : "";
    cfg.insecure = o->insecure ? 1 : -1;
    cfg.db_path = sqlite3_db_filename(db, "main");
    cfg.serve = rl_sidecar_start; /* the daemon's gRPC sidecar */
    r = rl_identity_read(cfg.db_path, &id, err, sizeof err);
    if (r < 0) {
        logf_(3, "%s", err);
        goto out;
    }
    if (r == 0) {
        logf_(1, "resuming node %s of %s", id.node_id, cfg.db_path);
        if (rl_host_open(&cfg, &h, err, sizeof err) != 0) {
            logf_(3, "cannot resume the node: %s", err);
            goto out;
        }
    } else {
        cfg.bootstrap = o->bootstrap;
        cfg.join = o->bootstrap ? NULL : o->join;
        if (rl_host_bootstrap(db, &cfg, err, sizeof err) != 0) {
            logf_(3, "cannot %s: %s", cfg.join ? "join" : "bootstrap", err);
            h = rl_host_find(cfg.db_path);
            goto out;
        }
        h = rl_host_find(cfg.db_path);
    }
    logf_(1, "node %s serving gRPC on %s (%s) with database %s, raft %s", o->id,
          o->grpc,
          o->tls_cert ? (o->tls_client_auth ? "mutual TLS" : "TLS")
                      : "plaintext",
          cfg.db_path, o->raft);
    do {
        r = sigwait(set, &sig);
    } while (r == EINTR);
    logf_(1, "signal %d: stopping the node", sig);
    rc = 0;
out:
    if (h)
        rl_host_close(h);
    sqlite3_close(db);
    if (rc == 0)
        logf_(1, "stopped");
    return rc;
}

int main(int argc, char **argv)
{
    opts o = {.grpc = "127.0.0.1:50051",
              .raft = "",
              .data = "./data",
              .db = "sqlite.db",
              .log_level = "info",
              .max_msg = 4 << 20,
              .workers = 64,
              .grace_ms = 5000};
    char dir[PATH_MAX], path[PATH_MAX], addr[300], err[512];
    rl_service_config sc;
    rl_rpc_server_config rc;
    rl_rpc_tls tls = {0};
    rl_service *svc;
    rl_rpc_server *srv;
    rl_auth *auth = NULL;
    sigset_t set;
    int sig, port, r;

    if ((r = parse_args(argc, argv, &o)) != 0) {
        return r;
    }
    if (snprintf(dir, sizeof(dir), "%s/%s", o.data, o.id) >= (int)sizeof(dir) ||
        snprintf(path, sizeof(path), "%s/%s", dir, o.db) >= (int)sizeof(path)) {
        return bad("-data path too long");
    }
    if (rl_rpc_listen_addr(o.grpc, addr, sizeof(addr)) != 0) {
        return bad("-grpc address too long");
    }
    /* Everything raftd creates is private: data directories 0700, files
    ** (database, WAL, Raft log, identity) 0600. */
    umask(077);
    if (mkdir_p(dir) != 0) {
        logf_(3, "cannot create data directory %s: %s", dir, strerror(errno));
        return 1;
    }
    if (private_path(dir, 1) != 0 || private_path(path, 0) != 0) {
        return 1;
    }
    /* Made by an older raftd with another umask: closed now, since
    ** everything of the node lies below it. */
    if (chmod(dir, 0700) != 0) {
        logf_(3, "cannot make %s private: %s", dir, strerror(errno));
        return 1;
    }
    {
        char raftdir[PATH_MAX + 8];
        snprintf(raftdir, sizeof raftdir, "%s-raft", path);
        if (private_path(raftdir, 0) != 0) {
            return 1;
        }
    }
    /* Block the stop signals before any thread exists, so that every
    ** thread (grpc's included) inherits the mask and sigwait gets them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* An ignored signal is discarded, never seen by sigwait: a raftd
    ** started with SIGINT ignored (a background job of a shell script)
    ** must still stop on it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    {
        /* A database that is a node (or becomes one) is hosted. */
        char idpath[PATH_MAX + 16];
        struct stat st;
        snprintf(idpath, sizeof idpath, "%s-raft/identity", path);
        if (o.bootstrap || o.join || stat(idpath, &st) == 0)
            return host_main(&o, path, &set);
    }

    memset(&sc, 0, sizeof(sc));
    sc.node_id = o.id;
    sc.grpc_addr = o.grpc;
    sc.raft_addr = o.raft;
    sc.db_path = path;
    sc.max_msg_bytes = (size_t)o.max_msg;
    svc = rl_service_open(&sc, err, sizeof(err));
    if (!svc) {
        logf_(3, "%s", err);
        return 1;
    }
    if (o.auth && rl_auth_load(o.auth, &auth, err, sizeof err) != 0) {
        logf_(3, "%s", err);
        rl_service_close(svc);
        return 1;
    }
    rl_service_set_auth(svc, auth, o.tls_cert && o.tls_client_auth);
    memset(&rc, 0, sizeof(rc));
    tls.cert_file = o.tls_cert;
    tls.key_file = o.tls_key;
    tls.ca_file = o.tls_ca;
    tls.client_auth = o.tls_client_auth;
    rc.addr = addr;
    rc.tls = &tls;
    rc.max_msg_bytes = (size_t)o.max_msg;
    rc.max_workers = (int)o.workers;
    rc.max_call_ms = o.max_call_ms;
    rc.max_stream_ms = o.max_stream_ms;
    rc.stream_idle_ms = o.stream_idle_ms;
    rc.max_client_calls = (int)o.max_client_calls;
    srv = rl_rpc_server_new(&rc, err, sizeof(err));
    if (!srv) {
        logf_(3, "%s", err);
        rl_service_close(svc);
        rl_auth_free(auth);
        return 1;
    }
    if (rl_service_register(svc, srv) != 0 ||
        (port = rl_rpc_server_start(srv, err, sizeof(err))) < 0) {
        logf_(3, "cannot start the gRPC server: %s", err);
        rl_rpc_server_free(srv, 0);
        rl_service_close(svc);
        rl_auth_free(auth);
        return 1;
    }
    logf_(1, "node %s serving gRPC on %s (%s) with database %s", o.id, addr,
          o.tls_cert ? (o.tls_client_auth ? "mutual TLS" : "TLS") : "plaintext",
          path);
    do {
        r = sigwait(&set, &sig);
    } while (r == EINTR);
    logf_(1, "signal %d: draining calls (grace %ld ms)", sig, o.grace_ms);
    rl_rpc_server_free(srv, (int)o.grace_ms);
    rl_service_close(svc);
    rl_auth_free(auth);
    logf_(1, "stopped");
    return 0;
}
