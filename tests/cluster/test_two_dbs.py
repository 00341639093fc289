# budget: 60
# asan: yes
"""A transaction that writes two replicated databases (main and an
ATTACHed one) cannot commit atomically as two Raft entries, so it is
refused whole (issue 17): a shell hosting a.db ATTACHes b.db, hosted by
another shell (a second one-node cluster; this shell is b.db's client).

- Rows changed in both in one transaction: COMMIT fails ("constraint
  failed"), raft_last_error() names both databases, and neither file has
  any of it (checked from both hosts).
- Each database written in a transaction of its own commits; a BEGIN
  IMMEDIATE (which write-locks every attached database) that changes only
  main commits too.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from rltest import check, check_eq, log, main  # noqa: E402
from rlcluster import Cluster  # noqa: E402


def test():
    ca, cb = Cluster(1), Cluster(1)
    a, b = ca.nodes[0], cb.nodes[0]
    a.sql("CREATE TABLE t(x);")
    b.sql("CREATE TABLE t(x);")
    a.sql("ATTACH '%s' AS aux;" % b.db)
    ok, out, err = a.try_sql("BEGIN;\nINSERT INTO main.t VALUES (1);\n"
                             "INSERT INTO aux.t VALUES (1);\nCOMMIT;")
    check(not ok and "constraint failed" in out,
          "a transaction writing two replicated databases must be refused: "
          "%s" % (out or "it committed"))
    check("two replicated databases" in err and a.db in err and b.db in err,
          "raft_last_error() names both: %s" % err)
    log("refused: %s" % err.split("raft_last_error:")[-1].strip())
    check_eq(a.val("SELECT count(*) FROM main.t;"), "0", "main after refusal")
    check_eq(b.val("SELECT count(*) FROM t;"), "0", "b.db after refusal")
    check_eq(a.val("SELECT count(*) FROM aux.t;"), "0", "aux after refusal")

    # One database per transaction: both commit.
    a.sql("INSERT INTO main.t VALUES (2);")
    a.sql("INSERT INTO aux.t VALUES (3);")
    a.sql("BEGIN IMMEDIATE;\nINSERT INTO main.t VALUES (4);\nCOMMIT;")
    check_eq(a.val("SELECT group_concat(x) FROM main.t;"), "2,4",
             "main's rows")
    cb.wait_val(b, "SELECT group_concat(x) FROM t;", "3")
    check_eq(a.val("SELECT group_concat(x) FROM aux.t;"), "3", "aux's rows")
    log("one database per transaction: committed")
    a.sql("DETACH aux;")
    ca.close()
    cb.close()


if __name__ == "__main__":
    main(test)
