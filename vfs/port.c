/*
** vfs/port.c -- the calls of the replicator port (vfs.h rl_port): the one
** place where the VFS hands something to the host that replicates it.
**
** Each call of the port is one small function here, so that the port's
** shape (its ctx, what commit answers, how end is told which commit it
** settles) is changed in this file alone. Callers: lock.c takes the write
** lock (begin) and gates a linearizable read (read_point); capture.c
** hands over a committing transaction (commit) and says whether its
** commit frame reached the file (end).
**
** What it must never do: call the port without a port (a replicated
** database no node of this process serves has port NULL); keep state of
** its own (what a call needs lives on the main file, rl_file).
*/
#include "vfs_int.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>

/* The writer took the write lock at applied index m->applied_at_lock:
** SQLITE_OK, or SQLITE_BUSY (or another code) to make it retry later. */
int rlv_port_begin(rl_file *m)
{
    if (!m->port || !m->port->begin)
        return SQLITE_OK;
    return m->port->begin(m->port->ctx, m->path, m->applied_at_lock);
}

/* Hands transaction t to the port (m->port is set) and waits for its
** verdict: SQLITE_OK with ci->index the entry that took effect (0: no
** applied record), or an error code with err. */
int rlv_port_commit(rl_file *m, const rl_txn *t, rl_commit_info *ci, char *err,
                    size_t errlen)
{
    return m->port->commit(m->port->ctx, m->path, t, ci, err, errlen);
}

/* Settles the commit that rlv_port_commit accepted with an index, by the
** ticket its commit answered (rl_commit_info.ticket): ok says whether its
** commit frame reached the file. */
void rlv_port_end(rl_file *m, void *ticket, int ok)
{
    if (m->port && m->port->end)
        m->port->end(m->port->ctx, m->path, ticket, ok);
}

/* A linearizable read's point (rl_port.read_point); refused when no node
** of this process serves the database. */
int rlv_port_read_point(rl_file *m, uint64_t *wait_index, char *err,
                        size_t errlen)
{
    if (!m->port || !m->port->read_point) {
        snprintf(err, errlen, "this process has no Raft node for it");
        return SQLITE_ERROR;
    }
    return m->port->read_point(m->port->ctx, m->path, wait_index, err, errlen);
}
