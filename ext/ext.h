/*
** ext/ext.h -- shared declarations of the extension's own files.
*/
#ifndef RL_EXT_H
#define RL_EXT_H

#include "vfs.h"

struct sqlite3;

/* Whether test-only functions and switches are on (RAFTLITE_TEST=1). */
int rl_test_mode(void);

/* Log level of hosted nodes: RAFTLITE_LOG (0 error .. 3 debug; 1). */
int rl_log_level(void);

/* Node settings from URI parameters of a database name (raft_tls_*,
** raft_election_ms, ...) into cfg; tls must outlive cfg's use. */
struct rl_host_config;
struct rl_rpc_tls;
void rl_uri_config(const char *zName, struct rl_host_config *cfg,
                   struct rl_rpc_tls *tls);

/* ext/mirror.c: the test-only mirror replicator. */
const rl_port *rl_mirror_port(void);
int rl_mirror_register(struct sqlite3 *db);

#endif
