# budget: 60
"""A short libFuzzer run of each decoder target of the gRPC API
(tests/fuzz/fuzz_proto_*.c, built by `make` into build/fuzz/), starting
from the committed seeds; `make fuzz` runs them longer. A crash, leak,
sanitizer report or timeout fails the test."""
import os
import subprocess
import sys

from rltest import *  # noqa: F401,F403
from rltest import ROOT, check, log, scratch

TARGETS = ("fuzz_proto_requests", "fuzz_proto_txnchunks")
SECONDS = 60 if LONG else 8


def test():
    fuzzdir = os.path.join(ROOT, "build", "fuzz")
    for t in TARGETS:
        binary = os.path.join(fuzzdir, t)
        check(os.path.exists(binary), "missing %s (make builds it)" % binary)
        corpus = scratch("rlfuzz-")
        seeds = os.path.join(ROOT, "tests", "fuzz", "seeds", t)
        check(os.path.isdir(seeds) and os.listdir(seeds), "seeds of %s" % t)
        r = subprocess.run([binary, "-max_total_time=%d" % SECONDS,
                            "-rss_limit_mb=2048", "-timeout=10",
                            "-artifact_prefix=%s/" % corpus, corpus, seeds],
                           capture_output=True, text=True,
                           timeout=SECONDS + 60)
        tail = "\n".join(r.stderr.splitlines()[-25:])
        check(r.returncode == 0, "%s exited %d:\n%s" % (t, r.returncode, tail))
        runs = [ln for ln in r.stderr.splitlines() if ln.startswith("Done ")]
        check(runs, "%s printed no 'Done N runs':\n%s" % (t, tail))
        log("%s: %s" % (t, runs[-1]))


main(test)
