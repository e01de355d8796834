"""The map, kept: adapters → core → handlers → services, read from the import lines themselves.

Every ``import`` counts (module level, inside functions, under ``TYPE_CHECKING``): what a reader,
an IDE or a type checker sees is what is checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "knowledge")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` imports (``from a.b import c`` is ``a.b.c`` when that is a
    module, else ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    yield full
                elif base in known:
                    yield base


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imported(path, name, known) if m != name} for name, path in known.items()
    }


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_loops() -> None:
    assert cycles(graph()) == []


def test_the_core_imports_no_adapter_and_no_wiring() -> None:
    g = graph()
    core = {m: deps for m, deps in g.items() if m == "bot.core" or m.startswith("bot.core.")}
    assert core  # the check sees the core's modules
    bad = {
        m: sorted(d for d in deps if d.startswith(("bot.adapters", "bot.wiring", "bot.cli")))
        for m, deps in core.items()
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_handlers_know_no_chat_platform_and_no_service_internals() -> None:
    g = graph()
    handler_deps = {m: deps for m, deps in g.items() if m.startswith("handlers")}
    assert handler_deps
    forbidden = ("bot.adapters", "bot.wiring", "bot.runner", "bot.store", "bot.monitor.service")
    bad = {
        m: sorted(d for d in deps if d.startswith(forbidden)) for m, deps in handler_deps.items()
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_services_import_no_adapter_core_app_or_handler() -> None:
    g = graph()
    services = {
        m: deps
        for m, deps in g.items()
        if m.startswith(("bot.monitor", "bot.kernels", "knowledge"))
    }
    forbidden = ("bot.adapters", "bot.core.app", "bot.wiring", "handlers")
    bad = {m: sorted(d for d in deps if d.startswith(forbidden)) for m, deps in services.items()}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_type_ignore_says_why() -> None:
    bare = []
    for name, path in modules().items():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "type: ignore" in line and "type: ignore" not in line.split("#")[-1]:
                continue  # the marker appears before a comment that explains it
            if "type: ignore" in line and "  # " not in line.split("type: ignore", 1)[1]:
                bare.append(f"{name}:{number}")
    assert bare == []
