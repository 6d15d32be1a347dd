"""Writes docs/lint-rules.md from the rules' docstrings (`--check`: fail if it is out of date)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mauto.lint.rules import RULES  # noqa: E402


def render() -> str:
    lines = [
        "# Lint rules",
        "",
        "`mauto lint` runs every rule below. Each finding is printed as",
        "`path:line:col: RULE-ID message`. Errors fail the run (exit 1); warnings",
        "fail it only with `--strict`. `mauto lint --explain RULE-ID` prints a rule's",
        "page. A finding can be silenced on its line with a comment",
        "`# mauto: ignore[RULE-ID]` (in a template: `{# mauto: ignore[RULE-ID] #}`).",
        "",
        "This page is generated from the rules' docstrings by `python tools/gen_lint_docs.py`.",
        "",
        "| rule | level | checks |",
        "|---|---|---|",
    ]
    for rule_id, rule in RULES.items():
        summary = rule.__doc__.strip().split("\n\n")[0].replace("\n", " ")
        lines.append(f"| [`{rule_id}`](#{rule_id}) | {rule.LEVEL} | {summary} |")
    for rule_id, rule in RULES.items():
        lines += ["", f"## {rule_id}", "", f"Level: **{rule.LEVEL}**.", "", rule.__doc__.strip()]
    return "\n".join(lines) + "\n"


def main(check: bool) -> int:
    target = ROOT / "docs" / "lint-rules.md"
    text = render()
    if check:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            print("docs/lint-rules.md is out of date (run python tools/gen_lint_docs.py)")
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
