"""Deploying workflows into the store: plan, deploy, rollback, pause, resume, status.

`plan` compares the files in `workflows/` with what the store runs and says, in numbers,
what a deploy would do to the contacts already inside (the workflow's `in_flight`
policy). `deploy` does exactly that in one write transaction, and gives the deployed date
triggers their indexes (`mauto.store.indexes`: in that transaction on SQLite, concurrently right
after it on PostgreSQL). The rows are read and written by `mauto.store.releases` (all the SQL);
this module decides. See docs/store.md.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto import release
from mauto.config import BUILTIN_FIELDS
from mauto.errors import ExitCode, MautoError, UsageError, YamlError
from mauto.lint.runner import lint, workflow_files
from mauto.release import ReleaseChange
from mauto.store import indexes, releases, runtime
from mauto.store.indexes import IndexChange, IndexSpec
from mauto.store.sqlite import Store, stamp
from mauto.workflow.loader import load, parse
from mauto.workflow.model import content_hash

POLICIES = ("finish", "migrate", "stop")


class DeployRefused(MautoError):
    """Nothing was deployed: lint errors, or files the store cannot take as they are."""

    exit_code = ExitCode.FINDINGS


@dataclass
class GitInfo:
    commit: str | None = None
    author: str | None = None
    dirty: bool | None = None  # the project's files differ from the commit (None: not a git checkout)
    deployer: str | None = field(default_factory=lambda: _login())  # who ran the deploy


def _login() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return None


def git_info(root: Path) -> GitInfo:
    """HEAD's commit and author, and whether the project's files differ from it, when `root` is in a git
    checkout; else nothing (but who deploys)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
        except (FileNotFoundError, OSError):
            return None
        return done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "--quiet", "HEAD")
    if not commit:
        return GitInfo()
    changes = git("status", "--porcelain", "--", ".")
    return GitInfo(commit, git("log", "-1", "--format=%an <%ae>", "HEAD"), None if changes is None else bool(changes))


# --- step paths ------------------------------------------------------------------------------


def step_ids(data: Any) -> dict[str, str]:
    """{step path ("steps.2.then.0"): step id} for every step with an id, nested ones too."""
    found: dict[str, str] = {}

    def walk(items: Any, prefix: str) -> None:
        if not isinstance(items, list):
            return
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            path = f"{prefix}.{index}"
            if isinstance(item.get("id"), str):
                found[path] = item["id"]
            for block in ("then", "else", "on_event", "on_timeout"):
                walk(item.get(block), f"{path}.{block}")
            split = item.get("split")
            if isinstance(split, dict) and isinstance(split.get("variants"), dict):
                for name, spec in split["variants"].items():
                    if isinstance(spec, dict):
                        walk(spec.get("steps"), f"{path}.split.variants.{name}.steps")

    walk(data.get("steps") if isinstance(data, dict) else None, "steps")
    return found


def _label(position: str | None, ids: dict[str, str]) -> str:
    if position is None:
        return "the end"
    return f"`{ids[position]}`" if position in ids else f"`{position}`"


# --- the plan --------------------------------------------------------------------------------


@dataclass
class Group:
    """Contacts in flight at one step of one old version, and what the deploy does to them."""

    count: int
    version: int
    position: str | None
    step: str  # how to name the position: `step-id`, or the path when the step has no id
    action: str  # move | finish | stop
    new_position: str | None = None
    removed: bool = False  # the step's id is not in the new version

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "version": self.version, "position": self.position, "step": self.step,
                "action": self.action, "new_position": self.new_position, "removed_in_new": self.removed}


@dataclass
class Change:
    kind: str  # new | changed | unchanged | removed | refused
    id: str
    file: str | None = None
    version: int | None = None  # the file's version (None for removed)
    old_version: int | None = None  # the store's current version
    state: str | None = None  # the store's state
    policy: str = "finish"
    in_flight: list[Group] = field(default_factory=list)
    reason: str | None = None
    line: int | None = None  # of `version`, for refused files
    # what deploy writes
    source: str | None = None
    data: Any = None
    hash: str | None = None
    stored: bool = False  # this version is already in workflow_versions (a re-deploy after a rollback)
    winners: list[str] = field(default_factory=list)  # the winners its splits picked, and what this version does

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else (self.file or self.id)

    def sentence(self) -> str:
        """The in-flight policy in numbers: "v3 → v4: 42 contacts waiting at `wait-3d` move to v4; ...".

        A rollback (kind `rollback`, v4 → v3) says it the same way: the version made current decides."""
        moving = self.kind in ("changed", "rollback")
        head = f"v{self.old_version} → v{self.version}" if moving else f"v{self.old_version}"
        if not self.in_flight:
            return f"{head}: no contacts in flight"
        parts: list[str] = []
        for group in self.in_flight:
            noun = "" if parts else (" contacts" if group.count != 1 else " contact")
            who = f"{group.count}{noun} waiting at {group.step}"
            if group.removed and self.kind == "changed":
                who += f" (removed in v{self.version})"
            elif group.removed and self.kind == "rollback":
                who += f" (not in v{self.version})"
            if group.action == "move":
                parts.append(f"{who} move to v{self.version}")
            elif group.action == "stop":
                parts.append(f"{who} leave at {'rollback' if self.kind == 'rollback' else 'deploy'}")
            else:
                parts.append(f"{who} finish on v{group.version}")
        return f"{head}: " + "; ".join(parts)

    @property
    def stop_reason(self) -> str:
        """The reason an enrollment stopped by this change is given."""
        if self.kind == "rollback":
            return f"stopped by rollback to v{self.version}"
        return f"stopped by v{self.version} deploy"

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"kind": self.kind, "id": self.id, "file": self.file, "version": self.version,
                                  "old_version": self.old_version}
        if self.kind in ("changed", "removed", "rollback"):
            result["in_flight_policy"] = self.policy
            result["in_flight"] = [group.to_dict() for group in self.in_flight]
            result["summary"] = self.sentence()
        if self.kind == "refused":
            result["reason"] = self.reason
            result["line"] = self.line
        if self.winners:
            result["winners"] = self.winners
        return result


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    release: ReleaseChange | None = None  # the templates and settings a deploy would make current
    # The date triggers' indexes to make (or make again) and the ones no deployed trigger reads to drop; not in
    # the fingerprint: the store's own state, which another deploy or `mauto db index` may change in between,
    # and which the deploy reads again (what it did is `DeployResult.indexes`).
    indexes: list[IndexChange] = field(default_factory=list)

    def of(self, kind: str) -> list[Change]:
        return [change for change in self.changes if change.kind == kind]

    @property
    def refused(self) -> list[Change]:
        return self.of("refused")

    @property
    def has_changes(self) -> bool:
        return (any(change.kind in ("new", "changed", "removed") for change in self.changes)
                or (self.release is not None and self.release.changed) or bool(self.indexes))

    def counts(self) -> dict[str, int]:
        counter = Counter(change.kind for change in self.changes)
        return {kind: counter.get(kind, 0) for kind in ("new", "changed", "unchanged", "removed", "refused")}

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"summary": self.counts(), "changes": [change.to_dict() for change in self.changes]}
        if self.release is not None:
            result["release"] = self.release.to_dict()
        if self.indexes:
            result["indexes"] = [change.to_dict() for change in self.indexes]
        return result

    def fingerprint(self) -> str:
        """A SHA-256 of everything the plan says (to_dict, but the indexes) and of the content it would write:
        two plans with the same fingerprint deploy the same thing. `deploy(expected=...)` compares it with the
        plan it makes inside its transaction."""
        said = {key: value for key, value in self.to_dict().items() if key != "indexes"}
        return _digest(said, [[change.id, change.hash] for change in self.changes], self.files_hash)

    files_hash: str | None = None  # the release content of the project's files (a template edited after the plan)

    def differing(self, other: Plan) -> list[str]:
        """The workflow ids whose entries differ between this plan and `other`."""
        mine = {change.id: _digest(change.to_dict(), change.hash) for change in self.changes}
        theirs = {change.id: _digest(change.to_dict(), change.hash) for change in other.changes}
        return sorted(ident for ident in mine.keys() | theirs.keys() if mine.get(ident) != theirs.get(ident))


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _files(project: Any) -> Iterator[tuple[str, Any, str]]:
    """(display path, document, source) of each workflow file that parses with an id and a version."""
    for path in workflow_files(project.workflows_dir):
        shown = project.display(path)
        try:
            document = load(path, shown)
        except YamlError:
            continue  # lint reports it; deploy refuses on lint errors
        data = document.data
        if isinstance(data, dict) and isinstance(data.get("id"), str) and type(data.get("version")) is int:
            yield shown, document, document.text


def _groups(store: Store, workflow: str, versions: dict, new_ids: dict[str, str] | None, new_version: int | None,
            policy: str) -> list[Group]:
    """Contacts in flight in `workflow` (any version but the new one), grouped by version and position."""
    rows = releases.in_flight(store.db, workflow, new_version)
    new_paths = {step_id: path for path, step_id in (new_ids or {}).items()}
    groups = []
    cache: dict[int, dict[str, str]] = {}
    for version, position, count in rows:
        if version not in cache:
            stored = versions.get((workflow, version))
            cache[version] = step_ids(json.loads(stored[1])) if stored else {}
        ids = cache[version]
        step_id = ids.get(position) if position is not None else None
        target = new_paths.get(step_id) if step_id is not None else None
        removed = new_ids is not None and step_id is not None and target is None
        if new_ids is None or policy == "finish":
            action = "finish"
        elif policy == "stop":
            action = "stop"
        else:
            action = "move" if target is not None else "finish"
        groups.append(Group(count, version, position, _label(position, ids), action, target, removed))
    groups.sort(key=lambda group: ({"move": 0, "stop": 1, "finish": 2}[group.action], -group.count))
    return groups


def plan(project: Any, store: Store, now: datetime | None = None) -> Plan:
    """What `deploy` would do, without writing anything. `now` is unused but kept for symmetry with deploy."""
    with store.guard():
        return _plan(project, store)


def _plan(project: Any, store: Store) -> Plan:
    # The settings a release carries are read now, as the daemon would read them (a bad `tasks:` section is an
    # error at its place in mauto.yaml here, never in a tick).
    project.task_handoff  # noqa: B018
    workflows, versions = releases.workflows(store.db), releases.versions(store.db)
    result = Plan()
    seen: dict[str, str] = {}
    for shown, document, source in _files(project):
        data = document.data
        workflow, version = data["id"], data["version"]
        line = document.pos(("version",)).line
        change = Change("new", workflow, shown, version, source=source, data=data, hash=content_hash(data),
                        policy=data.get("in_flight", "finish") if data.get("in_flight") in POLICIES else "finish")
        if workflow in seen:
            change.kind, change.line = "refused", line
            change.reason = f"id `{workflow}` is also the id of {seen[workflow]}"
            result.changes.append(change)
            continue
        seen[workflow] = shown
        current = workflows.get(workflow)
        stored = versions.get((workflow, version))
        if stored is not None:
            change.stored = True
            if stored[0] != change.hash:
                change.kind, change.line = "refused", line
                change.reason = (f"the content differs from the deployed version {version} of `{workflow}`: "
                                 f"bump `version` to deploy a change")
                if current:
                    change.old_version, change.state = current
                result.changes.append(change)
                continue
        if current is None:
            result.changes.append(change)
            continue
        change.old_version, change.state = current
        old = current[0]
        if change.state == "removed":
            change.kind = "new"  # the file is back
        elif version == old:
            change.kind = "unchanged"
        elif version < old:
            change.kind, change.line = "refused", line
            change.reason = (f"version {version} is lower than the deployed version {old}: "
                             f"use `mauto rollback {workflow} --to {version}` to go back")
        else:
            change.kind = "changed"
            change.in_flight = _groups(store, workflow, versions, step_ids(data), version, change.policy)
        result.changes.append(change)
    for workflow, (old, state) in sorted(workflows.items()):
        if workflow in seen or state == "removed":
            continue
        change = Change("removed", workflow, old_version=old, state=state)
        change.in_flight = _groups(store, workflow, versions, None, None, "finish")
        result.changes.append(change)
    result.release = release.compare(project, store, lambda: _template_uses(project))
    result.files_hash = release.content(release.project_files(project))[0]
    decided = releases.winners(store.db)
    for change in result.changes:
        if change.id in decided:
            change.winners = _winner_notes(change, decided[change.id])
    order = {"refused": 0, "new": 1, "changed": 2, "removed": 3, "unchanged": 4}
    result.changes.sort(key=lambda change: (order[change.kind], change.id))
    deployed = [change.data for change in result.changes if change.kind in ("new", "changed", "unchanged")]
    result.indexes = _index_plan(store, deployed, project.contact_fields)
    return result


# --- the date triggers' indexes ------------------------------------------------------------------------------


def trigger_indexes(workflows: Any, fields: dict[str, Any]) -> list[IndexSpec]:
    """The indexes the date triggers of these workflows (their data, as deployed) read, for the type `fields`
    declares their field: one per field and `every`, in the workflows' order. A trigger on a field that is not
    a date or a datetime (lint refuses it) or whose index cannot be named (`indexes.fits`) has none."""
    wanted: dict[str, IndexSpec] = {}
    for data in workflows:
        trigger = data.get("trigger") if isinstance(data, dict) else None
        spec = trigger.get("date") if isinstance(trigger, dict) else None
        if not isinstance(spec, dict):
            continue
        name, every = spec.get("field"), spec.get("every", "year")
        if not isinstance(name, str) or every not in indexes.EVERY or not indexes.fits(name, every):
            continue
        declared = fields.get(name)
        if declared in ("date", "datetime"):
            index = IndexSpec(name, declared, every)
            wanted.setdefault(index.name, index)
    return list(wanted.values())


def _index_plan(store: Store, workflows: Any, fields: dict[str, Any]) -> list[IndexChange]:
    """What a deploy (or a rollback) of these workflows does to the date triggers' indexes: make the missing ones,
    make again those made otherwise, drop the `contacts_date_*` ones no trigger of them reads."""
    changes = indexes.planned_changes(store, trigger_indexes(workflows, fields), drop_dates=True)
    return [change for change in changes if change.action != "keep"]


def _deployed_workflows(db: Any, making_current: dict[str, int] | None = None) -> list[Any]:
    """The data of the current version of each workflow the store runs (active or paused), or of the version
    `making_current` gives it (a rollback's)."""
    versions = releases.versions(db)
    current = {workflow: ((making_current or {}).get(workflow, version), state)
               for workflow, (version, state) in releases.workflows(db).items()}
    return [json.loads(versions[(workflow, version)][1]) for workflow, (version, state) in sorted(current.items())
            if state != "removed" and (workflow, version) in versions]


def _release_fields(db: Any) -> dict[str, Any]:
    """The contact fields of the current release's mauto.yaml (what the daemon reads contacts with)."""
    fields = dict(BUILTIN_FIELDS)
    current = releases.current_release(db)
    stored = releases.release_files(db, current["id"]) if current is not None else {}
    if release.SETTINGS not in stored:
        return fields
    text = releases.blobs(db, [stored[release.SETTINGS]]).get(stored[release.SETTINGS])
    try:
        data = parse(text or "", release.SETTINGS).data
    except MautoError:
        return fields
    declared = data.get("contact_fields") if isinstance(data, dict) else None
    if isinstance(declared, dict):
        fields.update(declared)
    return fields


def _template_uses(project: Any) -> dict[str, list[tuple[str, str]]]:
    """Each template file (`templates/...`) -> the (workflow, step) of the project's workflows whose sends use
    it, directly or as a layout or partial."""
    from mauto.templates import TemplateSet
    from mauto.workflow.model import build

    templates = TemplateSet(project.templates_dir, project.display_root)
    uses: dict[str, list[tuple[str, str]]] = {}
    for _shown, document, _source in _files(project):
        try:
            workflow = build(document)
        except Exception:  # noqa: BLE001, S112 - a file lint refuses: the plan refuses it too
            continue
        for label, path in release.sent_by(templates, workflow):
            uses.setdefault(path, []).append((workflow.id, label))
    return uses


def current_release(store: Store) -> dict[str, Any] | None:
    """The release the daemon renders from: id, hash, when, the git commit (and whether the tree was dirty), who
    deployed it and why (deploy, or a rollback); None before the first deploy of schema version 8."""
    with store.guard():
        return releases.current_release(store.db)


def _winners_in_force(db: Any, workflow: str, version: int) -> dict[str, tuple[str, ...]]:
    """The splits of a deployed version that pick their winner: split id -> its variants."""
    from mauto.engine.winners import winner_splits
    from mauto.workflow.loader import parse
    from mauto.workflow.model import build

    source = runtime.workflow_source(db, workflow, version)
    try:
        return {split.split: split.variants for split in winner_splits(build(parse(source or "", workflow)))}
    except Exception:  # noqa: BLE001 - a version this mauto cannot read applies no winner (the tick says why)
        return {}


def _winner_notes(change: Change, decided: list[dict[str, Any]]) -> list[str]:
    """What becomes of the winners a workflow's splits picked, with the version this change makes current."""
    from mauto.engine.winners import winner_splits
    from mauto.workflow.loader import parse
    from mauto.workflow.model import build

    splits: dict[str, tuple[str, ...]] = {}
    if change.kind in ("new", "changed", "unchanged") and change.source is not None:
        try:
            splits = {split.split: split.variants
                      for split in winner_splits(build(parse(change.source, change.file or change.id)))}
        except Exception:  # noqa: BLE001 - a file that does not build is refused by lint before it gets here
            splits = {}
    notes = []
    for winner in decided:
        head = (f"split {winner['split']} picked {winner['variant']} on "
                f"{datetime.fromisoformat(winner['decided_at']):%Y-%m-%d %H:%M} UTC")
        variants = splits.get(winner["split"])
        if change.kind == "removed":
            notes.append(f"{head}: the workflow stops taking contacts")
        elif variants is None:
            notes.append(f"{head}: v{change.version} has no `winner:` on split {winner['split']}: new entries are "
                         "split by weight again")
        elif winner["variant"] not in variants:
            notes.append(f"{head}: v{change.version} has no variant {winner['variant']}: new entries are split by "
                         "weight again")
        else:
            notes.append(f"{head}: v{change.version} keeps it, new entries all go to {winner['variant']}")
    return notes


# --- deploy ------------------------------------------------------------------------------------


@dataclass
class DeployResult:
    plan: Plan
    deployed_at: str
    git: GitInfo
    moved: int = 0
    stopped: int = 0
    release: int | None = None  # the release made current, None: the files were those of the current one
    # what was done to the date triggers' indexes: made, remade, dropped, or failed (PostgreSQL: the deploy stands)
    indexes: list[IndexChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "deployed_at": self.deployed_at, "git_commit": self.git.commit,
                "git_author": self.git.author, "git_dirty": self.git.dirty, "deployed_by": self.git.deployer,
                "moved": self.moved, "stopped": self.stopped, "release_id": self.release,
                "indexes": [change.to_dict() for change in self.indexes]}


def refusal(plan: Plan) -> str:
    lines = [f"{change.where}: {change.reason}" for change in plan.refused]
    count = len(lines)
    return f"nothing deployed: {count} file{'s' if count != 1 else ''} refused\n" + "\n".join(lines)


def check_lint(project: Any, now: datetime, shown: int = 5) -> None:
    """Refuse (DeployRefused) when `mauto lint` finds errors, showing the first `shown` of them."""
    result = lint(project, now)
    if result.errors:
        raise DeployRefused(f"nothing deployed: lint found {result.errors} error{'s' if result.errors != 1 else ''}"
                            f" (run `mauto lint`):\n{result.error_lines(shown)}")


def plan_changed(expected: Plan | str, current: Plan) -> str:
    """Why a deploy refused a plan that is no longer the one shown."""
    which = ""
    if isinstance(expected, Plan):
        ids = expected.differing(current)
        if ids:
            which = f": {', '.join(f'`{ident}`' for ident in ids)} {'differs' if len(ids) == 1 else 'differ'}"
    return (f"nothing deployed: the plan changed after it was shown{which} (another deploy or a rollback landed, "
            "contacts in flight moved, or a file changed); run `mauto deploy` again to see the new plan")


def deploy(project: Any, store: Store, now: datetime, git: GitInfo | None = None,
           expected: Plan | str | None = None) -> DeployResult:
    """Lint, plan again inside one write transaction, and apply the plan, or refuse and write nothing.

    A second deploy at the same time waits for the first (the busy timeout), then plans against what
    the first wrote; past the timeout it fails with StoreLocked, having written nothing. With `expected`
    (the plan shown and confirmed, or its fingerprint), a plan that differs from it is refused
    (DeployRefused): what was confirmed is what is applied, or nothing is.

    The date triggers of the workflows deployed get their indexes (`contacts_date_<field>_<every>`), and those
    of the triggers no longer deployed are dropped (`DeployResult.indexes`): on SQLite in the same transaction;
    on PostgreSQL right after it, built concurrently (the daemons' writes to `contacts` go on meanwhile), and
    an index that cannot be built is `failed` in the result, the deploy standing (its trigger reads every
    contact until the next deploy makes it).
    """
    if expected is None:  # with the plan shown, its fingerprint covers every file lint reads: checked again below
        check_lint(project, now)
    git = git if git is not None else git_info(project.root)
    at = stamp(now)
    later = indexes.concurrent(store)  # PostgreSQL: built once the deploy is committed
    with store.transaction() as db:
        current = _plan(project, store)
        if expected is not None:
            fingerprint = expected.fingerprint() if isinstance(expected, Plan) else expected
            if fingerprint != current.fingerprint():
                raise DeployRefused(plan_changed(expected, current))
        if current.refused:
            raise DeployRefused(refusal(current))
        result = DeployResult(current, at, git)
        for change in current.changes:
            if change.kind == "removed":
                releases.set_state(db, change.id, "removed", at)
            # what is left to write is a file's (new or changed), which always has a version and a hash
            if change.kind not in ("new", "changed") or change.version is None or change.hash is None:
                continue
            if not change.stored:
                releases.insert_version(db, change.id, change.version, change.hash, change.source, change.data, at,
                                        git.commit, git.author)
            if change.kind == "new":
                # a file that comes back after a removal starts afresh: it enrolls from events after `at` only
                releases.start(db, change.id, change.version, at)
            else:
                releases.set_version(db, change.id, change.version, at)
                moved, stopped = _apply(db, change, at)
                result.moved += moved
                result.stopped += stopped
        files = release.project_files(project)
        files[release.WORKFLOWS] = release.workflows_file(releases.workflows(db))
        result.release = release.record(db, files, at, git.commit, git.dirty, git.deployer, "deploy")
        if not later:
            result.indexes = indexes.apply_changes(store, current.indexes)
    if later:
        result.indexes = indexes.apply_changes(store, current.indexes)
    return result


def _apply(db: Any, change: Change, at: str) -> tuple[int, int]:
    """The in_flight policy on the enrollments of a changed (or rolled back) workflow: (moved, stopped)."""
    moved = stopped = 0
    for group in change.in_flight:
        if group.action == "move" and change.version is not None:
            moved += releases.move(db, change.id, group.version, group.position, change.version, group.new_position)
        elif group.action == "stop":
            stopped += releases.stop(db, change.id, group.version, group.position, at, change.stop_reason)
    return moved, stopped


# --- rollback, pause, resume, status -------------------------------------------------------------


def _workflow(store: Store, workflow: str) -> tuple[int, str]:
    row = releases.workflow(store.db, workflow)
    if row is None:
        raise UsageError(f"no workflow `{workflow}` in the store (deploy it first)")
    return row


def rollback(store: Store, workflow: str, to: int | None = None, *, dry_run: bool = False) -> dict[str, Any]:
    """Make an earlier deployed version current again (default: the one deployed before the current one).

    New contacts enter `to`. The contacts in flight on the other versions get the `in_flight` policy of
    `to`, the version made current (as a deploy uses the new file's): `finish` leaves them where they are,
    `migrate` moves those waiting at a step whose id exists in `to` to it (the others finish), `stop` ends
    them (state `exited`, reason "stopped by rollback to vN"). One write transaction; with `dry_run`,
    nothing is written and the result says what would happen. Returns the summary sentence, the groups,
    and how many contacts moved and stopped, and what was done to the date triggers' indexes (`indexes`: as a
    deploy does, for the version made current; planned only with `dry_run`).
    """
    later = indexes.concurrent(store)  # PostgreSQL: built once the rollback is committed
    with (store.guard() if dry_run else store.transaction()):
        current, state = _workflow(store, workflow)
        versions = releases.versions(store.db, workflow)
        deployed = [version for _, version in versions]
        if to is None:
            earlier = [version for version in deployed if version < current]
            if not earlier:
                raise UsageError(f"`{workflow}` has no version deployed before v{current}")
            to = earlier[-1]
        elif to not in deployed:
            raise UsageError(f"`{workflow}` v{to} was never deployed (deployed: "
                             f"{', '.join(f'v{v}' for v in deployed)})")
        elif to == current:
            raise UsageError(f"`{workflow}` already runs v{to}")
        data = json.loads(versions[(workflow, to)][1])
        chosen = data.get("in_flight") if isinstance(data, dict) else None
        policy = chosen if isinstance(chosen, str) and chosen in POLICIES else "finish"
        change = Change("rollback", workflow, version=to, old_version=current, state=state, policy=policy)
        change.in_flight = _groups(store, workflow, versions, step_ids(data), to, policy)
        moved = sum(group.count for group in change.in_flight if group.action == "move")
        stopped = sum(group.count for group in change.in_flight if group.action == "stop")
        restored = release.release_for(store.db, workflow, to)
        if not dry_run:
            at = store.stamp()
            releases.set_version(store.db, workflow, to, at)
            moved, stopped = _apply(store.db, change, at)
            _rollback_release(store.db, workflow, to, restored, at)
        planned = _index_plan(store, _deployed_workflows(store.db, {workflow: to}), _release_fields(store.db))
        done = planned if dry_run or later else indexes.apply_changes(store, planned)
    if later and not dry_run:
        done = indexes.apply_changes(store, planned)
    return {"id": workflow, "from": current, "to": to, "state": state, "in_flight_policy": policy,
            "in_flight": [group.to_dict() for group in change.in_flight], "summary": change.sentence(),
            "moved": moved, "stopped": stopped, "dry_run": dry_run, "templates_from_release": restored,
            "indexes": [index.to_dict() for index in done]}


def _rollback_release(db: Any, workflow: str, to: int, source: int | None, at: str) -> None:
    """The release a rollback makes current: the current one, with the templates `to` sends (layouts and
    partials included) as they were in the latest release in which it ran, and every workflow's version as it now
    is. Other workflows' templates and mauto.yaml stay as deployed: a rollback of one workflow never reverts
    another's text. A version deployed before releases were kept (schema version 8) keeps the current text."""
    current = releases.current_release(db)
    if current is None:
        return
    files = release.files_of(db, current["id"])
    restored: list[str] = []
    if source is not None:
        old = release.files_of(db, source)
        source_text = runtime.workflow_source(db, workflow, to)
        from mauto.workflow.loader import parse
        from mauto.workflow.model import build

        for path in sorted(release.templates_sent(old, build(parse(source_text or "", workflow)))):
            if files.get(path) != old[path]:
                files[path] = old[path]
                restored.append(path)
    files[release.WORKFLOWS] = release.workflows_file(releases.workflows(db))
    note = f"rollback of {workflow} to v{to}"
    if restored:
        names = ", ".join(path.removeprefix("templates/") for path in restored)
        note += f" (its templates as in release #{source}: {names})"
    release.record(db, files, at, None, None, _login(), note)


def _set_state(store: Store, workflow: str, state: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    with store.transaction() as db:
        version, before = _workflow(store, workflow)
        if before not in allowed:
            raise UsageError(f"`{workflow}` is {before}: cannot make it {state}")
        releases.set_state(db, workflow, state, store.stamp())
    return {"id": workflow, "version": version, "from": before, "state": state}


def pause(store: Store, workflow: str) -> dict[str, Any]:
    """Stop taking new contacts and stop moving those inside until `resume` (the daemon honours it)."""
    return _set_state(store, workflow, "paused", ("active", "paused"))


def resume(store: Store, workflow: str) -> dict[str, Any]:
    """Run a paused workflow again. The next tick first hands its enrollments the events held for them while it
    was paused (`held`: how many), in the order they came, each at its own moment, then moves them on."""
    result = _set_state(store, workflow, "active", ("paused", "active"))
    with store.guard():
        result["held"] = runtime.held_counts(store.db).get(workflow, 0)
    return result


def status(store: Store) -> list[dict[str, Any]]:
    """Each workflow: version, state, enrollments active and waiting, next wake-up, failures, the winners its
    splits picked, and the events held for its enrollments (`held`: kept while it is paused, applied on resume)."""
    with store.guard():
        rows = releases.status(store.db)
        winners = releases.winners(store.db)
        held = runtime.held_counts(store.db)
        for row in rows:
            if winners.get(row[0]):
                in_force = _winners_in_force(store.db, row[0], row[1])
                for winner in winners[row[0]]:
                    winner["in_force"] = winner["variant"] in in_force.get(winner["split"], ())
    return [{"id": row[0], "version": row[1], "state": row[2], "updated_at": row[3], "active": row[4],
             "waiting": row[5], "pending": row[6], "next_wake_at": row[7], "failures": row[8],
             "winners": winners.get(row[0], []), "held": held.get(row[0], 0)} for row in rows]
