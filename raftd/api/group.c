/*
** raftd/api/group.c -- group commit's queue and combiner (see group.h).
**
** Invariants, under mu: a job is in the list iff its state is QUEUED;
** `running` is 1 from the moment a combiner takes a batch until it marked
** the batch DONE; only a thread whose own job is still QUEUED becomes the
** combiner, so every batch has a thread that waits for it.
*/
#include "group.h"

#include <errno.h>
#include <time.h>

enum { QUEUED = 0, TAKEN, DONE };

#define BATCH_ON_STACK 64

int rl_group_init(rl_group *g, size_t max_batch, rl_group_run_fn run,
                  void *run_ctx)
{
    if (max_batch < 1)
        max_batch = 1;
    if (max_batch > BATCH_ON_STACK)
        max_batch = BATCH_ON_STACK;
    g->head = g->tail = NULL;
    g->running = 0;
    g->max_batch = max_batch;
    g->run = run;
    g->run_ctx = run_ctx;
    g->batches = g->jobs = 0;
    if (pthread_mutex_init(&g->mu, NULL) != 0)
        return -1;
    if (pthread_cond_init(&g->cv, NULL) != 0) {
        pthread_mutex_destroy(&g->mu);
        return -1;
    }
    return 0;
}

void rl_group_close(rl_group *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

/* Unlinks job (QUEUED, so in the list). */
static void unlink_job(rl_group *g, rl_group_job *job)
{
    rl_group_job **pp = &g->head, *prev = NULL;
    while (*pp && *pp != job) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = job->next;
    if (g->tail == job)
        g->tail = prev;
    job->next = NULL;
}

/* Waits on cv for at most 50 ms, so that a deadline is noticed. */
static void wait_a_little(rl_group *g)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
}

int rl_group_submit(rl_group *g, rl_group_job *job)
{
    job->state = QUEUED;
    job->next = NULL;
    pthread_mutex_lock(&g->mu);
    if (g->tail)
        g->tail->next = job;
    else
        g->head = job;
    g->tail = job;
    for (;;) {
        if (job->state == DONE) {
            pthread_mutex_unlock(&g->mu);
            return 0;
        }
        if (job->state == QUEUED && !g->running) {
            /* Become the combiner: take the oldest jobs (FIFO, so no job
            ** waits behind later ones for more than one batch). */
            rl_group_job *batch[BATCH_ON_STACK];
            size_t n = 0;
            while (g->head && n < g->max_batch) {
                rl_group_job *j = g->head;
                g->head = j->next;
                j->next = NULL;
                j->state = TAKEN;
                batch[n++] = j;
            }
            if (!g->head)
                g->tail = NULL;
            g->running = 1;
            pthread_mutex_unlock(&g->mu);
            g->run(g->run_ctx, batch, n);
            pthread_mutex_lock(&g->mu);
            for (size_t i = 0; i < n; i++)
                batch[i]->state = DONE;
            g->batches++;
            g->jobs += n;
            g->running = 0;
            pthread_cond_broadcast(&g->cv);
            continue;
        }
        if (job->state == QUEUED && job->rem && job->rem(job->ctx) == 0) {
            unlink_job(g, job);
            pthread_mutex_unlock(&g->mu);
            return -1;
        }
        wait_a_little(g);
    }
}

void rl_group_stats(rl_group *g, uint64_t *batches, uint64_t *jobs)
{
    pthread_mutex_lock(&g->mu);
    *batches = g->batches;
    *jobs = g->jobs;
    pthread_mutex_unlock(&g->mu);
}
