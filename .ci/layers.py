#!/usr/bin/env python3
"""The house rule, checked: a module under src/<layer>/ may use its own layer and the
layers below it (core <- io <- engine <- app). Also reports import cycles between files.

Reads `crate::`, `super::` and `self::` paths in every src file, leaving out
`#[cfg(test)]` items. `sim` and `main.rs`/`lib.rs` are outside the rule; only `app` may
use `sim` (the `demo` and `sim` commands run it).

Usage: layers.py [--graph] [--cycles] [--max-cycle N] | --self-test
Exit 1 when a lower layer reaches up, or a cycle is larger than --max-cycle (default 3).
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
LAYERS = ["core", "io", "engine", "app"]


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def strip_tests(text):
    """Drops `#[cfg(test)]` items (a `mod tests { .. }` block or a single item)."""
    out = []
    i = 0
    while True:
        j = text.find("#[cfg(test)]", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = j + len("#[cfg(test)]")
        # the item ends at the first ';' before any '{', or at the matching '}'
        depth = 0
        while k < len(text):
            c = text[k]
            if c == ";" and depth == 0:
                k += 1
                break
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    k += 1
                    break
            k += 1
        i = k
    return "".join(out)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]"""
    tree = tree.strip()
    depth = 0
    for idx, c in enumerate(tree):
        if c == "{":
            if depth == 0:
                head = tree[:idx]
                inner = tree[idx + 1 : tree.rindex("}")]
                parts, cur, d = [], "", 0
                for ch in inner:
                    if ch == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    if ch == "{":
                        d += 1
                    if ch == "}":
                        d -= 1
                    cur += ch
                parts.append(cur)
                res = []
                for p in parts:
                    if p.strip():
                        res += [head + q for q in expand(p)]
                return res
            depth += 1
    return [re.split(r"\s+as\s+", tree)[0].strip()]


def refs(text):
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super|self)[^;]*);", text):
        try:
            paths += expand(m.group(1))
        except ValueError:
            pass
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text):
        paths.append(m.group(1))
    return paths


def resolve(mod, path, modules):
    segs = [s.strip() for s in path.split("::") if s.strip()]
    if not segs:
        return None
    if segs[0] == "crate":
        base = []
        segs = segs[1:]
    elif segs[0] in ("super", "self"):
        # `self` names the module itself, `super` its parent, in a file or a mod.rs alike
        base = list(mod)
        if segs[0] == "self":
            segs = segs[1:]
        while segs and segs[0] == "super":
            base = base[:-1]
            segs = segs[1:]
    else:
        return None
    full = base + segs
    for n in range(len(full), 0, -1):
        if tuple(full[:n]) in modules:
            return tuple(full[:n])
    return None


def self_test():
    """The guard must fail on an upward import and a 4-file cycle, and pass a clean tree."""
    import tempfile

    def tree(files):
        d = tempfile.mkdtemp()
        for rel, text in files.items():
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").write(text)
        return d

    clean = {"core/a.rs": "pub fn f() {}", "io/b.rs": "use crate::core::a;\n",
             "engine/c.rs": "use crate::io::b;\n#[cfg(test)]\nmod tests { use crate::app::d; }\n",
             "app/d.rs": "use crate::engine::c;\nuse crate::sim::x;\n", "sim/x.rs": ""}
    up = dict(clean, **{"io/b.rs": "use crate::{core::a, engine::c};\n"})
    ring = dict(clean, **{f"core/r{i}.rs": f"use super::r{(i + 1) % 4};\n" for i in range(4)})
    sim = dict(clean, **{"engine/c.rs": "fn g() { crate::sim::x::y(); }\n"})
    results = {name: check(tree(files), []) for name, files in
               [("clean", clean), ("up", up), ("ring", ring), ("sim", sim)]}
    expected = {"clean": 0, "up": 1, "ring": 1, "sim": 1}
    if results != expected:
        print(f"layers self-test failed: {results}, expected {expected}")
        return 1
    print("layers self-test: ok")
    return 0


def main():
    args = sys.argv[1:]
    if "--self-test" in args:
        return self_test()
    return check(SRC, args)


def check(src, args):
    max_cycle = 3
    if "--max-cycle" in args:
        max_cycle = int(args[args.index("--max-cycle") + 1])
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(p, src)] = p
    modules = set(files)
    graph = {}
    for mod, p in files.items():
        if mod == ():
            continue
        text = strip_comments(strip_tests(open(p).read()))
        deps = set()
        for r in refs(text):
            t = resolve(mod, r, modules)
            if t is not None and t != mod and t != ():
                deps.add(t)
        graph[mod] = deps

    bad = []
    for mod, deps in sorted(graph.items()):
        top = mod[0]
        if top not in LAYERS:
            continue
        for d in sorted(deps):
            if d[0] == "sim" and top != "app":
                bad.append(f"{'::'.join(mod)} -> {'::'.join(d)} (the simulator is not a layer)")
            elif d[0] in LAYERS and LAYERS.index(d[0]) > LAYERS.index(top):
                bad.append(f"{'::'.join(mod)} ({top}) -> {'::'.join(d)} ({d[0]})")
            elif d[0] not in LAYERS and d[0] != "sim":
                bad.append(f"{'::'.join(mod)} ({top}) -> {'::'.join(d)} (outside the layers)")
    outside = sorted(m for m in graph if m[0] not in LAYERS + ["sim"])

    # Tarjan's strongly connected components
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)

    if "--graph" in args:
        for mod, deps in sorted(graph.items()):
            print("::".join(mod), "->", ", ".join("::".join(d) for d in sorted(deps)))
    cycles = [c for c in sccs if not all(m[0] == "sim" for m in c)]
    for c in sorted(cycles, key=len, reverse=True):
        if "--cycles" in args or len(c) > max_cycle:
            print(f"cycle of {len(c)}: " + ", ".join("::".join(m) for m in c))
    for b in bad:
        print("reaches up:", b)
    if outside:
        print("outside the layers:", ", ".join("::".join(m) for m in outside))
    big = [c for c in cycles if len(c) > max_cycle]
    if bad or big or outside:
        print(f"layers: {len(bad)} upward imports, {len(big)} cycles over {max_cycle} files, "
              f"{len(outside)} modules outside the layers")
        return 1
    print(f"layers: clean ({len(graph)} modules; largest cycle {max((len(c) for c in cycles), default=1)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
