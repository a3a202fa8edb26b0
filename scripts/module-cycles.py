#!/usr/bin/env python3
"""Fails when two modules of the crate depend on each other, directly or round
a loop.

Reads src/ as text. A module is a file (or a folder with its mod.rs); its
dependencies are the `crate::`, `super::` and `self::` paths of its non-test
code, resolved to the deepest module they name. A use between two modules of
one folder is an edge between those two; a use that crosses folders is an
edge between the two children of the folders' nearest common parent that hold
them, so that `fleet/` depending on `exposition/` while `exposition/` depends
on `fleet/` counts as a loop even when no two files form one. A module using
its own parent (what a folder's mod.rs defines or re-exports) is not counted:
that is the folder's interface. Test code (`tests.rs`, `tests/`, and a
trailing `#[cfg(test)] mod tests { ... }`) is left out.

Prints the edges with --edges; exits 1 and names the loops when there are any.
"""

import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}")
TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod tests\s*\{")


def modules():
    """Module path (tuple) -> file path, for the library crate."""
    found = {}
    for folder, _, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, SRC)[: -len(".rs")].split(os.sep)
            if parts in (["main"], ["lib"]):
                continue
            if parts[-1] == "mod":
                parts = parts[:-1]
            if "tests" in parts:
                continue
            found[tuple(parts)] = path
    return found


def code_of(path):
    text = open(path, encoding="utf-8").read()
    text = TESTS.split(text)[0]
    # Comments name modules too ("see crate::x"): only code counts.
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def resolve(module, root, rest, known):
    """The deepest known module a path names, from `module`."""
    base = list(module)
    if root == "crate":
        base = []
    elif root == "super":
        base = base[:-1]
    names = [n for n in rest.split("::") if n]
    while names and names[0] == "super":
        base = base[:-1]
        names = names[1:]
    target = tuple(base)
    for name in names:
        if target + (name,) in known:
            target = target + (name,)
        else:
            break
    return target


def edges(known):
    found = set()
    for module, path in known.items():
        code = code_of(path)
        targets = []
        for root, prefix, inner in GROUP.findall(code):
            for item in inner.split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    targets.append(resolve(module, root, prefix + "::" + item, known))
                else:
                    targets.append(resolve(module, root, prefix, known))
        for root, rest in PATH.findall(code):
            targets.append(resolve(module, root, rest, known))
        for target in targets:
            if target == module or module[: len(target)] == target:
                continue  # itself, or its own parent
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            if common == len(module):
                continue  # a folder using its own children
            found.add((module[: common + 1], target[: common + 1]))
    return found


def loops(graph):
    """Strongly connected components with more than one module."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(component)

    for node in list(graph):
        if node not in index:
            visit(node)
    return out


def main():
    known = modules()
    found = edges(known)
    graph = {}
    for a, b in found:
        graph.setdefault(a, set()).add(b)
    name = lambda m: "::".join(m) or "crate"
    if "--edges" in sys.argv:
        for a, b in sorted(found):
            print(f"{name(a)} -> {name(b)}")
    cycles = loops(graph)
    for component in cycles:
        print("loop: " + ", ".join(sorted(name(m) for m in component)))
    print(f"{len(known)} modules, {len(found)} dependencies, {len(cycles)} loops")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
