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


# ASan makes everything slower: waits scale by SLOW.
SLOW = 3 if SAN else 1


def wait_for(what, fn, timeout=20, step=0.1):
    """Polls fn() every step seconds until it returns something true, and
    returns that; fails the test after timeout (x SLOW) seconds."""
    deadline = time.time() + timeout * SLOW
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            fail("timed out after %ds waiting for %s" % (timeout * SLOW, what))
        time.sleep(step)


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


_given_ports = set()


def free_port():
    """A free TCP port on 127.0.0.1 below 32768 (outside Linux's ephemeral
    range, so no outgoing connection can take it meanwhile), from the range
    RL_PORTS ("LO-HI") that tests/run.py gives each test running beside
    another, so two tests never pick the same port. Never the same port
    twice in one process: a port handed out is free only until its user
    binds it, so a second draw could pick it again meanwhile (the likely
    cause of a raftd whose Raft port was "in use" at start, seen once)."""
    lo, hi = 20000, 32000
    m = re.match(r"^(\d+)-(\d+)$", os.environ.get("RL_PORTS", ""))
    if m and 1024 <= int(m.group(1)) < int(m.group(2)) < 32768:
        lo, hi = int(m.group(1)), int(m.group(2))
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in _given_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _given_ports.add(port)
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


def san_host_process():
    """For a test whose own process loads the extension (hosts a node):
    under ASan (RL_SAN=1) re-executes it with libasan preloaded, which the
    ASan build needs in front of it, and LeakSanitizer off for this
    process only (the Python interpreter keeps memory at exit by design);
    once re-executed, its children get the suite's ASan settings back and
    libasan only where they load the ASan build (san_env). Call first."""
    if not SAN:
        return
    if os.environ.get("RL_SELF_ASAN") is None:
        env = san_env(dict(os.environ))
        env["RL_SELF_ASAN"] = os.environ.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=86"
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    os.environ["ASAN_OPTIONS"] = os.environ.pop("RL_SELF_ASAN")
    os.environ.pop("LD_PRELOAD", None)


def sigstop(pid, timeout=5):
    """SIGSTOP pid and wait until every thread of it is stopped: kill()
    returns before they are (measured: up to 7 ms on a loaded machine),
    and a test that acts at once may find the process still answering."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = []
        try:
            for t in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            return  # gone: nothing left to answer
        if all(st in ("T", "t", "Z", "X") for st in states):
            return
        time.sleep(0.0005)
    fail("process %d did not stop within %ds of SIGSTOP" % (pid, timeout))


def spawn(argv, env=None, **kw):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, env=e, start_new_session=True, **kw)
    _procs.append(p)
    return p


class RunLog:
    """The output of a process started again and again, appended to one
    file, self.logpath: new_run() opens it for the next run's output and
    marks where that begins; log() is the current run's output (all_runs:
    every run's). Mixed into the raftd process classes of tests/poc and
    tests/lib/rlnetns.py."""

    mark = 0

    def new_run(self):
        self.mark = (os.path.getsize(self.logpath)
                     if os.path.exists(self.logpath) else 0)
        return open(self.logpath, "a")

    def log(self, all_runs=False):
        with open(self.logpath, errors="replace") as f:
            if not all_runs:
                f.seek(self.mark)
            return f.read()


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
    marker, so a transaction can stay open across calls. It survives its
    own timeouts (partial(): the output of a call during which the shell
    may die) and knows the exit status the shell owes (expected_rc())."""

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

    def _run(self, text, timeout):
        """Sends text; returns (output, how): how is "ok", "exited" or
        "timeout". A late answer to an earlier call that timed out is
        skipped, not taken for this one's."""
        self.n += 1
        mark = "__rl_mark_%d__" % self.n
        try:
            self.p.stdin.write(text.rstrip() + "\n.print " + mark + "\n")
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            # Died: what it printed before is still queued.
            return self.rest(), "exited"
        out = []
        deadline = time.time() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                return "".join(out), "timeout"
            if line is None:
                self.q.put(None)  # every later call sees the end too
                return "".join(out), "exited"
            s = line.rstrip("\n")
            if s == mark:
                return "".join(out), "ok"
            if s.startswith("__rl_mark_") and s.endswith("__"):
                out = []  # the end of an earlier call that timed out
                continue
            out.append(line)

    def sql(self, text, timeout=120):
        """Everything text printed; fails the test if the shell did not
        answer within timeout or exited."""
        out, how = self._run(text, timeout)
        if is_error(out):
            self.had_error = True
        if how == "timeout":
            fail("shell did not answer within %ds: %r; output so far:\n%s" %
                 (timeout, text[:300], out))
        if how == "exited":
            fail("shell exited (%s) while running %r; output:\n%s" %
                 (self.p.wait(), text[:300], out))
        return out

    def partial(self, text, timeout=120):
        """(output, finished): finished is False if the shell exited or
        did not answer in time before the end of text."""
        out, how = self._run(text, timeout)
        if is_error(out):
            self.had_error = True
        return out, how == "ok"

    # The stock shell's exit status at .exit or end of input is 1 if any
    # statement of its input failed, 0 otherwise: expected_rc() tracks it.
    had_error = False

    def expected_rc(self):
        return 1 if self.had_error else 0

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

    def rest(self, timeout=10):
        """What the shell printed after the last answer, up to its end (or
        until nothing more came for timeout seconds)."""
        out = []
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                break
            if line is None:
                self.q.put(None)  # every later call sees the end too
                break
            out.append(line)
        return "".join(out)

    def finish(self, name, want=None):
        """Ends the shell (close()) and fails on a sanitizer report (ASan
        runs exit 86) or a crash; exit 1 is the stock shell's answer to an
        earlier SQL error. With want, the exit status must be exactly that
        (0: no statement failed; 1: one did). A failure shows what the
        shell printed last, so a leak report is in the test's log."""
        rc = self.close()
        text = self.rest()
        if lsan_tracer_crashed(rc, text):
            log("shell %s: LeakSanitizer could not run at exit (tracer "
                "crash); no leak check for it" % name)
            return
        ok = rc in (0, 1) if want is None else rc == want
        check("Sanitizer" not in text and "runtime error" not in text and ok,
              "shell %s exit %s%s:\n%s" % (
                  name, rc, "" if want is None else " (want %d)" % want,
                  text[-3000:]))


def lsan_tracer_crashed(rc, text):
    """Whether exit status 86 with output text (the end of what an ASan
    build printed) means LeakSanitizer's own tracer crashed while stopping
    the exiting process's threads (seen with grpc's threads at exit): no
    check ran and nothing was reported, which a test says rather than fail
    or hide."""
    return (rc == 86 and "LeakSanitizer has encountered a fatal error" in text
            and "ERROR:" not in text and "runtime error" not in text)


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


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of data, continuing crc: the checksum of
    transaction records and database images, to check what the code wrote
    and to craft input its checks accept (so that it is the content that
    gets refused)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()
