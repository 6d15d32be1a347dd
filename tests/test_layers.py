"""The layers of docs/architecture.md, held by walking every import of `mauto/` (with `ast`, lazy imports
inside functions included): a module imports only its own layer or the ones below, and no two modules
import each other, directly or round a loop. The upward imports that remain are listed by name: the list
may only shrink (the driver's ports, issue 11, are to remove them)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mauto"

# Layer 1 is the top. The longest matching prefix decides.
LAYERS = {
    1: ["mauto.cli", "mauto.__main__"],
    2: ["mauto.lint", "mauto.simulate", "mauto.scenarios", "mauto.deploy", "mauto.daemon", "mauto.graph",
        "mauto.report", "mauto.serve", "mauto.stats", "mauto.diff", "mauto.gitref"],
    3: ["mauto.driver"],
    4: ["mauto.engine", "mauto.messages"],
    5: ["mauto", "mauto.workflow", "mauto.templates", "mauto.store", "mauto.channels", "mauto.datafiles",
        "mauto.addresses", "mauto.config", "mauto.limits", "mauto.errors", "mauto.data", "mauto.abtest"],
}
# Upward imports that remain, module to module: the store reads and writes the engine's records (and
# `contacts list --where` evaluates in the engine's scope). They go when the store's ports move above it.
KNOWN_UPWARD = {
    ("mauto.store.contacts", "mauto.engine.context"),
    ("mauto.store.contacts", "mauto.engine.records"),
    ("mauto.store.audience_sql", "mauto.engine.records"),  # the built-in fields' defaults, as store.contacts
    ("mauto.store.runtime", "mauto.engine.records"),
    ("mauto.store.runtime", "mauto.engine.state"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _layer(module: str) -> int:
    best = max((prefix for prefixes in LAYERS.values() for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=len)
    return next(level for level, prefixes in LAYERS.items() if best in prefixes)


def _imports() -> dict[str, set[str]]:
    """module -> the mauto modules it imports (a name imported from a module counts as that module)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("mauto") else None
                # a package's own submodules are below it by construction; `mauto` itself is the version only
                if target and target != module and target != "mauto" and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        assert _layer(module) in LAYERS, module


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = {(module, target) for module, targets in _imports().items() for target in targets
              if _layer(target) < _layer(module)}
    assert upward - KNOWN_UPWARD == set(), "an import reaches up a layer (docs/architecture.md, Layers)"
    assert KNOWN_UPWARD - upward == set(), "an upward import is gone: take it off KNOWN_UPWARD"


def test_no_import_cycle() -> None:
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(_modules()):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_store_holds_no_use_case() -> None:
    """`store/` keeps only SQL: every module in it is on the store's layer (a use case such as deploy lives
    above it, so that an import of the lint or the engine from the store is an upward one)."""
    above = [module for module in _modules()
             if module.startswith("mauto.store.") and _layer(module) != _layer("mauto.store")]
    assert above == []


def test_the_walk_sees_lazy_imports() -> None:
    """Guard against a vacuous pass: imports inside functions are seen (cli imports most things lazily)."""
    graph = _imports()
    assert "mauto.daemon.tick" in graph["mauto.cli"] and "mauto.store.contacts" in graph["mauto.cli"]
