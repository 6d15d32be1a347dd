"""The SQL of releases: deployed workflow versions, the version each workflow runs, and the enrollments a
deploy or a rollback moves or stops. What to deploy, and what happens to contacts in flight, is decided
above the store (mauto/deploy.py); these functions only read and write the rows, inside the caller's
transaction (or snapshot) on `db`. See docs/store.md, "Deployments".
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

IN_FLIGHT = ("active", "waiting", "pending")  # enrollment states of contacts still inside
_STATES = ",".join("?" * len(IN_FLIGHT))

Db = Any  # a sqlite_utils Database (Store.db, or the one Store.transaction() yields)


# --- reading -------------------------------------------------------------------------------------


def workflows(db: Db) -> dict[str, tuple[int, str]]:
    """{workflow id: (current version, state)} for every workflow ever deployed (removed ones too)."""
    return {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, current_version, state FROM workflows")}


def workflow(db: Db, workflow_id: str) -> tuple[int, str] | None:
    """(current version, state) of one workflow, or None when it was never deployed."""
    row = db.execute("SELECT current_version, state FROM workflows WHERE id = ?", [workflow_id]).fetchone()
    return None if row is None else (row[0], row[1])


def versions(db: Db, workflow_id: str | None = None) -> dict[tuple[str, int], tuple[str, str]]:
    """{(workflow id, version): (content hash, content as JSON text)} of every deployed version, or of one
    workflow's, in version order."""
    if workflow_id is None:
        rows = db.execute("SELECT id, version, content_hash, data FROM workflow_versions")
    else:
        rows = db.execute("SELECT id, version, content_hash, data FROM workflow_versions WHERE id = ? "
                          "ORDER BY version", [workflow_id])
    return {(row[0], row[1]): (row[2], row[3]) for row in rows}


def in_flight(db: Db, workflow_id: str, other_than: int | None) -> list[tuple[int, str | None, int]]:
    """(version, position, count) of the enrollments still inside `workflow_id` on any version but
    `other_than` (None: all versions), by version then position."""
    return db.execute(
        f"SELECT version, position, count(*) FROM enrollments WHERE workflow = ? AND state IN ({_STATES}) "
        "AND version IS NOT ? GROUP BY version, position ORDER BY version, position",
        [workflow_id, *IN_FLIGHT, other_than]).fetchall()


def status(db: Db) -> list[tuple[Any, ...]]:
    """Per workflow, by id: (id, current version, state, updated_at, active, waiting, pending, next wake-up
    of those inside, failed)."""
    return db.execute("""
        SELECT w.id, w.current_version, w.state, w.updated_at,
               count(e.id) FILTER (WHERE e.state = 'active'),
               count(e.id) FILTER (WHERE e.state = 'waiting'),
               count(e.id) FILTER (WHERE e.state = 'pending'),
               min(e.wake_at) FILTER (WHERE e.state IN ('active', 'waiting', 'pending')),
               count(e.id) FILTER (WHERE e.state = 'failed')
        FROM workflows w LEFT JOIN enrollments e ON e.workflow = w.id
        GROUP BY w.id ORDER BY w.id""").fetchall()


# --- writing -------------------------------------------------------------------------------------


def insert_version(db: Db, workflow_id: str, version: int, content_hash: str, source: str | None, data: Any,
                   at: str, git_commit: str | None, git_author: str | None) -> None:
    """Keep a deployed version whole (immutable from then on: the schema's triggers refuse changes)."""
    db.execute("INSERT INTO workflow_versions (id, version, content_hash, source, data, deployed_at, git_commit, "
               "git_author) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               [workflow_id, version, content_hash, source, json.dumps(data, ensure_ascii=False, sort_keys=True),
                at, git_commit, git_author])


def start(db: Db, workflow_id: str, version: int, at: str) -> None:
    """Run `version` of a new workflow, or of one that comes back after a removal, from `at`.

    `enrolling_since` is `at`: the daemon enrolls from events after this moment only (a workflow that comes
    back starts afresh: what happened while it was gone is history to it)."""
    db.execute("INSERT INTO workflows (id, current_version, state, updated_at, enrolling_since) "
               "VALUES (?, ?, 'active', ?, ?) "
               "ON CONFLICT (id) DO UPDATE SET current_version = excluded.current_version, "
               "state = 'active', updated_at = excluded.updated_at, "
               "enrolling_since = excluded.enrolling_since", [workflow_id, version, at, at])


def set_version(db: Db, workflow_id: str, version: int, at: str) -> None:
    """Make `version` the one new contacts enter (a deploy of a changed file, or a rollback)."""
    db.execute("UPDATE workflows SET current_version = ?, updated_at = ? WHERE id = ?", [version, at, workflow_id])


def set_state(db: Db, workflow_id: str, state: str, at: str) -> None:
    """active, paused or removed."""
    db.execute("UPDATE workflows SET state = ?, updated_at = ? WHERE id = ?", [state, at, workflow_id])


def _inside(db: Db, workflow_id: str, version: int, position: str | None) -> list[tuple[str, str | None]]:
    return db.execute(f"SELECT id, data FROM enrollments WHERE workflow = ? AND version = ? AND position IS ? "
                      f"AND state IN ({_STATES})", [workflow_id, version, position, *IN_FLIGHT]).fetchall()


def move(db: Db, workflow_id: str, version: int, position: str | None, to_version: int,
         to_position: str | None) -> int:
    """Move the enrollments inside `workflow_id` at (`version`, `position`) to (`to_version`, `to_position`);
    how many moved."""
    rows = _inside(db, workflow_id, version, position)
    for enrollment, data in rows:
        record = json.loads(data or "{}")
        record.update(version=to_version, position=to_position)
        db.execute("UPDATE enrollments SET version = ?, position = ?, data = ? WHERE id = ?",
                   [to_version, to_position, json.dumps(record), enrollment])
    return len(rows)


def stop(db: Db, workflow_id: str, version: int, position: str | None, at: str, reason: str) -> int:
    """End the enrollments inside `workflow_id` at (`version`, `position`): state `exited` at `at`, with
    `reason`; how many stopped."""
    rows = _inside(db, workflow_id, version, position)
    for enrollment, data in rows:
        record = json.loads(data or "{}")
        record.update(state="exited", ended_at=at, reason=reason, wake_at=None)
        db.execute("UPDATE enrollments SET state = 'exited', ended_at = ?, reason = ?, wake_at = NULL, "
                   "data = ? WHERE id = ?", [at, reason, json.dumps(record), enrollment])
    return len(rows)


def winners(db: Any) -> dict[str, list[dict[str, Any]]]:
    """The winners splits picked (`winner:`), per workflow, in the order decided."""
    found: dict[str, list[dict[str, Any]]] = {}
    for workflow, split, variant, decided_at, p_value in db.execute(
            "SELECT workflow, split, variant, decided_at, p_value FROM split_winners ORDER BY decided_at, split"):
        found.setdefault(workflow, []).append({
            "split": split, "variant": variant,
            "decided_at": datetime.fromisoformat(decided_at).astimezone(UTC).isoformat(), "p_value": p_value})
    return found


def winner_variants(db: Any) -> dict[tuple[str, str], str]:
    """The winners decided so far: (workflow, split id) -> variant."""
    return {(workflow, split): variant for workflow, split, variant in
            db.execute("SELECT workflow, split, variant FROM split_winners")}


def record_winner(db: Any, workflow: str, split: str, variant: str, version: int, decided_at: str, p_value: float,
                  detail: str) -> None:
    db.execute("INSERT INTO split_winners (workflow, split, variant, version, decided_at, p_value, detail) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", [workflow, split, variant, version, decided_at, p_value, detail])


# --- releases: every file a message is made from, content-addressed (schema version 8) ------------------------


def current_release(db: Any) -> dict[str, Any] | None:
    """The release made current last (the highest id), or None: none deployed yet."""
    row = db.execute("SELECT id, hash, created_at, git_commit, git_dirty, deployed_by, note FROM releases "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return dict(zip(("id", "hash", "created_at", "git_commit", "git_dirty", "deployed_by", "note"), row,
                    strict=True))


def release_files(db: Any, release: int) -> dict[str, str]:
    """A release's files: path -> the SHA-256 of its text."""
    return dict(db.execute("SELECT path, hash FROM release_files WHERE release = ?", [release]).fetchall())


def newest_files(db: Any) -> dict[str, str]:
    """Every path any release had, with its text in the latest release that had it (path -> hash)."""
    return dict(db.execute(
        "SELECT path, hash FROM release_files f WHERE release = (SELECT max(release) FROM release_files g "
        "WHERE g.path = f.path)").fetchall())


def blobs(db: Any, hashes: list[str]) -> dict[str, str]:
    """The texts of the given hashes."""
    found: dict[str, str] = {}
    for start in range(0, len(hashes), 500):
        part = hashes[start:start + 500]
        found.update(db.execute(f"SELECT hash, text FROM release_blobs WHERE hash IN ({','.join('?' * len(part))})",
                                part).fetchall())
    return found


def insert_release(db: Any, content_hash: str, files: dict[str, tuple[str, str]], at: str, git_commit: str | None,
                   git_dirty: bool | None, deployed_by: str | None, note: str) -> int:
    """A new release of `files` (path -> (hash, text)); the texts are stored once each, whatever the release."""
    db.conn.executemany("INSERT OR IGNORE INTO release_blobs (hash, text) VALUES (?, ?)",
                        [(digest, text) for digest, text in files.values()])
    cursor = db.execute("INSERT INTO releases (hash, created_at, git_commit, git_dirty, deployed_by, note) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [content_hash, at, git_commit, None if git_dirty is None else int(git_dirty), deployed_by,
                         note])
    release = int(cursor.lastrowid)
    db.conn.executemany("INSERT INTO release_files (release, path, hash) VALUES (?, ?, ?)",
                        [(release, path, digest) for path, (digest, _) in sorted(files.items())])
    return release


def releases_with(db: Any, path: str, digest: str) -> list[int]:
    """The releases whose file `path` had this content, oldest first."""
    return [row[0] for row in db.execute("SELECT release FROM release_files WHERE path = ? AND hash = ? "
                                         "ORDER BY release", [path, digest])]


def file_texts(db: Any, path: str) -> list[tuple[int, str]]:
    """(release, text) of one file in every release that has it, the latest first."""
    return [(release, text) for release, text in db.execute(
        "SELECT f.release, b.text FROM release_files f JOIN release_blobs b ON b.hash = f.hash WHERE f.path = ? "
        "ORDER BY f.release DESC", [path])]
