"""The project as it is at a git ref, for `mauto diff` and `mauto simulate --base`.

`git archive` writes the project's folder as committed at the ref into a temporary folder, which is made
read-only and removed when the caller is done; nothing of the checkout (its index, working tree or HEAD) is
touched, and the working tree's own files are never read for the ref's side. A ref comes from the user: it is
passed to git as one argument of its own, never to a shell, and one starting with `-` is refused (git would read
it as an option).
"""
from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mauto.config import Project, load_project
from mauto.errors import UsageError, printable

WORKING_TREE = "working tree"  # how the reports name the project as it is on disk


def _git(args: list[str], cwd: Path, ref: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError(f"{printable(ref)}: reading a git ref needs git, which is not installed") from None
    except OSError as error:
        raise UsageError(f"{printable(ref)}: cannot run git: {error.strerror}") from None


def check_ref(ref: str) -> None:
    """Refuse what cannot be a ref before git sees it: empty, an option (`-…`), control characters."""
    if not ref:
        raise UsageError("an empty git ref: name a commit, branch or tag")
    if ref.startswith("-"):
        raise UsageError(f"{printable(ref)}: a git ref cannot start with `-`")
    if printable(ref) != ref or "\x00" in ref:
        raise UsageError(f"{printable(ref)}: a git ref cannot hold control characters")


def repository(project: Project, ref: str) -> Path:
    """The top folder of the git checkout holding the project, or UsageError naming `ref`."""
    found = _git(["rev-parse", "--show-toplevel"], project.root, ref)
    if found.returncode != 0:
        raise UsageError(f"{printable(ref)}: {project.display(project.root)} is not in a git checkout")
    return Path(os.fsdecode(found.stdout.rstrip(b"\n")))


def resolve(project: Project, ref: str) -> str:
    """The commit `ref` names (its full hash), or UsageError naming `ref`."""
    check_ref(ref)
    top = repository(project, ref)
    found = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], top, ref)
    if found.returncode != 0:
        raise UsageError(f"{printable(ref)}: no such commit, branch or tag in {top}")
    return found.stdout.decode("ascii").strip()


def make_read_only(folder: Path) -> None:
    """Files r--, folders r-x: what was committed is looked at, never written to."""
    for here, folders, files in os.walk(folder, topdown=False):
        for name in files:
            path = Path(here) / name
            if not path.is_symlink():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        for name in folders:
            path = Path(here) / name
            if not path.is_symlink():
                path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def make_writable(folder: Path) -> None:
    """Undo `make_read_only`, so that the temporary folder can be removed."""
    for here, folders, _files in os.walk(folder):
        for name in folders:
            path = Path(here) / name
            if not path.is_symlink():
                path.chmod(stat.S_IRWXU)
    folder.chmod(stat.S_IRWXU)


def _extract(top: Path, tree: str, into: Path, ref: str) -> None:
    """`git archive <tree>` unpacked into `into` (a stream: the archive is never held whole in memory).

    The tar comes from git, but its content from whoever wrote the commit: the `data` filter refuses
    absolute paths, `..` and links that point out of `into`."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: git may write to it while we read the tar
        try:
            process = subprocess.Popen(["git", "archive", "--format=tar", tree], cwd=top, stdout=subprocess.PIPE,
                                       stderr=errors)
        except OSError as error:
            raise UsageError(f"{printable(ref)}: cannot run git: {error.strerror}") from None
        assert process.stdout is not None
        try:
            with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                archive.extractall(into, filter="data")
        except (tarfile.TarError, OSError) as error:
            process.kill()
            raise UsageError(f"{printable(ref)}: cannot unpack the project from git: {error}") from None
        finally:
            process.stdout.close()
            status = process.wait()
        if status != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
            raise UsageError(f"{printable(ref)}: git archive failed: {printable(message)}")


@contextmanager
def project_at(project: Project, ref: str | None) -> Iterator[Project]:
    """The project as committed at `ref` (None: `project` itself, the working tree as it is), loaded from a
    read-only temporary folder that is removed when the block ends.

    The folder holds the project's folder only (the one holding its mauto.yaml), at the same place relative
    to it: `workflows/`, `templates/`, `samples/`. Paths in the loaded project are shown relative to that
    folder (`workflows/welcome.yaml`). UsageError, naming `ref`, when the project is not in a git checkout,
    when `ref` names no commit, or when the project's file is not in it.
    """
    if ref is None:
        yield project
        return
    commit = resolve(project, ref)
    top = repository(project, ref)
    try:
        relative = project.root.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:  # pragma: no cover - `top` is found from the project's own folder
        raise UsageError(f"{printable(ref)}: {project.root} is outside the git checkout {top}") from None
    inside = "" if relative == "." else relative + "/"
    project_file = inside + project.path.name
    if _git(["cat-file", "-e", f"{commit}:{project_file}"], top, ref).returncode != 0:
        raise UsageError(f"{printable(ref)}: there is no {project_file} in {printable(ref)} (commit {commit[:12]})")
    with tempfile.TemporaryDirectory(prefix="mauto-ref-") as folder:
        root = Path(folder) / "project"
        root.mkdir()
        try:
            _extract(top, f"{commit}:{inside}", root, ref)
            make_read_only(root)
            yield load_project(root / project.path.name, display_root=root)
        finally:
            make_writable(root)
