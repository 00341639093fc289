/*
** raftd/api/methods.c -- the table of the API's methods (see methods.h).
**
** Adding a method means one line here, its handlers' cases, and its
** messages in proto/raftlite.proto. The table must never grant a
** node-to-node method (ReadIndex, ForwardTxn) to a client permission.
*/
#include "methods.h"

#include <string.h>

#include "auth.h"
#include "peers.h"
#include "rpc.h"

#define PUB  RL_SVC_PUBLIC
#define INTL RL_SVC_INTERNAL

const rl_api_method rl_api_methods[] = {
    {"ExecuteRead", PUB, RL_M_EXECUTE_READ, RL_RULE_CLIENT, RL_PERM_READ, 0},
    {"ExecuteWrite", PUB, RL_M_EXECUTE_WRITE, RL_RULE_CLIENT, RL_PERM_WRITE, 0},
    {"ExecuteTransaction", PUB, RL_M_EXECUTE_TXN, RL_RULE_CLIENT, RL_PERM_WRITE,
     0},
    /* Status answers from memory: a client at its concurrent-call cap (or
    ** an operator beside it) can still ask for it. */
    {"Status", PUB, RL_M_STATUS, RL_RULE_CLIENT, RL_PERM_STATUS,
     RL_RPC_UNCAPPED},
    {"Leader", PUB, RL_M_LEADER, RL_RULE_CLIENT, RL_PERM_STATUS, 0},
    {"Nodes", PUB, RL_M_NODES, RL_RULE_CLIENT, RL_PERM_STATUS, 0},
    {"Join", PUB, RL_M_JOIN, RL_RULE_JOIN, RL_PERM_ADMIN, 0},
    {"Remove", PUB, RL_M_REMOVE, RL_RULE_NODE_OR, RL_PERM_ADMIN, 0},
    {"Transfer", PUB, RL_M_TRANSFER, RL_RULE_NODE_OR, RL_PERM_ADMIN, 0},
    {"FetchImage", INTL, RL_M_FETCH_IMAGE, RL_RULE_NODE_OR, RL_PERM_BACKUP,
     RL_RPC_STREAMING},
    /* FetchImage "@image" of the header alone: page size and index. */
    {"FetchImageHeader", NULL, RL_M_FETCH_IMAGE_HEADER, RL_RULE_CLIENT,
     RL_PERM_STATUS, 0},
    {"ReadIndex", INTL, RL_M_READ_INDEX, RL_RULE_NODE, RL_PERM_NODE, 0},
    {"ForwardTxn", INTL, RL_M_FORWARD_TXN, RL_RULE_NODE, RL_PERM_NODE,
     RL_RPC_STREAMING},
    {"ForwardSession", INTL, RL_M_FORWARD_SESSION, RL_RULE_NODE, RL_PERM_NODE,
     RL_RPC_STREAMING},
};

const size_t rl_api_nmethods = sizeof rl_api_methods / sizeof rl_api_methods[0];

const rl_api_method *rl_api_method_find(const char *name)
{
    for (size_t i = 0; i < rl_api_nmethods; i++)
        if (!strcmp(rl_api_methods[i].name, name))
            return &rl_api_methods[i];
    return NULL;
}
