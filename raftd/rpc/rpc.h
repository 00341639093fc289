/*
** raftd/rpc/rpc.h -- the one narrow wrapper around the gRPC C core.
**
** Every direct grpc_* / gpr_* call of raftlite lives in raftd/rpc/: the C core
** API changes between versions, so nothing else may include a grpc header.
** This interface speaks in bytes (serialized protobuf messages), full
** method names ("/package.Service/Method") and status codes.
**
** Server: handlers are registered by full method name before start; each
** call runs on a worker thread of a pool, so a handler that blocks does not
** delay other calls; spare request slots are kept outstanding; unknown
** methods get UNIMPLEMENTED; shutdown stops accepting, drains calls in
** flight for a grace period and then cancels the rest.
**
** Client: one channel per target, cached in the client (a client holds one
** set of credentials, so the cache is per target + credentials); unary and
** streaming calls with deadlines.
*/
#ifndef RL_RPC_H
#define RL_RPC_H

#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (numbers fixed by the gRPC protocol). */
enum {
    RL_RPC_OK = 0,
    RL_RPC_CANCELLED = 1,
    RL_RPC_UNKNOWN = 2,
    RL_RPC_INVALID_ARGUMENT = 3,
    RL_RPC_DEADLINE_EXCEEDED = 4,
    RL_RPC_NOT_FOUND = 5,
    RL_RPC_PERMISSION_DENIED = 7,
    RL_RPC_RESOURCE_EXHAUSTED = 8,
    RL_RPC_FAILED_PRECONDITION = 9,
    RL_RPC_ABORTED = 10,
    RL_RPC_OUT_OF_RANGE = 11,
    RL_RPC_UNIMPLEMENTED = 12,
    RL_RPC_INTERNAL = 13,
    RL_RPC_UNAVAILABLE = 14,
    RL_RPC_DATA_LOSS = 15,
    RL_RPC_UNAUTHENTICATED = 16,
};

/* A malloc'd byte string; rl_rpc_buf_free releases it. */
typedef struct rl_rpc_buf {
    uint8_t *data;
    size_t len;
} rl_rpc_buf;
void rl_rpc_buf_free(rl_rpc_buf *b);

/* TLS settings: PEM file paths. All NULL = plaintext. Server: cert+key are
** required, ca is needed with client_auth (mutual TLS: a client without a
** certificate signed by ca is refused). Client: ca verifies the server
** (NULL = system roots), cert+key are presented for mutual TLS. */
typedef struct rl_rpc_tls {
    const char *cert_file;
    const char *key_file;
    const char *ca_file;
    int client_auth;
} rl_rpc_tls;

/* Longest error text a status carries (longer ones are cut with "..."). */
#define RL_RPC_ERRMAX 512

/* ---- server ---- */

typedef struct rl_rpc_server rl_rpc_server;
typedef struct rl_rpc_call rl_rpc_call;

/* A handler serves one call: it reads requests with rl_rpc_call_recv,
** writes responses with rl_rpc_call_send, and returns the status code; for
** a code other than OK it sets the message with rl_rpc_call_error. */
typedef int (*rl_rpc_handler_fn)(rl_rpc_call *call, void *arg);

typedef struct rl_rpc_server_config {
    const char *addr;      /* "host:port"; see rl_rpc_listen_addr */
    const rl_rpc_tls *tls; /* NULL = plaintext */
    size_t max_msg_bytes;  /* receive and send limit; 0 = 4 MiB */
    int max_workers;       /* calls served at once; 0 = 64 */
    int spare_requests;    /* request slots kept outstanding; 0 = 8 */
    /* Limits every call gets (issue 15); 0 = the default, < 0 = none.
    ** A call's deadline is the client's or now + max_call_ms (streaming
    ** methods: max_stream_ms), whichever is sooner. */
    int64_t max_call_ms;   /* default RL_RPC_MAX_CALL_MS (-max-call-ms) */
    int64_t max_stream_ms; /* default RL_RPC_MAX_STREAM_MS (-max-stream-ms) */
    /* Longest wait for one message to be received or sent (a client that
    ** stops sending or reading); the call is cut with the flag's name. */
    int64_t stream_idle_ms; /* default RL_RPC_STREAM_IDLE_MS */
    /* Calls one client identity (TLS peer identity, else its IP address)
    ** may have in service at once; more wait in the queue, holding no
    ** worker, until one of its calls ends (or their deadline passes: then
    ** they are answered DEADLINE_EXCEEDED naming -max-client-calls).
    ** 0 = the default: max_workers less an eighth (at least 1 less), so
    ** that other clients always find a worker; < 0 = no cap. */
    int max_client_calls;
} rl_rpc_server_config;

#define RL_RPC_MAX_CALL_MS    30000
#define RL_RPC_MAX_STREAM_MS  3600000
#define RL_RPC_STREAM_IDLE_MS 30000

/* Creates a server (not started). On failure returns NULL and writes why
** into err. */
rl_rpc_server *rl_rpc_server_new(const rl_rpc_server_config *cfg, char *err,
                                 size_t errlen);
/* Registers a handler for a full method name; before rl_rpc_server_start.
** The name is copied. Returns 0, or -1 if out of memory or started. */
int rl_rpc_server_add(rl_rpc_server *s, const char *method,
                      rl_rpc_handler_fn fn, void *arg);
/* The same with flags: RL_RPC_STREAMING (its calls get max_stream_ms),
** RL_RPC_UNCAPPED (short calls such as Status that must get through while
** a client is at its -max-client-calls cap: not counted). */
#define RL_RPC_STREAMING 1
#define RL_RPC_UNCAPPED  2
int rl_rpc_server_add_flags(rl_rpc_server *s, const char *method,
                            rl_rpc_handler_fn fn, void *arg, int flags);
/* Binds and starts serving. Returns the bound port (>0), or -1 with err. */
int rl_rpc_server_start(rl_rpc_server *s, char *err, size_t errlen);
/* Stops accepting calls, lets calls in flight finish for grace_ms, then
** cancels what is left, waits for every handler to return and frees the
** server. Safe on a server that never started. */
void rl_rpc_server_free(rl_rpc_server *s, int grace_ms);
/* Number of calls served (finished) so far. */
uint64_t rl_rpc_server_calls(rl_rpc_server *s);

/* Receives the next message of the call. Returns 1 with *msg filled
** (caller frees), 0 at the end of the client's stream, -1 if the call
** failed (cancelled, deadline, idle, message too large). A message over
** max_msg_bytes (the core accepts up to twice that so that the wrapper
** can answer it) sets RESOURCE_EXHAUSTED naming -max-msg-bytes; an error
** the wrapper sets for a limit is kept by later rl_rpc_call_error calls. */
int rl_rpc_call_recv(rl_rpc_call *c, rl_rpc_buf *msg);
/* rl_rpc_call_recv for a call kept open between exchanges (rpc.h, "kept
** streams"), which its handler ends by itself when it has been quiet:
** waits at most wait_ms (and less than the idle limit and the time the
** call has left), and returns 2 when nothing came by then, the server is
** stopping, or another call waits for the worker or the client's slot
** (-workers, -max-client-calls) this one holds (seen within 100 ms). The
** receive then stays posted and the handler must end the
** call at once (return, with no other receive or send): a message that
** arrives meanwhile is never read, so a client that sees the call end
** with status OK and no answer knows that its request was never acted on.
** Otherwise as rl_rpc_call_recv. */
int rl_rpc_call_recv_wait(rl_rpc_call *c, rl_rpc_buf *msg, int64_t wait_ms);
/* Sends one message. Returns 0, or -1 if the call is gone. */
int rl_rpc_call_send(rl_rpc_call *c, const void *data, size_t len);
/* Sets the status message sent with a non-OK code. Returns code. */
int rl_rpc_call_error(rl_rpc_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Milliseconds left before the call's deadline (INT64_MAX if none); 0 once
** it passed, once the client cancelled the call or went away, or once the
** server is cancelling calls at shutdown. Cheap enough for SQLite's
** progress handler (the cancellation poll runs at most every few ms). */
int64_t rl_rpc_call_remaining_ms(rl_rpc_call *c);
/* Why remaining_ms says 0, for an error message: names the limit and the
** flag that raises it ("" while the call may go on). */
const char *rl_rpc_call_stop_reason(rl_rpc_call *c);
/* The client's identity the per-client cap counts ("ip:ADDR" or
** "tls:NAME"). */
const char *rl_rpc_call_peer(rl_rpc_call *c);
/* CLOCK_MONOTONIC milliseconds at which the call must stop working. */
int64_t rl_rpc_call_deadline(rl_rpc_call *c);
const char *rl_rpc_call_method(rl_rpc_call *c);
/* What the transport knows of the caller, for the permission check
** (raftd/api/auth.h): whether the connection is TLS, and the peer certificate
** TLS verified against the CA, as PEM text (NULL if none; valid until the
** handler returns). */
int rl_rpc_call_tls(rl_rpc_call *c);
const char *rl_rpc_call_peer_cert(rl_rpc_call *c, size_t *len);
/* The first value of request metadata key (lower case) into out: 1 found,
** 0 absent, -1 too long for out or holding a NUL. */
int rl_rpc_call_metadata(rl_rpc_call *c, const char *key, char *out,
                         size_t outlen);
size_t rl_rpc_call_max_msg(rl_rpc_call *c);

/* CLOCK_MONOTONIC in milliseconds (the clock of rl_rpc_call_deadline). */
int64_t rl_rpc_now_ms(void);

/* Resolves the -grpc flag form ":PORT" (the PoC's "all interfaces") into
** "0.0.0.0:PORT"; anything else is returned as is. Writes into out. */
int rl_rpc_listen_addr(const char *flag, char *out, size_t outlen);

/* ---- client ---- */

typedef struct rl_rpc_client rl_rpc_client;
typedef struct rl_rpc_stream rl_rpc_stream;

/* A client with one set of credentials (tls NULL = plaintext) and a
** channel cache keyed by target. NULL with err on failure (bad PEM). */
rl_rpc_client *rl_rpc_client_new(const rl_rpc_tls *tls, size_t max_msg_bytes,
                                 char *err, size_t errlen);
void rl_rpc_client_free(rl_rpc_client *cl);
/* The message limit of cl's channels (what it was created with, or the
** default): a stream asks its peer for messages no larger. */
size_t rl_rpc_client_max_msg(rl_rpc_client *cl);
/* Channels created so far (a reused target creates none). */
int rl_rpc_client_channels(rl_rpc_client *cl);

/* One request, one response. Returns the status code; on OK *reply holds
** the response (caller frees), else err holds the status message.
** timeout_ms <= 0 means no deadline. */
int rl_rpc_unary(rl_rpc_client *cl, const char *target, const char *method,
                 const void *req, size_t len, int64_t timeout_ms,
                 rl_rpc_buf *reply, char *err, size_t errlen);

/* rl_rpc_unary, but while it waits, stop(arg) is asked every 50 ms; once
** it returns nonzero the call is cancelled (status CANCELLED; the server
** may have acted on the request or not). *unsent (if not NULL) is set to
** 1 when the call failed before its request left (UNAVAILABLE because no
** connection could be made: the server never saw it), else 0. */
int rl_rpc_unary_watch(rl_rpc_client *cl, const char *target,
                       const char *method, const void *req, size_t len,
                       int64_t timeout_ms, int (*stop)(void *), void *arg,
                       rl_rpc_buf *reply, int *unsent, char *err,
                       size_t errlen);
/* One answer of a fan: target i's status code, its response (code OK;
** valid during the call only) or the status message. Return nonzero once
** enough was heard: the calls still in flight are then cancelled and no
** further answer is handed over. */
typedef int (*rl_rpc_fan_fn)(void *arg, int i, int code,
                             const rl_rpc_buf *reply, const char *err);
/* The same unary request to n targets, on the caller's thread: the first
** `first` (<= 0: all) at once, the others once hedge_ms passed without
** enough or as soon as a call ends without it. answer() gets each outcome
** as it arrives (a call that cannot start at once), until it returns
** nonzero or every call ended. Every call has the deadline timeout_ms
** from the start, and nothing of the fan is left when it returns.
** Returns the number of answers handed over. */
int rl_rpc_unary_fan(rl_rpc_client *cl, const char *const *targets, int n,
                     int first, int64_t hedge_ms, const char *method,
                     const void *req, size_t len, int64_t timeout_ms,
                     rl_rpc_fan_fn answer, void *arg);
/* A streaming call (client, server or bidirectional streaming). */
rl_rpc_stream *rl_rpc_stream_open(rl_rpc_client *cl, const char *target,
                                  const char *method, int64_t timeout_ms,
                                  char *err, size_t errlen);
/* Returns 0, or -1 if the call failed (finish tells why). */
int rl_rpc_stream_send(rl_rpc_stream *st, const void *data, size_t len);
/* Half-closes the sending side. */
int rl_rpc_stream_close_send(rl_rpc_stream *st);
/* rl_rpc_stream_send then rl_rpc_stream_close_send, in one batch. */
int rl_rpc_stream_send_last(rl_rpc_stream *st, const void *data, size_t len);
/* 1 with *msg (caller frees), 0 at end of stream, -1 on failure. */
int rl_rpc_stream_recv(rl_rpc_stream *st, rl_rpc_buf *msg);
/* rl_rpc_stream_recv waiting at most timeout_ms: when nothing came by
** then, the call is cancelled (-1; finish answers CANCELLED). */
int rl_rpc_stream_recv_wait(rl_rpc_stream *st, rl_rpc_buf *msg,
                            int64_t timeout_ms);
/* Cancels the call (a client that stops reading a server stream early:
** otherwise finish waits until the server ends or the deadline passes);
** finish must still be called, and then returns CANCELLED. */
void rl_rpc_stream_cancel(rl_rpc_stream *st);
/* Waits for the status, frees the stream, returns the code. */
int rl_rpc_stream_finish(rl_rpc_stream *st, char *err, size_t errlen);

/* ---- kept streams (kept.c) ----
** A bidirectional call kept open between exchanges (one request message,
** one answer), so that an exchange costs no call set-up: no new HTTP/2
** stream, headers, request slot or hand-off on the server. A taken stream
** is its caller's alone until given back with rl_rpc_stream_keep after a
** complete exchange; after any failure the caller ends it (cancel if
** needed, then finish) and gives back nothing. */

/* A stream of method to target: a kept one given back within idle_ms and
** with more than half of its life_ms left (*reused = 1), else a new one
** opened with the deadline life_ms (*reused = 0). Kept streams idle
** longer are ended here. NULL with err when no call can be made, or when
** target refused method lately (rl_rpc_stream_refused). */
rl_rpc_stream *rl_rpc_stream_take(rl_rpc_client *cl, const char *target,
                                  const char *method, int64_t idle_ms,
                                  int64_t life_ms, int *reused, char *err,
                                  size_t errlen);
/* Gives back a stream taken from cl after a complete exchange: kept for
** the next take, or ended when RL_RPC_KEPT are kept already. */
void rl_rpc_stream_keep(rl_rpc_client *cl, rl_rpc_stream *st);
/* target answered UNIMPLEMENTED to method (an older server): takes of it
** return NULL for the next for_ms. */
void rl_rpc_stream_refused(rl_rpc_client *cl, const char *target,
                           const char *method, int64_t for_ms);
/* Streams opened and reused by takes of cl so far. */
void rl_rpc_kept_counts(rl_rpc_client *cl, uint64_t *opened, uint64_t *reused);

#endif /* RL_RPC_H */
