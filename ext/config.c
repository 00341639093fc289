/*
** ext/config.c -- the extension's settings: the environment
** (RAFTLITE_TEST, RAFTLITE_LOG) and a database name's URI parameters.
**
** It must never start or touch a node: it only reads settings into the
** caller's structs.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int rl_test_mode(void)
{
    const char *v = getenv("RAFTLITE_TEST");
    return v && strcmp(v, "1") == 0;
}

int rl_log_level(void)
{
    const char *v = getenv("RAFTLITE_LOG");
    return v ? atoi(v) : 1;
}

/*
** Node settings from URI parameters of the database name
** (`.open file:n1.db?raft_tls_cert=...`): TLS of the sidecar, the auth
** file (raft_auth=FILE) and raft_insecure=1 (non-loopback addresses
** without TLS: a trusted private network), all stored with the identity so
** later opens reuse them; Raft timeouts and the snapshot policy (this run
** only).
*/
void rl_uri_config(const char *zName, rl_host_config *cfg, rl_rpc_tls *tls)
{
    const char *cert = sqlite3_uri_parameter(zName, "raft_tls_cert");
    const char *ca = sqlite3_uri_parameter(zName, "raft_tls_ca");
    if (cert || ca) {
        memset(tls, 0, sizeof *tls);
        tls->cert_file = cert;
        tls->key_file = sqlite3_uri_parameter(zName, "raft_tls_key");
        tls->ca_file = ca;
        tls->client_auth =
            sqlite3_uri_boolean(zName, "raft_tls_client_auth", 0);
        cfg->tls = tls;
    }
    cfg->auth_file = sqlite3_uri_parameter(zName, "raft_auth");
    if (sqlite3_uri_parameter(zName, "raft_insecure"))
        cfg->insecure = sqlite3_uri_boolean(zName, "raft_insecure", 0) ? 1 : -1;
    cfg->election_timeout_ms =
        (unsigned)sqlite3_uri_int64(zName, "raft_election_ms", 0);
    cfg->heartbeat_timeout_ms =
        (unsigned)sqlite3_uri_int64(zName, "raft_heartbeat_ms", 0);
    cfg->snapshot_threshold =
        (unsigned)sqlite3_uri_int64(zName, "raft_snapshot_threshold", 0);
    cfg->snapshot_trailing =
        (unsigned)sqlite3_uri_int64(zName, "raft_snapshot_trailing", 0);
    {
        /* The gRPC sidecar's message limit (raftd's -max-msg-bytes). */
        sqlite3_int64 m = sqlite3_uri_int64(zName, "raft_max_msg_bytes", 0);
        if (m >= 1024 && m <= 0x7fffffff)
            cfg->max_msg_bytes = (size_t)m;
        else if (m != 0)
            fprintf(stderr,
                    "raftlite: warning: raft_max_msg_bytes=%lld is outside "
                    "1024..2147483647; the default (4 MiB) is used\n",
                    (long long)m);
    }
}
