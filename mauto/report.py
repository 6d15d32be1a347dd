"""How `mauto simulate` shows its result in a terminal (and in a pull request): timelines, then funnels."""
from __future__ import annotations

from collections import defaultdict

from rich.table import Table
from rich.text import Text

from mauto.engine.state import LogEntry
from mauto.engine.timing import zone
from mauto.simulate import SimulationResult

_STYLE = {"send": "green", "suppressed": "yellow", "postponed": "yellow", "failed": "red bold", "exit": "magenta",
          "goal": "cyan bold", "complete": "dim", "skip": "dim", "wait": "dim", "enter": "bold"}


def _what(entry: LogEntry) -> str:
    if entry.kind in ("send", "suppressed", "postponed"):
        verb = {"send": entry.channel, "suppressed": f"no {entry.channel}", "postponed": f"{entry.channel} later"}
        return f"{verb[entry.kind]} {entry.template}"
    return entry.kind


def timelines(result: SimulationResult) -> list[Text]:
    """One block per contact: a header line, then a line per step, times in the contact's own zone."""
    by_contact: dict[str, list[LogEntry]] = defaultdict(list)
    for entry in result.timeline:
        by_contact[entry.contact].append(entry)
    blocks = []
    for contact_id in sorted(by_contact, key=lambda cid: list(result.contacts).index(cid)):
        entries = by_contact[contact_id]
        contact = result.contacts[contact_id]
        tz_name = result.zones.get(contact_id, "UTC")
        tz = zone(tz_name)
        name = " ".join(str(contact.fields[f]) for f in ("first_name", "last_name") if contact.fields.get(f))
        header = Text(contact_id, style="bold")
        details = " · ".join(part for part in (name, contact.fields.get("email") or contact.fields.get("phone"),
                                               tz_name) if part)
        header.append(f"  {details}")
        lines = [header]
        width_workflow = max(len(entry.workflow) for entry in entries)
        width_step = max(len(entry.step) for entry in entries)
        width_what = max(len(_what(entry)) for entry in entries)
        for entry in entries:
            local = entry.at.astimezone(tz)
            line = Text("  " + local.strftime("%a %d %b %H:%M %Z").ljust(20) + "  ")
            line.append(entry.workflow.ljust(width_workflow) + "  ")
            line.append(entry.step.ljust(width_step) + "  ")
            line.append(_what(entry).ljust(width_what), style=_STYLE.get(entry.kind, ""))
            if entry.detail:
                line.append("  " + _local_times(entry.detail, tz), style="dim" if entry.kind != "failed" else "red")
            lines.append(line)
        blocks.append(Text("\n").join(lines))
    return blocks


def _local_times(detail: str, tz) -> str:
    """ISO times inside a reason, shown in the contact's zone like the rest of the line."""
    import re
    from datetime import datetime

    def local(match: re.Match) -> str:
        try:
            return datetime.fromisoformat(match.group(0)).astimezone(tz).strftime("%a %d %b %H:%M %Z")
        except ValueError:
            return match.group(0)

    return re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)", local, detail)


def funnels(result: SimulationResult) -> list[Table]:
    tables = []
    for workflow_id, funnel in result.funnels.items():
        if not funnel.entered and not funnel.steps:
            continue
        sent = ", ".join(f"{count} {channel}" for channel, count in sorted(funnel.sent.items())) or "nothing sent"
        title = (f"{workflow_id}: {funnel.entered} entered · {sent} · {funnel.converted} converted · "
                 f"{funnel.exited} exited · {funnel.suppressed} suppressed · {funnel.failed} failed")
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, box=None)
        table.add_column("step")
        table.add_column("what")
        table.add_column("reached", justify="right")
        for step, count in funnel.steps.items():
            table.add_row(step, funnel.kinds.get(step, ""), str(count))
        for variant, count in sorted(funnel.variants.items()):
            split, _, name = variant.partition(":")
            table.add_row(f"  {split}", f"variant {name}", str(count))
        tables.append(table)
    return tables
