# budget: 120
# asan: yes
"""SQL conformance over gRPC: part of the sqllogictest corpus (the
language-evidence files, select1 and select5: DDL, DML, triggers, views,
REINDEX, REPLACE, aggregates, 1,700 queries) runs through raftd's
ExecuteRead/ExecuteWrite with slt_grpc.py, checked exactly as the shell
runner checks it. It proves that the remote-SQL allow-list
(raftd/api/sqlguard.c) refuses no ordinary SQL: only the records listed in
slt_grpc.BY_DESIGN (TEMP objects) may fail, and they must. The whole
corpus over gRPC: tests/conformance/slt_grpc.py CORPUS (about 3 minutes).
"""
import os
import subprocess
import sys

from rltest import BUILD, ROOT, SAN, check, fail, log, main, scratch

# The same corpus as test_sqllogictest.py reads.
CORPUS = os.path.join(ROOT, "tests", "conformance", "data", "sqllogictest")
# Under ASan the slower raftd runs the evidence files and select1 only.
SUBSET = ["evidence", "select1.test"] + ([] if SAN else ["select5.test"])


def test():
    if not os.path.isdir(CORPUS):
        fail("sqllogictest corpus missing: %s" % CORPUS)
    r = subprocess.run(
        ["/usr/bin/python3", os.path.join(ROOT, "tests", "conformance",
                                          "slt_grpc.py"),
         "--raftd", os.path.join(BUILD, "raftd"),
         "--data", scratch("slt-grpc-"), CORPUS, "--only"] + SUBSET,
        capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    lines = out.strip().splitlines()
    check(r.returncode == 0 and lines and " 0 failed," in lines[-1],
          "sqllogictest over gRPC failed (exit %d):\n%s" %
          (r.returncode, out[-6000:]))
    nfiles = sum(1 for ln in lines if ln.startswith("ok "))
    want = 13 if SAN else 14
    check(nfiles == want, "%d files should pass, %d did:\n%s" %
          (want, nfiles, out[-3000:]))
    check("4 refusals by design" in out,
          "the TEMP views were not refused:\n%s" % out[-3000:])
    log(lines[-1])


main(test)
