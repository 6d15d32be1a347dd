"""version-not-bumped: `mauto lint --base REF` against a real git repository made in tmp_path."""
from __future__ import annotations

import subprocess

import pytest

from mauto.errors import UsageError

from .conftest import WELCOME_YAML, LintProject, fails, passes

WF = "workflows/welcome.yaml"


@pytest.fixture
def repo(tmp_path, monkeypatch) -> LintProject:
    """The base project, committed: git configured only through the environment, nothing outside tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {"HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
                        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
                        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}.items():
        monkeypatch.setenv(name, value)
    project = LintProject(tmp_path / "shop").write()
    git(project, "init", "-q")
    commit(project, "base")
    return project


def git(project: LintProject, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project.root, capture_output=True, text=True, check=True)
    return done.stdout


def commit(project: LintProject, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "--no-gpg-sign", "-m", message)


@fails("version-not-bumped")
def test_changed_content_without_a_bump(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("wait: 1h", "wait: 2h")})
    expect(repo.lint(base="HEAD"), "version-not-bumped", problem=(2, 10), path=WF,
           message="content changed since HEAD but `version` is still 1; bump it to 2")


@fails("version-not-bumped")
def test_version_going_down(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("version: 1", "version: 3")})
    commit(repo, "v3")
    repo.write({WF: WELCOME_YAML.replace("version: 1", "version: 2").replace("wait: 1h", "wait: 2h")})
    expect(repo.lint(base="HEAD"), "version-not-bumped", problem=(2, 10), path=WF,
           message="version went down from 3 to 2 since HEAD; versions only go up")


@fails("version-not-bumped")
def test_compared_with_an_older_ref(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("name: Welcome", "name: Welcome!").replace("version: 1", "version: 2")})
    commit(repo, "v2")
    repo.write({WF: WELCOME_YAML.replace("name: Welcome", "name: Welcome!!")})
    expect(repo.lint(base="HEAD~1"), "version-not-bumped", problem=(2, 10), path=WF,
           message="content changed since HEAD~1 but `version` is still 1")


@passes("version-not-bumped")
def test_a_bumped_version_passes(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("wait: 1h", "wait: 2h").replace("version: 1", "version: 2")})
    expect(repo.lint(base="HEAD"), "version-not-bumped")


@passes("version-not-bumped")
def test_comments_and_layout_need_no_bump(repo, expect):
    relaid = ("# Welcome new subscribers.\n"
              + WELCOME_YAML.replace("name: Welcome", "name:   'Welcome'     # shown in mauto status")
              .replace("trigger:\n  event: signed_up", "trigger: {event: signed_up}")
              .replace("  - wait: 1h", "\n  - wait: 1h  # give them time"))
    repo.write({WF: relaid})
    assert git(repo, "status", "--porcelain").strip() == f"M {WF}"
    expect(repo.lint(base="HEAD"), "version-not-bumped")


@passes("version-not-bumped")
def test_new_workflows_and_unchanged_ones_pass(repo, expect):
    repo.write({"workflows/nurture.yaml": WELCOME_YAML.replace("id: welcome", "id: nurture")})
    expect(repo.lint(base="HEAD"), "version-not-bumped")


@passes("version-not-bumped")
def test_a_workflow_that_changed_its_id_is_a_new_workflow(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("id: welcome", "id: welcome-2").replace("wait: 1h", "wait: 2h")})
    expect(repo.lint(base="HEAD"), "version-not-bumped")


@passes("version-not-bumped")
def test_not_checked_without_base(repo, expect):
    repo.write({WF: WELCOME_YAML.replace("wait: 1h", "wait: 2h")})
    expect(repo.lint(), "version-not-bumped")


def test_an_unknown_ref_is_a_usage_error(repo):
    with pytest.raises(UsageError, match="--base no-such-branch: no such commit, branch or tag"):
        repo.lint(base="no-such-branch")


def test_base_outside_a_git_repository_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # whatever holds tmp_path is not looked at
    project = LintProject(tmp_path / "plain").write()
    with pytest.raises(UsageError, match="is not inside a git repository"):
        project.lint(base="HEAD")
