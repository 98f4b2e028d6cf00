"""The import graph of src/ has no cycle, and the emulator's tests need nothing but it.

import-linter (`just lint`, contracts in pyproject.toml) holds the layers and which package
may import which; it has no contract for cycles between modules, so this reads every module
under src/ with `ast` and walks the graph itself. Every import statement is an edge: those
under `if TYPE_CHECKING:` (a cycle only the type checker follows is still one a reader has
to hold in their head; the bench's run.py <-> compare.py was one) and those inside
functions, which the code uses to load something only when it is needed (the emulator's
`send-event` without the SDK), never to hide a cycle. Imports by name at run time
(`importlib.import_module`: the command line's dispatch, the emulator's lazy names) are not
statements and are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGES = ("h2s_checkout", "stripe_checkout_emulator", "h2s_bench")


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {
        module_name(path, SRC): path
        for package in PACKAGES
        for path in sorted((SRC / package).rglob("*.py"))
    }


def _all_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def imported(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]
) -> set[str]:
    """The modules of ``known`` this statement loads, or the top-level names it imports
    when ``known`` is empty."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        if node.level:
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            base = ".".join(package[: len(package) - node.level + 1])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        # `from package import module` loads the module; `from module import name`, the module.
        names = {
            f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
            for alias in node.names
        }
    if not known:
        return {name.split(".")[0] for name in names}
    return {name for name in names if name in known}


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set()
        for node in _all_imports(tree):
            graph[name] |= imported(node, name, is_package, known) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm), each
    as one cycle through its modules, for the message."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                found.append(_cycle_within(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One path from the first module back to itself, through the component only."""
    start = min(component)
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & component):
            if w == start:
                return [*path, start]
            if w not in seen:
                seen.add(w)
                paths.append([*path, w])
    return sorted(component)


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert {"h2s_checkout.app", "stripe_checkout_emulator.app", "h2s_bench.run"} <= set(graph)
    assert "h2s_checkout.bootstrap" in graph["h2s_checkout.app"]
    assert "stripe_checkout_emulator.state" in graph["stripe_checkout_emulator.app"]  # relative
    assert "h2s_bench.compare" in graph["h2s_bench.run"]  # from package import module


def test_no_import_cycle_in_any_package() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_a_cycle_is_found_where_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_emulators_tests_import_only_the_emulator() -> None:
    """tests/emulator is the emulator's own suite: the emulator, the SDK, its own helpers,
    nothing of the service, the bench or the service's test helpers."""
    tests = ROOT / "tests"
    own = {path.stem for path in (tests / "emulator").glob("*.py")}
    others = {path.stem for path in [*tests.glob("*.py"), *(tests / "e2e").glob("*.py")]}
    forbidden = {"h2s_checkout", "h2s_bench"} | (others - own)
    wrong = {
        f"{path.name}: {name}"
        for path in sorted((tests / "emulator").glob("*.py"))
        for node in _all_imports(ast.parse(path.read_text(), str(path)))
        for name in imported(node, path.stem, False, set())
        if name in forbidden
    }
    assert wrong == set()
