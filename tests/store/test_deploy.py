"""Deploying workflows into a real SQLite store: plan, deploy, in_flight policies, rollback, pause, status.

The use case is mauto/deploy.py (above the store); its SQL is mauto/store/releases.py."""
from __future__ import annotations

import ast
import contextlib
import json
import re
import threading
import time
from pathlib import Path

import pytest

import mauto.deploy
from mauto.config import load_project
from mauto.deploy import DeployRefused, GitInfo, deploy, git_info, pause, plan, resume, rollback, status
from mauto.store import Store, StoreLocked, open_store
from tests.store.conftest import NOW, reopen

MAUTO_YAML = "timezone: Europe/Paris\nevents:\n  signed_up: {source: string}\n"


def workflow(version: int, steps: str, in_flight: str | None = None, ident: str = "welcome") -> str:
    policy = f"in_flight: {in_flight}\n" if in_flight else ""
    return (f"id: {ident}\nversion: {version}\nname: Welcome\ncategory: transactional\n{policy}"
            f"trigger: {{event: signed_up}}\nsteps:\n{steps}")


V1 = "  - id: wait-1d\n    wait: 1d\n  - id: wait-3d\n    wait: 3d\n  - id: reminder-2\n    wait: 2d\n"
V2 = "  - id: wait-3d\n    wait: 3d\n  - id: wait-5d\n    wait: 5d\n"  # wait-1d and reminder-2 removed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "mauto.yaml").write_text(MAUTO_YAML)
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "welcome.yaml").write_text(workflow(1, V1))
    (tmp_path / "workflows" / "other.yaml").write_text(workflow(1, V2, ident="other"))
    monkeypatch.chdir(tmp_path)
    return load_project(tmp_path / "mauto.yaml", tmp_path)


@pytest.fixture
def store(any_store: Store) -> Store:
    """The deploy tests' store, on SQLite and on PostgreSQL (tests/store/conftest.py)."""
    return any_store


@pytest.fixture
def where(project, store_location: str) -> str:
    """The store of the commands' tests: mauto.yaml's `store:` (SQLite's `data/mauto.db`, beside it, or a
    PostgreSQL database), which the test opens by the same name (the project's folder is the current one)."""
    with (project.root / "mauto.yaml").open("a") as settings:
        settings.write(f"store: {store_location}\n")
    return store_location


def put(project, name: str, text: str) -> None:
    (project.root / "workflows" / name).write_text(text)


def snapshot(store: Store) -> dict:
    return {table: store.db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("workflow_versions", "workflows", "enrollments")}


def enroll(store: Store, count: int, position: str | None, version: int = 1, state: str = "waiting",
           wake_at: str | None = "2026-11-24T12:00:00.000000+00:00", workflow_id: str = "welcome",
           start: int = 0) -> None:
    with store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO contacts (id, created_at, updated_at) VALUES ('c', 'x', 'x')")
        for number in range(start, start + count):
            ident = f"{workflow_id}-{position}-{state}-{number}"
            data = {"id": ident, "workflow": workflow_id, "version": version, "contact": "c", "state": state,
                    "position": position, "wake_at": wake_at}
            db.execute("INSERT INTO enrollments (id, workflow, version, contact, state, position, wake_at, data, "
                       "entered_at) VALUES (?, ?, ?, 'c', ?, ?, ?, ?, ?)",
                       [ident, workflow_id, version, state, position, wake_at, json.dumps(data), "2026-11-20"])


GIT = GitInfo("abc123", "Ada <ada@example.com>")


def test_fresh_store_plans_everything_new_then_deploy_makes_it_unchanged(project, store) -> None:
    first = plan(project, store, NOW)
    assert [(c.kind, c.id, c.version) for c in first.changes] == [("new", "other", 1), ("new", "welcome", 1)]
    result = deploy(project, store, NOW, GIT)
    assert result.plan.counts()["new"] == 2
    row = store.db.execute("SELECT version, source, git_commit, git_author, deployed_at FROM workflow_versions "
                           "WHERE id = 'welcome'").fetchone()
    assert row == (1, workflow(1, V1), "abc123", "Ada <ada@example.com>", "2026-11-23T12:00:00.000000+00:00")
    again = plan(project, store, NOW)
    assert again.counts() == {"new": 0, "changed": 0, "unchanged": 2, "removed": 0, "refused": 0}
    assert not again.has_changes


def test_versions_are_immutable(project, store) -> None:
    deploy(project, store, NOW, GIT)
    with pytest.raises(Exception, match="immutable"), store.transaction() as db:
        db.execute("UPDATE workflow_versions SET source = 'x'")


def test_changed_file_without_bump_is_refused_and_nothing_written(project, store) -> None:
    deploy(project, store, NOW, GIT)
    before = snapshot(store)
    put(project, "welcome.yaml", workflow(1, V2))
    put(project, "new.yaml", workflow(1, V1, ident="brand-new"))
    refused = plan(project, store, NOW).refused
    assert [(c.id, c.where) for c in refused] == [("welcome", "workflows/welcome.yaml:2")]
    assert "bump `version`" in refused[0].reason
    with pytest.raises(DeployRefused, match=r"workflows/welcome.yaml:2: the content differs"):
        deploy(project, store, NOW, GIT)
    assert snapshot(store) == before  # not even the new file went in


def test_comments_and_layout_do_not_count_as_a_change(project, store) -> None:
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", "# a comment\n" + workflow(1, V1).replace("wait: 1d", "wait:   1d  # one day"))
    assert plan(project, store, NOW).counts()["unchanged"] == 2


def test_lower_version_is_refused(project, store) -> None:
    put(project, "welcome.yaml", workflow(2, V1))
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", workflow(1, V1))
    (change,) = plan(project, store, NOW).refused
    assert "lower than the deployed version 2" in change.reason and "rollback welcome --to 1" in change.reason


@pytest.mark.parametrize("policy, sentence, moved, stopped", [
    ("migrate", "v1 → v2: 42 contacts waiting at `wait-3d` move to v2; 7 waiting at `reminder-2` (removed in v2) "
                "finish on v1; 3 waiting at `wait-1d` (removed in v2) finish on v1", 42, 0),
    ("finish", "v1 → v2: 42 contacts waiting at `wait-3d` finish on v1; 7 waiting at `reminder-2` (removed in v2) "
               "finish on v1; 3 waiting at `wait-1d` (removed in v2) finish on v1", 0, 0),
    ("stop", "v1 → v2: 42 contacts waiting at `wait-3d` leave at deploy; 7 waiting at `reminder-2` (removed in v2) "
             "leave at deploy; 3 waiting at `wait-1d` (removed in v2) leave at deploy", 0, 52),
])
def test_bump_applies_the_in_flight_policy(project, store, policy, sentence, moved, stopped) -> None:
    deploy(project, store, NOW, GIT)
    enroll(store, 42, "steps.1")
    enroll(store, 7, "steps.2")
    enroll(store, 3, "steps.0", state="active")
    enroll(store, 5, "steps.1", state="completed", start=100)  # ended: not in flight
    put(project, "welcome.yaml", workflow(2, V2, policy))
    (change,) = plan(project, store, NOW).of("changed")
    assert (change.old_version, change.version, change.policy) == (1, 2, policy)
    assert change.sentence() == sentence
    result = deploy(project, store, NOW, GIT)
    assert (result.moved, result.stopped) == (moved, stopped)
    rows = store.db.execute("SELECT version, position, state, reason, count(*) FROM enrollments "
                            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3").fetchall()
    if policy == "migrate":
        assert rows == [(1, "steps.0", "active", None, 3), (1, "steps.1", "completed", None, 5),
                        (1, "steps.2", "waiting", None, 7), (2, "steps.0", "waiting", None, 42)]
        data = json.loads(store.db.execute("SELECT data FROM enrollments WHERE version = 2").fetchone()[0])
        assert (data["version"], data["position"]) == (2, "steps.0")
    elif policy == "finish":
        assert rows == [(1, "steps.0", "active", None, 3), (1, "steps.1", "completed", None, 5),
                        (1, "steps.1", "waiting", None, 42), (1, "steps.2", "waiting", None, 7)]
    else:
        assert rows == [(1, "steps.0", "exited", "stopped by v2 deploy", 3), (1, "steps.1", "completed", None, 5),
                        (1, "steps.1", "exited", "stopped by v2 deploy", 42),
                        (1, "steps.2", "exited", "stopped by v2 deploy", 7)]
    assert store.db.execute("SELECT current_version FROM workflows WHERE id = 'welcome'").fetchone() == (2,)


def test_removed_workflow_stops_taking_contacts_and_in_flight_finish(project, store) -> None:
    deploy(project, store, NOW, GIT)
    enroll(store, 4, "steps.1")
    (project.root / "workflows" / "welcome.yaml").unlink()
    (change,) = plan(project, store, NOW).of("removed")
    assert change.sentence() == "v1: 4 contacts waiting at `wait-3d` finish on v1"
    deploy(project, store, NOW, GIT)
    assert store.db.execute("SELECT state FROM workflows WHERE id = 'welcome'").fetchone() == ("removed",)
    assert store.db.execute("SELECT count(*) FROM enrollments WHERE state = 'waiting'").fetchone() == (4,)
    assert plan(project, store, NOW).counts()["removed"] == 0  # already removed
    put(project, "welcome.yaml", workflow(1, V1))  # back again
    assert [c.kind for c in plan(project, store, NOW).changes if c.id == "welcome"] == ["new"]
    deploy(project, store, NOW, GIT)
    assert store.db.execute("SELECT state FROM workflows WHERE id = 'welcome'").fetchone() == ("active",)


def test_lint_errors_refuse_deploy(project, store) -> None:
    put(project, "broken.yaml", "id: broken\nversion: 1\nname: Broken\ntrigger: {event: nope}\nsteps: []\n")
    with pytest.raises(DeployRefused, match=r"lint found \d+ errors?") as caught:
        deploy(project, store, NOW, GIT)
    assert "broken.yaml" in str(caught.value)
    assert store.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (0,)


def test_rollback_pause_resume_status(project, store, clock) -> None:
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", workflow(2, V2))
    deploy(project, store, NOW, GIT)
    enroll(store, 2, "steps.0", version=2, wake_at="2026-11-25T08:00:00.000000+00:00")
    enroll(store, 1, "steps.1", version=2, state="active", wake_at="2026-11-24T08:00:00.000000+00:00")
    enroll(store, 1, "steps.1", version=2, state="failed", wake_at=None)
    result = rollback(store, "welcome")
    assert {key: result[key] for key in ("id", "from", "to", "state", "in_flight_policy", "moved", "stopped")} == {
        "id": "welcome", "from": 2, "to": 1, "state": "active", "in_flight_policy": "finish", "moved": 0,
        "stopped": 0}
    assert result["summary"] == ("v2 → v1: 2 contacts waiting at `wait-3d` finish on v2; 1 waiting at `wait-5d` "
                                 "(not in v1) finish on v2")
    with pytest.raises(Exception, match="already runs v1"):
        rollback(store, "welcome", to=1)
    with pytest.raises(Exception, match="never deployed"):
        rollback(store, "welcome", to=7)
    assert rollback(store, "welcome", to=2)["to"] == 2
    pause(store, "welcome")
    rows = {row["id"]: row for row in status(store)}
    assert rows["welcome"] == {"id": "welcome", "version": 2, "state": "paused",
                               "updated_at": "2026-11-23T12:00:00.000000+00:00", "active": 1, "waiting": 2,
                               "pending": 0, "next_wake_at": "2026-11-24T08:00:00.000000+00:00", "failures": 1,
                               "winners": [], "held": 0}
    assert rows["other"]["active"] == 0 and rows["other"]["next_wake_at"] is None
    assert plan(project, store, NOW).counts()["unchanged"] == 2  # a paused workflow stays paused
    resume(store, "welcome")
    assert status(store)[1]["state"] == "active"
    with pytest.raises(Exception, match="no workflow `nope`"):
        pause(store, "nope")


def test_rolled_back_file_redeploys_its_stored_version(project, store) -> None:
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", workflow(2, V2))
    deploy(project, store, NOW, GIT)
    rollback(store, "welcome")
    (change,) = plan(project, store, NOW).of("changed")  # the file still says v2: deploy makes it current again
    assert (change.old_version, change.version, change.stored) == (1, 2, True)
    deploy(project, store, NOW, GIT)
    assert store.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (3,)


def test_two_deploys_at_once_one_waits_nothing_half_written(project, tmp_path) -> None:
    path = tmp_path / "mauto.db"
    Store(path, create=True).close()
    holding, release = threading.Event(), threading.Event()
    results: dict = {}

    def first_deploy() -> None:
        with Store(path, timeout=5) as first:
            original = first.transaction

            @contextlib.contextmanager
            def slow_transaction():
                with original() as db:
                    yield db
                    holding.set()  # everything written, not yet committed: hold the write lock
                    release.wait(5)

            first.transaction = slow_transaction
            results["first"] = deploy(project, first, NOW, GIT)

    thread = threading.Thread(target=first_deploy)
    thread.start()
    assert holding.wait(10)
    with Store(path, timeout=5) as second:
        # A reader sees nothing of the first deploy before it commits.
        assert second.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (0,)
        timer = threading.Timer(0.3, release.set)
        timer.start()
        started = time.monotonic()
        results["second"] = deploy(project, second, NOW, GIT)  # waits for the first, then has nothing to do
        thread.join()
        assert time.monotonic() - started >= 0.2
        assert results["first"].plan.counts()["new"] == 2
        assert results["second"].plan.counts() == {"new": 0, "changed": 0, "unchanged": 2, "removed": 0,
                                                   "refused": 0}
        assert second.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (2,)


def test_second_deploy_fails_cleanly_past_the_timeout(project, tmp_path) -> None:
    path = tmp_path / "mauto.db"
    Store(path, create=True).close()
    with Store(path) as holder, Store(path, timeout=0.1) as other:
        holder.db.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreLocked, match="the store is locked"):
            deploy(project, other, NOW, GIT)
        holder.db.conn.rollback()
        assert other.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (0,)


# --- a plan that changed between the confirmation and the transaction ---------------------------------


PLAN_CHANGED = ("nothing deployed: the plan changed after it was shown{which} (another deploy or a rollback landed, "
                "contacts in flight moved, or a file changed); run `mauto deploy` again to see the new plan")


def test_fingerprint_is_stable_and_follows_what_the_plan_says(project, store) -> None:
    first, again = plan(project, store, NOW), plan(project, store, NOW)
    assert first.fingerprint() == again.fingerprint() and len(first.fingerprint()) == 64
    put(project, "welcome.yaml", workflow(1, V2))  # same id and version, other content: still "new v1"
    edited = plan(project, store, NOW)
    assert edited.to_dict() == first.to_dict() and edited.fingerprint() != first.fingerprint()
    assert first.differing(edited) == ["welcome"]


def test_deploy_refuses_when_another_deploy_landed_after_the_plan(project, store, tmp_path) -> None:
    shown = plan(project, store, NOW)
    with reopen(store, timeout=5) as other:  # a second mauto deploys first
        deploy(project, other, NOW, GIT)
    before = snapshot(store)
    with pytest.raises(DeployRefused) as refused:
        deploy(project, store, NOW, GIT, expected=shown)
    assert str(refused.value) == PLAN_CHANGED.format(which=": `other`, `welcome` differ")
    assert snapshot(store) == before


def test_deploy_refuses_when_contacts_moved_after_the_plan(project, store) -> None:
    deploy(project, store, NOW, GIT)
    enroll(store, 42, "steps.1")
    put(project, "welcome.yaml", workflow(2, V2, "stop"))
    shown = plan(project, store, NOW)
    assert shown.of("changed")[0].sentence() == "v1 → v2: 42 contacts waiting at `wait-3d` leave at deploy"
    enroll(store, 1, "steps.1", start=42)  # the daemon enrolls one more before the deploy takes the lock
    before = snapshot(store)
    with pytest.raises(DeployRefused) as refused:
        deploy(project, store, NOW, GIT, expected=shown.fingerprint())  # a fingerprint alone does too
    assert str(refused.value) == PLAN_CHANGED.format(which="")
    with pytest.raises(DeployRefused, match="`welcome` differs"):
        deploy(project, store, NOW, GIT, expected=shown)
    assert snapshot(store) == before  # not one contact stopped, v2 not written
    result = deploy(project, store, NOW, GIT, expected=plan(project, store, NOW))  # the plan as it is now
    assert result.stopped == 43


def test_deploy_refuses_a_file_edited_after_the_plan(project, store) -> None:
    shown = plan(project, store, NOW)
    put(project, "welcome.yaml", workflow(1, V2))  # edited while the prompt waited, version unchanged
    with pytest.raises(DeployRefused, match="`welcome` differs"):
        deploy(project, store, NOW, GIT, expected=shown)
    assert store.db.execute("SELECT count(*) FROM workflow_versions").fetchone() == (0,)


# --- rollback and the in_flight policy of the version made current ------------------------------------


@pytest.mark.parametrize("policy, newer_policy, summary, moved, stopped, rows", [
    ("migrate", "stop",
     "v2 → v1: 5 contacts waiting at `wait-3d` move to v1; 3 waiting at `wait-5d` (not in v1) finish on v2", 5, 0,
     [(1, "steps.0", "waiting", None, 2), (1, "steps.1", "waiting", None, 5), (2, "steps.0", "completed", None, 1),
      (2, "steps.1", "waiting", None, 3)]),
    ("finish", "stop",
     "v2 → v1: 5 contacts waiting at `wait-3d` finish on v2; 3 waiting at `wait-5d` (not in v1) finish on v2", 0, 0,
     [(1, "steps.0", "waiting", None, 2), (2, "steps.0", "completed", None, 1), (2, "steps.0", "waiting", None, 5),
      (2, "steps.1", "waiting", None, 3)]),
    ("stop", "migrate",
     "v2 → v1: 5 contacts waiting at `wait-3d` leave at rollback; 3 waiting at `wait-5d` (not in v1) leave at "
     "rollback", 0, 8,
     [(1, "steps.0", "waiting", None, 2), (2, "steps.0", "completed", None, 1),
      (2, "steps.0", "exited", "stopped by rollback to v1", 5),
      (2, "steps.1", "exited", "stopped by rollback to v1", 3)]),
])
def test_rollback_applies_the_policy_of_the_version_made_current(project, store, policy, newer_policy, summary,
                                                                 moved, stopped, rows) -> None:
    put(project, "welcome.yaml", workflow(1, V1, policy))
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", workflow(2, V2, newer_policy))  # the newer version's own policy does not count
    deploy(project, store, NOW, GIT)
    enroll(store, 5, "steps.0", version=2)  # wait-3d: in v1 as steps.1
    enroll(store, 3, "steps.1", version=2)  # wait-5d: not in v1
    enroll(store, 1, "steps.0", version=2, state="completed", start=100)  # ended: not in flight
    enroll(store, 2, "steps.0", version=1, start=200)  # already on v1: left alone
    before = snapshot(store)
    dry = rollback(store, "welcome", dry_run=True)
    assert snapshot(store) == before  # a dry run writes nothing
    assert (dry["summary"], dry["moved"], dry["stopped"], dry["dry_run"]) == (summary, moved, stopped, True)
    result = rollback(store, "welcome")
    assert (result["from"], result["to"], result["in_flight_policy"]) == (2, 1, policy)
    assert (result["summary"], result["moved"], result["stopped"], result["dry_run"]) == (summary, moved, stopped,
                                                                                          False)
    assert store.db.execute("SELECT version, position, state, reason, count(*) FROM enrollments "
                            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3").fetchall() == rows
    assert store.db.execute("SELECT current_version FROM workflows WHERE id = 'welcome'").fetchone() == (1,)
    for data, in store.db.execute("SELECT data FROM enrollments WHERE state IN ('waiting', 'exited')"):
        record = json.loads(data)  # the engine's copy agrees with the columns
        row = store.db.execute("SELECT version, position, state FROM enrollments WHERE id = ?",
                               [record["id"]]).fetchone()
        assert (record["version"], record["position"], record["state"]) == row
    if policy == "stop":
        data = store.db.execute("SELECT data FROM enrollments WHERE state = 'exited' LIMIT 1").fetchone()[0]
        record = json.loads(data)
        assert (record["reason"], record["ended_at"], record["wake_at"]) == (
            "stopped by rollback to v1", "2026-11-23T12:00:00.000000+00:00", None)


@pytest.mark.sqlite_only("holds SQLite's write lock by hand (BEGIN IMMEDIATE)")
def test_rollback_dry_run_reads_while_another_writer_holds_the_lock(project, store) -> None:
    put(project, "welcome.yaml", workflow(1, V1, "stop"))
    deploy(project, store, NOW, GIT)
    put(project, "welcome.yaml", workflow(2, V2))
    deploy(project, store, NOW, GIT)
    enroll(store, 4, "steps.0", version=2)
    with Store(store.path) as holder:
        holder.db.execute("BEGIN IMMEDIATE")
        try:
            dry = rollback(store, "welcome", dry_run=True)
            with pytest.raises(StoreLocked):
                rollback(store, "welcome")
        finally:
            holder.db.conn.rollback()
    assert (dry["summary"], dry["stopped"]) == ("v2 → v1: 4 contacts waiting at `wait-3d` leave at rollback", 4)
    assert store.db.execute("SELECT count(*) FROM enrollments WHERE state = 'waiting'").fetchone() == (4,)


def test_git_info_outside_a_checkout(tmp_path) -> None:
    assert git_info(tmp_path) == GitInfo(None, None)


SQL = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN|WITH)\b")  # as written here


def test_the_use_case_writes_no_sql() -> None:
    """The store keeps the SQL: mauto/deploy.py neither runs a statement nor spells one."""
    tree = ast.parse(Path(mauto.deploy.__file__).read_text(encoding="utf-8"))
    calls = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr in ("execute", "executemany", "executescript")]
    statements = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Constant)
                  and isinstance(node.value, str) and SQL.match(node.value)]
    assert (calls, statements) == ([], [])


# --- the commands ----------------------------------------------------------------------------------


def run(*args: str, input: str | None = None):
    from typer.testing import CliRunner

    from mauto.cli import app

    return CliRunner().invoke(app, list(args), input=input)


@pytest.mark.usefixtures("cli_environment")
def test_cli_plan_deploy_status_rollback(project, monkeypatch, where: str) -> None:
    from mauto import cli as deploy_cli

    with open_store(where, create=True):
        pass
    result = run("plan")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("+ other v1 (workflows/other.yaml)\n+ welcome v1 (workflows/welcome.yaml)\n"
                             "+ release: the templates and mauto.yaml as they are (the first release: the daemon "
                             "renders only from releases from now on)\n"
                             "Plan: 2 new, 0 changed, 0 removed, 0 unchanged, 0 refused.\n")
    result = run("deploy")  # no terminal, no --yes
    assert result.exit_code == 2 and "not deploying without --yes" in result.stderr
    monkeypatch.setattr(deploy_cli, "_interactive", lambda: True)
    assert run("deploy", input="n\n").exit_code == 1
    result = run("deploy", input="y\n")
    assert result.exit_code == 0 and result.stdout.endswith("Deployed: 2 new, 0 changed, 0 removed.\n")
    assert run("deploy").stdout.endswith("= 2 unchanged\nPlan: 0 new, 0 changed, 0 removed, 2 unchanged, "
                                         "0 refused.\nNothing to deploy.\n")
    with open_store(where) as store:
        enroll(store, 42, "steps.1")
        enroll(store, 7, "steps.2")
    put(project, "welcome.yaml", workflow(2, V2, "migrate"))
    put(project, "other.yaml", workflow(1, V1, ident="other"))
    result = run("plan")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "! other v1: refused: the content differs from the deployed version 1 of `other`: bump `version` to "
        "deploy a change (workflows/other.yaml:2)",
        "~ welcome v1 → v2 (workflows/welcome.yaml), in_flight: migrate",
        "    v1 → v2: 42 contacts waiting at `wait-3d` move to v2; 7 waiting at `reminder-2` (removed in v2) "
        "finish on v1",
        "Plan: 0 new, 1 changed, 0 removed, 0 unchanged, 1 refused.",
    ]
    assert json.loads(run("plan", "--format", "json").stdout)["summary"]["refused"] == 1
    result = run("deploy", "--yes")
    assert result.exit_code == 1 and "nothing deployed: 1 file refused" in result.stderr
    put(project, "other.yaml", workflow(1, V2, ident="other"))
    result = run("deploy", "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("Deployed: 0 new, 1 changed, 0 removed; 42 contacts moved, 0 stopped.\n")
    rows = json.loads(run("status", "--format", "json").stdout)["workflows"]
    assert [(row["id"], row["version"], row["waiting"]) for row in rows] == [("other", 1, 0), ("welcome", 2, 49)]
    assert "welcome" in run("status").stdout
    assert run("pause", "welcome").stdout == "welcome v2: paused\n"
    assert run("resume", "welcome").stdout == "welcome v2: active\n"
    assert run("rollback", "welcome").stdout == ("welcome: v2 → v1 (new contacts enter v1), in_flight: finish\n"
                                                 "    v2 → v1: 42 contacts waiting at `wait-3d` finish on v2\n"
                                                 "Rolled back: 0 contacts moved, 0 stopped.\n")
    result = run("rollback", "welcome", "--to", "9")
    assert result.exit_code == 2 and "v9 was never deployed" in result.stderr


@pytest.mark.usefixtures("cli_environment")
def test_cli_deploy_refuses_lint_errors(project, where: str) -> None:
    with open_store(where, create=True):
        pass
    put(project, "broken.yaml", "id: broken\nversion: 1\nname: Broken\ntrigger: {event: nope}\nsteps: []\n")
    result = run("deploy", "--yes")
    assert result.exit_code == 1 and "nothing deployed: lint found" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("cli_environment")
def test_cli_deploy_refuses_when_the_store_changed_during_the_confirmation(project, monkeypatch, where: str) -> None:
    from mauto import cli as deploy_cli

    with open_store(where, create=True) as store:
        deploy(project, store, NOW, GIT)
        enroll(store, 42, "steps.1")
    put(project, "welcome.yaml", workflow(2, V2, "migrate"))
    monkeypatch.setattr(deploy_cli, "_interactive", lambda: True)

    def confirm_while_the_daemon_enrolls(*args, **kwargs) -> bool:
        with open_store(where) as daemon:
            enroll(daemon, 3, "steps.1", start=42)
        return True

    monkeypatch.setattr(deploy_cli.typer, "confirm", confirm_while_the_daemon_enrolls)
    result = run("deploy")
    assert result.exit_code == 1, result.output
    assert "    v1 → v2: 42 contacts waiting at `wait-3d` move to v2" in result.stdout  # the plan shown
    assert result.stderr == PLAN_CHANGED.format(which=": `welcome` differs") + "\n"
    assert "Traceback" not in result.output
    with open_store(where) as store:
        assert store.db.execute("SELECT current_version FROM workflows WHERE id = 'welcome'").fetchone() == (1,)
        assert store.db.execute("SELECT count(*) FROM enrollments WHERE version = 1").fetchone() == (45,)
    monkeypatch.setattr(deploy_cli.typer, "confirm", lambda *args, **kwargs: True)
    result = run("deploy")  # run again: the new plan, shown and applied
    assert "    v1 → v2: 45 contacts waiting at `wait-3d` move to v2" in result.stdout
    assert result.stdout.endswith("Deployed: 0 new, 1 changed, 0 removed; 45 contacts moved, 0 stopped.\n")


@pytest.mark.usefixtures("cli_environment")
def test_cli_rollback_policy_dry_run_and_json(project, where: str) -> None:
    put(project, "welcome.yaml", workflow(1, V1, "migrate"))
    with open_store(where, create=True) as store:
        deploy(project, store, NOW, GIT)
        put(project, "welcome.yaml", workflow(2, V2))
        deploy(project, store, NOW, GIT)
        enroll(store, 5, "steps.0", version=2)
        enroll(store, 1, "steps.1", version=2)
    sentence = ("    v2 → v1: 5 contacts waiting at `wait-3d` move to v1; "
                "1 waiting at `wait-5d` (not in v1) finish on v2\n")
    result = run("rollback", "welcome", "--dry-run")
    assert (result.exit_code, result.stdout) == (0, "welcome: v2 → v1 (new contacts enter v1), in_flight: migrate\n"
                                                    + sentence +
                                                    "Dry run, nothing written: 5 contacts would move, 0 would stop.\n")
    dry = json.loads(run("rollback", "welcome", "--dry-run", "--format", "json").stdout)
    assert (dry["to"], dry["moved"], dry["dry_run"], dry["summary"]) == (1, 5, True, sentence.strip())
    with open_store(where) as store:
        assert store.db.execute("SELECT current_version FROM workflows WHERE id = 'welcome'").fetchone() == (2,)
        assert store.db.execute("SELECT count(*) FROM enrollments WHERE version = 2").fetchone() == (6,)
    result = run("rollback", "welcome", "--format", "json")
    done = json.loads(result.stdout)
    assert (result.exit_code, done["from"], done["to"], done["moved"], done["stopped"], done["dry_run"]) == (
        0, 2, 1, 5, 0, False)
    assert done["in_flight"][0] == {"count": 5, "version": 2, "position": "steps.0", "step": "`wait-3d`",
                                    "action": "move", "new_position": "steps.1", "removed_in_new": False}
    with open_store(where) as store:
        assert store.db.execute("SELECT version, count(*) FROM enrollments GROUP BY 1 ORDER BY 1").fetchall() == [
            (1, 5), (2, 1)]
    result = run("rollback", "welcome", "--to", "2")
    assert result.stdout == ("welcome: v1 → v2 (new contacts enter v2), in_flight: finish\n"
                             "    v1 → v2: 5 contacts waiting at `wait-3d` finish on v1\n"
                             "Rolled back: 0 contacts moved, 0 stopped.\n")
