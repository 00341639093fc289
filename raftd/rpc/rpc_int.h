/*
** raftd/rpc/rpc_int.h -- what the files of the gRPC wrapper share and
** nothing else may see: the server's and a call's structs, the byte buffer
** and batch helpers, the credentials.
**
** Only the files of raftd/rpc/ may include it (it includes the grpc headers,
*which
** nothing outside raftd/rpc/ may: rpc.h is the interface).
*/
#ifndef RL_RPC_INT_H
#define RL_RPC_INT_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdint.h>

#include "rpc.h"

/* The message limit when none is given (rpc.h: 4 MiB). */
#define DEFAULT_MAX_MSG (4u << 20)

/* ---- the server (server.c) and its calls (call.c) ---- */

typedef struct method {
    char *name;
    rl_rpc_handler_fn fn;
    void *arg;
    int flags; /* RL_RPC_STREAMING, RL_RPC_UNCAPPED */
} method;

/* Calls in service of one client identity (the per-client cap). */
typedef struct peer_count {
    char id[160];
    int n;
} peer_count;

struct rl_rpc_call {
    rl_rpc_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_completion_queue *cq; /* the call's own pluck queue */
    char method[256];
    int64_t deadline;     /* rl_rpc_now_ms clock; INT64_MAX = none */
    int64_t arrived;      /* when the dispatcher took it */
    int64_t cap_ms;       /* the server's maximum that set the deadline, or 0 */
    const char *cap_flag; /* the flag that sets cap_ms */
    int sent_md;          /* initial metadata sent */
    int errcode;
    int locked; /* errcode/errmsg set by the wrapper for a limit: kept */
    char errmsg[RL_RPC_ERRMAX];
    /* RECV_CLOSE_ON_SERVER runs from the start of the call in its own
    ** batch (tag &close_tag): once it completed before the handler ended,
    ** `cancelled` says whether the client cancelled or went away. */
    int close_started;
    int closed;  /* atomic: the close op completed */
    int polling; /* atomic: a thread is polling the close op */
    int cancelled;
    int64_t last_poll;
    int close_tag;
    int idle_cut;           /* a message wait passed stream_idle_ms */
    /* A receive rl_rpc_call_recv_wait left posted (tag &recv_tag, into
    ** recv_bb): serve_call collects it after the status went out. */
    int recv_pending;
    int recv_tag;
    grpc_byte_buffer *recv_bb;
    int counted;            /* counted in the per-client cap */
    int waited_behind;      /* calls of its client in service when it waited */
    int gave_up;            /* its deadline came while it waited: answer it */
    const struct method *m; /* NULL: unknown method */
    char peer[160];
    char stop[256];
    int sec_known;  /* tls and cert_pem looked up (rl_rpc_call_tls) */
    int tls;        /* transport_security_type is "ssl" */
    char *cert_pem; /* verified peer certificate (gpr-free: malloc) */
    size_t cert_len;
    rl_rpc_call *next; /* pool queue link */
};

struct rl_rpc_server {
    grpc_server *server;
    grpc_completion_queue *cq; /* notifications only (dispatcher) */
    method *methods;
    int nmethods;
    char addr[256];
    size_t max_msg;
    int max_workers;
    int spare;
    int started;
    int64_t max_call_ms, max_stream_ms, idle_ms; /* <= 0: none */
    int client_cap;                              /* <= 0: none */
    peer_count *peers;                           /* max_workers entries */
    pthread_t dispatcher;
    int shutdown_tag; /* its address is the tag */

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* workers wait for calls */
    pthread_cond_t state_cv; /* shutdown waits for drain */
    rl_rpc_call *qhead, *qtail;
    pthread_t *threads;
    int nthreads, nidle, qlen;
    int inflight;
    int stopping;   /* no new request slots */
    int cancelling; /* grace over: handlers should give up */
    int shutdown_notified;
    int exiting; /* workers exit when the queue is empty */
    uint64_t calls;
};

/* Sets a call's status for a limit the wrapper enforces: kept by later
** rl_rpc_call_error calls (call.c; server.c uses it too). */
void rl_rpc_lock_error(rl_rpc_call *c, int code, const char *msg);

/* ---- the client (client.c) and its kept streams (kept.c) ---- */

typedef struct chan {
    char *target;
    grpc_channel *ch;
    struct chan *next;
} chan;

/* A stream kept open between exchanges (kept.c): st NULL, a free slot. */
typedef struct kept {
    rl_rpc_stream *st;
    int64_t last; /* rl_rpc_now_ms when it was given back */
} kept;

/* A target's refusal of a method (kept.c): no take until `until`. */
typedef struct refusal {
    char target[256];
    char method[128];
    int64_t until;
} refusal;

#define RL_RPC_KEPT     4 /* streams kept per client (more are ended) */
#define RL_RPC_REFUSALS 4 /* refusals remembered (the oldest goes) */

struct rl_rpc_client {
    pthread_mutex_t mu;
    size_t max_msg; /* the receive and send limit of its channels */
    grpc_channel_credentials *creds;
    grpc_arg a[2];
    grpc_channel_args args;
    chan *chans;
    int nchans;
    kept kept[RL_RPC_KEPT];           /* under mu */
    refusal refused[RL_RPC_REFUSALS]; /* under mu */
    uint64_t kept_opened, kept_reused;
};

struct rl_rpc_stream {
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array init_md, trailing;
    grpc_status_code status;
    grpc_slice details;
    int got_md;
    int md_sent;    /* SEND_INITIAL_METADATA went with an earlier batch */
    int status_tag; /* its address is the tag of RECV_STATUS_ON_CLIENT */
    int recv_tag;   /* its address is the tag of a receive's batch */
    /* Set by rl_rpc_stream_take (kept.c): what it was opened for. */
    char target[256];
    char method[128];
    int64_t born, life_ms;
};

/* cl's cached channel to target, created on first use; NULL if none can
** be made. Valid until rl_rpc_client_free. */
grpc_channel *rl_rpc_client_channel(rl_rpc_client *cl, const char *target);

/* ---- helpers (core.c) ---- */

/* grpc_init, once the core's log lines are silenced (see core.c). */
void rl_rpc_init(void);
/* Fills a[0..1] and *ca with the receive and send message limits. */
void rl_rpc_limit_args(grpc_arg *a, grpc_channel_args *ca, size_t max);
/* Copies a byte buffer out into *out and destroys it. 0, or -1 (out of
** memory; *out empty). */
int rl_rpc_take_bb(grpc_byte_buffer *bb, rl_rpc_buf *out);
grpc_byte_buffer *rl_rpc_make_bb(const void *data, size_t len);
/* Runs one batch on a call whose queue is a pluck queue and waits for it.
** Returns 0 if every op succeeded. */
int rl_rpc_run_batch(grpc_call *call, grpc_completion_queue *cq,
                     const grpc_op *ops, size_t n);
/* Shuts down, drains and destroys a pluck queue (NULL: nothing). */
void rl_rpc_destroy_cq(grpc_completion_queue *cq);
/* A slice as a C string into out, cut to outlen. */
void rl_rpc_copy_slice(char *out, size_t outlen, grpc_slice sl);

/* ---- credentials (tls.c) ---- */

/* The server's credentials for t (NULL or no files: plaintext), or NULL
** with err (a missing or non-PEM file, a certificate without its key). */
grpc_server_credentials *rl_rpc_server_creds(const rl_rpc_tls *t, char *err,
                                             size_t errlen);
/* A client's channel credentials for t (NULL or no files: plaintext), or
** NULL with err. */
grpc_channel_credentials *rl_rpc_channel_creds(const rl_rpc_tls *t, char *err,
                                               size_t errlen);

#endif /* RL_RPC_INT_H */
