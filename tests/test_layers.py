"""Layers point one way: the import graph of the packages, read from their source (no imports run).

dashboard and CLI -> engine (tuner) -> contracts (the public face ``tuner``); search spaces ->
evaluators' domain models -> shared roofline and catalogs -> contracts. Figure scripts
(``tuner/benchmarks``) sit on top and nothing imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folder -> the import package it installs as (everything installs inside ``tuner``)
PACKAGES = {"tuner": "tuner", "search_spaces": "tuner.search_spaces",
            "evaluators": "tuner.evaluators", "dashboard": "tuner.dashboard"}
#: the domain packages; the rest of ``tuner`` is the engine
DOMAINS = ("tuner.search_spaces", "tuner.evaluators", "tuner.dashboard")
#: the engine's run-time and command-line modules, which no domain may depend on
ENGINE_TOP = ("tuner.runner", "tuner.worker", "tuner.cli", "tuner.ci", "tuner.dashboard_launch",
              "tuner.benchmarks", "tuner.dashboard")


def _name(package: str, rel: Path) -> str:
    parts = rel.parts[:-1] if rel.name == "__init__.py" else rel.with_suffix("").parts
    return ".".join((package, *parts))


MODULES = {_name(pkg, f.relative_to(ROOT / folder)): f
           for folder, pkg in PACKAGES.items() for f in (ROOT / folder).rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Modules ``name`` imports anywhere (functions included; ``TYPE_CHECKING`` blocks not)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    up = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in child.names:  # ``from pkg import submodule`` names the submodule
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _engine(module: str) -> bool:
    return _under(module, ("tuner",)) and not _under(module, DOMAINS)


def _offenders(importers: tuple[str, ...], allowed, skip: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                  if _under(m, importers) and not _under(m, skip)
                  for t in targets if not allowed(t))


def test_the_graph_is_read():
    assert "tuner.evaluators.kernels._tiles" in GRAPH["tuner.search_spaces.kernels"]
    assert "tuner" in GRAPH["tuner.evaluators.kernels.sim"]


def test_evaluators_sit_below_spaces_and_the_engine():
    bad = _offenders(("tuner.evaluators",),
                     lambda t: not _under(t, ("tuner.search_spaces", *ENGINE_TOP)))
    assert not bad, bad


def test_domains_take_their_contracts_from_the_public_face():
    evaluators = _offenders(("tuner.evaluators",), lambda t: not _engine(t) or t == "tuner")
    spaces = _offenders(("tuner.search_spaces",), lambda t: not _engine(t)
                        or t in ("tuner", "tuner._space", "tuner._errors"))
    assert not evaluators + spaces, evaluators + spaces


def test_nothing_imports_the_figure_scripts():
    bad = _offenders(("tuner",), lambda t: not _under(t, ("tuner.benchmarks",)),
                     skip=("tuner.benchmarks",))
    assert not bad, bad


def _unit(module: str) -> str:
    """``tuner.samplers._grid`` -> ``tuner.samplers``: the top-level modules/packages of tuner."""
    return ".".join(module.split(".")[:2])


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in edges.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_no_import_cycle_between_the_modules_of_tuner():
    units = {_unit(m) for m in GRAPH if _engine(m)}
    edges: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        if _unit(m) in units:
            edges.setdefault(_unit(m), set()).update(
                _unit(t) for t in targets if _unit(t) in units and _unit(t) != _unit(m))
    reach = {u: _reachable(u, edges) for u in units}
    cycles = {tuple(sorted(v for v in reach[u] if u in reach[v])) for u in units if u in reach[u]}
    assert not cycles, sorted(cycles)  # each tuple: modules that import each other in a circle
