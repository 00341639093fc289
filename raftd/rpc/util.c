/*
** raftd/rpc/util.c -- the parts of rpc.h that need no gRPC (byte buffers,
** the clock of call deadlines), so that grpc-free code such as service.c
** and its fuzz targets can link them. It must never include a grpc header.
*/
#include <stdlib.h>
#include <time.h>

#include "rpc.h"

void rl_rpc_buf_free(rl_rpc_buf *b)
{
    if (b) {
        free(b->data);
        b->data = NULL;
        b->len = 0;
    }
}

int64_t rl_rpc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
