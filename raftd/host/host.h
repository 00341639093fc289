/*
** raftd/host/host.h -- a replicated database's Raft node, hosted in this
** process (the stock shell with the extension loaded, or raftd).
**
** A host owns, for one database file: its stored identity
** ("<db>-raft/identity"), the host lock ("<db>-raft/host": one host per
** database on the machine), the Raft node (raftd/node/node.h) with its data in
** "<db>-raft/raft/", the applier (a private SQLite connection that writes
** committed entries through rl_vfs_apply), and the replicator port the VFS
** calls when a local writer commits. The gRPC sidecar is not the host's:
** ext/ and raftd/main.c start it after rl_host_open (raftd/api/sidecar.h),
** with the hooks below (rl_host_write_done, rl_host_propose_txn).
**
** The host must never let a local commit reach the file unless its entry
** took effect in the Raft log, and never apply an entry twice.
*/
#ifndef RL_HOST_H
#define RL_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "rpc.h"

struct rl_node;
struct sqlite3;
typedef struct rl_host rl_host;

/* What a host is started with. Strings are copied. */
typedef struct rl_host_config {
    const char *db_path;          /* the database file; made absolute */
    const char *node_id;          /* NULL: from the stored identity */
    const char *raft_addr;        /* "IP:port"; NULL: from the identity */
    const char *grpc_addr;        /* "host:port"; NULL: from the identity */
    int bootstrap;                /* form a one-node cluster if pristine */
    const char *join;             /* gRPC address of a member to ask, or NULL */
    const rl_rpc_tls *tls;        /* sidecar TLS (NULL: the stored one, if any).
                                     Server: cert/key (+ca, client_auth); client:
                                     ca to verify peers, cert/key for mutual TLS */
    unsigned election_timeout_ms; /* 0 = node default */
    unsigned heartbeat_timeout_ms;
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    int log_level;        /* 0 error .. 3 debug; messages go to stderr */
    size_t max_msg_bytes; /* sidecar message limit; 0 = 4 MiB */
    int workers;          /* sidecar calls served at once; 0 = 64 */
    int grace_ms;         /* sidecar drain time at close; 0 = 1000 */
    /* Sidecar call limits (rl_rpc_server_config): 0 = default. */
    int64_t max_call_ms, max_stream_ms, stream_idle_ms;
    int max_client_calls;
    /* Who may call what on the sidecar (raftd/api/auth.h): the auth file's
    ** path; NULL: the stored one, "": none. Stored with the identity. */
    const char *auth_file;
    /* Binding a non-loopback address without TLS: 1 allowed (a trusted
    ** private network: raftd -insecure, URI raft_insecure=1), -1 refused,
    ** 0 as stored (refused when never given). */
    int insecure;
    /* Starts what serves the node (the gRPC sidecar: raftd/api/sidecar.h
    ** rl_sidecar_start), called by rl_host_open once the node runs; its
    ** failure fails the open. NULL: nothing. The host never starts a
    ** sidecar of its own. */
    int (*serve)(rl_host *h, char *err, size_t errlen);
} rl_host_config;

struct rl_forward_txn;

/* Starts hosting cfg->db_path in this process. Fails with a message
** naming the cause (another process hosts it, no identity and no
** bootstrap/join, address in use, join refused...). */
int rl_host_open(const rl_host_config *cfg, rl_host **out, char *err,
                 size_t errlen);
/* Stops the sidecar (rl_host_on_close) and the node and frees the host. */
void rl_host_close(rl_host *h);
/* fn(arg) runs first when h closes, while its node still runs (the
** sidecar's stop). One per host; NULL removes it. */
void rl_host_on_close(rl_host *h, void (*fn)(void *arg), void *arg);
/* Stops every host of this process (atexit). */
void rl_host_close_all(void);

/* A log line of h (NULL: of no host) on stderr, at level 0 error ..
** 3 debug, shown when the host's log level allows it. */
void rl_host_log(const rl_host *h, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The host of db_path in this process, or NULL. */
rl_host *rl_host_find(const char *db_path);

/* Whether a host (this process or another) holds db_path's host lock;
** if so and pid/grpc are not NULL, who: the pid and gRPC address it
** wrote into "<db>-raft/host". */
int rl_host_running(const char *db_path, long *pid, char *grpc,
                    size_t grpc_len);

struct rl_node *rl_host_node(rl_host *h);
const char *rl_host_db_path(const rl_host *h);
/* This node's identity: raft id, string id, raft and gRPC addresses. */
void rl_host_self(const rl_host *h, struct rl_meta *out);
/* The client for node-to-node gRPC calls (channels cached). */
rl_rpc_client *rl_host_client(rl_host *h);
/* Highest index the database reflects (entries applied or skipped). */
uint64_t rl_host_applied(rl_host *h);

/* The replicator port of db_path (the VFS resolver returns it for every
** replicated database). Its ctx is the database's slot in this process,
** which names the host serving it here when there is one (set by
** rl_host_open, cleared at close): a connection keeps its port for life,
** and it serves the host of the moment. Without a host here the port
** works through the host of another process, or refuses writes. NULL only
** when out of memory. Slots are never freed (connections keep them). */
struct rl_port;
const struct rl_port *rl_host_port(const char *db_path);

/* What the sidecar of h serves with (raftd/api/sidecar.c): the identity
** (addresses, TLS, auth file) and the limits h was opened with. Pointers
** live as long as h. */
typedef struct rl_host_sidecar {
    const struct rl_identity *id;
    const char *db_path;
    const char *grpc_adv; /* the gRPC address peers dial */
    size_t max_msg_bytes;
    int workers, grace_ms;
    int64_t max_call_ms, max_stream_ms, stream_idle_ms;
    int max_client_calls;
} rl_host_sidecar;
void rl_host_sidecar_config(const rl_host *h, rl_host_sidecar *out);
/* The sidecar's TLS settings from h's identity, filled into *t: the
** server's (server 1: cert/key, and ca with client_auth for mutual TLS)
** or a client's to call peers (ca to verify, cert/key to present); NULL
** for plaintext. */
const rl_rpc_tls *rl_host_tls(const rl_host *h, rl_rpc_tls *t, int server);

/* A linearizable read's point for this node's readers (DESIGN 8): a
** quorum-confirmed commit index taken after the call began (*index) and
** the leader's L as of it (*L, may be NULL). Leading: the node's read
** barrier; else one ReadIndex round to the leader at a time, shared by
** this process's readers waiting when it starts. 0, or -1 with err. */
int rl_host_read_index(rl_host *h, unsigned tmo, uint64_t *index, uint64_t *L,
                       char *err, size_t errlen);
/* The same for n readers at once (the local door's round: door.c),
** counted as n read points. */
int rl_host_read_index_n(rl_host *h, unsigned n, unsigned tmo, uint64_t *index,
                         uint64_t *L, char *err, size_t errlen);
/* A read point from a barrier on the leader: an entry replicated at once,
** which tells every follower the commit index now (a follower's writer
** that learnt it is behind asks so: forward.c nudge_leader). 0, or -1. */
int rl_host_read_barrier(rl_host *h, unsigned tmo, uint64_t *index, uint64_t *L,
                         char *err, size_t errlen);
/* rl_host_read_index for a member that asked (a ReadIndex with its voter
** stamp): answered at once when the member and this leader are a
** majority of the voters in the member's term (fresh.c); a read point
** beyond known_commit (what the member knows committed) makes the node
** push its commit index to the followers now (rl_node_push_commit). */
int rl_host_read_index_for(rl_host *h, unsigned tmo, uint64_t voter_id,
                           uint64_t voter_term, uint64_t known_commit,
                           uint64_t *index, uint64_t *L, char *err,
                           size_t errlen);
/* rl_host_read_index, then wait until this node applied it: SQLITE_OK, or
** SQLITE_BUSY with err (retry: the node is cut off, or behind). */
int rl_host_read_point(rl_host *h, unsigned tmo, char *err, size_t errlen);
/* The leader's commit index and L as this node can tell at once (a
** hint, not a read point): its own when it leads, else asked of the
** leader (ReadIndex hint_only). 0, or -1 with err. */
int rl_host_leader_L(rl_host *h, unsigned tmo, uint64_t *commit, uint64_t *L,
                     char *err, size_t errlen);
/* What PRAGMA raft_status counts for this host's readers. */
struct rl_host_counts {
    uint64_t read_points; /* linearizable read points served */
    uint64_t read_rounds; /* quorum rounds for them: ReadIndex rounds asked
                             of the leader, read barriers run leading */
    uint64_t local_calls; /* requests of client processes at the local
                             door (raftd/host/door.c) */
    uint64_t forward_sessions; /* ForwardSession calls opened to the leader
                                  (peers.c): a follower's writes ride one */
};
void rl_host_counts(rl_host *h, struct rl_host_counts *out);
/* The sidecar's write_done hook, on the writer's thread after its COMMIT
** returned rc: the write's RL_OUTCOME_* with why for anything but
** APPLIED. A transaction that changed no page is confirmed with a read
** index first (DESIGN 8). */
int rl_host_write_done(rl_host *h, int rc, int64_t remaining_ms, char *why,
                       size_t whylen);
/* The sidecar's propose_txn hook: a transaction forwarded to this node
** (ForwardTxn), proposed with its origin (or relayed to the leader when
** this node does not lead). Returns an RL_OUTCOME_* with *index (0 if
** never appended) and why. */
int rl_host_propose_txn(rl_host *h, const struct rl_forward_txn *f,
                        int64_t remaining_ms, uint64_t *index, char *why,
                        size_t whylen);

/* Whether db_path is being set up by rl_host_bootstrap/join right now (a
** resolver must not restart its node meanwhile). */
int rl_host_setting_up(const char *db_path);

/* A write transaction of this thread on db_path that changed no page is
** about to commit: its answer (rows affected, values read) came from the
** local file, so it may be acknowledged only if this process hosts the
** node, the node proves with a read index that it still leads, and no
** entry took effect after the index its write lock saw (DESIGN 8). 0 if
** so, or if no node runs for db_path anywhere (nothing newer exists); -1
** with why saying what failed and what to do (another process hosts the
** node: this one cannot confirm). Blocks for up to one commit time limit. */
int rl_host_confirm_unchanged(const char *db_path, char *why, size_t whylen);

/* Makes the main database of db (an open connection of the raft VFS)
** replicated and starts its node: bootstrap (a one-node cluster whose
** initial state is the database as it is) or join (ask the member at
** cfg->join; the database must be empty). cfg->db_path is ignored (the
** connection's). On failure nothing is left behind: no "<db>-raft/", the
** database as it was. */
int rl_host_bootstrap(struct sqlite3 *db, const rl_host_config *cfg, char *err,
                      size_t errlen);

/* The Raft id of a string node id (64-bit FNV-1a, never 0): every node
** computes the same id from the same string, so no registry is needed. */
uint64_t rl_raft_id_of(const char *node_id);

/* Stored identity of a database, "<db>-raft/identity". */
typedef struct rl_identity {
    char node_id[RL_META_STR_MAX + 1];
    char raft_addr[RL_META_STR_MAX + 1];
    char grpc_addr[RL_META_STR_MAX + 1];
    /* TLS of the sidecar (PEM paths; "" = plaintext), kept so that a
    ** restart serves and calls as before. */
    char tls_cert[512];
    char tls_key[512];
    char tls_ca[512];
    int tls_client_auth;
    char auth_file[512]; /* "" = none (raftd/api/auth.h) */
    int insecure;        /* non-loopback addresses without TLS allowed */
} rl_identity;
/* 0 read, 1 none stored, -1 unreadable (err says why). */
int rl_identity_read(const char *db_path, rl_identity *id, char *err,
                     size_t errlen);
/* Writes id as db_path's identity (atomically, 0600): 0, or -1 with err. */
int rl_identity_write(const char *db_path, const rl_identity *id, char *err,
                      size_t errlen);
/* Parses the identity file's text (identity.c): 0, or -1 with err. */
int rl_identity_parse(const char *text, size_t len, rl_identity *id, char *err,
                      size_t errlen);
/* Largest identity file read. */
#define RL_IDENTITY_MAX 65536

#endif /* RL_HOST_H */
