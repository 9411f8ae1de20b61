"""The folders' layering, checked on the import graph computed from the sources.

Every ``import`` and ``from … import`` of the project's packages counts, at module level or
inside a function (a lazy import is still a dependency). Data flows one way through the
folders: ``stream`` (events, formats, Kafka clients, brokers) and ``graph_store`` at the bottom,
``models`` above the store, ``workers`` hosting them, ``bench`` measuring the workers, and the
command line (``workers.cli``) on top.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "graph_store", "models", "workers", "bench")
KAFKA_LIBRARIES = ("aiokafka", "kafka", "faust", "mode", "confluent_kafka")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(path: Path, module: str, is_package: bool, modules: set[str] | dict) -> set[str]:
    """Every absolute name ``path`` imports: ``a.b`` for ``import a.b``; for ``from a.b import c``,
    ``a.b.c`` where that is a module (importing a submodule is a dependency on it, not on its
    package's ``__init__``) and ``a.b`` otherwise."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """module → the project modules it imports (resolved to modules that exist)."""
    sources = _sources()
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in sources.items():
        for name in _imports(path, module, path.name == "__init__.py", sources):
            if name in sources and name != module:
                edges[module].add(name)
        edges.setdefault(module, set())
    return edges


@pytest.fixture(scope="module")
def external() -> dict[str, set[str]]:
    """module → the top-level names of the libraries it imports."""
    out: dict[str, set[str]] = {}
    sources = _sources()
    for module, path in sources.items():
        names = _imports(path, module, path.name == "__init__.py", sources)
        out[module] = {n.split(".")[0] for n in names if n and n.split(".")[0] not in PACKAGES}
    return out


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _violations(graph: dict[str, set[str]], source: str, forbidden: tuple[str, ...],
                allowed: tuple[str, ...] = ()) -> list[str]:
    def inside(module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if inside(m, (source,)) and not inside(m, allowed)
                  for d in deps if inside(d, forbidden))


def test_the_graph_is_computed_from_every_source(graph) -> None:
    assert len(graph) > 100
    assert "workers.score.loop" in graph and "stream.kafka.batch_consumer" in graph["workers.score.loop"]


def test_the_import_graph_has_no_cycle(graph) -> None:
    assert _strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stream_and_graph_store_import_nothing_above_them(graph) -> None:
    assert _violations(graph, "stream", ("graph_store", "models", "workers", "bench")) == []
    assert _violations(graph, "graph_store", ("stream", "models", "workers", "bench")) == []


def test_models_import_no_workers_and_no_kafka(graph, external) -> None:
    assert _violations(graph, "models", ("workers", "bench", "stream.kafka", "stream.brokers")) == []
    kafka = sorted(f"{m} -> {lib}" for m, libs in external.items() if m.startswith("models")
                   for lib in libs if lib in KAFKA_LIBRARIES)
    assert kafka == []


def test_the_event_schemas_and_file_readers_are_free_of_kafka(graph, external) -> None:
    pure = ("stream.events", "stream.formats", "stream.simulator")
    for package in pure:
        assert _violations(graph, package, ("stream.kafka", "stream.brokers")) == []
    kafka = sorted(f"{m} -> {lib}" for m, libs in external.items()
                   if any(m == p or m.startswith(p + ".") for p in pure) for lib in libs if lib in KAFKA_LIBRARIES)
    assert kafka == []


def test_production_code_imports_no_recipe(graph) -> None:
    """The offline recipes use the library; the library, the online model and the workers never
    import a recipe (the command line and the benchmarks may)."""
    for package in ("models.live", "models.baselines", "models.incremental", "models.training", "models.data"):
        assert _violations(graph, package, ("models.recipes",)) == []
    assert _violations(graph, "workers", ("models.recipes",), allowed=("workers.cli",)) == []


def test_only_the_command_line_reaches_the_benchmarks(graph) -> None:
    assert _violations(graph, "workers", ("bench",), allowed=("workers.cli",)) == []
    assert _violations(graph, "workers", ("workers.cli",), allowed=("workers.cli",)) == []


def test_roles_share_only_the_runtime(graph) -> None:
    """A role's process imports the runtime, never another role's package."""
    roles = ("workers.ingest", "workers.score", "workers.train", "workers.refresh")
    for role in roles:
        others = tuple(r for r in roles if r != role) + ("workers.demo",)
        assert _violations(graph, role, others) == []
    assert _violations(graph, "workers.runtime", roles + ("workers.demo",)) == []
