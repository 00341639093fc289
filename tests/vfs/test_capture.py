# budget: 240
# asan: yes
"""Capture: each committed write transaction of a replicated database gives
exactly one record (final image of every changed page, page size, size
after commit) and a rolled-back one gives none, through the cases SQLite's
WAL writer makes hard: cache spills with pages overwritten in place, frame
headers rewritten after the commit frame, padding frames (psow=0,
synchronous=FULL), savepoint rollbacks, WAL restarts, VACUUM and shrinking,
schema changes, every page size from 512 to 65536 and a 50 MB transaction.
Each case is proven by applying the records to a second database (the
mirror) and comparing. A refusing port gives the writer a clean error,
leaves the connection usable and makes nothing visible, now or after a
crash; raft_last_error() says why."""
import os
import shutil
from rltest import *


def stat(shell, name):
    return int(shell.sql_ok("SELECT raft_test_stats('%s');" % name).strip())


class Case:
    """A replicated pair A/B; A's shell writes through the mirror."""

    def __init__(self, page_size=4096, uri="", env=None):
        self.d = scratch()
        self.a, self.b = make_pair(self.d, page_size)
        self.log = os.path.join(self.d, "mirror.log")
        e = {"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": self.log}
        if env:
            e.update(env)
        self.A = Shell(("file:%s?%s" % (self.a, uri)) if uri else self.a,
                       env=e)
        self.B = Shell(self.b, env={"RAFTLITE_TEST": "1"})
        self.pos = 0

    def records(self):
        if not os.path.exists(self.log):
            return []
        return mirror_records(self.log)[0]

    def sync(self, what):
        """Applies the new records to B and checks B answers as A."""
        recs, end = (mirror_records(self.log, self.pos)
                     if os.path.exists(self.log) else ([], 0))
        got = int(self.B.sql_ok("SELECT raft_mirror_apply('%s');" %
                                self.log).strip() or 0)
        check_eq(got, sum(r[1] for r in recs), what + ": frames applied")
        self.pos = end or self.pos
        check_eq(self.B.sql_ok(".sha3sum"), self.A.sql_ok(".sha3sum"),
                 what + ": B's content")
        check_eq(self.B.sql_ok("PRAGMA integrity_check;").strip(), "ok",
                 what + ": B's integrity")

    def identical_files(self, what):
        for s in (self.A, self.B):
            s.sql_ok("PRAGMA wal_checkpoint(TRUNCATE);")
        check(file_bytes(self.a) == file_bytes(self.b),
              what + ": files differ after checkpoint")

    def close(self):
        self.A.finish("A exits 0", 0)
        self.B.finish("B exits 0", 0)


BIG = "INSERT INTO t(a, b) SELECT value, randomblob(%d) FROM generate_series(1, %d);"


def case_spills():
    c = Case()
    c.A.sql_ok("CREATE TABLE t(a, b); PRAGMA cache_size=10;")
    ow0 = stat(c.A, "page_overwrites")
    after0 = stat(c.A, "after_commit")
    c.A.sql_ok("BEGIN;" + BIG % (700, 3000) +
               "UPDATE t SET b=randomblob(600) WHERE a % 3 = 0;"
               "UPDATE t SET b=randomblob(650) WHERE a % 3 = 1; COMMIT;")
    check_eq(len(c.records()), 2, "records after CREATE + one big txn")
    check(stat(c.A, "page_overwrites") > ow0,
          "the case overwrote spilled pages in place")
    check(stat(c.A, "after_commit") > after0,
          "SQLite rewrote frame headers after the commit frame")
    c.sync("spills")
    c.identical_files("spills")
    c.close()


def case_padding():
    # psow=0 and synchronous=FULL: SQLite pads the commit with copies of
    # the commit frame up to a sector boundary, split at the sync point.
    c = Case(page_size=1024, uri="psow=0")
    c.A.sql_ok("PRAGMA synchronous=FULL; CREATE TABLE t(a, b);")
    after0 = stat(c.A, "after_commit")
    for i in range(5):
        c.A.sql_ok("INSERT INTO t VALUES (%d, randomblob(%d));" %
                   (i, 100 + 700 * i))
    check(stat(c.A, "after_commit") > after0, "padding frames were written")
    check_eq(len(c.records()), 6, "one record per commit, padding ignored")
    c.sync("padding")
    c.close()


def case_savepoints_and_rollbacks():
    c = Case()
    c.A.sql_ok("CREATE TABLE t(a, b); PRAGMA cache_size=10;" + BIG % (500, 500))
    n0 = len(c.records())
    rb0 = stat(c.A, "rolled_back")
    # Rolled back, small and spilled: no record.
    c.A.sql_ok("BEGIN; INSERT INTO t VALUES (-1, 'x'); ROLLBACK;")
    c.A.sql_ok("BEGIN;" + BIG % (800, 2000) + "ROLLBACK;")
    check_eq(len(c.records()), n0, "rolled-back transactions give no record")
    check(stat(c.A, "rolled_back") > rb0, "a spilled transaction rolled back")
    # Savepoints rolled back inside a committed transaction, with spills
    # before, inside and after the savepoint.
    c.A.sql_ok("BEGIN; DELETE FROM t WHERE a % 5 = 1; SAVEPOINT s1;" +
               BIG % (900, 600) + "UPDATE t SET b=randomblob(10) WHERE a % 7 = 0;"
               "ROLLBACK TO s1; DELETE FROM t WHERE a % 7 = 2;"
               "SAVEPOINT s2;" + BIG % (300, 50) + "RELEASE s2; RELEASE s1;"
               "COMMIT;")
    check_eq(len(c.records()), n0 + 1, "one record for the savepoint txn")
    c.sync("savepoints")
    c.identical_files("savepoints")
    c.close()


def case_restart_vacuum_schema():
    c = Case()
    c.A.sql_ok("CREATE TABLE t(a, b); CREATE INDEX ti ON t(a);" +
               BIG % (1500, 2000))
    c.sync("fill")
    # WAL restarts on A after checkpoints of each kind.
    for mode in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
        c.A.sql_ok("PRAGMA wal_checkpoint(%s);" % mode)
        c.A.sql_ok("UPDATE t SET b=randomblob(100) WHERE a %% 10 = %d;" %
                   len(mode))
        c.sync("after %s checkpoint" % mode)
    # Shrinking transactions: a big delete, then VACUUM.
    size0 = int(c.A.sql_ok("PRAGMA page_count;").strip())
    c.A.sql_ok("DELETE FROM t WHERE a > 100;")
    c.A.sql_ok("VACUUM;")
    size1 = int(c.A.sql_ok("PRAGMA page_count;").strip())
    check(size1 < size0 / 4, "VACUUM shrank the database (%d -> %d)" %
          (size0, size1))
    check_eq(c.records()[-1][3], size1, "record of VACUUM carries new size")
    c.sync("vacuum")
    # Schema changes.
    c.A.sql_ok("CREATE TABLE u(x PRIMARY KEY, y) WITHOUT ROWID;"
               "ALTER TABLE t ADD COLUMN c DEFAULT 7;"
               "ALTER TABLE t RENAME TO t2; CREATE VIEW v AS SELECT * FROM t2;"
               "CREATE TRIGGER tr AFTER INSERT ON t2 BEGIN "
               "INSERT INTO u VALUES (new.a, new.b); END;"
               "INSERT INTO t2(a, b) VALUES (1e9, 'trig'); DROP INDEX ti;")
    c.sync("schema")
    check_eq(c.B.sql_ok("SELECT y FROM u;").strip(), "trig", "trigger row on B")
    c.identical_files("vacuum and schema")
    c.close()


def case_page_sizes():
    for ps in (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        c = Case(page_size=ps)
        check_eq(c.A.sql_ok("PRAGMA page_size;").strip(), str(ps), "page size")
        c.A.sql_ok("CREATE TABLE t(a, b); PRAGMA cache_size=10;" +
                   BIG % (ps // 3, 40) + "DELETE FROM t WHERE a % 2 = 0;")
        recs = c.records()
        check(recs and all(r[2] == ps for r in recs),
              "records carry page size %d" % ps)
        c.sync("page size %d" % ps)
        c.identical_files("page size %d" % ps)
        c.close()


def case_50mb():
    c = Case()
    c.A.sql_ok("CREATE TABLE t(a, b);")
    c.A.sql_ok("BEGIN;" + BIG % (1000000, 50) + "COMMIT;")
    recs = c.records()
    check_eq(len(recs), 2, "records")
    check(recs[-1][1] * 4096 >= 50 * 1000000,
          "the 50 MB transaction is one record of %d pages" % recs[-1][1])
    c.sync("50 MB")
    c.close()


def case_refused():
    c = Case(env={"RAFTLITE_MIRROR_REFUSE": "1"})
    # The setup itself is refused: make the table through a normal writer.
    out = c.A.sql("CREATE TABLE t(a);")
    check("attempt to write a readonly database" in out,
          "a refused commit reports SQLITE_READONLY: %r" % out)
    why = c.A.sql_ok("SELECT raft_last_error();")
    check("mirror refuses" in why, "raft_last_error names the cause: %r" % why)
    # The connection stays usable and nothing is visible, to it or to a
    # stock reader.
    check_eq(c.A.sql_ok("SELECT count(*) FROM sqlite_schema;").strip(), "0",
             "schema after refusal (writer)")
    _, out = run_sql(c.a, "SELECT count(*) FROM sqlite_schema;", ext=False)
    check_eq(out.strip(), "0", "schema after refusal (stock reader)")
    out = c.A.sql("BEGIN; CREATE TABLE t2(x); INSERT INTO t2 VALUES(1); COMMIT;")
    check("attempt to write a readonly database" in out,
          "explicit COMMIT refused with SQLITE_READONLY: %r" % out)
    c.A.sql("ROLLBACK;")  # may say no transaction is active
    check_eq(c.A.sql_ok("SELECT count(*) FROM sqlite_schema;").strip(), "0",
             "schema after refused COMMIT")
    check_eq(len(c.records()), 0, "no record from refused commits")
    # A crash right after the refusal: recovery must not resurrect it.
    c.A.p.kill()
    c.A.p.wait()
    _, out = run_sql(c.a, "SELECT count(*) FROM sqlite_schema;", ext=False)
    check_eq(out.strip(), "0", "schema after crash and stock recovery")
    c.B.close()


def case_no_port():
    d = scratch()
    a, _ = make_pair(d)
    sh = Shell(a, env={"RAFTLITE_TEST": "1"})  # no mirror, no node
    out = sh.sql("CREATE TABLE t(a);")
    check("attempt to write a readonly database" in out,
          "write without a node refused with SQLITE_READONLY: %r" % out)
    why = sh.sql_ok("SELECT raft_last_error();")
    check("no raft node serves it" in why and "raft_bootstrap" in why,
          "message names cause and fix: %r" % why)
    # The shell exits 1 after an error in batch mode, as stock SQLite does.
    sh.finish("shell exit status after the refused write", 1)


def test():
    for case in (case_spills, case_padding, case_savepoints_and_rollbacks,
                 case_restart_vacuum_schema, case_page_sizes, case_refused,
                 case_no_port):
        log("--", case.__name__)
        case()
    if not SAN:
        log("-- case_50mb")
        case_50mb()


main(test)
