/*
** ext/client.h -- the gRPC client of a process that does not host the
** database (ext/client.c), for the raft_* functions and tables, and
** the pause between retries of a membership call that met no leader
** (the caller retries on RL_ERR_NOLEADER).
*/
#ifndef RL_EXT_CLIENT_H
#define RL_EXT_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

/* A client for the sidecar of db_path's host: with the TLS settings the
** identity stores, else the process's shared plaintext client. NULL with
** err on failure. Release with rl_ext_client_put. */
rl_rpc_client *rl_ext_client_get(const char *db_path, char *err, size_t errlen);
void rl_ext_client_put(rl_rpc_client *cl);

/* Pause before retrying such a call, while time is left before deadline
** (rl_rpc_now_ms). 1 to retry. */
int rl_ext_retry_pause(int64_t deadline);

#endif
