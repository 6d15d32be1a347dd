"""Shared test options and fixtures.

`pytest --update-golden` rewrites the golden files under tests/golden/ from
the current output instead of comparing with them. Without the flag a
difference is a failure: golden files are never rewritten silently.
"""
from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.daemon.harness import T0, Daemon
from tests.pg import Cluster
from tests.servers import HttpServer, SmtpServer

# In CI (CI=true) hypothesis draws the same examples every run: a submission lands or not on its own code, never
# on the luck of a draw. On a laptop it explores new examples each run, which is where new bugs are found.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite tests/golden/* from the current output instead of comparing.")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis keeps caches (unicode tables, constants found in the source) in ./.hypothesis, even with
    its example database off, and starts writing them while test modules are imported: point it at
    pytest's temporary folder first, so the tests write nothing into the repository."""
    config.addinivalue_line("markers", "both_stores: the module's tests that take `store_kind` run on SQLite and "
                                       "on PostgreSQL (as the folders in BOTH_STORES do)")
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    # And what mauto keeps in the user's cache (a PostgreSQL store's rendered releases, the log of an internal
    # error): in pytest's temporary folder too, for the tests' own processes and the `mauto` they start.
    os.environ["XDG_CACHE_HOME"] = str(factory.mktemp("cache", numbered=True))
    try:
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:
        return
    set_hypothesis_home_dir(factory.mktemp("hypothesis", numbered=True))


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def dedent(source: str) -> str:
    """A file's text written indented in a test: dedented, without the first newline."""
    return textwrap.dedent(source).lstrip("\n")


@pytest.fixture
def write_files() -> Callable[[Path, dict[str, str | bytes]], Path]:
    """write_files(root, {relative name: text or bytes}) writes them under root and returns root."""

    def write(root: Path, files: dict[str, str | bytes]) -> Path:
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(dedent(content), encoding="utf-8")
        return root

    return write


@pytest.fixture
def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No colour codes in captured output, whatever the developer's environment says; and mauto's
    log file (written on an internal error) inside tmp_path rather than in ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("COLUMNS", "200")


# The daemon's harness (tests/daemon/harness.py) is shared by tests/daemon and the audit tests beside this file,
# hence its fixtures here rather than in tests/daemon/conftest.py.


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the session (tests/pg.py); each test takes a database of its own."""
    from tests.pg import cluster

    with cluster() as running:
        yield running


# The folders whose tests that take `store_kind` (the daemon's harness, tests/stats' stores, tests/store's
# `store_location`) run on PostgreSQL too. A module elsewhere opts in with `pytestmark = pytest.mark.both_stores`
# (the audits beside this file); tests/serve opts in per module (`both_stores`).
BOTH_STORES = ("daemon", "driver", "stats", "release", "store")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of the daemon's harness runs on both stores (`store_kind`), but for those marked
    `sqlite_only(why)`: they damage or inspect the SQLite file by hand (a row SQLite cannot decode, a trigger in
    SQLite's syntax, the flock beside the file), which has no PostgreSQL counterpart to test."""
    given = any("store_kind" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize"))
    if "store_kind" in metafunc.fixturenames and not given:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        folder = Path(str(metafunc.definition.fspath)).parent.name
        opted = folder in BOTH_STORES or metafunc.definition.get_closest_marker("both_stores") is not None
        # scope="module": a module's fixture that fills one store for all its tests (tests/stats) takes it too
        metafunc.parametrize("store_kind", ["sqlite", "postgresql"] if opted and not only else ["sqlite"],
                             scope="module")


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store a daemon test runs on: `sqlite` or `postgresql` (see pytest_generate_tests)."""
    return str(request.param)


def _store_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    if kind != "postgresql":
        return None
    return str(request.getfixturevalue("pg_cluster").url())


@pytest.fixture
def daemon(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """The harness after a first, empty tick at T0 - 1h, with the CRM webhook answering 200."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a PostgreSQL store's releases go there
    with SmtpServer() as smtp, HttpServer() as http:
        http.respond("/crm", 200, {"id": "crm-1"})
        running = Daemon(tmp_path, smtp, http, _store_url(store_kind, request))
        running.tick(T0 - timedelta(hours=1))
        yield running
        running.store.close()


@pytest.fixture
def fresh_daemon(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """The harness as set up, before any tick, and with no answer set for the CRM webhook: for tests that run
    the first tick themselves (through the CLI)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a PostgreSQL store's releases go there
    with SmtpServer() as smtp, HttpServer() as http:
        running = Daemon(tmp_path, smtp, http, _store_url(store_kind, request))
        yield running
        running.store.close()
