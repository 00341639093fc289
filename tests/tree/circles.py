#!/usr/bin/python3
"""Prints the circles between source files: for each non-static
rl_/rlv_/node_/host_ function, the file defining it; then every pair
a.c -> b.c and b.c -> a.c, and every longer loop (a.c -> b.c -> c.c ->
a.c: files of one strongly connected set of the call graph, printed as
"loop: a.c b.c c.c" when no pair explains it). Run from a checkout's root
(tests/tree/test_no_circles.py runs it); the last line is "N circles".

Files under tests/, bench/ and demo/ are left out. The scan is textual
(a regex over each file, no preprocessor), so a name in a comment
followed by "(" counts as a call: say it without the parenthesis."""
import re
import subprocess

srcs = [l for l in subprocess.check_output(['git', 'ls-files', '*.c']).decode().split()
        if not l.startswith(('tests/', 'bench/', 'demo/'))]
defs = {}
for p in srcs:
    s = open(p).read()
    for m in re.finditer(r'^(?!static)[a-zA-Z_][\w \*]*?\b(rl_\w+|rlv_\w+|node_\w+|host_\w+)\s*\(', s, re.M):
        defs.setdefault(m.group(1), p)
calls = {}
for p in srcs:
    s = open(p).read()
    calls[p] = {}
    for name in set(re.findall(r'\b(rl_\w+|rlv_\w+|node_\w+|host_\w+)\s*\(', s)):
        q = defs.get(name)
        if q and q != p:
            calls[p].setdefault(q, set()).add(name)
pairs = set()
for a in sorted(calls):
    for b in sorted(calls[a]):
        if a in calls.get(b, {}) and (b, a) not in pairs:
            pairs.add((a, b))
            print(a, '->', b, sorted(calls[a][b]))
            print('   ', b, '->', a, sorted(calls[b][a]))


def loops(graph):
    """Strongly connected sets of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


n = len(pairs)
for comp in loops(calls):
    if not any(a in comp and b in comp for a, b in pairs):
        print("loop:", " ".join(comp))
        n += 1
print(n, "circles")
