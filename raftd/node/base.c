/*
** raftd/node/base.c -- what every file of raftd/node/ uses about a node:
** its log, small string and deadline helpers, and the end of its life
** (the last reference frees it).
**
** The room's base: the other files of the room call it, and it calls none
** of them (only the pure fsm.c and entry.c below). What it must never do:
** touch raft or the loop; node_free runs only once no thread uses the
** node (its owner and its applier have both dropped their reference).
*/
#include "node_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void node_log(struct rl_node *n, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n->cfg.log)
        n->cfg.log(n->cfg.log_ctx, level, msg);
    else if (level <= 1)
        fprintf(stderr, "raftlite node %llu: %s\n",
                (unsigned long long)n->cfg.raft_id, msg);
}

void node_copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

struct timespec node_deadline_in(unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

unsigned node_ms_left(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(dl->tv_sec - now.tv_sec) * 1000 +
                   (dl->tv_nsec - now.tv_nsec) / 1000000L;
    return ms > 0 ? (unsigned)ms : 0;
}

/* Free a node once its owner and its applier thread are both done. */
void node_free(struct rl_node *n)
{
    struct item *it = n->q_head;
    while (it) {
        struct item *next = it->next;
        rl_manifest_clear(&it->m);
        free(it);
        it = next;
    }
    rl_fsm_clear(&n->sm);
    free(n->members);
    free(n->dir);
    free(n->raft_addr);
    free(n->node_id);
    free(n->grpc_addr);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->qcv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

void node_unref(struct rl_node *n)
{
    pthread_mutex_lock(&n->mu);
    int left = --n->refs;
    pthread_mutex_unlock(&n->mu);
    if (left == 0)
        node_free(n);
}
