"""`mauto report --out report.html`: every deployed workflow's figures (`mauto.stats.query`, the activity per day
included) drawn by `mauto.stats.html` into one self-contained file, written whole or not at all."""
from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto.errors import UsageError
from mauto.stats import query
from mauto.stats.html import render_report
from mauto.store import stats as sql
from mauto.store.sqlite import Store
from mauto.workflow.model import Workflow

EVERYTHING = query.Window()  # no bound: all that was recorded


def gather(store: Store, now: datetime, window: query.Window = EVERYTHING,
           only: list[str] | None = None) -> tuple[list[dict[str, Any]], dict[str, Workflow | None]]:
    """Each deployed workflow's figures (with `daily`), and the version each one runs (for its diagram)."""
    db = store.db
    deployed = sql.workflow_ids(db, removed=False)
    for name in only or []:
        if name not in deployed:
            query.workflow_stats(store, name, now)  # raises the error that lists what is deployed
    figures, drawn = [], {}
    for name in dict.fromkeys(only or deployed):  # each once, in the order first named
        stats = query.workflow_stats(store, name, now, window, daily=True)
        figures.append(stats)
        drawn[name] = query.load_versions(db, name).get(stats["current_version"])
    return figures, drawn


def build_report(project: Any, store: Store, now: datetime, out: Path, window: query.Window = EVERYTHING,
                 only: list[str] | None = None, title: str | None = None) -> int:
    """Write the report to `out` (through a temporary file in its folder, renamed into place; `-`: standard
    output); its size."""
    with store.guard():
        figures, drawn = gather(store, now, window, only)
    page = render_report(figures, drawn, now, title or f"mauto report: {project.root.name}")
    data = page.encode("utf-8")
    if str(out) == "-":  # to standard output, for a pipe
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return len(data)
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--out {out}: no such folder {folder}")
    try:
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{out.name[:100]}.", suffix=".part")
    except OSError as error:
        raise UsageError(f"--out {out}: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # as a file the user writes (mkstemp makes it private)
        os.replace(temporary, out)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise UsageError(f"--out {out}: {error.strerror or error}") from None
    return len(data)
