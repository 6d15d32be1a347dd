"""Reading workflows as they were at a git ref, for `mauto lint --base`."""
from __future__ import annotations

import subprocess
from pathlib import Path

from mauto.errors import UsageError, YamlError
from mauto.workflow.loader import parse
from mauto.workflow.model import content_hash


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("--base needs git, which is not installed") from None


def check_ref(root: Path, ref: str) -> None:
    """Raise UsageError unless `root` is in a git checkout where `ref` names a commit."""
    inside = _git(["rev-parse", "--show-toplevel"], root)
    if inside.returncode != 0:
        raise UsageError(f"--base {ref}: {root} is not inside a git repository")
    found = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    if found.returncode != 0:
        raise UsageError(f"--base {ref}: no such commit, branch or tag")


def base_versions(ctx) -> dict[str, tuple[int, str, str]]:
    """{absolute path: (version, content hash, id)} of each current workflow file as it was at the base ref."""
    root = ctx.project.root
    top = Path(_git(["rev-parse", "--show-toplevel"], root).stdout.decode().strip())
    result = {}
    for file in ctx.files:
        relative = file.path.resolve().relative_to(top.resolve()).as_posix()
        shown = _git(["show", f"{ctx.base}:{relative}"], root)
        if shown.returncode != 0:
            continue  # a new file
        try:
            document = parse(shown.stdout.decode("utf-8"), file.display)
        except (YamlError, UnicodeDecodeError):
            continue
        data = document.data
        if isinstance(data, dict) and isinstance(data.get("version"), int) and isinstance(data.get("id"), str):
            result[str(file.path.resolve())] = (data["version"], content_hash(data), data["id"])
    return result
