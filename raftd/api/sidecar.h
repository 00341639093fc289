/*
** raftd/api/sidecar.h -- the gRPC sidecar of a hosted node: the API
** (service.h) served on the node's gRPC address with its identity's TLS
** and auth file.
**
** The host never starts it on its own (raftd/host knows no gRPC service):
** whoever opens a host hands rl_sidecar_start as the config's serve
** (host.h rl_host_config.serve; ext/ when the shell hosts a node,
** raftd/main.c for the daemon), and the host stops it first when it
** closes (rl_host_on_close).
*/
#ifndef RL_SIDECAR_H
#define RL_SIDECAR_H

#include <stddef.h>

struct rl_host;

/* Serves gRPC for h (nothing when h has no gRPC address): 0, or -1 with
** err; on failure nothing is left running. Its stop is registered with
** rl_host_on_close(h), so rl_host_close(h) stops it first. */
int rl_sidecar_start(struct rl_host *h, char *err, size_t errlen);

#endif /* RL_SIDECAR_H */
