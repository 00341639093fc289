/*
** lib/timing.h -- per-commit latency breakdown of a replicated write, for
** benchmarks (issue 18). With RAFTLITE_TIMING=DIR in the environment, each
** commit a writer thread of this process makes through the VFS appends one
** line to DIR/commits-<pid>.txt: the times of its points below, in
** nanoseconds after RL_T_CAPTURE (0 = not seen). bench/run.py turns the
** lines into percentiles per segment.
**
** Without the variable (always, outside benchmarks) every point is one
** test of a global that is 0: no clock is read, nothing is written. It must
** never change what a commit does, nor fail one: a line that cannot be
** written is dropped.
**
** The points follow one commit across threads: the writer's (VFS, host,
** rl_node_propose) and the node's loop thread, whose stamps travel in the
** proposal and are copied back to the writer when it wakes. The loop's
** "appended" and "committed" stamps assume one proposal in flight at a
** time (the one-writer benchmark); with several, they are those of the
** latest append or apply that covered the entry.
*/
#ifndef RL_TIMING_H
#define RL_TIMING_H

#include <stdint.h>

enum rl_timing_point {
    RL_T_CAPTURE,   /* VFS: the commit frame is written: capture begins */
    RL_T_PROPOSE,   /* node: entry encoded, queued for the loop */
    RL_T_LOOP,      /* loop: raft_apply called */
    RL_T_APPENDED,  /* loop: the local append (and its flush) completed */
    RL_T_COMMITTED, /* loop: the FSM applies it (a quorum has it) */
    RL_T_APPLIED,   /* loop: raft_apply's callback, the writer signalled */
    RL_T_WOKEN,     /* writer: awake in rl_node_propose */
    RL_T_RETURNED,  /* VFS: the port's commit returned */
    RL_T_FRAMED,    /* VFS: commit frame written, record settled */
    RL_T_DONE,      /* VFS: write lock released (after SQLite's WAL sync,
                       if any, and its wal-index update) */
    RL_T_N
};

/* Nonzero iff RAFTLITE_TIMING is set (read once, at load). */
extern int rl_timing_on;

/* CLOCK_MONOTONIC in ns. */
uint64_t rl_timing_now(void);

/* The calling thread's commit in progress: begin zeroes it and stamps
** RL_T_CAPTURE; mark stamps one point; set copies a point stamped on
** another thread; end stamps RL_T_DONE and writes the line (only if begin
** ran on this thread since the last end). Call only when rl_timing_on. */
void rl_timing_begin(void);
void rl_timing_mark(int point);
void rl_timing_set(int point, uint64_t ns);
void rl_timing_end(void);

#endif /* RL_TIMING_H */
