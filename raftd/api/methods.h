/*
** raftd/api/methods.h -- the one table of the API's methods: each method's
** name and service, who may call it (auth.c reads it), how the server runs
** it (service_rpc.c registers from it) and the id the handlers dispatch on
** (service.c standalone, cluster_rpc.c on a hosted node).
**
** The table is data only (no handler pointers), so that the auth checks
** and the SQL service link and fuzz without the host. A method missing
** from it is never registered and always refused; nothing may dispatch on
** a method name anywhere else.
*/
#ifndef RL_API_METHODS_H
#define RL_API_METHODS_H

#include <stddef.h>

/* Who may call a method (auth.c: rl_auth_decide). */
enum rl_auth_rule {
    RL_RULE_CLIENT = 0, /* needs perm; member nodes may call it too */
    RL_RULE_NODE,       /* node-to-node only: a member (or this) node */
    RL_RULE_NODE_OR,    /* a member node, or a client with perm */
    RL_RULE_JOIN        /* the joining node itself, a member, or admin */
};

/* A method's id, for a handler's switch. */
enum rl_api_mid {
    RL_M_EXECUTE_READ,
    RL_M_EXECUTE_WRITE,
    RL_M_EXECUTE_TXN,
    RL_M_STATUS,
    RL_M_LEADER,
    RL_M_NODES,
    RL_M_JOIN,
    RL_M_REMOVE,
    RL_M_TRANSFER,
    RL_M_FETCH_IMAGE,
    RL_M_FETCH_IMAGE_HEADER, /* a permission only: FetchImage of the header */
    RL_M_READ_INDEX,
    RL_M_FORWARD_TXN,
    RL_M_FORWARD_SESSION,
};

typedef struct rl_api_method {
    const char *name;    /* bare method name, e.g. "ExecuteWrite" */
    const char *service; /* RL_SVC_PUBLIC or _INTERNAL; NULL: not a method
                            on the wire (a permission of another one) */
    enum rl_api_mid id;
    enum rl_auth_rule rule;
    unsigned perm; /* RL_PERM_* a client needs (NODE: RL_PERM_NODE) */
    int rpc_flags; /* RL_RPC_STREAMING (unary otherwise), RL_RPC_UNCAPPED */
} rl_api_method;

extern const rl_api_method rl_api_methods[];
extern const size_t rl_api_nmethods;

/* The entry of a bare method name, or NULL (unknown). */
const rl_api_method *rl_api_method_find(const char *name);

#endif /* RL_API_METHODS_H */
