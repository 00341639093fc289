/*
** ext/conn.h -- per-connection state of the extension (ext/conn.c):
** raft_last_error() and the commit hooks.
*/
#ifndef RL_EXT_CONN_H
#define RL_EXT_CONN_H

struct sqlite3;

/* Attaches raft_last_error(), the statement trace and the commit,
** rollback and update hooks to db; an SQLite code. */
int rl_conn_attach(struct sqlite3 *db);

/* Records msg as the error of db's current statement (raft_last_error);
** the raft_* functions call it when they fail. */
void rl_conn_error(struct sqlite3 *db, const char *msg);

/* A replicated main database opened before .load bypasses the VFS: says
** so once on stderr and refuses the connection's commits. */
void rl_conn_guard_opened_before_load(struct sqlite3 *db);

#endif
