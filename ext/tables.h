/*
** ext/tables.h -- the cluster as tables (ext/tables.c): raft_nodes,
** raft_status and PRAGMA raft_status.
*/
#ifndef RL_EXT_TABLES_H
#define RL_EXT_TABLES_H

struct sqlite3;

/* Registers raft_nodes and raft_status on one connection; an SQLite code. */
int rl_tables_register(struct sqlite3 *db);

/* The PRAGMA handler (vfs.h rl_pragma_fn): serves "raft_status" and
** answers SQLITE_NOTFOUND for any other name, so that a handler of more
** pragmas can call it for the rest. */
int rl_tables_pragma(const char *db_path, int replicated, const char *name,
                     const char *arg, char **result);

#endif
