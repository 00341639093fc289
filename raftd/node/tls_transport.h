/*
** raftd/node/tls_transport.h -- the mutual-TLS half of raftlite's Raft
** transport (tls_transport.c), used by transport.c only:
** rl_transport_init calls rl_tls_init when its options carry TLS
** settings, and the transport's methods are then the TLS ones. It must
** never be used without the settings of all three files (certificate,
** key, CA).
*/
#ifndef RL_TLS_TRANSPORT_H
#define RL_TLS_TRANSPORT_H

#include "transport.h"

/* Loads the certificate, key and CA and points t->raft's methods at the
** TLS transport. 0, or a RAFT_* code with t->raft.errmsg naming the file
** and OpenSSL's reason. */
int rl_tls_init(struct rl_transport *t, uv_loop_t *loop,
                const struct rl_transport_tls *cfg);

/* Frees what rl_tls_init made. After raft closed the transport this is
** immediate; before (raft never started), it stops the threads and frees
** once the loop has run the handles' close callbacks. */
void rl_tls_free(struct rl_tls *tls);

#endif
