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
Each test gets RL_ROOT, RL_BUILD (absolute build dir), RL_LONG (0/1) and
RL_SAN (0/1) in its environment. A test passes iff it exits 0 in time; the
runner never skips a test silently: a missing build artifact is a failure.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def header(path):
    meta = {"budget": 300, "asan": False, "budget_long": None}
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
    except OSError:
        pass
    return meta


def discover(args):
    tests = []  # (name, argv, build, san, budget)
    for build, san in (("build", False), ("build/asan", True)):
        udir = os.path.join(ROOT, build, "tests", "unit")
        src = os.path.join(ROOT, "tests", "unit")
        for f in sorted(os.listdir(src)):
            if f.startswith("test_") and f.endswith(".c"):
                name = f[:-2]
                tests.append(("%sunit/%s" % ("asan:" if san else "", name),
                              [os.path.join(udir, name)], build, san,
                              3000 if args.long else 300))
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
            tests.append(("%s/%s" % (group, f), argv, "build", False, budget))
            if meta["asan"]:
                tests.append(("asan:%s/%s" % (group, f), argv, "build/asan",
                              True, budget * 3))
    if args.only:
        tests = [t for t in tests if re.search(args.only, t[0])]
    return tests


def run_one(name, argv, build, san, budget, args, logdir):
    env = dict(os.environ)
    env.update(RL_ROOT=ROOT, RL_BUILD=os.path.join(ROOT, build),
               RL_LONG="1" if args.long else "0", RL_SAN="1" if san else "0",
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
    print("%s %-48s %6.1fs%s" % ("PASS" if ok else "FAIL", name, dt,
                                "" if ok else "  (%s)" % why), flush=True)
    if not ok:
        with open(log, errors="replace") as f:
            lines = f.readlines()
        for line in lines[-60:]:
            sys.stdout.write("    | " + line)
        sys.stdout.flush()
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", action="store_true", help="full-size runs")
    ap.add_argument("--only", help="regex on test names")
    args = ap.parse_args()
    logdir = os.path.join(ROOT, "build", "test-logs")
    os.makedirs(logdir, exist_ok=True)
    tests = discover(args)
    passed = failed = 0
    t0 = time.time()
    for t in tests:
        if run_one(*t, args=args, logdir=logdir):
            passed += 1
        else:
            failed += 1
    print("total time %.0fs; logs in build/test-logs/" % (time.time() - t0))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 and passed > 0 else 1)


if __name__ == "__main__":
    main()
