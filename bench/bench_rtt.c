/*
** bench/bench_rtt.c -- one loopback round trip of raftlite's own gRPC
** stack, the unit in which issue 17 states what a follower's write may
** cost over the leader's ("about one extra loopback round trip"): N
** ReadIndex calls with hint_only to a node's sidecar (the node answers
** from memory, no quorum round), one at a time, through the same client
** code a follower's writer uses (raftd/host/peers.c on raftd/rpc).
**
**   bench_rtt GRPC_ADDR N [PAUSE_US]
**                            prints {"n":N,"p50_ms":..,"mean_ms":..}
**
** PAUSE_US (default 0) sleeps that long before each call: a caller that
** did other work between calls, as a writer or a reader does, meets
** threads on both sides that went idle meanwhile (measured: 0.075 ms
** back to back, 0.16-0.17 ms with 200 us between calls, 0.13 ms when the
** caller spins instead of sleeping: about half of the difference is the
** server's side).
**
** It must never judge the number (a benchmark is not a test): it exits 0
** when every call was answered, 1 when one failed.
*/
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "peers.h"
#include "rpc.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    rl_rpc_client *cl;
    double *ms, sum = 0;
    char err[512];
    int n, i, pause_us = 0;
    if ((argc != 3 && argc != 4) || (n = atoi(argv[2])) <= 0 ||
        (argc == 4 && (pause_us = atoi(argv[3])) < 0)) {
        fprintf(stderr, "usage: %s GRPC_ADDR N [PAUSE_US]\n", argv[0]);
        return 2;
    }
    cl = rl_rpc_client_new(NULL, 0, err, sizeof err);
    ms = calloc((size_t)n, sizeof *ms);
    if (!cl || !ms) {
        fprintf(stderr, "bench_rtt: %s\n", cl ? "out of memory" : err);
        return 1;
    }
    /* The first call makes the channel: not a round trip of a write. */
    for (i = -10; i < n; i++) {
        uint64_t ci = 0, L = 0;
        double t0;
        if (pause_us)
            usleep((useconds_t)pause_us);
        t0 = now_ms();
        if (rl_cluster_read_hint(cl, argv[1], 2000, RL_READ_HINT, &ci, &L, err,
                                 sizeof err) != RL_OK) {
            fprintf(stderr, "bench_rtt: %s: %s\n", argv[1], err);
            return 1;
        }
        if (i >= 0)
            ms[i] = now_ms() - t0;
    }
    for (i = 0; i < n; i++)
        sum += ms[i];
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    printf("{\"n\":%d,\"p50_ms\":%.4f,\"mean_ms\":%.4f}\n", n, ms[n / 2],
           sum / n);
    free(ms);
    rl_rpc_client_free(cl);
    return 0;
}
