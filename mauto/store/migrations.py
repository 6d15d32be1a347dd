"""Numbered forward migrations; the schema version lives in `PRAGMA user_version`.

In sqlite-utils' migrations style (`sqlite_utils/migrations.py`): each migration is a
function registered with a decorator and applied once, inside a transaction together
with the record that it ran. The record here is `PRAGMA user_version`, which SQLite
keeps in the file's header and rolls back with the transaction, so a migration that
fails leaves the file exactly as it was. Never edit a released migration: add the next
number.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: dict[int, Migration] = {}


def migration(version: int) -> Callable[[Migration], Migration]:
    """Register `function` as the migration that takes the schema to `version`."""

    def register(function: Migration) -> Migration:
        if version in MIGRATIONS:
            raise ValueError(f"migration {version} is registered twice")
        MIGRATIONS[version] = function
        return function

    return register


def latest() -> int:
    """The schema version this mauto writes."""
    return max(MIGRATIONS, default=0)


def pending(current: int) -> list[int]:
    return sorted(version for version in MIGRATIONS if version > current)


@migration(1)
def contacts_events_coupons_suppressions(db: Database) -> None:
    # Contacts: the columns the store itself searches or the sender checks (email, phone,
    # consents, times); every other field, built-in or declared in mauto.yaml, in `fields`
    # as JSON, so that declaring a field in mauto.yaml needs no migration.
    db.execute("""
        CREATE TABLE contacts (
            id TEXT PRIMARY KEY,
            email TEXT,
            phone TEXT,
            email_consent INTEGER NOT NULL DEFAULT 0,
            sms_consent INTEGER NOT NULL DEFAULT 0,
            fields TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            erased_at TEXT
        )""")
    db.execute("CREATE INDEX contacts_email ON contacts (email)")
    # Events: `seq` never reused (AUTOINCREMENT), so the daemon can keep a cursor on it;
    # `id` is the sender's own id, unique when given, which makes ingestion idempotent.
    # Contact ids change only on erasure: ON UPDATE CASCADE carries the events along.
    db.execute("""
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT UNIQUE,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            name TEXT NOT NULL,
            at TEXT NOT NULL,
            properties TEXT NOT NULL DEFAULT '{}',
            received_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX events_contact_at ON events (contact, at)")
    db.execute("CREATE INDEX events_name_at ON events (name, at)")
    db.execute("""
        CREATE TABLE coupons (
            pool TEXT NOT NULL,
            code TEXT NOT NULL,
            assigned_to TEXT REFERENCES contacts (id) ON UPDATE CASCADE,
            assigned_at TEXT,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (pool, code)
        )""")
    db.execute("CREATE INDEX coupons_free ON coupons (pool, assigned_to)")
    # Suppressions hold no address, only the SHA-256 of its normalised form: an erased
    # contact's address can still be refused without being kept.
    db.execute("""
        CREATE TABLE suppressions (
            address_hash TEXT NOT NULL,
            channel TEXT NOT NULL,
            reason TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (address_hash, channel)
        )""")


@migration(2)
def workflow_versions_workflows_enrollments(db: Database) -> None:
    # Every deployed version, whole: the file as written (`source`), its parsed content
    # (`data`, JSON) and the hash of that content. Written once, never changed: the
    # triggers refuse any UPDATE or DELETE, so a version number always means one content.
    db.execute("""
        CREATE TABLE workflow_versions (
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            source TEXT NOT NULL,
            data TEXT NOT NULL,
            deployed_at TEXT NOT NULL,
            git_commit TEXT,
            git_author TEXT,
            PRIMARY KEY (id, version)
        )""")
    for action in ("UPDATE", "DELETE"):
        db.execute(f"""
            CREATE TRIGGER workflow_versions_no_{action.lower()} BEFORE {action} ON workflow_versions
            BEGIN SELECT RAISE(ABORT, 'a deployed workflow version is immutable'); END""")
    # What runs: one row per workflow id, pointing at its current version.
    db.execute("""
        CREATE TABLE workflows (
            id TEXT PRIMARY KEY,
            current_version INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'removed')),
            updated_at TEXT NOT NULL,
            FOREIGN KEY (id, current_version) REFERENCES workflow_versions (id, version)
        )""")
    # Contacts inside a workflow, pinned to the version they entered (the daemon writes
    # them; `data` is Enrollment.to_dict(), the columns are what the store searches).
    db.execute("""
        CREATE TABLE enrollments (
            id TEXT PRIMARY KEY,
            workflow TEXT NOT NULL,
            version INTEGER NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            state TEXT NOT NULL,
            position TEXT,
            wake_at TEXT,
            data TEXT NOT NULL DEFAULT '{}',
            entered_at TEXT NOT NULL,
            ended_at TEXT,
            reason TEXT
        )""")
    db.execute("CREATE INDEX enrollments_workflow_version_state ON enrollments (workflow, version, state)")
    db.execute("CREATE INDEX enrollments_wake_at ON enrollments (wake_at)")


@migration(3)
def daemon_tables(db: Database) -> None:
    """What the daemon needs: which events a tick has seen, the outbox, webhook calls, the step log, tasks,
    segment memberships, inactivity timers, and the runner's own small state."""
    # An event is processed once: the tick that handles it stamps it. The partial index keeps "what is new"
    # a short read however long the history grows.
    db.execute("ALTER TABLE events ADD COLUMN processed_at TEXT")
    db.execute("CREATE INDEX events_unprocessed ON events (at) WHERE processed_at IS NULL")
    # A workflow enrolls from events that happen after it was deployed, never from history.
    db.execute("ALTER TABLE workflows ADD COLUMN enrolling_since TEXT")
    db.execute("UPDATE workflows SET enrolling_since = updated_at")
    # The outbox. `key` is the idempotency key (enrollment, step, occurrence of the send) and `message_id` the
    # email's Message-ID made from it. `status` is always one of: pending (to send, or to retry at next_try_at),
    # sent, parked (a permanent refusal, or out of retries), unknown (the hand-off began and its answer was never
    # recorded: RFC 1047, a person decides), cancelled (not sent on purpose: consent withdrawn before the
    # hand-off, or dropped by a person). `handoff_at` is stamped, and committed, just before the point of no
    # return (SMTP DATA): a pending row that has it after a crash is unknown, never resent.
    db.execute("""
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            message_id TEXT NOT NULL,
            enrollment TEXT NOT NULL,
            workflow TEXT NOT NULL,
            version INTEGER NOT NULL,
            step TEXT NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            channel TEXT NOT NULL,
            template TEXT NOT NULL,
            marketing INTEGER NOT NULL,
            to_address TEXT,
            sender TEXT,
            subject TEXT,
            body BLOB NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'parked', 'unknown', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try_at TEXT,
            handoff_at TEXT,
            answer TEXT,
            provider_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT
        )""")
    db.execute("CREATE INDEX messages_due ON messages (next_try_at) WHERE status = 'pending'")
    db.execute("CREATE INDEX messages_status ON messages (status, id)")
    db.execute("CREATE INDEX messages_contact ON messages (contact, created_at)")
    # Webhook steps: the call is made outside any transaction (a slow endpoint must not hold the store), its
    # enrollment waits in `pending` until the answer is recorded.
    db.execute("""
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            enrollment TEXT NOT NULL REFERENCES enrollments (id) DEFERRABLE INITIALLY DEFERRED,
            request TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try_at TEXT NOT NULL,
            answer TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX calls_due ON calls (next_try_at) WHERE status = 'pending'")
    db.execute("""
        CREATE TABLE step_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            workflow TEXT NOT NULL,
            version INTEGER NOT NULL,
            step TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            channel TEXT,
            template TEXT,
            extra TEXT NOT NULL DEFAULT '{}'
        )""")
    db.execute("CREATE INDEX step_log_contact_at ON step_log (contact, at)")
    db.execute("CREATE INDEX step_log_workflow_kind ON step_log (workflow, kind)")
    db.execute("""
        CREATE TABLE tasks (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            workflow TEXT NOT NULL,
            step TEXT NOT NULL,
            title TEXT NOT NULL,
            assignee TEXT,
            notes TEXT,
            due_at TEXT,
            created_at TEXT NOT NULL,
            done_at TEXT
        )""")
    db.execute("""
        CREATE TABLE segment_members (
            workflow TEXT NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            since TEXT NOT NULL,
            PRIMARY KEY (workflow, contact)
        )""")
    db.execute("""
        CREATE TABLE timers (
            workflow TEXT NOT NULL,
            contact TEXT NOT NULL REFERENCES contacts (id) ON UPDATE CASCADE,
            last_at TEXT NOT NULL,
            due_at TEXT,
            PRIMARY KEY (workflow, contact)
        )""")
    db.execute("CREATE INDEX timers_due ON timers (due_at) WHERE due_at IS NOT NULL")
    db.execute("CREATE TABLE runner_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # The tick looks up a contact's enrollments (in flight, and every one for reentry) for each item it handles.
    db.execute("CREATE INDEX enrollments_contact_workflow ON enrollments (contact, workflow)")


@migration(4)
def failures_and_unsubscribe_secret(db: Database) -> None:
    """The list of items ticks could not handle, and the store's own unsubscribe-signing key."""
    # What a tick could not handle (an event, a trigger, an enrollment, a call, a message), one row each, with
    # the reason: one bad item fails alone and is shown here (`mauto failures`), the tick goes on.
    db.execute("""
        CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            moment TEXT,
            kind TEXT NOT NULL CHECK (kind IN ('event', 'trigger', 'enrollment', 'call', 'message', 'workflow')),
            ref TEXT,
            contact TEXT,
            workflow TEXT,
            reason TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX failures_at ON failures (at)")
    db.execute("CREATE INDEX failures_contact ON failures (contact)")
    # The key that signs unsubscribe links, made once per store: outside a simulation a link is never signed
    # with a public constant (anyone could forge an unsubscribe). The environment variable named by
    # `unsubscribe_secret_env` takes precedence (several stores, or `mauto serve` elsewhere, sharing one).
    db.execute("INSERT OR IGNORE INTO runner_state (key, value) VALUES ('unsubscribe_secret', ?)",
               [secrets.token_urlsafe(32)])


@migration(5)
def api_keys(db: Database) -> None:
    """The keys that may post events to `mauto serve`: a name, and only the SHA-256 of the key (shown once)."""
    db.execute("""
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            last_used_at TEXT
        )""")
    # One key in use per name; a revoked one stays listed, and its name may be given to a new key.
    db.execute("CREATE UNIQUE INDEX api_keys_name ON api_keys (name) WHERE revoked_at IS NULL")


@migration(6)
def what_recipients_say(db: Database) -> None:
    """What `mauto serve` and `mauto bounces ingest` need: each message's ref (the opaque name its links,
    pixel and envelope sender carry) and envelope sender, the soft bounces counted per address, and the
    providers' notifications already recorded."""
    db.execute("ALTER TABLE messages ADD COLUMN ref TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN envelope TEXT")
    db.execute("CREATE UNIQUE INDEX messages_ref ON messages (ref) WHERE ref IS NOT NULL")
    # A bounce's VERP address may come back lower-cased (Postfix's Delivered-To): found without the case. The
    # ref's 132 bits keep about 115 without it: no two messages' refs meet.
    db.execute("CREATE INDEX messages_ref_nocase ON messages (ref COLLATE NOCASE) WHERE ref IS NOT NULL")
    db.execute("CREATE INDEX messages_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL")
    # Like suppressions, by the SHA-256 of the normalised address: a soft bounce counts against the address,
    # whoever holds it; past the project's threshold it is suppressed.
    db.execute("""
        CREATE TABLE soft_bounces (
            address_hash TEXT NOT NULL,
            channel TEXT NOT NULL,
            count INTEGER NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            PRIMARY KEY (address_hash, channel)
        )""")
    # A provider's notification recorded once, however often it is delivered (providers retry on a timeout).
    db.execute("""
        CREATE TABLE notifications_seen (
            provider TEXT NOT NULL,
            id TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (provider, id)
        )""")
    # An SMS STOP names a number: the contacts holding it are found without reading them all.
    db.execute("CREATE INDEX contacts_phone ON contacts (phone) WHERE phone IS NOT NULL")


# The events about a message (what `mauto serve` and `mauto bounces ingest` record) that `mauto stats` counts per
# step: the trigger of migration 7 keeps them in `message_feedback`.
FEEDBACK_EVENTS = ("email_opened", "email_clicked", "unsubscribed", "email_bounced", "email_complained")


@migration(7)
def what_runs(db: Database) -> None:
    """What `mauto stats`, `mauto inspect`, `mauto tasks` and a split's winner need: the enrollment of each
    step-log entry, when an enrollment converted and until when it still may, indexes that let the figures of a
    workflow be summed without reading its rows, the hand-off of tasks, and the winners splits declared."""
    # A step's `reached` counts enrollments, not contacts (a contact may enter a workflow again). Entries written
    # before this version are given theirs: the contact's latest enrollment in the workflow entered by then.
    db.execute("ALTER TABLE step_log ADD COLUMN enrollment TEXT")
    db.execute("UPDATE step_log SET enrollment = (SELECT e.id FROM enrollments e WHERE e.contact = step_log.contact "
               "AND e.workflow = step_log.workflow AND e.entered_at <= step_log.at "
               "ORDER BY e.entered_at DESC, e.id DESC LIMIT 1) WHERE step NOT IN ('trigger', 'event')")
    db.execute("DROP INDEX step_log_workflow_kind")  # read by no query; the ones below serve `stats`
    # Covering for `stats`: a step's entries in enrollment order (its distinct enrollments counted in one pass).
    db.execute("CREATE INDEX step_log_steps ON step_log (workflow, step, enrollment, kind)")
    # The few entries that end an enrollment at a step, or refuse a send there, apart (a small index).
    db.execute("CREATE INDEX step_log_endings ON step_log (workflow, step, kind, enrollment) "
               "WHERE kind IN ('exit', 'failed', 'suppressed')")
    db.execute("CREATE INDEX step_log_workflow_at ON step_log (workflow, at)")
    # A split's assignments with their variant (in `extra`), read whole from the index for its A/B figures.
    db.execute("CREATE INDEX step_log_splits ON step_log (workflow, step, kind, contact, at, extra, enrollment) "
               "WHERE kind = 'split'")
    # A goal reached within its `within` counts after the enrollment ended (a purchase on day 6 of 7 after the
    # workflow finished on day 4): `goal_until` is set on an unconverted enrollment that ended with time left.
    db.execute("ALTER TABLE enrollments ADD COLUMN converted_at TEXT")
    db.execute("ALTER TABLE enrollments ADD COLUMN goal_until TEXT")
    # `ended_at` was written with the moment's own offset; now in UTC, fixed width, as every other moment.
    db.execute(f"UPDATE enrollments SET ended_at = {_UTC.format('ended_at')} WHERE ended_at IS NOT NULL")
    _backfill_conversions(db)
    db.execute("CREATE INDEX enrollments_goal_open ON enrollments (contact, goal_until) WHERE goal_until IS NOT NULL")
    db.execute("CREATE INDEX enrollments_workflow_entered ON enrollments (workflow, entered_at, converted_at)")
    db.execute("CREATE INDEX messages_workflow_step ON messages (workflow, step, status, created_at, sent_at)")
    # What recipients did with each message, once per (message, kind), kept by a trigger on `events` whichever
    # way the event came (`mauto serve`, `bounces ingest`, `events ingest`): `stats` counts these rows instead
    # of reading the events' JSON. `human`: an open by a person, not only a privacy proxy's prefetch; `at`: the
    # first such (the first at all while only a proxy opened it).
    db.execute("""
        CREATE TABLE message_feedback (
            workflow TEXT NOT NULL,
            step TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            human INTEGER NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (workflow, step, kind, message)
        ) WITHOUT ROWID""")
    names = ", ".join(f"'{name}'" for name in FEEDBACK_EVENTS)
    row = ("json_extract(new.properties, '$.workflow'), coalesce(json_extract(new.properties, '$.step'), ''), "
           "new.name, json_extract(new.properties, '$.message'), "
           "coalesce(json_extract(new.properties, '$.prefetched'), 0) IN (0, 'false'), new.at")
    # An event whose properties are not JSON (a row written by hand) is no message's feedback, and no error.
    db.execute(f"""
        CREATE TRIGGER events_message_feedback AFTER INSERT ON events
        WHEN CASE WHEN new.name IN ({names}) AND json_valid(new.properties)
                  THEN json_extract(new.properties, '$.workflow') IS NOT NULL
                       AND json_extract(new.properties, '$.message') IS NOT NULL
                  ELSE 0 END
        BEGIN
            INSERT INTO message_feedback (workflow, step, kind, message, human, at) VALUES ({row})
            ON CONFLICT (workflow, step, kind, message) DO UPDATE SET
                at = CASE WHEN excluded.human > human THEN excluded.at WHEN excluded.human = human
                          THEN min(at, excluded.at) ELSE at END,
                human = max(human, excluded.human);
        END""")
    db.execute(f"""
        INSERT INTO message_feedback (workflow, step, kind, message, human, at)
        SELECT {row.replace('new.', 'e.')} FROM events e WHERE e.seq IN (
            SELECT seq FROM events WHERE name IN ({names}) AND json_valid(properties))
          AND json_extract(e.properties, '$.workflow') IS NOT NULL
          AND json_extract(e.properties, '$.message') IS NOT NULL
        ORDER BY e.seq
        ON CONFLICT (workflow, step, kind, message) DO UPDATE SET
            at = CASE WHEN excluded.human > human THEN excluded.at WHEN excluded.human = human
                      THEN min(at, excluded.at) ELSE at END,
            human = max(human, excluded.human)""")
    db.execute("CREATE INDEX message_feedback_message ON message_feedback (message)")
    # A task handed to its owner when it is made (mauto.yaml's `tasks.handoff`: an email, a webhook into a CRM):
    # `handoff` is null (none configured), 'pending' (to do, or to retry at handoff_next_try_at), 'done' or
    # 'failed' (out of retries; `handoff_answer` says why). At least once: a retry after a crash may repeat it.
    db.execute("ALTER TABLE tasks ADD COLUMN handoff TEXT CHECK (handoff IN ('pending', 'done', 'failed'))")
    db.execute("ALTER TABLE tasks ADD COLUMN handoff_attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE tasks ADD COLUMN handoff_next_try_at TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN handoff_answer TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN done_by TEXT")
    db.execute("CREATE INDEX tasks_handoff_due ON tasks (handoff_next_try_at) WHERE handoff = 'pending'")
    db.execute("CREATE INDEX tasks_open ON tasks (assignee, due_at) WHERE done_at IS NULL")
    # A split's winner (`winner:` in the split), once its always-valid test declared one: new entries all go
    # to it. Kept per workflow and split id, across versions that keep the split.
    db.execute("""
        CREATE TABLE split_winners (
            workflow TEXT NOT NULL,
            split TEXT NOT NULL,
            variant TEXT NOT NULL,
            version INTEGER NOT NULL,
            decided_at TEXT NOT NULL,
            p_value REAL NOT NULL,
            detail TEXT NOT NULL,
            PRIMARY KEY (workflow, split)
        )""")


_UTC = "strftime('%Y-%m-%dT%H:%M:%f', {0}) || '000+00:00'"  # an ISO moment with any offset, as `stamp` writes it


def _backfill_conversions(db: Database) -> None:
    """For the enrollments of a store before version 7: when each converted (its first `goal` entry, else its
    end), in the row and in its data; and, for those that ended without their goal while the goal's `within`
    still runs, until when the goal counts (`goal_until`). Rows whose data is not JSON are left as they are."""
    from mauto.workflow.durations import parse_duration

    db.execute("CREATE TEMP TABLE goal_times (enrollment TEXT PRIMARY KEY, at TEXT NOT NULL)")
    db.execute("INSERT INTO goal_times SELECT enrollment, min(at) FROM step_log WHERE kind = 'goal' "
               "AND enrollment IS NOT NULL GROUP BY enrollment")
    db.execute("UPDATE enrollments SET converted_at = coalesce("
               "(SELECT at FROM goal_times WHERE goal_times.enrollment = enrollments.id), ended_at) "
               "WHERE json_valid(data) AND (state = 'converted' OR json_extract(data, '$.converted'))")
    db.execute("UPDATE enrollments SET data = json_set(data, '$.converted_at', converted_at) "
               "WHERE converted_at IS NOT NULL AND json_valid(data)")
    db.execute("DROP TABLE goal_times")
    for workflow, version, data in db.execute("SELECT id, version, data FROM workflow_versions").fetchall():
        try:
            within = json.loads(data)["goal"]["within"]
            seconds = int(parse_duration(within).total_seconds())
        except (ValueError, KeyError, TypeError):
            continue  # no goal, no `within`, or one this version cannot read: nothing to keep open
        until = f"strftime('%Y-%m-%dT%H:%M:%f', entered_at, '+{seconds} seconds') || '000+00:00'"
        db.execute(f"UPDATE enrollments SET goal_until = {until}, data = json_set(data, '$.goal_until', {until}) "
                   "WHERE workflow = ? AND version = ? AND state IN ('completed', 'exited', 'failed') "
                   "AND converted_at IS NULL AND json_valid(data) "
                   "AND NOT coalesce(json_extract(data, '$.converted'), 0) "
                   f"AND ended_at < {until}", [workflow, version])


@migration(8)
def whole_releases(db: Database) -> None:
    """What issue 14 needs: releases (every template and the settings that shape a message, content-addressed,
    beside the workflow versions), the release each message was rendered from, the coupons' expiry and
    redemption, and the events held for a paused workflow."""
    # A file's text, once per content (its SHA-256): a release names its files by hash.
    db.execute("CREATE TABLE release_blobs (hash TEXT PRIMARY KEY, text TEXT NOT NULL) WITHOUT ROWID")
    # A release: what a deploy made current. `hash` addresses its content (files and settings); a deploy that
    # changes nothing of it makes no new release. Written once, never changed.
    db.execute("""
        CREATE TABLE releases (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            git_commit TEXT,
            git_dirty INTEGER,
            deployed_by TEXT,
            note TEXT
        )""")
    db.execute("""
        CREATE TABLE release_files (
            release INTEGER NOT NULL REFERENCES releases (id),
            path TEXT NOT NULL,
            hash TEXT NOT NULL REFERENCES release_blobs (hash),
            PRIMARY KEY (release, path)
        ) WITHOUT ROWID""")
    for table in ("releases", "release_files", "release_blobs"):
        for action in ("UPDATE", "DELETE"):
            db.execute(f"""
                CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
                BEGIN SELECT RAISE(ABORT, 'a release is immutable'); END""")
    db.execute("ALTER TABLE messages ADD COLUMN release INTEGER")
    # Coupons: until when a code is good (`assign_coupon: {valid_for}`), and when and by which event it was used.
    db.execute("ALTER TABLE coupons ADD COLUMN expires_at TEXT")
    db.execute("ALTER TABLE coupons ADD COLUMN redeemed_at TEXT")
    db.execute("ALTER TABLE coupons ADD COLUMN redeemed_by INTEGER")  # events.seq
    # The events that came for the enrollments of a paused workflow: applied in order, each at its own moment,
    # when it is resumed.
    db.execute("""
        CREATE TABLE held_events (
            workflow TEXT NOT NULL,
            seq INTEGER NOT NULL,
            enrollment TEXT NOT NULL,
            held_at TEXT NOT NULL,
            PRIMARY KEY (workflow, seq, enrollment)
        ) WITHOUT ROWID""")


WORKERS_TABLE = """
        CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            interval_seconds REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('idle', 'ticking', 'waiting', 'stopped')),
            ticks INTEGER NOT NULL DEFAULT 0,
            last_tick_at TEXT
        )"""


@migration(9)
def workers(db: Database) -> None:
    """The daemons at work on this store (issue 15): each writes a heartbeat at every tick and says when it
    stops, so that `mauto status` shows the workers alive on every machine. PostgreSQL's half is the same
    statement (mauto.store.postgres.PG_MIGRATIONS)."""
    db.execute(WORKERS_TABLE)


MESSAGE_CLAIMS = ("ALTER TABLE messages ADD COLUMN handoff_by TEXT",
                  "ALTER TABLE messages ADD COLUMN claimed_by TEXT",
                  "ALTER TABLE messages ADD COLUMN claimed_until TEXT")


@migration(10)
def message_claims(db: Database) -> None:
    """Several daemons sending from one PostgreSQL store (issue 15): the worker that began a message's hand-off
    (a hand-off is only cut off when that worker is gone), and the worker that took the message to send and
    until when (its lease: a worker killed before sending leaves it to another once the lease runs out). The same
    statements in PostgreSQL (mauto.store.postgres.PG_MIGRATIONS)."""
    for statement in MESSAGE_CLAIMS:
        db.execute(statement)


DUE_QUEUE = ("""CREATE UNLOGGED TABLE due_queue (
            contact TEXT PRIMARY KEY,
            due TEXT NOT NULL
        )""", "CREATE INDEX due_queue_due ON due_queue (due, contact)")


@migration(11)
def due_queue(db: Database) -> None:
    """PostgreSQL alone: the contacts with something due, in the order several daemons claim them (issue 15;
    `runtime.queue_due`, `runtime.claim_contacts`). A tick's plan writes it, once; each claim then reads the next
    rows through its index instead of grouping every due item again. A SQLite store has one daemon and no claims:
    nothing changes in it but its version (the table is in `DUE_QUEUE`, PostgreSQL's half)."""
