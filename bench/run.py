#!/usr/bin/python3
"""bench/run.py -- raftlite's benchmarks (`make bench`).

Every number printed is paired with a baseline measured in the same run,
interleaved with it, because the machine is shared and its disk flushes a
4 KiB write in 0.1 to 4 ms depending on the moment: a number compared with
one remembered from another run means nothing here. This script never
judges speed: it exits 0 when every benchmark ran (and its sanity checks,
e.g. "the mirror captured every transaction", held), 1 otherwise.

Benchmarks (see bench/README.md for what each measures and how to read it):
  capture  one-row INSERT transactions/s in the stock shell: plain WAL
           database (a), the extension's pass-through VFS (b), a replicated
           database captured by the test-only mirror (c); and one large
           transaction. Per synchronous setting.
  apply    raft_mirror_apply of the logs captured in (c) into a replica B,
           against the time stock SQLite took to commit the same data (a).
  node     bench_node: 3 in-process Raft nodes, 4 KiB TXN proposals from one
           thread, against O_DSYNC 4 KiB write latency in the same dir.
  commit   one client writing one-row transactions to a 3-node cluster of
           stock shells: through the leader's shell and over gRPC
           ExecuteWrite to the leader, with Raft's TCP_NODELAY on and off
           (interleaved clusters); txn/s, p50/p99, and the per-commit
           latency breakdown (RAFTLITE_TIMING, lib/timing.h) as percentiles.
  restart  a node (one-node cluster in a stock shell) restarting on intact
           files: time to its first read and to its first write, for a
           large database (1 GiB; --quick 64 MiB) against a 1 MiB one,
           interleaved; a stock sqlite3 opening and reading the same files
           beside it.
  peers    raftlite side by side with plain SQLite (FULL, NORMAL) and
           dqlite 1.11 (three nodes, build/bench/dqlite-bench): writes with
           1 and 8 clients, 1000-row transactions, point reads (local and
           over the network), STRONG reads; every system started here with
           fresh data, rounds interleaved (bench/peers.py). Also writes
           build/bench/peers.csv and peers.png.

Results: tables on stdout and build/bench/results.json.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests", "grpc"))
import rlcluster  # noqa: E402
import rltest  # noqa: E402
from rltest import Shell, check, fail, mirror_records, run_sql  # noqa: E402
from benchlib import (SEGMENTS, count_lines, median, pctl,  # noqa: E402
                      read_timing)

CONFIGS = ("a", "b", "c")
CONFIG_NAMES = {
    "a": "stock WAL, no extension",
    "b": "extension VFS, not replicated",
    "c": "replicated, mirror capture",
}
VALUE = "v" * 100  # one row = an integer key and a 100-byte text


def make_empty_db(path):
    """A WAL database with tables t and big, everything checkpointed into
    the main file, made by the stock shell without the extension."""
    run_sql(path, "PRAGMA page_size=4096;\nPRAGMA journal_mode=WAL;\n"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
            "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);\n"
            "PRAGMA wal_checkpoint(TRUNCATE);\n", ext=False)


class Run:
    """One database set up for configuration cfg, opened in a stock shell
    (with the extension for b and c), ready for a timed workload."""

    def __init__(self, root, cfg, sync, tag):
        self.dir = os.path.join(root, "%s-%s-%s" % (cfg, sync, tag))
        os.mkdir(self.dir)
        self.db = os.path.join(self.dir, "A.db")
        self.cfg = cfg
        self.log = None
        make_empty_db(self.db)
        # A pristine copy for the apply benchmark's replica B.
        self.pristine = os.path.join(self.dir, "B0.db")
        shutil.copyfile(self.db, self.pristine)
        env = {}
        if cfg == "c":
            os.mkdir(self.db + "-raft")
            self.log = os.path.join(self.dir, "mirror.log")
            env = {"RAFTLITE_TEST": "1", "RAFTLITE_MIRROR": self.log}
        self.sh = Shell(self.db, ext=(cfg != "a"), env=env)
        self.sh.sql_ok("PRAGMA synchronous=%s;" % sync)
        got = self.sh.sql_ok("PRAGMA synchronous;").strip()
        want = {"NORMAL": "1", "FULL": "2"}[sync]
        check(got == want, "synchronous is %r, want %s" % (got, want))
        got = self.sh.sql_ok("PRAGMA journal_mode;").strip()
        check(got == "wal", "journal_mode is %r" % got)

    def timed(self, sql, timeout=600):
        t0 = time.perf_counter()
        self.sh.sql_ok(sql, timeout=timeout)
        return time.perf_counter() - t0

    def close(self):
        rc = self.sh.close()
        check(rc == 0, "shell for %s exited %d" % (self.cfg, rc))


def small_txns(root, cfg, sync, n, tag):
    """n one-row autocommit INSERTs sent at once; time from the first byte
    sent to the shell's answer after the last. Returns (seconds, run)."""
    r = Run(root, cfg, sync, tag)
    script = "".join("INSERT INTO t(v) VALUES('%s');\n" % VALUE
                     for _ in range(n))
    secs = r.timed(script)
    got = r.sh.sql_ok("SELECT count(*) FROM t;").strip()
    check(got == str(n), "%s: %s rows after %d inserts" % (cfg, got, n))
    r.close()
    if cfg == "c":
        recs, _ = mirror_records(r.log)
        check(len(recs) == n, "mirror captured %d of %d transactions" %
              (len(recs), n))
    return secs, r


def large_txn(root, cfg, sync, mb, tag):
    """One transaction inserting mb MB of random 1000-byte blobs."""
    r = Run(root, cfg, sync, tag)
    rows = mb * 1000
    sql = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
           "WHERE x<%d) INSERT INTO big(b) SELECT randomblob(1000) FROM c;"
           % rows)
    secs = r.timed(sql)
    got = r.sh.sql_ok("SELECT count(*) FROM big;").strip()
    check(got == str(rows), "%s: %s rows in big, want %d" % (cfg, got, rows))
    r.close()
    if cfg == "c":
        recs, _ = mirror_records(r.log)
        check(len(recs) == 1, "mirror captured %d records for one "
              "transaction" % len(recs))
    return secs, r


def pos_writes(d, n):
    """Seconds for n rewrites of a small file in d, the way the test-only
    mirror records its position after every applied record (fopen "w",
    write, close: ext4 starts writeback on such a truncate-and-rewrite).
    This is the mirror's own cost inside raft_mirror_apply, measured
    beside it so that it can be told apart from rl_vfs_apply's."""
    path = os.path.join(d, "bench-pos")
    t0 = time.perf_counter()
    for i in range(n):
        with open(path, "w") as f:
            f.write("%d\n" % (i * 4160))
    secs = time.perf_counter() - t0
    os.unlink(path)
    return secs


def apply_log(run, table, want_rows):
    """Applies run.log into a copy of run's pristine database; returns a
    dict: seconds, records, log bytes, pages, and pos_seconds (pos_writes
    for as many records, right after, in the same directory)."""
    b = os.path.join(run.dir, "B.db")
    shutil.copyfile(run.pristine, b)
    os.mkdir(b + "-raft")
    recs, end = mirror_records(run.log)
    pages = sum(r[1] for r in recs)
    sh = Shell(b, env={"RAFTLITE_TEST": "1"})
    t0 = time.perf_counter()
    got = sh.sql_ok("SELECT raft_mirror_apply('%s');" % run.log,
                    timeout=600).strip()
    secs = time.perf_counter() - t0
    check(got.isdigit() and int(got) >= len(recs),
          "raft_mirror_apply returned %r for %d records" % (got, len(recs)))
    rows = sh.sql_ok("SELECT count(*) FROM %s;" % table).strip()
    check(rows == str(want_rows), "B has %s rows in %s after apply, want %d" %
          (rows, table, want_rows))
    check(sh.close() == 0, "apply shell exited nonzero")
    return {"seconds": secs, "records": len(recs), "log_bytes": end,
            "pages": pages, "pos_seconds": pos_writes(b + "-raft", len(recs))}


def apply_summary(ap, base_s):
    """Medians over runs of one workload, with ratios to base_s."""
    med = median([x["seconds"] for x in ap])
    pos = median([x["pos_seconds"] for x in ap])
    x = ap[0]
    return {"records": x["records"], "log_bytes": x["log_bytes"],
            "pages": x["pages"], "seconds": [y["seconds"] for y in ap],
            "median_s": med, "records_per_s": x["records"] / med,
            "mb_per_s": x["log_bytes"] / med / 1e6,
            "baseline_a_s": base_s, "ratio_time_to_a": med / base_s,
            "pos_writes_s": pos, "pos_share": pos / med}


def table(title, head, rows):
    print()
    print(title)
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join("%%%ds" % x if i else "%%-%ds" % x
                    for i, x in enumerate(w))
    print("  " + fmt % tuple(head))
    print("  " + "  ".join("-" * x for x in w))
    for r in rows:
        print("  " + fmt % tuple(r))
    sys.stdout.flush()


def bench_capture_apply(args, results, root):
    n, mb, reps = args.txns, args.large_mb, args.reps
    cap = results.setdefault("capture", {"txns": n, "large_mb": mb,
                                         "reps": reps, "by_sync": {}})
    app = results.setdefault("apply", {"by_sync": {}})
    for sync in args.sync:
        small = {c: [] for c in CONFIGS}
        large = {c: [] for c in CONFIGS}
        small_runs, large_runs = [], []
        for rep in range(reps):
            # Interleaved a, b, c so that a slow moment of the disk falls on
            # every configuration alike.
            for cfg in CONFIGS:
                secs, r = small_txns(root, cfg, sync, n, "s%d" % rep)
                small[cfg].append(secs)
                if cfg == "c":
                    small_runs.append(r)
            if mb:
                for cfg in CONFIGS:
                    secs, r = large_txn(root, cfg, sync, mb, "l%d" % rep)
                    large[cfg].append(secs)
                    if cfg == "c":
                        large_runs.append(r)
        tps = {c: n / median(small[c]) for c in CONFIGS}
        lt = {c: median(large[c]) for c in CONFIGS} if mb else {}
        entry = {
            "txn_per_s": tps,
            "small_seconds": small,
            "ratio_b_a": tps["b"] / tps["a"],
            "ratio_c_a": tps["c"] / tps["a"],
        }
        rows = []
        for c in CONFIGS:
            rows.append(["(%s) %s" % (c, CONFIG_NAMES[c]), "%.0f" % tps[c],
                         "%.3f" % (tps[c] / tps["a"]),
                         " ".join("%.3f" % s for s in small[c])])
        table("capture, synchronous=%s: %d one-row txns, %d runs each, "
              "median" % (sync, n, reps),
              ["configuration", "txn/s", "ratio to a", "run seconds"], rows)
        if mb:
            entry["large_seconds"] = large
            entry["large_median_s"] = lt
            entry["large_ratio_b_a"] = lt["b"] / lt["a"]
            entry["large_ratio_c_a"] = lt["c"] / lt["a"]
            rows = [["(%s) %s" % (c, CONFIG_NAMES[c]), "%.3f" % lt[c],
                     "%.3f" % (lt[c] / lt["a"]),
                     " ".join("%.3f" % s for s in large[c])]
                    for c in CONFIGS]
            table("capture, synchronous=%s: one %d MB transaction, median "
                  "time (ratio > 1 = slower than a)" % (sync, mb),
                  ["configuration", "seconds", "ratio to a", "run seconds"],
                  rows)
        cap["by_sync"][sync] = entry

        # Apply: the logs of (c) into fresh replicas, timed against the
        # medians of (a) for the same data at this synchronous setting.
        # Apply never fsyncs (the replication log is the durable record).
        ap = [apply_log(r, "t", n) for r in small_runs]
        aentry = {"small": apply_summary(ap, median(small["a"]))}
        work = [("%d one-row txns" % n, aentry["small"])]
        if mb:
            la = [apply_log(r, "big", mb * 1000) for r in large_runs]
            aentry["large"] = apply_summary(la, lt["a"])
            work.append(("one %d MB txn" % mb, aentry["large"]))
        rows = [[w, "%d" % x["records"], "%.0f" % x["records_per_s"],
                 "%.1f" % x["mb_per_s"], "%.3f" % x["median_s"],
                 "%.3f" % x["baseline_a_s"], "%.3f" % x["ratio_time_to_a"],
                 "%.3f" % x["pos_writes_s"]] for w, x in work]
        table("apply: raft_mirror_apply of the logs of (c) at synchronous=%s "
              "into replicas (apply never fsyncs); baseline: (a) committing "
              "the same data; pos = the mirror's position-file rewrites, "
              "timed alone" % sync,
              ["workload", "records", "rec/s", "MB/s", "apply s", "(a) s",
               "apply/(a)", "pos s"], rows)
        app["by_sync"][sync] = aentry


def bench_node(args, results, root):
    exe = os.path.join(rltest.BUILD, "bench", "bench_node")
    check(os.path.exists(exe), "%s is missing: run `make bench`" % exe)
    out = os.path.join(root, "node.json")
    data = os.path.join(root, "node")
    argv = [exe, "--dir", data, "--json", out, "--count", str(args.proposals),
            "--rounds", str(args.reps)]
    p = subprocess.run(argv, timeout=600)
    check(p.returncode == 0, "bench_node exited %d" % p.returncode)
    with open(out) as f:
        results["node"] = json.load(f)
    check(not os.path.exists(data), "bench_node left its data dir %s" % data)


# ---------------------------------------------------------------- tls

def bench_tls(args, results, root):
    """bench_node with Raft in plaintext and in mutual TLS, one round each,
    interleaved (plain, tls, plain, ...): the ratio of their medians."""
    import rltls
    exe = os.path.join(rltest.BUILD, "bench", "bench_node")
    check(os.path.exists(exe), "%s is missing: run `make bench`" % exe)
    certs = os.path.join(root, "tls-certs")
    os.makedirs(certs)
    rltls.make_ca(certs, "ca")
    for i in (1, 2, 3):
        rltls.make_node_cert(certs, "ca", "bench-%d" % i)
    runs = {"plain": [], "tls": []}
    for rep in range(args.reps):
        for mode in ("plain", "tls"):
            out = os.path.join(root, "tls-%s-%d.json" % (mode, rep))
            argv = [exe, "--dir", os.path.join(root, "tls-node"), "--json",
                    out, "--count", str(args.proposals), "--rounds", "1"]
            if mode == "tls":
                argv += ["--tls", certs]
            p = subprocess.run(argv, timeout=600)
            check(p.returncode == 0, "bench_node (%s) exited %d" % (
                mode, p.returncode))
            with open(out) as f:
                runs[mode].append(json.load(f))

    def med(mode, key, sub=None):
        return median([r[key][sub] if sub else r[key] for r in runs[mode]])
    res = {"runs": runs, "payload_bytes": 4096}
    rows = []
    for mode in ("plain", "tls"):
        res[mode] = {"proposals_per_s": med(mode, "proposals_per_s"),
                     "commit_p50_ms": med(mode, "commit_ms", "median"),
                     "commit_p99_ms": med(mode, "commit_ms", "p99"),
                     "fsync_p50_ms": med(mode, "fsync_ms", "median")}
        rows.append([mode, "%.0f" % res[mode]["proposals_per_s"],
                     "%.3f" % res[mode]["commit_p50_ms"],
                     "%.3f" % res[mode]["commit_p99_ms"],
                     "%.3f" % res[mode]["fsync_p50_ms"],
                     " ".join("%.0f" % r["proposals_per_s"]
                              for r in runs[mode])])
    res["ratio_tls_plain_rate"] = (res["tls"]["proposals_per_s"] /
                                   res["plain"]["proposals_per_s"])
    res["ratio_tls_plain_p50"] = (res["tls"]["commit_p50_ms"] /
                                  res["plain"]["commit_p50_ms"])
    res["ratio_tls_plain_p99"] = (res["tls"]["commit_p99_ms"] /
                                  res["plain"]["commit_p99_ms"])
    results["tls"] = res
    table("tls: 4 KiB commits of the in-process 3-node cluster, Raft in "
          "plaintext vs mutual TLS (%d interleaved rounds of %d)" % (
              args.reps, args.proposals),
          ["Raft", "proposals/s", "commit p50 ms", "p99 ms", "fsync p50 ms",
           "rounds' proposals/s"], rows)
    print("  ratios tls/plain: proposals/s %.2fx, commit p50 %.2fx, p99 "
          "%.2fx" % (res["ratio_tls_plain_rate"], res["ratio_tls_plain_p50"],
                     res["ratio_tls_plain_p99"]))


# ---------------------------------------------------------------- commit

def dsync_ms(d, n=200):
    """Latencies (ms) of n 4 KiB O_DSYNC writes in d (the disk's flush
    time, measured beside the commits)."""
    path = os.path.join(d, "dsync.dat")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DSYNC, 0o644)
    buf = b"\x5a" * 4096
    out = []
    try:
        os.pwrite(fd, buf * 64, 0)
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, buf, (i % 64) * 4096)
            out.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


# (name, Raft TCP_NODELAY, the leader's shell asks synchronous=FULL).
# "on" is the default; "off" is the tail of issue 18 (before the fix);
# "full" is the redundant WAL fsync per commit (before NORMAL; shell only:
# the gRPC sidecar's connections keep the default).
COMMIT_MODES = (("on", True, False), ("off", False, False),
                ("full", True, True))


def commit_round(args, nodelay, full, pb, pbg, tag):
    """One fresh 3-node cluster; args.commits one-row INSERTs through the
    leader's shell, then (unless full) as many gRPC ExecuteWrites to the
    leader. Returns a dict of results."""
    import grpc
    tdir = rltest.scratch("rlbench-timing-")
    env = {"RAFTLITE_TIMING": tdir}
    if not nodelay:
        env["RAFTLITE_BENCH_NO_NODELAY"] = "1"
    c = rlcluster.Cluster(3, env=env)
    try:
        lead = c.leader()
        lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        want_sync = "1"
        if full:
            lead.sql("PRAGMA synchronous=FULL;")
            want_sync = "2"
        got = lead.val("PRAGMA synchronous;")
        check(got == want_sync, "synchronous is %r, want %s" %
              (got, want_sync))
        tfile = os.path.join(tdir, "commits-%d.txt" % lead.pid)
        skip = count_lines(tfile)
        n = args.commits
        script = "".join("INSERT INTO t(v) VALUES('%s');\n" % VALUE
                         for _ in range(n))
        t0 = time.perf_counter()
        out = lead.sql(script, timeout=600)
        shell_s = time.perf_counter() - t0
        check(not rltest.is_error(out), "shell inserts failed: %s" % out[-500:])
        shell_rows = read_timing(tfile, skip)
        skip = count_lines(tfile)
        ch = grpc.insecure_channel(lead.grpc_addr)
        stub = pbg.DistributedSqliteStub(ch)
        lat, errors = [], 0
        ng = 0 if full else n
        t0 = time.perf_counter()
        for i in range(ng):
            a = time.perf_counter()
            w = stub.ExecuteWrite(pb.WriteRequest(
                sql="INSERT INTO t(v) VALUES (?)",
                params=[pb.Value(text=VALUE)]), timeout=30)
            lat.append((time.perf_counter() - a) * 1e3)
            errors += not w.success
        grpc_s = time.perf_counter() - t0
        ch.close()
        grpc_rows = read_timing(tfile, skip)
        got = lead.val("SELECT count(*) FROM t;")
        check(got == str(n + ng - errors), "%s rows after %d shell and %d "
              "gRPC writes (%d errors)" % (got, n, ng, errors))
        check(len(shell_rows) >= n * 0.99, "timing: %d of %d shell commits "
              "recorded" % (len(shell_rows), n))
        fs = dsync_ms(c.dir)
    finally:
        c.close(check_rc=False)
        shutil.rmtree(c.dir, ignore_errors=True)
        shutil.rmtree(tdir, ignore_errors=True)
    return {"tag": tag, "nodelay": nodelay, "full": full, "commits": n,
            "shell_txn_per_s": n / shell_s,
            "grpc_txn_per_s": ng / grpc_s if ng else None,
            "grpc_errors": errors, "grpc_ms": lat, "dsync_ms": fs,
            "shell_timing": shell_rows, "grpc_timing": grpc_rows}


def bench_commit(args, results, root):
    from rlgrpc import project_stubs
    pb, pbg = project_stubs()
    rounds = {m[0]: [] for m in COMMIT_MODES}
    for rep in range(args.commit_reps):
        for mode, nodelay, full in COMMIT_MODES:  # interleaved
            r = commit_round(args, nodelay, full, pb, pbg, "r%d" % rep)
            rounds[mode].append(r)
            print("  commit round %d %s: shell %.0f txn/s, gRPC %s txn/s" %
                  (rep, mode, r["shell_txn_per_s"],
                   "%.0f" % r["grpc_txn_per_s"] if r["grpc_txn_per_s"]
                   else "-"), flush=True)
    res = {"commits": args.commits, "reps": args.commit_reps, "modes": {},
           "mode_meaning": {"on": "TCP_NODELAY, synchronous NORMAL "
                            "(defaults)", "off": "no TCP_NODELAY",
                            "full": "leader's shell at synchronous=FULL"}}
    summary = []
    for mode, nodelay, full in COMMIT_MODES:
        rs = rounds[mode]
        shell_lat = [x["done"] for r in rs for x in r["shell_timing"]]
        grpc_lat = [x for r in rs for x in r["grpc_ms"]]
        fs = [x for r in rs for x in r["dsync_ms"]]
        m = {
            "shell_txn_per_s": [r["shell_txn_per_s"] for r in rs],
            "grpc_txn_per_s": [r["grpc_txn_per_s"] for r in rs
                               if r["grpc_txn_per_s"]],
            "grpc_errors": sum(r["grpc_errors"] for r in rs),
            "dsync_ms_p50": pctl(fs, 50), "dsync_ms_p99": pctl(fs, 99),
            "shell_commit_ms": {p: pctl(shell_lat, p) for p in (50, 90, 99)},
            "grpc_ms": {p: pctl(grpc_lat, p) for p in (50, 90, 99)},
            "breakdown": {},
        }
        for path in ("shell", "grpc"):
            rows = [x for r in rs for x in r[path + "_timing"]]
            bd = {}
            for name, a, b in SEGMENTS:
                xs = [max(0.0, x[b] - x[a]) for x in rows]
                bd[name] = {"p50": pctl(xs, 50), "p90": pctl(xs, 90),
                            "p99": pctl(xs, 99),
                            "max": max(xs) if xs else float("nan")}
            m["breakdown"][path] = {"commits": len(rows), "segments": bd}
        res["modes"][mode] = m
        for path, lat, key in (("leader's shell", shell_lat, "shell"),
                               ("gRPC ExecuteWrite", grpc_lat, "grpc")):
            tps = m[key + "_txn_per_s"]
            if not tps:
                continue
            summary.append([path, mode, "%.0f" % median(tps),
                            "%.2f" % pctl(lat, 50), "%.2f" % pctl(lat, 99),
                            "%.1f" % max(lat),
                            " ".join("%.0f" % x for x in tps),
                            str(m["grpc_errors"]) if key == "grpc" else "0"])
    mo = res["modes"]
    med = lambda mode, key: median(mo[mode][key + "_txn_per_s"])  # noqa
    res["ratio_shell_on_off"] = med("on", "shell") / med("off", "shell")
    res["ratio_grpc_on_off"] = med("on", "grpc") / med("off", "grpc")
    res["ratio_shell_normal_full"] = med("on", "shell") / med("full", "shell")
    results["commit"] = res
    table("commit: one client, %d one-row txns per path per round, %d "
          "interleaved rounds of fresh 3-node clusters per mode; on = "
          "defaults (Raft TCP_NODELAY, synchronous NORMAL), off = no "
          "TCP_NODELAY (RAFTLITE_BENCH_NO_NODELAY), full = the shell at "
          "synchronous=FULL; latency ms (shell: capture to done inside the "
          "VFS; gRPC: client round trip); O_DSYNC 4 KiB write p50 %.2f / p99 "
          "%.2f ms" % (args.commits, args.commit_reps,
                        mo["on"]["dsync_ms_p50"], mo["on"]["dsync_ms_p99"]),
          ["path", "mode", "txn/s", "p50", "p99", "max", "round txn/s",
           "errors"], summary)
    print("  ratios (median txn/s): shell on/off %.2fx, gRPC on/off %.2fx, "
          "shell NORMAL/FULL %.2fx" % (res["ratio_shell_on_off"],
                                       res["ratio_grpc_on_off"],
                                       res["ratio_shell_normal_full"]))
    for path in ("shell", "grpc"):
        modes = [x[0] for x in COMMIT_MODES
                 if mo[x[0]]["breakdown"][path]["commits"]]
        rows = []
        for name, _, _ in SEGMENTS:
            row = [name]
            for i, mode in enumerate(modes):
                seg = mo[mode]["breakdown"][path]["segments"][name]
                keys = ("p50", "p90", "p99", "max") if i == 0 else (
                    "p50", "p99", "max")
                row += ["%.3f" % seg[k] for k in keys]
            rows.append(row)
        head = ["segment", "on p50", "p90", "p99", "max"]
        for mode in modes[1:]:
            head += ["%s p50" % mode, "p99", "max"]
        table("commit breakdown, %s path, ms (commits: %s)" %
              (path, ", ".join("%s %d" % (x, mo[x]["breakdown"][path]
                                          ["commits"]) for x in modes)),
              head, rows)


REBUILD_SAID = "rebuilding it from a peer's image"


def make_node_db(root, name, mb):
    """A database of mb MiB of random blobs made by the stock shell, then
    made a one-node cluster in place (raft_bootstrap: its content becomes
    the genesis image) and stopped cleanly. Returns its path."""
    db = os.path.join(root, name + ".db")
    rows = max(1, mb * 1024 * 1024 // 4100)
    rc, out = run_sql(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL;"
            "CREATE TABLE t(b BLOB);"
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            "WHERE x < %d) INSERT INTO t SELECT randomblob(4000) FROM c;"
            "CREATE TABLE w(x);" % rows, ext=False, timeout=600)
    check(rc == 0, "making %s: %s" % (db, out))
    used = set()
    raft = "127.0.0.1:%d" % rlcluster._ports(used)
    grpc = "127.0.0.1:%d" % rlcluster._ports(used)
    sh = Shell(db)
    got = sh.sql_ok("SELECT raft_bootstrap('%s', '%s', '%s');" %
                    (name, raft, grpc)).strip()
    check(got.endswith(name), "raft_bootstrap of %s: %r" % (db, got))
    sh.sql_ok("INSERT INTO w VALUES (0);")
    sh.p.stdin.write(".exit\n")
    sh.p.stdin.close()
    check(sh.p.wait(timeout=120) == 0, "the shell hosting %s did not exit 0"
          % db)
    return db


def time_restart(db, what):
    """Seconds from starting a shell on db to its answer: `read` = the
    node restarted and answered a read; `write` = ... and committed a write
    through Raft; `stock` = a stock sqlite3 without the extension read it.
    The shell's exit (the node's stop) is not counted: the answer is timed
    as it arrives."""
    if what == "stock":
        argv, text = [rltest.SQLITE3, "-batch", db], ""
    else:
        argv = [rltest.SQLITE3, "-batch"]
        text = ".load %s\n.open %s\n" % (rltest.EXT, db)
    if what == "write":
        text += "INSERT INTO w VALUES (1);\nSELECT 'answer', count(*) FROM w;\n"
    else:
        # max(rowid) reads a root-to-leaf path of the big table: the
        # answer's own cost does not grow with the size (count(*) would
        # scan it all and time the query instead of the restart).
        text += "SELECT 'answer', max(rowid) FROM t;\n"
    t0 = time.time()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    p.stdin.write(text)
    p.stdin.flush()
    took, seen = None, []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("answer|") and took is None:
            took = time.time() - t0
            p.stdin.close()
    p.wait(timeout=120)
    check(took is not None and p.returncode == 0,
          "%s restart of %s: no answer (exit %s): %s" %
          (what, db, p.returncode, "".join(seen)[-2000:]))
    return took


def bench_restart(args, results, root):
    small = make_node_db(root, "small", 1)
    big = make_node_db(root, "big", args.restart_mb)
    sizes = {"small": os.path.getsize(small), "big": os.path.getsize(big)}
    runs = {(k, w): [] for k in ("small", "big")
            for w in ("read", "write", "stock")}
    for rep in range(args.reps):
        for w in ("read", "write", "stock"):
            for k, db in (("small", small), ("big", big)):
                runs[(k, w)].append(time_restart(db, w))
    res = {"sizes": sizes, "runs": {"%s_%s" % k: v for k, v in runs.items()}}
    rows = []
    for w in ("read", "write", "stock"):
        s, b = median(runs[("small", w)]), median(runs[("big", w)])
        res["ratio_" + w] = b / s
        rows.append([w, "%.3f" % s, "%.3f" % b, "%.2f" % (b / s),
                     " ".join("%.3f" % x for x in runs[("big", w)])])
    results["restart"] = res
    table("restart on intact files: %.1f MiB vs %.0f MiB database, %d runs "
          "each, median seconds from process start to the answer "
          "(ratio big/small; 1 = independent of size)" %
          (sizes["small"] / 2**20, sizes["big"] / 2**20, args.reps),
          ["first", "1 MiB s", "big s", "big/small", "big run seconds"],
          rows)
    for db in (small, big):
        rc, out = run_sql(db, "SELECT count(*) FROM w;")
        check(out.strip().endswith(str(1 + args.reps)), "%s: the writes of "
              "the runs are not all there: %r" % (db, out))
        check(REBUILD_SAID not in out, "%s: the node rebuilt itself" % db)


def bench_peers(args, results, root):
    import peers  # bench/peers.py
    peers.bench_peers(args, results, root, table)


def bench_anywhere(args, results, root):
    import anywhere  # bench/anywhere.py
    anywhere.bench_anywhere(args, results, root, table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="about a minute: fewer and smaller runs")
    ap.add_argument("--only",
                    default="capture,node,tls,commit,restart,peers,anywhere",
                    help="comma list of: capture (includes apply), node, "
                    "tls, commit, restart, peers, anywhere")
    ap.add_argument("--anywhere-n", type=int,
                    help="anywhere: operations per kind per round")
    ap.add_argument("--anywhere-rounds", type=int,
                    help="anywhere: interleaved rounds")
    ap.add_argument("--peers-rounds", type=int,
                    help="peers: interleaved rounds (every system each)")
    ap.add_argument("--peers-n", type=int,
                    help="peers: one-client writes per system per round "
                    "(8 clients: twice as many; point reads: as many; "
                    "1000-row transactions: n/200, at least 2)")
    ap.add_argument("--commits", type=int,
                    help="commit: one-row txns per path per round")
    ap.add_argument("--commit-reps", type=int,
                    help="commit: interleaved rounds per nodelay setting")
    ap.add_argument("--restart-mb", type=int,
                    help="restart: the large database's size in MiB")
    ap.add_argument("--txns", type=int, help="one-row txns per run")
    ap.add_argument("--large-mb", type=int, help="large txn size; 0 = none")
    ap.add_argument("--reps", type=int, help="interleaved repetitions")
    ap.add_argument("--proposals", type=int, help="node proposals per round")
    ap.add_argument("--sync", default="NORMAL,FULL",
                    help="synchronous settings, comma list")
    ap.add_argument("--out", default=os.path.join(rltest.BUILD, "bench",
                                                  "results.json"))
    args = ap.parse_args()
    q = args.quick
    args.txns = args.txns or (500 if q else 1000)
    args.large_mb = args.large_mb if args.large_mb is not None else (
        5 if q else 10)
    args.reps = args.reps or 3
    args.proposals = args.proposals or (300 if q else 500)
    args.restart_mb = args.restart_mb or (64 if q else 256)
    args.commits = args.commits or (300 if q else 500)
    args.commit_reps = args.commit_reps or (2 if q else 3)
    args.peers_rounds = args.peers_rounds or (1 if q else 3)
    args.anywhere_n = args.anywhere_n or (100 if q else 300)
    args.anywhere_rounds = args.anywhere_rounds or (2 if q else 3)
    args.n1 = args.peers_n or (200 if q else 500)
    args.n8 = 2 * args.n1
    args.nreads = args.n1
    args.ntx = max(2, args.n1 // 200)
    args.sync = [s.strip().upper() for s in args.sync.split(",") if s.strip()]
    for s in args.sync:
        if s not in ("NORMAL", "FULL"):
            fail("--sync: %r is not NORMAL or FULL" % s)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    for x in only:
        if x not in ("capture", "apply", "node", "tls", "commit", "restart",
                     "peers", "anywhere"):
            fail("--only: unknown benchmark %r (capture, apply, node, tls, "
                 "commit, restart, peers, anywhere)" % x)

    root = rltest.scratch("rlbench-")
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "host": platform.node(), "quick": q, "cpus": os.cpu_count(),
               "scratch_dir": root, "args": vars(args)}
    t0 = time.time()
    ran, failed = [], []
    if "capture" in only or "apply" in only:
        todo = [("capture+apply", bench_capture_apply)]
    else:
        todo = []
    if "node" in only:
        todo.append(("node", bench_node))
    if "tls" in only:
        todo.append(("tls", bench_tls))
    if "commit" in only:
        todo.append(("commit", bench_commit))
    if "restart" in only:
        todo.append(("restart", bench_restart))
    if "peers" in only:
        todo.append(("peers", bench_peers))
    if "anywhere" in only:
        todo.append(("anywhere", bench_anywhere))
    for name, fn in todo:
        t1 = time.time()
        try:
            fn(args, results, root)
            ran.append(name)
            print("\n%s: %.0f s" % (name, time.time() - t1), flush=True)
        except (rltest.TestFailure, subprocess.SubprocessError, OSError) as e:
            print("\nbenchmark %s did not run to the end: %s" % (name, e),
                  flush=True)
            failed.append(name)
    results["seconds"] = time.time() - t0
    results["ran"], results["failed"] = ran, failed
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print("\nbench: %d ran, %d did not (%.0f s); results in %s" %
          (len(ran), len(failed), results["seconds"], args.out))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    try:
        main()
    except rltest.TestFailure as e:
        print("bench: %s" % e)
        sys.exit(1)
