/*
** raftd/api/sqlguard.c -- the allow-list authorizer and connection options for
** SQL sent by remote clients (see sqlguard.h).
**
** It must never permit by default: every list here names what a client
** may use, and anything it does not name (an authorizer action, a PRAGMA,
** a function, a virtual table module, a schema other than main) is
** denied. fts3_tokenizer and load_extension are never on a list: the
** first hands out and takes raw function pointers (a crash or code
** execution), the second loads code.
*/
#include "sqlguard.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

SQLITE_EXTENSION_INIT3

/* Built-in scalar, aggregate, window, date, math and JSON functions of
** SQLite 3.40 to 3.47 (a newer name is simply denied until listed), plus
** the FTS5 auxiliary functions and the FTS3/4 ones of a table read. Not
** listed on purpose: fts3_tokenizer, load_extension, fts5 (returns the
** API pointer), rtreenode/rtreedepth (debugging decoders of raw node
** blobs), optimize, sqlite_log, subtype and every test or shell function. */
static const char *const functions[] = {
    "->",
    "->>",
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "avg",
    "bm25",
    "ceil",
    "ceiling",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "cos",
    "cosh",
    "count",
    "cume_dist",
    "current_date",
    "current_time",
    "current_timestamp",
    "date",
    "datetime",
    "degrees",
    "dense_rank",
    "exp",
    "first_value",
    "floor",
    "format",
    "fts5_source_id",
    "glob",
    "group_concat",
    "hex",
    "highlight",
    "if",
    "ifnull",
    "iif",
    "instr",
    "json",
    "json_array",
    "json_array_length",
    "json_error_position",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_insert",
    "json_object",
    "json_patch",
    "json_pretty",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_type",
    "json_valid",
    "jsonb",
    "jsonb_array",
    "jsonb_extract",
    "jsonb_group_array",
    "jsonb_group_object",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_patch",
    "jsonb_remove",
    "jsonb_replace",
    "jsonb_set",
    "julianday",
    "lag",
    "last_insert_rowid",
    "last_value",
    "lead",
    "length",
    "like",
    "likelihood",
    "likely",
    "ln",
    "log",
    "log10",
    "log2",
    "lower",
    "ltrim",
    "match",
    "matchinfo",
    "max",
    "min",
    "mod",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "offsets",
    "percent_rank",
    "pi",
    "pow",
    "power",
    "printf",
    "quote",
    "radians",
    "random",
    "randomblob",
    "rank",
    "replace",
    "round",
    "row_number",
    "rtreecheck",
    "rtrim",
    "sign",
    "sin",
    "sinh",
    "snippet",
    "soundex",
    "sqlite_compileoption_get",
    "sqlite_compileoption_used",
    "sqlite_source_id",
    "sqlite_version",
    "sqrt",
    "strftime",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "tan",
    "tanh",
    "time",
    "timediff",
    "total",
    "total_changes",
    "trim",
    "trunc",
    "typeof",
    "unhex",
    "unicode",
    "unistr",
    "unistr_quote",
    "unixepoch",
    "unlikely",
    "upper",
    "zeroblob",
};

/* PRAGMAs that read the schema or check the database: allowed with an
** argument too, which names a table or index or bounds a check. */
static const char *const pragmas_with_arg[] = {
    "foreign_key_check", "foreign_key_list", "index_info",  "index_list",
    "index_xinfo",       "integrity_check",  "quick_check", "table_info",
    "table_list",        "table_xinfo",
};

/* PRAGMAs allowed only without an argument: then they report a value;
** with one they would set it (on a shared connection, for everyone). */
static const char *const pragmas_read_only[] = {
    "application_id",     "auto_vacuum",   "automatic_index",
    "busy_timeout",       "cache_size",    "collation_list",
    "compile_options",    "data_version",  "database_list",
    "defer_foreign_keys", "encoding",      "foreign_keys",
    "freelist_count",     "function_list", "journal_mode",
    "module_list",        "page_count",    "page_size",
    "pragma_list",        "query_only",    "recursive_triggers",
    "schema_version",     "secure_delete", "synchronous",
    "temp_store",         "user_version",
};

/* Virtual table modules a client may create and use on main. */
static const char *const modules[] = {
    "fts5", "fts5vocab", "rtree", "rtree_i32", "geopoly",
};

static int listed(const char *const *list, size_t n, const char *name)
{
    size_t i;
    if (!name) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (strcasecmp(list[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

#define LISTED(l, name) listed((l), sizeof(l) / sizeof((l)[0]), (name))

int rl_sqlguard_function_allowed(const char *name)
{
    return LISTED(functions, name);
}

int rl_sqlguard_pragma_allowed(const char *name, const char *arg)
{
    if (LISTED(pragmas_with_arg, name)) {
        return 1;
    }
    return arg == NULL && LISTED(pragmas_read_only, name);
}

int rl_sqlguard_module_allowed(const char *name)
{
    return LISTED(modules, name);
}

void rl_sqlguard_reset(rl_sqlguard *g)
{
    g->why[0] = 0;
}

static int deny(rl_sqlguard *g, const char *fmt, const char *a, const char *b)
{
    if (g && !g->why[0]) {
        /* The first denial of a statement is the one to report: later
        ** ones may be consequences of it. */
        snprintf(g->why, sizeof(g->why), fmt, a ? a : "", b ? b : "");
    }
    return SQLITE_DENY;
}

/* Schema objects live on main only: temp objects on a shared connection
** would act on the next client's statements (a TEMP trigger rewriting
** its inserts), and no other schema can be attached. NULL = main. */
static int on_main(const char *db)
{
    return db == NULL || strcmp(db, "main") == 0;
}

int rl_sqlguard_authorize(void *arg, int action, const char *a3, const char *a4,
                          const char *db, const char *inner)
{
    rl_sqlguard *g = arg;
    (void)inner;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_RECURSIVE:
    case SQLITE_REINDEX:
    case SQLITE_ANALYZE:
        return SQLITE_OK;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        /* a3 = table; temp.sqlite_master is written while a temp object
        ** is created, which is denied before it. */
        return on_main(db) ? SQLITE_OK
                           : deny(g,
                                  "writing %s in schema '%s' is refused: "
                                  "TEMP objects would outlive the call on a "
                                  "shared connection; only main may change",
                                  a3, db);
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_VIEW:
        return on_main(db) ? SQLITE_OK
                           : deny(g,
                                  "schema object %s in schema '%s' is "
                                  "refused: create objects in main",
                                  a3, db);
    case SQLITE_ALTER_TABLE:
        /* a3 = database, a4 = table */
        return on_main(a3) ? SQLITE_OK
                           : deny(g,
                                  "ALTER TABLE in schema '%s' (%s) is "
                                  "refused: only main may be changed",
                                  a3, a4);
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
        return deny(g,
                    "TEMP object %s is refused: temporary tables, views, "
                    "triggers and indexes would outlive the call on a shared "
                    "connection; create it in main%s",
                    a3, "");
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
        /* a3 = table, a4 = module */
        if (!on_main(db)) {
            return deny(g,
                        "virtual table %s outside main is refused "
                        "(schema '%s')",
                        a3, db);
        }
        return rl_sqlguard_module_allowed(a4)
                   ? SQLITE_OK
                   : deny(g,
                          "virtual table %s: module '%s' is not allowed "
                          "(allowed: fts5, fts5vocab, rtree, rtree_i32, "
                          "geopoly)",
                          a3, a4);
    case SQLITE_FUNCTION:
        /* a3 = NULL, a4 = function name */
        return rl_sqlguard_function_allowed(a4)
                   ? SQLITE_OK
                   : deny(g,
                          "function %s%s() is not on the allow-list of "
                          "built-in functions for remote SQL",
                          "", a4);
    case SQLITE_PRAGMA:
        /* a3 = pragma name, a4 = argument or NULL */
        return rl_sqlguard_pragma_allowed(a3, a4)
                   ? SQLITE_OK
                   : deny(g,
                          "PRAGMA %s%s is refused: remote SQL may only read "
                          "informational PRAGMAs (table_info, index_list, "
                          "integrity_check, user_version, ...); settings are "
                          "the operator's",
                          a3, a4 ? " with an argument" : "");
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        return g && g->allow_txn
                   ? SQLITE_OK
                   : deny(g,
                          "transaction control (%s%s) in SQL text is "
                          "refused: each call is one transaction (several "
                          "statements belong in ExecuteTransaction)",
                          action == SQLITE_SAVEPOINT ? "SAVEPOINT " : "",
                          action == SQLITE_SAVEPOINT ? a4 : a3);
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
        /* VACUUM INTO attaches its output file too. */
        return deny(g,
                    "ATTACH/DETACH (and VACUUM INTO) are refused: remote SQL "
                    "may touch only the node's own database%s%s",
                    "", "");
    default:
        return deny(g, "SQL action %s%s is not allowed for remote SQL",
                    action == SQLITE_COPY ? "COPY" : "(unknown)", "");
    }
}

int rl_sqlguard_install(sqlite3 *db, rl_sqlguard *g, char *err, size_t errlen)
{
    static const struct {
        int op, on;
        const char *name;
    } opts[] = {
        {SQLITE_DBCONFIG_DEFENSIVE, 1, "SQLITE_DBCONFIG_DEFENSIVE"},
        {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, "SQLITE_DBCONFIG_TRUSTED_SCHEMA"},
        {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0,
         "SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION"},
        {SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0,
         "SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER"},
    };
    size_t i;
    int rc, now;
    for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        now = -1;
        rc = sqlite3_db_config(db, opts[i].op, opts[i].on, &now);
        if (rc != SQLITE_OK || now != opts[i].on) {
            snprintf(err, errlen, "cannot set %s to %d: %s", opts[i].name,
                     opts[i].on,
                     rc != SQLITE_OK ? sqlite3_errstr(rc) : "not taken");
            return rc != SQLITE_OK ? rc : SQLITE_ERROR;
        }
    }
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    g->allow_txn = 0;
    g->why[0] = 0;
    rc = sqlite3_set_authorizer(db, rl_sqlguard_authorize, g);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot install the authorizer: %s",
                 sqlite3_errstr(rc));
    }
    return rc;
}
