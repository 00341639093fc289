/*
** ext/mirror.h -- the test-only mirror replicator (ext/mirror.c), on only
** with RAFTLITE_TEST=1.
*/
#ifndef RL_EXT_MIRROR_H
#define RL_EXT_MIRROR_H

#include "vfs.h"

struct sqlite3;

/* The mirror's port, or NULL when the mirror is off. */
const rl_port *rl_mirror_port(void);

/* Registers the mirror's test functions on db; an SQLite code. */
int rl_mirror_register(struct sqlite3 *db);

#endif
