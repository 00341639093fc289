"""tests/lib/lincheck.py -- raftlite's own linearizability checker.

A register model (read, write, compare-and-set; keys independent) checked
by a Wing-Gong search with Lowe's memoization: operations are linearized
one at a time in an order consistent with real time (an operation can only
take effect between its invocation and its completion), the search
backtracks when a completion is reached whose operation has not taken
effect yet, and a (set of linearized operations, register value) pair seen
once is never explored again. Each key is checked on its own
(linearizability is compositional).

An operation is a dict (or Op) with
  key     any hashable (default None: one register)
  f       "read" | "write" | "cas"
  value   read: the value returned; write: the value written;
          cas: (expected, new)
  ok      True: completed with this result; "info": outcome unknown (it
          may or may not have taken effect, at any time after its
          invocation); for a cas, False = completed and did NOT swap (the
          register did not hold `expected` at its linearization point)
  call    invocation time (any comparable number)
  ret     completion time (ignored for info operations: they stay open)
A definitely failed operation (it surely took no effect) is left out of
the history by the caller; so is a read whose answer is unknown.

It must never report a history linearizable that is not: when the search
is cut short (max_states) the verdict is None ("unknown"), never True.
The jepsen etcd histories in tests/faults/data/linearizability prove it
against known verdicts (tests/faults/test_lincheck.py).
"""
import re
import sys

INFO = "info"


class Op:
    __slots__ = ("key", "f", "value", "ok", "call", "ret", "id", "meta")

    def __init__(self, f, value, ok, call, ret=None, key=None, meta=None):
        self.key, self.f, self.value, self.ok = key, f, value, ok
        self.call, self.ret, self.meta = call, ret, meta
        self.id = None

    def __repr__(self):
        r = "?" if self.ok == INFO else self.ret
        return "%s %s(%r)=%s [%s..%s]%s" % (
            "" if self.key is None else "k=%r" % (self.key,), self.f,
            self.value, self.ok, self.call, r,
            " %s" % self.meta if self.meta else "")


def _op(o):
    if isinstance(o, Op):
        return o
    return Op(o["f"], o.get("value"), o.get("ok", True), o["call"],
              o.get("ret"), o.get("key"), o.get("meta"))


def step(state, op):
    """(allowed, next state) of the register model."""
    f = op.f
    if f == "read":
        return state == op.value, state
    if f == "write":
        return True, op.value
    if f == "cas":
        exp, new = op.value
        if op.ok == INFO:
            # Unknown answer: the swap happens iff the compare holds.
            return True, (new if state == exp else state)
        if op.ok:
            return state == exp, new
        return state != exp, state  # answered "not swapped"
    raise ValueError("unknown operation %r" % (f,))


class Result:
    def __init__(self, ok, key=None, explored=0, detail=""):
        self.ok = ok  # True, False, or None (search cut short)
        self.key = key
        self.explored = explored
        self.detail = detail

    def __bool__(self):
        return self.ok is True

    def __repr__(self):
        return "Result(%s, key=%r, explored=%d)" % (self.ok, self.key,
                                                    self.explored)


class _Ent:
    __slots__ = ("op", "is_call", "match", "prev", "next")

    def __init__(self, op, is_call):
        self.op, self.is_call = op, is_call
        self.match = self.prev = self.next = None


def _check_key(ops, init, max_states):
    """Search over one key's operations (list of Op)."""
    events = []
    for i, op in enumerate(ops):
        op.id = i
        events.append((op.call, 0, i, True))
        if op.ok != INFO:
            if op.ret is None or op.ret < op.call:
                raise ValueError("operation completes before it starts: %r"
                                 % (op,))
            # At equal times a call sorts before a return: the two are then
            # taken as concurrent (the permissive reading of a tie).
            events.append((op.ret, 1, i, False))
    events.sort(key=lambda e: (e[0], e[1]))
    head = _Ent(None, False)
    tail = head
    calls = {}
    for _, _, i, is_call in events:
        e = _Ent(ops[i], is_call)
        if is_call:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev = tail
        tail.next = e
        tail = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        if m:
            m.prev.next = m.next
            if m.next:
                m.next.prev = m.prev

    def unlift(e):
        m = e.match
        if m:
            m.prev.next = m
            if m.next:
                m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    pending = sum(1 for op in ops if op.ok != INFO)  # definite ones left
    state = init
    linearized = 0
    seen = set()
    stack = []
    entry = head.next
    best = (-1, None, None)  # deepest point: (depth, stuck op, state)
    while True:
        if pending == 0:
            # Only open (info) operations are left: each may take effect
            # after everything else, which no observation contradicts.
            return Result(True, explored=len(seen))
        if entry is None:
            raise AssertionError("search ran off the list")  # cannot happen
        if entry.is_call:
            op = entry.op
            allowed, nxt = step(state, op)
            if allowed:
                lin = linearized | (1 << op.id)
                k = (lin, nxt)
                if k not in seen:
                    seen.add(k)
                    if len(seen) > max_states:
                        return Result(None, explored=len(seen),
                                      detail="search cut short after %d "
                                      "states" % max_states)
                    stack.append((entry, state))
                    state, linearized = nxt, lin
                    if op.ok != INFO:
                        pending -= 1
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A completion whose operation has not taken effect: undo the
            # last choice and try the next candidate after it.
            if len(stack) > best[0]:
                best = (len(stack), entry.op, state)
            if not stack:
                return Result(False, explored=len(seen),
                              detail=_explain(best))
            e, state = stack.pop()
            linearized &= ~(1 << e.op.id)
            if e.op.ok != INFO:
                pending += 1
            unlift(e)
            entry = e.next


def _explain(best):
    depth, op, state = best
    return ("after linearizing %d operations (register = %r) no order "
            "explains %r" % (depth, state, op))


def check(history, init=None, max_states=2000000):
    """Checks a history (iterable of Op or dicts). init: the registers'
    value before the history (one value for every key, or a dict
    key -> value). Returns a Result: ok True / False / None (unknown),
    and for a failure the key and a short explanation."""
    by_key = {}
    for o in history:
        o = _op(o)
        by_key.setdefault(o.key, []).append(o)
    total = 0
    for key in sorted(by_key, key=repr):
        iv = init.get(key) if isinstance(init, dict) else init
        r = _check_key(by_key[key], iv, max_states)
        total += r.explored
        if r.ok is not True:
            r.key = key
            r.explored = total
            return r
    return Result(True, explored=total)


# ------------------------------------------------------- jepsen etcd logs

_LINE = re.compile(r"jepsen\.util\s+-\s+(\d+)\s+:(\w+)\s+:(\w+)\s+(.*?)\s*$")


def _val(s):
    s = s.strip()
    if s == "nil":
        return None
    if s.startswith("["):
        a, b = s.strip("[]").split()
        return (_val(a), _val(b))
    return int(s)


def parse_jepsen(path, cas_fail="false"):
    """A jepsen etcd log (":invoke/:ok/:fail/:info" lines of a CAS
    register) as a list of Op; time = line number. A failed cas is the
    register answering "not swapped" (cas_fail="false", etcd's meaning) or
    an operation that took no effect (cas_fail="drop"); an info operation
    stays open; a failed or unknown read is left out."""
    open_ = {}
    ops = []
    with open(path) as f:
        for n, line in enumerate(f):
            m = _LINE.search(line)
            if not m:
                continue
            proc, kind, fn, arg = m.groups()
            if kind == "invoke":
                if proc in open_:
                    raise ValueError("%s:%d: process %s invoked twice" %
                                     (path, n + 1, proc))
                v = None if fn == "read" else _val(arg)
                open_[proc] = Op(fn, v, None, n)
                continue
            op = open_.pop(proc)
            if fn != op.f:
                raise ValueError("%s:%d: %s completes %s" % (path, n + 1,
                                                            fn, op.f))
            op.ret = n
            if kind == "ok":
                op.ok = True
                if fn == "read":
                    op.value = _val(arg)
            elif kind == "fail":
                if fn == "cas" and cas_fail == "false":
                    op.ok = False
                else:
                    continue
            elif kind == "info":
                if fn == "read":
                    continue
                op.ok = INFO
            else:
                raise ValueError("%s:%d: unknown kind %s" % (path, n + 1,
                                                            kind))
            ops.append(op)
    for op in open_.values():  # invoked, never completed: unknown
        if op.f != "read":
            op.ok = INFO
            ops.append(op)
    return ops


if __name__ == "__main__":
    for p in sys.argv[1:]:
        r = check(parse_jepsen(p))
        print(p, r.ok, r.explored, r.detail)
