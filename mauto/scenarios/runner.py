"""Running scenarios: each file read and checked, its samples through the simulation, every expectation checked
against the contact's timeline; a step that failed without a `fails` expectation fails the scenario too."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

from mauto.config import Project
from mauto.engine.state import LogEntry
from mauto.engine.timing import zone
from mauto.messages import MessageRenderer
from mauto.report import _local_times
from mauto.scenarios.catalog import Catalog
from mauto.scenarios.diff import diff_lines, stamp
from mauto.scenarios.expectations import KINDS, Timeline
from mauto.scenarios.loader import Draft, Loader, read_draft, scenario_files
from mauto.scenarios.model import Expectation, ExpectationResult, Scenario, ScenarioRun
from mauto.simulate import Simulation
from mauto.workflow.loader import load
from mauto.workflow.model import Workflow


def run_scenarios(project: Project, paths: list[Path] | None = None) -> ScenarioRun:
    """Run the scenario files (default: all of scenarios/) and check every expectation.

    A file that is not a valid scenario is reported with its problems and the
    others still run. The project must lint without errors, checked as of the
    earliest scenario start (not the wall clock), so a run is the same every day.
    """
    files = scenario_files(project, paths)
    drafts: list[Draft] = []
    run = ScenarioRun()
    for path in files:
        draft = read_draft(path, project)
        run.scenarios.append(draft.result)
        if not draft.result.problems:
            drafts.append(draft)
    if not drafts:
        return run
    workflows = project_workflows(project, min(draft.start for draft in drafts))
    catalog = Catalog(project, workflows)
    renderer = MessageRenderer(project)  # shared by the scenarios: it caches the parsed templates
    for draft in drafts:
        scenario = Loader(project, catalog, draft).load()
        if scenario is not None:
            draft.result.results = check_all(scenario, catalog, renderer)
    return run


def project_workflows(project: Project, now: datetime) -> list[Workflow]:
    """Every workflow of the project, built; refuses a project with lint errors, linted as of `now`."""
    from mauto.lint.runner import refuse_errors, workflow_files
    from mauto.workflow.model import build

    refuse_errors(project, now)
    return [build(load(path, project.display(path))) for path in workflow_files(project.workflows_dir)]


def check_all(scenario: Scenario, catalog: Catalog, renderer: MessageRenderer) -> list[ExpectationResult]:
    """Run the scenario through the simulation; every expectation's result, then the unexpected failures."""
    simulation = Simulation(catalog.project, scenario.workflows, scenario.samples, scenario.start, scenario.end,
                            catalog.workflows.values(), renderer=renderer)
    outcome = simulation.run()
    timelines: dict[str, list[LogEntry]] = defaultdict(list)
    for entry in outcome.timeline:
        timelines[entry.contact].append(entry)
    results = []
    for expectation in scenario.expectations:
        timeline = Timeline(expectation, timelines[expectation.contact], outcome.contacts[expectation.contact],
                            zone(scenario.zones[expectation.contact]), catalog, scenario.start)
        results.append(KINDS[expectation.kind].check(timeline))
    results.extend(unexpected_failures(scenario, timelines))
    return results


def unexpected_failures(scenario: Scenario, timelines: dict[str, list[LogEntry]]) -> list[ExpectationResult]:
    """A step that failed for a contact fails the scenario, unless a `fails` expectation said it would."""
    expected = {(e.contact, e.value) for e in scenario.expectations if e.kind == "fails"}
    pos = scenario.document.key_pos(("expect",))
    results = []
    for contact, entries in timelines.items():
        for entry in entries:
            if entry.kind != "failed" or (contact, entry.workflow) in expected:
                continue
            tz = zone(scenario.zones[contact])
            expectation = Expectation("unexpected_failure", contact, entry.workflow, pos,
                                      text=f"no step fails for {contact} in {entry.workflow}")
            context = [other for other in entries if other.workflow == entry.workflow]
            where = "the trigger" if entry.step in ("", "trigger") else f"step {entry.step}"
            hint = (f"if that is expected, add `{{contact: {contact}, fails: {entry.workflow}}}`"
                    if "coupon pool" not in entry.detail or "coupons" in scenario.document.data else
                    "the scenario has no `coupons`: add `coupons: samples/coupons.yaml` or pools of its own")
            message = f"{where} failed at {stamp(entry.at, tz)}: {_local_times(entry.detail, tz)} ({hint})"
            results.append(ExpectationResult(expectation, False, message,
                                             diff_lines(context, [entry], None, tz, contact, [entry.workflow])))
            expected.add((contact, entry.workflow))  # one report per contact and workflow
    return results
