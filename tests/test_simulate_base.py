"""`mauto simulate --base REF` (mauto/simulate/compare.py): the same samples through the project as at REF and
as in the working tree, and only what differs, contact by contact, then per workflow.

On the sample project in a real git repository (tests/test_diff.py's `sample_repo`: committed, then changed in
the working tree: a longer wait, a new branch, a changed template), against golden files in tests/golden/diff/
(`pytest tests/test_simulate_base.py --update-golden` rewrites them; review the diff)."""
from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.config import load_project
from mauto.errors import MautoError, UsageError
from mauto.simulate import compare as comparing
from mauto.simulate.compare import compare, compare_refs, markdown, text_blocks
from mauto.simulate.run import Simulation
from tests.conftest import dedent
from tests.test_diff import GOLDEN, compare_golden, git, make_sample_repo, plain

START = "2026-11-24T09:00:00+01:00"
BEGIN = datetime.fromisoformat(START)
LENGTH = timedelta(days=14)

pytestmark = pytest.mark.usefixtures("cli_environment")


@pytest.fixture(autouse=True)
def temporary_folders_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The folders a ref or the store is unpacked into go under tmp_path, and are gone after each test."""
    folder = tmp_path / "temporary"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield
    assert list(folder.iterdir()) == []


@pytest.fixture
def sample_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_sample_repo(tmp_path, monkeypatch)


def project_of(folder: Path):
    return load_project(folder / "mauto.yaml", folder)


def test_the_prepared_change_seen_contact_by_contact(sample_repo: Path):
    result = compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH)
    assert (result.base, result.head, result.contacts) == ("HEAD", "working tree", 13)
    by_contact = {item.contact: [(d.workflow, d.step, d.kind, d.change) for d in item.differences]
                  for item in result.changes}
    assert by_contact == {
        "c02": [("abandoned-cart", "4", "coupon", "moved"), ("abandoned-cart", "reminder-2", "send", "moved"),
                ("abandoned-cart", "last-call-sms", "send", "moved")],
        "c06": [("lead-nurturing", "13.then.2", "exit", "added"), ("lead-nurturing", "demo-invite", "send", "removed")],
    }
    reminder = result.changes[0].differences[1]
    assert (reminder.before, reminder.after) == (datetime.fromisoformat("2026-11-25T08:00:00-05:00"),
                                                 datetime.fromisoformat("2026-11-26T08:00:00-05:00"))
    assert reminder.details == ["subject: 10% off your cart, just for you → Your cart, 10% off: two days to decide",
                                "the text part changes", "the HTML part changes"]
    assert result.totals == {"lead-nurturing": {"email": (6, 5), "exited": (1, 2)}}


@pytest.mark.parametrize(("golden", "render"), [("simulate.txt", lambda result: plain(text_blocks(result))),
                                                ("simulate.md", markdown)])
def test_simulate_base_matches_the_golden_file(sample_repo: Path, update_golden: bool, golden: str, render):
    compare_golden(golden, render(compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH)), update_golden)


def test_it_costs_two_simulations(sample_repo: Path, monkeypatch: pytest.MonkeyPatch):
    runs: list[str] = []
    real = Simulation.run

    def counted(self: Simulation):
        runs.append(str(self.project.root))
        return real(self)

    monkeypatch.setattr(Simulation, "run", counted)
    compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH)
    assert len(runs) == 2 and runs[1] == str(sample_repo) and runs[0] != runs[1]


def test_both_runs_read_the_working_trees_samples(sample_repo: Path):
    """A contact added to the samples (and not committed) runs through both versions: no difference from them."""
    git(sample_repo, "checkout", "-q", "--", ".")  # the workflows and templates as committed
    with (sample_repo / "samples" / "contacts.yaml").open("a", encoding="utf-8") as contacts:
        contacts.write("\n- {id: c99, email: new@mail.example, timezone: Europe/Paris, email_consent: true}\n")
    with (sample_repo / "samples" / "events.yaml").open("a", encoding="utf-8") as events:
        events.write('\n- {contact: c99, event: cart_abandoned, at: "+2h", cart_value: 80, items: 1, '
                     'cart_url: "https://shop.lumio.example/cart/99"}\n')
    result = compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH)
    assert (result.contacts, result.changes, result.totals, result.same) == (14, [], {}, True)
    assert plain(text_blocks(result)).startswith(
        "simulate HEAD → working tree, from 2026-11-24T09:00:00+01:00 for 14d: no difference for the 14 contacts\n")


def test_chosen_workflows_run_on_both_sides(sample_repo: Path):
    result = compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH, [Path("lead-nurturing")])
    assert [item.contact for item in result.changes] == ["c06"]
    assert set(result.totals) == {"lead-nurturing"}


def test_the_base_may_be_what_the_store_runs(sample_repo: Path):
    from mauto.deploy import GitInfo, deploy
    from mauto.gitref import project_at
    from mauto.store import Store

    project = project_of(sample_repo)
    with Store(sample_repo / "mauto.db", create=True) as store, project_at(project, "HEAD") as committed:
        deploy(committed, store, BEGIN, GitInfo("abc", "Reviewer"))
    against_store = compare_refs(project, "deployed", BEGIN, LENGTH, open_store=lambda: Store(sample_repo / "mauto.db"))
    against_head = compare_refs(project, "HEAD", BEGIN, LENGTH)
    assert against_store.base == "deployed"
    assert (against_store.changes, against_store.totals) == (against_head.changes, against_head.totals)


def test_a_base_that_does_not_lint_is_refused_saying_which_side(sample_repo: Path):
    broken = sample_repo / "workflows" / "abandoned-cart.yaml"
    text = broken.read_text(encoding="utf-8")
    broken.write_text(text.replace("email: cart/reminder-2", "email: cart/no-such-template"), encoding="utf-8")
    git(sample_repo, "commit", "-q", "-am", "a typo")
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(MautoError) as raised:
        compare_refs(project_of(sample_repo), "HEAD", BEGIN, LENGTH)
    assert str(raised.value).startswith("at HEAD: the project has 1 lint error; fix them first (mauto lint):\n"
                                        "  workflows/abandoned-cart.yaml:")
    assert raised.value.exit_code == 2


def test_a_bad_ref_names_it(sample_repo: Path):
    with pytest.raises(UsageError, match=r"^main~9: no such commit, branch or tag in "):
        compare_refs(project_of(sample_repo), "main~9", BEGIN, LENGTH)


def test_an_sms_whose_text_changed_says_how(tmp_path: Path, write_files):
    files = {
        "mauto.yaml": "timezone: UTC\nsender: {sms: SHOP}\n",
        "workflows/ping.yaml": """
            id: ping
            version: 1
            name: Ping
            category: transactional
            trigger: {event: signed_up}
            steps:
              - id: hello
                sms: ping/hello
              - wait: 1d
              - id: bye
                sms: ping/bye
        """,
        "templates/ping/hello.sms.txt": "Hello {{ contact.id }}\n",
        "templates/ping/bye.sms.txt": "Bye\n",
        "samples/contacts.yaml": "- {id: c1, phone: '+33612345678', sms_consent: true}\n",
        "samples/events.yaml": "- {contact: c1, event: signed_up, at: '+1h'}\n",
    }
    base = project_of(write_files(tmp_path / "base", files))
    changed = {**files, "templates/ping/hello.sms.txt": "Hi there {{ contact.id }}\n",
               "workflows/ping.yaml": files["workflows/ping.yaml"].replace("wait: 1d", "wait: 2d")}
    head = project_of(write_files(tmp_path / "head", changed))
    result = compare(base, head, datetime.fromisoformat("2026-11-24T09:00:00+00:00"), timedelta(days=3),
                     labels=("main", "feature"))
    (item,) = result.changes
    assert [(d.step, d.change, d.details) for d in item.differences] == [
        ("hello", "changed", ["text: Hello c1 → Hi there c1"]), ("bye", "moved", [])]
    assert comparing.sentence(item.differences[1], comparing.zone("UTC")) == \
        "moves from Wed 25 Nov 10:00 UTC to Thu 26 Nov 10:00 UTC"
    data = json.loads(result.to_json())
    assert data["changes"][0]["differences"][1] == {
        "workflow": "ping", "step": "bye", "kind": "send", "what": "sms ping/bye", "change": "moved",
        "before": "2026-11-25T10:00:00+00:00", "after": "2026-11-26T10:00:00+00:00", "details": []}
    assert result.totals == {}
    shorter = compare(base, head, datetime.fromisoformat("2026-11-24T09:00:00+00:00"), timedelta(days=2))
    assert [(d.step, d.change) for d in shorter.changes[0].differences] == [("hello", "changed"), ("bye", "removed")]
    assert comparing.total_line("ping", shorter.totals["ping"]) == "ping: 1 fewer SMS"


# --- the command (wired in mauto/cli.py) -----------------------------------------------------------------------


@pytest.mark.parametrize(("golden", "options"), [("simulate.txt", []), ("simulate.md", ["--format", "markdown"])])
def test_the_command_prints_the_golden_output(sample_repo: Path, golden: str, options: list[str]):
    result = CliRunner().invoke(app, ["simulate", "--base", "HEAD", "--start", START, "--for", "14d", *options])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    assert result.stdout == (GOLDEN / golden).read_text(encoding="utf-8")


def test_the_command_prints_json(sample_repo: Path):
    result = CliRunner().invoke(app, ["simulate", "--base", "HEAD", "--start", START, "--for", "14d", "-f", "json"])
    assert (result.exit_code, result.stderr) == (0, ""), result.output
    data = json.loads(result.stdout)
    assert (data["base"], data["head"], data["contacts"]) == ("HEAD", "working tree", 13)
    assert [item["contact"] for item in data["changes"]] == ["c02", "c06"]
    assert data["totals"]["lead-nurturing"]["email"] == {"base": 6, "head": 5, "difference": -1}


@pytest.mark.parametrize(("options", "message"), [
    (["--base", "nope"], "nope: no such commit, branch or tag in "),
    (["--base", "HEAD", "--contact", "c02"], "--base shows what differs between two runs: it takes no --contact "
                                             "or --render"),
    (["--format", "markdown"], "--format markdown needs --base"),
])
def test_the_command_refuses_what_it_cannot_do_with_exit_2(sample_repo: Path, options: list[str], message: str):
    result = CliRunner().invoke(app, ["simulate", "--start", START, *options])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message)


def test_mauto_links_in_a_message_are_no_change_whatever_their_token(tmp_path: Path, write_files):
    """The unsubscribe link's token names the message (its enrollment, its step): a message whose text is the
    same reads the same, even when its step has another place, and so its link another token."""
    files = {
        "mauto.yaml": 'timezone: UTC\nsender: {email: "Shop <shop@example.com>"}\n'
                      'unsubscribe_url: "https://example.com/u/{{ token }}"\n',
        "workflows/news.yaml": """
            id: news
            version: 1
            name: News
            trigger: {event: signed_up}
            steps:
              - wait: 1h
              - email: news/hello
        """,
        "templates/news/hello.email.html": '---\nsubject: Hello\n---\n'
                                           '<p>Hi</p><a href="{{ unsubscribe_url }}">stop</a>\n',
        "samples/contacts.yaml": "- {id: c1, email: c1@example.com, email_consent: true}\n",
        "samples/events.yaml": "- {contact: c1, event: signed_up, at: '+1h'}\n",
    }
    base = project_of(write_files(tmp_path / "base", files))
    renamed = {**files, "workflows/news.yaml": dedent(files["workflows/news.yaml"]).replace("version: 1", "version: 2")
               .replace("  - wait: 1h\n", "  - wait: 1h\n  - score: 1\n")}  # the email is step 3 now
    head = project_of(write_files(tmp_path / "head", renamed))
    start = datetime.fromisoformat("2026-11-24T09:00:00+00:00")
    result = compare(base, head, start, timedelta(days=1))
    assert (result.changes, result.same) == ([], True)
    edited = {**renamed, "templates/news/hello.email.html": renamed["templates/news/hello.email.html"]
              .replace("Hi", "Hello there")}
    head = project_of(write_files(tmp_path / "edited", edited))
    (item,) = compare(base, head, start, timedelta(days=1)).changes
    assert [(d.step, d.change, d.details) for d in item.differences] == [
        ("3", "changed", ["the text part changes", "the HTML part changes"])]
