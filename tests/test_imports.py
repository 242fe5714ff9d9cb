"""The way through the code is one-directional: no import cycle inside tsm/ (module-level and
function-level imports alike), and no library module imports an entry point or a CLI module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# modules that are a command line's work; library code below them never imports them
CLI_MODULES = {"tsm.evaluation_cli", "tsm.predict", "tsm.serve", "tsm.report", "tsm.multirun"}
ENTRY_POINTS = {"train", "evaluate"}


def modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "tsm").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                if t in ENTRY_POINTS:
                    graph[name].add(t)
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t != "tsm" and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_in_tsm():
    graph = import_graph()
    assert len(graph) > 40 and "tsm.models.loading" in graph["tsm.pipeline"] | graph["tsm.models"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_library_modules_import_no_entry_point_or_cli_module():
    bad = {(m, t) for m, targets in import_graph().items() if m not in CLI_MODULES
           for t in targets if t in CLI_MODULES | ENTRY_POINTS}
    assert not bad, sorted(bad)


def test_bottom_modules_import_nothing_above_them():
    graph = import_graph()
    for bottom in ("tsm.io", "tsm.atomic", "tsm.stats", "tsm.models.export"):
        assert graph[bottom] <= {"tsm.atomic"}, (bottom, graph[bottom])
