/*
** lib/certid.h -- who a certificate of the cluster CA speaks for.
**
** The convention (README "Security"): a node's certificate carries the
** subjectAltName URI "raftlite:node:<id>", where <id> is the node id it
** runs as; a client's certificate may carry "raftlite:client:<name>",
** otherwise its subject CN is the client's name. Both the Raft transport
** (a peer must be a node, and the node it claims to be) and the gRPC API
** (internal RPCs accept nodes only; clients get permissions by name) ask
** this module, so the rule is written once.
**
** This module only reads certificates the TLS layer already verified
** against the CA: it never decides trust, never opens a file and never
** keeps a reference to the certificate.
*/
#ifndef RL_CERTID_H
#define RL_CERTID_H

#include <stddef.h>

#include <openssl/x509.h>

#define RL_CERT_NODE_PREFIX   "raftlite:node:"
#define RL_CERT_CLIENT_PREFIX "raftlite:client:"

enum rl_cert_role {
    RL_CERT_CLIENT = 1, /* an application client */
    RL_CERT_NODE = 2    /* a member node (or one about to join) */
};

typedef struct rl_cert_id {
    enum rl_cert_role role;
    char name[128]; /* node id or client name, NUL-terminated */
} rl_cert_id;

/* 0 and *out filled; or -1 with err saying why the certificate names no
** usable identity (two raftlite URIs, a node id that rl_node_id_check
** refuses, no raftlite URI and no CN, a name too long). */
int rl_cert_identity(X509 *cert, rl_cert_id *out, char *err, size_t errlen);

/* The same for a PEM text (gRPC's auth context hands the peer certificate
** over as PEM). */
int rl_cert_identity_pem(const char *pem, size_t len, rl_cert_id *out,
                         char *err, size_t errlen);

#endif
