"""Fixtures for the channel tests: real servers on 127.0.0.1 (tests/servers.py), a handoff callback, a project."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mauto.config import Project, load_project
from tests.servers import HttpServer, SmtpServer

from .helpers import Handoffs


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    with HttpServer() as server:
        yield server


@pytest.fixture
def handoff() -> Handoffs:
    return Handoffs()


@pytest.fixture
def project_at(tmp_path: Path) -> Callable[[str], Project]:
    """project_at(yaml) writes mauto.yaml in tmp_path and loads it."""

    def make(text: str) -> Project:
        path = tmp_path / "mauto.yaml"
        path.write_text(text, encoding="utf-8")
        return load_project(path, display_root=tmp_path)

    return make
