from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mauto.config import BUILTIN_EVENTS, BUILTIN_FIELDS
from mauto.store import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS = {**BUILTIN_FIELDS, "first_name": "string", "birthday": "date", "last_order_at": "datetime",
          "tier": {"enum": ["bronze", "gold"]}}
CATALOGUE = {**BUILTIN_EVENTS, "order_placed": {"total": "number"}, "signed_up": {"source": "string"}}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, moment: datetime = NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    with Store(tmp_path / "mauto.db", clock, create=True, timeout=0.2) as opened:
        yield opened


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
