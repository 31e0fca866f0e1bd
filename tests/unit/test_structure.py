"""The package's shape holds: no import cycle among the modules of ``src/spire_fabric``, and
no class of the installer (``runtime/``, ``deploy/``) grows past 400 lines.

Why a static graph (``ast``) and not ``sys.modules`` after importing: a cycle hides behind a
lazy import inside a function or under ``TYPE_CHECKING`` and still ties the modules together
(a change to one reaches the other; the type checker follows it). So every ``import`` in a
module counts, wherever it sits. The generated stubs under ``spire_fabric/proto`` are left
out: they are ``scripts/gen-protos`` output and import nothing of ours.

Work still under way elsewhere is named in :data:`ALLOWED_CYCLES` and
:data:`ALLOWED_LARGE_CLASSES`. Both lists are exact: a cycle or a class not on them fails,
and an entry that no longer matches anything fails too, so an entry goes as soon as its
work is done and the lists cannot rot.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "spire_fabric"
ROOT = "spire_fabric"
EXCLUDED = ("spire_fabric.proto",)
INSTALLER = ("spire_fabric.runtime", "spire_fabric.deploy")
MAX_CLASS_LINES = 400

# No cycle and no oversized installer class is allowed: issue 20's installer core landed.
# An entry here would name a cycle (its exact module set) or a class ("module.Class") that
# is accepted for a while, with why; both lists are checked to be exact.
ALLOWED_CYCLES: list[frozenset[str]] = []
ALLOWED_LARGE_CLASSES: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {
        name: path
        for name, path in found.items()
        if not any(name == e or name.startswith(e + ".") for e in EXCLUDED)
    }


def imported(name: str, is_package: bool, source: str, modules: Collection[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` imports, anywhere in its body
    (functions and ``TYPE_CHECKING`` blocks included). ``import a.b`` names ``a.b``;
    ``from a import n`` names ``a.n`` when that is a module, else ``a``; relative imports are
    resolved against the module's package. A package means its ``__init__``. That Python
    runs the parents' ``__init__`` first is how it imports, not a dependency the code
    states, so it makes no edge."""
    package = name if is_package else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                named.add(submodule if submodule in modules else origin)
    return named & set(modules)


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (read once per run; do not change it)."""
    modules = _modules()
    return {
        name: imported(name, path.name == "__init__.py", path.read_text(), modules)
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module, and modules that import
    themselves (Tarjan's algorithm, iterative so depth is no concern)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(frozenset(component))
    return found


def large_classes() -> dict[str, int]:
    """``module.Class`` -> its length in lines, for the installer's classes over the limit."""
    out: dict[str, int] = {}
    for name, path in _modules().items():
        if not any(name == room or name.startswith(room + ".") for room in INSTALLER):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    out[f"{name}.{node.name}"] = lines
    return out


def _show(component: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(component)) + "}"


def cycle_problems(found: list[frozenset[str]], allowed: list[frozenset[str]]) -> list[str]:
    """One line per cycle not allowed, and per allowed entry that matches no cycle."""
    problems = [f"import cycle: {_show(c)}" for c in found if c not in allowed]
    problems += [
        f"ALLOWED_CYCLES entry matches no cycle any more, remove it: {_show(c)}"
        for c in allowed
        if c not in found
    ]
    return problems


def class_problems(found: Mapping[str, int], allowed: set[str]) -> list[str]:
    """One line per class over the limit and not allowed, and per allowed entry that is
    within the limit (or gone)."""
    problems = [
        f"{name} is {lines} lines (limit {MAX_CLASS_LINES})"
        for name, lines in sorted(found.items())
        if name not in allowed
    ]
    problems += [
        f"ALLOWED_LARGE_CLASSES entry is within the limit now, remove it: {name}"
        for name in sorted(allowed - set(found))
    ]
    return problems


def test_no_import_cycle_among_the_package_modules() -> None:
    problems = cycle_problems(cycles(import_graph()), ALLOWED_CYCLES)
    assert not problems, "\n".join(problems)


def test_no_installer_class_is_over_the_line_limit() -> None:
    problems = class_problems(large_classes(), ALLOWED_LARGE_CLASSES)
    assert not problems, "\n".join(problems)


def test_value_formatting_imports_nothing_of_the_package() -> None:
    # identity (the lowest layer) formats its values through _html, so _html must stay
    # below it: a view that needs a higher layer belongs to that layer (see render._views).
    assert import_graph()["spire_fabric._html"] == set()


# -- the checker itself ---------------------------------------------------------------------

MODULES = {"p", "p.a", "p.b", "p.sub", "p.sub.c", "p.sub.d"}


def test_imports_in_functions_and_under_type_checking_count_relative_ones_resolved() -> None:
    source = """
from typing import TYPE_CHECKING
import os
if TYPE_CHECKING:
    from . import b
def f():
    from ..a import thing
    import p.sub
"""
    assert imported("p.sub.c", False, source, MODULES) == {"p.sub", "p.a"}
    assert imported("p.sub", True, "from . import d\nfrom .c import x\n", MODULES) == {
        "p.sub.d",
        "p.sub.c",
    }
    # a name of a package is its __init__; a submodule named in `from` is the submodule
    assert imported("p.a", False, "from p.sub import d, name\n", MODULES) == {"p.sub.d", "p.sub"}


def test_cycles_are_components_of_two_or_more_and_self_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}, "f": set()}
    assert sorted(map(sorted, cycles(graph))) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_allow_lists_are_exact_both_ways() -> None:
    ab, cd = frozenset({"a", "b"}), frozenset({"c", "d"})
    assert cycle_problems([ab], [ab]) == []
    assert cycle_problems([ab, cd], [ab]) == ["import cycle: {c, d}"]
    assert cycle_problems([], [ab]) == [
        "ALLOWED_CYCLES entry matches no cycle any more, remove it: {a, b}"
    ]
    # a cycle that grew or shrank is a different cycle: flagged, and its old entry too
    assert len(cycle_problems([frozenset({"a", "b", "c"})], [ab])) == 2
    assert class_problems({"m.Big": 401}, {"m.Big"}) == []
    assert class_problems({"m.Big": 401}, set()) == ["m.Big is 401 lines (limit 400)"]
    assert class_problems({}, {"m.Big"}) == [
        "ALLOWED_LARGE_CLASSES entry is within the limit now, remove it: m.Big"
    ]
