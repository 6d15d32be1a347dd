"""A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` from the machine's server binaries, in
a temporary folder, listening on 127.0.0.1 and a Unix socket in that folder, stopped (and removed) at the end.

The binaries are looked for on PATH, then under Debian's /usr/lib/postgresql/<major>/bin (the newest first).
Without them the PostgreSQL tests are skipped on a laptop, and fail in CI (`CI=true`): a missing server there
must never look like a pass. PostgreSQL refuses to run as root, so under root (CI) the cluster runs as the
`postgres` user that Debian's package creates, in a folder that user owns.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_names = itertools.count(1)


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cluster:
    """A running cluster: `url(name)` creates a fresh database and returns its postgresql:// URL."""

    folder: Path
    port: int
    user: str

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def url(self, prefix: str = "t") -> str:
        """A new, empty database on the cluster (one per test: tests never see each other's rows)."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)


def _run(command: list[str], as_user: str | None) -> None:
    if as_user is not None:
        command = ["runuser", "-u", as_user, "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """Start a cluster (initdb, pg_ctl start), yield it, stop it and remove its folder."""
    folder_bin = binaries()
    if folder_bin is None:
        message = ("PostgreSQL's server binaries (initdb, pg_ctl) are not on this machine: install Debian's "
                   "postgresql package (.ci/run does)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    as_user = None
    folder = Path(tempfile.mkdtemp(prefix="mauto-pg-"))
    if os.geteuid() == 0:
        as_user = "postgres"
        entry = pwd.getpwnam(as_user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    port = _free_port()
    try:
        _run([str(folder_bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync"], as_user)
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
                   "-c fsync=off -c max_connections=200 -c shared_buffers=64MB")
        _run([str(folder_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w",
              "-t", "60", "start"], as_user)
        try:
            yield Cluster(folder, port, "postgres")
        finally:
            with contextlib.suppress(Exception):
                _run([str(folder_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_user)
    except subprocess.CalledProcessError as error:
        pytest.fail(f"could not start PostgreSQL: {error.stderr.decode(errors='replace')}")
    finally:
        for _ in range(3):
            try:
                shutil.rmtree(folder)
                break
            except OSError:
                time.sleep(0.2)
