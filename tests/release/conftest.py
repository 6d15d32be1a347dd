from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def cache_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PostgreSQL store keeps its rendered releases under the user's cache (`PgStore.local_folder`): in
    tmp_path here, so that the tests write nothing outside it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
