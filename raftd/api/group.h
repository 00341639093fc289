/*
** raftd/api/group.h -- group commit: concurrent requests that queue for the one
** writer run together, in one batch, by whichever of their threads finds
** the writer free (the "combiner"); the others sleep until their request
** is done. service.c runs each batch as one SQLite transaction (one Raft
** entry) with a savepoint per request.
**
** It knows nothing of SQLite or Raft: a batch is handed to run() as an
** array of jobs. It must never run two batches at once (run() owns the
** writer while it runs), never run a job twice, and never leave a caller
** waiting past its deadline while its job is still only queued.
*/
#ifndef RL_GROUP_H
#define RL_GROUP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* How much time a caller has left: ms, INT64_MAX no limit, 0 stop now. */
typedef int64_t (*rl_group_remaining_fn)(void *ctx);

typedef struct rl_group_job {
    void *arg;                 /* the request, for run() */
    rl_group_remaining_fn rem; /* the caller's deadline (NULL: none) */
    void *ctx;
    /* Owned by the group: */
    int state; /* queued, taken into a batch, done */
    struct rl_group_job *next;
} rl_group_job;

/* Runs n >= 1 jobs as one batch, on the combiner's thread, without the
** group's lock. Every job's outcome is in its arg when it returns. */
typedef void (*rl_group_run_fn)(void *run_ctx, rl_group_job **jobs, size_t n);

typedef struct rl_group {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a batch finished */
    rl_group_job *head, *tail;
    int running; /* a combiner is running a batch */
    size_t max_batch;
    rl_group_run_fn run;
    void *run_ctx;
    uint64_t batches, jobs; /* batches run and jobs in them */
} rl_group;

/* max_batch >= 1 (1: every request alone, as without grouping). */
int rl_group_init(rl_group *g, size_t max_batch, rl_group_run_fn run,
                  void *run_ctx);
/* No submit may be in progress. */
void rl_group_close(rl_group *g);

/* Queues job and returns once it ran (0: its outcome is in job->arg), or
** -1 if its deadline passed while it was still queued: it did not run and
** never will. Job lives on the caller's stack. */
int rl_group_submit(rl_group *g, rl_group_job *job);

/* Batches and jobs run so far (for logs and tests). */
void rl_group_stats(rl_group *g, uint64_t *batches, uint64_t *jobs);

#endif
