/*
** raftd/api/sqlguard.h -- the allow-list that SQL from a remote client runs
** under (issue 15).
**
** rl_sqlguard_install() hardens one connection: DEFENSIVE on, untrusted
** schema, no extension loading, no fts3_tokenizer, no ATTACH, and an
** authorizer that permits only what a client needs (ordinary statements
** on main, informational PRAGMAs, the named built-in functions, FTS5 and
** R-Tree tables) and denies everything else, so that no call can leave
** state (temp objects, settings) on a shared connection for the next one.
**
** It knows no gRPC and no service: raftd/api/service_conn.c installs it on
*every
** connection that runs remote SQL; ext/ may install it on others. It must
** never allow by default: an action, PRAGMA, function or module it does
** not name is denied.
*/
#ifndef RL_SQLGUARD_H
#define RL_SQLGUARD_H

#include <stddef.h>

#include "sqlite3ext.h"

typedef struct rl_sqlguard {
    /* Non-zero while the owner runs its own transaction control (BEGIN,
    ** COMMIT, ROLLBACK, SAVEPOINT): the client's SQL never may. */
    int allow_txn;
    /* Why the last denial happened (empty if none since the last
    ** rl_sqlguard_reset): names the object and the rule. */
    char why[256];
} rl_sqlguard;

/* Sets the connection's safety options (sqlite3_db_config: DEFENSIVE on,
** TRUSTED_SCHEMA off, ENABLE_LOAD_EXTENSION off, ENABLE_FTS3_TOKENIZER
** off), SQLITE_LIMIT_ATTACHED 0 and installs the authorizer with g as its
** state (g must outlive the connection or the authorizer). Returns
** SQLITE_OK, or an error code with err naming the option that failed. */
int rl_sqlguard_install(sqlite3 *db, rl_sqlguard *g, char *err, size_t errlen);

/* Clears the last denial's reason (call before each client statement). */
void rl_sqlguard_reset(rl_sqlguard *g);

/* The authorizer itself (sqlite3_set_authorizer's callback; arg is an
** rl_sqlguard). Exposed for unit tests and for connections that install
** it themselves. */
int rl_sqlguard_authorize(void *arg, int action, const char *a3, const char *a4,
                          const char *db, const char *inner);

/* Whether a built-in function / a PRAGMA (with or without an argument)
** / a virtual table module is on the allow-list. */
int rl_sqlguard_function_allowed(const char *name);
int rl_sqlguard_pragma_allowed(const char *name, const char *arg);
int rl_sqlguard_module_allowed(const char *name);

#endif /* RL_SQLGUARD_H */
