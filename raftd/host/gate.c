/*
** raftd/host/gate.c -- the read gate thread of a hosted database: closes
** the gate (vfs.h rl_vfs_gate_close) while the node cannot vouch for its
** file (catching up after a start, rebuilding, waiting for an image) and
** opens it once it can.
**
** This file must never open the gate on a file older than what the node
** served before its restart, nor touch the database otherwise.
*/
#include "host_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

SQLITE_EXTENSION_INIT3

/*
** The read gate (vfs.h rl_vfs_gate_close). A node must never answer an
** older state than it answered before, nor a file it cannot vouch for
** (DESIGN 6). After a restart its file may be older than what it served:
** an OS crash drops the WAL's unsynced tail, and only the Raft log (which
** raft fsyncs) remembers how far the node had gone: every entry it applied
** was in its log. So reads wait from the start until the node applied
** every entry its log held when it started (start_index: such entries are
** applied once the node learns they committed, or are replaced by entries
** of a newer leader, which commit past them), and the database applier
** wrote them. The gate also stays closed during a rebuild (the file is
** unknown) and while the database waits for a peer's image (it is behind
** the cluster's snapshot, maybe far). Reads of other connections then get
** a busy code and wait in their busy handler (vfs.c gate_closed); the
** applier's own connection holds the gate and is not held by it.
*/
#define GATE_POLL_MS 20

/* Closing is said as a warning when the cause is not an ordinary start
** (a rebuild, an image), and opening too when reads waited long. */
void rl_host_gate_set(rl_host *h, int closed, int loud, const char *why)
{
    char err[512];
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (closed) {
        if (h->gate_closed && strcmp(why, h->gate_why) == 0)
            return;
        if (rl_vfs_gate_close(h->af, why, err, sizeof err) != SQLITE_OK)
            rl_host_log(h, 0, "%s: %s", h->db_path, err);
        if (!h->gate_closed) {
            h->gate_since = now.tv_sec;
            rl_host_log(h, loud ? 1 : 2, "%s: reads wait: %s", h->db_path, why);
        }
        snprintf(h->gate_why, sizeof h->gate_why, "%s", why);
        h->gate_closed = 1;
    } else if (h->gate_closed) {
        long waited = (long)(now.tv_sec - h->gate_since);
        rl_vfs_gate_open(h->af);
        h->gate_closed = 0;
        rl_host_log(h, waited >= 5 ? 1 : 2, "%s: serving reads (after %ld s)",
                    h->db_path, waited);
    }
}

/* Decides the gate from the node's state: 0 open; 1 closed (catching up
** after a start, waiting for an image), 2 closed for a rebuild (said as a
** warning); why filled. */
static int gate_wanted(rl_host *h, char *why, size_t n)
{
    struct rl_node_status st;
    rl_node_status(h->node, &st);
    if (__atomic_load_n(&h->rebuild, __ATOMIC_ACQUIRE)) {
        snprintf(why, n,
                 "node %s is rebuilding its database from a peer's image "
                 "(its files did not match its applied record; see its log)",
                 h->id.node_id);
        return 2;
    }
    if (st.need_image) {
        snprintf(why, n,
                 "node %s is behind the cluster's snapshot (index %llu) and "
                 "installs a peer's image first",
                 h->id.node_id, (unsigned long long)st.need_image_A);
        return 1; /* ordinary for a joiner: the image fetch logs its own
                     trouble */
    }
    if (!h->gate_caught_up) {
        if (st.fsm_applied >= st.start_index &&
            st.applier_index >= st.fsm_index) {
            h->gate_caught_up = 1;
            return 0;
        }
        snprintf(why, n,
                 "node %s restarted and catches up first: its log held "
                 "index %llu when it started, raft has applied %llu and the "
                 "database %llu (PRAGMA raft_status: applied_index) (%s)",
                 h->id.node_id, (unsigned long long)st.start_index,
                 (unsigned long long)st.fsm_applied,
                 (unsigned long long)rl_host_applied(h),
                 st.leader_id ? "a leader is known"
                              : "no leader reachable yet: a majority of the "
                                "cluster must be up");
        return 1;
    }
    return 0;
}

void *rl_host_gate_main(void *arg)
{
    rl_host *h = arg;
    char why[512];
    for (;;) {
        struct timespec dl;
        int stop;
        int closed = gate_wanted(h, why, sizeof why);
        rl_host_gate_set(h, closed != 0, closed == 2, why);
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += GATE_POLL_MS * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&h->mu);
        if (!h->stopping)
            pthread_cond_timedwait(&h->cv, &h->mu, &dl);
        stop = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            break;
    }
    return NULL;
}
