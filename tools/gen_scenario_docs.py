"""Writes the table of expectation kinds in docs/testing.md from the kinds' docstrings (`--check`: fail if it is
out of date). The rest of the page is written by hand; the table sits between the two marker comments."""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mauto.scenarios.expectations import KINDS  # noqa: E402

PAGE = ROOT / "docs" / "testing.md"
BEGIN = "<!-- The table of kinds: generated from mauto/scenarios/expectations.py by tools/gen_scenario_docs.py -->"
END = "<!-- end of the generated table -->"


def table() -> str:
    """The table: each kind, its passing example, when it passes and the modifiers it takes."""
    lines = ["| kind | example | passes when |", "|---|---|---|"]
    for name, kind in KINDS.items():
        summary = " ".join(inspect.cleandoc(type(kind).__doc__ or "").split("\n\n")[0].split())
        summary = summary.removeprefix("Passes when ")
        if kind.takes:
            summary += " Optional: " + ", ".join(f"`{modifier}`" for modifier in kind.takes) + "."
        example = kind.example("Passes")
        shown = ", ".join(f"`{item}`" for item, _ in example.items) if example else ""
        lines.append(f"| `{name}` | {shown} | {summary} |")
    return "\n".join(lines)


def render(page: str) -> str:
    """The page with the table between the markers replaced."""
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{PAGE.relative_to(ROOT)}: the markers of the generated table are missing")
    return f"{head}{BEGIN}\n\n{table()}\n\n{END}{tail}"


def main(check: bool) -> int:
    page = PAGE.read_text(encoding="utf-8")
    text = render(page)
    if check:
        if text != page:
            print("docs/testing.md is out of date (run python tools/gen_scenario_docs.py)")
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
