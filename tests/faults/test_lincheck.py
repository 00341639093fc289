#!/usr/bin/python3
# budget: 120
"""tests/faults/test_lincheck.py -- the project's linearizability checker
(tests/lib/lincheck.py) proven before it is trusted: it must reproduce the
known verdict of EVERY jepsen etcd history in
tests/faults/data/linearizability (102 CAS-register histories with a
verdict, 23 linearizable, 79 not, and etcd_095.log, empty; see its README, PROVENANCE.txt and LICENSE.md), under
both readings of a failed compare-and-set (etcd's "compare did not hold"
and "took no effect"), and decide the hand-made cases below (a stale read
is caught, an unknown write may have taken effect or not, a "not swapped"
answer from stale state is caught, keys are independent, a search cut
short is "unknown", never "linearizable"). Fast, no cluster.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import time

from rltest import check, check_eq, fail, log, main
import lincheck
from lincheck import INFO, Op

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                    "linearizability")


def known_histories():
    want = {}
    with open(os.path.join(DATA, "verdicts.txt")) as f:
        for line in f:
            if line.strip():
                n, v = line.split()
                check(v in ("true", "false"), "verdicts.txt: %r" % line)
                want[int(n)] = v == "true"
    files = sorted(os.listdir(os.path.join(DATA, "jepsen")))
    for n in want:
        check("etcd_%03d.log" % n in files, "history %d is in the tree" % n)
    # A history without a verdict must be empty (etcd_095.log is, upstream
    # too): nothing is left unchecked silently.
    for f in files:
        n = int(f[5:8])
        if n not in want:
            size = os.path.getsize(os.path.join(DATA, "jepsen", f))
            check_eq(size, 0, "size of %s, which has no verdict" % f)
            log("%s: empty, no verdict (as upstream)" % f)
    return want


def test_known():
    want = known_histories()
    for mode in ("false", "drop"):
        t0 = time.time()
        mismatches = []
        worst = (0.0, None)
        for n in sorted(want):
            p = os.path.join(DATA, "jepsen", "etcd_%03d.log" % n)
            ops = lincheck.parse_jepsen(p, cas_fail=mode)
            check(len(ops) > 0, "history %d parsed to nothing" % n)
            t = time.time()
            r = lincheck.check(ops)
            worst = max(worst, (time.time() - t, n))
            if r.ok is not want[n]:
                mismatches.append("etcd_%03d: checker says %s, known %s (%s)"
                                  % (n, r.ok, want[n], r.detail))
        for m in mismatches:
            log("MISMATCH (failed cas = %s): %s" % (mode, m))
        check(not mismatches, "%d of %d known verdicts not reproduced" %
              (len(mismatches), len(want)))
        log("jepsen etcd histories, failed cas read as %r: %d/%d verdicts "
            "reproduced (%d linearizable, %d not) in %.1fs, slowest "
            "etcd_%03d %.2fs" % (mode, len(want), len(want),
                                 sum(want.values()),
                                 len(want) - sum(want.values()),
                                 time.time() - t0, worst[1], worst[0]))


def verdict(ops, want, what, init=0, **kw):
    r = lincheck.check(ops, init=init, **kw)
    if r.ok is not want:
        fail("%s: checker says %s, want %s (%s)" % (what, r.ok, want,
                                                    r.detail))
    return r


def test_units():
    W = lambda v, c, r, ok=True, k=None: Op("write", v, ok, c, r, k)  # noqa
    R = lambda v, c, r, k=None: Op("read", v, True, c, r, k)  # noqa
    C = lambda e, n, ok, c, r, k=None: Op("cas", (e, n), ok, c, r, k)  # noqa
    verdict([W(1, 0, 1), R(1, 2, 3)], True, "read after write")
    verdict([W(1, 0, 1), W(2, 2, 3), R(1, 4, 5)], False,
            "a stale read (1 after 2 was acknowledged)")
    verdict([W(1, 0, 10), R(1, 2, 3), R(0, 4, 5)], False,
            "a read of the old value after a read of the new one")
    verdict([W(1, 0, 10), R(0, 2, 3), R(1, 4, 5)], True,
            "a concurrent write seen late")
    r = verdict([W(1, 0, None, INFO), R(0, 5, 6), R(1, 7, 8)], True,
                "an unknown write that took effect later")
    verdict([W(1, 0, None, INFO), R(0, 5, 6)], True,
            "an unknown write that never took effect")
    verdict([W(1, 0, None, INFO), R(1, 5, 6), R(0, 7, 8)], False,
            "an unknown write cannot be undone")
    verdict([W(1, 3, None, INFO), R(1, 0, 2)], False,
            "an unknown write cannot take effect before it was invoked")
    verdict([C(0, 1, True, 0, 1), R(1, 2, 3), C(0, 2, False, 4, 5)], True,
            "cas, then a cas whose compare fails")
    verdict([C(0, 1, False, 0, 1)], False,
            "a 'not swapped' answer from stale state (the register held "
            "the expected value)")
    verdict([C(0, 1, INFO, 0, None), R(0, 2, 3), R(1, 4, 5)], True,
            "an unknown cas that swapped late")
    verdict([C(5, 1, INFO, 0, None), R(1, 2, 3)], False,
            "an unknown cas whose compare cannot hold")
    verdict([W(1, 0, 1, k="a"), W(2, 0, 1, k="b"), R(2, 2, 3, k="b"),
             R(1, 2, 3, k="a")], True, "two independent keys")
    r = verdict([W(1, 0, 1, k="a"), W(2, 0, 1, k="b"), R(1, 2, 3, k="b")],
                False, "a key that reads another key's value")
    check_eq(r.key, "b", "failing key")
    check("no order explains" in r.detail, "explanation: %r" % r.detail)
    # Many concurrent unknown writes and a read no order explains: the
    # search must give up with "unknown", never claim linearizable.
    ops = [W(i, 0, None, INFO) for i in range(1, 16)] + [R(99, 1, 2)]
    r = verdict(ops, None, "a search cut short", max_states=1000)
    check("cut short" in r.detail, "cut short detail: %r" % r.detail)
    verdict(ops, False, "the same search run to its end")
    log("unit cases: ok")


def test():
    test_units()
    test_known()


if __name__ == "__main__":
    main(test)
