"""`mauto diff` (mauto/diff.py) and the project at a git ref (mauto/gitref.py).

The matching of steps is tested on small workflows; the git parts on a real repository made in tmp_path
(`git init`, the sample project committed in a subfolder, then changed); the whole output on the sample project
with a prepared change (a longer wait, a new branch, a changed template) against golden files in
tests/golden/diff/ (`pytest tests/test_diff.py --update-golden` rewrites them; review the diff)."""
from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.diff import (
    Detail,
    InFlight,
    Matching,
    code,
    diff,
    diff_refs,
    fenced,
    in_flight,
    markdown,
    text_blocks,
)
from mauto.errors import UsageError
from mauto.gitref import project_at
from mauto.workflow.loader import parse
from mauto.workflow.model import Workflow, build
from tests.conftest import dedent

REPOSITORY = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "diff"
SAMPLE = ("mauto.yaml", "workflows", "templates", "samples")

pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture(autouse=True)
def temporary_folders_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The folders a ref or the store is unpacked into go under tmp_path, and are gone after each test."""
    folder = tmp_path / "temporary"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield
    assert list(folder.iterdir()) == []


# --- helpers shared with tests/test_simulate_base.py ----------------------------------------------------------


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path.name} no longer holds {old!r}: the prepared change needs updating"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def prepare_change(project: Path) -> None:
    """The change the golden files show: abandoned-cart waits 48h instead of 24h before the coupon; lead-nurturing
    gets a new branch that sends leads under 40 points to long-term nurture instead of the demo invite; the
    coupon reminder's text changes."""
    cart = project / "workflows" / "abandoned-cart.yaml"
    replace(cart, "version: 1", "version: 2")
    replace(cart, "  - wait: 24h\n", "  - wait: 48h\n")
    leads = project / "workflows" / "lead-nurturing.yaml"
    replace(leads, "version: 1", "version: 2")
    replace(leads, '  # Round 3: an invitation to a live demo.\n  - wait: {until: "09:30"}\n',
            '  # Round 3: an invitation to a live demo, for leads warm enough.\n'
            '  - if: "contact.score < 40"\n'
            '    then:\n'
            '      - id: nurture-later\n'
            '        lists: {add: [long-term-nurture], remove: [nurturing]}\n'
            '      - exit: not ready for a demo\n'
            '  - wait: {until: "09:30"}\n')
    reminder = project / "templates" / "cart" / "reminder-2.email.html"
    replace(reminder, 'subject: "10% off your cart, just for you"', 'subject: "Your cart, 10% off: two days to decide"')
    replace(reminder, "for the next three days", "for the next two days")


@pytest.fixture
def sample_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_sample_repo(tmp_path, monkeypatch)


def make_sample_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository in tmp_path with the sample project committed in `marketing/`, then the prepared change
    made in the working tree (not committed); the current folder is the project's. Returns the project folder."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))  # not the developer's own settings
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "gitconfig").write_text("[user]\n\tname = Reviewer\n\temail = reviewer@example.com\n"
                                        "[init]\n\tdefaultBranch = main\n")
    repository = tmp_path / "repo"
    project = repository / "marketing"
    project.mkdir(parents=True)
    for name in SAMPLE:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, project / name)
        else:
            shutil.copy(source, project / name)
    git(repository, "init", "-q")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "the sample project")
    prepare_change(project)
    monkeypatch.chdir(project)
    return project


def compare_golden(name: str, actual: str, update: bool) -> None:
    golden = GOLDEN / name
    if update:
        if not golden.exists() or golden.read_text(encoding="utf-8") != actual:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(actual, encoding="utf-8")
            warnings.warn(f"rewrote golden file {golden.relative_to(REPOSITORY)}", stacklevel=2)
        return
    assert golden.exists(), f"{golden} is missing; create it with `pytest {Path(__file__).name} --update-golden`"
    assert actual == golden.read_text(encoding="utf-8"), (
        f"output differs from tests/golden/diff/{name}; if the change is intended, run pytest with "
        "--update-golden and review the diff")


def plain(blocks: list[Text]) -> str:
    """Blocks as the CLI prints them (each followed by a blank line), without colour."""
    buffer = io.StringIO()
    console = Console(file=buffer, soft_wrap=True, highlight=False, markup=False, no_color=True, width=200)
    for block in blocks:
        console.print(block)
        console.print()
    return buffer.getvalue()


# --- matching steps --------------------------------------------------------------------------------------------


def workflow(steps: str, version: int = 1, extra: str = "", in_flight_policy: str | None = None) -> Workflow:
    policy = f"in_flight: {in_flight_policy}\n" if in_flight_policy else ""
    text = (f"id: w\nversion: {version}\nname: W\ntrigger: {{event: signed_up}}\n{policy}{dedent(extra)}"
            f"steps:\n{dedent(steps)}")
    return build(parse(text, "w.yaml"))


def changes(before: str, after: str) -> list[tuple]:
    found = Matching(workflow(before), workflow(after, 2)).changes()
    return [(item.change, item.step, item.action, item.details, item.moved) for item in found]


def test_a_longer_wait_is_one_changed_step_matched_by_place():
    before = """
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait: 24h
        - id: again
          email: welcome/again
    """
    assert changes(before, before.replace("24h", "48h")) == [
        ("changed", "3", "wait 48h", [Detail("wait", "24h", "48h")], None)]


def test_a_step_inserted_above_does_not_make_the_steps_below_changed_or_moved():
    before = """
        - wait: 1h
        - score: 5
        - wait: 2d
        - exit: done
    """
    after = """
        - wait: 1h
        - id: hello
          email: welcome/hello
        - score: 5
        - wait: 2d
        - exit: done
    """
    assert changes(before, after) == [("added", "hello", "email welcome/hello", [], None)]


def test_a_removed_step_is_listed_where_it_was():
    before = """
        - wait: 1h
        - id: hello
          email: welcome/hello
        - wait: 2d
        - id: again
          email: welcome/again
    """
    after = """
        - wait: 1h
        - wait: 2d
        - id: again
          email: welcome/again
    """
    found = Matching(workflow(before), workflow(after, 2)).changes()
    assert [(item.change, item.step) for item in found] == [("removed", "hello")]
    assert Matching(workflow(before), workflow(after, 2)).names() == {"1": "1", "3": "2", "again": "again"}


def test_a_step_moved_into_a_branch_keeps_its_id_and_says_from_where():
    before = """
        - id: hello
          email: welcome/hello
        - if: "contact.score > 10"
          then:
            - score: 5
    """
    after = """
        - if: "contact.score > 10"
          then:
            - score: 5
            - id: hello
              email: welcome/hello
    """
    assert changes(before, after) == [("moved", "hello", "email welcome/hello", [], ("1", "1.then.2"))]


def test_two_steps_swapped_in_a_block_is_one_move():
    before = """
        - id: a
          email: welcome/a
        - id: b
          email: welcome/b
        - id: c
          email: welcome/c
    """
    after = """
        - id: a
          email: welcome/a
        - id: c
          email: welcome/c
        - id: b
          email: welcome/b
    """
    found = changes(before, after)
    assert len(found) == 1 and found[0][0] == "moved" and found[0][1] in ("b", "c")


def test_a_moved_step_that_also_changed_says_both():
    before = """
        - id: hello
          email: welcome/hello
        - wait: 1d
    """
    after = """
        - wait: 1d
        - id: hello
          email: welcome/hi
    """
    found = changes(before, after)
    # One of the two moved past the other (which one is a matter of tie-breaking); hello's template changed.
    assert sorted(item[0] for item in found) == ["changed", "moved"] or [item[0] for item in found] == ["moved"]
    (hello,) = [item for item in found if item[1] == "hello"]
    assert hello[3] == [Detail("template", "welcome/hello", "welcome/hi")]
    assert [item[1:3] for item in found if item[0] == "moved"] in ([("1", "wait 1d")], [("hello", "email welcome/hi")])


def test_two_different_ids_at_one_place_are_a_removal_and_an_addition_not_a_change():
    before = """
        - id: old-hello
          email: welcome/hello
    """
    after = """
        - id: new-hello
          email: welcome/hello
    """
    assert [item[:2] for item in changes(before, after)] == [("removed", "old-hello"), ("added", "new-hello")]


def test_an_unnamed_step_given_an_id_is_a_change():
    assert changes("- email: welcome/hello\n", "- id: hello\n  email: welcome/hello\n") == [
        ("changed", "hello", "email welcome/hello", [Detail("id", None, "hello")], None)]


def test_a_removed_branch_removes_every_step_in_it():
    before = """
        - if: "contact.score > 10"
          then:
            - score: 5
            - id: vip
              email: welcome/vip
        - exit: done
    """
    assert changes(before, "- exit: done\n") == [
        ("removed", "1", "if contact.score > 10", [], None),
        ("removed", "1.then.1", "score +5", [], None),
        ("removed", "vip", "email welcome/vip", [], None)]


@pytest.mark.parametrize(("before", "after", "details"), [
    ('- if: "contact.score > 10"\n', '- if: "contact.score > 20"\n',
     [Detail("condition", "contact.score > 10", "contact.score > 20")]),
    ("- split:\n    variants: {a: {weight: 50}, b: {weight: 50}}\n",
     "- split:\n    variants: {a: {weight: 70}, b: {weight: 30}}\n",
     [Detail("weights", "a 50% / b 50%", "a 70% / b 30%")]),
    ("- email: cart/reminder-2\n", "- email: cart/reminder-3\n",
     [Detail("template", "cart/reminder-2", "cart/reminder-3")]),
    ("- task: {title: Call them, due: 2d}\n", "- task: {title: Call them today, due: 1d}\n",
     [Detail("task.title", "Call them", "Call them today"), Detail("task.due", "2d", "1d")]),
    ("- email: cart/a\n  vars: {line: Hi}\n", "- email: cart/a\n  vars: {line: Hello}\n",
     [Detail("vars.line", "Hi", "Hello")]),
    ("- wait_for: {event: email_clicked, timeout: 3d}\n", "- wait_for: {event: email_clicked, timeout: 5d}\n",
     [Detail("wait_for.timeout", "3d", "5d")]),
    ('- wait: {until: "09:30"}\n', '- wait: {until: "10:00", days: [mon]}\n',
     [Detail("wait.until", "09:30", "10:00"), Detail("wait.days", None, '["mon"]')]),
])
def test_what_changed_in_a_step_is_said_in_its_own_words(before: str, after: str, details: list[Detail]):
    (found,) = changes(before, after)
    assert (found[0], found[3]) == ("changed", details)


def test_a_split_matched_by_its_own_id_and_its_variants_steps_by_place():
    before = """
        - split:
            id: subject-test
            variants:
              a: {weight: 50, steps: [{email: cart/a}]}
              b: {weight: 50, steps: [{email: cart/b}]}
    """
    after = """
        - wait: 1h
        - split:
            id: subject-test
            variants:
              a: {weight: 50, steps: [{email: cart/a2}]}
              b: {weight: 50, steps: [{email: cart/b}]}
    """
    assert changes(before, after) == [
        ("added", "1", "wait 1h", [], None),
        ("changed", "2.a.1", "email cart/a2", [Detail("template", "cart/a", "cart/a2")], None)]


# --- in flight, from the files ---------------------------------------------------------------------------------

STEPS = """
    - wait: 1h
    - id: hello
      email: welcome/hello
    - id: pause
      wait: 2d
    - id: again
      email: welcome/again
"""


@pytest.mark.parametrize(("policy", "lines"), [
    ("migrate", ["waiting at `hello`, `again`: move to v2", "waiting at `pause` (removed in v2): finish on v1",
                 "waiting at `1` of v1 (no id: migrate moves by id): finish on v1"]),
    ("finish", ["contacts inside v1 finish on v1"]),
    ("stop", ["contacts inside v1 leave at deploy"]),
])
def test_in_flight_from_the_files_follows_the_new_versions_policy(policy: str, lines: list[str]):
    after = workflow(STEPS.replace("  - id: pause\n      wait: 2d\n", "  - wait: 3d\n"), 2, in_flight_policy=policy)
    assert in_flight(workflow(STEPS), after) == InFlight(policy, lines)


# --- Markdown helpers ------------------------------------------------------------------------------------------


def test_code_spans_hold_any_backticks_and_no_line_break():
    assert code("wait 1h") == "`wait 1h`"
    assert code("a `b` c") == "`` a `b` c ``"
    assert code("``x``") == "``` ``x`` ```"
    assert code("two\nlines") == "`two lines`"


def test_a_fence_is_longer_than_any_in_the_text():
    assert fenced(["+```", "-x"], "diff") == ["````diff", "+```", "-x", "````"]
    assert fenced([" ````` "]) == ["``````", " ````` ", "``````"]
    assert fenced(["plain"]) == ["```", "plain", "```"]


# --- whole diffs of small projects ----------------------------------------------------------------------------

PROJECT = {
    "mauto.yaml": "timezone: Europe/Paris\nlimits:\n  frequency_cap:\n    email: {max: 3, per: 7d}\n",
    "workflows/welcome.yaml": """
        id: welcome
        version: 1
        name: Welcome
        trigger: {event: signed_up}
        audience: "contact.country == 'FR'"
        in_flight: migrate
        steps:
          - id: hello
            email: welcome/hello
          - wait: 1d
          - id: tips
            email: welcome/tips
    """,
    "workflows/old.yaml": "id: old\nversion: 3\nname: Old\ntrigger: {event: signed_up}\nsteps:\n  - exit: bye\n",
    "templates/layouts/base.html": "<html>{% block content %}{% endblock %}</html>\n",
    "templates/welcome/hello.email.html": "---\nsubject: Hello\n---\n{% extends 'layouts/base.html' %}\n",
    "templates/welcome/tips.email.html": "---\nsubject: Tips\n---\n<p>Tips</p>\n",
}


@pytest.fixture
def two_projects(tmp_path: Path, write_files: Callable) -> Callable[[dict[str, str | None]], tuple]:
    """two_projects({file: new text or None to delete}) -> (base, head): PROJECT, and PROJECT so changed."""

    def make(changes: dict[str, str | None]) -> tuple:
        base = write_files(tmp_path / "base", PROJECT)
        head = write_files(tmp_path / "head", PROJECT)
        for name, text in changes.items():
            if text is None:
                (head / name).unlink()
            else:
                write_files(head, {name: text})
        return load_project(base / "mauto.yaml", base), load_project(head / "mauto.yaml", head)

    return make


def test_added_removed_and_changed_workflows_with_their_trigger_and_audience(two_projects):
    base, head = two_projects({
        "workflows/old.yaml": None,
        "workflows/fresh.yaml": "id: fresh\nversion: 1\nname: Fresh\ntrigger: {event: ordered}\n"
                                "steps:\n  - id: thanks\n    email: welcome/tips\n",
        "workflows/welcome.yaml": PROJECT["workflows/welcome.yaml"].replace("version: 1", "version: 2")
        .replace("signed_up", "confirmed").replace("'FR'", "'BE'"),
    })
    result = diff(base, head, labels=("main", "feature"))
    assert [(item.id, item.change, item.file, item.version, item.old_version) for item in result.workflows] == [
        ("fresh", "added", "workflows/fresh.yaml", 1, None),
        ("old", "removed", "workflows/old.yaml", None, 3),
        ("welcome", "changed", "workflows/welcome.yaml", 2, 1)]
    fresh, old, welcome = result.workflows
    assert [(step.change, step.step, step.action) for step in fresh.steps] == [("added", "thanks",
                                                                                 "email welcome/tips")]
    assert fresh.properties == [Detail("trigger", None, "event: ordered")]
    assert old.in_flight == InFlight("finish", ["contacts inside v3 finish on v3; no new contacts enter"])
    assert welcome.properties == [Detail("trigger", "event: signed_up", "event: confirmed"),
                                  Detail("audience", "contact.country == 'FR'", "contact.country == 'BE'")]
    assert welcome.steps == []
    assert welcome.in_flight is not None and welcome.in_flight.lines == [
        "waiting at `hello`, `tips`: move to v2", "waiting at `2` of v1 (no id: migrate moves by id): finish on v1"]
    assert result.templates == [] and result.settings == [] and result.unchanged == 0


def test_a_change_without_a_version_bump_is_flagged(two_projects):
    base, head = two_projects({"workflows/welcome.yaml": PROJECT["workflows/welcome.yaml"].replace("1d", "2d")})
    (item,) = diff(base, head).workflows
    assert item.notes == ["the content changed but `version` is still 1: `mauto deploy` refuses it until the "
                          "version is bumped"]


def test_comments_and_layout_are_no_change(two_projects):
    base, head = two_projects({"workflows/welcome.yaml": "# a comment\n" + PROJECT["workflows/welcome.yaml"]
                               .replace("wait: 1d", "wait:   1d   # a day")})
    result = diff(base, head)
    assert (result.workflows, result.unchanged, result.empty) == ([], 2, True)


def test_a_layout_change_names_every_step_that_sends_through_it(two_projects):
    base, head = two_projects({"templates/layouts/base.html": "<html><body>{% block content %}{% endblock %}"
                                                              "</body></html>\n",
                               "mauto.yaml": PROJECT["mauto.yaml"].replace("max: 3", "max: 2")})
    result = diff(base, head)
    (template,) = result.templates
    assert (template.path, template.change, template.used_by) == (
        "templates/layouts/base.html", "changed", [("welcome", "hello")])
    assert template.lines == ["@@ -1 +1 @@", "-<html>{% block content %}{% endblock %}</html>",
                              "+<html><body>{% block content %}{% endblock %}</body></html>"]
    assert result.settings == [Detail("limits.frequency_cap.email.max", "3", "2")]


def test_a_file_that_does_not_load_is_reported_not_raised(two_projects):
    base, head = two_projects({"workflows/broken.yaml": "id: [unclosed\n"})
    result = diff(base, head, labels=("main", "feature"))
    (problem,) = result.problems
    assert problem.startswith("feature: workflows/broken.yaml:")


def test_json_holds_everything_the_text_says(two_projects):
    base, head = two_projects({"workflows/welcome.yaml": PROJECT["workflows/welcome.yaml"]
                               .replace("version: 1", "version: 2").replace("1d", "2d")})
    data = json.loads(diff(base, head, labels=("HEAD", "working tree")).to_json())
    assert data["base"] == "HEAD" and data["head"] == "working tree"
    (item,) = data["workflows"]
    assert item["steps"] == [{"change": "changed", "step": "2", "action": "wait 2d",
                              "details": [{"what": "wait", "before": "1d", "after": "2d"}]}]
    assert item["in_flight"]["policy"] == "migrate" and not item["in_flight"]["counted"]


# --- the git side ---------------------------------------------------------------------------------------------


def test_the_project_at_a_ref_is_the_committed_one_read_only_and_gone_afterwards(sample_repo: Path):
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    with project_at(project, "HEAD") as committed:
        root = committed.root
        cart = (root / "workflows" / "abandoned-cart.yaml").read_text(encoding="utf-8")
        assert "version: 1" in cart and "wait: 24h" in cart
        assert (root / "samples" / "contacts.yaml").is_file()
        writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH  # the bits: root may write whatever they say
        assert (root / "workflows" / "abandoned-cart.yaml").stat().st_mode & writable == 0
        assert (root / "workflows").stat().st_mode & writable == 0
        assert committed.display(root / "workflows" / "abandoned-cart.yaml") == "workflows/abandoned-cart.yaml"
    assert not root.exists()
    with project_at(project, None) as working_tree:
        assert working_tree is project
    status = git(sample_repo, "status", "--porcelain")
    assert status.split() == ["M", "marketing/templates/cart/reminder-2.email.html", "M",
                              "marketing/workflows/abandoned-cart.yaml", "M",
                              "marketing/workflows/lead-nurturing.yaml"]


@pytest.mark.parametrize(("ref", "message"), [
    ("no-such-branch", "no-such-branch: no such commit, branch or tag in "),
    ("--output=/tmp/x", "--output=/tmp/x: a git ref cannot start with `-`"),
    ("", "an empty git ref: name a commit, branch or tag"),
    ("HEAD\nx", "HEAD\\nx: a git ref cannot hold control characters"),
])
def test_a_bad_ref_is_a_usage_error_naming_it(sample_repo: Path, ref: str, message: str):
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    with pytest.raises(UsageError) as raised, project_at(project, ref):
        pass
    assert str(raised.value).startswith(message)


def test_not_a_git_checkout_names_the_ref(tmp_path: Path, write_files: Callable):
    write_files(tmp_path / "plain", {"mauto.yaml": "timezone: UTC\n"})
    project = load_project(tmp_path / "plain" / "mauto.yaml", tmp_path / "plain")
    with pytest.raises(UsageError, match=r"^HEAD: \. is not in a git checkout$"), project_at(project, "HEAD"):
        pass


def test_a_ref_without_the_project_says_so(sample_repo: Path):
    repository = sample_repo.parent
    empty_tree = subprocess.run(["git", "mktree"], cwd=repository, input="", capture_output=True, text=True,
                                check=True).stdout.strip()
    git(repository, "branch", "empty", git(repository, "commit-tree", empty_tree, "-m", "nothing").strip())
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    message = r"^empty: there is no marketing/mauto.yaml in empty \(commit [0-9a-f]{12}\)$"
    with pytest.raises(UsageError, match=message), project_at(project, "empty"):
        pass


def test_diff_between_two_commits_equals_diff_against_the_working_tree(sample_repo: Path):
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    uncommitted = diff_refs(project, "HEAD")
    git(sample_repo.parent, "commit", "-q", "-am", "the change")
    committed = diff_refs(project, "HEAD~1", "HEAD")
    assert (committed.base, committed.head) == ("HEAD~1", "HEAD")
    assert (uncommitted.base, uncommitted.head) == ("HEAD", "working tree")
    assert committed.workflows == uncommitted.workflows and committed.templates == uncommitted.templates
    assert diff_refs(project, "HEAD").empty


# --- golden files: the sample project with the prepared change ------------------------------------------------


def test_the_prepared_change_reads_as_a_reviewer_needs(sample_repo: Path):
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    result = diff_refs(project, "HEAD")
    assert [(item.id, item.change) for item in result.workflows] == [("abandoned-cart", "changed"),
                                                                     ("lead-nurturing", "changed")]
    cart, leads = result.workflows
    assert [(step.change, step.step, step.details) for step in cart.steps] == [
        ("changed", "3", [Detail("wait", "24h", "48h")])]
    assert [(step.change, step.step, step.action) for step in leads.steps] == [
        ("added", "13", "if contact.score < 40"), ("added", "nurture-later", "lists +long-term-nurture −nurturing"),
        ("added", "13.then.2", "exit not ready for a demo")]
    (template,) = result.templates
    assert (template.path, template.used_by) == ("templates/cart/reminder-2.email.html",
                                                 [("abandoned-cart", "reminder-2")])


@pytest.mark.parametrize(("golden", "render"), [("diff.txt", lambda result: plain(text_blocks(result))),
                                                ("diff.md", markdown)])
def test_diff_matches_the_golden_file(sample_repo: Path, update_golden: bool, golden: str, render: Callable):
    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    compare_golden(golden, render(diff_refs(project, "HEAD")), update_golden)


# --- the command (wired in mauto/cli.py) -----------------------------------------------------------------------


@pytest.mark.parametrize(("golden", "options"), [("diff.txt", []), ("diff.md", ["--format", "markdown"])])
def test_the_command_prints_the_golden_output(sample_repo: Path, golden: str, options: list[str]):
    result = CliRunner().invoke(app, ["diff", *options])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert result.stdout == (GOLDEN / golden).read_text(encoding="utf-8")


def test_the_command_takes_two_refs_and_json(sample_repo: Path):
    git(sample_repo.parent, "commit", "-q", "-am", "the change")
    result = CliRunner().invoke(app, ["diff", "HEAD~1", "HEAD", "--format", "json"])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    data = json.loads(result.stdout)
    assert (data["base"], data["head"]) == ("HEAD~1", "HEAD")
    assert [item["id"] for item in data["workflows"]] == ["abandoned-cart", "lead-nurturing"]


def test_the_command_refuses_a_bad_ref_with_exit_2(sample_repo: Path):
    result = CliRunner().invoke(app, ["diff", "nope"])
    assert result.exit_code == 2
    assert result.stderr.startswith("nope: no such commit, branch or tag in ")
    assert "Traceback" not in result.output


# --- the deployed side ----------------------------------------------------------------------------------------


def test_diff_against_what_the_store_runs_counts_the_contacts_in_flight(sample_repo: Path):
    from datetime import UTC, datetime

    from mauto.deploy import GitInfo, deploy
    from mauto.store import Store

    project = load_project(sample_repo / "mauto.yaml", sample_repo)
    with Store(sample_repo / "mauto.db", create=True) as store:
        with project_at(project, "HEAD") as committed:
            deploy(committed, store, datetime(2026, 11, 23, 12, 0, tzinfo=UTC), GitInfo("abc", "Reviewer"))
        with store.transaction() as db:
            db.execute("INSERT INTO contacts (id, created_at, updated_at) VALUES ('c', 'x', 'x')")
            for number, position in enumerate(["steps.2", "steps.2", "steps.4", "steps.4", "steps.4"]):
                record = {"id": f"e{number}", "workflow": "abandoned-cart", "version": 1, "contact": "c",
                          "state": "active", "position": position}
                db.execute("INSERT INTO enrollments (id, workflow, version, contact, state, position, wake_at, data, "
                           "entered_at) VALUES (?, 'abandoned-cart', 1, 'c', 'active', ?, "
                           "'2026-11-24T12:00:00.000000+00:00', ?, '2026-11-20')",
                           [f"e{number}", position, json.dumps(record)])
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(Store(sample_repo / "mauto.db"))
        return opened[-1]

    result = diff_refs(project, "deployed", None, open_store)
    assert (result.base, result.head, len(opened)) == ("deployed", "working tree", 1)
    cart = next(item for item in result.workflows if item.id == "abandoned-cart")
    assert cart.in_flight == InFlight("migrate", [
        "v1 → v2: 3 contacts waiting at `reminder-2` move to v2; 2 waiting at `steps.2` finish on v1"], counted=True)
    assert [(step.change, step.step) for step in cart.steps] == [("changed", "3")]
    assert [template.path for template in result.templates] == ["templates/cart/reminder-2.email.html"]
    assert "`mauto diff deployed` counts" not in plain(text_blocks(result))
    against_head = diff_refs(project, "HEAD")  # the same files were committed and deployed: the same changes
    assert [(item.id, item.steps, item.properties) for item in against_head.workflows] == \
        [(item.id, item.steps, item.properties) for item in result.workflows]


# --- the docs stay true -----------------------------------------------------------------------------------------


def test_the_pull_request_page_shows_the_example_workflow_and_the_golden_outputs_as_they_are():
    page = (REPOSITORY / "docs" / "pull-requests.md").read_text(encoding="utf-8")
    workflow_file = (REPOSITORY / "docs" / "examples" / "mauto-pr.yml").read_text(encoding="utf-8")
    assert f"```yaml\n{workflow_file}```\n" in page
    for golden in ("diff.txt", "simulate.txt"):
        assert f"```\n{(GOLDEN / golden).read_text(encoding='utf-8').rstrip()}\n```\n" in page, golden


def test_the_example_workflow_lints_tests_and_posts_one_comment_it_updates():
    import yaml

    workflow_file = yaml.safe_load((REPOSITORY / "docs" / "examples" / "mauto-pr.yml").read_text(encoding="utf-8"))
    steps = workflow_file["jobs"]["review"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'mauto lint --format github --base "$BASE"' in runs and "mauto test --format github" in runs
    assert 'mauto diff "$BASE" --format markdown' in runs
    assert 'mauto simulate --base "$BASE" --start "$START" --for "$HORIZON" --format markdown' in runs
    script = steps[-1]["with"]["script"]
    assert "updateComment" in script and "createComment" in script and "<!-- mauto-pr -->" in script
    assert workflow_file["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert steps[0]["with"]["fetch-depth"] == 0
