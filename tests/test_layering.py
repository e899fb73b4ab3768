"""The import contract of ../shared/DESIGN.md ("Dependencies point one way"), read from the source with ``ast``.

- every module of llm_api/ belongs to one layer of ``LAYERS`` (a new module must be placed: it fails here until it is);
- a module imports only from its own layer or lower ones;
- no circles between modules; imports under ``if TYPE_CHECKING:`` and inside functions count like any other;
- only the web layer imports ``aiohttp.web`` (or any ``aiohttp.web_*`` module) or ``aiohttp_sse``;
  ``import aiohttp`` for the ClientSession is fine everywhere.

Each failure lists every import that breaks the rule, as ``file:line``, so the fix can start from the message.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llm_api"

#: Highest first. A name stands for the module and, for a package, every module under it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # HTTP and the process: the only layer that sees aiohttp.web, a Request or a Response. cli.py and app.py build
    # and run the service, server/ holds the middlewares, routing, workers and the SSE writer, api/ one module per
    # resource; app_keys.py is the typed keys of the aiohttp application and request (it names every service's type).
    ("web", ("llm_api.__main__", "llm_api.cli", "llm_api.app", "llm_api.app_keys", "llm_api.server", "llm_api.api")),
    # Use cases: plain Python in, plain Python out (async iterators for streams). user_settings.py, rate_limit.py
    # and readiness.py are services of the same kind as auth/ and conversations/ (the cached settings of a user,
    # the per-principal budget, the checks /readyz runs), built by app.py and used by server/ and api/.
    (
        "use cases",
        (
            "llm_api.chat",
            "llm_api.auth",
            "llm_api.conversations",
            "llm_api.user_settings",
            "llm_api.rate_limit",
            "llm_api.readiness",
        ),
    ),
    # Adapters to what is outside the process: providers (one adapter per wire protocol, registry, routing, upstream
    # calls), the database (pool, tables, one query module per resource, paging) and the embedded PostgreSQL.
    ("adapters", ("llm_api.providers", "llm_api.db", "llm_api.embedded_pg")),
    # Logging, tracing, metrics: they receive facts from every layer above and call back into none of them
    # (in particular not into providers: an upstream error's status is a field of ApiError).
    ("observability", ("llm_api.observability",)),
    # What every layer may use: the generated models and their helpers (schemas/), the spec and its checks
    # (contract/), the error hierarchy, Settings from the environment, and small leaf helpers: public ids,
    # the keyring (crypto.py), the running build (build_info.py), fast JSON (json_codec.py).
    (
        "foundation",
        (
            "llm_api",
            "llm_api.schemas",
            "llm_api.contract",
            "llm_api.errors",
            "llm_api.config",
            "llm_api.ids",
            "llm_api.crypto",
            "llm_api.build_info",
            "llm_api.json_codec",
        ),
    ),
)
#: Only these layers may import aiohttp's web module or aiohttp_sse.
WEB_LAYERS = frozenset({"web"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a submodule when ``from package import submodule``)
    where: str  # file:line
    how: str  # the statement, for messages
    guarded: bool  # under ``if TYPE_CHECKING:``

    def describe(self) -> str:
        return f"{self.where}: {self.how}" + (" (under TYPE_CHECKING)" if self.guarded else "")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


@cache
def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in modules().items()}


def layer_of(module: str) -> str | None:
    """The layer of the longest name in LAYERS that is the module or a package holding it."""
    best = None
    for layer, names in LAYERS:
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (layer, name)
    return best[0] if best else None


def rank(layer: str) -> int:
    return [name for name, _ in LAYERS].index(layer)


def _guarded_nodes(tree: ast.Module) -> set[int]:
    """The ids of every node under an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                guarded.update(id(child) for child in ast.walk(statement))
    return guarded


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> Iterator[Import]:
    """Every import statement of every module (module level, functions, TYPE_CHECKING blocks), any target."""
    for module, tree in trees().items():
        path = modules()[module].relative_to(ROOT)
        guarded = _guarded_nodes(tree)
        for node in ast.walk(tree):
            where = f"{path}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, where, f"import {alias.name}", id(node) in guarded)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node)
                by_target: dict[str, list[str]] = {}
                for alias in node.names:
                    # `from llm_api.db import providers` imports the submodule; `from llm_api.errors import X` the module.
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base
                    by_target.setdefault(target, []).append(alias.name)
                for target, names in by_target.items():
                    yield Import(module, target, where, f"from {base} import {', '.join(names)}", id(node) in guarded)


def internal_imports() -> list[Import]:
    return [edge for edge in imports() if edge.target == PACKAGE or edge.target.startswith(PACKAGE + ".")]


# ------------------------------------------------------------------------------------------------- the rules


def test_every_module_has_a_layer():
    unplaced = [
        f"{modules()[module].relative_to(ROOT)}: {module} is in no layer of LAYERS (tests/test_layering.py)"
        for module in modules()
        if layer_of(module) is None
    ]
    unknown = [
        f"LAYERS names {name}, which is no module of {PACKAGE}"
        for _, names in LAYERS
        for name in names
        if not any(m == name or m.startswith(name + ".") for m in modules())
    ]
    _report("modules and layers do not match", unplaced + unknown)


def test_imports_point_down_the_layers():
    problems = []
    for edge in internal_imports():
        source, target = layer_of(edge.source), layer_of(edge.target)
        if edge.target not in modules():
            problems.append(f"{edge.describe()}: {edge.target} is no module of {PACKAGE}")
        elif source is not None and target is not None and rank(target) < rank(source):
            problems.append(f"{edge.describe()}: {edge.source} ({source}) imports {edge.target} ({target}), a higher layer")
    _report("imports against the layers (a module may import from its own layer or lower ones)", problems)


def test_no_import_circles():
    graph: dict[str, dict[str, Import]] = {module: {} for module in modules()}
    for edge in internal_imports():
        if edge.target in graph and edge.target != edge.source:
            graph[edge.source].setdefault(edge.target, edge)
    problems = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            cycle = _a_cycle(graph, component)
            problems.append(
                f"{' -> '.join([*cycle, cycle[0]])}:\n"
                + "\n".join(f"    {graph[a][b].describe()}" for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True))
                + (
                    f"\n    (the same tangle also holds {', '.join(sorted(set(component) - set(cycle)))})"
                    if len(component) > len(cycle)
                    else ""
                )
            )
    _report("import circles (imports under TYPE_CHECKING and inside functions count)", problems)


def test_only_the_web_layer_imports_aiohttp_web_or_aiohttp_sse():
    problems = []
    for edge in imports():
        if layer_of(edge.source) in WEB_LAYERS or not _is_web(edge):
            continue
        problems.append(f"{edge.describe()}: {edge.source} ({layer_of(edge.source)}) may not import aiohttp.web or aiohttp_sse")
    for module, tree in trees().items():  # `import aiohttp` and then `aiohttp.web.Response`
        if layer_of(module) in WEB_LAYERS:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "aiohttp"
                and node.attr.startswith("web")
            ):
                problems.append(
                    f"{modules()[module].relative_to(ROOT)}:{node.lineno}: aiohttp.{node.attr}: "
                    f"{module} ({layer_of(module)}) may not use aiohttp.web"
                )
    _report("aiohttp.web or aiohttp_sse below the web layer", problems)


def _report(rule: str, problems: list[str]) -> None:
    """Fail with one line per offending import (no traceback: the lines are the message)."""
    if problems:
        pytest.fail(f"{rule}:\n" + "\n".join(f"  {problem}" for problem in problems), pytrace=False)


def _is_web(edge: Import) -> bool:
    target = edge.target
    if target == "aiohttp_sse" or target.startswith("aiohttp_sse."):
        return True
    if target.startswith("aiohttp.web"):  # aiohttp.web, aiohttp.web_request, aiohttp.web_exceptions ...
        return True
    # `from aiohttp import web` / `from aiohttp import web_exceptions`: the target is the package itself.
    return target == "aiohttp" and edge.how.startswith("from aiohttp import web")


# ------------------------------------------------------------------------------------------------- graph helpers


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit to mind)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
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
                components.append(sorted(component))
    return components


def _a_cycle(graph: dict[str, dict[str, Import]], component: list[str]) -> list[str]:
    """A shortest circle through the first module of a strongly connected component (breadth first)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no circle through {start} in {component}")
