"""The compiled fast check (fastjsonschema) and jsonschema agree on what is valid.

The fast check only ever answers "valid"; if it accepted something jsonschema
rejects, lint on large projects would miss errors. These tests feed both the
sample project, every fixture workflow in the tests, and generated documents.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.workflow.loader import YamlError, load
from mauto.workflow.schema import fast_valid, validator

ROOT = Path(__file__).resolve().parents[2]


def agree(data, name="workflow"):
    expected = validator(name).is_valid(data)
    assert fast_valid(data, name) == expected, f"fast check and jsonschema disagree on {data!r}"
    return expected


def yaml_files():
    for path in sorted([*ROOT.glob("workflows/*.yaml"), *ROOT.glob("tests/**/*.yaml")]):
        try:
            yield path, load(path).data
        except YamlError:
            continue


def test_they_agree_on_every_yaml_file_in_the_repository():
    checked = 0
    for path, data in yaml_files():
        name = "project" if path.name == "mauto.yaml" else "workflow"
        agree(data, name)
        checked += 1
    assert checked >= 13


def test_they_agree_on_the_sample_workflows_broken_one_key_at_a_time():
    """Every sample workflow, with each step given an unknown key, a second action, or a wrong type."""
    samples = [load(path).data for path in sorted(ROOT.glob("workflows/*.yaml"))]
    assert samples and all(agree(sample) for sample in samples)
    for sample in samples:
        for index in range(len(sample["steps"])):
            for mutation in ({"delay": "2d"}, {"exit": "x"}, {"wait": 3}, {"id": "Bad Id"}, {"then": []}):
                broken = copy.deepcopy(sample)
                broken["steps"][index].update(mutation)
                agree(broken)
            broken = copy.deepcopy(sample)
            broken["steps"][index] = {}
            assert not agree(broken)
        for key in ("trigger", "settings", "goal", "reentry", "version"):
            broken = copy.deepcopy(sample)
            broken[key] = {"bogus": 1}
            agree(broken)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.sampled_from(
    ["2d", "3 days", "09:00", "25:00", "cart/reminder-1", "order_placed", "contact.score > 5", "", "x", "P1D",
     "mon", "always", "never", "marketing", "finish"]))
keys = st.sampled_from(["id", "name", "wait", "wait_for", "email", "sms", "if", "then", "else", "split", "variants",
                        "weight", "steps", "event", "timeout", "where", "update", "set", "score", "lists", "add",
                        "task", "title", "webhook", "url", "as", "assign_coupon", "pool", "start", "exit", "until",
                        "days", "on_event", "on_timeout", "vars", "bogus"])
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
steps = st.lists(st.dictionaries(keys, values, min_size=1, max_size=3), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, trigger=st.dictionaries(st.sampled_from(["event", "segment", "where", "date", "bogus"]),
                                            values, max_size=2))
def test_they_agree_on_generated_workflows(steps, trigger):
    agree({"id": "generated", "version": 1, "name": "Generated", "trigger": trigger or {"event": "x"},
           "steps": steps})


@pytest.mark.parametrize("data", [
    {"id": "a", "version": 1, "name": "n", "trigger": {"event": "x"}, "steps": [{"email": "a", "sms": "b"}]},
    {"id": "a", "version": 1, "name": "n", "trigger": {"event": "x", "segment": "y"}, "steps": [{"exit": "x"}]},
    {"id": "a", "version": 1, "name": "n", "trigger": {}, "steps": [{"exit": "x"}]},
    {"id": "a", "version": 1, "name": "n", "trigger": {"event": "x"}, "steps": [{"if": "x", "else": []}]},
    {"id": "a", "version": 1, "name": "n", "trigger": {"event": "x"}, "steps": [{"email": "a", "then": []}]},
])
def test_the_dispatch_rules_survive_the_translation_to_draft_7(data):
    """dependentSchemas becomes draft 7's dependencies: two actions, no action and stray keys still fail."""
    assert not agree(data)
