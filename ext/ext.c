/*
** ext/ext.c -- entry point of the raftlite SQLite extension.
**
** sqlite3_raftlite_init() is what `.load ./build/raftlite` calls. It
** registers VFS "raft" as the default VFS and the raft_* SQL functions.
** It must return SQLITE_OK_LOAD_PERMANENTLY: the shell's `.open` after
** `.load` otherwise crashes (measured); and it registers the functions
** through sqlite3_auto_extension as well, because functions registered by
** `.load` are gone after `.open` (measured).
*/
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#include <stdlib.h>
#include <string.h>

#include "ext.h"
#include "vfs.h"

#define RL_VERSION "0.1.0"

/* Busy timeout given to every connection: the stock shell's is 0, and a
** replicated database's writers wait for each other and for the applier. */
#define RL_DEFAULT_BUSY_MS 10000

int rl_test_mode(void)
{
    const char *v = getenv("RAFTLITE_TEST");
    return v && strcmp(v, "1") == 0;
}

static void version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, RL_VERSION, -1, SQLITE_STATIC);
}

/* raft_last_error(): the last raftlite refusal seen on this thread, as
** text ("" if none). The shell can only print "disk I/O error" for an
** SQLITE_IOERR; this says what really happened and what to do. */
static void last_error_func(sqlite3_context *ctx, int argc,
                            sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, rl_vfs_last_error(0), -1, SQLITE_TRANSIENT);
}

/* Which port serves a replicated database opened in this process. */
static const rl_port *resolve_port(const char *db_path)
{
    (void)db_path;
    return rl_mirror_port();
}

static int register_functions(sqlite3 *db, char **pzErr,
                              const sqlite3_api_routines *api)
{
    int rc;
    (void)pzErr;
    (void)api;
    sqlite3_busy_timeout(db, RL_DEFAULT_BUSY_MS);
    rc = sqlite3_create_function(db, "raft_version", 0,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC, 0,
                                 version_func, 0, 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "raft_last_error", 0, SQLITE_UTF8, 0,
                                     last_error_func, 0, 0);
    if (rc == SQLITE_OK && rl_test_mode())
        rc = rl_mirror_register(db);
    return rc;
}

int sqlite3_raftlite_init(sqlite3 *db, char **pzErrMsg,
                          const sqlite3_api_routines *pApi)
{
    int rc;
    SQLITE_EXTENSION_INIT2(pApi);
    rc = rl_vfs_register(1, resolve_port);
    if (rc == SQLITE_OK)
        rc = register_functions(db, pzErrMsg, pApi);
    if (rc == SQLITE_OK)
        rc = sqlite3_auto_extension((void (*)(void))register_functions);
    return rc == SQLITE_OK ? SQLITE_OK_LOAD_PERMANENTLY : rc;
}
