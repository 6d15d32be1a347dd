"""One explainer for every schema: the same keyword handlers say a workflow's, mauto.yaml's and a scenario's
errors, each file naming its parts through its own `Wording`; the base wording serves any other schema."""
from __future__ import annotations

from jsonschema import Draft202012Validator

from mauto.problem import Problem
from mauto.scenarios.schema import ScenarioWording, schema_problems
from mauto.workflow.explain import Wording, explain_all
from mauto.workflow.loader import parse
from mauto.workflow.schema import WorkflowWording, validate


def test_any_schema_is_explained_with_the_base_wording():
    schema = {"type": "object", "additionalProperties": False, "required": ["name"],
              "properties": {"name": {"type": "string", "minLength": 1}, "retries": {"type": "integer"}}}
    document = parse("name: ''\nretries: three\nretires: 2\n", "other.yaml")
    found = explain_all(Draft202012Validator(schema).iter_errors(document.data), document, Wording())
    assert found == [
        Problem("other.yaml", 1, 7, "schema", "`name` must not be empty"),
        Problem("other.yaml", 2, 10, "schema", "`retries` must be an integer, not the string `three`"),
        Problem("other.yaml", 3, 1, "schema", "unknown key `retires`; did you mean `retries`?"),
    ]
    assert [problem.json_path for problem in found] == [("name",), ("retries",), ("retires",)]


def test_the_kinds_sentences_are_each_files_own():
    # the same schema construct (one kind of several in a mapping), said in a workflow's and a scenario's words
    workflow = parse("id: w\nversion: 1\nname: W\ntrigger: {event: a}\nsteps:\n  - {wait: 1d, email: a/b}\n", "w.yaml")
    scenario = parse("start: 2026-11-24T09:00:00+01:00\ncontacts: []\nexpect:\n  - {contact: c1, gets: sms, "
                     "exits: cart}\n", "s.yaml")
    assert [p.message for p in validate(workflow, "workflow", wording=WorkflowWording())] == [
        "step 1 has two actions, `wait` and `email`; a step does one thing: make them separate steps"]
    assert [p.message for p in validate(scenario, "scenario", wording=ScenarioWording())] == [
        "expectation 1 checks two things, `gets` and `exits`; an expectation checks one: make them separate items"]
    assert schema_problems(scenario) == validate(scenario, "scenario", wording=ScenarioWording())
