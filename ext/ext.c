/*
** ext/ext.c -- entry point of the raftlite SQLite extension.
**
** sqlite3_raftlite_init() is what `.load ./build/raftlite` calls. It must
** return SQLITE_OK_LOAD_PERMANENTLY: the shell's `.open` after `.load`
** otherwise crashes (measured), and it registers the SQL functions through
** sqlite3_auto_extension as well, because functions registered by `.load`
** are gone after `.open`.
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#define RL_VERSION "0.1.0"

static void version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, RL_VERSION, -1, SQLITE_STATIC);
}

static int register_functions(sqlite3 *db, char **pzErr,
                              const sqlite3_api_routines *api)
{
    (void)pzErr;
    (void)api;
    return sqlite3_create_function(db, "raft_version", 0,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC, 0,
                                   version_func, 0, 0);
}

int sqlite3_raftlite_init(sqlite3 *db, char **pzErrMsg,
                          const sqlite3_api_routines *pApi)
{
    int rc;
    SQLITE_EXTENSION_INIT2(pApi);
    rc = register_functions(db, pzErrMsg, pApi);
    if (rc == SQLITE_OK)
        rc = sqlite3_auto_extension((void (*)(void))register_functions);
    return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
}
