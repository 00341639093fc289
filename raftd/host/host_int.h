/*
** raftd/host/host_int.h -- what the files of raftd/host/ share: the host's
** struct, its constants, and the functions one file of the room calls in
** another. Private to raftd/host/: nothing outside the room may include
** it (host.h is the interface).
**
** The files: base.c (the room's base: log, paths, accessors, the state
** under h->mu; it calls no other file here), host.c (open, close,
** registry, host lock), identity.c (the
** stored identity), replicator.c (the port: begin, commit, end; a
** follower's transaction forwarded to the leader; the sidecar's
** propose hook), client.c (the port in a process that does not host the
** node, through the host's local door or gRPC), door.c (the local door
** a host serves its client processes on; doormsg.c its messages),
** forward.c (a writer's way to the leader: the hint before its write
** lock, ForwardTxn), fresh.c (read points and the confirmation of a write
** that changed nothing), applier.c (the node's applier callbacks), rebuild.c
** (open of the applier connection, rebuild, image install), gate.c (the
** read gate thread), setup.c (bootstrap and join), image_fetch.c and
** image_rx.c (the FetchImage client).
*/
#ifndef RL_HOST_INT_H
#define RL_HOST_INT_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "peers.h" /* the calls to peers */
#include "host.h"
#include "node.h"
#include "transport.h"
#include "vfs.h"

#include "sqlite3ext.h"

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
    uint64_t raft_id;
    struct rl_transport_tls raft_tls; /* Raft mTLS (node config points here) */
    int host_fd; /* "<db>-raft/host", flock'ed exclusively */
    int log_level;
    size_t max_msg;
    /* The sidecar's settings, kept for rl_host_sidecar_config. */
    int workers, grace_ms;
    int64_t max_call_ms, max_stream_ms, stream_idle_ms;
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
    /* The highest index of the writes this host acknowledged itself: its
    ** own writers' (once they wrote their frames) and those it relayed for
    ** its client processes (whose writers write them next). Once the file
    ** has it, it has every entry up to it (their verdicts: nothing took
    ** effect between their bases and them). Under mu. */
    uint64_t own_index;
    /* This node's write lease from the leader (forward.c, lease_covers):
    ** trusted until lease_until (CLOCK_MONOTONIC ms: half the lease; 0 =
    ** none) while the leader and term are the same. The writes
    ** acknowledged before it was granted are those up to lease_L. */
    int64_t lease_until;
    uint64_t lease_leader, lease_term, lease_L;
    struct local_txn *local;
    uint64_t next_txn;
    /* Linearizable read points served and the ReadIndex rounds asked of
    ** the leader for them (fresh.c): PRAGMA raft_status; atomics. */
    uint64_t read_points, read_rounds;
    /* fresh.c leader_point: until when (CLOCK_MONOTONIC ms) a leader's
    ** read points take a barrier without asking its voters first, after
    ** a confirmation no majority answered; atomic. */
    int64_t confirm_off_until;
    /* Requests its client processes made at the local door (door.c):
    ** PRAGMA raft_status; atomic. */
    uint64_t door_calls;
    struct rl_door *door; /* the local door (door.c), NULL if none */
    /* Read rounds (fresh.c rl_host_read_index): one read point at a
    ** time (the leader's round, or a ReadIndex asked of the leader), its
    ** answer shared by every reader that was waiting when it started.
    ** rr_cv uses CLOCK_MONOTONIC. */
    pthread_mutex_t rr_mu;
    pthread_cond_t rr_cv;
    uint64_t rr_started, rr_done; /* rounds begun, rounds ended */
    int rr_running;
    int rr_rc;               /* the last ended round's: 0 or -1 */
    uint64_t rr_index, rr_L; /* its read point and the leader's L */
    char rr_err[1400];       /* its reason when it failed */
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
    /* What rl_host_on_close registered (the sidecar): run first at close,
    ** while the node still runs. */
    void (*on_close)(void *arg);
    void *on_close_arg;
    struct rl_host_port *port; /* its database's port slot (host.c) */
    rl_host *next;             /* registry */
};

/* ---- base.c: the room's base (calls no other file of the room) ---- */

/* "<a><b>" into out: 0, or -1 when it does not fit. */
int rl_host_path(char *out, size_t n, const char *a, const char *b);

/*
** A database's port slot: the port connections to it keep (ctx = the
** slot), and the host of this process serving it now. One per database
** path, made at its first resolve or host open, kept for the process's
** life: a connection may outlive a host and see the next one.
*/
struct rl_host_port {
    rl_port port;
    char *db_path;
    rl_host *h; /* written under host.c's reg_mu, read with __atomic_load_n */
    struct rl_host_port *next;
};

/* The host a port slot names now (NULL: none in this process). */
rl_host *rl_host_port_host(void *slot);
/* The database reflects index (db_changed: a database-changing one). */
void rl_host_advance(rl_host *h, uint64_t index, int db_changed);
int rl_host_stopping(rl_host *h);
/* 1 once h->node is set, 0 if the host stops first. */
int rl_host_wait_node(rl_host *h);
/* A read on the applier connection: opens the WAL, runs recovery. */
int rl_host_applier_read(rl_host *h);

/* replicator.c */
/* Fills port with the replicator's functions, with ctx (a port slot). */
void rl_host_port_init(rl_port *port, void *ctx);
/* What this thread's writer learnt about its write transaction (the port
** fills it, fresh.c's write_done reads it). */
struct rl_writer_state {
    int began;     /* port begin ran for the current write lock */
    uint64_t base; /* the applied index it saw */
    int committed; /* port commit ran */
    int outcome;   /* RL_OUTCOME_* of that commit */
    char why[768]; /* its reason when refused */
    /* The leader's L this thread's writer waits for (see forward.c behind_L):
    ** kept across the busy handler's retries of one write lock, so that a
    ** leader that keeps committing is no moving target. */
    uint64_t target;
    int64_t target_at; /* rl_rpc_now_ms() when asked */
};
/* base.c: who leads, in words, for messages. */
void rl_host_leader_text(rl_host *h, char *out, size_t n);
/* base.c: the leader's metadata (a follower that can call it): 0, or -1
** with why. */
int rl_host_leader_meta(rl_host *h, const struct rl_node_status *st,
                        struct rl_meta *m, char *err, size_t errlen);

/* forward.c: a writer's way to the leader (a follower's, a client's). */
extern _Thread_local struct rl_writer_state rl_host_writer;
/* Whether a writer must wait for the leader's L before its write lock:
** a client process's (the L its writer remembers: 1 wait, 0 go, -1 ask
** its host; then the L its host answered, 0 if none), a follower's (st:
** its node's status; leader_grpc NULL when not known). 1 = wait. */
int rl_host_behind_kept(uint64_t applied);
int rl_host_behind_answer(uint64_t L, uint64_t applied);
int rl_host_follower_behind(rl_host *h, const struct rl_node_status *st,
                            const char *leader_grpc, uint64_t applied);
/* The writer's SQLite code for a commit's RL_OUTCOME_*: SQLITE_OK
** (applied), SQLITE_BUSY_SNAPSHOT (conflict), SQLITE_IOERR (unknown),
** else SQLITE_BUSY (nothing written: retry). */
int rl_host_outcome_rc(int outcome);
/* Sends f to the sidecar at target; the writer's SQLite code. */
int rl_host_forward_send(rl_rpc_client *cl, const char *who, const char *target,
                         const rl_forward_txn *f, uint64_t *index, int *outcome,
                         char *err, size_t errlen);
/* The local transaction proposed as origin_txn, or NULL (under h->mu). */
struct local_txn *rl_host_local_find(rl_host *h, uint64_t origin_txn);
/* Forgets lt (under h->mu). */
void rl_host_local_drop(rl_host *h, struct local_txn *lt);

/* client.c: the port's work in a process that does not host the node. */
rl_rpc_client *rl_host_client_get(const rl_identity *id, int *owned, char *err,
                                  size_t errlen);
int rl_host_client_begin(const char *db_path, uint64_t applied);
int rl_host_client_commit(const char *db_path, long host_pid, const char *grpc,
                          const rl_txn *txn, rl_commit_info *ci, char *err,
                          size_t errlen);
int rl_host_client_read_point(const char *db_path, uint64_t *wait_index,
                              char *err, size_t errlen);

/* door.c: the local door "<db>-raft/door" of a host's client processes
** (doormsg.h). Start never fails the host: without a door (path too long
** for a Unix socket, no socket) its clients use gRPC. Stop (before the
** node stops, while the host lock is held) answers what is in flight and
** joins every thread. */
void rl_host_door_start(rl_host *h);
void rl_host_door_stop(rl_host *h);
/* The door's path: the database's path and this (rl_host_path). */
#define DOOR_SUFFIX "-raft/door"

/* fresh.c */
/* How long a linearizable read's point may take (rl_host_read_point). */
#define READ_POINT_MS 2000
/* Whether a write transaction that changed nothing may be acknowledged:
** RL_OUTCOME_APPLIED when a read index proves the node still leads and no
** entry took effect after base; else another RL_OUTCOME_* with why. */
int rl_host_fresh_confirm(rl_host *h, int began, uint64_t base, unsigned tmo,
                          char *why, size_t whylen);

/* applier.c */
/* Fills the node's applier callbacks with h's. */
void rl_host_applier_init(rl_host *h, struct rl_applier *a);

/* rebuild.c */
/* Opens the applier's connection and reads the applied index, or starts
** a rebuild when the files cannot be trusted. */
int rl_host_open_applier(rl_host *h, char *err, size_t errlen);
/* Handles e while a rebuild waits for an image: 1 when handled. */
int rl_host_rebuild_apply(rl_host *h, const struct rl_applied *e);
/* Fetches and installs an image at index >= min_index: 0 once done. */
int rl_host_fetch_image(rl_host *h, uint64_t min_index,
                        const struct rl_manifest *m);

/* gate.c */
void rl_host_gate_set(rl_host *h, int closed, int loud, const char *why);
void *rl_host_gate_main(void *arg);

#endif /* RL_HOST_INT_H */
