"""Golden outputs of `mauto lint` on a deliberately broken project (tests/golden/broken/).

The expected outputs live beside this file: lint.txt (text), lint.github.txt
(GitHub annotations) and lint.json. A change in wording, place or order makes
these tests fail. When the change is intended, rewrite the files explicitly
and review the diff:

    pytest tests/golden --update-golden

Without the flag a golden file is never written.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "broken"
NOW = "2026-11-23T12:00:00+00:00"

pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture
def broken_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture project in tmp_path, as the current folder, so nothing is written beside the tests."""
    copy = tmp_path / "broken"
    shutil.copytree(FIXTURE, copy)
    monkeypatch.chdir(copy)
    return copy


def compare(golden: Path, actual: str, update: bool) -> None:
    if update:
        if not golden.exists() or golden.read_text(encoding="utf-8") != actual:
            golden.write_text(actual, encoding="utf-8")
            warnings.warn(f"rewrote golden file {golden.relative_to(HERE.parent.parent)}", stacklevel=2)
        return
    assert golden.exists(), f"{golden} is missing; create it with `pytest tests/golden --update-golden`"
    expected = golden.read_text(encoding="utf-8")
    assert actual == expected, (f"output differs from {golden.name}; if the change is intended, run "
                                "`pytest tests/golden --update-golden` and review the diff")


@pytest.mark.parametrize(("golden", "options"), [
    ("lint.txt", []),
    ("lint.github.txt", ["--format", "github"]),
    ("lint.json", ["--format", "json"]),
])
def test_lint_output_matches_the_golden_file(broken_project: Path, update_golden: bool, golden: str,
                                             options: list[str]):
    result = CliRunner().invoke(app, ["lint", "--now", NOW, *options])
    assert result.exit_code == 1, result.output
    assert result.stderr == ""
    compare(HERE / golden, result.stdout, update_golden)


def test_the_fixture_shows_many_kinds_of_findings():
    """The golden files are only worth keeping if the fixture exercises a good spread of rules."""
    import json

    report = json.loads((HERE / "lint.json").read_text(encoding="utf-8"))
    rules = {problem["rule"] for problem in report["problems"]}
    assert len(rules) >= 8, rules
    assert {"warning", "error"} <= {problem["severity"] for problem in report["problems"]}
    assert {"yaml-syntax", "schema", "duration", "template-syntax"} <= rules


def test_the_ignore_comment_in_the_fixture_is_honoured():
    text = (HERE / "lint.txt").read_text(encoding="utf-8")
    assert "workflows/typos.yaml:9:" not in text  # `wait: 2 days   # mauto: ignore[duration]`
    assert "workflows/typos.yaml:8:11: duration" in text
