"""`mauto report`'s page as headless Chromium draws it: every chart and diagram has a size, the diagrams' nodes
do not overlap and their text stays inside them, the text fits a phone's width and a laptop's, and the page
loads nothing besides itself. The page is a file: the browser reaches no server at all.

On a laptop without Chromium, its driver or selenium these skip; in CI (CI=true) they run, and fail if one is
missing (.ci/run installs Debian's chromium and chromium-driver; selenium is in the test extra).

Run as a script, this module writes the screenshot of docs/report.md (never as a test: tests write only into
their temporary folder): `.venv/bin/python -m tests.stats.test_report_browser docs/report.png`.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mauto.graph import flow
from mauto.stats.diagram import step_keys
from mauto.stats.html import render_report
from mauto.workflow.loader import load
from mauto.workflow.model import Step, Workflow, build
from tests import chromium
from tests.chromium import needs_chromium
from tests.stats.test_report_html import CART_YAML, GENERATED, HOSTILE, cart_stats, empty_stats, write_workflow

pytestmark = needs_chromium
FLAGS = ["--window-size=1280,900", "--hide-scrollbars", "--force-color-profile=srgb"]
SAMPLES = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.yaml"))
PHONE, LAPTOP = 390, 1024


def start_browser(home: Path) -> Any:
    """A headless Chromium for the report's page (docs/report.md takes its screenshot with it)."""
    return chromium.start_browser(home, *FLAGS)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, its profile, cache and temporary files under pytest's tmp."""
    yield from chromium.browser_for_module(tmp_path_factory, *FLAGS)


# --- figures for every sample workflow -------------------------------------------------------------------------

def _places(workflow: Workflow) -> list[tuple[Step, int, str | None]]:
    """The steps depth first with their depth and block, as stats lists them."""
    places: list[tuple[Step, int, str | None]] = []

    def walk(steps: list[Step], depth: int, block: str | None) -> None:
        for step in steps:
            places.append((step, depth, block))
            for name, inner in step.blocks.items():
                walk(inner, depth + 1, name)

    walk(workflow.steps, 0, None)
    return places


def sample_stats(workflow: Workflow, entered: int, start: date, days: int, quiet_every: int = 0) -> dict[str, Any]:
    """Figures shaped as stats-shape.md for `workflow`: made up, but consistent (each step reached by fewer
    contacts than the one before it, a block's steps by a share of its parent, sends opened and clicked at
    plausible rates) and the same every time."""
    keys = dict(zip([id(step) for step in workflow.all_steps], step_keys(workflow), strict=True))
    reached_by: dict[int, int] = {}
    steps: list[dict[str, Any]] = []
    current = entered
    shares: dict[tuple[int, str], int] = {}
    parents: dict[int, tuple[Step, str]] = {}
    for step in workflow.all_steps:
        for name, block in step.blocks.items():
            for child in block:
                parents[id(child)] = (step, name)
    for index, (step, depth, block) in enumerate(_places(workflow)):
        if id(step) in parents:
            parent, name = parents[id(step)]
            if (id(parent), name) not in shares:
                names = list(parent.blocks)
                if parent.kind == "split":
                    weight = parent.value["variants"][name]["weight"]
                    shares[(id(parent), name)] = reached_by[id(parent)] * weight // 100
                else:
                    part = 0.62 if names.index(name) == 0 else 0.38
                    shares[(id(parent), name)] = int(reached_by[id(parent)] * part)
            current = shares[(id(parent), name)]
            shares[(id(parent), name)] = current * 97 // 100
        else:
            current = current * (96 - index % 5) // 100 if index else current
        reached_by[id(step)] = current
        waiting = current * 3 // 100 if step.kind in ("wait", "wait_for") else 0
        left = current // 50
        row: dict[str, Any] = {"id": keys[id(step)], "kind": step.kind, "depth": depth, "block": block,
                               "reached": current, "waiting": waiting, "left": left}
        if step.kind in ("email", "sms"):
            sent = current - current // 40
            opened = sent * (38 + index % 9) // 100 if step.kind == "email" else 0
            clicked = opened * (30 + index % 7) // 100 if step.kind == "email" else sent * 6 // 100
            row.update({"sent": sent, "suppressed": current // 40, "failed": current // 300, "pending": 0,
                        "unknown": 0, "opened": opened, "opened_prefetched": opened // 5, "clicked": clicked,
                        "unsubscribed": sent // 250, "bounced": sent // 120,
                        "open_rate": opened / sent if sent else None, "click_rate": clicked / sent if sent else None,
                        "unsubscribe_rate": (sent // 250) / sent if sent else None,
                        "bounce_rate": (sent // 120) / sent if sent else None})
        steps.append(row)
    converted = entered * 23 // 100 if workflow.goal else 0
    splits = []
    for step in workflow.all_steps:
        if step.kind != "split":
            continue
        variants = []
        for offset, (name, spec) in enumerate(step.value["variants"].items()):
            contacts = reached_by[id(step)] * spec["weight"] // 100
            conversions = contacts * (24 + 5 * offset) // 100 if spec.get("steps") else contacts * 11 // 100
            variants.append({"name": name, "weight": spec["weight"], "holdout": not spec.get("steps"),
                             "contacts": contacts, "conversions": conversions,
                             "rate": conversions / contacts if contacts else None})
        control = variants[0]
        comparisons = []
        for variant in variants[1:]:
            uplift = variant["rate"] / control["rate"] - 1
            comparisons.append({"variant": variant["name"], "control": control["name"], "uplift": uplift,
                                "uplift_low": uplift - 0.17, "uplift_high": uplift + 0.19, "p_value": 0.018,
                                "always_valid_p": 0.041, "significant": uplift - 0.17 > 0 or uplift + 0.19 < 0})
        first = comparisons[0] if comparisons else None
        verdict = (f"{first['variant']} converts better: {variants[1]['rate']:.1%} vs {control['rate']:.1%}, "
                   f"{first['uplift']:+.0%} (95% CI {first['uplift_low']:+.0%} … {first['uplift_high']:+.0%}), "
                   f"always-valid p = 0.041" if first and first["significant"] else
                   "no difference yet; about 1,900 more contacts per variant to detect a 10% uplift")
        splits.append({"id": step.value.get("id") or keys[id(step)], "step": keys[id(step)], "winner": None,
                       "variants": variants, "comparisons": comparisons, "verdict": verdict})
    daily = []
    weekdays = (110, 104, 100, 98, 93, 68, 74)  # fewer carts at the weekend
    for offset in range(days):
        if quiet_every and offset % quiet_every == quiet_every - 1:
            continue  # a quiet day: no row, drawn at 0
        day = start + timedelta(days=offset)
        base = entered * weekdays[day.weekday()] * (90 + offset * 20 // days) // (days * 9_000)
        sent = base * 14 // 10
        daily.append({"date": day.isoformat(), "entered": base, "sent": sent, "opened": sent * 41 // 100,
                      "clicked": sent * 13 // 100, "converted": base * 23 // 100 if workflow.goal else 0})
    stuck_step = next((row["id"] for row in steps if row["kind"] in ("wait", "wait_for")), "end")
    return {
        "workflow": workflow.id, "version": None, "current_version": workflow.version, "state": "active",
        "since": None, "until": None, "now": "2026-12-08T10:00:00+00:00",
        "entered": entered, "active": entered * 4 // 100, "completed": entered * 80 // 100,
        "exited": entered * 14 // 100, "failed": entered * 2 // 100, "converted": converted,
        "conversion_rate": converted / entered if workflow.goal else None,
        "first_action_at": f"{start.isoformat()}T08:02:00+00:00",
        "last_action_at": "2026-12-08T09:58:00+00:00", "goal": workflow.goal and {
            "event": workflow.goal["event"], "within": workflow.goal.get("within")},
        "steps": steps, "splits": splits, "daily": daily,
        "problems": {
            "stuck": [{"enrollment": "e-01JF8Q2W7T", "contact": "c0042", "step": stuck_step,
                       "wake_at": "2026-12-08T06:48:00+00:00", "late_by": "3h 12m"}],
            "failed": [{"enrollment": "e-01JF7ZK3M2", "contact": "c0077", "step": steps[-1]["id"],
                        "at": "2026-12-07T14:02:00+00:00", "reason": "webhook: HTTP 503 after 3 tries"}],
            "messages": []},
    }


def sample_report() -> str:
    """The report of every sample workflow, with made-up figures over five weeks."""
    workflows = {}
    stats = []
    for index, path in enumerate(SAMPLES):
        workflow = build(load(path))
        workflows[workflow.id] = workflow
        stats.append(sample_stats(workflow, 4_800 - 300 * index, date(2026, 11, 2), 36, quiet_every=9))
    return render_report(stats, workflows, GENERATED, "Lumio campaigns")


# --- what the browser is asked -------------------------------------------------------------------------------

def _open(driver: Any, tmp_path: Path, page: str, width: int) -> None:
    """The page in a viewport `width` wide: a phone's (a mobile viewport, which reads the page's viewport meta
    tag) under 600 px, a laptop's above."""
    file = tmp_path / "report.html"
    file.write_text(page, encoding="utf-8")
    _viewport(driver, width)
    driver.get(file.as_uri())  # returns once the page has loaded


def _viewport(driver: Any, width: int) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900,
                                                                   "deviceScaleFactor": 1, "mobile": width < 600})
    assert driver.execute_script("return document.documentElement.clientWidth") == width


def _loaded(driver: Any) -> list[str]:
    """Every resource the page loaded besides its document."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def _svg_sizes(driver: Any) -> list[list[Any]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect();"
        " return [s.getAttribute('class'), s.getAttribute('aria-label'), r.width, r.height, r.left, r.right]; })")


def _overflowing_text(driver: Any) -> list[list[Any]]:
    """Every element holding text whose box goes past the viewport's left or right edge, and the page's width."""
    return driver.execute_script("""
        const width = document.documentElement.clientWidth;
        const found = [];
        if (document.documentElement.scrollWidth > width)
            found.push(['page', document.documentElement.scrollWidth, width]);
        for (const element of document.body.querySelectorAll('*')) {
            if (element.closest('svg') && element.tagName.toLowerCase() !== 'svg') continue;
            const own = [...element.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
            if (!own && element.tagName.toLowerCase() !== 'svg') continue;
            const box = element.getBoundingClientRect();
            if (box.width === 0 && box.height === 0) continue;  // not shown (a closed <details>)
            if (box.left < -0.5 || box.right > width + 0.5)
                found.push([element.tagName, element.textContent.slice(0, 60), box.left, box.right, width]);
        }
        return found;""")


def _diagram_nodes(driver: Any) -> list[list[Any]]:
    """Per diagram: each node's label and the boxes of its shape and of its text lines."""
    return driver.execute_script("""
        return [...document.querySelectorAll('svg.diagram')].map(svg => [...svg.querySelectorAll('g.node')].map(g => {
            const shape = g.querySelector('.shape').getBoundingClientRect();
            const texts = [...g.querySelectorAll('text')].map(t => {
                const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });
            return [g.querySelector('title').textContent, [shape.left, shape.top, shape.right, shape.bottom],
                    texts, g.getAttribute('class')];
        }));""")


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _inside(inner: list[float], outer: list[float]) -> bool:
    return (inner[0] >= outer[0] - 0.5 and inner[2] <= outer[2] + 0.5 and inner[1] >= outer[1] - 0.5
            and inner[3] <= outer[3] + 0.5)


def _check_diagrams(driver: Any) -> int:
    """No two nodes of a diagram overlap, and every text line is inside its node's box (a diamond's text
    inside the diamond's box); the number of nodes checked."""
    checked = 0
    for nodes in _diagram_nodes(driver):
        for index, (label, shape, texts, css) in enumerate(nodes):
            assert shape[2] - shape[0] > 0 and shape[3] - shape[1] > 0, label
            for line in texts:
                assert _inside(line, shape), (label, line, shape)
            for other, second, _, _ in nodes[index + 1:]:
                assert not _overlap(shape, second), (label, other, shape, second)
            checked += 1
            if "node-decision" in css:  # the text of a diamond is inside the diamond itself, not its corners
                centre_x, centre_y = (shape[0] + shape[2]) / 2, (shape[1] + shape[3]) / 2
                half_w, half_h = (shape[2] - shape[0]) / 2, (shape[3] - shape[1]) / 2
                for left, top, right, bottom in texts:
                    for x, y in ((left, top), (right, top), (left, bottom), (right, bottom)):
                        assert abs(x - centre_x) / half_w + abs(y - centre_y) / half_h <= 1.02, (label, x, y)
    return checked


# --- the tests -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [LAPTOP, PHONE])
def test_every_chart_and_diagram_is_drawn_and_fits(browser: Any, tmp_path: Path, width: int) -> None:
    cart = write_workflow(tmp_path, CART_YAML)
    _open(browser, tmp_path, render_report([cart_stats()], {"cart": cart}, GENERATED, "Lumio campaigns"), width)
    assert browser.title == "Lumio campaigns"
    sizes = _svg_sizes(browser)
    # The funnel, the forest plot, the days, the diagram: each with a size, inside the page's width.
    assert [(css, label) for css, label, *_ in sizes] == [
        ("chart funnel", "funnel of cart"), ("chart forest", "uplifts of split offer-test"),
        ("chart daily", "activity per day of cart"), ("diagram", "diagram of cart version 3")]
    for css, _label, shown_width, height, left, right in sizes:
        assert shown_width > 100 and height > 50, (css, shown_width, height)
        assert left >= 0 and right <= width, (css, left, right, width)
        if css.startswith("chart"):  # drawn 560 wide: at most that, and scaled down to fit a phone
            assert shown_width <= 560
    assert _overflowing_text(browser) == []
    assert _check_diagrams(browser) == len(flow(cart).nodes)
    assert _loaded(browser) == []


def test_the_sample_project_renders_readably(browser: Any, tmp_path: Path) -> None:
    """Every workflow of the sample project (workflows/): its diagram drawn, nodes apart, text inside them."""
    _open(browser, tmp_path, sample_report(), LAPTOP)
    sizes = _svg_sizes(browser)
    diagrams = [size for size in sizes if size[0] == "diagram"]
    assert len(diagrams) == len(SAMPLES)
    for css, label, shown_width, height, left, right in sizes:
        assert shown_width > 100 and height > 50 and left >= 0 and right <= LAPTOP, (css, label)
    expected = sum(len(flow(build(load(path))).nodes) for path in SAMPLES)
    assert _check_diagrams(browser) == expected
    assert _overflowing_text(browser) == []
    assert _loaded(browser) == []
    _viewport(browser, PHONE)
    assert _overflowing_text(browser) == []


def test_hostile_strings_stay_text_in_the_browser(browser: Any, tmp_path: Path) -> None:
    figures = cart_stats()
    figures["workflow"] = HOSTILE
    for row in figures["problems"]["failed"]:
        row["reason"] = HOSTILE
    cart = write_workflow(tmp_path, CART_YAML)
    _open(browser, tmp_path, render_report([figures], {HOSTILE: cart}, GENERATED, HOSTILE), PHONE)
    assert browser.title == HOSTILE
    assert browser.execute_script("return document.scripts.length + document.images.length") == 0
    assert browser.execute_script("return document.querySelector('h2').textContent") == HOSTILE
    assert _loaded(browser) == []
    assert _overflowing_text(browser) == []


def test_empty_figures_say_no_data_yet(browser: Any, tmp_path: Path) -> None:
    cart = write_workflow(tmp_path, CART_YAML)
    _open(browser, tmp_path, render_report([empty_stats()], {"cart": cart}, GENERATED, "r"), PHONE)
    texts = browser.execute_script("return [...document.querySelectorAll('p.empty')].map(p => p.innerText)")
    assert texts == ["No data yet: no contact has entered this workflow (since 2026-11-01 00:00 UTC).",
                     "No data yet: no contact has reached this split.",
                     "No data yet: no activity since 2026-11-01 00:00 UTC.",
                     "Nothing stuck, failed or waiting for a person."]
    assert [size[0] for size in _svg_sizes(browser)] == ["diagram"]
    assert _overflowing_text(browser) == []


# --- the screenshot of docs/report.md --------------------------------------------------------------------------

def screenshot(out: Path) -> None:
    """docs/report.png: the abandoned-cart section of the sample report at a laptop's width, whole."""
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        driver = start_browser(home)
        try:
            page = home / "report.html"
            cart = build(load(SAMPLES[0]))
            stats = sample_stats(cart, 4_800, date(2026, 11, 2), 36)
            stats["splits"][0]["winner"] = {"variant": "urgency", "decided_at": "2026-12-04T06:00:00+00:00",
                                            "p_value": 0.041}
            page.write_text(render_report([stats], {cart.id: cart}, datetime(2026, 12, 8, 10, 30, tzinfo=UTC),
                                          "Lumio campaigns"), encoding="utf-8")
            driver.set_window_size(1100, 900)
            driver.get(page.as_uri())
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 1100, "height": height, "deviceScaleFactor": 1, "mobile": False})
            out.write_bytes(driver.get_screenshot_as_png())
        finally:
            driver.quit()


if __name__ == "__main__":
    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
