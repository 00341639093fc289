/*
** raftd/host/applier.c -- the node's applier callbacks (node.h struct
** rl_applier) for a hosted database: every committed entry, in log order,
** on the node's applier thread. Entries of other origins are written
** through rl_vfs_apply on the host's own connection; those a local writer
** of this process wrote itself are skipped once their writer said so.
**
** Invariant: an entry is never written twice, never skipped: the applier
** waits for a local writer that is still proposing its entry (the writer
** settles it in replicator.c, port_end). This file must never write to the
** database except through rl_vfs_apply and rl_vfs_set_applied, and never
** runs on the Raft loop thread.
*/
#include "host_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "fsio.h"

SQLITE_EXTENSION_INIT3

/* Frames the applier appends between its checkpoints: the same as
** SQLite's auto-checkpoint, which never runs for frames it did not write. */
#define APPLIER_CKPT_FRAMES 1000

/* A passive checkpoint on the applier connection: on a follower nothing
** else moves the WAL into the database file. */
static void applier_checkpoint(rl_host *h)
{
    int log = 0, ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(h->adb, "main",
                                       SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        rl_host_log(h, 1, "checkpoint of %s: %s", h->db_path,
                    sqlite3_errmsg(h->adb));
}

/* Writes one TXN entry into the file; retries until done or stopping. */
static void apply_txn(rl_host *h, const struct rl_applied *e)
{
    rl_txn t;
    char err[512];
    uint32_t frames;
    unsigned attempts = 0, full = 0;
    if (rl_txn_decode(e->payload, e->len, &t, err, sizeof err) != 0) {
        rl_host_log(
            h, 0,
            "entry %llu: transaction record is malformed (%s): not applied; "
            "this replica now differs from its peers",
            (unsigned long long)e->index, err);
        return;
    }
    for (;;) {
        int rc = rl_vfs_apply(h->af, &t, e->index, APPLY_LOCK_MS, &frames, err,
                              sizeof err);
        if (rc == SQLITE_OK) {
            if (full)
                rl_host_log(h, 1, "disk space returned: applied entry %llu",
                            (unsigned long long)e->index);
            h->ckpt_frames += frames;
            if (h->ckpt_frames >= APPLIER_CKPT_FRAMES) {
                h->ckpt_frames = 0;
                applier_checkpoint(h);
            }
            break;
        }
        if (rc == RL_VFS_APPLIED) {
            /* RL_ERR_APPLIED: its writer (or an earlier try) wrote it. A
            ** try that failed on a full disk after the frames were
            ** published (the record's write) leaves the entry in the
            ** file: the space came back all the same. */
            if (full)
                rl_host_log(h, 1,
                            "disk space returned: entry %llu is in the file",
                            (unsigned long long)e->index);
            break;
        }
        if (rc == SQLITE_BUSY_RECOVERY)
            rl_host_applier_read(h);
        if (rl_host_stopping(h))
            break;
        if (rc == SQLITE_FULL) {
            /* Nothing was published: the file stays at the previous
            ** entry, which reads keep serving. Said once, then every
            ** 30 s, not at every retry. */
            if (full++ % 150 == 0)
                rl_host_log(
                    h, 0,
                    "applying entry %llu: %s: this node's disk is full; it "
                    "keeps serving reads of what it applied and applies "
                    "again by itself once space is freed (retrying)",
                    (unsigned long long)e->index, err);
        } else if (++attempts % 10 == 1)
            rl_host_log(h, rc == SQLITE_BUSY ? 1 : 0,
                        "applying entry %llu: %s (retrying)",
                        (unsigned long long)e->index, err);
        rl_sleep_ms(APPLY_RETRY_MS);
    }
    rl_txn_free(&t);
}

/*
** Whether a client process of this host (origin pid, same node) wrote the
** entry itself. It holds the write lock from its transaction's start until
** it wrote its frames (or gave up), and writes them as soon as its commit
** is answered, so the applier waits while a writer holds the lock for the
** file to hold the entry, rather than announce itself at the lock (which
** would make the client's next write lock yield, and SQLite's busy
** handler sleep). It stops waiting when no writer holds the lock (the
** client gave up: the file then still lacks the entry), the client process
** is gone, or after CLIENT_WAIT_MS; then it applies the entry under the
** lock, which finds it already applied if it was.
*/
#define CLIENT_WAIT_MS 2000
static int client_wrote(rl_host *h, const struct rl_applied *e)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (rl_vfs_applied_settled(h->af) >= e->index)
            return 1;
        if (!rl_vfs_writer_active(h->af)) /* wrote it just now, or gave up */
            return rl_vfs_applied_settled(h->af) >= e->index;
        if (rl_host_stopping(h) ||
            (kill((pid_t)e->origin_pid, 0) != 0 && errno == ESRCH))
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 +
                (now.tv_nsec - t0.tv_nsec) / 1000000 >=
            CLIENT_WAIT_MS)
            return 0;
        usleep(100);
    }
}

static void host_apply(void *ctx, const struct rl_applied *e)
{
    rl_host *h = ctx;
    uint64_t db_index;
    if (h->rebuild && rl_host_rebuild_apply(h, e))
        return;
    pthread_mutex_lock(&h->mu);
    db_index = h->db_index;
    pthread_mutex_unlock(&h->mu);
    if (e->index <= db_index) {
        /* The file has it: restart replay, or a follower's writer that
        ** wrote its forwarded entry before this node learnt the commit. */
        if (e->kind == RL_ENTRY_TXN && e->origin_node == h->raft_id &&
            e->origin_pid == (uint32_t)getpid()) {
            struct local_txn *lt;
            pthread_mutex_lock(&h->mu);
            if ((lt = rl_host_local_find(h, e->origin_txn)) &&
                lt->state != LT_PROPOSING)
                rl_host_local_drop(h, lt);
            pthread_mutex_unlock(&h->mu);
        }
        rl_host_advance(h, e->index, 0);
        return;
    }
    if (e->kind == RL_ENTRY_TXN && e->effective) {
        if (e->origin_node == h->raft_id &&
            e->origin_pid == (uint32_t)getpid()) {
            /* Proposed here: its writer may write it itself. */
            struct local_txn *lt;
            int state = LT_NOT_WRITTEN;
            pthread_mutex_lock(&h->mu);
            while ((lt = rl_host_local_find(h, e->origin_txn)) &&
                   lt->state == LT_PROPOSING && !h->stopping)
                pthread_cond_wait(&h->cv, &h->mu);
            if (lt) {
                state = lt->state;
                rl_host_local_drop(h, lt);
            }
            pthread_mutex_unlock(&h->mu);
            if (state == LT_WRITTEN) {
                rl_host_advance(h, e->index, 1);
                return;
            }
        } else if (e->origin_node == h->raft_id && e->origin_pid &&
                   client_wrote(h, e)) {
            rl_host_advance(h, e->index, 1);
            return;
        }
        apply_txn(h, e);
        rl_host_advance(h, e->index, 1);
        return;
    }
    if (e->kind == RL_ENTRY_TXN && e->origin_node == h->raft_id &&
        e->origin_pid == (uint32_t)getpid()) {
        pthread_mutex_lock(&h->mu);
        struct local_txn *lt = rl_host_local_find(h, e->origin_txn);
        if (lt)
            rl_host_local_drop(h, lt);
        pthread_mutex_unlock(&h->mu);
    }
    if (e->kind == RL_ENTRY_GENESIS) {
        char err[512];
        if (e->origin_node == h->raft_id) {
            /* Our own file is the initial image. */
            if (rl_vfs_set_applied(h->af, e->index, APPLY_LOCK_MS, err,
                                   sizeof err) != SQLITE_OK)
                rl_host_log(h, 0, "recording the genesis entry %llu: %s",
                            (unsigned long long)e->index, err);
            rl_host_advance(h, e->index, 1);
            return;
        }
        while (!rl_host_stopping(h) &&
               rl_host_fetch_image(h, e->index, NULL) != 0)
            rl_sleep_ms(1000);
        return;
    }
    rl_host_advance(h, e->index, 0);
}

static uint64_t host_applied_index(void *ctx)
{
    return rl_host_applied(ctx);
}

static int host_snapshot_ready(void *ctx, uint64_t A, unsigned timeout_ms,
                               uint64_t *db_size)
{
    rl_host *h = ctx;
    struct timespec dl;
    int ok;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    while (h->applied < A && !h->stopping)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
            break;
    ok = h->applied >= A;
    pthread_mutex_unlock(&h->mu);
    (void)db_size;
    if (ok)
        RL_FAULT("snapshot-sync"); /* before the WAL and record are synced */
    /* The snapshot lets raft drop the entries up to A: what the file
    ** reflects must survive an OS crash first. */
    if (ok && rl_vfs_sync(h->af) != SQLITE_OK) {
        rl_host_log(h, 1, "cannot sync %s before a snapshot", h->db_path);
        ok = 0;
    }
    return ok ? 0 : 1;
}

static int host_restore(void *ctx, const struct rl_manifest *m)
{
    rl_host *h = ctx;
    int ok;
    pthread_mutex_lock(&h->mu);
    ok = h->db_index >= m->L;
    if (ok && h->applied < m->A) {
        h->applied = m->A;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return ok;
}

static int host_need_image(void *ctx, const struct rl_manifest *m)
{
    rl_host *h = ctx;
    int rc = rl_host_fetch_image(h, m->L, m);
    if (rc == 0) {
        pthread_mutex_lock(&h->mu);
        if (h->applied < m->A)
            h->applied = m->A;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    return rc;
}

void rl_host_applier_init(rl_host *h, struct rl_applier *a)
{
    a->ctx = h;
    a->apply = host_apply;
    a->applied_index = host_applied_index;
    a->snapshot_ready = host_snapshot_ready;
    a->restore = host_restore;
    a->need_image = host_need_image;
}
