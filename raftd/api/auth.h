/*
** raftd/api/auth.h -- who may call which gRPC method of a node (issue 16).
**
** Three parts, all without gRPC:
**   - the auth file (`-auth FILE`, URI `raft_auth=FILE`): lines
**         # comment
**         user NAME HASH PERMS     a password user; HASH from crypt(3)
**                                  ($y$ yescrypt, $6$ sha512, ...)
**         cert NAME PERMS          a client certificate's name (its SAN
**                                  URI raftlite:client:NAME, else its CN)
**         anonymous PERMS          a caller that sent no credentials
**     PERMS: a comma list of read, write, admin, status, backup, or all,
**     or none. rl_auth_parse is pure (fuzzed: tests/fuzz/fuzz_auth.c);
**     rl_auth_load reads a file and refuses one group/world can read;
**   - the permission each method needs, and which methods are
**     node-to-node (they need a member node's certificate): the API's
**     method table (methods.h), read here;
**   - rl_auth_decide: one call's verdict from what the transport knows
**     of the caller (TLS or not, the verified certificate's identity, the
**     user/password metadata).
**
** Defaults (no auth file): plaintext or server-only TLS checks nothing
** (nothing can be checked); mutual TLS makes node-to-node methods need a
** member node's certificate and gives every client certificate read,
** write and status (admin and backup need an auth file).
**
** This module must never accept a password over plaintext, never keep a
** password, and never let a certificate of role client act as a node.
*/
#ifndef RL_AUTH_H
#define RL_AUTH_H

#include <stddef.h>

#include "certid.h"
#include "methods.h"

/* Permissions (rqlite-style). */
#define RL_PERM_READ   1u
#define RL_PERM_WRITE  2u
#define RL_PERM_ADMIN  4u  /* Join/Remove/Transfer issued by an operator */
#define RL_PERM_STATUS 8u  /* Status, Leader, Nodes */
#define RL_PERM_BACKUP 16u /* FetchImage (the whole database) */
#define RL_PERM_ALL    31u
/* Not grantable: a member node's certificate (node-to-node methods). */
#define RL_PERM_NODE 32u

/* What a client certificate gets under mutual TLS without an auth file. */
#define RL_PERM_CERT_DEFAULT (RL_PERM_READ | RL_PERM_WRITE | RL_PERM_STATUS)

/* The gRPC metadata keys of a password user (lower case, as HTTP/2). */
#define RL_AUTH_MD_USER     "x-raftlite-user"
#define RL_AUTH_MD_PASSWORD "x-raftlite-password"

/* Longest auth file read, and longest name. */
#define RL_AUTH_MAX      (1 << 20)
#define RL_AUTH_NAME_MAX 127

typedef struct rl_auth rl_auth;

/* Parses the text of an auth file (fname only names it in errors). 0 with
** *out (rl_auth_free), or -1 with err "FILE:LINE: reason". */
int rl_auth_parse(const char *text, size_t len, const char *fname,
                  rl_auth **out, char *err, size_t errlen);
/* Reads and parses path; refuses a file group or others may read (names
** chmod 600), a symlink or a non-regular file. */
int rl_auth_load(const char *path, rl_auth **out, char *err, size_t errlen);
void rl_auth_free(rl_auth *a);
/* The file it was loaded from ("" for a parsed text). */
const char *rl_auth_file(const rl_auth *a);

/* Lookups (a NULL a knows nobody). */
/* 1 with *perms if name has a cert line, else 0. */
int rl_auth_cert(const rl_auth *a, const char *name, unsigned *perms);
/* 1 with *perms if name has a user line, else 0. */
int rl_auth_user(const rl_auth *a, const char *name, const char **hash,
                 unsigned *perms);
unsigned rl_auth_anonymous(const rl_auth *a);
/* 1 if password matches the crypt(3) hash (crypt_r, constant time
** compare), else 0. */
int rl_auth_password_ok(const char *hash, const char *password);
/* 1 with *perms if user name exists and password matches its hash, else
** 0. A password that matched once is remembered as a keyed SHA-256 (a
** random key per process), so its next calls skip crypt(3); a wrong one
** always pays crypt(3). Thread-safe. */
int rl_auth_login(const rl_auth *a, const char *name, const char *password,
                  unsigned *perms);

/* "read", "write", ... for one RL_PERM_* bit. */
const char *rl_perm_name(unsigned perm);
/* Writes "read,write,..." (or "none") into out. */
void rl_perm_list(unsigned perms, char *out, size_t outlen);

/* ---- the method table ---- */

/* The rule and permission of each method are in the API's one method
** table (methods.h: enum rl_auth_rule, rl_api_method_find). */
typedef rl_api_method rl_auth_method;
#define rl_auth_method_find rl_api_method_find

/* ---- one call ---- */

typedef struct rl_auth_caller {
    int tls;      /* the connection is TLS */
    int has_cert; /* a verified peer certificate with an identity */
    rl_cert_id cert;
    const char *cert_err; /* a verified certificate without a usable
                             identity: why (has_cert 0) */
    const char *user;     /* metadata, NULL if absent */
    const char *password;
} rl_auth_caller;

/* What the server knows of itself. */
typedef struct rl_auth_server {
    const rl_auth *auth; /* NULL: no auth file */
    int mtls;            /* client certificates required and verified */
    /* 1 if node_id is this node or a member of its configuration. */
    int (*is_member)(void *ctx, const char *node_id);
    void *ctx;
} rl_auth_server;

/* The verdict on a call of method (bare name); join_id is the node id a
** JoinRequest names (NULL otherwise). Returns 0 (allowed; who, if not
** NULL, describes the caller), or an RL_RPC_* code (PERMISSION_DENIED,
** UNAUTHENTICATED) with err naming the method, the permission and the
** caller. */
int rl_auth_decide(const rl_auth_server *s, const char *method,
                   const rl_auth_caller *c, const char *join_id, char *who,
                   size_t wholen, char *err, size_t errlen);

#endif /* RL_AUTH_H */
