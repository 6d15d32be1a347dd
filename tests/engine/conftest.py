"""Fixtures for the engine tests: a small project in tmp_path for the simulations."""
from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.engine.records import ContactState, Event
from mauto.simulate import Samples, Simulation, SimulationResult
from mauto.workflow.loader import parse
from mauto.workflow.model import Workflow, build
from mauto.workflow.schema import validate

PROJECT = """\
timezone: Europe/Paris
sender: {email: "Shop <news@shop.example>", sms: SHOP}
unsubscribe_url: "https://shop.example/unsubscribe/{{ token }}"
contact_fields:
  first_name: string
  country: string
  birthday: date
  renewal: date
  lifecycle: {enum: [lead, customer]}
segments:
  vip: "'vip' in contact.tags"
"""

TEMPLATES = {
    "templates/t/hi.email.html": "---\nsubject: Hi {{ contact.first_name | default('there', true) }}\n---\n"
                                 "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n",
    "templates/t/hi.sms.txt": "Hi {{ vars.coupon | default('') }}\n",
}


class SimProject:
    """A project on disk; `run` simulates workflows written as YAML text on sample data."""

    def __init__(self, root: Path, limits: str = "") -> None:
        self.root = root
        (root / "mauto.yaml").write_text(PROJECT + limits, encoding="utf-8")
        for name, text in TEMPLATES.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (root / "workflows").mkdir(exist_ok=True)
        self.project = load_project(root / "mauto.yaml", display_root=root)

    def workflow(self, source: str) -> Workflow:
        text = textwrap.dedent(source).lstrip("\n")
        document = parse(text, "workflows/wf.yaml")
        problems = validate(document, "workflow")
        assert not problems, [problem.message for problem in problems]
        return build(document)

    def run(self, workflows: list[str | Workflow], contacts: list[ContactState], events: list[Event],
            start: datetime, end: datetime, coupons: dict | None = None,
            webhooks: dict | None = None) -> SimulationResult:
        flows = [flow if isinstance(flow, Workflow) else self.workflow(flow) for flow in workflows]
        samples = Samples(contacts, sorted(events, key=lambda event: event.at), coupons or {}, webhooks or {})
        return Simulation(self.project, flows, samples, start, end, flows).run()


@pytest.fixture
def sim(tmp_path: Path) -> SimProject:
    return SimProject(tmp_path)


@pytest.fixture
def sim_with_limits(tmp_path: Path) -> Callable[[str], SimProject]:
    return lambda limits: SimProject(tmp_path, limits)
