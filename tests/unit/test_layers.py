"""Dependencies point one way. The test reads every module of farm/, actors/ and deploy/ with `ast`
(nothing is imported), collects its imports (module-level, function-level ("lazy") and
`if TYPE_CHECKING:` ones) and fails on

- an import cycle among module-level imports, and
- an import, of any kind, that points up a layer (`LAYERS` below), unless `UPWARD_ALLOWED` names
  it with the reason.

The CLI is the top layer, so its lazy imports of deploy/ and actors/ point down: they are lazy
only so `farm --help` starts without Ray. The README's "Architecture" section draws these layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("farm", "actors", "deploy")

LAYERS: dict[str, int] = {
    # 0: vocabulary: the wire types, config, errors, flags, and pure helpers on them
    "farm.wire": 0,
    "farm.config": 0,
    "farm.errors": 0,
    "farm.flags": 0,
    "farm.deadlines": 0,
    "farm.jsonl": 0,
    "farm.answers": 0,
    "farm.stats": 0,
    "farm.auth": 0,
    "farm.batching": 0,
    "farm.progress": 0,
    "farm.probe_names": 0,
    "farm.defaults": 0,
    "farm.prompts": 0,
    # 1: what a judge calls: quota, cache, Bedrock (and its emulator), prompts and parsing, and
    #    the runtime screening the ensemble applies (injection, defences, length, score maps)
    "farm.ratelimit": 1,
    "farm.cache": 1,
    "farm.cost": 1,
    "farm.bedrock": 1,
    "farm.emulator": 1,
    "farm.prompting": 1,
    "farm.parsing": 1,
    "farm.ranking": 1,
    "farm.maxtokens": 1,
    "farm.screening": 1,
    "farm.screening.classifier": 1,
    "farm.screening.languages": 1,
    "farm.screening.training": 1,
    # 2: the judges
    "farm.judges": 2,
    "farm.testing": 2,
    # 3: the ensemble, its aggregation, and the in-process backend that builds it
    "farm.ensemble": 3,
    "farm.aggregate": 3,
    "farm.cascade": 3,
    "farm.embedded": 3,
    # 4: what uses the ensemble: analysis (probes, bias, canaries, fitting) and offline scoring
    "farm.analysis": 4,
    "farm.offline": 4,
    "farm.scorefile": 4,
    "farm.scoreworkers": 4,
    # 5: what a trainer imports: the client, the adapters, and the package's public API
    "farm.client": 5,
    "farm.adapters": 5,
    "farm": 5,
    # 6: Ray: actors and the Serve application
    "actors": 6,
    "deploy": 6,
    # 7: the command line composes everything
    "farm.cli": 7,
}

UPWARD_ALLOWED: dict[tuple[str, str], str] = {}
"""(importer, imported) -> why an upward import is acceptable. Empty: none is."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    kind: str
    """`module` (runs at import), `lazy` (inside a function) or `typing` (under TYPE_CHECKING)."""


def module_sources(repo: Path = REPO) -> dict[str, str]:
    """Dotted module name -> source, for every .py file under `ROOTS`."""
    out: dict[str, str] = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            parts = path.relative_to(repo).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path.read_text(encoding="utf-8")
    return out


def _resolve(name: str, modules: Mapping[str, str]) -> str | None:
    """The project module `name` refers to (a name imported from a module resolves to the module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if not level:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(name: str, source: str, modules: Mapping[str, str]) -> list[Import]:
    """The project imports in one module's source, each with its line and kind."""
    tree = ast.parse(source)
    is_package = name in ROOTS or any(m.startswith(name + ".") for m in modules)
    found: list[Import] = []

    def add(target: str, line: int, kind: str) -> None:
        resolved = _resolve(target, modules)
        if resolved and resolved != name:
            found.append(Import(name, resolved, line, kind))

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, "lazy" if kind == "module" else kind)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), kind)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno, kind)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(child.module, child.level, name, is_package)
                for alias in child.names:
                    add(f"{base}.{alias.name}", child.lineno, kind)
            else:
                visit(child, kind)

    visit(tree, "module")
    return list(dict.fromkeys(found))  # `from m import a, b` is one import of m


def layer_of(module: str) -> int | None:
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else LAYERS[best]


def upward_imports(imports: list[Import]) -> list[str]:
    """One message per import that points up a layer (any kind) and is not in `UPWARD_ALLOWED`."""
    problems = []
    for imp in imports:
        src, dst = layer_of(imp.importer), layer_of(imp.imported)
        if src is None or dst is None or dst <= src or (imp.importer, imp.imported) in UPWARD_ALLOWED:
            continue
        problems.append(
            f"{imp.importer} (layer {src}) imports {imp.imported} (layer {dst}) at line {imp.line} ({imp.kind} import): "
            f"it points up a layer; move what it needs down, or import it from the layer above"
        )
    return problems


def cycles(imports: list[Import]) -> list[list[str]]:
    """Every strongly connected component (size > 1) of the module-level import graph, each as one
    cycle through it, starting and ending at the same module."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.kind == "module":
            graph.setdefault(imp.importer, set()).add(imp.imported)
            graph.setdefault(imp.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graph has ~150 nodes, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
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
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_one_cycle(sorted(c), graph) for c in components]


def _one_cycle(component: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    members, start = set(component), component[0]
    paths: dict[str, list[str]] = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def all_imports(sources: Mapping[str, str]) -> Iterator[Import]:
    for name, source in sources.items():
        yield from imports_of(name, source, sources)


def _describe_cycle(cycle: list[str]) -> str:
    return "import cycle: " + " -> ".join(f"{m} (layer {layer_of(m)})" for m in cycle)


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return module_sources()


def test_every_module_has_a_layer(sources: dict[str, str]) -> None:
    missing = [m for m in sources if layer_of(m) is None]
    assert not missing, f"modules without a layer (add their prefix to LAYERS in {__file__}): {missing}"


def test_no_import_points_up_a_layer(sources: dict[str, str]) -> None:
    problems = upward_imports(list(all_imports(sources)))
    assert not problems, "\n".join(problems)


def test_no_cycle_among_module_level_imports(sources: dict[str, str]) -> None:
    found = cycles(list(all_imports(sources)))
    assert not found, "\n".join(_describe_cycle(c) for c in found)


def test_the_walk_sees_every_kind_of_import(sources: dict[str, str]) -> None:
    """The checks above would pass vacuously on a walk that found nothing; these edges exist."""
    imports = {(i.importer, i.imported, i.kind) for i in all_imports(sources)}
    assert ("farm.ensemble", "farm.config", "module") in imports
    assert ("farm.cli", "deploy.app", "lazy") in imports  # the CLI composes the Serve app, lazily
    assert ("farm.cli", "actors.rescore", "lazy") in imports
    assert ("farm.embedded", "farm.ensemble", "typing") in imports
    assert ("farm.config", "farm.probe_names", "module") in imports


def test_the_checks_fail_on_the_old_config_to_probes_cycle(sources: dict[str, str]) -> None:
    """farm.config once validated probe names by importing the probes (which import the ensemble,
    which imports the config) inside a validator: 21 modules in one cycle. Put it back."""
    lazy = dict(sources)
    lazy["farm.config"] += "\n\ndef _known_probes(probes):\n    from farm.analysis.probes import PROBES\n    return PROBES\n"
    (problem,) = upward_imports([i for i in all_imports(lazy) if i.importer == "farm.config"])
    assert problem.startswith("farm.config (layer 0) imports farm.analysis.probes (layer 4)") and "lazy import" in problem

    eager = dict(sources)
    eager["farm.config"] += "\nfrom farm.analysis.probes import PROBES\n"
    found = cycles(list(all_imports(eager)))
    assert len(found) == 1
    assert {"farm.config", "farm.analysis.probes", "farm.ensemble"} <= set(found[0]) and found[0][0] == found[0][-1]
    assert "farm.config (layer 0) -> " in _describe_cycle(found[0])


def test_relative_imports_resolve() -> None:
    modules = {"farm": "", "farm.judges": "from .base import x\n", "farm.judges.base": "from ..wire import y\n", "farm.wire": ""}
    found = {(i.importer, i.imported) for i in all_imports(modules)}
    assert found == {("farm.judges", "farm.judges.base"), ("farm.judges.base", "farm.wire")}


def test_probe_names_in_the_config_are_the_probes() -> None:
    """The config validates names from farm.probe_names so it need not import the probes."""
    from farm.analysis.probes import PROBES
    from farm.probe_names import PROBE_NAMES

    assert tuple(PROBES) == PROBE_NAMES


def test_the_cli_imports_ray_layers_only_inside_commands(sources: dict[str, str]) -> None:
    """deploy/ and actors/ import Ray at module level; the CLI reaches them only from the commands
    that need them, so `farm --help` and the Ray-free commands never import Ray."""
    eager = [
        f"farm.cli imports {i.imported} (layer {layer_of(i.imported)}) at line {i.line} at module level: import it inside the command"
        for i in all_imports(sources)
        if i.importer == "farm.cli" and i.kind == "module" and i.imported.split(".")[0] in ("actors", "deploy")
    ]
    assert not eager, "\n".join(eager)
