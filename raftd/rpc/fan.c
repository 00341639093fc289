/*
** raftd/rpc/fan.c -- one unary request sent to several targets at once,
** each answer handed to the caller as it arrives (rl_rpc_unary_fan, see
** rpc.h): what a leader uses to hear from a quorum in one round trip
** rather than one call after another. The caller may call only as many
** as it needs at first and the rest after a hedge time (or at once when
** one fails): half the work for a leader of three, and no wait for a
** member that is down beyond the hedge.
**
** All calls share one completion queue and the caller's thread: no thread
** is started. Once the caller has heard enough, the calls still in flight
** are cancelled and their completions drained before returning, so
** nothing of a fan outlives the call. It must never wait past the
** deadline given (every call carries it), nor hand the caller an answer
** after it said "enough".
*/
#include "rpc_int.h"
#include "errbuf.h"

#include <stdlib.h>
#include <string.h>

/* One call of the fan; its address is the tag of its one batch. */
struct fan_call {
    grpc_call *call;
    grpc_metadata_array init_md, trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *in;
    grpc_byte_buffer *out; /* its own copy: a send may take the slices */
    int started;           /* its batch was accepted: a completion will come */
};

static void fan_call_close(struct fan_call *f)
{
    if (f->in)
        grpc_byte_buffer_destroy(f->in);
    if (f->out)
        grpc_byte_buffer_destroy(f->out);
    grpc_slice_unref(f->details);
    grpc_metadata_array_destroy(&f->init_md);
    grpc_metadata_array_destroy(&f->trailing);
    if (f->call)
        grpc_call_unref(f->call);
}

/* Starts the call to target on cq: 0, or -1 (no channel or call). */
static int fan_start(rl_rpc_client *cl, grpc_completion_queue *cq,
                     struct fan_call *f, const char *target, const char *method,
                     const void *req, size_t len, gpr_timespec deadline)
{
    grpc_channel *ch = rl_rpc_client_channel(cl, target);
    grpc_slice msl;
    grpc_op ops[6];
    if (!ch)
        return -1;
    msl = grpc_slice_from_copied_string(method);
    f->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       msl, NULL, deadline, NULL);
    grpc_slice_unref(msl);
    if (!f->call)
        return -1;
    f->out = rl_rpc_make_bb(req, len);
    /* The whole exchange in one batch, as rl_rpc_unary_watch does. */
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = f->out;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &f->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &f->in;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &f->trailing;
    ops[5].data.recv_status_on_client.status = &f->status;
    ops[5].data.recv_status_on_client.status_details = &f->details;
    if (grpc_call_start_batch(f->call, ops, 6, f, NULL) != GRPC_CALL_OK)
        return -1;
    f->started = 1;
    return 0;
}

/* Starts calls[from..to) and answers at once those that cannot start.
** Returns how many started; *enough and *answered follow the answers. */
static int fan_start_range(rl_rpc_client *cl, grpc_completion_queue *cq,
                           struct fan_call *calls, int from, int to,
                           const char *const *targets, const char *method,
                           const void *req, size_t len, gpr_timespec deadline,
                           rl_rpc_fan_fn answer, void *arg, int *enough,
                           int *answered)
{
    int started = 0;
    char err[RL_RPC_ERRMAX];
    for (int i = from; i < to; i++) {
        if (fan_start(cl, cq, &calls[i], targets[i], method, req, len,
                      deadline) == 0) {
            started++;
            continue;
        }
        if (*enough)
            continue;
        (*answered)++;
        rl_seterr(err, sizeof err, "cannot start a call to %s%s", targets[i],
                  method);
        *enough = answer(arg, i, RL_RPC_INTERNAL, NULL, err);
    }
    return started;
}

int rl_rpc_unary_fan(rl_rpc_client *cl, const char *const *targets, int n,
                     int first, int64_t hedge_ms, const char *method,
                     const void *req, size_t len, int64_t timeout_ms,
                     rl_rpc_fan_fn answer, void *arg)
{
    struct fan_call *calls;
    grpc_completion_queue *cq;
    gpr_timespec deadline, hedge;
    int i, pending, enough = 0, answered = 0, next;
    char err[RL_RPC_ERRMAX];
    if (n <= 0)
        return 0;
    if (first <= 0 || first > n)
        first = n;
    calls = calloc((size_t)n, sizeof *calls);
    if (!calls) {
        for (i = 0; i < n && !enough; i++, answered++)
            enough = answer(arg, i, RL_RPC_INTERNAL, NULL, "out of memory");
        return answered;
    }
    for (i = 0; i < n; i++) {
        grpc_metadata_array_init(&calls[i].init_md);
        grpc_metadata_array_init(&calls[i].trailing);
        calls[i].details = grpc_empty_slice();
        calls[i].status = GRPC_STATUS_UNKNOWN;
    }
    cq = grpc_completion_queue_create_for_next(NULL);
    deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_REALTIME),
        gpr_time_from_millis(timeout_ms > 0 ? timeout_ms : 1, GPR_TIMESPAN));
    hedge = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                         gpr_time_from_millis(hedge_ms, GPR_TIMESPAN));
    pending = fan_start_range(cl, cq, calls, 0, first, targets, method, req,
                              len, deadline, answer, arg, &enough, &answered);
    next = first;
    for (;;) {
        /* The rest are called once the first ones cannot be enough: the
        ** hedge time passed, or a call ended without it. */
        if (!enough && next < n &&
            (pending == 0 ||
             gpr_time_cmp(gpr_now(GPR_CLOCK_REALTIME), hedge) >= 0)) {
            pending +=
                fan_start_range(cl, cq, calls, next, n, targets, method, req,
                                len, deadline, answer, arg, &enough, &answered);
            next = n;
        }
        if (pending == 0)
            break;
        /* Every call ends by its deadline, so this wait is bounded. */
        grpc_event ev = grpc_completion_queue_next(
            cq,
            !enough && next < n ? hedge : gpr_inf_future(GPR_CLOCK_REALTIME),
            NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT)
            continue; /* the hedge time: call the rest */
        if (ev.type != GRPC_OP_COMPLETE)
            break; /* not expected: the queue is not shut down yet */
        struct fan_call *f = ev.tag;
        int code = (int)f->status;
        rl_rpc_buf reply = {NULL, 0};
        pending--;
        if (enough)
            continue; /* cancelled after the caller heard enough */
        i = (int)(f - calls);
        err[0] = 0;
        if (code != RL_RPC_OK) {
            rl_rpc_copy_slice(err, sizeof err, f->details);
        } else if (!f->in) {
            code = RL_RPC_INTERNAL;
            rl_seterr(err, sizeof err,
                      "%s on %s returned OK without a response", method,
                      targets[i]);
        } else if (rl_rpc_take_bb(f->in, &reply) != 0) { /* destroys in */
            f->in = NULL;
            code = RL_RPC_INTERNAL;
            rl_seterr(err, sizeof err, "out of memory reading the response");
        } else {
            f->in = NULL;
        }
        answered++;
        enough = answer(arg, i, code, code == RL_RPC_OK ? &reply : NULL, err);
        rl_rpc_buf_free(&reply);
        if (!enough)
            hedge = gpr_now(GPR_CLOCK_REALTIME); /* call the rest now */
        if (enough) {
            /* The rest are not needed: cancel them; their batches still
            ** complete (CANCELLED) and are drained by this loop. */
            for (int j = 0; j < n; j++)
                if (calls[j].started)
                    grpc_call_cancel(calls[j].call, NULL);
        }
    }
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
    for (i = 0; i < n; i++)
        fan_call_close(&calls[i]);
    free(calls);
    return answered;
}
