/*
** ext/sql.h -- raftlite's cluster SQL surface (ext/sql.c): raft_bootstrap,
** raft_join, raft_remove, raft_transfer, raft_leader; it registers the
** tables of ext/tables.c too.
*/
#ifndef RL_SQL_H
#define RL_SQL_H

struct sqlite3;

/* Registers the functions and raft_nodes on one connection (called for
** every connection through the extension's auto-extension). SQLITE_OK or
** an SQLite error code. */
int rl_sql_register(struct sqlite3 *db);

/* Process-wide setup, once at load: installs rl_tables_pragma as the VFS's
** PRAGMA raft_* handler. */
void rl_sql_init(void);

#endif /* RL_SQL_H */
