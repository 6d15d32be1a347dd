"""The `mauto` command line: options in, one call, rich out."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.text import Text

from mauto import __version__
from mauto.errors import ExitCode, MautoError, UsageError

app = typer.Typer(
    name="mauto",
    help="Marketing automation as code: workflows in git, linted, simulated, deployed.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _log_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mauto" / "mauto.log"


def handle_errors(command: Callable) -> Callable:
    """The one place errors become messages and exit codes (pre-commit's error_handler, as a decorator)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except MautoError as error:
            _err().print(Text(str(error), style="red"))
            raise typer.Exit(int(error.exit_code)) from None
        except KeyboardInterrupt:
            _err().print("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as error:  # a bug in mauto (or a library panic): one line, the traceback to the log
            log = _log_path()
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(f"--- {datetime.now(timezone.utc).isoformat()} mauto {__version__} "
                                 f"{' '.join(sys.argv)}\n{traceback.format_exc()}\n")
                where = f"; the traceback is in {log}"
            except OSError:
                where = ""
            first_line = (str(error).splitlines() or [""])[0]
            _err().print(Text(f"internal error: {type(error).__name__}: {first_line}{where}. "
                              "Please report it.", style="red"))
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"mauto {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    project: Optional[Path] = typer.Option(None, "--project", "-p", help="mauto.yaml, or the folder holding it "
                                           "(default: the nearest one from the current folder up)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = {"project": project}


def _project(ctx: typer.Context, lenient: bool = False):
    from mauto.config import find_project, load_project

    return load_project(find_project(explicit=ctx.obj.get("project") if ctx.obj else None), lenient=lenient)


def _parse_now(value: Optional[str], option: str = "--now", zone_name: str | None = None) -> datetime:
    """An option's ISO 8601 time; without an offset it is read in `zone_name` (the project's zone), else UTC."""
    if value is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {value}: not an ISO 8601 time such as 2026-11-23T09:00:00+01:00") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(zone_name) if zone_name else timezone.utc)
    return moment


class LintFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"


class SchemaName(str, Enum):
    workflow = "workflow"
    project = "project"
    scenario = "scenario"


@app.command()
@handle_errors
def lint(
    ctx: typer.Context,
    paths: Optional[List[Path]] = typer.Argument(None, help="Files or folders to report on (default: the whole project)."),
    output_format: LintFormat = typer.Option(LintFormat.text, "--format", "-f", help="text, json or github."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too."),
    base: Optional[str] = typer.Option(None, "--base", metavar="GIT_REF",
                                       help="Also flag workflows changed since this ref without a version bump."),
    explain: Optional[str] = typer.Option(None, "--explain", metavar="RULE", help="Show a rule's documentation."),
    now: Optional[str] = typer.Option(None, "--now", metavar="TIME", help="Check dates against this time."),
) -> None:
    """Check workflows, templates and mauto.yaml; findings as path:line:col: RULE message."""
    from mauto.lint import formatters
    from mauto.lint.rules import RULES
    from mauto.lint.runner import lint as run_lint

    if explain is not None:
        rule = RULES.get(explain)
        if rule is None:
            raise UsageError(f"no rule `{explain}`; rules: {', '.join(RULES)}")
        print(f"{rule.ID} ({rule.LEVEL})\n\n{rule.__doc__.strip()}")
        return
    result = run_lint(_project(ctx, lenient=True), _parse_now(now), paths or None, base)
    out = _out()
    if output_format is LintFormat.json:
        print(formatters.as_json(result))
    elif output_format is LintFormat.github:
        for line in formatters.github_lines(result):
            print(line)
        print(formatters.summary(result))
    else:
        for problem in result.problems:
            line = Text()
            line.append(f"{problem.path}:{problem.line}:{problem.col}:", style="bold")
            line.append(" ")
            line.append(problem.rule, style="red" if problem.severity == "error" else "yellow")
            line.append(" " + problem.message)
            out.print(line)
        out.print(Text(formatters.summary(result), style="red" if result.failed() else "green"))
    if result.failed(strict):
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command()
@handle_errors
def simulate(
    ctx: typer.Context,
    targets: Optional[List[Path]] = typer.Argument(None, metavar="WORKFLOW_OR_DIR",
                                                   help="Workflow files, folders or ids (default: all)."),
    contacts: Optional[Path] = typer.Option(None, "--contacts", help="Contacts: YAML, JSON Lines or CSV "
                                            "(default: samples/contacts.yaml)."),
    events: Optional[Path] = typer.Option(None, "--events", help="Events (default: samples/events.yaml)."),
    coupons: Optional[Path] = typer.Option(None, "--coupons", help="Coupon pools (default: samples/coupons.yaml)."),
    webhooks: Optional[Path] = typer.Option(None, "--webhooks",
                                            help="Webhook answers by URL (default: samples/webhooks.yaml)."),
    start: Optional[str] = typer.Option(None, "--start", metavar="TIME", help="Virtual start time (default: now)."),
    horizon: str = typer.Option("30d", "--for", metavar="DURATION", help="How long to run (default 30d)."),
    contact: Optional[str] = typer.Option(None, "--contact", metavar="ID", help="Show only this contact."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
    render: Optional[Path] = typer.Option(None, "--render", metavar="DIR",
                                          help="Write every message: .eml for email, .txt for SMS."),
) -> None:
    """Dry-run workflows on sample contacts and events on a virtual clock: who gets what, when, and why."""
    from mauto import report
    from mauto.simulate import simulate as run_simulation
    from mauto.workflow.durations import DurationError, parse_duration

    try:
        length = parse_duration(horizon)
    except DurationError as error:
        raise UsageError(f"--for: {error}") from None
    project = _project(ctx)
    begin = _parse_now(None).replace(second=0, microsecond=0) if start is None else \
        _parse_now(start, "--start", project.timezone)
    result = run_simulation(project, targets or None, begin, length, contacts, events, coupons, webhooks, contact)
    if render is not None:
        messages = [m for m in result.messages if contact is None or m.contact == contact]
        for index, message in enumerate(messages, start=1):
            message.write(render, index)
    if output_format is OutputFormat.json:
        print(result.to_json())
        return
    out = _out()
    for block in report.timelines(result):
        out.print(block)
        out.print()
    for table in report.funnels(result):
        out.print(table)
        out.print()
    if render is not None:
        out.print(f"wrote {len(messages)} message{'s' if len(messages) != 1 else ''} to {render}")


@app.command(name="test")
@handle_errors
def run_tests(
    ctx: typer.Context,
    paths: Optional[List[Path]] = typer.Argument(None, metavar="SCENARIO_OR_DIR",
                                                 help="Scenario files or folders (default: scenarios/)."),
    output_format: LintFormat = typer.Option(LintFormat.text, "--format", "-f", help="text, json or github."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every expectation, not only failures."),
) -> None:
    """Run the scenarios in scenarios/ through the engine; a failure shows expected against actual."""
    from mauto import scenarios

    run = scenarios.run_scenarios(_project(ctx), paths or None)
    if output_format is LintFormat.json:
        print(scenarios.as_json(run))
    elif output_format is LintFormat.github:
        for line in scenarios.github_lines(run):
            print(line)
        print(scenarios.summary(run))
    else:
        out = _out()
        for line in scenarios.text_lines(run, verbose):
            out.print(Text(line, style=scenarios.line_style(line)))
    if not run.ok:
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command()
@handle_errors
def graph(
    ctx: typer.Context,
    workflow: Path = typer.Argument(..., metavar="WORKFLOW",
                                    help="A workflow file, or the id of a workflow in the project's workflows/ folder."),
    output_format: GraphFormat = typer.Option(GraphFormat.mermaid, "--format", "-f",
                                              help="mermaid (GitHub renders it in Markdown) or dot (Graphviz)."),
) -> None:
    """Draw a workflow as a Mermaid flowchart (for a pull request) or a Graphviz dot graph."""
    from mauto.graph import RENDERERS, load_workflow, locate

    path, shown = locate(workflow, lambda: _project(ctx, lenient=True))
    sys.stdout.write(RENDERERS[output_format.value](load_workflow(path, shown)))


@app.command()
@handle_errors
def schema(name: SchemaName = typer.Argument(..., help="workflow, project or scenario.")) -> None:
    """Print a JSON Schema (for editors and other tools)."""
    from mauto.workflow.schema import schema_text

    sys.stdout.write(schema_text(name.value))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
