/*
** ext/config.h -- the extension's settings (ext/config.c): environment
** switches and a database name's URI parameters.
*/
#ifndef RL_EXT_CONFIG_H
#define RL_EXT_CONFIG_H

#include "host.h"

/* Whether test-only functions and switches are on (RAFTLITE_TEST=1). */
int rl_test_mode(void);

/* Log level of hosted nodes: RAFTLITE_LOG (0 error .. 3 debug; 1). */
int rl_log_level(void);

/* Node settings from the URI parameters of a database name (TLS, Raft
** timeouts, snapshot policy); tls is filled and cfg->tls set if TLS is
** asked for. */
void rl_uri_config(const char *zName, rl_host_config *cfg, rl_rpc_tls *tls);

#endif
