#!/usr/bin/python3
# budget: 90
"""tests/poc/test_demo.py -- `make demo`'s script (demo/demo.py) against
this build: it exits 0 and prints "demo ok" after showing what it claims
(the rows read on node3 over gRPC, raft_nodes in a client shell, the
client shell's write read back, a stock read of node1's file, every raftd exiting 0);
afterwards none of its raftd processes runs and its temporary directory is
gone. The same holds when it fails (a raftd that cannot start: a wrapper
makes node3's raftd exit 1) and when it is interrupted (SIGINT once the
three nodes serve).
"""
import os
import re
import signal
import subprocess
import time

from rlpoc import (BUILD, PY, RAFTD, ROOT, SLOW, check, fail, log, scratch,
                   spawn)

DEMO = os.path.join(ROOT, "demo", "demo.py")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def check_cleaned(out, what, nodes):
    pids = [int(p) for p in re.findall(r"\(node\d: pid (\d+)\)", out)]
    check(len(pids) == nodes, "%s: %d raftd pids printed, want %d:\n%s" %
          (what, len(pids), nodes, out))
    for pid in pids:
        check(not alive(pid), "%s: raftd %d still runs" % (what, pid))
    m = re.search(r"raftlite demo in (\S+)", out)
    check(m, "%s: the demo names no directory:\n%s" % (what, out))
    check(not os.path.exists(m.group(1)), "%s: %s was not removed" %
          (what, m.group(1)))


def test():
    # A normal run.
    r = subprocess.run([PY, DEMO], capture_output=True, text=True,
                       timeout=120 * SLOW)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "\ndemo ok\n" in out,
          "demo exited %d:\n%s" % (r.returncode, out))
    for needle in ("  2|Distributed Systems are Fun",
                   "|voter|1", '"state":"follower"',
                   "  from a client shell",
                   "  node1 exited 0", "  node2 exited 0", "  node3 exited 0"):
        check(needle in out, "the demo's transcript lacks %r:\n%s" %
              (needle, out))
    check_cleaned(out, "normal run", 3)
    log("normal run: ok")

    # A failing run: node3's raftd exits 1 at start.
    b = scratch("rldemobuild-")
    os.symlink(os.path.join(BUILD, "raftlite.so"),
               os.path.join(b, "raftlite.so"))
    with open(os.path.join(b, "raftd"), "w") as f:
        f.write('#!/bin/sh\ncase " $* " in *" node3 "*) echo "raftd: error: '
                'test refuses node3" >&2; exit 1;; esac\nexec %s "$@"\n' %
                RAFTD)
    os.chmod(os.path.join(b, "raftd"), 0o755)
    r = subprocess.run([PY, DEMO], capture_output=True, text=True,
                       timeout=120 * SLOW, env=dict(os.environ, RL_BUILD=b))
    out = r.stdout + r.stderr
    check(r.returncode == 1 and "demo FAILED: node3 did not start" in out and
          "test refuses node3" in out,
          "a failing demo: exit %d:\n%s" % (r.returncode, out))
    check_cleaned(out, "failing run", 2)
    log("failing run: stopped and removed everything")

    # An interrupted run (Ctrl-C once the nodes serve).
    logpath = os.path.join(scratch("rldemoint-"), "out")
    with open(logpath, "w") as f:
        p = spawn([PY, DEMO], stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 60 * SLOW

    def output():
        with open(logpath) as f:
            return f.read()
    while "(node3: pid" not in output():
        if p.poll() is not None or time.time() > deadline:
            fail("the demo did not start node3:\n%s" % output())
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=60 * SLOW)
    out = output()
    check(rc == 130 and "demo interrupted" in out,
          "interrupted demo: exit %d:\n%s" % (rc, out))
    check_cleaned(out, "interrupted run", 3)
    log("interrupted run: stopped and removed everything")


if __name__ == "__main__":
    from rltest import main
    main(test)
