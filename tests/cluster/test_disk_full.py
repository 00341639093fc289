# budget: 240
# asan: yes
"""Issue #6, disk full: a node whose data directory's filesystem fills
while it writes its WAL, its Raft log or an image fails the write with
SQLITE_FULL (or says the disk is full), keeps serving reads, loses
nothing, and recovers by itself once space is freed.

The test runs itself in a private mount namespace (`unshare --mount` as
root, `unshare --user --map-root-user --mount` otherwise) and mounts a
32 MiB tmpfs there for one node's files, filled with a filler file to
leave a few MiB: the mount goes away with the test's processes whatever
happens. Without either way to mount, the test fails saying so (it is
never skipped).

Case "leader": node1 (the leader) on the small filesystem. 200 KB
writes on it until one fails with "database or disk is full" (the
leader refuses a write its Raft log might not hold, naming the free and
the needed space, or its WAL write fails); then one-row writes until one
fails. Reads on node1 answer all along. Every acknowledged write is on
every node and no failed one on any (counts compared after the cluster
settles). Space freed: writes succeed again, all converge.

Case "follower": node2 on the small filesystem; the leader writes 30 x
200 KB (a majority without node2 commits them), node2's Raft log and WAL
fill: it says its disk is full, answers reads of what it applied, never
more rows than the leader. After space is freed it must catch up by
itself: its applier retries the WAL, and its Raft log, which raft_uv
0.15 refuses to write again after a failed segment write, is reopened
in-process (said: "Raft log reopened"); then converged byte-identical.

Case "image": snapshots every 64 entries; node2 (small filesystem) exits,
the leader's log is compacted past it, the filesystem is filled so that
the image cannot be stored or installed; node2 restarts, its image fetch
or install fails naming the full disk; space freed: it installs an image
by itself and converges.
"""
import subprocess

from rltest import *
from rlcluster import *

NS_ENV = "RL_DISKFULL_NS"
SMALL = 32  # MiB


def reexec_in_namespace():
    """Runs this test again inside a private mount namespace; returns its
    exit status."""
    here = os.path.abspath(__file__)
    tries = [["unshare", "--mount", "--propagation", "private"]] \
        if os.geteuid() == 0 else []
    tries.append(["unshare", "--user", "--map-root-user", "--mount",
                  "--propagation", "private"])
    env = dict(os.environ)
    env[NS_ENV] = "1"
    why = []
    for pre in tries:
        probe = subprocess.run(pre + ["true"], capture_output=True, text=True)
        if probe.returncode != 0:
            why.append("%s: %s" % (" ".join(pre), probe.stderr.strip()))
            continue
        return subprocess.run(pre + [sys.executable, here], env=env).returncode
    print("FAILED: cannot make a private mount namespace to mount a small "
          "filesystem (%s): run make test as root, or enable unprivileged "
          "user namespaces (sysctl kernel.unprivileged_userns_clone=1)" %
          "; ".join(why), flush=True)
    return 1


def small_fs(path):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % SMALL,
                        "tmpfs", path], capture_output=True, text=True)
    check(p.returncode == 0, "mount tmpfs on %s: %s" % (path, p.stderr))
    return path


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave):
    """Leaves about `leave` bytes free on path's filesystem."""
    with open(os.path.join(path, "filler"), "ab") as f:
        f.write(b"\0" * max(0, free_bytes(path) - leave))
    log("%s: %d KiB left free" % (path, free_bytes(path) // 1024))


def unfill(path):
    os.unlink(os.path.join(path, "filler"))
    log("%s: space freed (%d KiB free)" % (path, free_bytes(path) // 1024))


class Said:
    """Everything a node printed (its log lines come with the answers)."""

    def __init__(self):
        self.text = ""

    def last(self, node, sql, timeout=60):
        ok_, out, err = node.try_sql(sql, timeout)
        self.text += out
        check(ok_, "%s: %r failed while its disk is full: %s" %
              (node.name, sql, err))
        lines = [l for l in out.splitlines() if not l.startswith("raftlite[")]
        check(lines, "%s: no answer to %r: %r" % (node.name, sql, out))
        return lines[-1]


def cluster_with(small_name, uri=None):
    """3 nodes, the node named small_name with its files on a new small
    filesystem; node1 bootstraps (and leads)."""
    c = Cluster(0, uri=uri)
    mnt = small_fs(os.path.join(c.dir, "small"))
    nodes = []
    for i in range(3):
        base = c.dir
        if "node%d" % (i + 1) == small_name:
            c.dir = mnt
        nodes.append(c.new_node())
        c.dir = base
    nodes[0].bootstrap()
    for n in nodes[1:]:
        n.join(nodes[0])
    check(c.leader() is nodes[0], "node1 leads")
    nodes[0].sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);"
                 "CREATE TABLE s(id INTEGER PRIMARY KEY);")
    c.wait_all("SELECT count(*) FROM t;", "0")
    return c, nodes, mnt


def settle_counts(c, nodes, want_t, want_s, timeout=60):
    c.wait_all("SELECT count(*) FROM t;", str(want_t), nodes, timeout)
    c.wait_all("SELECT count(*) FROM s;", str(want_s), nodes, timeout)


def case_leader():
    c, (n1, n2, n3), mnt = cluster_with("node1")
    said = Said()
    fill(mnt, 3 << 20)
    ok_t = 0
    for i in range(200):
        good, out, err = n1.try_sql(
            "INSERT INTO t(b) VALUES (randomblob(200000));")
        if not good:
            check("database or disk is full" in err, "a big write on a "
                  "full disk failed otherwise: %s" % err)
            log("big write %d failed: %s" % (i, err.splitlines()[0]))
            break
        ok_t += 1
        check_eq(said.last(n1, "SELECT count(*) FROM t;"), str(ok_t),
                 "node1's rows after write %d" % i)
    else:
        fail("200 writes of 200 KB fit on a %d MiB filesystem" % SMALL)
    check(ok_t > 0, "no write fit before the disk filled")
    ok_s = 0
    for i in range(3000):
        good, out, err = n1.try_sql("INSERT INTO s VALUES (%d);" % i)
        if not good:
            check("database or disk is full" in err, "a one-row write on "
                  "a full disk failed otherwise: %s" % err)
            log("one-row write %d failed: %s" % (i, err))
            break
        ok_s += 1
    else:
        fail("3000 one-row writes fit on a full filesystem")
    # Reads answer while the disk is full; only acknowledged writes are
    # anywhere.
    check_eq(said.last(n1, "SELECT count(*) FROM s;"), str(ok_s),
             "node1's one-row writes")
    settle_counts(c, [n1, n2, n3], ok_t, ok_s)
    log("disk full on the leader: %d + %d writes acknowledged, the failed "
        "ones nowhere" % (ok_t, ok_s))
    unfill(mnt)
    deadline = time.time() + 20 * SLOW
    while True:
        good, out, err = n1.try_sql("INSERT INTO s VALUES (-1);")
        if good:
            break
        check(time.time() < deadline, "node1 does not write again after "
              "space was freed: %s" % err)
        time.sleep(0.5)
    n1.sql("INSERT INTO t(b) VALUES (randomblob(200000));")
    settle_counts(c, [n1, n2, n3], ok_t + 1, ok_s + 1)
    check_eq(n1.val("PRAGMA integrity_check;"), "ok", "integrity")
    c.wait_converged()
    c.close()


def case_follower():
    c, (n1, n2, n3), mnt = cluster_with("node2")
    said = Said()
    fill(mnt, 3 << 20)
    for i in range(30):
        n1.sql("INSERT INTO t(b) VALUES (randomblob(200000));")
    c.wait_all("SELECT count(*) FROM t;", "30", [n1, n3])
    deadline = time.time() + 30 * SLOW
    while "disk is full" not in said.text:
        got = int(said.last(n2, "SELECT count(*) FROM t;"))
        check(got <= 30, "node2 has %d rows, more than written" % got)
        check(time.time() < deadline, "node2 never said its disk is full: "
              "%r" % said.text[-2000:])
        time.sleep(0.3)
    got = int(said.last(n2, "SELECT count(*) FROM t;"))
    check(got < 30, "node2 applied every write on a full disk")
    log("node2, disk full, answers reads: %d of 30 rows; it said: %s" %
        (got, [l for l in said.text.splitlines() if "full" in l][:1]))
    unfill(mnt)
    # Both its WAL (the applier retries) and its Raft log (raft_uv 0.15
    # refuses every append after a failed write: the node reopens it) must
    # come back by themselves.
    t0 = time.time()
    deadline = t0 + 60 * SLOW
    while said.last(n2, "SELECT count(*) FROM t;") != "30":
        check(time.time() < deadline, "node2 does not catch up by itself "
              "after space was freed: %s; it said: %s" % (
                  n2.status(), said.text[-3000:]))
        time.sleep(0.3)
    log("node2 caught up %.1f s after space was freed" % (time.time() - t0))
    n1.sql("INSERT INTO t(b) VALUES (randomblob(1000));")
    c.wait_all("SELECT count(*) FROM t;", "31")
    said.last(n2, "SELECT 1;")
    check("disk space returned" in said.text, "node2 did not say it "
          "recovered: %r" % said.text[-2000:])
    check("Raft log reopened" in said.text, "node2's Raft log write did not "
          "fail, or its reopening was not said: %r" % said.text[-3000:])
    log("node2 said: %s" % [l for l in said.text.splitlines()
                            if "Raft log" in l or "space returned" in l])
    c.wait_converged()
    c.close()


def case_image():
    c, (n1, n2, n3), mnt = cluster_with(
        "node2", uri="raft_snapshot_threshold=64&raft_snapshot_trailing=16")
    for i in range(20):
        n1.sql("INSERT INTO t(b) VALUES (randomblob(100000));")
    c.wait_all("SELECT count(*) FROM t;", "20")
    check_eq(n2.exit(".exit"), 0, "node2's .exit status")
    for i in range(200):
        n1.sql("INSERT INTO t(b) VALUES (randomblob(%d));" % (100 + i))
    c.wait_all("SELECT count(*) FROM t;", "220", [n1, n3])
    st = n1.status()
    check(st["snapshot_index"] > 100, "leader compacted: %s" % st)
    size = int(n1.val("PRAGMA page_count;")) * int(n1.val(
        "PRAGMA page_size;"))
    fill(mnt, 256 << 10)
    n2.start()
    said = Said()
    deadline = time.time() + 30 * SLOW
    while "database needs an image" not in said.text:
        check(time.time() < deadline, "node2 never said it cannot store "
              "the image: %r" % said.text[-2000:])
        ok_, out, err = n2.try_sql("SELECT 1;", timeout=30)
        said.text += out + err
        time.sleep(0.5)
    check("No space left on device" in said.text or "disk is full" in
          said.text, "node2's image fetch failure does not name the full "
          "disk: %r" % said.text[-2000:])
    log("node2 could not store a %d KiB image: %s" % (
        size // 1024, [l for l in said.text.splitlines()
                       if "needs an image" in l][:1]))
    unfill(mnt)
    c.wait_all("SELECT count(*) FROM t;", "220", timeout=60)
    c.wait_converged()
    c.close()

PY_CLIENT = r"""
import sqlite3, sys
ext, db, raft, grpc = sys.argv[1:5]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(ext)
c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute("SELECT raft_bootstrap('py1', ?, ?)", (raft, grpc))
c.execute("CREATE TABLE t(b BLOB)")
print("ready", flush=True)
sys.stdin.readline()   # the test fills the disk meanwhile
for i in range(400):
    try:
        c.execute("INSERT INTO t VALUES (randomblob(200000))")
    except sqlite3.Error as e:
        print("refused", i, e.sqlite_errorname, "|",
              c.execute("SELECT raft_last_error()").fetchone()[0], flush=True)
        break
else:
    print("never refused", flush=True)
"""


def case_python():
    """Python's sqlite3 module, hosting a one-node cluster whose files
    are on the small filesystem, sees SQLITE_FULL by name."""
    d = scratch("diskfull-py-")
    mnt = small_fs(os.path.join(d, "small"))
    env = san_env({"ASAN_OPTIONS": "detect_leaks=0"})
    p = spawn(["/usr/bin/python3", "-c", PY_CLIENT, EXT,
               os.path.join(mnt, "py1.db"), "127.0.0.1:%d" % free_port(),
               "127.0.0.1:%d" % free_port()], env=env,
              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
              stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    check(line.startswith("ready"), "the Python host did not start: %r%s" %
          (line, p.stdout.read() if not line else ""))
    fill(mnt, 3 << 20)
    p.stdin.write("go\n")
    p.stdin.flush()
    out = [l for l in p.stdout.read().splitlines()
           if not l.startswith("raftlite[")]
    p.wait(timeout=60)
    got = [l for l in out if l.startswith("refused")]
    check(got, "the Python client was never refused: %r" % out)
    check(" SQLITE_FULL |" in got[0] and "disk is full" in got[0],
          "Python sees SQLITE_FULL and the reason: %r" % got[0])
    log("python: %s" % got[0])
    check_eq(p.returncode, 0, "the Python host's exit status")
    subprocess.run(["umount", mnt])


def test():
    only = os.environ.get("RL_DISKFULL_ONLY")
    for name, fn in (("python", case_python), ("leader", case_leader),
                     ("follower", case_follower), ("image", case_image)):
        if only and name != only:
            continue
        t0 = time.time()
        fn()
        log("case %s ok (%.1f s)" % (name, time.time() - t0))


if os.environ.get(NS_ENV) != "1":
    sys.exit(reexec_in_namespace())
main(test)
