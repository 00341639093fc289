/*
** tests/unit/lib/fixture_shim.h -- libraft 0.15's raft_fixture made fit
** for tests that restart servers and fail disks (test_fsm_fixture.c).
**
** The fixture has no restart, and its in-memory disk assumes a log that
** starts at index 1: after an installed snapshot empties it, its truncate
** and load use wrong positions. The shim wraps a server's raft_io:
**   - counts the requests whose callback has not run (raft_close needs
**     none in flight), disk ones apart;
**   - translates truncate and load to the disk's real first index;
**   - fails disk writes on demand, and after the first failure every
**     later one until the server restarts (what raft_uv 0.15 does);
**   - notes when each server's newest message lands, so a latency change
**     can keep a server's messages in order (as over TCP);
**   - unless told not to, caps an AppendEntries answered at once at what
**     the request proved (a raft 0.15 bug: see fixture_shim.c).
** Test code only. It never changes what raft or the FSM decide otherwise.
*/
#ifndef RL_TEST_FIXTURE_SHIM_H
#define RL_TEST_FIXTURE_SHIM_H

#include <raft.h>

struct rl_shim {
    struct raft_io *io;
    struct raft_io orig;       /* the fixture's methods */
    const raft_time *now;      /* the fixture's clock */
    unsigned pending;          /* requests whose callback has not run */
    unsigned disk_pending;     /* of them: appends, snapshot puts and gets */
    raft_index io_start;       /* index of the disk's first entry */
    raft_index installing;     /* snapshot index of an install being stored */
    int fault_after;           /* fail a disk write after this many more */
    int fault_armed;           /* a failure is due */
    int io_failed;             /* a write failed: all fail until a restart */
    int fix_match;             /* cap immediate AppendEntries answers */
    unsigned long capped;      /* answers capped so far */
    raft_io_recv_cb raft_recv; /* raft's receive callback */
    int in_recv;               /* an AppendEntries is being received */
    raft_index ae_end;         /* its prev_log_index + n_entries */
    unsigned latency;          /* network latency of the fixture, ms */
    raft_time last_delivery;   /* when its newest message lands */
};

/* Wrap io (a fixture server's, after raft_fixture_grow). At most 8. */
void rl_shim_install(struct rl_shim *sh, struct raft_io *io,
                     const raft_time *now);
/* Arm a disk failure after `after` more disk writes. */
void rl_shim_fault(struct rl_shim *sh, int after);
/* Forget faults (the disk is back); call before restarting the server. */
void rl_shim_reset_faults(struct rl_shim *sh);
/* The latency to set for a wish of ms: never so low that a new message
** overtakes one in flight. Records it. */
unsigned rl_shim_latency(struct rl_shim *sh, unsigned ms);

#endif /* RL_TEST_FIXTURE_SHIM_H */
