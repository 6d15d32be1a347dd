"""Run every lint rule over a project and collect the findings."""
from __future__ import annotations

import gc
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from mauto.config import Project
from mauto.errors import MautoError, UsageError
from mauto.lint.base import check_ref
from mauto.lint.context import LintContext, load_source
from mauto.lint.problem import ERROR, WARNING, Problem
from mauto.lint.rules import RULES
from mauto.workflow.schema import FAST_CHECK_THRESHOLD

WORKFLOW_SUFFIXES = (".yaml", ".yml")
_IGNORE = re.compile(r"mauto:\s*ignore(?:\[([^\]]*)\])?")


@dataclass
class LintResult:
    problems: list[Problem] = field(default_factory=list)
    workflows: int = 0
    templates: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for problem in self.problems if problem.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for problem in self.problems if problem.severity == WARNING)

    @property
    def files(self) -> int:
        return len({problem.path for problem in self.problems})

    def failed(self, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)

    def error_lines(self, limit: int | None = None, indent: str = "") -> str:
        """The errors, one `path:line:col: RULE message` a line: the first `limit`, then how many more."""
        errors = [problem for problem in self.problems if problem.severity == ERROR]
        lines = [f"{indent}{p.path}:{p.line}:{p.col}: {p.rule} {p.message}" for p in errors[:limit]]
        if limit is not None and len(errors) > limit:
            lines.append(f"… and {len(errors) - limit} more")
        return "\n".join(lines)


def refuse_errors(project: Project, now: datetime) -> None:
    """A project that lints with errors is refused before it runs (simulate, test): MautoError listing them."""
    result = lint(project, now)
    if result.errors:
        raise MautoError(f"the project has {result.errors} lint error{'s' if result.errors != 1 else ''}; "
                         f"fix them first (mauto lint):\n{result.error_lines(indent='  ')}")


def workflow_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*") if path.suffix in WORKFLOW_SUFFIXES and path.is_file())


def lint(project: Project, now: datetime, paths: list[Path] | None = None, base: str | None = None) -> LintResult:
    """Lint the whole project, or only report on `paths` (files or folders) while reading the rest for context."""
    # Lint builds many small objects and frees few: the cyclic collector only rescans them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _lint(project, now, paths, base)
    finally:
        if collecting:
            gc.enable()


def _lint(project: Project, now: datetime, paths: list[Path] | None, base: str | None) -> LintResult:
    if base is not None:
        check_ref(project.root, base)
    files = {path.resolve(): path for path in workflow_files(project.workflows_dir)}
    selected: set[Path] | None = None
    if paths:
        selected = set()
        for path in paths:
            if not path.exists():
                raise UsageError(f"{path}: no such file or folder")
            found = [path] if path.is_file() else [*workflow_files(path),
                                                   *(p for p in path.rglob("*") if p.is_file())]
            for item in found:
                selected.add(item.resolve())
                if item.suffix in WORKFLOW_SUFFIXES and item.resolve() != project.path.resolve():
                    files.setdefault(item.resolve(), item)
    project_source = load_source(project.path, project.document.path, "project", project.document,
                                 project.load_error)
    fast = len(files) >= FAST_CHECK_THRESHOLD
    sources = [load_source(path, project.display(path), "workflow", fast=fast) for _, path in sorted(files.items())]
    ctx = LintContext(project, project_source, sources, now, base)

    problems: set[Problem] = set()
    for rule_id, rule in RULES.items():
        for problem in rule.check(ctx):
            problems.add(replace(problem, rule=rule_id, severity=rule.LEVEL))
    problems = _without_schema_echoes(problems)

    if selected is not None:
        shown = {project.display(path) for path in selected}
        for file, _workflow, _step, name in ctx.sends():
            if file.path.resolve() in selected:
                shown.update(info.display_path for info in ctx.templates.lineage(name))
        problems = {problem for problem in problems if problem.path in shown}
    lines: dict[str, list[str]] = {}
    kept = sorted(problem for problem in problems if not _ignored(problem, project, lines))
    template_count = len(ctx.template_files())
    return LintResult(kept, workflows=len(sources), templates=template_count)


def _without_schema_echoes(problems: set[Problem]) -> set[Problem]:
    """A specific rule's finding beats the schema's generic one at the same place."""
    specific = {(p.path, p.line, p.col) for p in problems if p.rule != "schema"}
    return {p for p in problems if p.rule != "schema" or (p.path, p.line, p.col) not in specific}


def _ignored(problem: Problem, project: Project, cache: dict[str, list[str]]) -> bool:
    """`# mauto: ignore[rule-id]` (or `{# mauto: ignore[rule-id] #}`) on the line silences that rule there."""
    lines = cache.get(problem.path)
    if lines is None:
        path = Path(problem.path)
        if not path.is_absolute():
            path = project.display_root / path
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            lines = []
        cache[problem.path] = lines
    if not 0 < problem.line <= len(lines):
        return False
    match = _IGNORE.search(lines[problem.line - 1])
    if match is None:
        return False
    if match.group(1) is None:
        return True
    return problem.rule in {rule.strip() for rule in match.group(1).split(",")}
