#!/usr/bin/python3
"""tests/conformance/slt_grpc.py -- the sqllogictest runner (slt.py) over
gRPC: every record goes to a raftd's ExecuteRead (queries, and statements
that only read) or ExecuteWrite instead of a shell, so the corpus checks
that the remote-SQL allow-list (raftd/api/sqlguard.c) refuses no ordinary SQL
and that results travel exactly (typed values).

Usage: slt_grpc.py [--raftd PATH] [--data DIR] [--only REL...] CORPUS
Each test file gets a fresh standalone raftd (its own database); the
checking (parsing, rendering, hashing, known failures) is slt.py's. The
one setting slt.py sends, PRAGMA synchronous, is the operator's on a
server and is answered as done without running it.

Differences to the shell runner that come from the API, not the SQL: a
query that fails while stepping returns no rows over gRPC (a response is
never partial), where the shell printed the rows before the error; and
TEMP objects are refused by design (BY_DESIGN lists where: those records
must fail, the rest of their file must pass).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import slt  # noqa: E402
from rltest import free_port  # noqa: E402

import grpc  # noqa: E402


# (file, line) of records the allow-list refuses on purpose: TEMP objects
# would outlive the call on the server's shared connection. The DROPs of
# those views then fail too.
_TEMP = "TEMP objects are refused on a shared connection"
BY_DESIGN = {
    ("evidence/slt_lang_createview.test", 48): _TEMP,
    ("evidence/slt_lang_createview.test", 52): _TEMP,
    ("evidence/slt_lang_createview.test", 115): _TEMP + " (its DROP)",
    ("evidence/slt_lang_createview.test", 119): _TEMP + " (its DROP)",
}


def stubs(workdir):
    out = os.path.join(workdir, "stubs")
    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "raftlite.proto")
    shutil.copy(os.path.join(ROOT, "proto", "raftlite.proto"), src)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", out,
                    "--python_out", out, "--grpc_python_out", out, src],
                   check=True)
    sys.path.insert(0, out)
    import raftlite_pb2
    import raftlite_pb2_grpc
    return raftlite_pb2, raftlite_pb2_grpc


def quote_value(v):
    """A typed Value as slt.py's decode_rows reads the shell's quote mode."""
    k = v.WhichOneof("kind")
    if k == "integer":
        return str(v.integer).encode()
    if k == "real":
        r = v.real
        if r != r:
            return b"NULL"
        if r in (float("inf"), float("-inf")):
            return b"Inf" if r > 0 else b"-Inf"
        return repr(r).encode()
    if k == "text":
        return b"'" + v.text.encode("utf-8", "surrogateescape").replace(
            b"'", b"''") + b"'"
    if k == "blob":
        return b"X'" + v.blob.hex().encode() + b"'"
    return b"NULL"


class GrpcShell:
    """slt.Shell's batch() interface over a fresh standalone raftd."""

    def __init__(self, raftd, workdir, pb, pbg):
        self.db = os.path.join(workdir, "n1", "sqlite.db")
        self.stray = []
        self.port = free_port()
        self.log = open(os.path.join(workdir, "raftd.log"), "w")
        self.p = subprocess.Popen(
            [raftd, "-id", "n1", "-grpc", "127.0.0.1:%d" % self.port,
             "-data", workdir, "-log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        grpc.channel_ready_future(self.ch).result(timeout=30)
        self.s = pbg.DistributedSqliteStub(self.ch)
        self.pb = pb
        self.nread = self.nwrite = 0

    def one(self, sql):
        pb = self.pb
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if sql.strip().upper().startswith("PRAGMA SYNCHRONOUS"):
            return b"", []
        # As a client would: SQL that reads goes to ExecuteRead, the rest
        # (DDL, DML, REINDEX...) to ExecuteWrite; a read refused as a
        # write (or as several statements) is sent again as a write.
        r = None
        if word in ("SELECT", "WITH", "VALUES", "EXPLAIN", "PRAGMA", "("):
            r = self.s.ExecuteRead(pb.ReadRequest(sql=sql), timeout=120)
        if r is None or r.error and ("refuses SQL that writes" in r.error or
                                     "exactly one statement" in r.error):
            self.nwrite += 1
            w = self.s.ExecuteWrite(pb.WriteRequest(sql=sql), timeout=120)
            return b"", ([] if w.success else [["Error", w.error]])
        self.nread += 1
        if r.error:
            kind = "Runtime error" if r.error.startswith("query failed") \
                else "Error"
            return b"", [[kind, r.error]]
        seg = b"".join(b",".join(quote_value(v) for v in row.typed) + b"\n"
                       for row in r.result.rows)
        return seg, []

    def batch(self, sqls):
        return [self.one(sql) for sql in sqls]

    def close(self):
        self.ch.close()
        alive = self.p.poll() is None
        if alive:
            self.p.terminate()
        rc = self.p.wait(timeout=60)
        self.log.close()
        return rc if not alive else 0

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", help="the corpus root (holds "
                    "KNOWN_FAILURES_3.40.1.txt)")
    ap.add_argument("--only", nargs="*", default=[],
                    help="files or directories relative to the root")
    ap.add_argument("--raftd", default=os.path.join(ROOT, "build", "raftd"))
    ap.add_argument("--data", default=None,
                    help="scratch root (default: a temporary directory)")
    ap.add_argument("--max-diffs", type=int, default=5)
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="slt-grpc-", dir=a.data)
    pb, pbg = stubs(work)
    opened = []

    real_open = slt.open_shell

    def open_shell(db, ext=None, env=None, san=False, timeout=120):
        if db == ":memory:":        # the Formatter's stock shell
            return real_open(db, ext, env, san, timeout)
        d = tempfile.mkdtemp(prefix="f-", dir=work)
        sh = GrpcShell(a.raftd, d, pb, pbg)
        opened.append(sh)
        slt._live.append(sh)
        return sh

    def close_shell(sh):
        slt._live.remove(sh)
        rc = sh.close()
        return [] if rc == 0 else ["raftd exited %d (crash?)" % rc]

    # The formatter's stock shell (SQLite's own conversions) is a real one.
    fmt = slt.Formatter()
    real_close = slt.close_shell

    def close_any(sh):
        return close_shell(sh) if isinstance(sh, GrpcShell) else \
            real_close(sh)

    slt.open_shell = open_shell
    slt.close_shell = close_any
    known = {}
    files = []
    by_design = dict(BY_DESIGN)
    # Names relative to the corpus root, as KNOWN_FAILURES and BY_DESIGN
    # give them; --only keeps the files under the given prefixes.
    root = a.corpus
    kf = os.path.join(root, "KNOWN_FAILURES_3.40.1.txt")
    if os.path.isfile(kf):
        known.update(slt.read_known(kf))
    for f in slt.corpus_files(root):
        if not a.only or any(f == o or f.startswith(o.rstrip("/") + "/")
                             for o in a.only):
            files.append((f, os.path.join(root, f)))
    if not files:
        print("no test files under %s matching %r" % (root, a.only))
        return 1
    nbad = nauth = 0
    ran = set()
    t0 = time.time()
    try:
        for name, path in files:
            r = slt.run_file(path, name, known=known, fmt=fmt,
                             workroot=work)
            # Refusals of the allow-list by design (and what follows from
            # them) are expected, exactly where listed.
            expected = [f for f in r.failures if (name, f.line) in by_design]
            for f in expected:
                by_design.pop((name, f.line))
            r.failures = [f for f in r.failures if f not in expected]
            if expected:
                print("  %d refusals by design: %s" % (
                    len(expected), ", ".join(sorted(set(
                        BY_DESIGN[(name, f.line)] for f in expected)))))
            print(("ok   " if r.ok else "FAIL ") + r.summary(), flush=True)
            for f in r.failures[:a.max_diffs]:
                print("  " + f.describe(name).replace("\n", "\n  "))
            auth = [f for f in r.failures if "not authorized" in
                    "%s %s" % (f.what, f.got)]
            nauth += len(auth)
            nbad += not r.ok
            ran.add(name)
    finally:
        slt.close_shell = real_close
        fmt.close()
        for sh in opened:
            sh.kill()
        shutil.rmtree(work, ignore_errors=True)
    missing = [k for k in by_design if k[0] in ran]
    for k in missing:
        print("FAIL %s:%d: refused by design (%s) but it was not" %
              (k[0], k[1], BY_DESIGN[k]))
    nbad += len(missing)
    print("%d files, %d failed, %d failures naming the allow-list; %.0fs" %
          (len(files), nbad, nauth, time.time() - t0))
    return 1 if nbad else 0


if __name__ == "__main__":
    sys.exit(main())
