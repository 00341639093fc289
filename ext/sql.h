/*
** ext/sql.h -- raftlite's cluster SQL surface (ext/sql.c): raft_bootstrap,
** raft_join, raft_remove, raft_transfer, raft_leader, the raft_nodes
** table-valued function and PRAGMA raft_status.
*/
#ifndef RL_SQL_H
#define RL_SQL_H

struct sqlite3;

/* Registers the functions and raft_nodes on one connection (called for
** every connection through the extension's auto-extension). SQLITE_OK or
** an SQLite error code. */
int rl_sql_register(struct sqlite3 *db);

/* Process-wide setup, once at load: installs rl_sql_pragma as the VFS's
** PRAGMA raft_* handler. */
void rl_sql_init(void);

/* The PRAGMA handler (vfs.h rl_pragma_fn): serves "raft_status" and
** answers SQLITE_NOTFOUND for any other name, so that a handler of more
** pragmas can call it for the rest. */
int rl_sql_pragma(const char *db_path, int replicated, const char *name,
                  const char *arg, char **result);

#endif /* RL_SQL_H */
