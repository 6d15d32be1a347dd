"""Every rule is registered, documented and tested (ansible-lint's test_rules_collection)."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import mauto.lint.rules as rules_package
from mauto.lint.rules import RULES
from mauto.workflow.loader import parse

from .conftest import FAIL_TESTS, PASS_TESTS

RULE_MODULES = sorted(info.name for info in pkgutil.iter_modules(rules_package.__path__))
_FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def _load_test_modules() -> None:
    """Import every test module of this folder, so each @fails marker is registered whatever pytest selected."""
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(f"{__package__}.{path.stem}")


def test_every_rule_module_is_registered():
    assert sorted(module.__name__.rsplit(".", 1)[1] for module in RULES.values()) == RULE_MODULES


@pytest.mark.parametrize("rule_id", list(RULES))
def test_rule_has_an_id_a_level_and_a_check(rule_id):
    rule = RULES[rule_id]
    assert rule_id == rule.ID
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.ID), "rule ids are kebab-case"
    assert rule.__name__.rsplit(".", 1)[1] == rule.ID.replace("-", "_"), "the module is named after the rule"
    assert rule.LEVEL in ("error", "warning")
    assert callable(rule.check)


@pytest.mark.parametrize("rule_id", list(RULES))
def test_rule_docstring_has_a_summary_and_bad_and_good_examples(rule_id):
    doc = RULES[rule_id].__doc__
    assert doc and doc.strip(), "the docstring is the rule's documentation"
    summary = doc.strip().split("\n\n")[0]
    assert len(summary) > 20
    bad = re.search(r"^Bad\b.*?:$", doc, re.MULTILINE)
    good = re.search(r"^Good\b.*?:$", doc, re.MULTILINE)
    assert bad and good, "a `Bad:` and a `Good:` heading"
    assert bad.start() < good.start()
    assert _FENCE.search(doc[bad.end():good.start()]), "a fenced example under Bad"
    assert _FENCE.search(doc[good.end():]), "a fenced example under Good"


@pytest.mark.parametrize("rule_id", list(RULES))
def test_rule_good_yaml_examples_are_yaml_mauto_reads(rule_id):
    doc = RULES[rule_id].__doc__
    good = doc[re.search(r"^Good\b.*?:$", doc, re.MULTILINE).end():]
    for language, block in _FENCE.findall(good):
        if language == "yaml":
            # an example of several files names each with a `# workflows/NAME.yaml` line
            for document in re.split(r"^# \S+\.ya?ml\n", block, flags=re.MULTILINE):
                parse(document, f"{rule_id} Good example")  # raises YamlError


def test_every_rule_has_a_failing_and_a_passing_case():
    _load_test_modules()
    assert sorted(FAIL_TESTS) == sorted(RULES), (
        f"rules without a @fails test: {sorted(set(RULES) - set(FAIL_TESTS))}; "
        f"@fails for unknown rules: {sorted(set(FAIL_TESTS) - set(RULES))}")
    assert sorted(PASS_TESTS) == sorted(RULES), (
        f"rules without a @passes test: {sorted(set(RULES) - set(PASS_TESTS))}; "
        f"@passes for unknown rules: {sorted(set(PASS_TESTS) - set(RULES))}")
