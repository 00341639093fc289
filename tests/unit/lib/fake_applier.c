/*
** tests/unit/lib/fake_applier.c -- the fake database behind a Raft node
** (see fake_applier.h). Test and benchmark code only.
*/
#include "fake_applier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void fake_fail(struct rl_fake *f, const char *msg)
{
    if (f->fail)
        f->fail(msg);
    fprintf(stderr, "fake applier %llu: %s\n", (unsigned long long)f->raft_id,
            msg);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rl_fake_init(struct rl_fake *f, uint64_t raft_id, int keep,
                  struct rl_fake *peers, unsigned n_peers)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->raft_id = raft_id;
    f->keep = keep;
    f->peers = peers;
    f->n_peers = n_peers;
}

void rl_fake_clear(struct rl_fake *f)
{
    free(f->recs);
    f->recs = NULL;
    f->n = f->cap = 0;
}

static void fake_apply(void *ctx, const struct rl_applied *e)
{
    struct rl_fake *f = ctx;
    char msg[200];
    pthread_mutex_lock(&f->mu);
    if (e->index <= f->applied) {
        snprintf(msg, sizeof msg,
                 "fake %llu: entry %llu applied twice or out of order (at "
                 "%llu)",
                 (unsigned long long)f->raft_id, (unsigned long long)e->index,
                 (unsigned long long)f->applied);
        pthread_mutex_unlock(&f->mu);
        fake_fail(f, msg);
    }
    if (f->keep) {
        if (f->n == f->cap) {
            size_t cap = f->cap ? 2 * f->cap : 256;
            struct rl_fake_rec *r = realloc(f->recs, cap * sizeof *r);
            if (r == NULL) {
                pthread_mutex_unlock(&f->mu);
                fake_fail(f, "out of memory");
            }
            f->recs = r;
            f->cap = cap;
        }
        f->recs[f->n++] = (struct rl_fake_rec){
            e->index,     e->kind,
            e->effective, rl_checksum64(0, e->payload, e->len),
            e->len,       e->base};
    }
    f->applied = e->index;
    pthread_mutex_unlock(&f->mu);
}

uint64_t rl_fake_applied(struct rl_fake *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t a = f->applied;
    pthread_mutex_unlock(&f->mu);
    return a;
}

static uint64_t fake_applied(void *ctx)
{
    return rl_fake_applied(ctx);
}

/* The fake is "durable" as soon as it applied: wait (bounded) for A. */
static int fake_snapshot_ready(void *ctx, uint64_t A, unsigned timeout_ms,
                               uint64_t *db_size)
{
    struct rl_fake *f = ctx;
    double end = now_s() + timeout_ms / 1000.0;
    while (rl_fake_applied(f) < A) {
        if (now_s() > end)
            return 1;
        usleep(1000);
    }
    pthread_mutex_lock(&f->mu);
    f->snapshots++;
    if (A > f->durable)
        f->durable = A;
    *db_size = 4096 * (f->n + 1);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_restore(void *ctx, const struct rl_manifest *m)
{
    struct rl_fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    int have = f->applied >= m->A;
    if (have)
        f->restores_have++;
    else
        f->restores_need++;
    pthread_mutex_unlock(&f->mu);
    return have;
}

/* "Fetch an image" from a peer whose database reached A: copy its records
** (the image may be newer than A; the node then skips what it covers). */
static int fake_need_image(void *ctx, const struct rl_manifest *m)
{
    struct rl_fake *f = ctx;
    for (uint32_t i = 0; i < m->n_members; i++) {
        uint64_t id = m->members[i].raft_id;
        if (id == f->raft_id || id >= f->n_peers)
            continue;
        struct rl_fake *p = &f->peers[id];
        pthread_mutex_lock(&p->mu);
        if (p->applied < m->A) {
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        size_t n = p->n;
        struct rl_fake_rec *copy = malloc((n ? n : 1) * sizeof *copy);
        if (copy == NULL) {
            pthread_mutex_unlock(&p->mu);
            fake_fail(f, "out of memory");
        }
        if (n)
            memcpy(copy, p->recs, n * sizeof *copy);
        uint64_t applied = p->applied;
        pthread_mutex_unlock(&p->mu);
        pthread_mutex_lock(&f->mu);
        free(f->recs);
        f->recs = copy;
        f->n = n;
        f->cap = n ? n : 1;
        f->applied = applied;
        f->images++;
        pthread_mutex_unlock(&f->mu);
        return 0;
    }
    return 1;
}

struct rl_applier rl_fake_applier(struct rl_fake *f)
{
    return (struct rl_applier){.ctx = f,
                               .apply = fake_apply,
                               .applied_index = fake_applied,
                               .snapshot_ready = fake_snapshot_ready,
                               .restore = fake_restore,
                               .need_image = fake_need_image};
}
