"""bench/anywhere.py -- the `anywhere` benchmark of bench/run.py (issue
17): what writing and reading on every node costs, as ratios measured in
the same run, interleaved.

One 3-node cluster of stock shells. Each round, in order: N autocommit
one-row INSERTs from the leader's shell (the baseline), from a follower's
shell (the transaction goes to the leader over gRPC and comes back), from
a client process on the leader's file (a second shell: through the host's
local door), N loopback round trips of the gRPC stack to the leader
(bench_rtt: ReadIndex hint calls, answered from memory; the unit of the
issue's "one extra loopback round trip"), the same spaced by 200 us of
sleep (a call made after other work: the threads on both sides went idle,
as between a writer's or a reader's calls), the same while the leader's
shell writes N rows (the round trip under the load a write puts on the
machine; those writes are not timed), then N point reads on the follower at raft_consistency local
(the read baseline) and at linearizable (a read point from the leader per
read transaction), and 8 client processes on the follower's file reading
at once, at local and then at linearizable (their read points share one
round at a time).
Then the follower's shell exits and a Python process hosts its node
(bench/hostreads.py): point reads at local and at linearizable from one
of its connections alone, and from 8 of its connections at once (their
read points share one ReadIndex round to the leader at a time). Printed:
per-operation median latency over the rounds (each round's total time /
N), the ratios to the baselines, the follower's and the client's extra
cost over the leader's write and a read point's in round trips (back to
back and spaced), and 8 read points at once in read points of one.

It never judges speed; it fails only when a write or read fails or the
row counts do not add up.
"""
import json
import os
import random
import subprocess
import threading
import time

import rlcluster
import rltest
from rltest import Shell, check, is_error
from benchlib import median

VALUE = "v" * 100
CONCURRENT = 8
INSERT = "INSERT INTO t(v) VALUES('%s');\n" % VALUE


def _quiet(reads):
    """A read script whose results go to /dev/null (errors still reach the
    harness: the shell prints them to stderr). Reads timed in a shell
    print nothing per read, so that what is timed is the reads and not
    this harness: read back line by line, a line each millisecond woke a
    Python thread per read (8 readers: as much CPU again as their shells
    on two cores), where lines printed at once were read in one go."""
    return ".output /dev/null\n" + reads + ".output stdout\n"


def _timed(sh, text, what):
    t0 = time.perf_counter()
    out = sh.sql(text, 600)
    secs = time.perf_counter() - t0
    check(not is_error(out), "%s failed: %s" % (what, out[-300:]))
    return secs


def bench_anywhere(args, results, root, table):
    n = args.anywhere_n
    rounds = args.anywhere_rounds
    c = rlcluster.Cluster(3)
    try:
        lead = c.leader()
        fol = next(x for x in c.nodes if x is not lead)
        lead.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        c.wait_all("SELECT count(*) FROM sqlite_schema;", "1")
        client = Shell(lead.db, env=c.env)
        readers = [Shell(fol.db, env=c.env) for _ in range(CONCURRENT)]
        for r in readers:
            r.sql_ok("PRAGMA raft_consistency = linearizable;")
        runs = {k: [] for k in ("leader", "follower", "client", "rtt",
                                "rtt_spaced", "rtt_loaded", "local", "linearizable",
                                "local8", "lin8")}
        rtt_exe = os.path.join(rltest.BUILD, "bench", "bench_rtt")
        check(os.access(rtt_exe, os.X_OK),
              "missing %s: run make bench-bins" % rtt_exe)
        rnd = random.Random(1)
        rows = 0
        for r in range(rounds):
            runs["leader"].append(_timed(lead.sh, INSERT * n,
                                         "leader's writes") / n)
            runs["follower"].append(_timed(fol.sh, INSERT * n,
                                           "follower's writes") / n)
            runs["client"].append(_timed(client, INSERT * n,
                                         "client process's writes") / n)
            rows += 3 * n
            p = subprocess.run([rtt_exe, lead.grpc_addr, str(n)],
                               capture_output=True, text=True, timeout=600)
            check(p.returncode == 0, "bench_rtt failed: %s" % p.stderr)
            runs["rtt"].append(json.loads(p.stdout)["mean_ms"] / 1e3)
            p = subprocess.run([rtt_exe, lead.grpc_addr, str(n), "200"],
                               capture_output=True, text=True, timeout=600)
            check(p.returncode == 0, "bench_rtt failed: %s" % p.stderr)
            runs["rtt_spaced"].append(json.loads(p.stdout)["mean_ms"] / 1e3)
            # The same while the leader writes (not timed).
            loaded = {}

            def load():
                loaded["out"] = lead.sh.sql(INSERT * n, 600)

            th = threading.Thread(target=load)
            th.start()
            p = subprocess.run([rtt_exe, lead.grpc_addr, str(n)],
                               capture_output=True, text=True, timeout=600)
            th.join()
            check(p.returncode == 0, "bench_rtt failed: %s" % p.stderr)
            check(not is_error(loaded.get("out", "")),
                  "leader's writes beside bench_rtt: %s" %
                  loaded.get("out", "")[-300:])
            rows += n
            runs["rtt_loaded"].append(json.loads(p.stdout)["mean_ms"] / 1e3)
            c.wait_val(fol, "SELECT count(*) FROM t;", str(rows))
            ids = [rnd.randrange(1, rows + 1) for _ in range(n)]
            script = _quiet("".join("SELECT length(v) FROM t WHERE id = %d;\n"
                                    % i for i in ids))
            fol.sh.sql("PRAGMA raft_consistency = local;")
            runs["local"].append(_timed(fol.sh, script, "local reads") / n)
            fol.sh.sql("PRAGMA raft_consistency = linearizable;")
            runs["linearizable"].append(_timed(fol.sh, script,
                                               "linearizable reads") / n)
            fol.sh.sql("PRAGMA raft_consistency = local;")
            # 8 client processes on the follower's file reading at once,
            # linearizable: concurrent read points share the leader's
            # barrier (rl_node_read_index), so 8 together should cost about
            # one read point each round, not eight.
            per = max(1, n // CONCURRENT)
            one = _quiet("".join("SELECT length(v) FROM t WHERE id = %d;\n" %
                                 i for i in ids[:per]))
            # The same 8 at local first: what 8 processes reading at once
            # cost this machine without any read point (the baseline of
            # the linearizable run's extra).
            for level, key in (("local", "local8"), ("linearizable", "lin8")):
                for r in readers:
                    r.sql_ok("PRAGMA raft_consistency = %s;" % level)
                bar = threading.Barrier(CONCURRENT)
                secs = [0.0] * CONCURRENT

                def reader(k):
                    bar.wait()
                    secs[k] = _timed(readers[k], one, "concurrent reads")

                ths = [threading.Thread(target=reader, args=(k,))
                       for k in range(CONCURRENT)]
                for t in ths:
                    t.start()
                for t in ths:
                    t.join()
                # The wall time of the group per read of one reader.
                runs[key].append(max(secs) / per)
        check(client.close() == 0, "client shell exited nonzero")
        for r in readers:
            check(r.close() == 0, "reader shell exited nonzero")
        # The follower's node hosted by a Python process with 8
        # connections (bench/hostreads.py).
        rc = fol.exit()  # 1: a statement of it failed earlier (polls)
        check(rc in (0, 1), "the follower's shell exited %s" % rc)
        p = subprocess.run(
            ["/usr/bin/python3",
             os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "hostreads.py"), rltest.EXT, fol.db,
             str(CONCURRENT), str(max(1, n // CONCURRENT)), str(rounds)],
            env=c.env, capture_output=True, text=True, timeout=600)
        check(p.returncode == 0, "hostreads.py failed: %s" % p.stderr[-2000:])
        hr = json.loads(p.stdout.strip().splitlines()[-1])
        runs["host1"] = hr["one"]
        runs["host8"] = hr["many"]
        runs["hostlocal1"] = hr["local_one"]
        runs["hostlocal8"] = hr["local_many"]
        med = {k: median(v) * 1e3 for k, v in runs.items()}
        res = {"n": n, "rounds": rounds, "ms_per_op": med,
               "runs_s_per_op": runs}
        res["follower_over_leader"] = med["follower"] / med["leader"]
        res["client_over_leader"] = med["client"] / med["leader"]
        res["follower_extra_rtts"] = (med["follower"] -
                                      med["leader"]) / med["rtt"]
        res["client_extra_rtts"] = (med["client"] - med["leader"]) / med["rtt"]
        res["follower_extra_spaced_rtts"] = (med["follower"] -
                                             med["leader"]) / med["rtt_spaced"]
        res["follower_extra_loaded_rtts"] = (med["follower"] -
                                             med["leader"]) / med["rtt_loaded"]
        res["linearizable_over_local"] = med["linearizable"] / med["local"]
        res["lin8_over_linearizable"] = med["lin8"] / med["linearizable"]
        res["host8_over_host1"] = med["host8"] / med["host1"]
        # A read point's cost: linearizable over local, alone and 8 at once
        # (each over its own local baseline), and the second in units of
        # the first: "8 concurrent reads about one round together" is 1.
        res["point_one"] = med["linearizable"] - med["local"]
        res["point_8"] = med["lin8"] - med["local8"]
        res["point_8_in_ones"] = res["point_8"] / max(res["point_one"], 1e-9)
        res["host_point_one"] = med["host1"] - med["hostlocal1"]
        res["host_point_8"] = med["host8"] - med["hostlocal8"]
        res["host_point_8_in_ones"] = res["host_point_8"] / max(
            res["host_point_one"], 1e-9)
        res["point_one_in_rtts"] = res["point_one"] / med["rtt"]
        res["point_one_in_spaced_rtts"] = res["point_one"] / med["rtt_spaced"]
        res["host8_reads_per_round"] = hr["points"] / float(
            max(hr["rounds"], 1))
        results["anywhere"] = res
        rows_out = [
            ["write, leader's shell", "%.3f" % med["leader"], "1.00x (base)"],
            ["write, follower's shell", "%.3f" % med["follower"],
             "%.2fx" % res["follower_over_leader"]],
            ["write, client process (leader's file)", "%.3f" % med["client"],
             "%.2fx" % res["client_over_leader"]],
            ["one loopback gRPC round trip to the leader (bench_rtt)",
             "%.3f" % med["rtt"], "1.00x (unit)"],
            ["the same spaced by 200 us (threads idle between calls)",
             "%.3f" % med["rtt_spaced"], "%.2fx" % (med["rtt_spaced"] /
                                                   med["rtt"])],
            ["the same round trip while the leader writes",
             "%.3f" % med["rtt_loaded"], "%.2fx" % (med["rtt_loaded"] /
                                                   med["rtt"])],
            ["follower's write over the leader's", "%.3f" %
             (med["follower"] - med["leader"]),
             "%.2f round trips (%.2f spaced, %.2f while writing)" %
             (res["follower_extra_rtts"], res["follower_extra_spaced_rtts"],
              res["follower_extra_loaded_rtts"])],
            ["client process's write over the leader's", "%.3f" %
             (med["client"] - med["leader"]),
             "%.2f round trips" % res["client_extra_rtts"]],
            ["point read, follower, local", "%.3f" % med["local"],
             "1.00x (base)"],
            ["point read, follower, linearizable",
             "%.3f" % med["linearizable"],
             "%.2fx" % res["linearizable_over_local"]],
            ["  its read point (linearizable - local)",
             "%.3f" % res["point_one"],
             "%.2f round trips (%.2f spaced)" %
             (res["point_one_in_rtts"], res["point_one_in_spaced_rtts"])],
            ["8 client processes reading at once, local (wall time per "
             "read of one)", "%.3f" % med["local8"], ""],
            ["8 client processes reading at once, linearizable",
             "%.3f" % med["lin8"],
             "%.2fx of one alone" % res["lin8_over_linearizable"]],
            ["  their 8 read points together (linearizable - local)",
             "%.3f" % res["point_8"],
             "%.2f of one alone" % res["point_8_in_ones"]],
            ["point read, follower's hosting process (Python), local",
             "%.3f" % med["hostlocal1"], ""],
            ["point read, follower's hosting process (Python), "
             "linearizable", "%.3f" % med["host1"], "1.00x (base)"],
            ["8 connections of that process reading at once, local",
             "%.3f" % med["hostlocal8"], ""],
            ["8 connections of that process reading at once, linearizable "
             "(wall time per read of one)", "%.3f" % med["host8"],
             "%.2fx of one alone; %.1f reads per round" %
             (res["host8_over_host1"], res["host8_reads_per_round"])],
            ["  their 8 read points together (linearizable - local)",
             "%.3f" % res["host_point_8"],
             "%.2f of one alone (%.3f)" % (res["host_point_8_in_ones"],
                                            res["host_point_one"])],
        ]
        table("anywhere: writes and reads on every node (%d rounds of %d; "
              "ms per operation, median of rounds)" % (rounds, n),
              ["operation", "ms/op", "ratio"], rows_out)
    finally:
        c.close(check_rc=False)
