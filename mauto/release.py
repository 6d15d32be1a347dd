"""Whole releases: what a deploy makes current besides the workflow versions, so that what runs is what was
reviewed.

A release holds `mauto.yaml` (the settings that shape a message: senders, limits, unsubscribe and tracking
settings, segments, the event catalogue), every file under `templates/` (layouts and partials included), and
`workflows.json` (each workflow's current version and state): each file content-addressed (SHA-256), the
release addressed by the hash of its files, immutable in the store (`mauto.store.releases`). The daemon renders
only from the current release, never from files on disk: `release_project` writes the release out once into a
folder beside the store (named by its hash, never changed after) and loads the project from there.

What an enrollment that entered under an older release renders: the current release's templates (a typo fix
reaches everyone on the next send). A template the current release no longer has (a step of a version still in
flight uses it) comes from the latest release that had it.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mauto.config import Project, load_project
from mauto.errors import MautoError
from mauto.store import releases
from mauto.store.sqlite import Store

SETTINGS = "mauto.yaml"
WORKFLOWS = "workflows.json"
DIFF_LINES = 12  # of a template's diff in a plan; the whole diff is `mauto diff`'s


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def project_files(project: Project) -> dict[str, str]:
    """The project's files a release holds, as they are on disk: mauto.yaml and every template."""
    files = {SETTINGS: Path(project.path).read_text(encoding="utf-8")}
    folder = project.templates_dir
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                try:
                    files["templates/" + path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue  # not a template (an image beside them): messages cannot use it
    return files


def workflows_file(deployed: dict[str, tuple[int, str]]) -> str:
    return json.dumps({name: {"version": version, "state": state}
                       for name, (version, state) in sorted(deployed.items())}, sort_keys=True, indent=1) + "\n"


def content(files: dict[str, str]) -> tuple[str, dict[str, tuple[str, str]]]:
    """(the release's hash, path -> (hash, text))."""
    hashed = {path: (digest(text), text) for path, text in sorted(files.items())}
    whole = hashlib.sha256("".join(f"{path}\0{pair[0]}\n" for path, pair in hashed.items()).encode()).hexdigest()
    return whole, hashed


# --- what a plan says ------------------------------------------------------------------------------------------


@dataclass
class TemplateChange:
    path: str
    kind: str  # added | changed | removed
    diff: list[str] = field(default_factory=list)
    used_by: list[str] = field(default_factory=list)  # "workflow: step"
    waiting: int = 0  # contacts in flight in the workflows that use it

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.kind, "diff": self.diff, "used_by": self.used_by,
                "waiting": self.waiting}


@dataclass
class ReleaseChange:
    """What a deploy would change in the release: its templates and settings (the workflows are the plan's)."""

    current: int | None  # the current release's id (None: none yet)
    templates: list[TemplateChange] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)  # the top-level keys of mauto.yaml that changed
    first: bool = False  # no release yet: this deploy makes the first

    @property
    def changed(self) -> bool:
        return self.first or bool(self.templates or self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "first": self.first, "settings": self.settings,
                "templates": [change.to_dict() for change in self.templates]}


def compare(project: Project, store: Store, uses: Callable[[], dict[str, list[tuple[str, str]]]]) -> ReleaseChange:
    """The project's templates and settings against the current release's. `uses()`: template path -> the
    (workflow, step) that use it (in the project's workflows), asked only when a template changed (it reads
    every template)."""
    db = store.db
    current = releases.current_release(db)
    files = project_files(project)
    if current is None:
        return ReleaseChange(None, first=True)
    stored = releases.release_files(db, current["id"])
    texts = releases.blobs(db, list(stored.values()))
    change = ReleaseChange(current["id"])
    users_of: dict[str, list[tuple[str, str]]] | None = None
    for path in sorted(set(files) | set(stored)):
        if path in (SETTINGS, WORKFLOWS) or not path.startswith("templates/"):
            continue
        old = texts.get(stored[path]) if path in stored else None
        new = files.get(path)
        if old == new:
            continue
        kind = "added" if old is None else "removed" if new is None else "changed"
        lines = list(difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(), "deployed", "files",
                                          lineterm="", n=1))[2:]
        if users_of is None:
            users_of = uses()
        users = users_of.get(path, [])
        waiting = sum(count for name in {workflow for workflow, _ in users}
                      for _, _, count in releases.in_flight(db, name, None))
        change.templates.append(TemplateChange(path, kind, lines[:DIFF_LINES] + (
            [f"… {len(lines) - DIFF_LINES} more lines (mauto diff)"] if len(lines) > DIFF_LINES else []),
            [f"{workflow}: {step}" for workflow, step in users], waiting))
    old_settings = texts.get(stored.get(SETTINGS, ""), "")
    if old_settings != files[SETTINGS]:
        change.settings = _changed_keys(old_settings, files[SETTINGS])
    return change


def _changed_keys(old: str, new: str) -> list[str]:
    try:
        before, after = yaml.safe_load(old) or {}, yaml.safe_load(new) or {}
    except yaml.YAMLError:
        return ["mauto.yaml"]
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ["mauto.yaml"]
    keys = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    return keys or ["mauto.yaml (comments or layout)"]


# --- writing one ----------------------------------------------------------------------------------------------


def record(db: Any, files: dict[str, str], at: str, git_commit: str | None, git_dirty: bool | None,
           deployed_by: str | None, note: str) -> int | None:
    """A new release of `files` when they differ from the current release's; its id, or None (unchanged)."""
    whole, hashed = content(files)
    current = releases.current_release(db)
    if current is not None and current["hash"] == whole:
        return None
    return releases.insert_release(db, whole, hashed, at, git_commit, git_dirty, deployed_by, note)


def files_of(db: Any, release: int) -> dict[str, str]:
    stored = releases.release_files(db, release)
    texts = releases.blobs(db, list(stored.values()))
    return {path: texts[digest_] for path, digest_ in stored.items()}


def sent_by(templates: Any, workflow: Any) -> Iterator[tuple[str, str]]:
    """(step label, template file `templates/...`) for each template a workflow's sends use in `templates` (a
    TemplateSet), layouts and partials included."""
    labels = workflow.step_labels()
    for step in workflow.iter_steps():
        if step.kind in ("email", "sms") and isinstance(step.value, str):
            label = labels[".".join(str(part) for part in step.path)]
            for info in templates.lineage(templates.file_name(step.kind, step.value)):
                yield label, "templates/" + info.name


def templates_sent(files: dict[str, str], workflow: Any) -> set[str]:
    """The template files (`templates/...`) a workflow's sends use among `files`, layouts and partials included."""
    from mauto.templates import TemplateSet

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for path, text in files.items():
            if path.startswith("templates/"):
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        return {path for _, path in sent_by(TemplateSet(root / "templates", root), workflow)}


def release_for(db: Any, workflow: str, version: int) -> int | None:
    """The latest release in which `workflow` ran `version` (its files are what that version was sent with): read
    from each release's `workflows.json` alone."""
    for release, text in releases.file_texts(db, WORKFLOWS):
        try:
            deployed = json.loads(text)
        except ValueError:
            continue
        if deployed.get(workflow, {}).get("version") == version:
            return release
    return None


# --- rendering from one ---------------------------------------------------------------------------------------


_LOADED: dict[tuple[str, str], Project] = {}  # (store, release hash) -> the project


def release_project(project: Project, store: Store) -> tuple[Project, int | None]:
    """The project as the current release has it (its mauto.yaml and templates, written once into a folder
    beside the store), and the release's id; the project on disk and None when no release was deployed yet (a
    store made before schema version 8, until its next deploy). The folder is checked against the store's
    hashes when first read by a process: a file edited there (or left half-copied) is written again, never sent."""
    db = store.db
    current = releases.current_release(db)
    if current is None:
        return project, None
    key = (str(store.path), current["hash"])
    cached = _LOADED.get(key)
    if cached is not None:
        return cached, current["id"]
    folder = store.local_folder("releases") / current["hash"][:20]
    wanted = _wanted(db, current["id"])
    if not _intact(folder, wanted):
        try:
            _write_out(db, wanted, folder)
        except OSError as error:
            raise MautoError(f"release #{current['id']} cannot be written out to {folder}: "
                             f"{error.strerror or error}") from None
    try:
        loaded = load_project(folder / SETTINGS, lenient=True)
    except MautoError as error:
        raise MautoError(f"release #{current['id']} does not load: {error}") from None
    _LOADED[key] = loaded
    return loaded, current["id"]


def _wanted(db: Any, release: int) -> dict[str, str]:
    """The files a release is read from (path -> hash): its own, and the templates only older releases have."""
    newest = releases.newest_files(db)
    return {**{path: digest_ for path, digest_ in newest.items() if path.startswith("templates/")},
            **releases.release_files(db, release)}


def _intact(folder: Path, wanted: dict[str, str]) -> bool:
    """Whether `folder` holds exactly these files with these contents (and nothing else a template could use)."""
    if not (folder / SETTINGS).is_file():
        return False
    present = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    if present != set(wanted):
        return False
    try:
        return all(digest((folder / path).read_text(encoding="utf-8")) == hashed for path, hashed in wanted.items())
    except (OSError, UnicodeDecodeError):
        return False


def _write_out(db: Any, wanted: dict[str, str], folder: Path) -> None:
    """The files into `folder`, whole or not at all (written beside it, then put in its place), with the
    permissions the umask gives (a daemon under another user must read what a first `run --once` wrote)."""
    texts = releases.blobs(db, sorted(set(wanted.values())))
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(temporary, 0o777 & ~mask)
        for path, digest_ in wanted.items():
            target = temporary / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(texts[digest_], encoding="utf-8")
        if folder.exists():  # a copy that was edited or left half-written: replaced whole
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(temporary, folder)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not _intact(folder, wanted):  # another process wrote it first: the same content
            raise
