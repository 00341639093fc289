# budget: 60
# asan: yes
"""The extension loads into the stock shell and survives `.open`:
SQLITE_OK_LOAD_PERMANENTLY plus auto-extension registration."""
import os
from rltest import *


def test():
    d = scratch()
    db = os.path.join(d, "a.db")
    rc, out = run_sql(db, "SELECT raft_version();\n"
                      ".open %s\nSELECT raft_version();\n" % db)
    lines = out.split()
    check(len(lines) == 2 and lines[0] == lines[1] and lines[0].count(".") == 2,
          "raft_version() before and after .open: %r" % out)


main(test)
