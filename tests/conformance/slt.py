#!/usr/bin/python3
"""tests/conformance/slt.py -- raftlite's own sqllogictest runner.

Runs sqllogictest files (SQLite's SQL conformance corpus; format in
https://www.sqlite.org/sqllogictest/doc/trunk/about.wiki) through the stock
/usr/bin/sqlite3 shell with the raftlite extension loaded, and checks every
statement and query result as the format defines it: statement ok/error,
query <types> <sort> [label] with nosort/rowsort/valuesort, hash-threshold
("N values hashing to <md5>"), labels (every result under one label must
hash the same), skipif/onlyif with engine name "sqlite", halt.

It must never pass vacuously: every record is either run and checked or
counted as skipped for another engine; an unparsable record, a shell that
dies, a marker that never comes back or output it cannot decode is a
failure, never a skip.

How results are recovered exactly. One long-lived shell per file reads the
records from a pipe, each followed by `;` and `.print <marker>`; output is in
`.mode quote`, which keeps each value's storage class: integers plain, reals
as "%!.20g" (always with '.', 'e' or Inf; 20 digits round-trip a double),
text '..' with '' escapes (newlines raw), blobs X'..', NULL as NULL. The
shell's errors go to stderr as "<kind> near line N: ..." where N is the
input line the statement started on; the runner knows the line each record
started on, so errors are attributed exactly. Every batch ends with a
deliberately failing `SELECT` and a final marker so both pipes are in sync.

How values are rendered (as sqllogictest's SQLite engine does): I is
sqlite3_column_int (int64 truncated to its low 32 bits; reals clamped to
int64 then truncated; text and blobs parsed as an integer prefix), R is
sqlite3_snprintf("%.3f", sqlite3_column_double), T is sqlite3_column_text
with "" shown as "(empty)" and every byte outside ' '..'~' shown as '@',
NULL is "NULL". Conversions whose result depends on SQLite's own printf or
number parser (R of anything, T of a real, I of text) are not imitated in
Python: they are computed by a second stock shell with printf()/CAST() on
the exact value (reals passed bit-exact through ieee754_from_blob), i.e. by
the same SQLite code the C runner would have called.

Each shell runs PRAGMA synchronous=OFF first, as the C runner's SQLite
engine does (otherwise every statement costs an fsync); in mirror mode A and
B run with synchronous=FULL instead, so the VFS sees real commits' syncs.

Deviations from the C runner, all stricter: the number of result lines must
match exactly (the C runner stops comparing at the shorter list), and a
query without a "----" line must return nothing (the C runner checks
nothing then). The one
leniency kept is the C runner's: an error while stepping a query (e.g.
integer overflow in sum()) ends its rows without failing the query; those
are counted and shown as "tolerated runtime errors". A query that returns no
rows cannot have its column count checked through the shell.

Mirror mode (--mirror): each file runs on a replicated database A (WAL,
beside it A.db-raft/, shell env RAFTLITE_TEST=1 RAFTLITE_MIRROR=<log>) and
every --mirror-every records a second shell on a copy B (B.db-raft/, env
RAFTLITE_TEST=1) runs SELECT raft_mirror_apply('<log>'); then `.sha3sum` of
A and B must be equal and every query of the records just run is run again
on A and on B, whose outputs (raw, exact values and types) must be equal.
"""
import argparse
import atexit
import bisect
import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

from slt_format import (  # noqa: E402  the format half of the runner
    DEFAULT_HASH_THRESHOLD,
    SltError,
    parse,
    decode_rows,
    conversion,
    _sql_of,
    render,
    md5_of,
    needs_read)

SQLITE3 = "/usr/bin/sqlite3"
@functools.lru_cache(maxsize=None)
def _asan_runtime():
    return subprocess.check_output(["gcc", "-print-file-name=libasan.so"],
                                   text=True).strip()


class Shell:
    """A stock sqlite3 shell on db, read and written through pipes by
    threads so that a large batch can never deadlock on full pipes."""

    _nonce = os.urandom(6).hex()

    def __init__(self, db, ext=None, env=None, san=False, timeout=120):
        e = dict(os.environ)
        if env:
            e.update(env)
        if san and ext:
            e["LD_PRELOAD"] = _asan_runtime()
        self.db = db
        self.timeout = timeout
        # With the extension the database is opened after .load, so that it
        # goes through the raft VFS (as users do: .load, then .open).
        self.p = subprocess.Popen([SQLITE3, "-batch"] + ([] if ext else [db]),
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=e)
        self.out = bytearray()
        self.err = bytearray()
        self.cv = threading.Condition()
        self.eof = [False, False]
        self.lineno = 0             # input lines sent so far
        self.nsync = 0
        self.stray = []             # stderr lines not naming a record
        self.out_pos = 0            # consumed prefix of out/err
        self.err_pos = 0
        for i, f in enumerate((self.p.stdout, self.p.stderr)):
            threading.Thread(target=self._reader, args=(i, f),
                             daemon=True).start()
        self.send([".bail off", ".headers off", ".mode quote"])
        if ext:
            self.send([".load " + ext, ".open '%s'" % db])
            seg, errs = self.batch(["SELECT raft_version()"])[0]
            rows = decode_rows(seg)
            if errs or len(rows) != 1 or rows[0][0] is None or \
                    rows[0][0][0] != "t":
                raise SltError("extension %s did not load into the shell: "
                               "%s %s" % (ext, self.stray, errs or rows))

    def _reader(self, i, f):
        buf = self.out if i == 0 else self.err
        while True:
            data = f.read1(1 << 16)
            with self.cv:
                if not data:
                    self.eof[i] = True
                    self.cv.notify_all()
                    return
                buf += data
                self.cv.notify_all()

    def send(self, lines):
        data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        self.lineno += data.count(b"\n")
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        except BrokenPipeError:
            raise SltError("shell on %s died (exit %s); stderr:\n%s" %
                           (self.db, self.p.poll(),
                            self.err[-3000:].decode(errors="replace")))

    def _mark(self, k):
        return "~RLM~%s~%d~%d" % (self._nonce, self.nsync, k)

    def batch(self, sqls):
        """Runs each SQL text in sqls (one record each) and returns, per
        record, (raw stdout bytes, errors) where errors is a list of
        [kind, message] the shell printed for it. SQL the shell would not
        see as complete (see needs_read) goes through `.read` of a file,
        alone in its batch, since only end of input makes the shell run
        incomplete SQL."""
        res = []
        i = 0
        while i < len(sqls):
            j = i
            while j < len(sqls) and not needs_read(sqls[j]):
                j += 1
            if j > i:
                res += self._batch(sqls[i:j])
            if j < len(sqls):
                fd, path = tempfile.mkstemp(prefix="slt-", suffix=".sql")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(sqls[j].encode("utf-8", "surrogateescape"))
                    res += self._batch([".read " + path], single=True)
                finally:
                    os.unlink(path)
                j += 1
            i = j
        return res

    def _batch(self, sqls, single=False):
        self.nsync += 1
        lines = []
        starts = []
        first = self.lineno + 1
        for k, sql in enumerate(sqls):
            starts.append(first + len(lines))
            lines.extend(sql.split("\n"))
            lines.append(";")
            lines.append(".print " + self._mark(k))
        sync_tag = "rl_slt_sync_%s_%d" % (self._nonce, self.nsync)
        lines.append("SELECT %s;" % sync_tag)
        lines.append(".print " + self._mark(-1))
        # The writer runs in a thread: a batch may be larger than the pipe.
        w = threading.Thread(target=self._write_bg, args=(lines,),
                             daemon=True)
        w.start()
        end_mark = (self._mark(-1) + "\n").encode()
        sync_err = sync_tag.encode()
        deadline = time.time() + self.timeout
        with self.cv:
            while True:
                o = self.out.find(end_mark, self.out_pos)
                e = self.err.find(sync_err, self.err_pos)
                if o >= 0 and e >= 0:
                    eol = self.err.find(b"\n", e)
                    if eol >= 0:
                        break
                if self.eof[0] and self.eof[1] or self.p.poll() is not None \
                        and self.eof[0]:
                    raise SltError(
                        "shell on %s exited (%s) in the middle of a batch; "
                        "stderr tail:\n%s" % (self.db, self.p.poll(),
                                              self.err[-3000:].decode(
                                                  errors="replace")))
                left = deadline - time.time()
                if left <= 0:
                    raise SltError(
                        "shell on %s gave no end marker within %ds (a record"
                        " left incomplete SQL?); stdout tail %r" %
                        (self.db, self.timeout, bytes(self.out[-300:])))
                self.cv.wait(min(left, 1.0))
            # All of this batch's stderr was written before the end
            # marker; take every complete line (the sync error's context
            # lines may follow its first line).
            eol = self.err.rfind(b"\n")
            out = bytes(self.out[self.out_pos:o])
            err = bytes(self.err[self.err_pos:eol + 1])
            self.out_pos = o + len(end_mark)
            self.err_pos = eol + 1
            # Keep memory bounded over a long file.
            if self.out_pos > (1 << 24):
                del self.out[:self.out_pos]
                self.out_pos = 0
            if self.err_pos > (1 << 20):
                del self.err[:self.err_pos]
                self.err_pos = 0
        w.join()
        # Split stdout by record markers.
        segs = []
        cur = 0
        for k in range(len(sqls)):
            m = (self._mark(k) + "\n").encode()
            pos = out.find(m, cur)
            while pos > cur and out[pos - 1] != 0x0a:
                pos = out.find(m, pos + 1)
            if pos < 0:
                raise SltError("marker of record %d missing from shell "
                               "output" % k)
            segs.append(out[cur:pos])
            cur = pos + len(m)
        # Attribute stderr messages by the input line they name.
        errs = [[] for _ in sqls]
        stray = []
        cur_err = ["sync", ""]      # leftover context of the last sync
        for line in err.decode("utf-8", "replace").split("\n")[:-1]:
            m = re.match(r"(Parse error|Runtime error|Error) near line "
                         r"(\d+): (.*)", line)
            if m:
                if sync_tag in line:
                    cur_err = ["sync", ""]  # swallow its context lines
                    continue
                idx = 0 if single else \
                    bisect.bisect_right(starts, int(m.group(2))) - 1
                if idx < 0:
                    stray.append(line)
                    cur_err = None
                    continue
                cur_err = [m.group(1), m.group(3)]
                errs[idx].append(cur_err)
            elif cur_err is not None and line.startswith("  "):
                cur_err[1] += "\n" + line
            else:
                cur_err = None
                stray.append(line)
        if stray:
            self.stray.extend(stray)
        return list(zip(segs, errs))

    def _write_bg(self, lines):
        try:
            self.send(lines)
        except SltError:
            pass                    # the reader side reports the death

    def close(self):
        """Ends the shell; returns (exit status, stderr not yet read)."""
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        with self.cv:
            while not (self.eof[0] and self.eof[1]):
                self.cv.wait(1.0)
            tail = bytes(self.err[self.err_pos:])
        return rc, tail.decode("utf-8", "replace")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


_live = []


def _kill_all():
    for sh in list(_live):
        sh.kill()


atexit.register(_kill_all)


def open_shell(db, ext=None, env=None, san=False, timeout=120):
    sh = Shell(db, ext=ext, env=env, san=san, timeout=timeout)
    _live.append(sh)
    return sh


def close_shell(sh):
    """Closes sh; returns a list of problems (sanitizer reports, crash)."""
    rc, tail = sh.close()
    _live.remove(sh)
    probs = []
    text = "\n".join(sh.stray) + "\n" + tail
    if rc < 0:
        probs.append("shell on %s killed by signal %d" % (sh.db, -rc))
    if re.search(r"ERROR: (Address|Leak|Undefined)Sanitizer|"
                 r"^\S+:\d+:\d+: runtime error:", text, re.M):
        probs.append("sanitizer report from the shell on %s:\n%s" %
                     (sh.db, text[-4000:]))
    return probs


class Formatter:
    """A stock shell on :memory: (no extension needed: the conversions are
    SQLite core code) that computes conversion() keys; memoised."""

    def __init__(self):
        self.sh = None
        self.cache = {}

    def compute(self, keys):
        need = list({k for k in keys if k not in self.cache})
        if not need:
            return self.cache
        if self.sh is None:
            self.sh = open_shell(":memory:")
        sqls = []
        parts = []
        for i in range(0, len(need), 300):
            part = need[i:i + 300]
            parts.append(part)
            sqls.append("SELECT " + ", ".join(_sql_of(k) for k in part))
        for part, (seg, errs) in zip(parts, self.sh.batch(sqls)):
            rows = decode_rows(seg)
            if errs or len(rows) != 1 or len(rows[0]) != len(part):
                raise SltError("formatter shell failed: %r %r" %
                               (errs, seg[:300]))
            for k, v in zip(part, rows[0]):
                want = "i" if k[0] == "I" else "t"
                if v is None or v[0] != want:
                    raise SltError("formatter gave %r for %r" % (v, k))
                self.cache[k] = v[1]
        return self.cache

    def close(self):
        if self.sh is not None:
            close_shell(self.sh)
            self.sh = None


# ---------------------------------------------------------------------------
# Running and checking one file

class Failure:
    def __init__(self, line, what, expected=None, got=None, sql=None,
                 names=("expected", "got")):
        self.line = line
        self.what = what
        self.expected = expected    # list of lines or None
        self.got = got
        self.sql = sql
        self.names = names

    def key_strings(self):
        return (" ".join(self.expected or []), " ".join(self.got or []))

    def describe(self, name):
        import difflib
        s = "%s:%d: %s" % (name, self.line, self.what)
        if self.sql:
            sql = self.sql if len(self.sql) < 400 else self.sql[:400] + "..."
            s += "\n    sql: " + sql.replace("\n", "\n         ")
        if self.expected is not None or self.got is not None:
            diff = list(difflib.unified_diff(self.expected or [],
                                             self.got or [], self.names[0],
                                             self.names[1], lineterm="",
                                             n=2))
            if len(diff) > 40:
                diff = diff[:40] + ["... (%d more diff lines)" %
                                    (len(diff) - 40)]
            s += "\n    " + "\n    ".join(diff)
        return s


class FileResult:
    def __init__(self, name):
        self.name = name
        self.nstmt = self.nquery = self.npass = self.nskip = 0
        self.ntolerated = 0
        self.failures = []
        self.xfails = []
        self.notes = []             # stray stderr lines, shown not failed
        self.halted_at = None
        self.mirror_syncs = self.mirror_applied = 0
        self.mirror_queries = self.mirror_deferred = 0
        self.seconds = 0.0

    @property
    def ok(self):
        return not self.failures

    def summary(self):
        s = ("%s: %d statements, %d queries, %d passed, %d expected "
             "failures, %d failed, %d skipped" %
             (self.name, self.nstmt, self.nquery, self.npass,
              len(self.xfails), len(self.failures), self.nskip))
        if self.ntolerated:
            s += ", %d tolerated runtime errors" % self.ntolerated
        if self.halted_at:
            s += ", halt at line %d" % self.halted_at
        if self.notes:
            s += "; %d stray stderr lines, first: %r" % (len(self.notes),
                                                        self.notes[0][:200])
        if self.mirror_syncs:
            s += "; mirror: %d syncs, %d records applied, %d queries " \
                 "compared" % (self.mirror_syncs, self.mirror_applied,
                               self.mirror_queries)
            if self.mirror_deferred:
                s += ", %d syncs deferred (open transaction)" % \
                    self.mirror_deferred
        return s + " (%.1fs)" % self.seconds


_HASHLINE = re.compile(r"\d+ values hashing to ([0-9a-f]{32})\Z")


class Mirror:
    """Two replicated databases A and B (see the module comment): A is run
    with RAFTLITE_MIRROR=<log>, B catches up with raft_mirror_apply()."""

    def __init__(self, workdir, ext, san):
        self.a = os.path.join(workdir, "A.db")
        self.b = os.path.join(workdir, "B.db")
        self.log = os.path.join(workdir, "mirror.log")
        p = subprocess.run([SQLITE3, "-batch", self.a],
                           input="PRAGMA journal_mode=WAL;\n"
                                 "PRAGMA wal_checkpoint(TRUNCATE);\n",
                           text=True, capture_output=True, timeout=60)
        if p.returncode != 0 or not p.stdout.startswith("wal"):
            raise SltError("cannot create WAL database %s: %s%s" %
                           (self.a, p.stdout, p.stderr))
        os.mkdir(self.a + "-raft")
        shutil.copyfile(self.a, self.b)
        os.mkdir(self.b + "-raft")
        self.A = open_shell(self.a, ext, san=san,
                            env={"RAFTLITE_TEST": "1",
                                 "RAFTLITE_MIRROR": self.log})
        self.B = open_shell(self.b, ext, san=san, env={"RAFTLITE_TEST": "1"})
        self.pending = []           # queries run on A since the last sync

    def sync(self, queries, line, res):
        """Brings B up to A and compares them; queries are the query
        records just run on A, line the last record's line. Returns a list
        of Failure. While A has a transaction open (a file's own BEGIN)
        the comparison waits for the next sync point."""
        fails = []
        self.pending += queries
        queries = self.pending
        # BEGIN fails only inside a transaction; else undo it at once.
        seg, errs = self.A.batch(["BEGIN"])[0]
        if errs:
            res.mirror_deferred += 1
            return fails
        seg, errs = self.A.batch(["ROLLBACK"])[0]
        if errs:
            fails.append(Failure(line, "ROLLBACK after probe BEGIN on A "
                                 "failed: %r" % errs))
        self.pending = []
        seg, errs = self.B.batch(["SELECT raft_mirror_apply('%s')" %
                                  self.log.replace("'", "''")])[0]
        rows = decode_rows(seg) if not errs else []
        if errs or len(rows) != 1 or rows[0][0] is None or \
                rows[0][0][0] != "i":
            fails.append(Failure(line, "raft_mirror_apply() on B failed: "
                                 "%r %r" % (errs, seg[:200])))
            return fails
        res.mirror_applied += rows[0][0][1]
        res.mirror_syncs += 1
        ha = self.A.batch([".sha3sum"])[0]
        hb = self.B.batch([".sha3sum"])[0]
        if ha != hb:
            fails.append(Failure(line, "mirror diverged: .sha3sum of A %r "
                                 "!= of B %r" % (ha, hb)))
        if queries:
            oa = self.A.batch([q.sql for q in queries])
            ob = self.B.batch([q.sql for q in queries])
            res.mirror_queries += len(queries)
            for q, x, y in zip(queries, oa, ob):
                if x != y:
                    fails.append(Failure(
                        q.line, "mirror B answers differently from A",
                        [repr(x[0][:300]), repr(x[1])],
                        [repr(y[0][:300]), repr(y[1])], q.sql,
                        names=("A (writer)", "B (mirror)")))
        return fails


def run_file(path, name, ext=None, san=False, known=None, mirror=False,
             mirror_every=500, fmt=None, workroot=None, chunk=4000):
    """Runs one test file; returns a FileResult. known maps (name, line) to
    (expected, got) strings of failures to report as expected."""
    t0 = time.time()
    res = FileResult(name)
    known = known or {}
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "surrogateescape")
    recs, res.nskip, res.halted_at = parse(text)
    own_fmt = fmt is None
    if own_fmt:
        fmt = Formatter()
    work = tempfile.mkdtemp(prefix="slt-", dir=workroot)
    mir = None
    live_before = list(_live)
    shells_probs = []
    try:
        if mirror:
            mir = Mirror(work, ext, san)
            sh = mir.A
            chunk = max(1, mirror_every)
        else:
            sh = open_shell(os.path.join(work, "t.db"), ext, san=san)
        # Plain runs: no fsync per statement, as the C runner's SQLite
        # engine does. Mirror runs: FULL, so that the replicating VFS sees
        # the syncs and padding frames real commits make.
        sync = "FULL" if mir else "OFF"
        for x in ([mir.A, mir.B] if mir else [sh]):
            seg, errs = x.batch(["PRAGMA synchronous=" + sync])[0]
            if errs:
                raise SltError("PRAGMA synchronous=%s failed: %r" %
                               (sync, errs))
        _check_records(recs, res, sh, fmt, known, mir, chunk)
    except SltError as e:
        res.failures.append(Failure(0, "runner: %s" % e))
    finally:
        # Every shell this file opened (even if setup failed half-way).
        for x in [x for x in _live if x not in live_before and
                  x is not fmt.sh]:
            shells_probs += close_shell(x)
            res.notes += x.stray
        if own_fmt:
            fmt.close()
        shutil.rmtree(work, ignore_errors=True)
    for p in shells_probs:
        res.failures.append(Failure(0, p))
    # Known failures of this file that never showed up passed unexpectedly.
    for (kname, kline), (kexp, kgot) in sorted(known.items()):
        if kname != name:
            continue
        if not any(x.line == kline for x in res.xfails) and \
                not any(x.line == kline for x in res.failures):
            res.failures.append(Failure(
                kline, "known failure (expected %s, got %s) did not happen:"
                " the record passed or was not run" % (kexp, kgot)))
    res.seconds = time.time() - t0
    return res


def _check_records(recs, res, sh, fmt, known, mir, chunk):
    threshold = DEFAULT_HASH_THRESHOLD
    labels = {}
    execs = [i for i, r in enumerate(recs) if r.kind in ("statement",
                                                        "query")]
    outs = {}       # record index -> (seg, errs)
    rows_of = {}    # record index -> decoded rows or SltError
    conv = fmt.cache
    pos = 0

    def fail(r, what, expected=None, got=None):
        f = Failure(r.line, what, expected, got, r.sql)
        k = known.get((res.name, r.line))
        if k is not None and k == f.key_strings():
            res.xfails.append(f)
        else:
            if k is not None:
                f.what += " (differs from the known failure: expected %s," \
                          " got %s)" % k
            res.failures.append(f)

    def label_check(r, h):
        old = labels.setdefault(r.label, h)
        if old != h:
            fail(r, "labeled result [%s] does not agree with previous "
                 "values (%s != %s)" % (r.label, h, old))
            return False
        return True

    for i, r in enumerate(recs):
        if r.kind in ("statement", "query") and i not in outs:
            part = execs[pos:pos + chunk]
            pos += len(part)
            for j, o in zip(part, sh.batch([recs[j].sql for j in part])):
                outs[j] = o
            keys = []
            for j in part:
                q = recs[j]
                if q.kind != "query":
                    continue
                try:
                    rows = decode_rows(outs[j][0])
                except SltError as e:
                    rows = e
                rows_of[j] = rows
                if not isinstance(rows, SltError):
                    for row in rows:
                        for tc, v in zip(q.types, row):
                            k = conversion(tc, v)
                            if k is not None:
                                keys.append(k)
            fmt.compute(keys)
            if mir is not None:
                for f in mir.sync([recs[j] for j in part
                                   if recs[j].kind == "query"],
                                  recs[part[-1]].line, res):
                    res.failures.append(f)
        if r.kind == "bad":
            res.failures.append(Failure(r.line, r.why))
        elif r.kind == "hash-threshold":
            threshold = r.n
        elif r.kind == "label":
            exp = r.expected or []
            m = _HASHLINE.match(exp[0]) if len(exp) == 1 else None
            label_check(r, m.group(1) if m else md5_of(exp))
        elif r.kind == "statement":
            res.nstmt += 1
            seg, errs = outs.pop(i)
            if r.ok and errs:
                fail(r, "statement failed: %s: %s" % tuple(errs[0]))
            elif not r.ok and not errs:
                fail(r, "statement succeeded but an error was expected")
            else:
                res.npass += 1
        elif r.kind == "query":
            res.nquery += 1
            seg, errs = outs.pop(i)
            rows = rows_of.pop(i)
            hard = [e for e in errs if e[0] != "Runtime error"]
            if hard:
                fail(r, "query failed: %s: %s" % tuple(hard[0]),
                     r.expected or [], ["(error) " + hard[0][1]])
                continue
            if errs:
                res.ntolerated += 1
            if isinstance(rows, SltError):
                fail(r, str(rows))
                continue
            ncol = len(r.types)
            bad = [row for row in rows if len(row) != ncol]
            if bad:
                fail(r, "wrong number of result columns: expected %d but "
                     "got %d" % (ncol, len(bad[0])))
                continue
            vals = [[render(tc, v, conv) for tc, v in zip(r.types, row)]
                    for row in rows]
            if r.sort == "rowsort":
                vals.sort()
            flat = [v for row in vals for v in row]
            if r.sort == "valuesort":
                flat.sort()
            n = len(flat)
            h = None
            if r.label or (threshold > 0 and n > threshold):
                h = md5_of(flat)
            if r.label and not label_check(r, h):
                continue
            if threshold == 0 or n <= threshold:
                got = flat
            else:
                got = ["%d values hashing to %s" % (n, h)]
            exp = r.expected if r.expected is not None else []
            if got != exp:
                fail(r, "wrong result", exp, got)
            else:
                res.npass += 1


# ---------------------------------------------------------------------------
# Corpus-level helpers and command line

def corpus_files(root):
    """Relative paths of every *.test file under root, sorted."""
    out = []
    for dp, dn, fn in os.walk(root):
        dn.sort()
        for f in sorted(fn):
            if f.endswith(".test"):
                out.append(os.path.relpath(os.path.join(dp, f), root))
    return sorted(out)


def read_known(path):
    """KNOWN_FAILURES file -> {(file, line): (expected, got)}."""
    known = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r"(\S+):(\d+)\s+expected\s+(.*?)\s+got\s+(.*)$",
                         line)
            if not m:
                raise SltError("%s:%d: cannot parse %r (want 'FILE:LINE "
                               "expected X got Y')" % (path, n, line))
            known[(m.group(1), int(m.group(2)))] = (m.group(3), m.group(4))
    return known


def read_manifest(path):
    """MANIFEST -> {file: (bytes, sha256, stmts, queries)}."""
    man = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            p = line.split()
            man[p[0]] = (int(p[1]), p[2], int(p[3]), int(p[4]))
    return man


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="test files or directories")
    ap.add_argument("--ext", help="extension to .load (default "
                    "$RL_BUILD/raftlite or build/raftlite)")
    ap.add_argument("--no-ext", action="store_true",
                    help="run on the plain stock shell")
    ap.add_argument("--san", action="store_true",
                    help="preload the ASan runtime (ASan build of the ext)")
    ap.add_argument("--known", help="KNOWN_FAILURES file (default: the "
                    "KNOWN_FAILURES_3.40.1.txt of a directory given)")
    ap.add_argument("--mirror", action="store_true",
                    help="also check a replicated mirror (see module doc)")
    ap.add_argument("--mirror-every", type=int, default=500)
    ap.add_argument("--max-diffs", type=int, default=5)
    a = ap.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    ext = None
    if not a.no_ext:
        ext = a.ext or os.path.join(os.environ.get("RL_BUILD") or
                                    os.path.join(root, "build"), "raftlite")
    known = read_known(a.known) if a.known else {}
    files = []
    for p in a.paths:
        kf = os.path.join(p, "KNOWN_FAILURES_3.40.1.txt")
        if not a.known and os.path.isfile(kf):
            known.update(read_known(kf))
        if os.path.isdir(p):
            files += [(f, os.path.join(p, f)) for f in corpus_files(p)]
        else:
            files.append((os.path.basename(p), p))
    fmt = Formatter()
    nbad = 0
    for name, path in files:
        r = run_file(path, name, ext=ext, san=a.san, known=known,
                     mirror=a.mirror, mirror_every=a.mirror_every, fmt=fmt)
        print(("ok   " if r.ok else "FAIL ") + r.summary(), flush=True)
        for f in r.failures[:a.max_diffs]:
            print("  " + f.describe(name).replace("\n", "\n  "))
        if len(r.failures) > a.max_diffs:
            print("  ... and %d more failures" %
                  (len(r.failures) - a.max_diffs))
        nbad += not r.ok
    fmt.close()
    print("%d files, %d failed" % (len(files), nbad))
    return 1 if nbad else 0


if __name__ == "__main__":
    sys.exit(main())
