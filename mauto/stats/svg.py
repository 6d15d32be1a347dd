"""SVG charts drawn by mauto for the HTML report: a funnel of horizontal bars, a forest plot of A/B uplifts
with their intervals, and lines per day. No charting dependency: every mark is placed here, with a text
label and a `<title>` tooltip, so that the drawing is exact and the same input gives the same bytes.

The charts are inline SVG meant for one HTML page: their colours come from the page's CSS classes (`bar-*`,
`series-*`, `axis`, `grid`, `muted`), and they scale with their `viewBox` (the page gives them
`max-width: 100%`). Text is measured with the advance widths of DejaVu Sans, the widest of the fonts the page
asks for, so a label placed to fit fits in any of them.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

FONT_SIZE = 12.0
LINE_HEIGHT = 15.0

# Advance widths of DejaVu Sans (1/1000 em) for the characters 32..126, normal and bold, measured in Chromium.
_NORMAL = (318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636,
           636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752,
           295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390,
           838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411,
           521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838)
_BOLD = (348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696,
         696, 696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372,
         372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457, 838,
         500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595,
         478, 712, 652, 924, 645, 652, 582, 712, 365, 712, 838)
_OTHER = 1000  # anything else is taken as wide as an em: too much room is better than text across a border


# --- text -------------------------------------------------------------------------------------------------

def text_width(text: str, size: float = FONT_SIZE, bold: bool = False) -> float:
    """The width of `text` in pixels at `size`, on the wide side."""
    table = _BOLD if bold else _NORMAL
    total = 0
    for character in text:
        code = ord(character)
        if 32 <= code < 127:
            total += table[code - 32]
        elif unicodedata.combining(character):
            continue
        else:
            total += _OTHER if unicodedata.east_asian_width(character) in "WF" else 700
    return total * size / 1000


def shorten(text: str, width: float, size: float = FONT_SIZE, bold: bool = False) -> str:
    """`text` cut with an ellipsis so that it fits in `width` pixels."""
    if text_width(text, size, bold) <= width:
        return text
    while text and text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def wrap(text: str, width: float, size: float = FONT_SIZE, max_lines: int = 4) -> list[str]:
    """`text` in lines of at most `width` pixels, broken at spaces (a word longer than a line is cut), at most
    `max_lines` of them: the last one ends with an ellipsis when text was left out."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while text_width(word, size) > width:  # a long URL or expression: cut it where the line is full
            cut = len(word) - 1
            while cut > 1 and text_width(word[:cut], size) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current or not lines:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = shorten(lines[-1] + " …", width, size)
    return lines


# --- numbers ----------------------------------------------------------------------------------------------

def count(value: int | float | None) -> str:
    """A count with thousands separators, as the terminal shows it: `1,234`; `-` when unknown."""
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


def percent(rate: float | None) -> str:
    """A rate in 0..1 as the terminal shows it: `25.8%`, `25%`; `-` when unknown (its denominator was 0)."""
    if rate is None or not math.isfinite(rate):
        return "-"
    return f"{rate * 100:.1f}".removesuffix(".0") + "%"


def signed_percent(rate: float | None) -> str:
    """A relative change as the terminal shows it: `+28%`, `-5%`."""
    if rate is None or not math.isfinite(rate):
        return "-"
    shown = f"{rate * 100:+.0f}%"
    return "0%" if shown in ("+0%", "-0%") else shown


def p_value(value: float | None) -> str:
    """A p-value: `0.004`, `< 0.001`; `-` when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def number(value: float) -> str:
    """A coordinate: at most one decimal, no trailing zero, never `-0` (the same input gives the same text)."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_step(span: float, intervals: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` into about `intervals` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / intervals
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power * 1.0000001:
            return factor * power
    return 10 * power  # pragma: no cover - the loop ends at 10


def count_ticks(maximum: float, intervals: int = 4) -> list[float]:
    """Ticks from 0 to at least `maximum` for an axis of counts (whole steps: no `0.5 contacts`)."""
    step = max(1.0, nice_step(maximum, intervals)) if maximum > 0 else 1.0
    step = float(math.ceil(step))
    top = step * max(1, math.ceil(maximum / step - 1e-9))
    return [step * index for index in range(int(round(top / step)) + 1)]


def range_ticks(low: float, high: float, intervals: int = 4) -> list[float]:
    """Round ticks covering `low`..`high` (0 is always one of them when the range holds it)."""
    step = nice_step(high - low, intervals)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [round(index * step, 10) for index in range(first, last + 1)]


# --- elements ---------------------------------------------------------------------------------------------

def tag(name: str, attributes: dict[str, object], content: str = "") -> str:
    """One element; attributes in the given order, None left out, every value escaped."""
    parts = [name]
    for key, value in attributes.items():
        if value is None:
            continue
        shown = number(value) if isinstance(value, float) else str(value)
        parts.append(f'{key}="{escape(shown, quote=True)}"')
    opening = " ".join(parts)
    return f"<{opening}>{content}</{name}>" if content else f"<{opening}/>"


def title(text: str) -> str:
    """A tooltip: the `<title>` of the element it is the first child of."""
    return f"<title>{escape(text, quote=False)}</title>"


def text(x: float, y: float, content: str, css: str | None = None, anchor: str | None = None,
         size: float | None = None, bold: bool = False) -> str:
    """A line of text at (x, y), y being its baseline."""
    return tag("text", {"x": float(x), "y": float(y), "class": css, "text-anchor": anchor,
                        "font-size": None if size is None else float(size),
                        "font-weight": "bold" if bold else None}, escape(content, quote=False))


def rect(x: float, y: float, width: float, height: float, css: str | None = None, radius: float = 0,
         tooltip: str | None = None) -> str:
    attributes: dict[str, object] = {"x": float(x), "y": float(y), "width": float(max(width, 0)),
                                     "height": float(max(height, 0)), "class": css}
    if radius:
        attributes["rx"] = float(radius)
    return tag("rect", attributes, title(tooltip) if tooltip else "")


def line(x1: float, y1: float, x2: float, y2: float, css: str | None = None) -> str:
    return tag("line", {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2), "class": css})


def group(content: Iterable[str], css: str | None = None, tooltip: str | None = None) -> str:
    body = (title(tooltip) if tooltip else "") + "".join(content)
    return tag("g", {"class": css}, body)


def document(width: float, height: float, body: Iterable[str], label: str, css: str) -> str:
    """An inline `<svg>` of `width` × `height` user units that scales with its `viewBox`."""
    width, height = math.ceil(width), math.ceil(height)
    return (f'<svg class="{escape(css, quote=True)}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(label, quote=True)}">'
            + title(label) + "".join(body) + "</svg>")


# --- the funnel -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sends:
    """A send step's figures, drawn under its bar."""

    sent: int
    opened: int
    clicked: int
    open_rate: float | None
    click_rate: float | None


@dataclass(frozen=True)
class FunnelRow:
    """One bar of the funnel: a step (or the workflow's entries), drawn `depth` levels in."""

    label: str
    kind: str
    depth: int
    reached: int
    waiting: int = 0
    left: int = 0
    sends: Sends | None = None


FUNNEL_WIDTH = 560.0
_INDENT = 16.0
_MAX_INDENT_DEPTH = 6  # deeper blocks stay at this indent: the bar keeps room to be read


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float, width: float) -> tuple[list[str], float]:
    """Colour swatches with their names, from (x, y), wrapping within `width`; the marks and the height used."""
    marks: list[str] = []
    left, top = x, y
    for name, css in entries:
        size = 10 + 5 + text_width(name, 11) + 14
        if left + size > x + width and left > x:
            left, top = x, top + 16
        marks.append(rect(left, top, 10, 10, css, 2))
        marks.append(text(left + 15, top + 9, name, "legend", size=11))
        left += size
    return marks, top - y + 16


def funnel_chart(rows: Sequence[FunnelRow], label: str) -> str:
    """Horizontal bars, one per row, on one scale: each bar is `reached`, split into those who went on, those
    `waiting` there now and those who `left` there; a send also has thin bars for sent, opened and clicked."""
    width = FUNNEL_WIDTH
    body, top = _legend([("went on", "bar-passed"), ("waiting", "bar-waiting"), ("left", "bar-left"),
                         ("sent", "bar-sent"), ("opened", "bar-opened"), ("clicked", "bar-clicked")],
                        8, 6, width - 16)
    y = 6 + top + 8
    scale = max([row.reached for row in rows] + [row.sends.sent for row in rows if row.sends] + [1])
    for row in rows:
        indent = 8 + _INDENT * min(row.depth, _MAX_INDENT_DEPTH)
        span = width - 8 - indent
        figures = f"{count(row.reached)} reached"
        if row.waiting:
            figures += f" · {count(row.waiting)} waiting"
        if row.left:
            figures += f" · {count(row.left)} left"
        figures_width = text_width(figures, 11)
        name = shorten(row.label, span - figures_width - text_width(f"  {row.kind}", 11) - 12, bold=True)
        marks = [text(indent, y + 11, name, "step-name", bold=True),
                 text(indent + text_width(name, bold=True) + 6, y + 11, row.kind, "muted", size=11),
                 text(width - 8, y + 11, figures, "figures", "end", size=11)]
        if row.depth:
            marks.append(line(indent - 7, y + 2, indent - 7, y + 30, "guide"))
        bar_top = y + 16
        passed = max(row.reached - row.waiting - row.left, 0)
        marks.append(rect(indent, bar_top, span, 12, "track", 2))
        left_edge = indent
        for value, css, what in ((passed, "bar-passed", "went on"), (row.waiting, "bar-waiting", "waiting"),
                                 (row.left, "bar-left", "left")):
            if value:
                size = span * value / scale
                marks.append(rect(left_edge, bar_top, size, 12, css, 0, f"{row.label}: {count(value)} {what}"))
                left_edge += size
        y = bar_top + 12
        if row.sends:
            sends = row.sends
            for value, css, what in ((sends.sent, "bar-sent", "sent"), (sends.opened, "bar-opened", "opened"),
                                     (sends.clicked, "bar-clicked", "clicked")):
                y += 2
                marks.append(rect(indent, y, span * value / scale, 5, css, 0, f"{row.label}: {count(value)} {what}"))
                y += 5
            summary = (f"{count(sends.sent)} sent · {count(sends.opened)} opened ({percent(sends.open_rate)}) · "
                       f"{count(sends.clicked)} clicked ({percent(sends.click_rate)})")
            marks.append(text(indent, y + 13, shorten(summary, span, 11), "figures", size=11))
            y += 16
        tooltip = f"{row.label} ({row.kind}): {figures}"
        if row.sends:
            tooltip += f"; {count(row.sends.sent)} sent, {count(row.sends.opened)} opened, " \
                       f"{count(row.sends.clicked)} clicked"
        body.append(group(marks, "funnel-row", tooltip))
        y += 12
    return document(width, y, body, label, "chart funnel")


# --- the forest plot --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """One comparison: the relative uplift of `label`'s rate over its control, with its 95% interval."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    significant: bool
    tooltip: str


FOREST_WIDTH = 560.0


def _finite(*values: float | None) -> bool:
    return all(value is not None and math.isfinite(value) for value in values)


def forest_plot(intervals: Sequence[Interval], label: str) -> str:
    """Each comparison's uplift as a dot on a line from its interval's low to its high end, on one axis of
    relative change around 0 (no difference); a significant one is drawn in the accent colour."""
    width = FOREST_WIDTH
    label_width = 176.0
    plot_left, plot_right = label_width + 12, width - 26
    known = [item for item in intervals if _finite(item.estimate, item.low, item.high)]
    low = min([0.0] + [item.low for item in known if item.low is not None])
    high = max([0.0] + [item.high for item in known if item.high is not None])
    if high - low < 0.1:  # nothing known, or all within a few percent: ±5% keeps the axis readable
        low, high = min(low, -0.05), max(high, 0.05)
    margin = (high - low) * 0.03  # an interval's end never on the frame
    low, high = low - margin if low < 0 else low, high + margin if high > 0 else high
    ticks = range_ticks(low, high, 6)
    axis_low, axis_high = ticks[0], ticks[-1]

    def x(value: float) -> float:
        return plot_left + (value - axis_low) / (axis_high - axis_low) * (plot_right - plot_left)

    row_height = 36.0
    top = 8.0
    bottom = top + row_height * len(intervals)
    body = [rect(plot_left, top, plot_right - plot_left, bottom - top, "plot-area")]
    for tick in ticks:
        body.append(line(x(tick), top, x(tick), bottom, "zero" if tick == 0 else "grid"))
        body.append(text(x(tick), bottom + 15, signed_percent(tick), "tick", "middle", size=11))
    body.append(text((plot_left + plot_right) / 2, bottom + 32, "uplift in conversion rate against the control, "
                     "95% interval", "axis-title", "middle", size=11))
    for index, item in enumerate(intervals):
        middle = top + row_height * index + row_height / 2
        marks = [text(8, middle - 2, shorten(item.label, label_width - 8, bold=True), "step-name", bold=True)]
        if item.estimate is not None and item.low is not None and item.high is not None and _finite(
                item.estimate, item.low, item.high):
            css = "interval significant" if item.significant else "interval"
            marks.append(text(8, middle + 12, f"{signed_percent(item.estimate)} ({signed_percent(item.low)} … "
                                              f"{signed_percent(item.high)})", "figures", size=11))
            marks.append(tag("g", {"class": css},
                             line(x(item.low), middle, x(item.high), middle)
                             + line(x(item.low), middle - 6, x(item.low), middle + 6)
                             + line(x(item.high), middle - 6, x(item.high), middle + 6)
                             + tag("circle", {"cx": float(x(item.estimate)), "cy": float(middle), "r": 5.0})))
        else:
            marks.append(text(8, middle + 12, "not enough data yet", "muted", size=11))
            marks.append(text((plot_left + plot_right) / 2, middle + 4, "no interval yet", "muted", "middle",
                              size=11))
        body.append(group(marks, "comparison", item.tooltip))
    return document(width, bottom + 40, body, label, "chart forest")


# --- lines per day ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    """One line: its name in the legend, its CSS class, a value per day."""

    name: str
    css: str
    values: Sequence[int]


DAILY_WIDTH = 560.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def day_label(day: str) -> str:
    """`2026-12-01` as `1 Dec`."""
    parts = day.split("-")
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or not 1 <= int(parts[1]) <= 12:
        return day  # not an ISO date: shown as given
    return f"{int(parts[2])} {_MONTHS[int(parts[1]) - 1]}"


def daily_chart(days: Sequence[str], series: Sequence[Series], label: str) -> str:
    """A line per series over consecutive days (ISO dates, every day present), on one axis of counts from 0;
    each day has a tooltip with all its figures."""
    width = DAILY_WIDTH
    legend, legend_height = _legend([(item.name, item.css) for item in series], 8, 6, width - 16)
    maximum = max([value for item in series for value in item.values] + [0])
    ticks = count_ticks(maximum)
    left = 16 + max(text_width(count(int(tick)), 11) for tick in ticks)
    right = width - 14
    top = 6 + legend_height + 12
    height = 170.0
    bottom = top + height

    def y(value: float) -> float:
        return bottom - value / ticks[-1] * height

    slots = len(days)
    slot = (right - left) / slots

    def x(index: int) -> float:
        return left + slot * (index + 0.5)

    body = list(legend)
    for tick in ticks:
        body.append(line(left, y(tick), right, y(tick), "axis" if tick == 0 else "grid"))
        body.append(text(left - 6, y(tick) + 4, count(int(tick)), "tick", "end", size=11))
    every = max(1, math.ceil(slots / 6))
    for index in range(0, slots, every):
        body.append(line(x(index), bottom, x(index), bottom + 4, "axis"))
        body.append(text(x(index), bottom + 17, day_label(days[index]), "tick", "middle", size=11))
    for index, day in enumerate(days):  # a column per day, for its tooltip
        figures = ", ".join(f"{count(item.values[index])} {item.name}" for item in series)
        body.append(rect(left + slot * index, top, slot, height, "hover", 0, f"{day}: {figures}"))
    for item in series:
        points = " ".join(f"{number(x(index))},{number(y(value))}" for index, value in enumerate(item.values))
        marks = []
        if slots > 1:
            marks.append(tag("polyline", {"points": points, "class": "line"}))
        if slots <= 62:  # beyond two months the dots would touch: the line alone reads better
            for index, value in enumerate(item.values):
                marks.append(tag("circle", {"cx": float(x(index)), "cy": float(y(value)), "r": 2.5},
                                 title(f"{days[index]}: {count(value)} {item.name}")))
        body.append(group(marks, f"series {item.css}"))
    caption = f"UTC days, {days[0]} to {days[-1]}" if slots > 1 else f"UTC day {days[0]}"
    body.append(text((left + right) / 2, bottom + 34, caption, "axis-title", "middle", size=11))
    return document(width, bottom + 42, body, label, "chart daily")
