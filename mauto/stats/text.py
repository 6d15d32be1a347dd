"""How `mauto stats` reads in a terminal (and pasted in a pull request or a ticket): the figures of
`mauto.stats.query` as rich tables, the funnel as bars."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.bar import Bar
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 20


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def percent(value: float | None) -> str:
    if value is None:
        return "-"
    shown = f"{value * 100:.1f}"
    return f"{shown.removesuffix('.0')}%"


def moment(text: str | None) -> str:
    if not text:
        return "-"
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M UTC")


def _with_rate(value: int, rate: float | None) -> str:
    return f"{value:,} ({percent(rate)})" if value else "0"


def overview(figures: dict[str, Any]) -> list[RenderableType]:
    if not figures["workflows"]:
        return [Text("No workflows deployed (run `mauto deploy`).")]
    table = Table("workflow", "entered", "active", "converted", "sent", "opened", "clicked", "last",
                  title=_window_title("All workflows", figures), title_justify="left", box=None, pad_edge=False)
    # the figures keep their width; a long workflow id gives way first (cut with an ellipsis)
    for column in table.columns:
        column.no_wrap = True
        if column.header != "workflow":
            column.min_width = len(str(column.header))
    table.columns[-1].min_width = len("12-31 23:59")
    for line in figures["workflows"]:
        name = Text(line["workflow"])
        name.append(f" v{line['version']}", style="dim")
        if line["state"] != "active":
            name.append(f" {line['state']}", style="yellow")
        last = line["last_action_at"]
        table.add_row(name, count(line["entered"]), count(line["active"]),
                      _with_rate(line["converted"], line["conversion_rate"])
                      if line["conversion_rate"] is not None else "-", count(line["sent"]),
                      count(line["opened"]), count(line["clicked"]),
                      datetime.fromisoformat(last).strftime("%m-%d %H:%M") if last else "-")
    return [table]


def _window_title(name: str, figures: dict[str, Any]) -> str:
    parts = [name]
    if figures.get("version") is not None:
        parts.append(f"version {figures['version']} only")
    if figures.get("since") or figures.get("until"):
        parts.append(f"from {moment(figures.get('since')) if figures.get('since') else 'the start'} "
                     f"to {moment(figures.get('until')) if figures.get('until') else 'now'}")
    return " · ".join(parts)


def workflow(figures: dict[str, Any]) -> list[RenderableType]:
    """The workflow's header, its funnel, its splits, and a line on its problems."""
    header = Text(f"{figures['workflow']}", style="bold")
    header.append(f" v{figures['current_version']} ({figures['state']})")
    if figures.get("version") is not None or figures.get("since") or figures.get("until"):
        header.append(" · " + _window_title("", figures).lstrip(" ·"), style="dim")
    totals = Text(f"{figures['entered']:,} entered · {figures['active']:,} active · "
                  f"{figures['completed']:,} completed · {figures['exited']:,} exited · "
                  f"{figures['failed']:,} failed · ")
    if figures.get("goal"):
        totals.append(f"{figures['converted']:,} converted ({percent(figures['conversion_rate'])})", style="bold")
    else:
        totals.append("no goal", style="dim")
    lines: list[RenderableType] = [header, totals]
    goal = figures.get("goal")
    if goal:
        lines.append(Text(f"goal: {goal['event']}" + (f" within {goal['within']}" if goal.get("within") else ""),
                          style="dim"))
    lines.append(Text(f"first action {moment(figures['first_action_at'])} · last action "
                      f"{moment(figures['last_action_at'])}", style="dim"))
    lines.append(Text(""))
    lines.append(funnel(figures["steps"]))
    for split in figures["splits"]:
        lines.append(Text(""))
        lines.append(split_table(split))
    note = problems_line(figures["problems"], figures["workflow"])
    if note is not None:
        lines.append(Text(""))
        lines.append(note)
    return lines


def _step_name(step: dict[str, Any]) -> Text:
    name = Text("  " * step["depth"])
    if step.get("block"):
        name.append(f"{step['block']}: ", style="dim")
    name.append(step["id"], style="dim" if step.get("removed") else "")
    if step.get("removed"):
        name.append(" (earlier version)", style="dim")
    return name


def funnel(steps: list[dict[str, Any]]) -> RenderableType:
    """Tables that each fit an 80-column terminal: every step with its bar; then the sends, what became of their
    messages, and what their recipients did."""
    if not steps:
        return Text("No steps to show.")
    most = max((step["reached"] for step in steps), default=0) or 1
    table = Table("step", "kind", "reached", "", "waiting", "left", box=None, pad_edge=False)
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    table.columns[1].min_width = max(len(step["kind"]) for step in steps)  # a kind is one word, kept whole
    for step in steps:
        table.add_row(_step_name(step), step["kind"], count(step["reached"]),
                      Bar(most, 0, step["reached"], width=BAR_WIDTH, color="cyan"), count(step["waiting"]),
                      count(step["left"]))
    sends = [step for step in steps if step["kind"] in ("email", "sms")]
    if not sends:
        return table
    delivery = Table("send", "sent", "suppressed", "failed", "pending", "unknown", box=None, pad_edge=False)
    heard = Table("responses", "opened", "proxy", "clicked", "unsubscribed", "bounced", box=None, pad_edge=False)
    for part in (delivery, heard):
        part.columns[0].no_wrap = True
    for step in sends:
        delivery.add_row(step["id"], count(step["sent"]), count(step["suppressed"]), count(step["failed"]),
                         count(step["pending"]), count(step["unknown"]))
        heard.add_row(step["id"], _with_rate(step["opened"], step["open_rate"]), count(step["opened_prefetched"]),
                      _with_rate(step["clicked"], step["click_rate"]),
                      _with_rate(step["unsubscribed"], step["unsubscribe_rate"]),
                      _with_rate(step["bounced"], step["bounce_rate"]))
    return Group(table, Text(""), delivery, Text(""), heard)


def _signed(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.0f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float | None) -> str:
    """`= 0.004`, or `< 0.001`: the p-value after its name."""
    shown = _p(value)
    return shown if shown.startswith("<") else f"= {shown}"


def split_table(split: dict[str, Any]) -> RenderableType:
    """The variants with their uplift and interval (a table that fits 80 columns), then a line per comparison
    with its two p-values."""
    table = Table("variant", "contacts", "conv.", "rate", "uplift (95% CI)", title=f"split {split['id']}",
                  title_justify="left", box=None, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
    comparisons = {item["variant"]: item for item in split.get("comparisons", [])}
    tests = []
    for variant in split["variants"]:
        name = f"{variant['name']} {variant['weight']}%" + (" (holdout)" if variant["holdout"]
                                                           and variant["name"] != "holdout" else "")
        compared = comparisons.get(variant["name"])
        if compared is None:
            interval = "control"
        elif compared["uplift"] is None:
            interval = "-"
        else:
            interval = (f"{_signed(compared['uplift'])} ({_signed(compared['uplift_low'])} … "
                        f"{_signed(compared['uplift_high'])})")
        if compared is not None:
            tests.append(Text(f"  {compared['variant']} vs {compared['control']}: p = {_p(compared['p_value'])} "
                              f"(valid read once), always-valid p = {_p(compared['always_valid_p'])}", style="dim"))
        table.add_row(name, count(variant["contacts"]), count(variant["conversions"]), percent(variant["rate"]),
                      interval)
    parts: list[RenderableType] = [table, *tests, Text(split.get("verdict", ""), style="bold")]
    winner = split.get("winner")
    if winner and winner.get("in_force", True):
        parts.append(Text(f"winner: {winner['variant']} since {moment(winner['decided_at'])} "
                          f"(always-valid p {_p_is(winner['p_value'])}): new entries all go to it", style="green"))
    elif winner:
        parts.append(Text(f"picked {winner['variant']} on {moment(winner['decided_at'])} (always-valid p "
                          f"{_p_is(winner['p_value'])}); the running version no longer sends new entries to it",
                          style="dim"))
    elif split.get("winner_rule"):
        rule = split["winner_rule"]
        parts.append(Text(f"picks its winner at {rule.get('confidence', 0.95):.0%} confidence once every variant has "
                          f"{rule.get('min_contacts', 0):,} contacts: no winner yet", style="dim"))
    return Group(*parts)


def problems_line(problems: dict[str, Any], workflow_id: str | None) -> Text | None:
    parts = []
    if problems["stuck_total"]:
        parts.append(f"{problems['stuck_total']:,} stuck")
    if problems["failed_total"]:
        parts.append(f"{problems['failed_total']:,} failed")
    if problems["messages_total"]:
        parts.append(f"{problems['messages_total']:,} parked or unknown messages")
    if not parts:
        return None
    command = "mauto stats --problems" + (f" {workflow_id}" if workflow_id else "")
    return Text(f"Problems: {', '.join(parts)}: see `{command}`", style="yellow")


def _item(name: str, where: str, why: str) -> Text:
    line = Text("  ")
    line.append(name, style="bold")
    line.append(f"  {where}")
    if why:
        line.append(f"\n    {why}", style="dim")
    return line


def problems(figures: dict[str, Any]) -> list[RenderableType]:
    """`mauto stats --problems`: the stuck and failed enrollments and the parked and unknown messages."""
    shown: list[RenderableType] = []
    if not (figures["stuck"] or figures["failed"] or figures["messages"]):
        return [Text("No problems: nothing stuck, failed, parked or unknown.")]
    # One block per item rather than a table: the ids to act on stay whole in a narrow terminal and in a pipe.
    if figures["stuck"]:
        shown.append(Text(f"Stuck enrollments: {figures['stuck_total']:,} waiting past their wake-up (the daemon is "
                          "not running, or their version does not load: `mauto failures`)", style="bold"))
        for item in figures["stuck"]:
            shown.append(_item(item["enrollment"], f"{item['workflow']} · contact {item['contact']} · step "
                               f"{item['step']}", f"due {moment(item['wake_at'])}, late by {item['late_by']}"))
    if figures["failed"]:
        shown.append(Text(f"Failed enrollments: {figures['failed_total']:,}", style="bold"))
        for item in figures["failed"]:
            shown.append(_item(item["enrollment"], f"{item['workflow']} · contact {item['contact']} · step "
                               f"{item['step']} · {moment(item['at'])}", item["reason"]))
    if figures["messages"]:
        shown.append(Text(f"Parked or unknown messages: {figures['messages_total']:,} (`mauto outbox retry ID`, "
                          "`mauto outbox drop ID`)", style="bold"))
        for item in figures["messages"]:
            shown.append(_item(f"message {item['id']}", f"{item['status']} · {item['workflow']} · contact "
                               f"{item['contact']} · step {item['step']} · {moment(item['at'])}", item["answer"]))
    cut = [f"{len(figures[name]):,} of {figures[f'{name}_total']:,} {what}"
           for name, what in (("stuck", "stuck"), ("failed", "failed"), ("messages", "messages"))
           if figures[f"{name}_total"] > len(figures[name])]
    if cut:
        shown.append(Text(f"Shown: {', '.join(cut)} (--limit N for more)", style="dim"))
    return shown
