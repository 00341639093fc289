/*
** tests/unit/test_group.c -- raftd/api/group.c alone: 8 threads submit 200
** jobs each against a run() that takes a millisecond; every job runs
** exactly once, batches never overlap or exceed max_batch, and concurrent
** jobs share batches. A job whose deadline passes while it is queued
** behind a slow batch returns -1 and never runs; max_batch 1 runs every
** job alone.
*/
#include "group.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/check.h"

#define THREADS 8
#define PER     200

static atomic_int in_run;  /* batches running now */
static atomic_int overlap; /* times two ran at once */
static atomic_int too_big, biggest;
static size_t max_batch;
static useconds_t run_us = 1000;

typedef struct job_arg {
    atomic_int runs;
} job_arg;

static void run(void *ctx, rl_group_job **jobs, size_t n)
{
    (void)ctx;
    if (atomic_fetch_add(&in_run, 1) != 0)
        atomic_fetch_add(&overlap, 1);
    if (n > max_batch)
        atomic_fetch_add(&too_big, 1);
    if ((int)n > atomic_load(&biggest))
        atomic_store(&biggest, (int)n);
    for (size_t i = 0; i < n; i++) {
        job_arg *a = jobs[i]->arg;
        atomic_fetch_add(&a->runs, 1);
    }
    usleep(run_us);
    atomic_fetch_sub(&in_run, 1);
}

static rl_group g;
static job_arg args[THREADS][PER];

static void *worker(void *p)
{
    int t = (int)(long)p;
    for (int i = 0; i < PER; i++) {
        rl_group_job job = {&args[t][i], NULL, NULL, 0, NULL};
        EXPECT(rl_group_submit(&g, &job) == 0);
    }
    return NULL;
}

static void many(size_t mb)
{
    pthread_t th[THREADS];
    uint64_t batches, jobs;
    memset(args, 0, sizeof args);
    atomic_store(&biggest, 0);
    max_batch = mb;
    EXPECT(rl_group_init(&g, mb, run, NULL) == 0);
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER; i++)
            EXPECT(atomic_load(&args[t][i].runs) == 1);
    rl_group_stats(&g, &batches, &jobs);
    EXPECT(jobs == THREADS * PER);
    EXPECT(atomic_load(&overlap) == 0);
    EXPECT(atomic_load(&too_big) == 0);
    if (mb > 1) {
        /* 8 threads, 1 ms per batch: they cannot all have run alone. */
        EXPECT(batches < jobs);
        EXPECT(atomic_load(&biggest) > 1);
    } else {
        EXPECT(batches == jobs);
    }
    printf("max_batch %zu: %llu jobs in %llu batches (largest %d)\n", mb,
           (unsigned long long)jobs, (unsigned long long)batches,
           atomic_load(&biggest));
    rl_group_close(&g);
}

/* Deadline: "time left" is a flag the test clears. */
static atomic_int late_ok = 1;
static int64_t late_rem(void *ctx)
{
    (void)ctx;
    return atomic_load(&late_ok) ? 1000 : 0;
}

static void *slow_submit(void *p)
{
    rl_group_job job = {p, NULL, NULL, 0, NULL};
    EXPECT(rl_group_submit(&g, &job) == 0);
    return NULL;
}

static void deadline(void)
{
    pthread_t th;
    job_arg first = {0}, late = {0};
    rl_group_job job = {&late, late_rem, NULL, 0, NULL};
    max_batch = 4;
    run_us = 300 * 1000; /* the first batch holds the writer 300 ms */
    EXPECT(rl_group_init(&g, 4, run, NULL) == 0);
    pthread_create(&th, NULL, slow_submit, &first);
    while (atomic_load(&in_run) == 0)
        usleep(1000);
    atomic_store(&late_ok, 0); /* its deadline passed while queued */
    EXPECT(rl_group_submit(&g, &job) == -1);
    pthread_join(th, NULL);
    EXPECT(atomic_load(&first.runs) == 1);
    EXPECT(atomic_load(&late.runs) == 0);
    rl_group_close(&g);
    run_us = 1000;
}

int main(void)
{
    many(32);
    many(1);
    deadline();
    return rl_check_report("test_group");
}
