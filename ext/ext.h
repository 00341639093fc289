/*
** ext/ext.h -- shared declarations of the extension's own files.
*/
#ifndef RL_EXT_H
#define RL_EXT_H

#include "host.h"
#include "vfs.h"

struct sqlite3;

/* Whether test-only functions and switches are on (RAFTLITE_TEST=1). */
int rl_test_mode(void);

/* Log level of hosted nodes: RAFTLITE_LOG (0 error .. 3 debug; 1). */
int rl_log_level(void);

/* Node settings from the URI parameters of a database name (TLS, Raft
** timeouts, snapshot policy); tls is filled and cfg->tls set if TLS is
** asked for. */
void rl_uri_config(const char *zName, rl_host_config *cfg, rl_rpc_tls *tls);

/* Records msg as the error of db's current statement (raft_last_error);
** the raft_* functions call it when they fail. */
void rl_conn_error(struct sqlite3 *db, const char *msg);

/* ext/mirror.c: the test-only mirror replicator. */
const rl_port *rl_mirror_port(void);
int rl_mirror_register(struct sqlite3 *db);

#endif
