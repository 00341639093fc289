/*
** raftd/rpc/kept.c -- streams kept open between exchanges (rpc.h "kept
** streams"): a client's small table of bidirectional calls given back
** after a complete exchange and taken again by the next caller of the
** same method and target, and the targets that refused a method.
**
** It must never hand one stream to two callers (a taken stream leaves the
** table until it is given back), nor reuse a stream past half of its life
** (its deadline is the other half's margin), nor block under cl->mu:
** streams are ended (cancel, then finish) after the lock is let go.
*/
#include "rpc_int.h"
#include "errbuf.h"

#include <stdio.h>
#include <string.h>

/* Ends a stream no one will use again: the server sees a cancelled call. */
static void end_stream(rl_rpc_stream *st)
{
    char e[64];
    rl_rpc_stream_cancel(st);
    (void)rl_rpc_stream_finish(st, e, sizeof e);
}

rl_rpc_stream *rl_rpc_stream_take(rl_rpc_client *cl, const char *target,
                                  const char *method, int64_t idle_ms,
                                  int64_t life_ms, int *reused, char *err,
                                  size_t errlen)
{
    rl_rpc_stream *st = NULL, *stale[RL_RPC_KEPT];
    int nstale = 0, refused = 0;
    int64_t now = rl_rpc_now_ms();
    *reused = 0;
    if (strlen(target) >= sizeof st->target ||
        strlen(method) >= sizeof st->method) {
        rl_seterr(err, errlen, "target or method name too long to keep");
        return NULL;
    }
    pthread_mutex_lock(&cl->mu);
    for (int i = 0; i < RL_RPC_KEPT; i++) {
        kept *k = &cl->kept[i];
        if (!k->st)
            continue;
        if (now - k->last > idle_ms ||
            now - k->st->born >= k->st->life_ms / 2) {
            stale[nstale++] = k->st; /* any method's: idle is idle */
            k->st = NULL;
        } else if (!st && !strcmp(k->st->target, target) &&
                   !strcmp(k->st->method, method)) {
            st = k->st;
            k->st = NULL;
        }
    }
    for (int i = 0; i < RL_RPC_REFUSALS && !st; i++) {
        refusal *r = &cl->refused[i];
        if (r->until > now && !strcmp(r->target, target) &&
            !strcmp(r->method, method))
            refused = 1;
    }
    if (st)
        cl->kept_reused++;
    pthread_mutex_unlock(&cl->mu);
    for (int i = 0; i < nstale; i++)
        end_stream(stale[i]);
    if (st) {
        *reused = 1;
        return st;
    }
    if (refused) {
        rl_seterr(err, errlen, "%s refused %s lately", target, method);
        return NULL;
    }
    st = rl_rpc_stream_open(cl, target, method, life_ms, err, errlen);
    if (!st)
        return NULL;
    snprintf(st->target, sizeof st->target, "%s", target);
    snprintf(st->method, sizeof st->method, "%s", method);
    st->born = now;
    st->life_ms = life_ms;
    pthread_mutex_lock(&cl->mu);
    cl->kept_opened++;
    pthread_mutex_unlock(&cl->mu);
    return st;
}

void rl_rpc_stream_keep(rl_rpc_client *cl, rl_rpc_stream *st)
{
    int slot = -1;
    pthread_mutex_lock(&cl->mu);
    for (int i = 0; i < RL_RPC_KEPT && slot < 0; i++)
        if (!cl->kept[i].st)
            slot = i;
    if (slot >= 0) {
        cl->kept[slot].st = st;
        cl->kept[slot].last = rl_rpc_now_ms();
    }
    pthread_mutex_unlock(&cl->mu);
    if (slot < 0)
        end_stream(st);
}

void rl_rpc_stream_refused(rl_rpc_client *cl, const char *target,
                           const char *method, int64_t for_ms)
{
    int slot = 0;
    pthread_mutex_lock(&cl->mu);
    /* Its own entry if it has one, else the one that ends first. */
    for (int i = 0; i < RL_RPC_REFUSALS; i++) {
        refusal *r = &cl->refused[i];
        if (!strcmp(r->target, target) && !strcmp(r->method, method)) {
            slot = i;
            break;
        }
        if (r->until < cl->refused[slot].until)
            slot = i;
    }
    snprintf(cl->refused[slot].target, sizeof cl->refused[slot].target, "%s",
             target);
    snprintf(cl->refused[slot].method, sizeof cl->refused[slot].method, "%s",
             method);
    cl->refused[slot].until = rl_rpc_now_ms() + for_ms;
    pthread_mutex_unlock(&cl->mu);
}

void rl_rpc_kept_counts(rl_rpc_client *cl, uint64_t *opened, uint64_t *reused)
{
    pthread_mutex_lock(&cl->mu);
    *opened = cl->kept_opened;
    *reused = cl->kept_reused;
    pthread_mutex_unlock(&cl->mu);
}
