/*
** raftd/node/applier.c -- the applier thread: takes the entries and
** restore markers the FSM queued (raftfsm.c) and hands them to the
** database through struct rl_applier, in log order, each once per run;
** after a restore it waits for an image until the database has it.
**
** Runs on its own thread, the only one that calls the applier's apply,
** restore, need_image and applied_index. It may block in those callbacks,
** so it must never hold n->mu while calling one, and never touch raft.
*/
#include "node_int.h"

#include <stdlib.h>

void node_queue_push(struct rl_node *n, struct item *it)
{
    pthread_mutex_lock(&n->mu);
    if (n->q_tail)
        n->q_tail->next = it;
    else
        n->q_head = it;
    n->q_tail = it;
    if (it->type == ITEM_ENTRY)
        n->pub.queue_bytes += it->e.len;
    pthread_cond_signal(&n->qcv);
    pthread_mutex_unlock(&n->mu);
}

static void set_applier_index(struct rl_node *n, uint64_t index)
{
    pthread_mutex_lock(&n->mu);
    if (index > n->pub.applier_index) {
        n->pub.applier_index = index;
        pthread_cond_broadcast(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
}

/* Wait for an image (need_image) until installed or stopping. */
static void applier_restore(struct rl_node *n, struct item *it, uint64_t *skip)
{
    struct rl_applier *a = &n->cfg.applier;
    if (!a->restore(a->ctx, &it->m)) {
        pthread_mutex_lock(&n->mu);
        n->pub.need_image = 1;
        n->pub.need_image_A = it->m.A;
        pthread_mutex_unlock(&n->mu);
        node_log(n, 2, "database is behind snapshot A=%llu: fetching an image",
                 (unsigned long long)it->m.A);
        for (;;) {
            int rc = a->need_image(a->ctx, &it->m);
            if (rc == 0 && a->applied_index(a->ctx) >= it->m.A)
                break;
            pthread_mutex_lock(&n->mu);
            struct timespec dl = node_deadline_in(IMAGE_RETRY_MS);
            if (!n->stopping)
                pthread_cond_timedwait(&n->qcv, &n->mu, &dl);
            int stop = n->stopping;
            pthread_mutex_unlock(&n->mu);
            if (stop)
                return;
        }
        pthread_mutex_lock(&n->mu);
        n->pub.need_image = 0;
        pthread_mutex_unlock(&n->mu);
    }
    *skip = a->applied_index(a->ctx);
    set_applier_index(n, *skip > it->m.A ? *skip : it->m.A);
}

void *node_applier_main(void *arg)
{
    struct rl_node *n = arg;
    struct rl_applier *a = &n->cfg.applier;
    uint64_t skip = a->applied_index(a->ctx);
    /* Entries come in index order, except after a log reload, when raft
    ** replays from its snapshot what the applier already had: done
    ** drops those. */
    uint64_t done = 0;
    set_applier_index(n, skip);
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (n->q_head == NULL && !n->stopping)
            pthread_cond_wait(&n->qcv, &n->mu);
        if (n->stopping) {
            pthread_mutex_unlock(&n->mu);
            break;
        }
        struct item *it = n->q_head;
        n->q_head = it->next;
        if (n->q_head == NULL)
            n->q_tail = NULL;
        if (it->type == ITEM_ENTRY)
            n->pub.queue_bytes -= it->e.len;
        pthread_mutex_unlock(&n->mu);
        if (it->type == ITEM_RESTORE) {
            applier_restore(n, it, &skip);
            rl_manifest_clear(&it->m);
        } else if (it->e.index > done) {
            if (it->e.index > skip)
                a->apply(a->ctx, &it->e);
            done = it->e.index;
            set_applier_index(n, it->e.index);
        }
        free(it);
    }
    node_unref(n);
    return NULL;
}
