# budget: 60
# asan: yes
"""The extension loads into the stock shell and survives `.open`
(SQLITE_OK_LOAD_PERMANENTLY plus auto-extension registration); a replicated
database the shell opened before `.load` (named on its command line)
bypasses the VFS, so the extension warns and refuses its commits instead of
letting them fork the replica."""
import os
import subprocess
from rltest import *


def case_load_and_open():
    d = scratch()
    db = os.path.join(d, "a.db")
    rc, out = run_sql(db, "SELECT raft_version();\n"
                      ".open %s\nSELECT raft_version();\n" % db)
    lines = out.split()
    check(len(lines) == 2 and lines[0] == lines[1] and lines[0].count(".") == 2,
          "raft_version() before and after .open: %r" % out)


def case_opened_before_load():
    d = scratch()
    a, _ = make_pair(d)
    run_sql(a, "CREATE TABLE t(x);", ext=False)
    env = san_env(dict(os.environ))
    script = (".load %s\nINSERT INTO t VALUES (1);\nSELECT raft_last_error();\n"
              "SELECT count(*) FROM t;\n" % EXT)
    p = subprocess.run([SQLITE3, "-batch", a], input=script, text=True,
                       capture_output=True, env=env, timeout=60)
    check("warning" in p.stderr and "opened before .load" in p.stderr and
          ".open %s" % a in p.stderr, "warning names the fix: %r" % p.stderr)
    check("constraint failed" in p.stderr, "commit refused: %r" % p.stderr)
    check("reopen it with .open after .load" in p.stdout.lower() or
          "Reopen it with .open after .load" in p.stdout,
          "raft_last_error explains: %r" % p.stdout)
    check_eq(p.stdout.split()[-1], "0", "nothing written")
    _, out = run_sql(a, "SELECT count(*) FROM t;", ext=False)
    check_eq(out.strip(), "0", "stock view: nothing written")


def test():
    case_load_and_open()
    case_opened_before_load()


main(test)
