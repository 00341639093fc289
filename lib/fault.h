/*
** lib/fault.h -- named fault points for the crash tests (issue #6).
**
** RL_FAULT("name") marks a place where a crash must leave every node
** recoverable. It compiles to nothing unless the build defines RL_FAULTS
** (the test variant build/fault/raftlite.so; `make` never does, and a test
** checks that build/raftlite.so holds no point names). In a fault build the
** environment variable RAFTLITE_FAULT=name[:N] arms one point: the N-th time
** (default 1) the process reaches it, it prints the name on stderr and
** calls abort(), so the process dies by SIGABRT exactly there.
**
** A fault point must never change behaviour when it is not armed, and
** must never be reachable in a release build.
*/
#ifndef RL_FAULT_H
#define RL_FAULT_H

#ifdef RL_FAULTS
#include <stddef.h>

/* Counts a pass through point name; aborts at the armed pass. Any thread. */
void rl_fault_point(const char *name);
#define RL_FAULT(name) rl_fault_point(name)

/*
** The disk after an OS crash, for tests/cluster/test_os_crash.py: with
** RAFTLITE_FAULT_SYNCED=1, each sync of a replicated database's WAL, main
** file or applied record saves a copy of the synced file as
** "<db>-raft/synced/<name>" (name "wal", "db" or "applied"), atomically
** (a temporary file renamed). Everything written after a file's last sync
** is what an OS crash may lose: the test puts the copies in place of the
** files of a killed node.
*/
int rl_fault_synced_on(void);
void rl_fault_save(const char *db_path, const char *name, const void *buf,
                   size_t n);
#else
#define RL_FAULT(name) ((void)0)
#endif

#endif
