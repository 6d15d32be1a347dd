"""`mauto report`: the figures of every workflow as one self-contained HTML page.

Everything is inline (the CSS, the SVG charts and diagrams; no script, font, image or link elsewhere), so the
file opens offline and can be attached to a pull request or an email. Every string from the data is escaped.
The same figures give the same bytes, so two reports can be compared with `diff`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from mauto.stats import svg
from mauto.stats.diagram import workflow_svg
from mauto.stats.svg import count, p_value, percent, signed_percent
from mauto.workflow.model import Workflow

PROBLEM_ROWS = 100  # rows shown per problem table; the rest is counted, `mauto stats --problems` lists them
SEND_KINDS = ("email", "sms")
NO_DATA = "No data yet"

_CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --panel: #f6f8fa;
  --line: #d1d9e0; --grid: #e4e8ec; --accent: #0969da;
  --passed: #4e79a7; --waiting: #e0a030; --left: #d1495b; --sent: #8fb0d6; --opened: #59a14f;
  --clicked: #b07aa1; --converted: #d1495b; --entered: #59636e; --good: #1a7f37; --warn: #9a6700; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --panel: #161b22; --line: #3d444d; --grid: #262c34;
    --accent: #4493f8; --passed: #6d9bd1; --sent: #4f6f94; --entered: #9198a1; --good: #3fb950; --warn: #d29922; }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans",
  sans-serif; }
header, main { max-width: 72rem; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1rem; }
h1 { font-size: 1.6rem; margin: 0.4rem 0; }
h2 { font-size: 1.35rem; margin: 0 0 0.3rem; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.2rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
p, li, dd, dt, h1, h2, h3, h4, caption, summary { overflow-wrap: anywhere; }
td, th { overflow-wrap: break-word; }
.table { max-width: 100%; overflow-x: auto; }
.meta, .muted, .note { color: var(--muted); }
.meta { margin: 0.2rem 0; font-size: 0.9rem; }
.empty { color: var(--muted); font-style: italic; padding: 0.6rem 0.8rem; background: var(--panel);
  border-radius: 6px; }
.headline { font-size: 1rem; margin: 0.2rem 0; }
.state { display: inline-block; padding: 0 0.45rem; border-radius: 1rem; border: 1px solid currentColor;
  font-size: 0.85rem; }
.state-active { color: var(--good); } .state-paused { color: var(--warn); } .state-removed { color: var(--muted); }
section.workflow { margin: 2rem 0 3rem; padding-top: 1rem; border-top: 3px solid var(--line); }
dl.figures { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.8rem 0; }
dl.figures div { background: var(--panel); border-radius: 6px; padding: 0.35rem 0.7rem; min-width: 6.5rem; }
dl.figures dt { font-size: 0.8rem; color: var(--muted); }
dl.figures dd { margin: 0; font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 600; }
figure { margin: 0.5rem 0 1rem; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: var(--muted); }
table.data { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; max-width: 100%; }
table.data caption { text-align: left; font-weight: 600; padding: 0.2rem 0; }
table.data th, table.data td { padding: 0.25rem 0.45rem; border-bottom: 1px solid var(--grid); text-align: left;
  vertical-align: top; }
table.data th { border-bottom: 1px solid var(--line); font-weight: 600; }
table.data .n { text-align: right; font-variant-numeric: tabular-nums; }
table.data .rate { display: block; font-size: 0.85em; color: var(--muted); }
table.data code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em;
  white-space: nowrap; }
details { margin: 0.3rem 0 1rem; }
summary { cursor: pointer; color: var(--accent); }
nav ul { padding-left: 1.2rem; }
a { color: var(--accent); }
svg text { fill: var(--fg); font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "DejaVu Sans", sans-serif; font-size: 12px; }
svg .muted, svg .tick, svg .axis-title, svg .legend, svg .figures { fill: var(--muted); }
svg .track { fill: var(--panel); }
svg .bar-passed { fill: var(--passed); } svg .bar-waiting { fill: var(--waiting); }
svg .bar-left { fill: var(--left); } svg .bar-sent { fill: var(--sent); } svg .bar-opened { fill: var(--opened); }
svg .bar-clicked { fill: var(--clicked); }
svg .series-entered { fill: var(--entered); } svg .series-sent { fill: var(--passed); }
svg .series-opened { fill: var(--opened); } svg .series-clicked { fill: var(--clicked); }
svg .series-converted { fill: var(--converted); }
svg g.series-entered { stroke: var(--entered); } svg g.series-sent { stroke: var(--passed); }
svg g.series-opened { stroke: var(--opened); } svg g.series-clicked { stroke: var(--clicked); }
svg g.series-converted { stroke: var(--converted); }
svg .line { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg circle { stroke: none; }
svg .grid { stroke: var(--grid); stroke-width: 1; }
svg .axis { stroke: var(--muted); stroke-width: 1; }
svg .zero { stroke: var(--muted); stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .guide { stroke: var(--line); stroke-width: 1; }
svg .hover { fill: transparent; }
svg .hover:hover { fill: var(--grid); fill-opacity: 0.5; }
svg .plot-area { fill: var(--panel); }
svg .interval { stroke: var(--muted); fill: var(--muted); stroke-width: 2; }
svg .interval.significant { stroke: var(--accent); fill: var(--accent); }
svg .shape { fill: var(--panel); stroke: var(--muted); stroke-width: 1.2; }
svg .node-trigger .shape, svg .node-end .shape { stroke: var(--accent); }
svg .node-decision .shape { stroke: var(--warn); }
svg .node-note .shape { stroke-dasharray: 3 2; }
svg .inner { stroke: var(--muted); stroke-width: 1.2; }
svg .edge path { fill: none; stroke: var(--muted); stroke-width: 1.3; }
svg .arrow { fill: var(--muted); }
svg .note-link { stroke: var(--muted); stroke-dasharray: 3 3; }
svg .label-back { fill: var(--bg); stroke: var(--grid); }
svg .edge-label { fill: var(--fg); }
@media (max-width: 640px) {
  body { font-size: 14px; }
  header, main { padding: 0 0.6rem; }
  table.data, table.data tbody, table.data tr, table.data td, table.data caption { display: block; width: 100%; }
  table.data thead { display: none; }
  table.data tr { border: 1px solid var(--grid); border-radius: 6px; margin: 0 0 0.5rem; padding: 0.2rem 0; }
  table.data td { display: flex; justify-content: space-between; gap: 1rem; border: 0; padding: 0.1rem 0.6rem;
    text-align: right; }
  table.data td, table.data caption { overflow-wrap: anywhere; }
  table.data code { white-space: normal; }
  table.data .rate { display: inline; }
  table.data td::before { content: attr(data-label); font-weight: 600; text-align: left; color: var(--muted); }
}
@media print {
  :root { color-scheme: light; --fg: #000; --muted: #444; --bg: #fff; --panel: #f2f2f2; --line: #999;
    --grid: #ddd; }
  body { font-size: 11pt; }
  details:not([open]) { display: none; }
  section.workflow { break-before: page; border-top: 0; }
  figure, table.data tr, dl.figures { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


# --- small pieces -----------------------------------------------------------------------------------------

def _e(value: object) -> str:
    """Any value from the data, as HTML text."""
    return escape(str(value), quote=True)


def moment(value: str | None) -> str:
    """An ISO moment as `2026-12-01 09:00 UTC`; `-` when there is none; the text itself when it is no moment."""
    if not value:
        return "-"
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cell(value: object, numeric: bool = False, code: bool = False) -> tuple[str, bool]:
    shown = _e(value)
    return (f"<code>{shown}</code>" if code else shown), numeric


_NUMERIC = ' class="n"'


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]], caption: str | None = None) -> str:
    """A data table; each cell is (HTML, numeric: right-aligned); on a phone each row stacks as `header: value`
    lines, so that no text needs sideways scrolling."""
    marks = [any(row[index][1] for row in rows) for index in range(len(headers))]
    head = "".join(f'<th class="n">{_e(name)}</th>' if right else f"<th>{_e(name)}</th>"
                   for name, right in zip(headers, marks, strict=True))
    body = []
    for row in rows:
        cells = "".join(f'<td{_NUMERIC if right else ""} data-label="{_e(name)}">{html}</td>'
                        for name, (html, right) in zip(headers, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    shown_caption = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f'<div class="table"><table class="data">{shown_caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _with_rate(value: int | None, rate: float | None) -> tuple[str, bool]:
    """A count with its rate under it: `889 (40%)` read as text, two short lines on the page."""
    return f'{_e(count(value))} <span class="rate">({_e(percent(rate))})</span>', True


def _plural(number: int, noun: str) -> str:
    return f"{count(number)} {noun}{'' if number == 1 else 's'}"


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _figure(chart: str, caption: str) -> str:
    return f"<figure>{chart}<figcaption>{_e(caption)}</figcaption></figure>"


def _version(stats: Mapping[str, Any]) -> str:
    current = stats.get("current_version")
    asked = stats.get("version")
    if asked is None:
        return f"all versions (v{current} deployed)" if current is not None else "all versions"
    return f"v{asked}" if asked == current or current is None else f"v{asked} (v{current} deployed)"


def _window(stats: Mapping[str, Any]) -> str:
    since, until = stats.get("since"), stats.get("until")
    if since and until:
        return f"from {moment(since)} to {moment(until)}"
    if since:
        return f"since {moment(since)}"
    if until:
        return f"until {moment(until)}"
    return "all time"


def _sends(stats: Mapping[str, Any]) -> tuple[int, int, int]:
    """The workflow's messages sent, opened and clicked: the sums over its send steps."""
    steps = [step for step in stats.get("steps", []) if step.get("kind") in SEND_KINDS]

    def total(key: str) -> int:
        return sum(int(step.get(key) or 0) for step in steps)

    return total("sent"), total("opened"), total("clicked")


# --- the sections of a workflow ---------------------------------------------------------------------------

def _headline(stats: Mapping[str, Any]) -> str:
    state = str(stats.get("state", ""))
    state_class = state if state in ("active", "paused", "removed") else "other"
    return (f'<p class="headline">{_e(_version(stats))} · <span class="state state-{state_class}">{_e(state)}'
            f"</span> · <strong>{_e(count(stats.get('entered')))}</strong> entered · "
            f"<strong>{_e(count(stats.get('converted')))}</strong> converted "
            f"(<strong>{_e(percent(stats.get('conversion_rate')))}</strong>) · first action "
            f"{_e(moment(stats.get('first_action_at')))} · last action {_e(moment(stats.get('last_action_at')))}</p>")


def _summary(stats: Mapping[str, Any]) -> str:
    goal = stats.get("goal")
    goal_text = (f"goal: {goal.get('event')}" + (f" within {goal['within']}" if goal.get("within") else "")
                 if goal else "no goal: conversions are not counted")
    meta = (f'<p class="meta">Figures {_e(_window(stats))}, read at {_e(moment(stats.get("now")))}; '
            f"{_e(goal_text)}.</p>")
    figures = [("entered", count(stats.get("entered"))), ("active", count(stats.get("active"))),
               ("completed", count(stats.get("completed"))), ("exited", count(stats.get("exited"))),
               ("failed", count(stats.get("failed"))), ("converted", count(stats.get("converted"))),
               ("conversion rate", percent(stats.get("conversion_rate")))]
    items = "".join(f"<div><dt>{_e(name)}</dt><dd>{_e(value)}</dd></div>" for name, value in figures)
    return f'{meta}<dl class="figures">{items}</dl>'


def _step_name(step: Mapping[str, Any]) -> str:
    """The step's id, after its block when the id does not say it (`then › vip-sms`, but `6.on_event.1`)."""
    block, name = step.get("block"), str(step.get("id"))
    return f"{block} › {name}" if block and f".{block}." not in name else name


def _funnel(stats: Mapping[str, Any]) -> str:
    steps = list(stats.get("steps", []))
    out = ["<h3>Funnel</h3>"]
    entered = int(stats.get("entered") or 0)
    if not entered and not any(step.get("reached") for step in steps):
        out.append(_empty(f"{NO_DATA}: no contact has entered this workflow ({_window(stats)})."))
        return "".join(out)
    rows = [svg.FunnelRow("entered", "trigger", 0, entered)]
    for step in steps:
        sends = None
        if step.get("kind") in SEND_KINDS:
            sends = svg.Sends(int(step.get("sent") or 0), int(step.get("opened") or 0),
                              int(step.get("clicked") or 0), step.get("open_rate"), step.get("click_rate"))
        rows.append(svg.FunnelRow(_step_name(step), str(step.get("kind")), int(step.get("depth") or 0),
                                  int(step.get("reached") or 0), int(step.get("waiting") or 0),
                                  int(step.get("left") or 0), sends))
    out.append(_figure(svg.funnel_chart(rows, f"funnel of {stats.get('workflow')}"),
                       "Each bar is the contacts who reached the step: those who went on, those waiting there now, "
                       "and those who left there (exit, goal or failure); indented steps are inside a block."))
    step_rows = [[_cell(_step_name(step), code=True), _cell(step.get("kind")), _cell(count(step.get("reached")), True),
                  _cell(count(step.get("waiting")), True), _cell(count(step.get("left")), True)] for step in steps]
    out.append(_table(["step", "kind", "reached", "waiting", "left"], step_rows, "Steps"))
    send_steps = [step for step in steps if step.get("kind") in SEND_KINDS]
    if send_steps:
        send_rows = []
        for step in send_steps:
            send_rows.append([
                _cell(step.get("id"), code=True), _cell(count(step.get("sent")), True),
                _cell(count(step.get("suppressed")), True), _cell(count(step.get("failed")), True),
                _cell(count(step.get("pending")), True), _cell(count(step.get("unknown")), True),
                _with_rate(step.get("opened"), step.get("open_rate")),
                _cell(count(step.get("opened_prefetched")), True),
                _with_rate(step.get("clicked"), step.get("click_rate")),
                _with_rate(step.get("unsubscribed"), step.get("unsubscribe_rate")),
                _with_rate(step.get("bounced"), step.get("bounce_rate"))])
        out.append(_table(["step", "sent", "suppressed", "failed", "pending", "unknown", "opened",
                           "proxy opens", "clicked", "unsubscribed", "bounced"], send_rows, "Sends"))
        out.append('<p class="note">Rates are of the messages sent. Opens by privacy proxies (Apple Mail Privacy '
                   "Protection and the like fetch every image) are counted apart, as proxy opens, and are not in "
                   "<em>opened</em> or its rate.</p>")
    return "".join(out)


def _comparison_label(comparison: Mapping[str, Any], holdouts: set[Any]) -> str:
    """`b vs a`; a holdout (a variant with no step) said as such: `a vs none (holdout)`."""
    def named(name: Any) -> str:
        return f"{name} (holdout)" if name in holdouts and "holdout" not in str(name).lower() else str(name)

    return f"{named(comparison.get('variant'))} vs {named(comparison.get('control'))}"


def _split(split: Mapping[str, Any]) -> str:
    name = split.get("id") or split.get("step")
    heading = f"<h4>Split <code>{_e(name)}</code>"
    if split.get("step") and split.get("step") != name:
        heading += f" (step <code>{_e(split.get('step'))}</code>)"
    out = [heading + "</h4>"]
    winner = split.get("winner")
    if winner:
        out.append(f'<p class="verdict">Winner: <code>{_e(winner.get("variant"))}</code>, decided '
                   f"{_e(moment(winner.get('decided_at')))} (always-valid p = {_e(p_value(winner.get('p_value')))}); "
                   "new entries all go to it.</p>")
    variants = list(split.get("variants", []))
    comparisons = list(split.get("comparisons", []))
    holdouts = {variant.get("name") for variant in variants if variant.get("holdout")}
    if not any(variant.get("contacts") for variant in variants):
        out.append(_empty(f"{NO_DATA}: no contact has reached this split."))
    elif comparisons:
        intervals = []
        for comparison in comparisons:
            label = _comparison_label(comparison, holdouts)
            tooltip = (f"{label}: uplift {signed_percent(comparison.get('uplift'))}, 95% interval "
                       f"{signed_percent(comparison.get('uplift_low'))} … "
                       f"{signed_percent(comparison.get('uplift_high'))}, p = {p_value(comparison.get('p_value'))}, "
                       "always-valid p = "
                       f"{p_value(comparison.get('always_valid_p'))}")
            intervals.append(svg.Interval(label, comparison.get("uplift"), comparison.get("uplift_low"),
                                          comparison.get("uplift_high"), bool(comparison.get("significant")),
                                          tooltip))
        caption = ("Each line is a variant's uplift over the first variant, with its 95% confidence interval; a "
                   "line clear of 0 (dashed) is a difference. Significant ones (always-valid test) are coloured.")
        if holdouts:
            caption += (" A holdout gets none of the other variants' steps: against it, an uplift is the effect of "
                        "those steps.")
        out.append(_figure(svg.forest_plot(intervals, f"uplifts of split {name}"), caption))
    rows = [[_cell(variant.get("name"), code=True), _cell(f"{count(variant.get('weight'))}%", True),
             _cell("holdout" if variant.get("holdout") else ""), _cell(count(variant.get("contacts")), True),
             _cell(count(variant.get("conversions")), True), _cell(percent(variant.get("rate")), True)]
            for variant in variants]
    out.append(_table(["variant", "weight", "", "contacts", "conversions", "rate"], rows, "Variants"))
    if comparisons:
        rows = [[_cell(_comparison_label(comparison, holdouts)), _cell(signed_percent(comparison.get("uplift")), True),
                 _cell(f"{signed_percent(comparison.get('uplift_low'))} … "
                       f"{signed_percent(comparison.get('uplift_high'))}", True),
                 _cell(p_value(comparison.get("p_value")), True),
                 _cell(p_value(comparison.get("always_valid_p")), True),
                 _cell("yes" if comparison.get("significant") else "no")] for comparison in comparisons]
        out.append(_table(["comparison", "uplift", "95% interval", "p", "always-valid p", "significant"], rows,
                          "Against the first variant"))
    if split.get("verdict"):
        out.append(f'<p class="verdict">{_e(split.get("verdict"))}</p>')
    return "".join(out)


def _splits(stats: Mapping[str, Any]) -> str:
    splits = list(stats.get("splits", []))
    if not splits:
        return ""
    return "<h3>A/B tests</h3>" + "".join(_split(split) for split in splits)


_SERIES = (("entered", "series-entered"), ("sent", "series-sent"), ("opened", "series-opened"),
           ("clicked", "series-clicked"), ("converted", "series-converted"))


def _days(daily: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, Mapping[str, Any]]]:
    """Every day from the first to the last with activity (the days between at 0), and the rows by day."""
    by_day = {str(row.get("date")): row for row in daily}
    try:
        first, last = date.fromisoformat(min(by_day)), date.fromisoformat(max(by_day))
    except ValueError:  # not ISO dates: the days given, in their order
        return list(by_day), by_day
    return [(first + timedelta(days=offset)).isoformat() for offset in range((last - first).days + 1)], by_day


def _daily(stats: Mapping[str, Any]) -> str:
    daily = list(stats.get("daily", []))
    out = ["<h3>Per day</h3>"]
    if not daily:
        out.append(_empty(f"{NO_DATA}: no activity {_window(stats)}."))
        return "".join(out)
    days, by_day = _days(daily)
    series = [svg.Series(name, css, [int(by_day.get(day, {}).get(name) or 0) for day in days])
              for name, css in _SERIES]
    out.append(_figure(svg.daily_chart(days, series, f"activity per day of {stats.get('workflow')}"),
                       "Contacts entered, messages sent, opened and clicked, and conversions, per UTC day."))
    rows = [[_cell(row.get("date"))] + [_cell(count(row.get(name)), True) for name, _ in _SERIES] for row in daily]
    out.append("<details><summary>The figures per day</summary>"
               + _table(["day"] + [name for name, _ in _SERIES], rows) + "</details>")
    return "".join(out)


def _more(total: int, shown: int) -> str:
    if total <= shown:
        return ""
    return (f'<p class="note">and {count(total - shown)} more: <code>mauto stats WORKFLOW --problems --limit N'
            "</code> lists them.</p>")


def _problems(stats: Mapping[str, Any], limit: int) -> str:
    problems = stats.get("problems") or {}
    stuck = list(problems.get("stuck", []))
    failed = list(problems.get("failed", []))
    messages = list(problems.get("messages", []))
    # the figures carry the first rows of each and how many there are in all
    totals = {name: problems.get(f"{name}_total", len(rows))
              for name, rows in (("stuck", stuck), ("failed", failed), ("messages", messages))}
    out = ["<h3>Problems</h3>"]
    if not (stuck or failed or messages):
        out.append(_empty("Nothing stuck, failed or waiting for a person."))
        return "".join(out)
    if stuck:
        rows = [[_cell(row.get("enrollment"), code=True), _cell(row.get("contact"), code=True),
                 _cell(row.get("step"), code=True), _cell(moment(row.get("wake_at"))), _cell(row.get("late_by"))]
                for row in stuck[:limit]]
        out.append(_table(["enrollment", "contact", "step", "due to wake", "late by"], rows,
                          f"Stuck: {_plural(totals['stuck'], 'enrollment')} waiting past the wake-up planned"))
        out.append(_more(totals["stuck"], min(len(stuck), limit)))
    if failed:
        rows = [[_cell(row.get("enrollment"), code=True), _cell(row.get("contact"), code=True),
                 _cell(row.get("step"), code=True), _cell(moment(row.get("at"))), _cell(row.get("reason"))]
                for row in failed[:limit]]
        out.append(_table(["enrollment", "contact", "step", "failed at", "reason"], rows,
                          f"Failed: {_plural(totals['failed'], 'enrollment')}"))
        out.append(_more(totals["failed"], min(len(failed), limit)))
    if messages:
        rows = [[_cell(row.get("id"), code=True), _cell(row.get("contact"), code=True),
                 _cell(row.get("step"), code=True), _cell(row.get("status")), _cell(moment(row.get("at"))),
                 _cell(row.get("answer"))] for row in messages[:limit]]
        out.append(_table(["message", "contact", "step", "status", "at", "answer"], rows,
                          f"Needing a person: {_plural(totals['messages'], 'message')} parked or unknown"))
        out.append(_more(totals["messages"], min(len(messages), limit)))
    return "".join(out)


def _diagram(stats: Mapping[str, Any], workflow: Workflow | None) -> str:
    out = ["<h3>Diagram</h3>"]
    if workflow is None:
        out.append(_empty("No diagram: the workflow is not deployed."))
        return "".join(out)
    figures = {}
    for step in stats.get("steps", []):
        text = f"{count(step.get('reached'))} reached"
        if step.get("waiting"):
            text += f" · {count(step.get('waiting'))} waiting"
        figures[str(step.get("id"))] = text
    caption = f"Version {workflow.version} as deployed, with the figures of {_version(stats)}."
    out.append(_figure(workflow_svg(workflow, figures), caption))
    return "".join(out)


def _workflow(anchor: str, stats: Mapping[str, Any], workflow: Workflow | None, limit: int) -> str:
    return (f'<section class="workflow" id="{anchor}"><h2>{_e(stats.get("workflow"))}</h2>'
            + _headline(stats) + _summary(stats) + _funnel(stats) + _splits(stats) + _daily(stats)
            + _problems(stats, limit) + _diagram(stats, workflow) + "</section>")


def _overview(stats: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for index, figures in enumerate(stats, 1):
        sent, opened, clicked = _sends(figures)
        rows.append([(f'<a href="#w{index}">{_e(figures.get("workflow"))}</a>', False),
                     _cell(_version(figures)), _cell(figures.get("state")), _cell(count(figures.get("entered")), True),
                     _cell(count(figures.get("converted")), True), _cell(percent(figures.get("conversion_rate")), True),
                     _cell(count(sent), True), _cell(count(opened), True), _cell(count(clicked), True),
                     _cell(moment(figures.get("last_action_at")))])
    return "<nav>" + _table(["workflow", "version", "state", "entered", "converted", "conversion", "sent", "opened",
                             "clicked", "last action"], rows, "Workflows") + "</nav>"


def render_report(stats: Sequence[Mapping[str, Any]], workflows: Mapping[str, Workflow | None],
                  generated_at: datetime, title: str = "mauto report", problem_rows: int = PROBLEM_ROWS) -> str:
    """The whole report page.

    `stats` holds one dict per workflow, as `mauto stats WORKFLOW --format json` gives it (in the order they are
    to appear); `workflows` the deployed `Workflow` of each by id (drawn as its diagram; a missing one, for a
    removed workflow, is said instead). `generated_at` is shown in the header (UTC); `problem_rows` caps each
    problem table.
    """
    when = generated_at if generated_at.tzinfo else generated_at.replace(tzinfo=UTC)
    header = (f"<header><h1>{_e(title)}</h1><p class=\"meta\">Generated by mauto at "
              f"{_e(moment(when.isoformat()))}; every time is in UTC.</p></header>")
    if stats:
        body = _overview(stats) + "".join(
            _workflow(f"w{index}", figures, workflows.get(str(figures.get("workflow"))), problem_rows)
            for index, figures in enumerate(stats, 1))
    else:
        body = _empty(f"{NO_DATA}: no workflow has been deployed.")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{header}<main>{body}</main></body></html>\n")
