# budget: 300
# budget-long: 7200
# asan: yes
"""Mirror proof of the replicating VFS: every committed transaction of a
seeded random workload on database A (stock shell + extension) is captured
by the test-only mirror replicator, and a separate process applies it to
database B, which checkpoints on its own random schedule while stock
readers (no extension) hold snapshots of it. After every batch B answers
exactly as A (.sha3sum), passes integrity_check, its WAL grew by exactly the
pages of the records applied, and a reader's open transaction kept its
snapshot. After a full checkpoint of both the files are byte-identical.
make test: >= 2,000 transactions; make test-long: >= 20,000; the ASan run:
>= 1,000."""
import os
import random
import time
from rltest import *

SEED = int(os.environ.get("RL_SEED", "20261127"))


class Workload:
    """Seeded random SQL: inserts, updates, deletes, schema changes, VACUUM,
    blobs up to 10 MB, savepoints, rollbacks, explicit transactions and
    non-deterministic functions."""

    def __init__(self, rng):
        self.r = rng
        self.tables = ["t0"]
        self.ntab = 1
        self.nidx = 0
        self.commits = 0  # transactions expected to produce a record

    def setup(self):
        self.commits += 1
        return ("CREATE TABLE t0(id INTEGER PRIMARY KEY, a TEXT, b BLOB, "
                "c REAL, d TEXT);")

    def blob_size(self):
        x = self.r.random()
        if x < 0.6:
            return self.r.randint(0, 300)
        if x < 0.95:
            return self.r.randint(300, 6000)
        return self.r.randint(6000, 200000)

    def trim(self):
        """Deletes about two thirds of every table's rows."""
        self.commits += len(self.tables)
        return "\n".join("DELETE FROM %s WHERE id %% 3 <> 0;" % t
                         for t in self.tables)

    def ten_mb(self):
        """One 10 MB blob, written and then rewritten in place."""
        self.commits += 3
        t = self.tables[0]
        return ("DELETE FROM %s WHERE a='big';\n"
                "INSERT INTO %s(a,b) VALUES ('big', randomblob(10000000));\n"
                "UPDATE %s SET b=randomblob(10000000) WHERE a='big';" %
                (t, t, t))

    def stmt(self, dml_only=False):
        r = self.r
        t = r.choice(self.tables)
        x = r.random()
        if dml_only:
            x = x * 0.8  # inserts, updates, deletes: no schema change
        if x < 0.45:
            n = r.randint(1, 4)
            rows = ",".join(
                "('s%d', randomblob(%d), random()/1e9, datetime('now'))" %
                (r.randint(0, 1 << 30), self.blob_size()) for _ in range(n))
            return "INSERT INTO %s(a,b,c,d) VALUES %s;" % (t, rows)
        if x < 0.65:
            return ("UPDATE %s SET a=hex(randomblob(4)), b=randomblob(%d), "
                    "c=c+1 WHERE id %% %d = %d;" %
                    (t, self.blob_size(), r.randint(2, 9), r.randint(0, 1)))
        if x < 0.8:
            return "DELETE FROM %s WHERE id %% %d = %d;" % (
                t, r.randint(3, 12), r.randint(0, 2))
        if x < 0.85:
            self.ntab += 1
            name = "t%d" % self.ntab
            self.tables.append(name)
            return ("CREATE TABLE %s(id INTEGER PRIMARY KEY, a TEXT, b BLOB, "
                    "c REAL, d TEXT);" % name)
        if x < 0.9:
            self.nidx += 1
            return "CREATE INDEX IF NOT EXISTS i%d ON %s(a, c);" % (self.nidx, t)
        if x < 0.93 and len(self.tables) > 1:
            self.tables.remove(t)
            return "DROP TABLE %s;" % t
        if x < 0.96:
            return ("INSERT INTO %s(a,b,c,d) SELECT a||'x', b, c*2, d FROM %s "
                    "WHERE id %% 5 = 0 LIMIT 50;" % (t, t))
        return "UPDATE %s SET d=datetime('now','+%d seconds') WHERE id %% 7 = 1;" % (
            t, r.randint(1, 1000))

    def txn(self):
        """SQL text of one transaction (or a statement that rolls back)."""
        r = self.r
        x = r.random()
        if x < 0.55:
            self.commits += 1
            return self.stmt()
        if x < 0.8:
            self.commits += 1
            body = " ".join(self.stmt() for _ in range(r.randint(2, 6)))
            return "BEGIN; %s COMMIT;" % body
        if x < 0.9:
            self.commits += 1
            return ("BEGIN; %s SAVEPOINT s1; %s %s ROLLBACK TO s1; %s "
                    "RELEASE s1; COMMIT;" %
                    (self.stmt(), self.stmt(True), self.stmt(True),
                     self.stmt()))
        if x < 0.97:
            # Rolled back: must produce no record. Schema changes inside it
            # would leave the generator's table list wrong, so DML only.
            t = r.choice(self.tables)
            return ("BEGIN; INSERT INTO %s(a,b) VALUES ('gone', randomblob(%d)); "
                    "DELETE FROM %s WHERE id %% 2 = 0; ROLLBACK;" %
                    (t, self.blob_size(), t))
        self.commits += 1
        return "VACUUM;"


def digest(shell):
    out = shell.sql_ok(".sha3sum")
    return out.strip()


def test():
    target = 20000 if LONG else (1000 if SAN else 2000)
    rng = random.Random(SEED)
    log("seed", SEED, "target", target)
    d = scratch()
    a_db, b_db = make_pair(d)
    mlog = os.path.join(d, "mirror.log")
    env = {"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": mlog}
    A = Shell(a_db, env=env)
    B = Shell(b_db, env={"RAFTLITE_TEST": "1"})
    B.sql_ok(".timeout 200")
    readers = [Shell(b_db, ext=False) for _ in range(2)]
    w = Workload(rng)
    A.sql_ok(w.setup())
    pos = 0
    nrec = 0
    batches = 0
    snapshots_kept = 0
    restarts = 0
    while nrec < target:
        batches += 1
        A.sql_ok("PRAGMA cache_size=%d; PRAGMA synchronous=%s;" %
                 (rng.choice([10, 50, 2000]),
                  rng.choice(["FULL", "NORMAL", "NORMAL", "OFF"])))
        # Keep the database small enough that a long run stays cheap (each
        # VACUUM's record is the whole database): trim it past ~8 MB,
        # before this batch's schema changes.
        trim = (w.trim() + "\n"
                if int(A.sql_ok("PRAGMA page_count;").strip()) > 2000 else "")
        sql = trim + "\n".join(w.txn() for _ in range(rng.randint(10, 40)))
        # 10 MB blobs: once in make test, every 60 batches in test-long (more
        # often would make the database, and each VACUUM's record, huge).
        if not SAN and batches % 60 == 3:
            sql += "\n" + w.ten_mb()
        if os.environ.get("RL_DEBUG"):
            log("batch %d:\n%s" % (batches + 1, sql))
        A.sql_ok(sql)
        new, end = mirror_records(mlog, pos)
        nrec += len(new)
        # At most one record per committed transaction (a statement that
        # changes nothing writes no frame and gives none; the exact count is
        # checked by tests/vfs/test_capture.py).
        check(nrec <= w.commits,
              "more records (%d) than committed transactions (%d)" %
              (nrec, w.commits))
        want_frames = sum(r[1] for r in new)

        # A stock reader opens a snapshot before the apply...
        rd = rng.choice(readers)
        hold = rng.random() < 0.5
        if hold:
            rd.sql_ok("BEGIN;")
            before_snap = digest(rd)
        h0 = shm_header(b_db) if os.path.exists(b_db + "-shm") else None
        t0 = time.time()
        got = B.sql_ok("SELECT raft_mirror_apply('%s');" % mlog).strip()
        if os.environ.get("RL_DEBUG"):
            log("apply %.3fs frames %s hold %s" % (time.time() - t0, got, hold))
        h1 = shm_header(b_db)
        check_eq(int(got), want_frames, "frames applied in batch %d" % batches)
        if h0 is None or h0["salt"] != h1["salt"]:
            restarts += h0 is not None
            check_eq(h1["mxFrame"], want_frames,
                     "WAL frames after a restart (batch %d)" % batches)
        else:
            check_eq(h1["mxFrame"] - h0["mxFrame"], want_frames,
                     "WAL growth in batch %d" % batches)
        pos = end
        # ...and keeps it across the apply, without BUSY_RECOVERY.
        if hold:
            check_eq(digest(rd), before_snap, "reader snapshot across apply")
            rd.sql_ok("COMMIT;")
            snapshots_kept += 1
        da, db = digest(A), digest(B)
        check_eq(db, da, "B's content after batch %d" % batches)
        check_eq(digest(rng.choice(readers)), da, "stock reader of B")
        if batches % 5 == 0:
            check_eq(B.sql_ok("PRAGMA integrity_check;").strip(), "ok",
                     "integrity of B")
        # B checkpoints on its own schedule.
        if rng.random() < 0.4:
            B.sql("PRAGMA wal_checkpoint(%s);" % rng.choice(
                ["PASSIVE", "FULL", "RESTART", "TRUNCATE"]))
    log("batches", batches, "records", nrec, "restarts", restarts,
        "snapshots kept", snapshots_kept)
    check(restarts > 0, "no WAL restart was exercised")
    check_eq(B.sql_ok("PRAGMA integrity_check;").strip(), "ok", "integrity")
    for rd in readers:
        rd.close()
    # Full checkpoint of both: the database files are byte-identical.
    for s in (A, B):
        out = s.sql_ok("PRAGMA wal_checkpoint(TRUNCATE);").strip()
        check_eq(out.split("|")[0], "0", "TRUNCATE checkpoint completed")
    fa, fb = file_bytes(a_db), file_bytes(b_db)
    check(len(fa) == len(fb) and fa == fb,
          "A.db and B.db differ after checkpoint (%d vs %d bytes)" %
          (len(fa), len(fb)))
    A.finish("A shell exit", 0)
    B.finish("B shell exit", 0)


main(test)
