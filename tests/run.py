#!/usr/bin/python3
"""tests/run.py -- raftlite's test runner (the body of `make test`).

Runs every test of the tree, one process each, and closes with the line
"N passed, N failed". A test is
  * a unit-test binary built from tests/unit/*.c (build/tests/unit/NAME), or
  * a script tests/<group>/test_*.py or test_*.sh.
Scripts may declare in their first 20 lines:
  # budget: SECONDS     time limit for one run (default 300; x10 when long)
  # budget-long: SECONDS  time limit under --long instead of budget x 10
  # asan: yes           run it a second time against the ASan/UBSan build
  # serial: GROUP       never run beside another test of GROUP (netns: the
                        network-namespace tests share one subnet and remove
                        each other's stale namespaces)
Each test gets RL_ROOT, RL_BUILD (absolute build dir), RL_LONG (0/1),
RL_SAN (0/1) and RL_PORTS ("LO-HI": the range its free ports come from) in
its environment. A test passes iff it exits 0 in time; the runner never
skips a test silently: a missing build artifact is a failure.

Tests run side by side, --jobs at a time (default $RL_JOBS or 2): the suite
mostly waits on elections and timeouts. Each job slot has its own port range,
so two tests never pick the same free port; the longest tests (by the last
run's times in build/test-logs/times.json, else by budget) start first.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def header(path):
    meta = {"budget": 300, "asan": False, "budget_long": None, "serial": None}
    try:
        with open(path, errors="replace") as f:
            for _, line in zip(range(20), f):
                m = re.match(r"\s*#\s*budget:\s*(\d+)", line)
                if m:
                    meta["budget"] = int(m.group(1))
                m = re.match(r"\s*#\s*budget-long:\s*(\d+)", line)
                if m:
                    meta["budget_long"] = int(m.group(1))
                if re.match(r"\s*#\s*asan:\s*yes", line):
                    meta["asan"] = True
                m = re.match(r"\s*#\s*serial:\s*(\w+)", line)
                if m:
                    meta["serial"] = m.group(1)
    except OSError:
        pass
    return meta


def discover(args):
    tests = []  # (name, argv, build, san, budget, serial group or None)
    for build, san in (("build", False), ("build/asan", True)):
        udir = os.path.join(ROOT, build, "tests", "unit")
        src = os.path.join(ROOT, "tests", "unit")
        for f in sorted(os.listdir(src)):
            if f.startswith("test_") and f.endswith(".c"):
                name = f[:-2]
                tests.append(("%sunit/%s" % ("asan:" if san else "", name),
                              [os.path.join(udir, name)], build, san,
                              3000 if args.long else 300, None))
    for group in sorted(os.listdir(os.path.join(ROOT, "tests"))):
        gdir = os.path.join(ROOT, "tests", group)
        if group in ("unit", "lib") or not os.path.isdir(gdir):
            continue
        for f in sorted(os.listdir(gdir)):
            path = os.path.join(gdir, f)
            if not re.match(r"test_.*\.(py|sh)$", f):
                continue
            meta = header(path)
            argv = ([sys.executable, path] if f.endswith(".py")
                    else ["/bin/sh", path])
            budget = meta["budget"]
            if args.long:
                budget = meta["budget_long"] or budget * 10
            tests.append(("%s/%s" % (group, f), argv, "build", False, budget,
                          meta["serial"]))
            if meta["asan"]:
                tests.append(("asan:%s/%s" % (group, f), argv, "build/asan",
                              True, budget * 3, meta["serial"]))
    if args.only:
        tests = [t for t in tests if re.search(args.only, t[0])]
    return tests


OUT = threading.Lock()  # one test's lines are printed together


def run_one(name, argv, build, san, budget, serial, args, logdir, ports):
    env = dict(os.environ)
    env.update(RL_ROOT=ROOT, RL_BUILD=os.path.join(ROOT, build),
               RL_LONG="1" if args.long else "0", RL_SAN="1" if san else "0",
               RL_PORTS=ports,
               PYTHONPATH=os.path.join(ROOT, "tests", "lib"))
    if san:
        env["ASAN_OPTIONS"] = ("detect_leaks=1:abort_on_error=0:exitcode=86:"
                               "detect_odr_violation=0")
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=87"
        env["LSAN_OPTIONS"] = "suppressions=%s/tests/lsan.supp" % ROOT
    log = os.path.join(logdir, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".log")
    t0 = time.time()
    if not os.path.exists(argv[-1]) and not argv[0].endswith("sh"):
        rc, why = 127, "missing test binary %s (build failed?)" % argv[-1]
        with open(log, "w") as f:
            f.write(why + "\n")
    else:
        with open(log, "w") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                                 start_new_session=True)
            try:
                rc = p.wait(timeout=budget)
                why = "exit %d" % rc
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                rc, why = -1, "timed out after %ds" % budget
        # A test's own children must not outlive it.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, UnboundLocalError):
            pass
    dt = time.time() - t0
    ok = rc == 0
    text = "%s %-48s %6.1fs%s\n" % ("PASS" if ok else "FAIL", name, dt,
                                    "" if ok else "  (%s)" % why)
    if not ok:
        with open(log, errors="replace") as f:
            lines = f.readlines()
        text += "".join("    | " + line for line in lines[-60:])
    with OUT:
        sys.stdout.write(text)
        sys.stdout.flush()
    return ok, dt


def port_ranges(jobs):
    """One range of free ports per job slot, inside 20000-32000 (below
    Linux's ephemeral range)."""
    span = 12000 // jobs
    return ["%d-%d" % (20000 + i * span, 20000 + (i + 1) * span - 1)
            for i in range(jobs)]


def run_all(tests, args, logdir):
    """Runs tests, args.jobs at a time; a test waits while another test
    of its serial group runs. Returns (passed, failed, times)."""
    times_file = os.path.join(logdir, "times.json")
    try:
        with open(times_file) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}
    # Longest first, so that the last slot does not run alone for long.
    queue = sorted(tests, key=lambda t: -last.get(t[0], t[4] / 10.0))
    if args.jobs == 1:
        queue = list(tests)
    cv = threading.Condition()
    busy_groups = set()
    free_slots = port_ranges(args.jobs)
    result = {"passed": 0, "failed": 0, "times": dict(last)}

    def next_test():
        for i, t in enumerate(queue):
            if t[5] is None or t[5] not in busy_groups:
                return queue.pop(i)
        return None

    def worker():
        while True:
            with cv:
                while True:
                    if not queue:
                        return
                    t = next_test()
                    if t:
                        break
                    cv.wait()
                if t[5]:
                    busy_groups.add(t[5])
                ports = free_slots.pop()
            try:
                ok, dt = run_one(*t, args=args, logdir=logdir, ports=ports)
            finally:
                with cv:
                    free_slots.append(ports)
                    busy_groups.discard(t[5])
                    cv.notify_all()
            with cv:
                result["passed" if ok else "failed"] += 1
                result["times"][t[0]] = round(dt, 1)

    threads = [threading.Thread(target=worker) for _ in range(args.jobs)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        with open(times_file, "w") as f:
            json.dump(result["times"], f, indent=0, sort_keys=True)
    except OSError:
        pass
    return result["passed"], result["failed"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", action="store_true", help="full-size runs")
    ap.add_argument("--only", help="regex on test names")
    ap.add_argument("--jobs", type=int,
                    default=int(os.environ.get("RL_JOBS", "2")),
                    help="tests run side by side (default $RL_JOBS or 2)")
    args = ap.parse_args()
    args.jobs = max(1, min(args.jobs, 8))
    logdir = os.path.join(ROOT, "build", "test-logs")
    os.makedirs(logdir, exist_ok=True)
    tests = discover(args)
    t0 = time.time()
    passed, failed = run_all(tests, args, logdir)
    print("total time %.0fs; logs in build/test-logs/" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 and passed > 0 else 1)


if __name__ == "__main__":
    main()
