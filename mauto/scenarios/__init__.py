"""`mauto test`: scenario files run through the engine, each expectation checked against the timeline.

A scenario (`scenarios/*.yaml`) gives contacts, events, a start time and a list
of expectations about single contacts: "c01 gets cart/reminder-1 at +1h", "c02
gets no sms", "c03 converts in onboarding". It runs on the simulation's virtual
clock, with the same engine as the daemon, so a month takes an instant. An
expectation that fails comes with the contact's timeline as a diff, times in
the contact's own zone: `-` what was expected, `+` what happened instead, and
the other lines of the workflows concerned for context.

The package, from the bottom up: `model` (what a scenario is, what running it
gives), `catalog` (what expectations may name in the project), `diff` (a
timeline as a diff), `expectations` (the kinds, in a registry), `schema` (the
file's schema errors in words), `loader` (finding and reading the files),
`runner` (the use case), `report` (output). It returns results and never
prints; `mauto test` prints them with `text_lines`, `github_lines` or `as_json`.
"""
from __future__ import annotations

from mauto.problem import Problem
from mauto.scenarios.expectations import KINDS, Kind, describe
from mauto.scenarios.loader import DEFAULT_HORIZON, SCENARIO_SUFFIXES, SCENARIOS_DIR, scenario_files
from mauto.scenarios.model import CHANNELS, Expectation, ExpectationResult, Scenario, ScenarioResult, ScenarioRun
from mauto.scenarios.report import as_json, github_lines, line_style, summary, text_lines
from mauto.scenarios.runner import project_workflows, run_scenarios
from mauto.scenarios.schema import SYNONYMS, schema_problems

__all__ = [
    "CHANNELS", "DEFAULT_HORIZON", "KINDS", "SCENARIOS_DIR", "SCENARIO_SUFFIXES", "SYNONYMS", "Expectation",
    "ExpectationResult", "Kind", "Problem", "Scenario", "ScenarioResult", "ScenarioRun", "as_json", "describe",
    "github_lines", "line_style", "project_workflows", "run_scenarios", "scenario_files", "schema_problems",
    "summary", "text_lines",
]
