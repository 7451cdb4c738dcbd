#!/usr/bin/env python3
"""Lists module import cycles in every crate: `scripts/module-cycles.py` prints each cycle
and exits 1 when there is one. A module is a file under src/; an edge is a `crate::a::b`
path in a file (test modules left out), to the deepest module file that exists."""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")
found = []
for crate in sorted(os.listdir(root)):
    src = os.path.join(root, crate, "src")
    if not os.path.isdir(src):
        continue
    modules = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            modules["::".join(rel)] = os.path.join(dirpath, f)
    edges = {m: set() for m in modules}
    for m, path in modules.items():
        text = open(path, encoding="utf-8").read()
        text = re.split(r"#\[cfg\(test\)\]", text)[0]
        text = re.sub(r"//[^\n]*", "", text)  # comments and docs name modules, not import them
        # `use crate::{a, b::c}` groups and plain `crate::a::b` paths.
        paths = []
        for group in re.findall(r"crate::\{([^}]*)\}", text):
            paths += [p.strip() for p in group.split(",")]
        paths += re.findall(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text)
        if m:
            parent = m.rsplit("::", 1)[0] if "::" in m else ""
            paths += [
                (parent + "::" if parent else "") + p
                for p in re.findall(r"super::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text)
            ]
        for p in paths:
            parts = [x for x in p.split("::") if x]
            target = None
            for i in range(len(parts), 0, -1):
                cand = "::".join(parts[:i])
                if cand in modules:
                    target = cand
                    break
            if target is not None and target != m and not m.startswith(target + "::") and target != "":
                edges[m].add(target)
    # cycles among modules (Tarjan's strongly connected components)
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
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
                sccs.append(comp)

    for v in edges:
        if v not in index:
            strong(v)
    for comp in sccs:
        found.append(f"{crate}: {' <-> '.join(sorted(comp))}")
for line in found:
    print(line)
print(f"{len(found)} module cycles")
sys.exit(1 if found else 0)
