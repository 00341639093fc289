# budget: 120
# asan: yes
"""Guards: nothing may fork a replica behind the replicator's back.
journal_mode other than WAL, locking_mode=EXCLUSIVE and page_size changes
are refused on a replicated database, also when it is ATTACHed and when
the pragma was set before the ATTACH; a stock sqlite3 without the extension
can read the file but cannot commit a write while a raftlite process has
it open (also after a transaction put page 1 in the WAL), and a stock
reader's close neither checkpoints nor deletes the WAL."""
import os
from rltest import *

ENV = None


def setup():
    d = scratch()
    a, _ = make_pair(d)
    log_ = os.path.join(d, "m.log")
    env = {"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": log_}
    return d, a, env


def records(d):
    p = os.path.join(d, "m.log")
    return len(mirror_records(p)[0]) if os.path.exists(p) else 0


def case_pragmas_direct():
    d, a, env = setup()
    sh = Shell(a, env=env)
    sh.sql_ok("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
    for mode in ("delete", "truncate", "persist", "memory", "off"):
        out = sh.sql_err("PRAGMA journal_mode=%s;" % mode)
        check("stays in WAL mode" in out, "journal_mode=%s refused: %s" %
              (mode, out))
    check_eq(sh.sql_ok("PRAGMA journal_mode;").strip(), "wal", "still WAL")
    check_eq(sh.sql_ok("PRAGMA journal_mode=WAL;").strip(), "wal",
             "setting WAL again is allowed")
    out = sh.sql_err("PRAGMA locking_mode=EXCLUSIVE;")
    check("locking_mode=EXCLUSIVE refused" in out, "locking_mode: %s" % out)
    out = sh.sql_err("PRAGMA page_size=1024;")
    check("page size" in out and "cannot change" in out, "page_size: %s" % out)
    sh.sql_ok("PRAGMA page_size=4096;")  # the current size: allowed
    sh.sql_ok("INSERT INTO t VALUES (2);")
    check_eq(records(d), 3, "writes still replicate after the refusals")
    check_eq(sh.sql_ok("SELECT count(*) FROM t;").strip(), "2", "rows")
    sh.finish("shell exit status after errors", 1)


def case_attached():
    d, a, env = setup()
    plain = os.path.join(d, "plain.db")
    sh = Shell(plain, env=env)
    sh.sql_ok("ATTACH '%s' AS r; CREATE TABLE r.t(x); INSERT INTO r.t VALUES (1);"
              % a)
    check_eq(records(d), 2, "writes to the attached replica replicate")
    out = sh.sql_err("PRAGMA r.journal_mode=delete;")
    check("stays in WAL mode" in out, "attached journal_mode: %s" % out)
    # Without a schema name the pragma goes to every database, and SQLite
    # asks only main's VFS: the replica must still refuse to leave WAL.
    sh.sql("PRAGMA journal_mode=delete;")
    check_eq(sh.sql_ok("PRAGMA r.journal_mode;").strip(), "wal",
             "attached replica still in WAL mode")
    out = sh.sql_err("PRAGMA r.page_size=8192;")
    check("cannot change" in out, "attached page_size: %s" % out)
    out = sh.sql_err("PRAGMA r.locking_mode=exclusive;")
    check("locking_mode" in out, "attached locking_mode: %s" % out)
    sh.sql_ok("INSERT INTO r.t VALUES (2);")
    check_eq(records(d), 3, "replica still replicates")
    _, out = run_sql(a, "SELECT count(*) FROM t; PRAGMA journal_mode;",
                     ext=False)
    check_eq(out.split(), ["2", "wal"], "file content and mode (stock view)")
    sh.close()
    # locking_mode=EXCLUSIVE set before the ATTACH: the replica is opened
    # in exclusive mode without any pragma reaching its VFS.
    sh = Shell(plain, env=env)
    sh.sql_ok("PRAGMA locking_mode=EXCLUSIVE;")
    sh.sql("ATTACH '%s' AS r;" % a)
    out = sh.sql("INSERT INTO r.t VALUES (3);")
    check(is_error(out), "write in exclusive mode refused: %s" % out)
    why = sh.sql_ok("SELECT raft_last_error();")
    check("locking_mode=EXCLUSIVE" in why, "raft_last_error: %r" % why)
    sh.close()
    _, out = run_sql(a, "SELECT count(*) FROM t;", ext=False)
    check_eq(out.strip(), "2", "nothing written in exclusive mode")
    check_eq(records(d), 3, "nothing replicated in exclusive mode")


def case_stock_processes():
    d, a, env = setup()
    sh = Shell(a, env=env)
    # This transaction puts page 1 in the WAL (schema change).
    sh.sql_ok("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
    wal0 = file_bytes(a + "-wal")
    db0 = file_bytes(a)
    rc, out = run_sql(a, "INSERT INTO t VALUES (99);", ext=False,
                      check_rc=False)
    check(rc != 0 and "locked" in out, "stock writer refused: %r" % out)
    rc, out = run_sql(a, "BEGIN IMMEDIATE;", ext=False, check_rc=False)
    check(rc != 0, "stock BEGIN IMMEDIATE refused: %r" % out)
    # Stock readers read it; their close neither checkpoints nor deletes.
    for _ in range(2):
        _, out = run_sql(a, "SELECT count(*) FROM t;", ext=False)
        check_eq(out.strip(), "1", "stock reader")
        check(os.path.exists(a + "-wal") and os.path.exists(a + "-shm"),
              "WAL and shm still there after a stock reader closed")
        check(file_bytes(a + "-wal") == wal0, "WAL unchanged")
        check(file_bytes(a) == db0, "database file not checkpointed")
    sh.sql_ok("INSERT INTO t VALUES (2);")
    check_eq(records(d), 3, "replicated writes")
    _, out = run_sql(a, "SELECT group_concat(x) FROM t;", ext=False)
    check_eq(out.strip(), "1,2", "stock reader sees replicated writes only")
    # The raftlite process's own close keeps the WAL too (persistent WAL).
    sh.finish("shell exit", 0)
    check(os.path.exists(a + "-wal"), "WAL kept after the raftlite close")


def case_stock_writer_first():
    """A stock writer inside a transaction before any raftlite process
    opened the database: raftlite writers wait for it instead of writing
    beside it (the raftlite lock alone would not exclude it)."""
    d, a, env = setup()
    run_sql(a, "CREATE TABLE t(x);", ext=False)
    stock = Shell(a, ext=False)
    stock.sql_ok("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
    sh = Shell(a, env=env)
    sh.sql_ok(".timeout 300")
    out = sh.sql("INSERT INTO t VALUES (2);")
    check("locked" in out, "raftlite writer waits for the stock one: %r" % out)
    stock.sql_ok("COMMIT;")
    stock.close()
    sh.sql_ok("INSERT INTO t VALUES (3);")
    check_eq(sh.sql_ok("SELECT group_concat(x) FROM t;").strip(), "1,3",
             "rows")
    sh.close()


def test():
    for case in (case_pragmas_direct, case_attached, case_stock_processes,
                 case_stock_writer_first):
        log("--", case.__name__)
        case()


main(test)
