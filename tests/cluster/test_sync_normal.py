#!/usr/bin/python3
# budget: 180
"""tests/cluster/test_sync_normal.py -- a replicated database runs at
synchronous=NORMAL unless the connection asks otherwise (issue 18,
README "Durability").

A one-node cluster hosted in a stock shell; strace (attached to the shell,
every thread) counts fsync/fdatasync per file while the shell commits:
  * by default `PRAGMA synchronous` says 1 (NORMAL) and 30 autocommit
    INSERTs sync the WAL not once; a checkpoint afterwards still syncs
    (the trace sees the process's syncs: the zero is not blindness);
  * after `PRAGMA synchronous=FULL` it says 2 and every commit syncs the
    WAL (at least 30 syncs for 30 INSERTs);
  * explicit NORMAL and OFF read back as set.
The rows are all there at the end and the database is intact.

Then the durability contract at NORMAL (README "Durability"): a 3-node
cluster takes 300 acknowledged autocommit INSERTs through the leader's
shell (default NORMAL), every node is killed (-9) at once, all restart:
every acknowledged row is on every node, integrity_check ok, files
converge. test_basic, test_crash_matrix and test_os_crash also run at this
default.
"""
import os
import re
import signal
import subprocess
import time

import rlcluster
import rltest
from rltest import check, check_eq, log

STRACE = "/usr/bin/strace"
N = 30


def traced(node, sql):
    """Runs sql in node's shell under strace; returns {path: syncs}."""
    out = os.path.join(node.c.dir, "strace-%d.out" % time.time_ns())
    p = rltest.spawn([STRACE, "-f", "-y", "-qq", "-p", str(node.pid),
                      "-e", "trace=fsync,fdatasync", "-o", out],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # strace says nothing once attached with -qq: wait until the shell's
    # threads show it as their tracer.
    deadline = time.time() + 20
    tasks = os.listdir("/proc/%d/task" % node.pid)
    while True:
        traced_by = 0
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/status" % (node.pid, t)) as f:
                    traced_by += "TracerPid:\t%d\n" % p.pid in f.read()
            except OSError:
                pass
        if traced_by == len(tasks):
            break
        check(time.time() < deadline and p.poll() is None,
              "strace did not attach (exit %s): %s" %
              (p.poll(), p.stderr.read() if p.poll() is not None else ""))
        time.sleep(0.05)
    node.sql(sql)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=20)
    counts = {}
    with open(out) as f:
        for line in f:
            m = re.search(r"f(?:data)?sync\(\d+<([^>]*)>\)", line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def inserts(tag):
    return "".join("INSERT INTO t(v) VALUES('%s-%d');\n" % (tag, i)
                   for i in range(N))


def test():
    check(os.path.exists(STRACE), "%s is missing" % STRACE)
    c = rlcluster.Cluster(1)
    n = c.nodes[0]
    wal = os.path.realpath(n.db) + "-wal"
    db = os.path.realpath(n.db)
    n.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    check_eq(n.val("PRAGMA synchronous;"), "1", "default synchronous")

    got = traced(n, inserts("normal") + "PRAGMA wal_checkpoint;")
    log("default (NORMAL): syncs %s" % got)
    check_eq(got.get(wal, 0), 1, "WAL syncs for %d commits at NORMAL, then "
             "one checkpoint (the checkpoint's only)" % N)
    check(got.get(db, 0) >= 1, "the checkpoint synced the database file "
          "(the trace sees syncs): %s" % got)

    n.sql("PRAGMA synchronous=FULL;")
    check_eq(n.val("PRAGMA synchronous;"), "2", "synchronous after FULL")
    got = traced(n, inserts("full"))
    log("explicit FULL: syncs %s" % got)
    check(got.get(wal, 0) >= N, "FULL syncs the WAL at every commit: %d "
          "syncs for %d commits" % (got.get(wal, 0), N))

    for val, want in (("NORMAL", "1"), ("OFF", "0"), ("2", "2")):
        n.sql("PRAGMA synchronous=%s;" % val)
        check_eq(n.val("PRAGMA synchronous;"), want, "synchronous=%s" % val)

    check_eq(n.val("SELECT count(*) FROM t;"), str(2 * N), "rows")
    check_eq(n.val("PRAGMA integrity_check;"), "ok", "integrity")
    c.close()

    log("--- kill -9 of every node at once, at NORMAL")
    c = rlcluster.Cluster(3)
    lead = c.leader()
    lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
    check_eq(lead.val("PRAGMA synchronous;"), "1", "the leader's synchronous")
    out = lead.sql("".join("INSERT INTO t(v) VALUES('acked-%d');\n" % i
                           for i in range(300)) + "SELECT count(*) FROM t;")
    check(not rltest.is_error(out) and out.strip() == "300",
          "300 acknowledged inserts on %s: %r" % (lead.name, out[-300:]))
    for node in c.nodes:
        os.kill(node.pid, signal.SIGKILL)
    for node in c.nodes:
        node.sh.p.wait(timeout=30)
        node.state = "killed"
    log("all three killed (-9) right after the last acknowledgement")
    for node in c.nodes:
        node.restart()
    c.leader()
    c.wait_all("SELECT count(*) FROM t;", "300", timeout=60)
    c.integrity()
    c.wait_converged()
    c.close()


rltest.main(test)
