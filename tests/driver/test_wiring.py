"""How the use cases get the loop: by wiring ports to it, never by subclassing (the design's "nothing
subclasses anything to get there"): the daemon's tick once subclassed the simulation and overrode fourteen
of its private methods, and an erased contact crashed every later tick through one of them."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mauto"
# The loop, its ports and their sets, and the drivers' use cases (a scenario's expectation kinds may share a
# base: they are not drivers).
LOOP_AND_DRIVERS = ("driver/", "simulate/", "daemon/")


def _classes() -> dict[str, tuple[str, list[str]]]:
    """class name -> (its module's path inside mauto/, the names of its bases)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute)
                         else "" for base in node.bases]
                found[node.name] = (path.relative_to(PACKAGE).as_posix(), bases)
    return found


def test_no_class_extends_the_loop_or_a_use_case() -> None:
    classes = _classes()
    owned = {name for name, (where, _) in classes.items() if where.startswith(LOOP_AND_DRIVERS)}
    assert {"Driver", "Simulation", "Tick", "MemoryContacts", "SqliteContacts"} <= owned
    extending = sorted(f"{where}: {name}({', '.join(bases)})" for name, (where, bases) in classes.items()
                       if owned.intersection(bases))
    assert extending == []


def test_both_use_cases_run_the_same_loop() -> None:
    from mauto.daemon import tick
    from mauto.driver.loop import Driver
    from mauto.simulate import run

    assert run.Driver is Driver and tick.Driver is Driver
    source = {name: (PACKAGE / path).read_text(encoding="utf-8") for name, path in
              (("simulate", "simulate/run.py"), ("daemon", "daemon/tick.py"))}
    for name, text in source.items():
        assert "Driver(" in text and ".process(" in text, name  # built there, fed item by item
