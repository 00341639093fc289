"""tests/lib/rltest.py -- shared helpers for raftlite's end-to-end tests.

Real processes only: the stock /usr/bin/sqlite3 shell (with or without the
extension), raftd, python gRPC clients. Everything a test starts is killed
and every scratch directory removed when the test exits, pass or fail.
Ports are chosen free, below 32768, on 127.0.0.1.
"""
import atexit
import os
import queue
import re
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ.get("RL_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RL_BUILD") or os.path.join(ROOT, "build")
LONG = os.environ.get("RL_LONG") == "1"
SAN = os.environ.get("RL_SAN") == "1"
EXT = os.path.join(BUILD, "raftlite")
SQLITE3 = "/usr/bin/sqlite3"

_procs = []
_dirs = []


class TestFailure(Exception):
    pass


def fail(msg):
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(got, want, what):
    if got != want:
        fail("%s: got %r, want %r" % (what, got, want))


def log(*a):
    print(*a, flush=True)


def _cleanup():
    for p in _procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    for d in _dirs:
        if os.environ.get("RL_KEEP") == "1":
            print("kept", d)  # for debugging a failure by hand
            continue
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def scratch(prefix="rltest-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _dirs.append(d)
    return d


def free_port():
    """A free TCP port on 127.0.0.1 below 32768 (outside Linux's ephemeral
    range, so no outgoing connection can take it meanwhile), from the range
    RL_PORTS ("LO-HI") that tests/run.py gives each test running beside
    another, so two tests never pick the same port."""
    lo, hi = 20000, 32000
    m = re.match(r"^(\d+)-(\d+)$", os.environ.get("RL_PORTS", ""))
    if m and 1024 <= int(m.group(1)) < int(m.group(2)) < 32768:
        lo, hi = int(m.group(1)), int(m.group(2))
    for _ in range(1000):
        port = random.randint(lo, hi)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    fail("no free port")


def san_env(env):
    """Environment for a stock binary that loads the ASan build."""
    if SAN:
        lib = subprocess.check_output(
            ["gcc", "-print-file-name=libasan.so"], text=True).strip()
        env["LD_PRELOAD"] = lib
    return env


def spawn(argv, env=None, **kw):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, env=e, start_new_session=True, **kw)
    _procs.append(p)
    return p


def run_sql(db, sql, ext=True, env=None, check_rc=True, timeout=120):
    """Runs sql through a fresh stock shell; returns (rc, stdout+stderr)."""
    # With the extension the database is opened after .load, so that it
    # uses the raft VFS (the documented way: .load, then .open).
    script = (".load %s\n.open '%s'\n" % (EXT, db) if ext else "") + sql
    e = dict(os.environ)
    if env:
        e.update(env)
    if ext:
        san_env(e)
    argv = [SQLITE3, "-batch"] + ([] if ext else [db])
    p = subprocess.run(argv, input=script, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=e, timeout=timeout)
    if check_rc and p.returncode != 0:
        fail("sqlite3 %s exited %d:\n%s\n-- script:\n%s" %
             (db, p.returncode, p.stdout, sql[:2000]))
    return p.returncode, p.stdout


class Shell:
    """A long-lived stock sqlite3 shell driven through pipes. sql() sends
    statements and returns everything printed (stdout and stderr) up to a
    marker, so a transaction can stay open across calls."""

    def __init__(self, db, ext=True, env=None, args=(), ext_path=None):
        e = {}
        if env:
            e.update(env)
        if ext:
            san_env(e)
        self.p = spawn([SQLITE3, "-batch"] + list(args) + ([] if ext else [db]),
                       env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.q = queue.Queue()
        self.n = 0
        threading.Thread(target=self._reader, daemon=True).start()
        if ext:
            # ext_path: another build of the extension (the fault build).
            self.sql_ok(".load %s" % (ext_path or EXT))
            if db:
                # What the open printed (a node restarting there logs to
                # the shell's stderr).
                self.open_output = self.sql_ok(".open '%s'" % db)

    def _reader(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def sql(self, text, timeout=120):
        self.n += 1
        mark = "__rl_mark_%d__" % self.n
        try:
            self.p.stdin.write(text.rstrip() + "\n.print " + mark + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            fail("shell died (exit %s)" % self.p.poll())
        out = []
        deadline = time.time() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                fail("shell did not answer within %ds: %r" % (timeout,
                                                              text[:300]))
            if line is None:
                fail("shell exited (%s) while running %r; output:\n%s" %
                     (self.p.wait(), text[:300], "".join(out)))
            if line.rstrip("\n") == mark:
                return "".join(out)
            out.append(line)

    def sql_ok(self, text, timeout=120):
        out = self.sql(text, timeout)
        if is_error(out):
            fail("unexpected error from %r:\n%s" % (text[:300], out))
        return out

    def sql_err(self, text, timeout=120):
        out = self.sql(text, timeout)
        if not is_error(out):
            fail("expected an error from %r, got:\n%s" % (text[:300], out))
        return out

    def close(self, timeout=30):
        """Ends the shell with .exit and returns its exit status."""
        try:
            self.p.stdin.write(".exit\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        return self.p.wait(timeout=timeout)


def is_error(out):
    for line in out.splitlines():
        if (line.startswith("Error:") or line.startswith("Parse error")
                or line.startswith("Runtime error")):
            return True
    return False


def main(fn):
    """Runs a test function; exit 0 on success, 1 with the reason on
    failure. Cleanup runs either way."""
    t0 = time.time()
    try:
        fn()
    except TestFailure as e:
        print("FAILED: %s" % e, flush=True)
        sys.exit(1)
    print("ok (%.1fs)" % (time.time() - t0), flush=True)
    sys.exit(0)


# ------------------------------------------------------------ mirror pairs

import struct as _struct

SHM_HDR = _struct.Struct("<IIIBBHII2I8s2I")  # one 48-byte wal-index header


def shm_header(db):
    """mxFrame, nPage, salts, iChange, nBackfill of db's wal-index (header
    copy 1 and the checkpoint info), read as a
    stock reader would (no lock: a test reads between applies)."""
    with open(db + "-shm", "rb") as f:
        b = f.read(136)
    (ver, _, ichange, isinit, bigend, szpage, mxframe, npage, ck1, ck2,
     salt, c1, c2) = SHM_HDR.unpack(b[:48])
    nbackfill = _struct.unpack_from("<I", b, 96)[0]
    return {"mxFrame": mxframe, "nPage": npage, "salt": salt,
            "iChange": ichange, "isInit": isinit, "nBackfill": nbackfill}


def make_db(path, page_size=4096):
    """A fresh database in WAL mode with page 1 in the main file, made by
    the stock shell without the extension."""
    run_sql(path, "PRAGMA page_size=%d;\nPRAGMA journal_mode=WAL;\n"
            "PRAGMA wal_checkpoint(TRUNCATE);\n" % page_size, ext=False)


def make_pair(d, page_size=4096):
    """Replicated databases A and B, byte-identical, in directory d."""
    a, b = os.path.join(d, "A.db"), os.path.join(d, "B.db")
    make_db(a, page_size)
    shutil.copyfile(a, b)
    os.mkdir(a + "-raft")
    os.mkdir(b + "-raft")
    return a, b


def mirror_records(log, start=0):
    """Parses the mirror log from byte offset start: list of (offset,
    n_pages, page_size, db_pages) and the end offset."""
    out = []
    with open(log, "rb") as f:
        data = f.read()
    pos = start
    while pos + 16 <= len(data):
        magic, _, ln = _struct.unpack_from("<IIQ", data, pos)
        check(magic == 0x524d4c52, "mirror log damaged at %d" % pos)
        rec = data[pos + 16:pos + 16 + ln]
        check(rec[:4] == b"RLTX", "record without RLTX magic at %d" % pos)
        _, _, ps, dbp, npages = _struct.unpack_from("<4sIIII", rec, 0)
        out.append((pos, npages, ps, dbp))
        pos += 16 + ln
    return out, pos


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()
