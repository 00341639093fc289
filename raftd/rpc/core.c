/*
** raftd/rpc/core.c -- helpers of the wrapper over the gRPC C core: byte
** buffers in and out, one synchronous batch, pluck queues, the core's
** start (with its log silenced) and the listen-address form.
**
** These know nothing of servers or clients; they must never block except
** in rl_rpc_run_batch (on the call's own queue) and never keep state but
** the once-only log setup.
*/
#include "rpc_int.h"
#include "errbuf.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Fills args[0..1] with the message limits. */
void rl_rpc_limit_args(grpc_arg *a, grpc_channel_args *ca, size_t max)
{
    int v = max > 0x7fffffff ? 0x7fffffff : (int)max;
    a[0].type = GRPC_ARG_INTEGER;
    a[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    a[0].value.integer = v;
    a[1].type = GRPC_ARG_INTEGER;
    a[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    a[1].value.integer = v;
    ca->num_args = 2;
    ca->args = a;
}

/* Copies a byte buffer out into *out and destroys it. */
int rl_rpc_take_bb(grpc_byte_buffer *bb, rl_rpc_buf *out)
{
    grpc_byte_buffer_reader r;
    grpc_slice sl;
    size_t len = grpc_byte_buffer_length(bb), off = 0;
    out->data = malloc(len ? len : 1);
    out->len = 0;
    if (!out->data || !grpc_byte_buffer_reader_init(&r, bb)) {
        free(out->data);
        out->data = NULL;
        grpc_byte_buffer_destroy(bb);
        return -1;
    }
    while (grpc_byte_buffer_reader_next(&r, &sl)) {
        size_t n = GRPC_SLICE_LENGTH(sl);
        if (off + n <= len) {
            memcpy(out->data + off, GRPC_SLICE_START_PTR(sl), n);
        }
        off += n;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_reader_destroy(&r);
    grpc_byte_buffer_destroy(bb);
    if (off != len) {
        free(out->data);
        out->data = NULL;
        return -1;
    }
    out->len = len;
    return 0;
}

grpc_byte_buffer *rl_rpc_make_bb(const void *data, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Runs one batch on a call whose queue is a pluck queue and waits for it.
** Returns 0 if every op succeeded. */
int rl_rpc_run_batch(grpc_call *call, grpc_completion_queue *cq,
                     const grpc_op *ops, size_t n)
{
    grpc_event ev;
    void *tag = (void *)ops;
    if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK) {
        return -1;
    }
    ev = grpc_completion_queue_pluck(cq, tag,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

void rl_rpc_destroy_cq(grpc_completion_queue *cq)
{
    grpc_event ev;
    if (!cq) {
        return;
    }
    grpc_completion_queue_shutdown(cq);
    do {
        ev = grpc_completion_queue_pluck(
            cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
}

void rl_rpc_copy_slice(char *out, size_t outlen, grpc_slice sl)
{
    size_t n = GRPC_SLICE_LENGTH(sl);
    if (n >= outlen) {
        n = outlen - 1;
    }
    memcpy(out, GRPC_SLICE_START_PTR(sl), n);
    out[n] = 0;
}

int rl_rpc_listen_addr(const char *flag, char *out, size_t outlen)
{
    int n;
    if (flag[0] == ':') {
        n = snprintf(out, outlen, "0.0.0.0%s", flag);
    } else {
        n = snprintf(out, outlen, "%s", flag);
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/*
** The gRPC core writes its own log lines to stderr ("E1205 ...
** chttp2_server.cc ..."), in raftd and in a user's shell alike. Every
** failure that matters reaches raftlite as a status and is said there, in
** words that name the cause; the core's lines are for debugging gRPC
** itself: RAFTLITE_GRPC_LOG=1 lets them through.
*/
static void quiet_log(gpr_log_func_args *args)
{
    (void)args;
}

static void rpc_log_setup(void)
{
    const char *v = getenv("RAFTLITE_GRPC_LOG");
    if (!v || strcmp(v, "1") != 0)
        gpr_set_log_function(quiet_log);
}

void rl_rpc_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, rpc_log_setup);
    grpc_init();
}
