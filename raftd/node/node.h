/*
** raftd/node/node.h -- raftlite's in-process Raft node: canonical/raft 0.15 on
** its own libuv loop thread, the FSM that decides every entry's verdict
** from the log alone, an applier thread that hands entries to a database
** (through struct rl_applier) in log order, snapshots as small manifests,
** membership and replicated cluster metadata.
**
** The node knows nothing of SQLite: a transaction is an opaque payload.
** Every function here may be called from any thread except the applier
** callbacks' own thread where noted; none of them waits without a limit,
** and every wait ends when the node stops.
*/
#ifndef RL_NODE_H
#define RL_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "err.h"

struct rl_transport_tls; /* transport.h */

struct rl_node;

/* The rl_node_* calls return an rl_err (lib/err.h): RL_OK, or
** RL_ERR_NOTLEADER  definite: not appended, or appended by a deposed
**                   leader and replaced: never commits;
** RL_ERR_UNKNOWN    appended (maybe): outcome unknown;
** RL_ERR_SHUTDOWN   definite: the node is stopping;
** RL_ERR_TIMEOUT    definite: the node did not take it in time;
** RL_ERR_INVALID    bad arguments; RL_ERR_NOMEM;
** RL_ERR_RAFT       Raft refused it (message in the result; res.detail
**                   may say why as a code).
** The RL_NODE_* names are the same codes under their old names, kept
** until every caller uses the RL_ERR_* ones. */
#define RL_NODE_OK        RL_OK
#define RL_NODE_NOTLEADER RL_ERR_NOTLEADER
#define RL_NODE_UNKNOWN   RL_ERR_UNKNOWN
#define RL_NODE_SHUTDOWN  RL_ERR_SHUTDOWN
#define RL_NODE_TIMEOUT   RL_ERR_TIMEOUT
#define RL_NODE_INVALID   RL_ERR_INVALID
#define RL_NODE_NOMEM     RL_ERR_NOMEM
#define RL_NODE_ERROR     RL_ERR_RAFT

/* Raft roles, same numbers as raft.h. */
#define RL_ROLE_STANDBY 0
#define RL_ROLE_VOTER   1
#define RL_ROLE_SPARE   2

/* Raft states, same numbers as raft.h. */
#define RL_STATE_UNAVAILABLE 0
#define RL_STATE_FOLLOWER    1
#define RL_STATE_CANDIDATE   2
#define RL_STATE_LEADER      3

/* One entry handed to the applier. payload is valid during the call only.
** kind is 0 for an entry that failed to decode (a no-op everywhere). */
struct rl_applied {
    uint64_t index;
    int kind;
    int effective; /* TXN: base == L; GENESIS: 1; others: 1; malformed 0 */
    uint64_t base;
    uint64_t origin_node;
    uint64_t origin_txn;
    uint32_t origin_pid;
    const void *payload;
    size_t len;
};

/*
** The database side of a node (the lead's SQLite applier; a fake in
** tests). Every callback but snapshot_ready runs on the node's applier
** thread, one at a time; snapshot_ready runs on a libuv threadpool thread,
** possibly while apply runs. None is ever called on the Raft loop thread.
*/
struct rl_applier {
    void *ctx;
    /* Apply one entry. Entries come in increasing index order, each at most
    ** once per node run, and only those above applied_index() as read when
    ** the applier thread starts or after a restore. Indexes have gaps
    ** (raft's own entries never reach the FSM). Must not fail: a database
    ** error is the applier's to retry or report. */
    void (*apply)(void *ctx, const struct rl_applied *e);
    /* Index durably applied by the database (may lag apply). Read when the
    ** applier thread starts and after each restore: entries at or below
    ** it are not handed to apply again. */
    uint64_t (*applied_index)(void *ctx);
    /* Wait until the database applied index >= A, make it durable, and
    ** return 0; nonzero on timeout (then no snapshot is taken this time).
    ** *db_size may be set (bytes). */
    int (*snapshot_ready)(void *ctx, uint64_t A, unsigned timeout_ms,
                          uint64_t *db_size);
    /* A snapshot was restored: return 1 if the database already satisfies
    ** it (applied index >= m->A), 0 if it needs an image. */
    int (*restore)(void *ctx, const struct rl_manifest *m);
    /* Fetch and install an image at index >= m->A from one of the peers
    ** m->members (the local node among them). Return 0 once installed
    ** (applied_index() >= m->A), nonzero to be called again after a pause.
    ** Entries after A wait in the node until it returns 0. */
    int (*need_image)(void *ctx, const struct rl_manifest *m);
};

/* Optional log sink; level 0 error, 1 warning, 2 info, 3 debug (one line
** per applied entry). Called from any of the node's threads, never with a
** node lock held. Default: errors and warnings to stderr. */
typedef void (*rl_node_log_fn)(void *ctx, int level, const char *msg);

struct rl_node_config {
    const char *dir;       /* Raft data dir; created if missing */
    uint64_t raft_id;      /* nonzero */
    const char *raft_addr; /* "IP:port" to listen and be reached on */
    const char *node_id;   /* users' string id (metadata) */
    const char *grpc_addr; /* opaque, for metadata; may be NULL */
    int bootstrap;         /* 1: bootstrap a one-voter cluster if pristine */
    unsigned election_timeout_ms;  /* 0 = 1000 */
    unsigned heartbeat_timeout_ms; /* 0 = 100 */
    unsigned snapshot_threshold;   /* entries before a snapshot; 0 = 1024 */
    unsigned snapshot_trailing;    /* entries kept after one; 0 = 128 */
    /* Bytes of entries since the last snapshot that force one at the next
    ** batch, and the bytes the trailing entries may hold (raft counts only
    ** entries and keeps them in memory). 0 = 64 MiB each. */
    uint64_t snapshot_threshold_bytes;
    uint64_t snapshot_trailing_bytes;
    unsigned snapshot_timeout_ms; /* wait for the applier; 0 = 10000 */
    size_t segment_size;          /* raft_uv open segment size; 0 = default */
    int no_pre_vote;              /* 1: disable raft's pre-vote (on) */
    int no_nodelay; /* 1: no TCP_NODELAY on Raft connections (bench only) */
    /* Mutual TLS on Raft traffic (transport.h); NULL: plaintext. Read at
    ** every transport start (the log reload restarts it): it must stay
    ** valid until rl_node_stop returns. */
    const struct rl_transport_tls *raft_tls;
    unsigned stop_wait_ms; /* rl_node_stop's wait for the applier; 2000 */
    unsigned install_snapshot_timeout_ms; /* retry a snapshot send; 2000 */
    struct rl_applier applier;
    rl_node_log_fn log;
    void *log_ctx;
    /* The board (board.c): a file where the loop posts this node's role
    ** and L for the other processes of this machine, before any writer
    ** hears of that L; rl_node_board_read reads it. NULL: none. */
    const char *board_path;
};

/* What a board says: RL_STATE_* and L as the node last published them. */
struct rl_node_board {
    int state;
    uint64_t L;
};

/* Reads the board at path (any process, no node needed): 0, or -1 when
** there is none or it cannot be read whole (the reader then asks the
** node's host instead). */
int rl_node_board_read(const char *path, struct rl_node_board *out);

/* Start a node; returns RL_OK and *out, or an error with a message in
** err. The node runs until rl_node_stop(). */
rl_err rl_node_start(const struct rl_node_config *cfg, struct rl_node **out,
                     char *err, size_t errlen);

/* Stop and free the node: pending proposals end UNKNOWN or SHUTDOWN, the
** loop thread is joined. The applier thread is joined if it leaves its
** callback within cfg.stop_wait_ms; otherwise it is detached and frees what it
** still uses when it returns. Never waits for a lock a client may hold;
** safe from an atexit handler. Calls already blocked in this node (propose,
** membership, wait_*) return SHUTDOWN or UNKNOWN and stay safe; no call
** may start once rl_node_stop has been called. */
void rl_node_stop(struct rl_node *n);

struct rl_proposal {
    uint8_t kind;        /* RL_ENTRY_TXN, GENESIS, META, NOOP, BARRIER */
    uint64_t base;       /* TXN: the writer's base index */
    uint64_t origin_txn; /* unique per (origin node, origin_pid) */
    uint32_t origin_pid;
    uint64_t origin_node; /* 0: this node; else the follower whose writer
                             forwarded the transaction (ForwardTxn) */
    const void *payload;
    size_t len;
};

struct rl_result {
    uint64_t index;        /* set when appended */
    int effective;         /* OK: the entry took effect */
    uint64_t leader_id;    /* NOTLEADER: the known leader, or 0 */
    char leader_addr[256]; /* NOTLEADER: its raft address, or "" */
    char msg[256];         /* why, for anything but OK */
    /* RL_ERR_RAFT: a finer code where there is one, else RL_OK:
    ** RL_ERR_CANTCHANGE  another membership change is under way (nothing
    **                    changed: wait for it and retry). */
    rl_err detail;
};

/* Propose an entry (origin node = this node) and wait until the FSM applied
** it, at most timeout_ms. Returns OK (see res->effective), NOTLEADER,
** UNKNOWN, SHUTDOWN, TIMEOUT (not taken by the loop in time: definitely not
** appended), INVALID, NOMEM or ERROR. Copies p->payload into the entry
** once; a caller that can write the payload itself proposes with
** rl_node_propose_entry instead, copying nothing. */
rl_err rl_node_propose(struct rl_node *n, const struct rl_proposal *p,
                       unsigned timeout_ms, struct rl_result *res);

/*
** An entry whose payload the caller writes in place: a buffer for a payload
** of payload_len bytes, at rl_node_entry_payload(entry), from Raft's
** allocator (raft_apply takes such buffers over). NULL when out of memory
** or above RL_ENTRY_MAX_PAYLOAD. The caller owns it until it hands it to
** rl_node_propose_entry, or frees it with rl_node_entry_free.
*/
void *rl_node_entry_alloc(size_t payload_len);
void rl_node_entry_free(void *entry); /* NULL-safe */
static inline uint8_t *rl_node_entry_payload(void *entry)
{
    return (uint8_t *)entry + RL_ENTRY_HDR_SIZE;
}

/*
** rl_node_propose for an entry from rl_node_entry_alloc(p->len) whose
** payload the caller wrote (p->payload is ignored): the node writes the
** header, padding and checksum around it and proposes it; same answers.
** Takes entry over on every path, success or failure: it is freed exactly
** once, by the node or by raft; the caller must not touch it after the
** call.
*/
rl_err rl_node_propose_entry(struct rl_node *n, const struct rl_proposal *p,
                             void *entry, unsigned timeout_ms,
                             struct rl_result *res);

/* Membership, on the leader. add: raft_add then raft_assign(role) unless
** the role is spare; if meta is not NULL also propose it as a META entry.
** assign, remove, transfer (to == 0: any voter). Each waits for the change
** to commit (transfer: for the callback of raft_transfer, then checks). */
rl_err rl_node_add(struct rl_node *n, uint64_t id, const char *raft_addr,
                   int role, const struct rl_meta *meta, unsigned timeout_ms,
                   struct rl_result *res);
rl_err rl_node_assign(struct rl_node *n, uint64_t id, int role,
                      unsigned timeout_ms, struct rl_result *res);
rl_err rl_node_remove(struct rl_node *n, uint64_t id, unsigned timeout_ms,
                      struct rl_result *res);
rl_err rl_node_transfer(struct rl_node *n, uint64_t to, unsigned timeout_ms,
                        struct rl_result *res);

/* Change the snapshot policy of this node at run time (0 = unchanged);
** same meaning as the config fields. OK, SHUTDOWN or TIMEOUT. */
rl_err rl_node_set_snapshot(struct rl_node *n, unsigned threshold,
                            unsigned trailing, uint64_t threshold_bytes,
                            uint64_t trailing_bytes, unsigned timeout_ms);

/* A write lease for follower raft_id (raftd/node/lease.c), on the leader:
** until *ms from now (the follower counts it from when it asked), the
** leader answers no proposal before raft_id stored its entry. NOTLEADER
** on a node that does not lead (or not yet ready), INVALID for a member
** that is not a voter or standby near the commit index, NOMEM when every
** slot holds a live lease. Any thread. */
rl_err rl_node_lease_grant(struct rl_node *n, uint64_t raft_id, unsigned *ms);

/* Linearizable read point (DESIGN 8), on the leader: a raft barrier that
** a quorum confirmed, issued after this call began and shared by the calls
** waiting at that moment. On OK, res->index is at least the commit index
** as of the call and this node's FSM applied it: wait for the database
** with rl_node_wait_applied(res->index), then read locally. NOTLEADER on a
** follower or a deposed leader (forward to the leader, then wait for that
** index here), TIMEOUT, SHUTDOWN. */
rl_err rl_node_read_index(struct rl_node *n, unsigned timeout_ms,
                          struct rl_result *res);

/* A read start on the leader (raftd/node/confirm.c): the read is
** linearizable at index once `need` of `voters` (the other voters of the
** configuration) answered rl_node_term == term after this call. */
#define RL_READ_VOTERS 16
struct rl_read_begin {
    uint64_t term;
    uint64_t index; /* read point: the last FSM entry applied (wait for the
                       database with rl_node_wait_applied) */
    uint64_t L;     /* last database-changing entry as of the call */
    unsigned need;  /* answers needed from the voters below */
    unsigned n_voters;
    uint64_t voters[RL_READ_VOTERS]; /* raft ids, this node excluded,
                                        recently heard from first */
};
/* OK with *rb; NOTLEADER on a node that does not lead (or stores a newer
** term than it led in); BUSY when the read needs the barrier path
** (rl_node_read_index): not ready yet, not a voter itself, too many
** voters; SHUTDOWN. Any thread; never waits. */
rl_err rl_node_read_begin(struct rl_node *n, struct rl_read_begin *rb);
/* On the leader: replicate the commit index to every follower now rather
** than at the next heartbeat (a barrier, one in flight at a time), for a
** follower that must apply a read point the leader just gave it. Does
** nothing on a follower. Any thread; never waits. */
void rl_node_push_commit(struct rl_node *n);
/* The highest term this node stored (or is storing): what it answers a
** leader confirming a read. Never older than raft's. Any thread. */
uint64_t rl_node_term(struct rl_node *n);

struct rl_node_status {
    uint64_t raft_id;
    int state; /* RL_STATE_* */
    int ready; /* leader whose barrier applied: proposing */
    uint64_t term;
    uint64_t leader_id; /* 0 if unknown */
    char leader_addr[256];
    uint64_t commit_index;
    uint64_t last_index;
    uint64_t fsm_applied;    /* raft_last_applied */
    uint64_t fsm_index;      /* last entry that went to the FSM (raft's own
                                configuration and barrier entries never do) */
    uint64_t start_index;    /* last log index when the node started: what
                                it may have applied before a restart */
    uint64_t L;              /* last database-changing effective entry */
    uint64_t applier_index;  /* highest index handed to (or held by) the
                                applier */
    uint64_t snapshot_index; /* last snapshot taken or restored */
    unsigned snapshots_taken;
    unsigned snapshots_failed;
    unsigned restores;
    uint64_t log_reloads;   /* Raft log reopened after a failed write */
    unsigned read_barriers; /* barriers issued for rl_node_read_index */
    int need_image;         /* waiting for an image at need_image_A */
    uint64_t need_image_A;
    uint64_t queue_bytes;       /* payload bytes waiting for the applier */
    unsigned leader_contact_ms; /* follower: ms since the leader was heard */
    uint64_t leases_granted;    /* leader: write leases granted (lease.c) */
    uint64_t lease_waits;       /* leader: answers that waited for a holder */
};
void rl_node_status(struct rl_node *n, struct rl_node_status *st);

struct rl_member {
    uint64_t raft_id;
    int role;      /* RL_ROLE_* */
    int is_leader; /* the leader as this node knows it */
    char raft_addr[256];
    int has_meta;
    struct rl_meta meta;  /* replicated metadata, if has_meta */
    uint64_t match_index; /* on the leader; else 0 */
    int recent_contact;   /* on the leader: 1 if heard within an
                             election timeout, 0 if not; elsewhere -1 */
};
/* The current configuration joined with the metadata table. *out is
** malloc'ed (free() it). Members that only have metadata (not in the
** configuration) are not listed. */
rl_err rl_node_members(struct rl_node *n, struct rl_member **out,
                       unsigned *count);
/* Replicated metadata of a raft id, or of a string node id (id == 0).
** Returns RL_OK or RL_ERR_INVALID if unknown. */
rl_err rl_node_meta(struct rl_node *n, uint64_t id, const char *node_id,
                    struct rl_meta *out);
/* Is this node's own metadata in the replicated table and current? The
** gRPC side forwards rl_node_self_meta() to the leader when it is not. */
int rl_node_meta_current(struct rl_node *n);
void rl_node_self_meta(struct rl_node *n, struct rl_meta *out);

/* Wait until the applier's apply() returned for index or a later one (or
** the database already held them), at most timeout_ms. OK, TIMEOUT or
** SHUTDOWN. */
rl_err rl_node_wait_applied(struct rl_node *n, uint64_t index,
                            unsigned timeout_ms);
/* Wait until some node is known as leader (this one: ready), at most
** timeout_ms; OK or TIMEOUT. */
rl_err rl_node_wait_leader(struct rl_node *n, unsigned timeout_ms);

/* A sentence for a person reading a log line or an answer. */
const char *rl_node_strerror(rl_err rc);

#endif /* RL_NODE_H */
