"""`mauto report`'s page (mauto/stats/html.py, svg.py, diagram.py), read as text: it is self-contained, every
figure is where it should be, every string from the data is escaped, empty data says so, and the same input
gives the same bytes. The page as a browser draws it: test_report_browser.py."""
from __future__ import annotations

import copy
import re
import textwrap
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from mauto.graph import flow
from mauto.stats.diagram import step_keys, workflow_svg
from mauto.stats.html import render_report
from mauto.stats.svg import count_ticks, percent, range_ticks, signed_percent, text_width, wrap
from mauto.workflow.loader import load
from mauto.workflow.model import Workflow, build

GENERATED = datetime(2026, 12, 8, 10, 30, tzinfo=UTC)

CART_YAML = """\
id: cart
version: 3
name: Cart recovery
trigger: {event: cart_abandoned, where: "event.cart_value >= 20"}
exit_on: [order_placed]
goal: {event: order_placed, within: 7d}
steps:
  - wait: 1h
  - id: reminder
    email: cart/reminder
  - if: "contact.vip"
    then:
      - id: vip-sms
        sms: cart/vip
  - split:
      id: offer-test
      variants:
        a:
          weight: 45
          steps:
            - id: offer-a
              email: cart/offer-a
        b:
          weight: 45
          steps:
            - id: offer-b
              email: cart/offer-b
        holdout:
          weight: 10
  - id: call-crm
    webhook: {url: "https://crm.example/api/carts"}
"""


def write_workflow(folder: Path, text: str, name: str = "w.yaml") -> Workflow:
    """A Workflow built as the loader builds a deployed file."""
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return build(load(path))


def _send(step_id: str, depth: int, block: str | None, reached: int, sent: int, opened: int, clicked: int,
          **more: Any) -> dict[str, Any]:
    row = {"id": step_id, "kind": more.pop("kind", "email"), "depth": depth, "block": block, "reached": reached,
           "waiting": more.pop("waiting", 0), "left": more.pop("left", 0), "sent": sent,
           "suppressed": more.pop("suppressed", 0), "failed": more.pop("failed", 0), "pending": 0, "unknown": 0,
           "opened": opened, "opened_prefetched": more.pop("opened_prefetched", 0), "clicked": clicked,
           "unsubscribed": more.pop("unsubscribed", 0), "bounced": more.pop("bounced", 0),
           "open_rate": opened / sent if sent else None, "click_rate": clicked / sent if sent else None}
    row["unsubscribe_rate"] = row["unsubscribed"] / sent if sent else None
    row["bounce_rate"] = row["bounced"] / sent if sent else None
    assert not more
    return row


def cart_stats() -> dict[str, Any]:
    """The figures of `cart` as stats-shape.md describes them, with numbers that can each be found once."""
    return {
        "workflow": "cart", "version": None, "current_version": 3, "state": "active",
        "since": "2026-11-01T00:00:00+00:00", "until": None, "now": "2026-12-08T10:00:00+00:00",
        "entered": 1234, "active": 57, "completed": 1001, "exited": 150, "failed": 26,
        "converted": 318, "conversion_rate": 318 / 1234,
        "first_action_at": "2026-11-02T08:15:00+00:00", "last_action_at": "2026-12-08T09:58:00+00:00",
        "goal": {"event": "order_placed", "within": "7d"},
        "steps": [
            {"id": "1", "kind": "wait", "depth": 0, "block": None, "reached": 1234, "waiting": 12, "left": 31},
            _send("reminder", 0, None, 1191, 1150, 463, 171, suppressed=29, failed=12, opened_prefetched=88,
                  unsubscribed=7, bounced=9, left=3),
            {"id": "3", "kind": "if", "depth": 0, "block": None, "reached": 1188, "waiting": 0, "left": 0},
            _send("vip-sms", 1, "then", 96, 94, 0, 0, kind="sms", suppressed=2),
            {"id": "4", "kind": "split", "depth": 0, "block": None, "reached": 1180, "waiting": 0,
             "left": 0},
            _send("offer-a", 1, "a", 532, 530, 212, 64, waiting=2),
            _send("offer-b", 1, "b", 529, 527, 239, 83, waiting=4),
            {"id": "call-crm", "kind": "webhook", "depth": 0, "block": None, "reached": 1142, "waiting": 0,
             "left": 26},
        ],
        "splits": [{
            "id": "offer-test", "step": "4",
            "winner": {"variant": "b", "decided_at": "2026-12-05T06:00:00+00:00", "p_value": 0.0042},
            "variants": [
                {"name": "a", "weight": 45, "holdout": False, "contacts": 532, "conversions": 139, "rate": 139 / 532},
                {"name": "b", "weight": 45, "holdout": False, "contacts": 529, "conversions": 164, "rate": 164 / 529},
                {"name": "holdout", "weight": 10, "holdout": True, "contacts": 119, "conversions": 15,
                 "rate": 15 / 119},
            ],
            "comparisons": [
                {"variant": "b", "control": "a", "uplift": 0.1852, "uplift_low": 0.0310, "uplift_high": 0.3621,
                 "p_value": 0.0213, "always_valid_p": 0.0042, "significant": True},
                {"variant": "holdout", "control": "a", "uplift": -0.5176, "uplift_low": -0.7204,
                 "uplift_high": -0.1677, "p_value": 0.0007, "always_valid_p": 0.0189, "significant": True},
            ],
            "verdict": "b converts better: 31% vs 26.1%, +19% (95% CI +3% … +36%), always-valid p = 0.004",
        }],
        "daily": [
            {"date": "2026-11-02", "entered": 41, "sent": 38, "opened": 15, "clicked": 6, "converted": 9},
            {"date": "2026-11-03", "entered": 52, "sent": 97, "opened": 44, "clicked": 16, "converted": 13},
            {"date": "2026-11-05", "entered": 47, "sent": 120, "opened": 51, "clicked": 19, "converted": 11},
        ],
        "problems": {
            "stuck": [{"enrollment": "e-7f3a", "contact": "c0042", "step": "1",
                       "wake_at": "2026-12-08T06:48:00+00:00", "late_by": "3h 12m"}],
            "failed": [{"enrollment": "e-9b21", "contact": "c0077", "step": "call-crm",
                        "at": "2026-12-07T14:02:00+00:00", "reason": "HTTP 503 from crm.example after 3 tries"}],
            "messages": [{"id": 17, "contact": "c0103", "step": "reminder", "status": "unknown",
                          "answer": "connection reset after DATA", "at": "2026-12-08T07:00:00+00:00"}],
        },
    }


def empty_stats(workflow: str = "cart") -> dict[str, Any]:
    """A workflow deployed a minute ago: every figure 0, nothing per day, no problem."""
    figures = cart_stats()
    figures.update({"workflow": workflow, "entered": 0, "active": 0, "completed": 0, "exited": 0, "failed": 0,
                    "converted": 0, "conversion_rate": None, "first_action_at": None, "last_action_at": None,
                    "daily": [], "problems": {"stuck": [], "failed": [], "messages": []}})
    for step in figures["steps"]:
        for key in list(step):
            if key not in ("id", "kind", "depth", "block"):
                step[key] = None if key.endswith("_rate") else 0
    for split in figures["splits"]:
        split["winner"] = None
        split["verdict"] = "no difference yet; about 2,900 more contacts per variant to detect a 10% uplift"
        for variant in split["variants"]:
            variant.update({"contacts": 0, "conversions": 0, "rate": None})
        for comparison in split["comparisons"]:
            comparison.update({"uplift": None, "uplift_low": None, "uplift_high": None, "p_value": None,
                               "always_valid_p": None, "significant": False})
    return figures


@pytest.fixture
def cart(tmp_path: Path) -> Workflow:
    return write_workflow(tmp_path, CART_YAML)


def report(tmp_path: Path, stats: list[dict[str, Any]], workflows: dict[str, Workflow | None]) -> str:
    """The page, written to a file and read back, as `mauto report --out` would leave it."""
    page = tmp_path / "report.html"
    page.write_text(render_report(stats, workflows, GENERATED, "Lumio campaigns"), encoding="utf-8")
    return page.read_text(encoding="utf-8")


# --- a small reading of the page ------------------------------------------------------------------------------

class _Page(HTMLParser):
    """The page's elements with their attributes, the text of each section, and the tables' cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.stack: list[str] = []
        self.rows: list[dict[str, str]] = []  # every table row: data-label -> text
        self._cell: str | None = None
        self._row: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "tr":
            self._row = {}
        elif tag == "td" and self._row is not None:
            self._cell = dict(attrs).get("data-label") or ""
            self._row[self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._cell is not None and self._row is not None:
            self._row[self._cell] += data


def read(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def section(page: str, heading: str, workflow_index: int = 1) -> str:
    """The HTML of one `<h3>` part of a workflow's section, up to the next `<h3>` or the section's end."""
    body = page.split(f'<section class="workflow" id="w{workflow_index}">', 1)[1].split("</section>", 1)[0]
    assert f"<h3>{heading}</h3>" in body, heading
    return re.split(r"<h3>", body.split(f"<h3>{heading}</h3>", 1)[1], maxsplit=1)[0]


def rows(html: str, caption: str) -> list[dict[str, str]]:
    """The rows of the table captioned `caption`, each as {column: text}."""
    table = html.split(f"<caption>{caption}", 1)[1].split("</table>", 1)[0]
    return read("<table><caption>" + table + "</table>").rows


def svg_titles(html: str) -> list[str]:
    return [re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], title)
            for title in re.findall(r"<title>(.*?)</title>", html)]


# --- self-contained --------------------------------------------------------------------------------------------

def test_the_page_loads_nothing_from_anywhere(tmp_path: Path, cart: Workflow) -> None:
    page = report(tmp_path, [cart_stats()], {"cart": cart})
    parsed = read(page)
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    tags = {tag for tag, _ in parsed.elements}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use", "base", "video",
                       "audio", "source", "picture", "foreignobject"}, tags
    for tag, attributes in parsed.elements:
        for name, value in attributes.items():
            assert name not in ("src", "srcset", "xlink:href", "data", "action", "background", "poster"), tag
            if name == "href":
                assert value is not None and value.startswith("#"), (tag, value)  # links within the page only
            assert not (name.startswith("on")), (tag, name)  # no script in an attribute either
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(styles) == 1
    assert "@import" not in styles[0] and "url(" not in styles[0] and "@font-face" not in styles[0]
    assert re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page) is None
    assert 'style="' not in page  # no inline style attribute to hide a url( in


def test_the_page_says_what_ran_and_when(tmp_path: Path, cart: Workflow) -> None:
    page = report(tmp_path, [cart_stats()], {"cart": cart})
    assert "<title>Lumio campaigns</title>" in page and "<h1>Lumio campaigns</h1>" in page
    assert "Generated by mauto at 2026-12-08 10:30 UTC" in page
    headline = re.search(r'<p class="headline">(.*?)</p>', page).group(1)
    text = re.sub(r"<[^>]+>", "", headline)
    assert text == ("all versions (v3 deployed) · active · 1,234 entered · 318 converted (25.8%) · "
                    "first action 2026-11-02 08:15 UTC · last action 2026-12-08 09:58 UTC")
    assert "Figures since 2026-11-01 00:00 UTC, read at 2026-12-08 10:00 UTC; goal: order_placed within 7d." in page
    figures = dict(re.findall(r"<div><dt>(.*?)</dt><dd>(.*?)</dd></div>", page))
    assert figures == {"entered": "1,234", "active": "57", "completed": "1,001", "exited": "150", "failed": "26",
                       "converted": "318", "conversion rate": "25.8%"}
    [overview] = [row for row in read(page).rows if row.get("workflow") == "cart"]
    assert overview == {"workflow": "cart", "version": "all versions (v3 deployed)", "state": "active",
                        "entered": "1,234", "converted": "318", "conversion": "25.8%", "sent": "2,301",
                        "opened": "914", "clicked": "318", "last action": "2026-12-08 09:58 UTC"}


def test_the_funnel_has_a_bar_and_a_row_per_step(tmp_path: Path, cart: Workflow) -> None:
    funnel = section(report(tmp_path, [cart_stats()], {"cart": cart}), "Funnel")
    assert funnel.count("<svg ") == 1
    titles = svg_titles(funnel)
    # Each bar's tooltip, in the workflow's order, indented steps named with their block.
    rows_said = [title for title in titles if " reached" in title]
    assert rows_said == [
        "entered (trigger): 1,234 reached",
        "1 (wait): 1,234 reached · 12 waiting · 31 left",
        "reminder (email): 1,191 reached · 3 left; 1,150 sent, 463 opened, 171 clicked",
        "3 (if): 1,188 reached",
        "then › vip-sms (sms): 96 reached; 94 sent, 0 opened, 0 clicked",
        "4 (split): 1,180 reached",
        "a › offer-a (email): 532 reached · 2 waiting; 530 sent, 212 opened, 64 clicked",
        "b › offer-b (email): 529 reached · 4 waiting; 527 sent, 239 opened, 83 clicked",
        "call-crm (webhook): 1,142 reached · 26 left"]
    assert "1,150 sent · 463 opened (40.3%) · 171 clicked (14.9%)" in funnel
    # The widest bar is the largest figure; the others in proportion (the bar area is 560 − 8 − indent wide).
    widths = {title: float(width) for width, title in re.findall(
        r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="12" class="bar-passed"><title>(.*?)</title>', funnel)}
    assert widths["entered: 1,234 went on"] == 560 - 8 - 8
    assert widths["1: 1,191 went on"] == pytest.approx((560 - 8 - 8) * 1191 / 1234, abs=0.05)
    assert widths["a › offer-a: 530 went on"] == pytest.approx((560 - 8 - 8 - 16) * 530 / 1234, abs=0.05)
    steps = rows(funnel, "Steps")
    assert [(row["step"], row["kind"], row["reached"], row["waiting"], row["left"]) for row in steps] == [
        ("1", "wait", "1,234", "12", "31"), ("reminder", "email", "1,191", "0", "3"), ("3", "if", "1,188", "0", "0"),
        ("then › vip-sms", "sms", "96", "0", "0"), ("4", "split", "1,180", "0", "0"),
        ("a › offer-a", "email", "532", "2", "0"), ("b › offer-b", "email", "529", "4", "0"),
        ("call-crm", "webhook", "1,142", "0", "26")]
    sends = rows(funnel, "Sends")
    assert sends[0] == {"step": "reminder", "sent": "1,150", "suppressed": "29", "failed": "12", "pending": "0",
                        "unknown": "0", "opened": "463 (40.3%)", "proxy opens": "88",
                        "clicked": "171 (14.9%)", "unsubscribed": "7 (0.6%)", "bounced": "9 (0.8%)"}
    assert [row["step"] for row in sends] == ["reminder", "vip-sms", "offer-a", "offer-b"]
    assert sends[1]["opened"] == "0 (0%)"


def test_the_ab_results_show_every_variant_interval_and_verdict(tmp_path: Path, cart: Workflow) -> None:
    tests = section(report(tmp_path, [cart_stats()], {"cart": cart}), "A/B tests")
    assert "<h4>Split <code>offer-test</code> (step <code>4</code>)</h4>" in tests
    assert ('<p class="verdict">Winner: <code>b</code>, decided 2026-12-05 06:00 UTC (always-valid p = 0.004); '
            "new entries all go to it.</p>") in tests
    assert ('<p class="verdict">b converts better: 31% vs 26.1%, +19% (95% CI +3% … +36%), always-valid p = 0.004'
            "</p>") in tests
    assert [(row["variant"], row["weight"], row[""], row["contacts"], row["conversions"], row["rate"])
            for row in rows(tests, "Variants")] == [("a", "45%", "", "532", "139", "26.1%"),
                                                    ("b", "45%", "", "529", "164", "31%"),
                                                    ("holdout", "10%", "holdout", "119", "15", "12.6%")]
    assert rows(tests, "Against the first variant") == [
        {"comparison": "b vs a", "uplift": "+19%", "95% interval": "+3% … +36%", "p": "0.021",
         "always-valid p": "0.004", "significant": "yes"},
        {"comparison": "holdout vs a", "uplift": "-52%", "95% interval": "-72% … -17%", "p": "< 0.001",
         "always-valid p": "0.019", "significant": "yes"}]
    # The forest plot: one interval per comparison, placed on its axis; 0 is on the axis, dashed.
    plot = re.search(r'<svg class="chart forest".*?</svg>', tests, re.S).group(0)
    assert "b vs a: uplift +19%, 95% interval +3% … +36%, p = 0.021, always-valid p = 0.004" in svg_titles(plot)
    ticks = re.findall(r'<text x="([\d.]+)" y="[\d.]+" class="tick" text-anchor="middle" font-size="11">(.*?)</text>',
                       plot)
    assert [label for _, label in ticks] == ["-80%", "-60%", "-40%", "-20%", "0%", "+20%", "+40%"]
    axis = {label: float(x) for x, label in ticks}
    zero = re.search(r'<line x1="([\d.]+)" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" class="zero"/>', plot)
    assert float(zero.group(1)) == axis["0%"]
    circles = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', plot)]
    per_point = (axis["+40%"] - axis["-80%"]) / 1.2  # the ends: their rounding to 0.1 matters least
    assert circles == [pytest.approx(axis["0%"] + 0.1852 * per_point, abs=0.15),
                       pytest.approx(axis["0%"] - 0.5176 * per_point, abs=0.15)]
    assert plot.count('class="interval significant"') == 2
    assert "A holdout gets none of the other variants&#x27; steps: against it, an uplift is the effect of those " \
           "steps." in tests


def test_a_holdout_is_named_and_a_comparison_without_interval_says_so(tmp_path: Path, cart: Workflow) -> None:
    figures = cart_stats()
    split = figures["splits"][0]
    split["variants"][2]["name"] = "none"
    split["comparisons"][1].update({"variant": "none", "uplift": None, "uplift_low": None, "uplift_high": None,
                                    "p_value": None, "always_valid_p": None, "significant": False})
    tests = section(report(tmp_path, [figures], {"cart": cart}), "A/B tests")
    assert [row["comparison"] for row in rows(tests, "Against the first variant")] == ["b vs a", "none (holdout) vs a"]
    assert rows(tests, "Against the first variant")[1]["uplift"] == "-"
    plot = re.search(r'<svg class="chart forest".*?</svg>', tests, re.S).group(0)
    assert plot.count("<circle") == 1 and "no interval yet" in plot and "not enough data yet" in plot


def test_a_single_day_is_drawn_as_points(tmp_path: Path, cart: Workflow) -> None:
    figures = cart_stats()
    figures["daily"] = figures["daily"][:1]
    days = section(report(tmp_path, [figures], {"cart": cart}), "Per day")
    assert "<polyline" not in days and days.count("<circle") == 5
    assert "UTC day 2026-11-02" in days


def test_the_days_are_drawn_on_a_time_axis_with_gaps_as_zero(tmp_path: Path, cart: Workflow) -> None:
    days = section(report(tmp_path, [cart_stats()], {"cart": cart}), "Per day")
    chart = re.search(r'<svg class="chart daily".*?</svg>', days, re.S).group(0)
    titles = svg_titles(chart)
    assert [title for title in titles if title.startswith("2026-11-0") and ": " in title and "," in title] == [
        "2026-11-02: 41 entered, 38 sent, 15 opened, 6 clicked, 9 converted",
        "2026-11-03: 52 entered, 97 sent, 44 opened, 16 clicked, 13 converted",
        "2026-11-04: 0 entered, 0 sent, 0 opened, 0 clicked, 0 converted",  # a quiet day is a day, at 0
        "2026-11-05: 47 entered, 120 sent, 51 opened, 19 clicked, 11 converted"]
    assert "2026-11-05: 120 sent" in titles
    ticks = re.findall(r'class="tick" text-anchor="end" font-size="11">(.*?)</text>', chart)
    assert ticks == ["0", "50", "100", "150"]  # 120 sent at most: round steps up past it
    assert re.findall(r'text-anchor="middle" font-size="11">(\d+ \w{3})</text>', chart) == [
        "2 Nov", "3 Nov", "4 Nov", "5 Nov"]
    assert "UTC days, 2026-11-02 to 2026-11-05" in chart
    assert chart.count("<polyline") == 5
    table = read(days.split("<details>", 1)[1]).rows
    assert table[1] == {"day": "2026-11-03", "entered": "52", "sent": "97", "opened": "44", "clicked": "16",
                        "converted": "13"}


def test_the_problems_are_listed_with_their_ids(tmp_path: Path, cart: Workflow) -> None:
    problems = section(report(tmp_path, [cart_stats()], {"cart": cart}), "Problems")
    assert rows(problems, "Stuck: 1 enrollment waiting past the wake-up planned") == [
        {"enrollment": "e-7f3a", "contact": "c0042", "step": "1", "due to wake": "2026-12-08 06:48 UTC",
         "late by": "3h 12m"}]
    assert rows(problems, "Failed: 1 enrollment") == [
        {"enrollment": "e-9b21", "contact": "c0077", "step": "call-crm", "failed at": "2026-12-07 14:02 UTC",
         "reason": "HTTP 503 from crm.example after 3 tries"}]
    assert rows(problems, "Needing a person: 1 message parked or unknown") == [
        {"message": "17", "contact": "c0103", "step": "reminder", "status": "unknown", "at": "2026-12-08 07:00 UTC",
         "answer": "connection reset after DATA"}]


def test_long_problem_lists_are_cut_and_counted(tmp_path: Path, cart: Workflow) -> None:
    figures = cart_stats()
    stuck = figures["problems"]["stuck"][0]
    figures["problems"]["stuck"] = [{**stuck, "enrollment": f"e-{index}"} for index in range(1203)]
    problems = section(report(tmp_path, [figures], {"cart": cart}), "Problems")
    shown = rows(problems, "Stuck: 1,203 enrollments waiting past the wake-up planned")
    assert [row["enrollment"] for row in shown] == [f"e-{index}" for index in range(100)]
    assert ("and 1,103 more: <code>mauto stats WORKFLOW --problems --limit N</code> lists them.") in problems


def test_the_diagram_draws_every_node_and_edge_of_the_workflow(tmp_path: Path, cart: Workflow) -> None:
    diagram = section(report(tmp_path, [cart_stats()], {"cart": cart}), "Diagram")
    graph = flow(cart)
    nodes = re.findall(r'<g class="node node-(\w+)"><title>(.*?)</title>', diagram)
    assert [role for role, _ in nodes] == [node.role for node in graph.nodes]
    shown = svg_titles(diagram)
    for node in graph.nodes:
        assert any(title.startswith(node.label) for title in shown), node.label
    assert diagram.count('<g class="edge">') == len([edge for edge in graph.edges if not edge.dotted])
    assert diagram.count('class="note-link"') == 1
    for label in ("yes", "no", "a 45%", "b 45%", "holdout 10%"):
        assert f'class="edge-label" text-anchor="middle" font-size="11">{label}</text>' in diagram
    # The stats' figures on the steps they belong to.
    assert "reminder: email cart/reminder (1,191 reached)" in shown
    assert "wait 1h (1,234 reached · 12 waiting)" in shown
    assert "offer-test: split (a 45% / b 45% / holdout 10%) (1,180 reached)" in shown
    assert "Version 3 as deployed, with the figures of all versions (v3 deployed)." in diagram
    assert step_keys(cart) == ["1", "reminder", "3", "vip-sms", "4", "offer-a", "offer-b", "call-crm"]


def test_a_split_is_named_by_its_path_when_it_has_no_step_id(tmp_path: Path, cart: Workflow) -> None:
    """stats-shape.md: a step without an id is named by its 1-based path; the split `offer-test` has no step id."""
    assert step_keys(cart)[4] == "4"
    svg = workflow_svg(cart, {"4": "1,180 reached"})
    assert "offer-test: split (a 45% / b 45% / holdout 10%) (1,180 reached)" in svg_titles(svg)


def test_the_diagram_lays_out_nodes_in_ranks_without_overlap(tmp_path: Path, cart: Workflow) -> None:
    svg = workflow_svg(cart)
    boxes = _node_boxes(svg)
    assert len(boxes) == len(flow(cart).nodes)
    for index, first in enumerate(boxes):
        for second in boxes[index + 1:]:
            assert not _overlap(first[1], second[1]), (first, second)
    tops = {label: box[1] for label, box in boxes}
    # Trigger above the first step above the if; the if's `then` below it; the variants side by side.
    assert tops["event: cart_abandoned where event.cart_value >= 20"] < tops["wait 1h"] < tops[
        "reminder: email cart/reminder"] < tops["if contact.vip"] < tops["vip-sms: sms cart/vip"]
    assert tops["offer-a: email cart/offer-a"] == tops["offer-b: email cart/offer-b"]
    lefts = {label: box[0] for label, box in boxes}
    assert lefts["offer-a: email cart/offer-a"] < lefts["offer-b: email cart/offer-b"]  # in the file's order
    assert tops["end"] == max(tops.values())


def _node_boxes(svg: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Each node's label and the box of its shape (left, top, right, bottom)."""
    found = []
    for label, shape in re.findall(r'<g class="node node-\w+"><title>(.*?)</title>(<(?:rect|polygon)[^>]*>)', svg):
        if shape.startswith("<rect"):
            x, y, w, h = (float(re.search(fr' {name}="([\d.]+)"', shape).group(1))
                          for name in ("x", "y", "width", "height"))
            box = (x, y, x + w, y + h)
        else:
            points = [tuple(map(float, point.split(","))) for point in re.search(
                r'points="([^"]+)"', shape).group(1).split()]
            box = (min(p[0] for p in points), min(p[1] for p in points), max(p[0] for p in points),
                   max(p[1] for p in points))
        found.append((svg_titles(f"<title>{label}</title>")[0], box))
    return found


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


SAMPLES = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=[path.stem for path in SAMPLES])
def test_every_sample_workflow_is_drawn_without_overlap(path: Path) -> None:
    workflow = build(load(path))
    svg = workflow_svg(workflow)
    boxes = _node_boxes(svg)
    assert len(boxes) == len(flow(workflow).nodes)
    for index, (label, box) in enumerate(boxes):
        for other, second in boxes[index + 1:]:
            assert not _overlap(box, second), (label, other)
    width = float(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))
    assert width <= 1400, f"{path.stem} is {width} wide"  # a laptop screen shows it at a readable size


# --- escaping --------------------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;\'"'


def test_every_string_from_the_data_is_escaped(tmp_path: Path) -> None:
    figures = cart_stats()
    figures["workflow"] = f"cart{HOSTILE}"
    figures["state"] = HOSTILE
    figures["goal"] = {"event": HOSTILE, "within": HOSTILE}
    figures["now"] = HOSTILE
    for step in figures["steps"]:
        step["id"] = f"{step['id']}{HOSTILE}"
        step["kind"] = step["kind"] if step["kind"] in ("email", "sms") else HOSTILE
        step["block"] = step["block"] and HOSTILE
    split = figures["splits"][0]
    split.update({"id": HOSTILE, "step": HOSTILE + "2", "verdict": HOSTILE})
    split["winner"]["variant"] = HOSTILE
    for variant in split["variants"]:
        variant["name"] = HOSTILE + variant["name"]
    for comparison in split["comparisons"]:
        comparison.update({"variant": HOSTILE, "control": HOSTILE})
    figures["daily"][0]["date"] = HOSTILE  # not a date: the days are shown as given
    for rows_ in figures["problems"].values():
        for row in rows_:
            for key in row:
                row[key] = HOSTILE
    workflow_yaml = CART_YAML.replace("cart/reminder", "cart/x").replace(
        'event.cart_value >= 20', "event.note == '</svg><script>alert(2)</script>' and 1 < 2 & true")
    workflow = write_workflow(tmp_path, workflow_yaml.replace("id: cart\n", 'id: "cart-x"\n'))
    page = render_report([figures], {figures["workflow"]: workflow}, GENERATED, f"title {HOSTILE}")
    assert "<script" not in page and "<img" not in page and "onerror=alert" not in page.replace(
        "onerror=alert(1)&gt;", "")
    assert "</svg><script>" not in page
    parsed = read(page)
    assert {tag for tag, _ in parsed.elements} <= {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "p", "main", "nav", "table", "caption",
        "thead", "tr", "th", "tbody", "td", "a", "section", "h2", "span", "strong", "dl", "div", "dt", "dd", "h3",
        "figure", "svg", "rect", "text", "g", "line", "circle", "polyline", "polygon", "path", "figcaption", "code",
        "em", "h4", "details", "summary"}
    text = "".join(parsed.texts)
    assert text.count(HOSTILE) >= 25  # each one shown as the text it is
    assert f"title {HOSTILE}" in text
    assert "event.note == '</svg><script>alert(2)</script>' and 1 < 2 & true" in text
    # Attributes too: the table cells' labels and the SVGs' aria-labels are the headers and names, escaped.
    labels = [attributes.get("aria-label") for tag, attributes in parsed.elements if tag == "svg"]
    assert f"funnel of cart{HOSTILE}" in labels


# --- empty data ------------------------------------------------------------------------------------------------

def test_no_data_yet_is_said_instead_of_drawing_empty_charts(tmp_path: Path, cart: Workflow) -> None:
    page = report(tmp_path, [empty_stats()], {"cart": cart})
    assert section(page, "Funnel") == ('<p class="empty">No data yet: no contact has entered this workflow '
                                       "(since 2026-11-01 00:00 UTC).</p>")
    tests = section(page, "A/B tests")
    assert '<p class="empty">No data yet: no contact has reached this split.</p>' in tests
    assert "<svg" not in tests
    assert "no difference yet; about 2,900 more contacts per variant to detect a 10% uplift" in tests
    assert section(page, "Per day") == '<p class="empty">No data yet: no activity since 2026-11-01 00:00 UTC.</p>'
    assert section(page, "Problems") == '<p class="empty">Nothing stuck, failed or waiting for a person.</p>'
    assert section(page, "Diagram").count("<svg ") == 1  # the workflow is there even before anyone entered
    headline = re.sub(r"<[^>]+>", "", re.search(r'<p class="headline">(.*?)</p>', page).group(1))
    assert headline == ("all versions (v3 deployed) · active · 0 entered · 0 converted (-) · first action - · "
                        "last action -")
    assert page.count("<svg ") == 1


def test_no_workflow_and_no_deployed_file_say_so(tmp_path: Path) -> None:
    page = report(tmp_path, [], {})
    assert '<main><p class="empty">No data yet: no workflow has been deployed.</p></main>' in page
    figures = empty_stats("gone")
    figures["state"] = "removed"
    page = report(tmp_path, [figures], {})
    assert section(page, "Diagram") == '<p class="empty">No diagram: the workflow is not deployed.</p>'
    assert '<span class="state state-removed">removed</span>' in page


def test_a_workflow_with_no_split_has_no_ab_section(tmp_path: Path) -> None:
    workflow = write_workflow(tmp_path, "id: plain\nversion: 1\nname: P\ntrigger: {event: signed_up}\n"
                                        "steps:\n  - id: hello\n    email: welcome/hello\n")
    figures = cart_stats()
    figures.update({"workflow": "plain", "splits": [], "goal": None, "version": 1, "current_version": 1,
                    "steps": [_send("hello", 0, None, 10, 10, 4, 1)]})
    page = report(tmp_path, [figures], {"plain": workflow})
    assert "<h3>A/B tests</h3>" not in page
    assert "read at 2026-12-08 10:00 UTC; no goal: conversions are not counted." in page
    assert "v1 · " in page


# --- determinism -----------------------------------------------------------------------------------------------

def test_the_same_figures_give_the_same_bytes(tmp_path: Path, cart: Workflow) -> None:
    first = render_report([cart_stats(), empty_stats("other")], {"cart": cart}, GENERATED, "r")
    again = write_workflow(tmp_path, CART_YAML, "again.yaml")
    second = render_report(copy.deepcopy([cart_stats(), empty_stats("other")]), {"cart": again}, GENERATED, "r")
    assert first == second
    assert first.encode("utf-8") == second.encode("utf-8")
    changed = cart_stats()
    changed["entered"] = 1235
    assert render_report([changed, empty_stats("other")], {"cart": cart}, GENERATED, "r") != first


# --- the pieces ------------------------------------------------------------------------------------------------

def test_numbers_read_as_in_the_terminal() -> None:
    assert [percent(value) for value in (None, 0.0, 0.25, 0.2583, 1.0, 0.00049)] == [
        "-", "0%", "25%", "25.8%", "100%", "0%"]
    assert [signed_percent(value) for value in (None, 0.28, -0.052, 0.001, 0.0)] == ["-", "+28%", "-5%", "0%", "0%"]


def test_axes_take_round_steps() -> None:
    assert count_ticks(0) == [0.0, 1.0]
    assert count_ticks(3) == [0.0, 1.0, 2.0, 3.0]
    assert count_ticks(120) == [0.0, 50.0, 100.0, 150.0]
    assert count_ticks(1_000_000) == [0.0, 250_000.0, 500_000.0, 750_000.0, 1_000_000.0]
    assert range_ticks(-0.72, 0.36, 6) == [-0.8, -0.6, -0.4, -0.2, 0.0, 0.2, 0.4]
    assert range_ticks(-0.05, 0.05, 4) == [-0.05, -0.025, 0.0, 0.025, 0.05]


def test_labels_are_wrapped_to_their_width() -> None:
    lines = wrap("webhook POST https://crm.example/api/leads/with/a/very/long/path/that/never/ends → vars.crm", 150,
                 max_lines=9)
    assert all(text_width(line) <= 150 for line in lines)
    assert "".join(lines).replace(" ", "") == "webhookPOSThttps://crm.example/api/leads/with/a/very/long/path/" \
                                              "that/never/ends→vars.crm"
    assert wrap("a " * 200, 60, max_lines=2)[-1].endswith("…")
