"""The docs stay true: generated files are fresh, every command is documented and has help."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from mauto.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_lint_rules_page_is_generated_from_the_rules():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_lint_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_is_documented_and_has_help():
    docs = (ROOT / "README.md").read_text(encoding="utf-8") + "".join(
        page.read_text(encoding="utf-8") for page in (ROOT / "docs").glob("*.md"))
    command = typer.main.get_command(app)
    names = sorted(command.commands)
    assert names, "no commands registered"
    runner = CliRunner()
    for name in names:
        assert f"mauto {name}" in docs, f"`mauto {name}` is not in README.md or docs/"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert command.commands[name].help, f"`mauto {name}` has no help text"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("python3"))
    assert test_command in ci
