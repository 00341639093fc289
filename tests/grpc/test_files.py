# budget: 90
"""Data files are private and data paths are what they seem.

raftd (umask 077 at start) makes DATA/ID and everything below it 0700
directories and 0600 files: the database, its WAL and shm, the -raft
directory, the identity, the Raft log. A symbolic link planted at DATA/ID
(or at the database's path) is refused naming it, before anything is
written through it. Node ids that cannot name a directory or a line of
the identity file are refused, in raftd's -id and in raft_bootstrap. A
shell-hosted node's -raft directory is 0700 and its files 0600 too (the
database file itself keeps the user's umask: it is the user's file).
"""
import os
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rlgrpc import *  # noqa: F401,F403
from rltest import run_sql  # noqa: E402


def modes_below(top):
    out = {}
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(d, name)
            out[os.path.relpath(p, top)] = os.lstat(p).st_mode
    return out


def test():
    # raftd: every directory 0700, every file 0600.
    n = Raftd(["-bootstrap", "-raft", "127.0.0.1:%d" % free_port()],
              node="n1")
    deadline = time.time() + 20
    while not os.path.exists(n.db + "-wal") and time.time() < deadline:
        time.sleep(0.05)
    n.p.send_signal(signal.SIGINT)
    check_eq(n.p.wait(timeout=60), 0, "raftd's exit status")
    top = os.path.join(n.data, "n1")
    check_eq(stat.S_IMODE(os.stat(top).st_mode), 0o700, "DATA/ID's mode")
    modes = modes_below(top)
    for want in ("sqlite.db", "sqlite.db-wal", "sqlite.db-raft",
                 "sqlite.db-raft/identity", "sqlite.db-raft/applied",
                 "sqlite.db-raft/raft"):
        check(want in modes, "%s missing under %s: %s" % (want, top,
                                                          sorted(modes)))
    bad = {p: oct(stat.S_IMODE(m)) for p, m in modes.items()
           if stat.S_IMODE(m) != (0o700 if stat.S_ISDIR(m) else 0o600)}
    check(not bad, "not private under DATA/ID: %s" % bad)
    log("raftd: %d paths under DATA/ID, directories 0700, files 0600" %
        len(modes))

    # A symlink planted at DATA/ID is refused, nothing written through it.
    d = scratch("files-")
    data = os.path.join(d, "data")
    os.makedirs(data)
    victim = os.path.join(d, "victim")
    os.makedirs(victim)
    os.symlink(victim, os.path.join(data, "evil"))
    r = subprocess.run([RAFTD, "-id", "evil", "-grpc",
                        "127.0.0.1:%d" % free_port(), "-data", data],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "is a symbolic link" in r.stderr and
          os.path.join(data, "evil") in r.stderr,
          "a symlink at DATA/ID: rc %d, %r" % (r.returncode, r.stderr))
    check_eq(os.listdir(victim), [], "files written through the symlink")
    # ... and at the database's path.
    os.makedirs(os.path.join(data, "n2"))
    os.symlink(os.path.join(victim, "x.db"),
               os.path.join(data, "n2", "sqlite.db"))
    r = subprocess.run([RAFTD, "-id", "n2", "-grpc",
                        "127.0.0.1:%d" % free_port(), "-data", data],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 1 and "is a symbolic link" in r.stderr,
          "a symlink at the database: rc %d, %r" % (r.returncode, r.stderr))
    check_eq(os.listdir(victim), [], "files written through the symlink")

    # Node ids.
    for bad_id, needle in (("a/b", "path separator"), ("a\tb", "0x09"),
                           ("..", "cannot name a node"),
                           ("x\x01", "0x01")):
        r = subprocess.run([RAFTD, "-id", bad_id, "-data", data],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2 and needle in r.stderr,
              "-id %r: rc %d, %r" % (bad_id, r.returncode, r.stderr))
    db = os.path.join(d, "s.db")
    rc, out = run_sql(db, "SELECT raft_bootstrap('a/b', '127.0.0.1:1', "
                      "'127.0.0.1:2');", check_rc=False)
    check(rc != 0 and "path separator" in out,
          "raft_bootstrap with id 'a/b': %r" % out)

    # A shell-hosted node: its -raft directory and files are private.
    rp, gp = free_port(), free_port()
    rc, out = run_sql(db, "SELECT raft_bootstrap('s1', '127.0.0.1:%d', "
                      "'127.0.0.1:%d');" % (rp, gp))
    check_eq(out.strip(), "s1", "raft_bootstrap in a shell")
    rdir = db + "-raft"
    check_eq(stat.S_IMODE(os.stat(rdir).st_mode), 0o700, "-raft's mode")
    modes = modes_below(rdir)
    bad = {p: oct(stat.S_IMODE(m)) for p, m in modes.items()
           if stat.S_IMODE(m) != (0o700 if stat.S_ISDIR(m) else 0o600)}
    check(not bad, "not private under %s: %s" % (rdir, bad))
    log("shell-hosted: %d paths under -raft, private" % len(modes))


main(test)
