"""The `mauto` command line: options in, one call, rich out."""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mauto import __version__
from mauto.errors import ExitCode, MautoError, UsageError, printable

if TYPE_CHECKING:
    from rich.progress import Progress

app = typer.Typer(
    name="mauto",
    help="Marketing automation as code: workflows in git, linted, simulated, deployed.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False, markup=False)  # contact data is never markup


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


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
        except BrokenPipeError:  # `mauto contacts export | head -1`: the reader has had enough; so have we
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
            raise typer.Exit(int(ExitCode.OK)) from None
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as error:  # a bug in mauto (or a library panic): one line, the traceback to the log
            log = _log_path()
            try:
                log.parent.mkdir(parents=True, exist_ok=True)
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(f"--- {datetime.now(UTC).isoformat()} mauto {__version__} "
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
    project: Path | None = typer.Option(None, "--project", "-p", help="mauto.yaml, or the folder holding it "
                                           "(default: the nearest one from the current folder up)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = {"project": project}


def _project(ctx: typer.Context, lenient: bool = False):
    from mauto.config import find_project, load_project

    return load_project(find_project(explicit=ctx.obj.get("project") if ctx.obj else None), lenient=lenient)


def _parse_now(value: str | None, option: str = "--now", zone_name: str | None = None) -> datetime:
    """An option's ISO 8601 time; without an offset it is read in `zone_name` (the project's zone), else UTC."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {value}: not an ISO 8601 time such as 2026-11-23T09:00:00+01:00") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(zone_name) if zone_name else UTC)
    from mauto.limits import LimitError, check_moment

    try:
        return check_moment(moment, option)
    except LimitError as error:
        raise UsageError(str(error)) from None


MAX_HORIZON = timedelta(days=3650)  # `simulate --for`: a decade is more than any campaign, and stays quick


class LintFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


class DiffFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


def _print_difference(result, output_format: DiffFormat, markdown, text_blocks) -> None:
    """A diff (of workflows, or of two simulations) as JSON, Markdown (a pull-request comment) or text."""
    if output_format is DiffFormat.json:
        print(result.to_json())
    elif output_format is DiffFormat.markdown:
        sys.stdout.write(markdown(result))
    else:
        out = _out()
        for block in text_blocks(result):
            out.print(block)
            out.print()


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
    paths: list[Path] | None = typer.Argument(None, help="Files or folders to report on (default: the whole project)."),
    output_format: LintFormat = typer.Option(LintFormat.text, "--format", "-f", help="text, json or github."),
    strict: bool = typer.Option(False, "--strict", help="Fail on warnings too."),
    base: str | None = typer.Option(None, "--base", metavar="GIT_REF",
                                       help="Also flag workflows changed since this ref without a version bump."),
    explain: str | None = typer.Option(None, "--explain", metavar="RULE", help="Show a rule's documentation."),
    now: str | None = typer.Option(None, "--now", metavar="TIME", help="Check dates against this time."),
) -> None:
    """Check workflows, templates and mauto.yaml; findings as path:line:col: RULE message."""
    from mauto.lint import formatters
    from mauto.lint.rules import RULES
    from mauto.lint.runner import lint as run_lint

    if explain is not None:
        rule = RULES.get(explain)
        if rule is None:
            raise UsageError(f"no rule `{explain}`; rules: {', '.join(RULES)}")
        print(f"{rule.ID} ({rule.LEVEL})\n\n{(rule.__doc__ or '').strip()}")
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
            shown = Text()
            shown.append(f"{problem.path}:{problem.line}:{problem.col}:", style="bold")
            shown.append(" ")
            shown.append(problem.rule, style="red" if problem.severity == "error" else "yellow")
            shown.append(" " + problem.message)
            out.print(shown)
        out.print(Text(formatters.summary(result), style="red" if result.failed() else "green"))
    if result.failed(strict):
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command()
@handle_errors
def simulate(
    ctx: typer.Context,
    targets: list[Path] | None = typer.Argument(None, metavar="WORKFLOW_OR_DIR",
                                                   help="Workflow files, folders or ids (default: all)."),
    contacts: Path | None = typer.Option(None, "--contacts", help="Contacts: YAML, JSON Lines or CSV "
                                            "(default: samples/contacts.yaml)."),
    events: Path | None = typer.Option(None, "--events", help="Events (default: samples/events.yaml)."),
    coupons: Path | None = typer.Option(None, "--coupons", help="Coupon pools (default: samples/coupons.yaml)."),
    webhooks: Path | None = typer.Option(None, "--webhooks",
                                            help="Webhook answers by URL (default: samples/webhooks.yaml)."),
    start: str | None = typer.Option(None, "--start", metavar="TIME", help="Virtual start time (default: now)."),
    horizon: str = typer.Option("30d", "--for", metavar="DURATION", help="How long to run (default 30d)."),
    contact: str | None = typer.Option(None, "--contact", metavar="ID", help="Show only this contact."),
    output_format: DiffFormat = typer.Option(DiffFormat.text, "--format", "-f",
                                             help="text or json; markdown with --base."),
    render: Path | None = typer.Option(None, "--render", metavar="DIR",
                                          help="Write every message: .eml for email, .txt for SMS."),
    base: str | None = typer.Option(None, "--base", metavar="GIT_REF",
                                    help="Also run the project as at this git ref (or `deployed`) on the same samples, "
                                         "and show only what differs."),
) -> None:
    """Dry-run workflows on sample contacts and events on a virtual clock: who gets what, when, and why."""
    from mauto import report
    from mauto.simulate import simulate as run_simulation
    from mauto.workflow.durations import DurationError, parse_duration

    if output_format is DiffFormat.markdown and base is None:
        raise UsageError("--format markdown needs --base")
    if base is not None and (contact is not None or render is not None):
        raise UsageError("--base shows what differs between two runs: it takes no --contact or --render")

    try:
        length = parse_duration(horizon)
    except DurationError as error:
        raise UsageError(f"--for: {error}") from None
    if length > MAX_HORIZON:
        raise UsageError(f"--for {horizon}: a simulation covers at most 3650d (10 years)")
    if length.total_seconds() <= 0:
        raise UsageError(f"--for {horizon}: must be longer than 0s")
    project = _project(ctx)
    begin = _parse_now(None).replace(second=0, microsecond=0) if start is None else \
        _parse_now(start, "--start", project.timezone)
    from mauto.limits import LimitError, check_moment

    try:
        check_moment(begin + length, "--start + --for: the simulation's end")
    except LimitError as error:
        raise UsageError(str(error)) from None
    if base is not None:
        from mauto.simulate import compare

        comparison = compare.compare_refs(project, base, begin, length, targets or None, contacts, events, coupons,
                                          webhooks, open_store=lambda: _store(ctx, project))
        _print_difference(comparison, output_format, compare.markdown, compare.text_blocks)
        return
    result = run_simulation(project, targets or None, begin, length, contacts, events, coupons, webhooks, contact)
    if render is not None:
        messages = [m for m in result.messages if contact is None or m.contact == contact]
        for index, message in enumerate(messages, start=1):
            message.write(render, index)
    if output_format is DiffFormat.json:
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


@app.command("diff")
@handle_errors
def diff_command(
    ctx: typer.Context,
    base: str = typer.Argument("HEAD", metavar="BASE",
                               help="A git ref, or `deployed` (what the store runs). Default: HEAD, the last commit."),
    head: str | None = typer.Argument(None, metavar="HEAD", help="A git ref. Default: the working tree as it is."),
    output_format: DiffFormat = typer.Option(DiffFormat.text, "--format", "-f", help="text, markdown or json."),
) -> None:
    """What a change does to the workflows: steps added, removed, moved and changed, in_flight, templates."""
    from mauto import diff

    project = _project(ctx)
    result = diff.diff_refs(project, base, head, lambda: _store(ctx, project))
    _print_difference(result, output_format, diff.markdown, diff.text_blocks)


@app.command(name="test")
@handle_errors
def run_tests(
    ctx: typer.Context,
    paths: list[Path] | None = typer.Argument(None, metavar="SCENARIO_OR_DIR",
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
    workflow: Path = typer.Argument(
        ..., metavar="WORKFLOW", help="A workflow file, or the id of a workflow in the project's workflows/ folder."),
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


class DataFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"
    yaml = "yaml"


class ExportFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class ImportKey(str, Enum):
    id = "id"
    email = "email"


class Channel(str, Enum):
    email = "email"
    sms = "sms"


db_app = typer.Typer(help="The store (SQLite or PostgreSQL): create, migrate, describe, copy, index.",
                     no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts in the store: import, show, list, unsubscribe, erase, export.",
                           no_args_is_help=True)
events_app = typer.Typer(help="Events in the store.", no_args_is_help=True)
coupons_app = typer.Typer(help="Coupon pools: each code handed out once, ever; `mauto coupons` counts them.",
                          no_args_is_help=False)
app.add_typer(db_app, name="db")
app.add_typer(contacts_app, name="contacts")
app.add_typer(events_app, name="events")
app.add_typer(coupons_app, name="coupons")


def _store(ctx: typer.Context, project=None, **options):
    """The project's store (`store:` in mauto.yaml, default mauto.db beside it), on the wall clock."""
    from mauto.store import open_store

    project = project or _project(ctx)
    path = project.store_location
    return open_store(path, shown=project.display(path), phone_region=project.phone_region,
                      password_env=project.data.get("store_password_env"), **options)


def _report_problems(result) -> None:
    err = _err()
    for problem in result.problems.kept:
        err.print(Text(str(problem), style="red"))
    hidden = result.problems.count - len(result.problems.kept)
    if hidden:
        err.print(Text(f"… and {hidden} more bad row{'s' if hidden != 1 else ''}", style="red"))
    notices = getattr(result, "notices", [])  # what was taken, and how (a local time the clocks skipped)
    for notice in notices:
        err.print(Text(str(notice), style="yellow"))
    unshown = getattr(result, "notice_count", len(notices)) - len(notices)
    if unshown:
        err.print(Text(f"… and {unshown} more notice{'s' if unshown != 1 else ''}", style="yellow"))


def _finish_load(result, what: str, done: str) -> None:
    """Problems to stderr, one summary line, exit 1 when nothing was written because of bad rows."""
    _report_problems(result)
    count = result.problems.count
    if not result.committed:
        _err().print(Text(f"nothing {what}: {count} bad row{'s' if count != 1 else ''} in {result.source} "
                          "(fix them, or import the good rows with --skip-invalid --rejects FILE)", style="red"))
        raise typer.Exit(int(ExitCode.FINDINGS))
    line = f"{result.source}: {done}"
    if count:
        line += f"; {count} bad row{'s' if count != 1 else ''} skipped"
        if result.rejects:
            line += f", written to {result.rejects}"
    _out().print(line)


@db_app.command("init")
@handle_errors
def db_init(ctx: typer.Context) -> None:
    """Create the store (or bring it to this mauto's schema)."""
    from mauto.store import runtime

    store = _store(ctx, create=True)
    with store:
        with store.transaction() as db:
            made = runtime.ensure_unsubscribe_secret(db)
        if made:
            _out().print(f"{store.shown}: made a new key to sign unsubscribe links with, kept in the store "
                         "(the environment variable `unsubscribe_secret_env` names takes precedence)")
        if store.applied:
            _out().print(f"{store.shown}: schema version {store.version} (applied {len(store.applied)} "
                         f"migration{'s' if len(store.applied) != 1 else ''})")
        else:
            _out().print(f"{store.shown}: already at schema version {store.version}")


@db_app.command("migrate")
@handle_errors
def db_migrate(ctx: typer.Context) -> None:
    """Apply the pending schema migrations, each in its own transaction."""
    with _store(ctx, migrate=True) as store:
        applied = ", ".join(map(str, store.applied)) or "none pending"
        _out().print(f"{store.shown}: schema version {store.version} (migrations applied: {applied})")


@db_app.command("copy")
@handle_errors
def db_copy(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", metavar="TARGET",
                           help="A postgresql:// URL or a SQLite file: an empty store, or none yet (it is created)."),
    password_env: str | None = typer.Option(
        None, "--to-password-env", metavar="NAME",
        help="The environment variable holding the target's PostgreSQL password (else PGPASSWORD or ~/.pgpass)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Copy the whole store into an empty SQLite file or PostgreSQL database, checked row for row."""
    from mauto.daemon.lock import tick_lock
    from mauto.store.copy import copy_store
    from mauto.store.postgres import is_url, shown_url

    project = _project(ctx)
    shown = shown_url(to) if is_url(to) else to
    with _store(ctx, project) as store:
        result = copy_store(store, to if is_url(to) else Path(to), shown_target=shown, password_env=password_env,
                            lock=tick_lock(store))
    if output_format is OutputFormat.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out = _out()
    out.print(f"{result.source} → {result.target}: {result.total:,} rows copied (schema version "
              f"{result.schema_version}), checked row for row, in {result.seconds:.1f}s")
    table = Table("table", "rows")
    for name, count in result.counts.items():
        table.add_row(name, f"{count:,}")
    out.print(table)


@db_app.command("info")
@handle_errors
def db_info(
    ctx: typer.Context,
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """The store's path, schema version and row counts."""
    with _store(ctx) as store:
        info = store.info()
    if output_format is OutputFormat.json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    out = _out()
    out.print(f"{info.path}: schema version {info.version} (this mauto: {info.latest}), {info.journal_mode}, "
              f"{info.size:,} bytes")
    table = Table("table", "rows")
    for name, count in info.counts.items():
        table.add_row(name, f"{count:,}")
    out.print(table)


@db_app.command("index")
@handle_errors
def db_index(
    ctx: typer.Context,
    fields: list[str] | None = typer.Argument(
        None, metavar="[FIELD]...",
        help="Contact fields (declared in mauto.yaml) to index; none: list the audience indexes."),
    drop: bool = typer.Option(False, "--drop", help="Drop the FIELDs' indexes instead of making them."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Make, drop or list the indexes that make audience queries on contact fields an index search."""
    from mauto.store.indexes import field_indexes, list_indexes

    project = _project(ctx)
    if drop and not fields:
        raise UsageError("--drop: name the FIELDs whose indexes to drop")
    with _store(ctx, project) as store:
        if not fields:
            found = list_indexes(store, project.contact_fields)
            if output_format is OutputFormat.json:
                print(json.dumps([index.to_dict() for index in found], indent=2))
                return
            if not found:
                _out().print(f"{store.shown}: no audience indexes (`mauto db index FIELD` makes one)")
                return
            table = Table()
            for column in ("index", "field", "kind", "size", "state"):
                table.add_column(column, no_wrap=True)
            for index in found:
                kind = index.kind if index.every is None else f"{index.kind}, every: {index.every}"
                table.add_row(index.name, index.field, kind, "-" if index.size is None else f"{index.size:,} bytes",
                              index.state)
            _out().print(table)
            return
        changes = field_indexes(store, project.contact_fields, fields, drop=drop)
    if output_format is OutputFormat.json:
        print(json.dumps([change.to_dict() for change in changes], indent=2))
    else:
        for change in changes:
            (_err() if change.action == "failed" else _out()).print(change.sentence())
    if any(change.action == "failed" for change in changes):
        raise typer.Exit(int(ExitCode.FINDINGS))


@contacts_app.command("import")
@handle_errors
def contacts_import(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="FILE", help="CSV, JSON Lines or YAML; - for standard input."),
    data_format: DataFormat | None = typer.Option(None, "--format", "-f",
                                                     help="csv, jsonl or yaml (default: from the file's suffix)."),
    key: ImportKey = typer.Option(ImportKey.id, "--key", help="Match rows to contacts by id or by email."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Import the good rows even if some are bad."),
    rejects: Path | None = typer.Option(None, "--rejects", metavar="FILE",
                                           help="Write the bad rows here, with their line and reason."),
) -> None:
    """Upsert contacts; with any bad row nothing is written (each reported as file:line: reason)."""
    from mauto.store.contacts import import_contacts

    project = _project(ctx)
    with _store(ctx, project) as store:
        result = import_contacts(store, source, fields=project.contact_fields, zone=project.timezone,
                                 fmt=data_format.value if data_format else None, key=key.value,
                                 skip_invalid=skip_invalid, rejects=rejects, phone_region=project.phone_region)
    _finish_load(result, "imported", f"{result.created:,} created, {result.updated:,} updated, "
                                     f"{result.unchanged:,} unchanged")


@contacts_app.command("show")
@handle_errors
def contacts_show(
    ctx: typer.Context,
    contact_id: str = typer.Argument(..., metavar="ID"),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """A contact's fields, latest events and suppressed channels."""
    from mauto.store.contacts import show_contact

    with _store(ctx) as store:
        shown = show_contact(store, contact_id)
    if output_format is OutputFormat.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    out = _out()
    fields = Table("field", "value", title=f"contact {contact_id}")
    for name, value in shown["contact"].items():
        fields.add_row(name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    fields.add_row("suppressed", ", ".join(shown["suppressed"]) or "-")
    out.print(fields)
    events = Table("at", "event", "id", "properties",
                   title=f"latest {len(shown['events'])} of {shown['event_count']} events")
    for event in shown["events"]:
        events.add_row(event["at"], event["name"], event["id"] or "",
                       json.dumps(event["properties"], ensure_ascii=False))
    out.print(events)


@contacts_app.command("list")
@handle_errors
def contacts_list(
    ctx: typer.Context,
    where: str | None = typer.Option(None, "--where", metavar="EXPR",
                                        help="A mauto expression on `contact` and `now`, with has_event(), "
                                             "event_count(), days_since(), in_list() and duration(), e.g. "
                                             "\"'vip' in contact.tags and has_event('order_placed', within='30d')\"."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many contacts."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
    now: str | None = typer.Option(None, "--now", metavar="TIME",
                                      help="Evaluate --where at this time (`now`, `within=`; default: now)."),
) -> None:
    """Contacts in id order, those matching --where."""
    from mauto.store.contacts import iter_contacts

    project = _project(ctx)
    moment = _parse_now(now, "--now", project.timezone)
    with _store(ctx, project) as store:
        contacts = list(iter_contacts(store, project.contact_fields, project.timezone, where, limit, moment))
    if output_format is OutputFormat.json:
        print(json.dumps(contacts, indent=2, ensure_ascii=False))
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=max((len(str(c["id"])) for c in contacts), default=2))
    for name in ("email", "phone", "consent"):
        table.add_column(name, no_wrap=True)
    table.add_column("fields (all: contacts show ID)", no_wrap=True, overflow="ellipsis", max_width=34)
    for contact in contacts:
        others = {name: value for name, value in contact.items()
                  if name not in ("id", "email", "phone", "email_consent", "sms_consent", "created_at", "updated_at")}
        consent = ", ".join(channel for channel in ("email", "sms") if contact[f"{channel}_consent"]) or "none"
        table.add_row(contact["id"], contact.get("email") or "", contact.get("phone") or "", consent,
                      " ".join(f"{name}={value}" for name, value in others.items()))
    out = _out()
    out.print(table)
    out.print(f"{len(contacts):,} contact{'s' if len(contacts) != 1 else ''}")


@contacts_app.command("unsubscribe")
@handle_errors
def contacts_unsubscribe(
    ctx: typer.Context,
    contact_id: str = typer.Argument(..., metavar="ID"),
    channel: Channel = typer.Option(Channel.email, "--channel", help="email or sms."),
) -> None:
    """Consent off for a channel and the address on the suppression list."""
    from mauto.store.contacts import unsubscribe

    with _store(ctx) as store:
        done = unsubscribe(store, contact_id, channel.value)
    note = "" if done["address"] else f" (no {channel.value} address to suppress)"
    _out().print(f"{contact_id}: unsubscribed from {channel.value}{note}")


@contacts_app.command("erase")
@handle_errors
def contacts_erase(
    ctx: typer.Context,
    contact_id: str = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Erase a contact on request: personal data removed, anonymous counts kept, addresses suppressed as hashes."""
    from mauto.store.contacts import erase

    if not yes:
        typer.confirm(f"Erase contact {contact_id}? This cannot be undone", abort=True)
    from mauto.daemon.lock import tick_lock

    with _store(ctx) as store:
        # Never in the middle of a tick: it may hold the contact in memory and write it back.
        lock = tick_lock(store)
        if lock is not None:
            lock.acquire(wait=60.0, doing="nothing was erased; try again")
        try:
            done = erase(store, contact_id)
        finally:
            if lock is not None:
                lock.release()
    removed = _purge_written_messages(ctx, done["message_keys"])
    suppressed = ", ".join(done["suppressed"]) or "no addresses"
    ended = f"; {done['enrollments_ended']} enrollment(s) in flight ended" if done["enrollments_ended"] else ""
    files = f"; {removed} message file(s) of the file transport deleted" if removed else ""
    _out().print(f"{printable(contact_id)}: erased; {done['events_kept']:,} events kept without their properties; "
                 f"suppressed: {suppressed}{ended}{files}")


def _purge_written_messages(ctx: typer.Context, keys: list[tuple[str, str]]) -> int:
    """Delete what the `file` transport wrote for these messages ((key, channel) pairs): erasure reaches the
    copies mauto itself made outside the store. (Logs and rejects files are the operator's: docs/store.md.)"""
    from mauto.channels.files import FileTransport

    try:
        transports = _transports(_project(ctx))
    except MautoError as error:
        _err().print(Text(f"files written by the file transport were not looked for: {error}", style="yellow"))
        return 0
    removed = 0
    for key, channel in keys:
        transport = transports.get(channel)
        if isinstance(transport, FileTransport):
            path = transport.path_for(key, channel)
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


@contacts_app.command("export")
@handle_errors
def contacts_export(
    ctx: typer.Context,
    export_format: ExportFormat | None = typer.Option(
        None, "--format", "-f", help="csv or jsonl (default: from the --output file's name, else csv)."),
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE", help="Default: standard output."),
    where: str | None = typer.Option(None, "--where", metavar="EXPR",
                                     help="Only the contacts this expression selects (as contacts list --where)."),
    now: str | None = typer.Option(None, "--now", metavar="TIME", help="Evaluate --where at this time (default: now)."),
) -> None:
    """Every contact (erased ones left out), or those --where selects, as CSV or JSON Lines."""
    from mauto.store.contacts import export_contacts

    if export_format is None:  # `-o all.jsonl` means JSON Lines, as `contacts import all.jsonl` reads it
        jsonl = output is not None and output.suffix.lower() in (".jsonl", ".ndjson", ".json")
        export_format = ExportFormat.jsonl if jsonl else ExportFormat.csv
    project = _project(ctx)
    fmt = export_format.value
    with _store(ctx, project) as store:
        if where is not None:
            from mauto.audience import export_contacts_matching, write_whole

            moment = _parse_now(now, "--now", project.timezone)

            def matching(handle):
                return export_contacts_matching(store, handle, fmt, project.contact_fields, project.timezone, where,
                                                moment)

            if output is None:
                matching(sys.stdout)
                return
            count = write_whole(output, matching, store, "--output", "the contacts")
        elif output is None:
            export_contacts(store, sys.stdout, fmt, project.contact_fields)
            return
        else:
            from mauto.store.rows import refuse_overwrite, store_files

            refuse_overwrite(output, "--output", store_files(store.path), "the contacts")
            with output.open("w", encoding="utf-8", newline="") as handle:
                count = export_contacts(store, handle, fmt, project.contact_fields)
    _err().print(f"wrote {count:,} contact{'s' if count != 1 else ''} to {output}")


class AudienceFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"
    meta = "meta"
    google = "google"


audience_app = typer.Typer(help="Audiences for ad platforms: files only, never uploaded.", no_args_is_help=True)
app.add_typer(audience_app, name="audience")


@audience_app.command("export")
@handle_errors
def audience_export(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="SEGMENT_OR_EXPR",
                                 help="A segment of mauto.yaml, or an expression on `contact` and `now` (as "
                                      "`contacts list --where`)."),
    export_format: AudienceFormat = typer.Option(AudienceFormat.csv, "--format", "-f",
                                                 help="csv or jsonl (plain), meta or google (hashed as the "
                                                      "platform specifies)."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="FILE", help="Default: standard output."),
    now: str | None = typer.Option(None, "--now", metavar="TIME",
                                   help="Evaluate at this time (`now`, `within=`; default: now)."),
) -> None:
    """The contacts of a segment who may be marketed to, as an ad platform's customer list (docs/audience.md)."""
    from mauto.audience import export_audience, write_whole

    project = _project(ctx)
    moment = _parse_now(now, "--now", project.timezone)
    with _store(ctx, project) as store:
        if out is None:
            result = export_audience(store, project, target, export_format.value, sys.stdout, moment)
        else:
            result = write_whole(out, lambda handle: export_audience(store, project, target, export_format.value,
                                                                     handle, moment), store, "--out", "the audience")
    _err().print(f"wrote {result.summary()}" + (f" to {out}" if out is not None else ""))


@events_app.command("ingest")
@handle_errors
def events_ingest(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="FILE", help="JSON Lines; - for standard input."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Store the good lines even if some are bad."),
    rejects: Path | None = typer.Option(None, "--rejects", metavar="FILE",
                                           help="Write the bad lines here, with their line and reason."),
) -> None:
    """Store events (contact, event, at, id, properties); an event id already stored is skipped."""
    from mauto.store.events import ingest_events

    project = _project(ctx)
    with _store(ctx, project) as store:
        result = ingest_events(store, source, catalogue=project.events, zone=project.timezone,
                               skip_invalid=skip_invalid, rejects=rejects)
    _finish_load(result, "stored", f"{result.stored:,} stored, {result.duplicates:,} already stored")


@coupons_app.callback(invoke_without_command=True)
def coupons_root(
    ctx: typer.Context,
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
    now: str | None = typer.Option(None, "--now", metavar="TIME",
                                   help="Count the codes expired at this time (default: now)."),
) -> None:
    """Each pool's codes: assigned, open, redeemed, expired, left; a warning when a pool runs low."""
    if ctx.invoked_subcommand is None:
        _coupons_report(ctx, output_format, now)


@handle_errors
def _coupons_report(ctx: typer.Context, output_format: OutputFormat, now: str | None) -> None:
    from mauto.store.coupons import coupon_report

    project = _project(ctx)
    moment = _parse_now(now, "--now", project.timezone)
    with _store(ctx, project) as store:
        pools = coupon_report(store, project.coupons, moment,
                              lambda pool, total: project.coupon_pool(pool).low_at(total))
    warnings = [warning for pool in pools if (warning := pool.warning())]
    if output_format is OutputFormat.json:
        print(json.dumps({"pools": [pool.to_dict() for pool in pools], "warnings": warnings}, indent=2,
                         ensure_ascii=False))
        return
    if not pools:
        _out().print("no coupon pools: load codes with `mauto coupons load POOL FILE`")
        return
    table = Table("pool", "total", "assigned", "open", "redeemed", "expired", "left", box=None, pad_edge=False)
    for pool in pools:
        figures = pool.to_dict()
        table.add_row(Text(printable(figures["pool"])), *(f"{figures[key]:,}" for key in
                                                         ("total", "assigned", "open", "redeemed", "expired", "left")))
    _out().print(table)
    for warning in warnings:
        _err().print(Text(f"! {warning}", style="yellow"))


@coupons_app.command("load")
@handle_errors
def coupons_load(
    ctx: typer.Context,
    pool: str = typer.Argument(..., metavar="POOL"),
    source: Path = typer.Argument(..., metavar="FILE", help="One code a line, or a CSV with a `code` column."),
) -> None:
    """Add codes to a pool; codes already loaded keep their state."""
    from mauto.store.coupons import load_coupons

    with _store(ctx) as store:
        result = load_coupons(store, pool, source)
    already = result.read - result.repeated - result.added
    repeated = f", {result.repeated:,} repeated in the file (loaded once)" if result.repeated else ""
    _out().print(f"{pool}: {result.added:,} codes added, {already:,} already loaded{repeated}")


def _interactive() -> bool:
    """Whether deploy may ask for confirmation: stdin and stdout are a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _print_plan(result) -> None:
    """A plan like Terraform's: + new, ~ changed with the in-flight sentence, = unchanged, - removed, ! refused."""
    out = _out()
    for change in result.changes:
        if change.kind == "refused":
            out.print(Text(f"! {change.id} v{change.version}: refused: {change.reason} ({change.where})",
                           style="red"))
        elif change.kind == "new":
            again = " (again; it was removed)" if change.state == "removed" else ""
            out.print(Text(f"+ {change.id} v{change.version}{again} ({change.file})", style="green"))
        elif change.kind == "changed":
            out.print(Text(f"~ {change.id} v{change.old_version} → v{change.version} ({change.file}), "
                           f"in_flight: {change.policy}", style="yellow"))
            out.print(f"    {change.sentence()}")
        elif change.kind == "removed":
            out.print(Text(f"- {change.id} v{change.old_version}: file gone, stops taking new contacts",
                           style="red"))
            out.print(f"    {change.sentence()}")
    for change in result.changes:
        for note in change.winners:
            out.print(f"  {change.id}: {note}")
    if result.release is not None and result.release.changed:
        _print_release(out, result.release)
    unchanged = len(result.of("unchanged"))
    if unchanged:
        out.print(f"= {unchanged} unchanged")
    for index in result.indexes:  # the date triggers' indexes deploy makes (+) or drops (-)
        out.print(Text(index.sentence(), style="red" if index.action == "drop" else "green"))
    counts = result.counts()
    out.print(f"Plan: {counts['new']} new, {counts['changed']} changed, {counts['removed']} removed, "
              f"{counts['unchanged']} unchanged, {counts['refused']} refused.")


def _print_release(out: Console, change) -> None:
    """The templates and settings a deploy makes current, and what the contacts in flight then get."""
    if change.first:
        out.print(Text("+ release: the templates and mauto.yaml as they are (the first release: the daemon renders "
                       "only from releases from now on)", style="green"))
        return
    for template in change.templates:
        mark, style = {"added": ("+", "green"), "removed": ("-", "red")}.get(template.kind, ("~", "yellow"))
        users = ", ".join(template.used_by) or "no send of the workflows"
        waiting = f"; {template.waiting:,} contact{'s' if template.waiting != 1 else ''} in flight there" \
            if template.waiting else ""
        out.print(Text(f"{mark} {template.path} ({users}{waiting})", style=style))
        for line in template.diff:
            out.print(Text("    " + line, style="red" if line.startswith("-") else "green" if line.startswith("+")
                           else "dim"))
    if change.settings:
        out.print(Text(f"~ mauto.yaml: {', '.join(change.settings)}", style="yellow"))
    out.print(Text("  contacts in flight render the new templates from their next message on", style="dim"))


@app.command("plan")
@handle_errors
def plan_command(
    ctx: typer.Context,
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """What `mauto deploy` would do: new, changed (with what happens to contacts in flight), removed."""
    from mauto.deploy import plan

    project = _project(ctx)
    with _store(ctx, project) as store:
        result = plan(project, store, _parse_now(None))
    if output_format is OutputFormat.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_plan(result)
    if result.refused:
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command("deploy")
@handle_errors
def deploy_command(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Deploy without asking (needed when not on a terminal)."),
) -> None:
    """Lint, show the plan, and deploy it in one transaction (or refuse and write nothing)."""
    from mauto.deploy import DeployRefused, check_lint, deploy, plan, refusal

    project = _project(ctx)
    now = _parse_now(None)
    with _store(ctx, project) as store:
        check_lint(project, now)
        shown = plan(project, store, now)
        _print_plan(shown)
        if shown.refused:
            raise DeployRefused(refusal(shown))
        if not shown.has_changes:
            _out().print("Nothing to deploy.")
            return
        if not yes:
            if not _interactive():
                raise UsageError("not deploying without --yes: there is no terminal to ask for confirmation")
            if not typer.confirm("Deploy this plan?", default=False):
                _err().print("not deployed")
                raise typer.Exit(int(ExitCode.FINDINGS))
        # Applied only if the plan made inside the write transaction is still the one shown (and confirmed).
        result = deploy(project, store, now, expected=shown)
    counts = result.plan.counts()
    line = f"Deployed: {counts['new']} new, {counts['changed']} changed, {counts['removed']} removed"
    if result.moved or result.stopped:
        line += f"; {result.moved} contacts moved, {result.stopped} stopped"
    if result.git.commit:
        line += f" (git {result.git.commit[:12]})"
    _out().print(line + ".")
    for change in result.indexes:
        (_err() if change.action == "failed" else _out()).print(change.sentence())


@app.command("rollback")
@handle_errors
def rollback_command(
    ctx: typer.Context,
    workflow: str = typer.Argument(..., metavar="ID", help="The workflow's id."),
    to: int | None = typer.Option(None, "--to", help="The version to run again (default: the previous one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what the rollback would do; write nothing."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Make an earlier deployed version current again; contacts in flight follow its in_flight policy."""
    from mauto.deploy import rollback

    with _store(ctx) as store:
        result = rollback(store, workflow, to, dry_run=dry_run)
    if output_format is OutputFormat.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    out = _out()
    out.print(f"{workflow}: v{result['from']} → v{result['to']} (new contacts enter v{result['to']}), "
              f"in_flight: {result['in_flight_policy']}")
    out.print(f"    {result['summary']}")
    if dry_run:
        out.print(f"Dry run, nothing written: {result['moved']} contacts would move, {result['stopped']} would stop.")
    else:
        out.print(f"Rolled back: {result['moved']} contacts moved, {result['stopped']} stopped.")
    for index in result["indexes"]:
        (_err() if index["action"] == "failed" else out).print(index["summary"])


@app.command("pause")
@handle_errors
def pause_command(ctx: typer.Context,
                  workflow: str = typer.Argument(..., metavar="ID", help="The workflow's id.")) -> None:
    """Stop taking new contacts and stop moving those inside, until `mauto resume`."""
    from mauto.deploy import pause

    with _store(ctx) as store:
        result = pause(store, workflow)
    _out().print(f"{workflow} v{result['version']}: paused")


@app.command("resume")
@handle_errors
def resume_command(ctx: typer.Context,
                   workflow: str = typer.Argument(..., metavar="ID", help="The workflow's id.")) -> None:
    """Run a paused workflow again."""
    from mauto.deploy import resume

    with _store(ctx) as store:
        result = resume(store, workflow)
    held = result.get("held", 0)
    note = f" ({held} held event{'s' if held != 1 else ''} go to its contacts first, at the next tick)" if held else ""
    _out().print(f"{workflow} v{result['version']}: active{note}")


@app.command("status")
@handle_errors
def status_command(
    ctx: typer.Context,
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """The daemons at work on the store, the release, and each deployed workflow: version, state, enrollments
    active and waiting, next wake-up, failures. JSON: an object with `workers`, `release`, `workflows`, `tasks`."""
    from mauto.daemon.tasks import task_summary
    from mauto.deploy import current_release, status
    from mauto.store.workers import listed

    with _store(ctx) as store:
        rows = status(store)
        tasks = task_summary(store, datetime.now(UTC))
        release = current_release(store)
        with store.transaction() as db:
            workers = listed(db, datetime.now(UTC))
    if output_format is OutputFormat.json:
        for row in rows:
            row["release"] = release["id"] if release else None
        # all that the text says: the daemons at work on the store (every machine's), the release, the tasks
        print(json.dumps({"workers": workers, "release": release, "workflows": rows, "tasks": tasks}, indent=2))
        return
    _print_workers(workers)
    if not rows:
        _out().print("No workflows deployed (run `mauto deploy`).")
        return
    if release is None:
        _out().print("No release yet: the daemon renders from the files on disk until the next `mauto deploy`.")
    else:
        commit = f" from commit {release['git_commit'][:12]}" if release["git_commit"] else ""
        dirty = " (with uncommitted changes)" if release["git_dirty"] else ""
        who = f" by {release['deployed_by']}" if release["deployed_by"] else ""
        _out().print(Text(f"release #{release['id']} ({release['hash'][:12]}){commit}{dirty}, {release['note']}{who} "
                          f"at {release['created_at'][:16].replace('T', ' ')} UTC"))
    table = Table("workflow", "version", "state", "active", "waiting", "next wake-up", "failures")
    for row in rows:
        table.add_row(row["id"], f"v{row['version']}", row["state"], f"{row['active']:,}",
                      f"{row['waiting'] + row['pending']:,}", row["next_wake_at"] or "-", f"{row['failures']:,}")
    _out().print(table)
    for row in rows:
        for winner in row["winners"]:
            p_value = "< 0.001" if winner["p_value"] < 0.001 else f"= {winner['p_value']:.3f}"
            effect = ("new entries all go to it" if winner["in_force"]
                      else f"v{row['version']} no longer sends new entries to it")
            _out().print(f"{row['id']}: split {winner['split']} picked {winner['variant']} on "
                         f"{datetime.fromisoformat(winner['decided_at']):%Y-%m-%d %H:%M} UTC (always-valid p "
                         f"{p_value}): {effect}")
    for row in rows:
        if row.get("held"):
            _out().print(f"{row['id']}: {row['held']} event{'s' if row['held'] != 1 else ''} held while paused (the "
                         f"first tick after `mauto resume {row['id']}` applies them, in order)")
    if tasks["open"] or tasks["handoff_failed"]:
        parts = [f"{tasks['open']:,} open"] + ([f"{tasks['overdue']:,} overdue"] if tasks["overdue"] else []) + (
            [f"{tasks['handoff_failed']:,} not handed over (`mauto tasks --handoff failed`)"]
            if tasks["handoff_failed"] else [])
        _out().print(f"tasks: {', '.join(parts)} (`mauto tasks --open`)")


def _print_workers(workers: list[dict]) -> None:
    """One line for the daemons alive on this store (`mauto daemon` on any machine), one for those gone today."""
    if not workers:  # ticks from cron (`run --once`) only: no daemon to speak of
        return
    alive = [row for row in workers if row["alive"]]
    gone = [row for row in workers if not row["alive"]]

    def described(row: dict) -> str:
        last = f", last tick {row['last_tick_at'][11:19]} UTC" if row["last_tick_at"] else ", no tick yet"
        state = row["state"] if row["alive"] else ("stopped" if row["state"] == "stopped" else "silent")
        return (f"{printable(row['host'])} pid {row['pid']} ({state}{last}, seen {row['seen_at'][11:19]} UTC, "
                f"{row['ticks']:,} tick{'s' if row['ticks'] != 1 else ''})")

    if alive:
        _out().print(Text(f"workers alive: {len(alive)}: " + "; ".join(described(row) for row in alive)))
    else:
        _out().print(Text("workers alive: none (no `mauto daemon` has written a heartbeat lately)"))
    if gone:
        _out().print(Text(f"workers gone today: {len(gone)}: " + "; ".join(described(row) for row in gone)))


# --- the daemon ----------------------------------------------------------------------------------------


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _action_logger(log_format: LogFormat, quiet: bool, console: Console | None = None):
    """One line per action on stderr: readable text, or JSON objects for a log collector."""
    err = console or _err()

    def log(kind: str, data: dict) -> None:
        if quiet and kind not in ("unknown", "parked", "busy", "error", "lock"):
            return
        if log_format is LogFormat.json:
            record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "action": kind}
            record.update({key: value for key, value in data.items() if value not in (None, "")})
            print(json.dumps(record, ensure_ascii=False, default=str), file=sys.stderr, flush=True)
            return
        if kind == "step":
            what = " ".join(part for part in (data.get("channel"), data.get("template")) if part)
            text = (f"{data['at']} {data['kind']:<10} {data['contact']} {data['workflow']} v{data['version']} "
                    f"{data['step']}" + (f" {what}" if what else "") + (f" — {data['why']}" if data.get("why") else ""))
        else:
            text = f"{kind:<10} " + " ".join(f"{key}={value}" for key, value in data.items() if value not in (None, ""))
        text = printable(text)  # contact data may hold CR/LF or escapes: one action is one line, as written
        style = {"parked": "red", "unknown": "red", "error": "red", "busy": "yellow", "retry": "yellow"}.get(kind)
        err.print(Text(text, style=style or ""), soft_wrap=True, highlight=False)

    return log


def _transports(project):
    from mauto.channels import build_transports

    return build_transports(project)


@app.command("run")
@handle_errors
def run_command(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One tick, then exit (what cron runs)."),
    now: str | None = typer.Option(None, "--now", metavar="TIME",
                                      help="Run the tick as if it were this time (ISO 8601; tests, replays)."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="text or json (one object a line)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log only what needs a person (parked, unknown)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f",
                                               help="The tick's report as text or json."),
) -> None:
    """One tick against the store: take new events, enroll, advance what is due, send the outbox."""
    if not once:
        raise UsageError("`mauto run` needs --once (one tick, for cron); `mauto daemon` runs ticks on an interval")
    from mauto.daemon.tick import tick

    project = _project(ctx)
    moment = _parse_now(now, "--now", project.timezone)
    log = _action_logger(log_format, quiet)
    with _store(ctx, project) as store:
        transports = _transports(project)
        with _progress(log_format) as progress:
            report = tick(project, store, moment, transports, log, progress=progress)
    if output_format is OutputFormat.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for note in report.notes:
            _err().print(note)
        _out().print(report.line())
    if report.needs_attention:  # docs/daemon.md, "Exit codes"
        raise typer.Exit(int(ExitCode.FINDINGS))


class _progress:
    """A progress bar on stderr for long ticks, when stderr is a terminal and the log is text."""

    def __init__(self, log_format: LogFormat) -> None:
        self.enabled = log_format is LogFormat.text and _err().is_terminal
        self.bar: Progress | None = None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = self.bar = Progress(SpinnerColumn(), TextColumn("{task.completed:,} items"), TimeElapsedColumn(),
                                  console=_err(), transient=True)
        bar.start()
        task = bar.add_task("tick", total=None)
        return lambda count: bar.advance(task, count)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command("daemon")
@handle_errors
def daemon_command(
    ctx: typer.Context,
    interval: str = typer.Option("30s", "--interval", metavar="DURATION", help="Time between ticks (default 30s)."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="text or json (one object a line)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log only what needs a person, and each tick's report."),
) -> None:
    """Run ticks every --interval and at each `schedule` trigger's time; SIGTERM or Ctrl-C ends after the batch in hand."""  # noqa: E501 - typer's help: one line
    import signal
    import threading

    from mauto.daemon.scheduler import serve
    from mauto.workflow.durations import parse_duration

    project = _project(ctx)
    try:
        every = parse_duration(interval)
    except ValueError as error:
        raise UsageError(f"--interval {interval}: {error}") from None
    if every.total_seconds() < 1:
        raise UsageError(f"--interval {interval}: at least 1s")
    log = _action_logger(log_format, quiet)
    from mauto.daemon.tick import message_renderer

    with _store(ctx, project) as store:
        message_renderer(project, store)  # refuse a missing, too new or unmigrated store, or no unsubscribe key
    _transports(project)  # and a channel that is not configured
    stop = threading.Event()
    reason: list[str] = []

    def on_signal(number, frame) -> None:
        reason.append(signal.Signals(number).name)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, on_signal)

    def on_report(report) -> None:
        if log_format is LogFormat.json:
            print(json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                              "action": "tick", **report.to_dict()}), file=sys.stderr, flush=True)
        else:
            _err().print(report.line(), highlight=False)

    log("start", {"store": str(_store_path(ctx, project)), "interval": interval, "pid": os.getpid()})
    serve(project, lambda: _store(ctx, project), every, lambda: _transports(project), log, on_report, stop)
    log("stop", {"signal": reason[0] if reason else None})


def _store_path(ctx: typer.Context, project):
    from mauto.store import store_path

    return project.display(store_path(project))


MAX_ID = 2**63 - 1  # SQLite's largest row id: a larger one is no message, not an internal error

outbox_app = typer.Typer(help="The outbox: messages sent, pending, parked and unknown.", no_args_is_help=False,
                         invoke_without_command=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.callback(invoke_without_command=True)
@handle_errors
def outbox_command(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help="Only parked messages (refused for good, or out of retries)."),
    unknown: bool = typer.Option(False, "--unknown", help="Only messages whose hand-off was cut off (RFC 1047)."),
    status_filter: str | None = typer.Option(None, "--status", metavar="STATUS",
                                                help="pending, sent, parked, unknown or cancelled."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, help="At most this many (default 100)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """List the outbox: counts by status, then the messages asked for (default: those needing a person)."""
    if ctx.invoked_subcommand is not None:
        return
    from mauto.store import runtime

    statuses: tuple[str, ...] = ()
    if status_filter:
        if status_filter not in ("pending", "sent", "parked", "unknown", "cancelled"):
            raise UsageError(f"--status {status_filter}: one of pending, sent, parked, unknown, cancelled")
        statuses += (status_filter,)
    if failed:
        statuses += ("parked",)
    if unknown:
        statuses += ("unknown",)
    statuses = statuses or ("parked", "unknown")
    with _store(ctx) as store, store.guard():
        counts = runtime.status_counts(store.db)
        rows = runtime.messages(store.db, statuses, limit)
    if output_format is OutputFormat.json:
        print(json.dumps({"counts": counts, "messages": rows}, indent=2, default=str))
        return
    out = _out()
    out.print(", ".join(f"{count:,} {status}" for status, count in counts.items()))
    if not rows:
        out.print(f"No {' or '.join(statuses)} messages.")
        return
    table = Table("id", "status", "contact", "message", "tries", "answer", box=None, pad_edge=False)
    table.columns[3].no_wrap = True
    table.columns[5].overflow = "fold"
    for row in rows:
        table.add_row(str(row["id"]), row["status"], row["contact"], f"{row['workflow']}/{row['step']}",
                      str(row["attempts"]), row["answer"] or "-")
    out.print(table)
    if any(row["status"] == "unknown" for row in rows):
        out.print("An unknown message may or may not have reached the provider: check with it, then "
                  "`mauto outbox retry ID` to send it again or `mauto outbox drop ID`.")


@outbox_app.command("retry")
@handle_errors
def outbox_retry_command(
    ctx: typer.Context,
    message_id: int = typer.Argument(..., metavar="ID", min=1, max=MAX_ID,
                                     help="The message's id (from `mauto outbox`)."),
) -> None:
    """Queue a parked or unknown message again: the next tick hands it to its provider."""
    from mauto.daemon.outbox import retry_message

    with _store(ctx) as store:
        row = retry_message(store, message_id, _parse_now(None))
    _out().print(f"message {message_id} ({row['key']}) is pending again (was {row['was']}); the next tick sends it")


@outbox_app.command("drop")
@handle_errors
def outbox_drop_command(
    ctx: typer.Context,
    message_id: int = typer.Argument(..., metavar="ID", min=1, max=MAX_ID,
                                     help="The message's id (from `mauto outbox`)."),
) -> None:
    """Decide not to send a parked, unknown or pending message (it becomes cancelled, never sent)."""
    from mauto.daemon.outbox import drop_message

    with _store(ctx) as store:
        row = drop_message(store, message_id, _parse_now(None))
    _out().print(f"message {message_id} ({row['key']}) dropped (was {row['was']})")


@app.command("failures")
@handle_errors
def failures_command(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=MAX_ID, help="At most this many (default 50)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """What ticks could not handle, newest first: failed enrollments, events and triggers, with the reason."""
    from mauto.store import runtime

    with _store(ctx) as store, store.guard():
        rows = runtime.failures(store.db, limit)
    if output_format is OutputFormat.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    out = _out()
    if not rows:
        out.print("No failures.")
        return
    table = Table("when", "what", "contact", "workflow", "reason", box=None, pad_edge=False)
    table.columns[4].overflow = "fold"
    for row in rows:
        table.add_row(row["at"][:19], f"{row['kind']} {row['ref'] or ''}".strip(), row["contact"] or "-",
                      row["workflow"] or "-", printable(row["reason"]))
    out.print(table)


def _parse_since(value: str | None, option: str, now: datetime, zone_name: str | None) -> datetime | None:
    """A window's bound: an ISO 8601 time (read in the project's zone without an offset), or a duration that
    long before now (`7d`, `12h`)."""
    if value is None:
        return None
    from mauto.workflow.durations import DurationTooLong, parse_duration

    try:
        duration = parse_duration(value)
    except DurationTooLong as error:
        raise UsageError(f"{option} {error}") from None
    except ValueError:
        pass
    else:
        from mauto.limits import EARLIEST

        if now - EARLIEST < duration:
            raise UsageError(f"{option} {value}: that long ago is before {EARLIEST:%Y-%m-%d}, the earliest moment "
                             "mauto handles")
        return now - duration
    try:
        return _parse_now(value, option, zone_name)
    except UsageError as error:
        if "not an ISO 8601 time" not in str(error):
            raise  # an ISO time out of range says so
        raise UsageError(f"{option} {value}: not a duration such as 7d or 12h, nor an ISO 8601 time such as "
                         "2026-11-23 or 2026-11-23T09:00:00+01:00") from None


@app.command("stats")
@handle_errors
def stats_command(
    ctx: typer.Context,
    workflow: str | None = typer.Argument(None, help="A deployed workflow's id; none: one line per workflow."),
    since: str | None = typer.Option(None, "--since", help="From this time (ISO 8601) or this long ago (7d)."),
    until: str | None = typer.Option(None, "--until", help="Before this time (ISO 8601) or this long ago."),
    version: int | None = typer.Option(None, "--version", min=1, max=MAX_ID, help="One deployed version only."),
    show_problems: bool = typer.Option(False, "--problems", help="Stuck and failed enrollments, parked and "
                                                                 "unknown messages, with their ids."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=MAX_ID,
                              help="With --problems: at most this many of each kind (default 50)."),
    daily: bool = typer.Option(False, "--daily", help="With --format json: the activity per UTC day too."),
    now_text: str | None = typer.Option(None, "--now", help="Read as of this time (ISO 8601; default: now): what "
                                                            "is late, and what `--since 7d` counts from."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """How each workflow runs: entered, converted, each step's arrivals and sends, opens and clicks, A/B
    verdicts, problems."""
    from mauto.stats import query, text

    project = _project(ctx)
    now = _parse_now(now_text, "--now", project.timezone)
    window = query.Window(_parse_since(since, "--since", now, project.timezone),
                          _parse_since(until, "--until", now, project.timezone), version)
    if window.since and window.until and window.since >= window.until:
        raise UsageError(f"--since {since} is not before --until {until}")
    if version is not None and workflow is None:
        raise UsageError("--version needs a WORKFLOW: versions are numbered per workflow")
    if show_problems and (since or until or version is not None):
        given = "--since" if since else "--until" if until else "--version"
        raise UsageError(f"{given} does not apply to --problems: it lists what needs a person now, whenever it "
                         "began (stuck and failed enrollments, parked and unknown messages)")
    with _store(ctx, project) as store, store.guard():
        if show_problems:
            if workflow is not None:
                query.workflow_stats(store, workflow, now, window)  # a workflow that is not deployed is an error
            figures = query.problems(store.db, workflow, now, limit=limit)
            shown = text.problems(figures)
        elif workflow is None:
            figures = query.overview(store, now, window)
            shown = text.overview(figures)
        else:
            figures = query.workflow_stats(store, workflow, now, window, daily=daily)
            shown = text.workflow(figures)
    if output_format is OutputFormat.json:
        print(query.dumps(figures))
        return
    out = _out()
    for item in shown:
        out.print(item)


@app.command("report")
@handle_errors
def report_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write (replaced whole, never half-written); "
                                                      "- for standard output."),
    workflows: list[str] | None = typer.Argument(None, metavar="[WORKFLOW]...", help="Only these workflows."),
    since: str | None = typer.Option(None, "--since", help="From this time (ISO 8601) or this long ago (7d)."),
    until: str | None = typer.Option(None, "--until", help="Before this time (ISO 8601) or this long ago."),
    now_text: str | None = typer.Option(None, "--now", help="Read as of this time (ISO 8601; default: now)."),
) -> None:
    """One self-contained HTML file: per workflow the funnel, the A/B results with their intervals, the activity
    per day, the problems and the diagram. Opens offline; attach it to a pull request or an email."""
    from mauto.stats.query import Window
    from mauto.stats.report import build_report

    project = _project(ctx)
    now = _parse_now(now_text, "--now", project.timezone)
    window = Window(_parse_since(since, "--since", now, project.timezone),
                    _parse_since(until, "--until", now, project.timezone))
    if window.since and window.until and window.since >= window.until:
        raise UsageError(f"--since {since} is not before --until {until}")
    try:
        folder = str(out) != "-" and out.is_dir()
    except OSError as error:  # a name too long for the file system, a folder one may not read
        raise UsageError(f"--out {out}: {error.strerror or error}") from None
    if folder:
        raise UsageError(f"--out {out}: a folder; name the file to write, e.g. {out / 'report.html'}")
    with _store(ctx, project) as store:
        size = build_report(project, store, now, out, window, workflows or None)
    if str(out) != "-":
        _err().print(f"wrote {out} ({size:,} bytes)")


@app.command("inspect")
@handle_errors
def inspect_command(
    ctx: typer.Context,
    contact_id: str = typer.Argument(..., metavar="CONTACT", help="The contact's id."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
    since: str | None = typer.Option(None, "--since", metavar="TIME",
                                     help="Only what happened from this time on (ISO 8601; without an offset, "
                                          "in the project's zone) or this long ago (7d)."),
    limit: int = typer.Option(500, "--limit", "-n", min=1, max=MAX_ID,
                              help="At most the latest N entries of the timeline (default 500)."),
) -> None:
    """A contact's whole journey across workflows, in time order, times in the contact's zone: events,
    enrollments, every step and why, messages with their status, opens and clicks."""
    from mauto.stats.inspect import inspect, render

    project = _project(ctx)
    moment = _parse_since(since, "--since", datetime.now(UTC), project.timezone)
    with _store(ctx, project) as store:
        # one row more than the limit is read to tell whether there are more: SQLite's largest integer less one
        report = inspect(store, contact_id, default_zone=project.timezone, since=moment, limit=min(limit, MAX_ID - 1))
    if output_format is OutputFormat.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    _out().print(render(report), soft_wrap=True)


# --- tasks -----------------------------------------------------------------------------------------------

tasks_app = typer.Typer(help="Sales tasks made by `task` steps: list them, mark them done, reopen them.",
                        no_args_is_help=False, invoke_without_command=True)
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback(invoke_without_command=True)
@handle_errors
def tasks_command(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only tasks not done yet, the soonest due first."),
    owner: str | None = typer.Option(None, "--owner", metavar="ASSIGNEE",
                                     help="Only the tasks of this assignee (case ignored)."),
    workflow: str | None = typer.Option(None, "--workflow", metavar="ID", help="Only the tasks of this workflow."),
    handoff: str | None = typer.Option(None, "--handoff", metavar="STATE",
                                       help="Only tasks whose hand-off is pending, done or failed."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=MAX_ID, help="At most this many (default 100)."),
    now: str | None = typer.Option(None, "--now", metavar="TIME",
                                   help="As if it were this time (ISO 8601): what is overdue then."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """The tasks `task` steps made, newest first (--open: the soonest due first), with their hand-off."""
    if ctx.invoked_subcommand is not None:
        return
    from mauto.daemon.tasks import list_tasks, tasks_table

    project = _project(ctx)
    moment = _parse_now(now, "--now", project.timezone)
    with _store(ctx, project) as store:
        listing = list_tasks(store, moment, open_only=open_only, owner=owner, workflow=workflow, handoff=handoff,
                             limit=limit)
    if output_format is OutputFormat.json:
        print(json.dumps(listing, indent=2, ensure_ascii=False))
        return
    out = _out()
    if not listing["tasks"]:
        out.print("No tasks.")
        return
    out.print(tasks_table(listing, project.timezone))
    if listing["total"] > len(listing["tasks"]):
        out.print(f"{len(listing['tasks'])} of {listing['total']} tasks shown (--limit N for more)")


@tasks_app.command("done")
@handle_errors
def tasks_done_command(
    ctx: typer.Context,
    task_id: int = typer.Argument(..., metavar="ID", min=1, max=MAX_ID, help="The task's id (from `mauto tasks`)."),
    by: str | None = typer.Option(None, "--by", metavar="NAME", help="Who did it (default: your login name)."),
) -> None:
    """Mark a task done; one done already is left as it is."""
    from mauto.daemon.tasks import done_line, done_task

    project = _project(ctx)
    with _store(ctx, project) as store:
        result = done_task(store, task_id, _parse_now(None), by)
    _out().print(done_line(result, project.timezone))


@tasks_app.command("reopen")
@handle_errors
def tasks_reopen_command(
    ctx: typer.Context,
    task_id: int = typer.Argument(..., metavar="ID", min=1, max=MAX_ID, help="The task's id (from `mauto tasks`)."),
) -> None:
    """Make a done task open again."""
    from mauto.daemon.tasks import reopen_line, reopen_task

    with _store(ctx) as store:
        result = reopen_task(store, task_id, _parse_now(None))
    _out().print(reopen_line(result))


keys_app = typer.Typer(help="API keys for `mauto serve`: made, listed, revoked.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
@handle_errors
def keys_create(ctx: typer.Context,
                name: str = typer.Argument(..., help="What the key is for: website, crm-sync.")) -> None:
    """Make a key and print it, once: the store keeps only its hash."""
    from mauto.store.keys import create_key

    with _store(ctx, create=True) as store:
        key = create_key(store, name, datetime.now(UTC))
    print(key)
    _err().print(f"key `{name}` made; it is shown this once: keep it where secrets are kept "
                 f"(`mauto keys revoke {name}` if it leaks)")


@keys_app.command("list")
@handle_errors
def keys_list(
    ctx: typer.Context,
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """The keys, revoked ones included: name, first characters, made, last used."""
    from mauto.store.keys import list_keys

    with _store(ctx) as store:
        rows = list_keys(store)
    if output_format is OutputFormat.json:
        print(json.dumps(rows, indent=2))
        return
    out = _out()
    if not rows:
        out.print("No keys: `mauto keys create NAME` makes one.")
        return
    table = Table("name", "key", "made", "last used", "state", box=None, pad_edge=False)
    for row in rows:
        table.add_row(row["name"], f"{row['prefix']}…", row["created_at"][:19], (row["last_used_at"] or "-")[:19],
                      f"revoked {row['revoked_at'][:19]}" if row["revoked_at"] else "in use")
    out.print(table)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(ctx: typer.Context, name: str = typer.Argument(..., help="The key's name.")) -> None:
    """Revoke a key: refused from now on."""
    from mauto.store.keys import revoke_key

    with _store(ctx) as store:
        revoke_key(store, name, datetime.now(UTC))
    _out().print(f"key `{name}` revoked")


bounces_app = typer.Typer(help="The bounce mailbox: delivery status notifications and complaints, read.",
                          no_args_is_help=True)
app.add_typer(bounces_app, name="bounces")


@bounces_app.command("ingest")
@handle_errors
def bounces_ingest(
    ctx: typer.Context,
    source: Path = typer.Argument(..., metavar="MAILDIR|MBOX", help="A Maildir folder or an mbox file."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Record the bounces and complaints of a mailbox: hard ones and complaints suppress the address, soft ones
    count (serve.soft_bounce_limit). Safe to run again on the same mailbox."""
    try:
        import mauto.bounces  # noqa: F401 - flufl.bounce, before anything is read
        from mauto.serve.mailbox import ingest_bounces
    except ImportError as error:
        raise MautoError(f"mauto bounces needs the `bounces` extra: pip install 'mauto[bounces]' ({error})") from None
    project = _project(ctx)
    with _store(ctx, project) as store:
        result = ingest_bounces(project, store, source, datetime.now(UTC))
    if output_format is OutputFormat.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for where, why in result.skipped:
        _err().print(Text(f"{where}: skipped: {why}", style="yellow"))
    if result.skipped_count > len(result.skipped):
        _err().print(f"… and {result.skipped_count - len(result.skipped)} more skipped")
    _out().print(result.line())


@app.command("serve")
@handle_errors
def serve_command(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default 127.0.0.1: put a TLS "
                                                           "proxy in front, see docs/serve.md)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on (default 8080)."),
    forwarded_allow_ips: str = typer.Option("127.0.0.1", "--forwarded-allow-ips", metavar="IPS",
                                            help="Proxies whose X-Forwarded-For/-Proto are trusted, comma-separated "
                                                 "(default 127.0.0.1)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (default: only errors and "
                                                                "answers slower than 1 s)."),
) -> None:
    """Hear the recipients: the events API, one-click unsubscribe, opens, clicks, providers' webhooks."""
    try:
        from mauto.serve.main import listen, serve, serve_config
    except ImportError as error:
        raise MautoError(f"mauto serve needs the `serve` extra: pip install 'mauto[serve]' ({error})") from None
    project = _project(ctx)
    with _store(ctx, project) as store:
        config = serve_config(project, store)
    sock = listen(host, port)
    _err().print(f"mauto serve: listening on http://{host}:{port} (store {config.project.display(config.store_path)})")
    serve(config, sock, forwarded_allow_ips, access_log)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
