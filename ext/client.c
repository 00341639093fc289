/*
** ext/client.c -- the gRPC client of a process that does not host the
** database it asks about (a client shell: its raft_* functions and tables
** ask the host's sidecar), and the retry rule of membership calls.
**
** It must never keep a TLS client past its call (the identity's settings
** may change); the plaintext client is shared and freed at exit.
*/
#include "client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "host.h"
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3

#define ERRLEN 1024
/* Pause between retries of a membership call that met no leader. */
#define RETRY_MS 100

/* ---- the gRPC client of a process that does not host the database ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static rl_rpc_client *g_client;

static void client_free(void)
{
    pthread_mutex_lock(&g_mu);
    rl_rpc_client_free(g_client);
    g_client = NULL;
    pthread_mutex_unlock(&g_mu);
}

/* A client for the sidecar of db_path's host: with the TLS settings the
** identity stores (the host serves with them), else the process's shared
** plaintext client (created on first use). Release with rl_ext_client_put. */
rl_rpc_client *rl_ext_client_get(const char *db_path, char *err, size_t errlen)
{
    rl_rpc_client *cl;
    rl_identity ident;
    char e[ERRLEN];
    if (rl_identity_read(db_path, &ident, e, sizeof(e)) == 0 &&
        (ident.tls_cert[0] || ident.tls_ca[0])) {
        rl_rpc_tls tls;
        memset(&tls, 0, sizeof(tls));
        tls.ca_file = ident.tls_ca[0] ? ident.tls_ca : NULL;
        if (ident.tls_client_auth) {
            tls.cert_file = ident.tls_cert;
            tls.key_file = ident.tls_key;
        }
        return rl_rpc_client_new(&tls, 0, err, errlen);
    }
    pthread_mutex_lock(&g_mu);
    if (!g_client) {
        g_client = rl_rpc_client_new(NULL, 0, err, errlen);
        if (g_client) {
            atexit(client_free);
        }
    }
    cl = g_client;
    pthread_mutex_unlock(&g_mu);
    return cl;
}

void rl_ext_client_put(rl_rpc_client *cl)
{
    int shared;
    pthread_mutex_lock(&g_mu);
    shared = cl == g_client;
    pthread_mutex_unlock(&g_mu);
    if (cl && !shared) {
        rl_rpc_client_free(cl);
    }
}

/* Pause before retrying such a call, while time is left. 1 to retry. */
int rl_ext_retry_pause(int64_t deadline)
{
    if (rl_rpc_now_ms() + RETRY_MS >= deadline) {
        return 0;
    }
    struct timespec ts = {0, RETRY_MS * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 1;
}
