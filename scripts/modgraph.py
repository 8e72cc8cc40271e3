#!/usr/bin/env python3
"""Module dependency graph of the botward library, and its cycles.

Reads src/**/*.rs (not tests, not `#[cfg(test)]` blocks, not comments) and
draws an edge from module A to module B when A names an item of B: in a `use`
tree, or in a path such as `crate::b::f()`, `super::b::X` or `b::X` after
`use crate::b`. A path through a facade's `pub use` counts for the module
that defines the item, and the `pub use` itself is an edge from the facade.

    scripts/modgraph.py                 edges grouped by module, then cycles
    scripts/modgraph.py --top           edges between top-level modules only
    scripts/modgraph.py --dot           Graphviz text of the full graph
    scripts/modgraph.py --root DIR      a checkout other than this one

Exit status 1 when the graph has a cycle (a strongly connected component of
more than one module), so scripts/test.sh fails on a new one.
"""

import argparse
import os
import re
import sys
from collections import defaultdict


def module_files(src):
    """Maps module path (tuple of names, () for the crate root) to file."""
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel == ["lib"]:
                mods[()] = full
            elif rel == ["main"]:
                continue
            elif rel[-1] == "mod":
                mods[tuple(rel[:-1])] = full
            else:
                mods[tuple(rel)] = full
    return mods


def strip_source(text):
    """Removes comments, string and char literals, and `#[cfg(test)]` items."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1:i] or " "):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    # Drop every item marked #[cfg(test)]: a `mod tests { … }` or a single item.
    while True:
        m = re.search(r"#\[cfg\(test\)\]", code)
        if not m:
            break
        j = m.end()
        brace = code.find("{", j)
        semi = code.find(";", j)
        if brace < 0 or (0 <= semi < brace):
            end = semi + 1
        else:
            depth, k = 0, brace
            while k < len(code):
                if code[k] == "{":
                    depth += 1
                elif code[k] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            end = k + 1
        code = code[: m.start()] + code[end:]
    return code


def split_top(s):
    parts, depth, cur = [], 0, []
    for c in s:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def use_paths(tree, prefix=()):
    """Expands a use tree into (path, alias) pairs."""
    tree = tree.strip()
    m = re.match(r"^(.*?)::\s*\{(.*)\}$", tree, re.S)
    if m or (tree.startswith("{") and tree.endswith("}")):
        head, body = (m.group(1), m.group(2)) if m else ("", tree[1:-1])
        base = prefix + tuple(x.strip() for x in head.split("::") if x.strip())
        for part in split_top(body):
            yield from use_paths(part, base)
        return
    alias = None
    am = re.match(r"^(.*)\s+as\s+(\w+)$", tree, re.S)
    if am:
        tree, alias = am.group(1).strip(), am.group(2)
    segs = prefix + tuple(x.strip() for x in tree.split("::") if x.strip())
    if segs and segs[-1] == "self":
        segs = segs[:-1]
    if segs:
        yield segs, alias or (segs[-1] if segs[-1] != "*" else None)


class Graph:
    def __init__(self, src):
        self.mods = module_files(src)
        self.code = {m: strip_source(open(f, encoding="utf-8").read()) for m, f in self.mods.items()}
        self.uses = {m: list(self._uses(c)) for m, c in self.code.items()}
        self.reexports = defaultdict(dict)  # module -> name -> absolute path
        for m, uses in self.uses.items():
            for segs, alias, public in uses:
                if public and alias:
                    self.reexports[m][alias] = self.absolute(m, segs)

    @staticmethod
    def _uses(code):
        for um in re.finditer(r"(?:^|[;{}\n])\s*(pub(?:\([\w\s:]+\))?\s+)?use\s+([^;]+);", code):
            public = um.group(1) is not None
            for segs, alias in use_paths(um.group(2)):
                yield segs, alias, public

    def absolute(self, here, segs):
        """Resolves `crate::`, `super::` and `self::` against module `here`."""
        segs = list(segs)
        if not segs:
            return ()
        if segs[0] == "crate" or segs[0] == "botward":
            return tuple(segs[1:])
        base = list(here)
        if segs[0] == "self":
            segs = segs[1:]
        elif segs[0] == "super":
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
        elif tuple(here + (segs[0],)) in self.mods:
            pass
        elif (segs[0],) in self.mods:
            base = []
        else:
            return None  # an external crate or std
        return tuple(base) + tuple(segs)

    def definer(self, path, seen=()):
        """The module that defines the item at absolute `path`."""
        if path is None:
            return None
        k = 0
        while k < len(path) and tuple(path[: k + 1]) in self.mods:
            k += 1
        mod = tuple(path[:k])
        rest = path[k:]
        if rest and rest[0] in self.reexports.get(mod, {}) and (mod, rest[0]) not in seen:
            target = self.reexports[mod][rest[0]]
            if target is not None:
                return self.definer(target + tuple(rest[1:]), seen + ((mod, rest[0]),))
        return mod

    def edges(self):
        out = defaultdict(set)
        for m, code in self.code.items():
            # A module's children are in scope by their own names.
            aliases = {c[-1]: c for c in self.mods if len(c) == len(m) + 1 and c[: len(m)] == m}
            for segs, alias, public in self.uses[m]:
                absolute = self.absolute(m, segs)
                if absolute is None:
                    continue
                d = self.definer(absolute)
                if d is not None and d != m:
                    out[m].add(d)
                if alias and tuple(absolute) in self.mods:
                    aliases[alias] = tuple(absolute)
            body = re.sub(r"(?:^|[;{}\n])\s*(pub(?:\([\w\s:]+\))?\s+)?use\s+[^;]+;", "\n", code)
            for pm in re.finditer(r"(?<![\w:])((?:crate|super|self|botward)(?:::\w+)+)", body):
                d = self.definer(self.absolute(m, pm.group(1).split("::")))
                if d is not None and d != m:
                    out[m].add(d)
            for name, target in aliases.items():
                for pm in re.finditer(r"(?<![\w:])" + re.escape(name) + r"((?:::\w+)+)", body):
                    d = self.definer(target + tuple(pm.group(1).split("::")[1:]))
                    if d is not None and d != m:
                        out[m].add(d)
        return out


def sccs(nodes, edges):
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
            result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return [c for c in result if len(c) > 1]


def name(m):
    return "::".join(m) if m else "crate"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--top", action="store_true", help="collapse to top-level modules")
    ap.add_argument("--dot", action="store_true", help="print Graphviz text")
    args = ap.parse_args()
    g = Graph(os.path.join(args.root, "src"))
    edges = g.edges()
    if args.top:
        top = defaultdict(set)
        for a, bs in edges.items():
            for b in bs:
                if a[:1] != b[:1] and b:
                    top[a[:1]].add(b[:1])
        shown = top
    else:
        shown = edges
    if args.dot:
        print("digraph botward {")
        for a in sorted(shown):
            for b in sorted(shown[a]):
                print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
    else:
        for a in sorted(g.mods if not args.top else {m[:1] for m in g.mods}):
            print(f"{name(a)} -> {', '.join(sorted(name(b) for b in shown.get(a, ()))) or '(nothing)'}")
    cycles = sccs(g.mods.keys(), edges)
    print(f"\n{len(g.mods)} modules, {sum(len(b) for b in edges.values())} edges, {len(cycles)} cycles", file=sys.stderr)
    for c in cycles:
        inner = [f"{name(a)} -> {name(b)}" for a in c for b in sorted(edges[a]) if b in c]
        print(f"cycle: {' | '.join(inner)}", file=sys.stderr)
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
