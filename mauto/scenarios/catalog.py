"""What a scenario's expectations may name in the project: workflows, their steps and splits, templates."""
from __future__ import annotations

from collections import defaultdict

from mauto.config import Project
from mauto.engine.interpreter import Program, path_key
from mauto.scenarios.model import CHANNELS
from mauto.workflow.model import Workflow


class Catalog:
    """The project's workflows (by id), their step labels and split variants, who sends which template, and
    the templates on disk. Built once for every scenario of a run."""

    def __init__(self, project: Project, workflows: list[Workflow]) -> None:
        self.project = project
        self.workflows = {workflow.id: workflow for workflow in workflows}
        self.steps: dict[str, list[str]] = {}  # workflow -> step labels as the timeline shows them
        self.splits: dict[str, dict[str, list[str]]] = {}  # workflow -> split id -> variant names
        self.senders: dict[tuple[str, str], set[str]] = defaultdict(set)  # (channel, template) -> workflows
        for workflow in workflows:
            program = Program(workflow)
            self.steps[workflow.id] = [program.label(key) for key in program.steps]
            self.splits[workflow.id] = {}
            for step in workflow.iter_steps():
                if step.kind == "split":
                    split_id = step.value.get("id") or step.id or path_key(step)
                    self.splits[workflow.id][split_id] = list(step.value["variants"])
                elif step.kind in CHANNELS:
                    self.senders[(step.kind, step.value)].add(workflow.id)
        folder = project.templates_dir
        self.templates: dict[str, set[str]] = defaultdict(set)  # template name -> channels it exists for
        for channel, suffix in (("email", ".email.html"), ("sms", ".sms.txt")):
            if folder.is_dir():
                for file in folder.rglob("*" + suffix):
                    name = file.relative_to(folder).as_posix()[:-len(suffix)]
                    self.templates[name].add(channel)

    def channels_of(self, template: str) -> list[str]:
        return sorted(self.templates.get(template, ()))

    def workflows_sending(self, template: str | None, channel: str | None) -> list[str]:
        found: set[str] = set()
        for (sent_channel, sent_template), workflows in self.senders.items():
            if (template is None or sent_template == template) and (channel is None or sent_channel == channel):
                found |= workflows
        return sorted(found)
