/*
** tests/unit/test_sqlguard.c -- raftd/api/sqlguard.c alone on a real SQLite
** connection: ordinary SQL (DML, DDL on main, FTS5, R-Tree, JSON, window
** functions, informational PRAGMAs) passes; every escape of issue 15 is
** refused with a reason (fts3_tokenizer with text and with a bound blob,
** load_extension, TEMP objects, setting PRAGMAs also through pragma_*
** table functions, writable_schema, ATTACH, VACUUM INTO, transaction
** control, unknown functions, fts3/fts4 modules) and leaves no state.
*/
#include "sqlguard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/check.h"

static sqlite3 *db;
static rl_sqlguard guard;

/* Runs sql (all statements); returns the first error code. */
static int run(const char *sql)
{
    char *msg = NULL;
    int rc;
    rl_sqlguard_reset(&guard);
    rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && getenv("SQLGUARD_VERBOSE")) {
        fprintf(stderr, "  %s -> %s | %s\n", sql, msg, guard.why);
    }
    sqlite3_free(msg);
    return rc;
}

static void allowed(const char *sql)
{
    int rc = run(sql);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "refused but should pass: %s: %s (%s)\n", sql,
                sqlite3_errmsg(db), guard.why);
    }
    EXPECT(rc == SQLITE_OK);
}

/* Refused by the authorizer (SQLITE_AUTH, or SQLITE_ERROR "not authorized
** to use function"), with a reason containing `word`. */
static void denied(const char *sql, const char *word)
{
    int rc = run(sql);
    if (rc == SQLITE_OK || !strstr(guard.why, word)) {
        fprintf(stderr, "not refused as expected: %s: rc %d %s (why '%s')\n",
                sql, rc, sqlite3_errmsg(db), guard.why);
    }
    EXPECT(rc == SQLITE_AUTH ||
           (rc == SQLITE_ERROR && strstr(sqlite3_errmsg(db), "authorized")));
    EXPECT(strstr(guard.why, word) != NULL);
}

static sqlite3_int64 one_int(const char *sql)
{
    sqlite3_stmt *st = NULL;
    sqlite3_int64 v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

int main(void)
{
    char path[] = "/tmp/rl_sqlguard_XXXXXX", dbfile[64], err[256];
    sqlite3_stmt *st = NULL;
    int fd = mkstemp(path);
    EXPECT(fd >= 0);
    close(fd);
    unlink(path);
    snprintf(dbfile, sizeof dbfile, "%s.db", path);
    EXPECT(sqlite3_open(dbfile, &db) == SQLITE_OK);
    EXPECT(rl_sqlguard_install(db, &guard, err, sizeof err) == SQLITE_OK);

    /* Ordinary SQL passes. */
    allowed("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)");
    allowed("CREATE TABLE main.t2(x)");
    allowed("INSERT INTO t(b) VALUES ('x'), ('y'), (json_object('k', 1))");
    allowed("UPDATE t SET b = upper(b) WHERE a = 1");
    allowed("DELETE FROM t WHERE a = 2");
    allowed("CREATE INDEX ti ON t(b)");
    allowed("CREATE VIEW v AS SELECT a, length(b) AS n FROM t");
    allowed("CREATE TRIGGER tr AFTER INSERT ON t BEGIN "
            "INSERT INTO t2 VALUES (new.a); END");
    allowed("INSERT INTO t(b) VALUES ('z')");
    allowed("SELECT a, row_number() OVER (ORDER BY a), "
            "sum(a) OVER (), lag(b) OVER (ORDER BY a) FROM t");
    allowed("SELECT json_extract('{\"a\":[1,2]}', '$.a[1]'), "
            "'{\"a\":1}' ->> '$.a', abs(-1), coalesce(NULL, 2), "
            "printf('%d', 3), date('now'), round(sqrt(2), 3)");
    allowed("SELECT key, value FROM json_each('[1,2,3]')");
    allowed("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < 10) SELECT count(*), group_concat(x) FROM c");
    allowed("CREATE VIRTUAL TABLE f USING fts5(body)");
    allowed("INSERT INTO f VALUES ('hello world')");
    allowed("SELECT highlight(f, 0, '[', ']'), bm25(f) FROM f "
            "WHERE f MATCH 'hello'");
    allowed("CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)");
    allowed("INSERT INTO r VALUES (1, 0, 10)");
    allowed("SELECT id FROM r WHERE x0 >= 0");
    allowed("PRAGMA table_info(t)");
    allowed("PRAGMA main.index_list(t)");
    allowed("SELECT * FROM pragma_table_info('t')");
    allowed("PRAGMA integrity_check");
    allowed("PRAGMA user_version");
    allowed("PRAGMA query_only");
    allowed("ALTER TABLE t2 ADD COLUMN y");
    allowed("DROP VIEW v");
    allowed("DROP TRIGGER tr");
    allowed("ANALYZE");
    allowed("DROP TABLE t2");

    /* fts3_tokenizer: a pointer leak and a crash through a fake tokenizer,
    ** refused with text and with a bound blob. */
    denied("SELECT hex(fts3_tokenizer('simple'))", "fts3_tokenizer");
    rl_sqlguard_reset(&guard);
    EXPECT(sqlite3_prepare_v2(db, "SELECT fts3_tokenizer('evil', ?)", -1, &st,
                              NULL) != SQLITE_OK);
    EXPECT(st == NULL && strstr(guard.why, "fts3_tokenizer"));
    sqlite3_finalize(st);
    denied("SELECT load_extension('/tmp/x.so')", "load_extension");
    denied("SELECT fts5(NULL)", "fts5");
    EXPECT(run("SELECT no_such_function_here(1)") != SQLITE_OK);
    denied("CREATE VIRTUAL TABLE f3 USING fts3(tokenize=simple)", "fts3");
    denied("CREATE VIRTUAL TABLE f4 USING fts4(x)", "fts4");
    denied("CREATE VIRTUAL TABLE temp.f5 USING fts5(x)", "temp");

    /* TEMP objects: a trigger invisible in sqlite_master. */
    denied("CREATE TEMP TRIGGER tt BEFORE INSERT ON t BEGIN SELECT 1; END",
           "TEMP");
    denied("CREATE TEMP TABLE tt(x)", "TEMP");
    denied("CREATE TABLE temp.tt(x)", "TEMP");
    denied("CREATE TEMP VIEW tv AS SELECT 1", "TEMP");
    EXPECT(one_int("SELECT count(*) FROM temp.sqlite_master") == 0);

    /* Setting PRAGMAs, also through their table-valued form. */
    denied("PRAGMA query_only=1", "query_only");
    denied("PRAGMA writable_schema=ON", "writable_schema");
    denied("PRAGMA hard_heap_limit=200000", "hard_heap_limit");
    denied("PRAGMA soft_heap_limit=200000", "soft_heap_limit");
    denied("PRAGMA temp_store_directory='/tmp'", "temp_store_directory");
    denied("PRAGMA journal_mode=DELETE", "journal_mode");
    denied("PRAGMA user_version=7", "user_version");
    denied("PRAGMA schema_version=99", "schema_version");
    denied("PRAGMA wal_checkpoint", "wal_checkpoint");
    denied("PRAGMA optimize", "optimize");
    denied("PRAGMA shrink_memory", "shrink_memory");
    EXPECT(run("SELECT * FROM pragma_hard_heap_limit(200000)") != SQLITE_OK);
    EXPECT(sqlite3_hard_heap_limit64(-1) == 0);
    EXPECT(one_int("PRAGMA query_only") == 0);
    EXPECT(one_int("PRAGMA user_version") == 0);

    /* Other databases and transaction control. */
    denied("ATTACH 'x.db' AS x", "ATTACH");
    {
        char sql[200];
        snprintf(sql, sizeof sql, "VACUUM INTO '%s.copy'", path);
        EXPECT(run(sql) != SQLITE_OK);
        snprintf(sql, sizeof sql, "%s.copy", path);
        EXPECT(access(sql, F_OK) != 0);
    }
    denied("BEGIN", "transaction");
    denied("SAVEPOINT s", "transaction");
    guard.allow_txn = 1;
    allowed("BEGIN; COMMIT");
    guard.allow_txn = 0;

    /* writable_schema stays off whatever is tried (DEFENSIVE). */
    EXPECT(run("UPDATE sqlite_schema SET sql = 'x' WHERE name = 't'") !=
           SQLITE_OK);
    EXPECT(one_int("SELECT count(*) FROM t") >= 2);

    /* The lists alone. */
    EXPECT(rl_sqlguard_function_allowed("ABS"));
    EXPECT(!rl_sqlguard_function_allowed("fts3_tokenizer"));
    EXPECT(!rl_sqlguard_function_allowed(NULL));
    EXPECT(rl_sqlguard_pragma_allowed("table_info", "t"));
    EXPECT(rl_sqlguard_pragma_allowed("user_version", NULL));
    EXPECT(!rl_sqlguard_pragma_allowed("user_version", "1"));
    EXPECT(rl_sqlguard_module_allowed("fts5"));
    EXPECT(!rl_sqlguard_module_allowed("fts3tokenize"));

    sqlite3_close(db);
    unlink(dbfile);
    return rl_check_report("test_sqlguard");
}
