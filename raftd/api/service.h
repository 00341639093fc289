/*
** raftd/api/service.h -- the handlers of raftlite's gRPC API
*(proto/raftlite.proto).
**
** service.c decodes requests, runs them against the node's local SQLite
** database and encodes responses; it knows no gRPC (rpc.h's byte buffers
** and status codes only), so it is fuzzed without a server. service_rpc.c
** registers it with an rl_rpc_server and adds the streaming internal RPCs.
**
** Standalone (config host NULL): ExecuteWrite/ExecuteRead/ExecuteTransaction
** run on the local database and Join/Remove/Leader/Transfer/Nodes answer
** that the node is standalone. With a host, service_rpc.c first offers
** every unary call to the cluster layer (raftd/api/cluster.h), which forwards
** to the leader, serves the cluster RPCs and hands the rest back here.
*/
#ifndef RL_SERVICE_H
#define RL_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "peers.h"
#include "rpc.h"

struct rl_host;
struct rl_txn_asm;

/* RL_SVC_PUBLIC, RL_SVC_INTERNAL and RL_OUTCOME_* (the numbers of proto
** WriteOutcome) are in peers.h, shared with the calls to other nodes. */

/* What a hosted node adds to a write (host.c fills it; NULL: standalone).
** write_done runs on the writer's thread right after its COMMIT returned
** rc. It returns an RL_OUTCOME_*: for a refused COMMIT, what the
** replicator said (why holds its reason); for a COMMIT that wrote nothing
** through Raft (no page changed), APPLIED only once the node proved it
** still leads and nothing changed since the transaction read (DESIGN 8),
** else NOT_LEADER or CONFLICT with why. Waits at most remaining_ms. */
typedef struct rl_service_hooks {
    void *ctx;
    int (*write_done)(void *ctx, int rc, int64_t remaining_ms, char *why,
                      size_t whylen);
    /* ForwardTxn with an origin: commit a follower's transaction (a->data,
    ** a->received bytes, base and origin in a) through Raft, at most
    ** remaining_ms. Returns an RL_OUTCOME_* with *index (0 if the entry
    ** was not appended) and why for anything but APPLIED. NULL: this node
    ** cannot commit (standalone). */
    int (*propose_txn)(void *ctx, const struct rl_txn_asm *a,
                       int64_t remaining_ms, uint64_t *index, char *why,
                       size_t whylen);
} rl_service_hooks;

typedef struct rl_service_config {
    const char *node_id;
    const char *grpc_addr;
    const char *raft_addr;
    const char *db_path;  /* the node's database file */
    struct rl_host *host; /* the node hosting it, or NULL: standalone.
                             Opaque here: service.c never calls into it. */
    size_t max_msg_bytes; /* responses never exceed it; 0 = 4 MiB. Also
                             SQLITE_LIMIT_LENGTH and _SQL_LENGTH of every
                             connection (a value or statement larger
                             could never travel anyway). */
    int max_value_bytes;  /* SQLITE_LIMIT_LENGTH if > 0 and smaller */
    /* A hosted node's hooks, copied at open; NULL: standalone. */
    const rl_service_hooks *hooks;
} rl_service_config;

typedef struct rl_service rl_service;

/* How much time a request has left: milliseconds, INT64_MAX = no limit, 0
** = stop now. ctx is passed back as is. */
typedef int64_t (*rl_remaining_fn)(void *ctx);

/* Why a call's remaining time went to 0 (limit and flag, or the client
** gone), for error messages; "" if unknown. */
typedef const char *(*rl_stop_reason_fn)(void *ctx);

/* Opens the node's database (created if missing, WAL mode). NULL with err
** on failure. */
rl_service *rl_service_open(const rl_service_config *cfg, char *err,
                            size_t errlen);
void rl_service_close(rl_service *svc);

/* The hosted node's propose_txn hook (service hooks), or -1 with why if
** this service has none (standalone). */
int rl_service_propose_txn(rl_service *svc, const struct rl_txn_asm *a,
                           int64_t remaining_ms, uint64_t *index, char *why,
                           size_t whylen);

/* Serves one unary call of the public service (method is the bare name,
** e.g. "ExecuteRead") or the internal ReadIndex. Returns a status code; on
** OK *reply holds the encoded response (caller frees), else err says why. */
int rl_service_unary(rl_service *svc, const char *method, const uint8_t *req,
                     size_t len, rl_remaining_fn remaining, void *ctx,
                     rl_rpc_buf *reply, char *err, size_t errlen);

/* Sets the function that explains a stop (service_rpc.c: the wrapper's
** rl_rpc_call_stop_reason); without one a stop says "deadline exceeded". */
void rl_service_set_stop_reason(rl_service *svc, rl_stop_reason_fn fn);

/* Registers every RPC of both services on a server (service_rpc.c). */
int rl_service_register(rl_service *svc, rl_rpc_server *srv);

/* Facts service_rpc.c needs. */
const char *rl_service_db_path(rl_service *svc);
struct rl_host *rl_service_host(rl_service *svc);
size_t rl_service_max_msg(rl_service *svc);
const char *rl_service_node_id(rl_service *svc);
/* Who may call what (raftd/api/auth.h): the auth file (NULL: none; the caller
** keeps it alive while the service serves) and whether the server requires
** client certificates. service_rpc.c checks every call against them
** before any handler runs. */
struct rl_auth;
void rl_service_set_auth(rl_service *svc, const struct rl_auth *auth, int mtls);
const struct rl_auth *rl_service_auth(rl_service *svc, int *mtls);
/* Counts a call served outside rl_service_unary (the cluster layer), so
** that Status.calls_served counts every unary call. */
void rl_service_count_call(rl_service *svc);

/* ---- ForwardTxn chunk framing (grpc-free, fuzzed) ---- */

#define RL_TXN_MAX ((uint64_t)1 << 32) /* largest forwarded transaction */

typedef struct rl_txn_asm {
    uint64_t total;    /* total_length stated by the first chunk */
    uint64_t received; /* bytes accepted so far */
    uint32_t crc;      /* CRC-32 of the bytes accepted */
    uint64_t chunks;
    int last_seen;
    /* A transaction to commit (the first chunk named its origin): its
    ** bytes are kept in data (grown as they arrive, never beyond what
    ** arrived: a stated total_length reserves nothing). */
    int commit;
    uint64_t base, origin_node, origin_txn;
    uint32_t origin_pid;
    uint8_t *data;
    size_t cap;
} rl_txn_asm;

/* Largest transaction a follower may forward for commit: the payload
** bound of a Raft entry (raftd/node/entry.h). */
#define RL_TXN_COMMIT_MAX ((uint64_t)1 << 31)

void rl_txn_asm_init(rl_txn_asm *a);
/* Frees the kept bytes. */
void rl_txn_asm_free(rl_txn_asm *a);
/* Accepts one encoded TxnChunk. Returns 0, or a status code with err
** naming the framing rule broken. */
int rl_txn_asm_add(rl_txn_asm *a, const uint8_t *msg, size_t len, char *err,
                   size_t errlen);
/* At the end of the stream: 0 if the transaction is complete. */
int rl_txn_asm_finish(rl_txn_asm *a, char *err, size_t errlen);

#endif /* RL_SERVICE_H */
