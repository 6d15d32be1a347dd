"""Every expectation kind of `mauto test` is registered, agrees with the scenario schema, is documented with a
passing and a failing example that run as documented, and docs/testing.md's table of kinds is generated from
them (the lint rules' tests/lint/test_lint_rules_collection.py, for scenarios).

The examples complete a bundled scenario of the sample project (the repository): its contacts and events,
with the example's `expect:` (and any top-level key the example gives) in place of its own.
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.scenarios import expectations
from mauto.scenarios.expectations import KINDS, Example, Kind
from mauto.scenarios.runner import run_scenarios
from mauto.workflow.loader import load, parse

ROOT = Path(__file__).resolve().parents[1]  # the repository: also the bundled sample project
SCHEMA = json.loads((ROOT / "mauto" / "data" / "scenario.schema.json").read_text(encoding="utf-8"))
EXPECTATION = SCHEMA["$defs"]["expectation"]

pytestmark = pytest.mark.usefixtures("cli_environment")


def _kind_classes() -> list[type[Kind]]:
    """Every class of the kinds' module that is a kind (has a name), registered or not."""
    return [cls for _, cls in inspect.getmembers(expectations, inspect.isclass)
            if issubclass(cls, Kind) and cls.name and cls.__module__ == expectations.__name__]


def test_every_kind_class_is_registered_under_its_name():
    assert sorted(cls.__name__ for cls in _kind_classes()) == sorted(type(kind).__name__ for kind in KINDS.values())
    assert all(name == kind.name for name, kind in KINDS.items())


def test_the_kinds_are_the_schemas_in_its_order():
    assert list(KINDS) == list(EXPECTATION["dependentSchemas"])


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kind_takes_the_modifiers_its_schema_allows(name):
    allowed = EXPECTATION["dependentSchemas"][name]["propertyNames"]["enum"]
    assert list(KINDS[name].takes) == [key for key in allowed if key not in ("contact", name)]


@pytest.mark.parametrize("name", list(KINDS))
def test_a_kind_is_documented_with_a_passing_and_a_failing_example(name):
    kind = type(KINDS[name])
    doc = inspect.cleandoc(kind.__doc__ or "")
    summary = doc.split("\n\n")[0]
    assert summary.startswith("Passes when ") and len(summary) > 40, "the docstring starts with when it passes"
    for heading in ("Passes", "Fails"):
        example = kind.example(heading)
        assert example is not None, f"a `{heading}:` heading, then a ```yaml block whose first line names a " \
                                    "bundled scenario (# scenarios/NAME.yaml)"
        assert (ROOT / example.scenario).is_file(), example.scenario
        assert example.items, f"the `{heading}` example has no expectation"
        assert all(f" {name}: " in item for item, _ in example.items), f"the `{heading}` example is of another kind"
        messages = [message for _, message in example.items]
        if heading == "Passes":
            assert messages == [""] * len(messages), "a passing example says nothing under its items"
        else:
            assert all(messages), "a failing example says what the failure says, in a comment under its item"


def _examples() -> list[tuple[str, str, Example]]:
    return [(name, heading, example) for name, kind in KINDS.items() for heading in ("Passes", "Fails")
            if (example := kind.example(heading)) is not None]


def test_the_examples_pass_and_fail_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    examples = _examples()
    assert len(examples) == 2 * len(KINDS)
    files = []
    for name, heading, example in examples:
        data = load(ROOT / example.scenario, example.scenario).data
        data.update(parse(example.fragment, f"{name} {heading}").data)
        data["name"] = f"{name} {heading}"
        path = tmp_path / f"{name}-{heading.lower()}.yaml"
        path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
        files.append(path)
    run = run_scenarios(load_project(ROOT / "mauto.yaml"), files)
    documented, outcome = [], []
    for (name, heading, example), scenario in zip(examples, run.scenarios, strict=True):
        assert scenario.problems == [], f"{name} {heading}: {[problem.message for problem in scenario.problems]}"
        for (item, message), result in zip(example.items, scenario.results, strict=False):
            documented.append((name, item, heading == "Passes", message))
            outcome.append((name, item, result.passed, result.message))
        assert scenario.results[len(example.items):] == [], f"{name} {heading}: a step failed unexpectedly"
    assert outcome == documented


def test_the_table_of_kinds_in_the_docs_is_generated_from_them():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_scenario_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    assert [name for name in KINDS if f"\n| `{name}` | " not in page] == []
