"""A hostile review of what users feed mauto after issue 10 (imports, ingest, coupons, --where, workflows,
templates, webhooks), each finding proven against real parts: real SQLite files in tmp_path, the CLI through
typer's CliRunner or a subprocess, real SMTP and HTTP servers on 127.0.0.1. Each test failed on the code the
review was made against (after issue 10's first fixes) and passes since its bug was fixed."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.channels.webhook import WebhookResult, call_webhook
from mauto.cli import app
from tests.daemon.harness import T0, Daemon, write
from tests.servers import HttpServer

# an internal error's log (and a PostgreSQL store's releases) go to tmp_path; the harness runs on both stores
pytestmark = [pytest.mark.usefixtures("cli_environment"), pytest.mark.both_stores]

PROJECT_YAML = """\
store: mauto.db
timezone: Europe/Paris
sender: {email: "Shop <shop@example.com>"}
contact_fields: {first_name: string}
events:
  order_placed: {total: number}
"""


def mauto(root: Path, *args: str, input: str | bytes | None = None):
    return CliRunner().invoke(app, ["-p", str(root / "mauto.yaml"), *args], input=input,
                              env={"MAUTO_TEST_SMS_TOKEN": "t0k3n", "COLUMNS": "200"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "mauto.yaml").write_text(PROJECT_YAML, encoding="utf-8")
    assert mauto(tmp_path, "db", "init").exit_code == 0
    return tmp_path


def rows(root: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(root / "mauto.db") as db:
        return [tuple(row) for row in db.execute(sql, args)]


# --- expressions: a few characters that never finish --------------------------------------------------------


def test_a_power_in_where_is_refused_quickly(project: Path) -> None:
    mauto(project, "contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n')
    try:
        result = subprocess.run([sys.executable, "-m", "mauto", "-p", str(project / "mauto.yaml"), "contacts",
                                 "list", "--where", "(9**9)**(9**9) > 0"], capture_output=True, text=True,
                                timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("`contacts list --where \"(9**9)**(9**9) > 0\"` still running after 10 s")
    assert result.returncode == 2 and "--where" in result.stderr


# --- templates: contact data in a `from:` display name -------------------------------------------------------


def test_contact_data_in_a_from_display_name_cannot_choose_the_sender(daemon: Daemon) -> None:
    write(daemon.root / "templates" / "promo" / "hello.email.html",
          '---\nsubject: "hello"\nfrom: "{{ contact.first_name }} at Shop <shop@example.com>"\n---\n'
          '<p>hello</p><a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    daemon.store.db.execute("UPDATE contacts SET fields = ? WHERE id = 'ana'",
                            [json.dumps({"first_name": "Jo <jo@evil.example>, Smith"})])
    daemon.store.db.commit()
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))
    [received] = daemon.smtp.messages
    parsed = message_from_bytes(received.content, policy=policy.default)
    assert received.mail_from == "shop@example.com"
    assert [address.addr_spec for address in parsed["From"].addresses] == ["shop@example.com"]
    assert not parsed["From"].defects


# --- contacts import ---------------------------------------------------------------------------------------------


def test_a_duplicate_key_in_a_json_line_is_a_bad_row(project: Path) -> None:
    result = mauto(project, "contacts", "import", "-", "-f", "jsonl",
                   input='{"id": "c1", "email": "a@example.com", "email_consent": false, '
                         '"email_consent": true}\n')
    assert result.exit_code == 1, result.output
    assert "<stdin>:1:" in result.stderr and "email_consent" in result.stderr
    assert rows(project, "SELECT count(*) FROM contacts") == [(0,)]


def test_importing_an_erased_contacts_id_is_a_bad_row(project: Path) -> None:
    assert mauto(project, "contacts", "import", "-", "-f", "jsonl",
                 input='{"id": "c1", "email": "a@example.com"}\n').exit_code == 0
    assert mauto(project, "contacts", "erase", "c1", "--yes").exit_code == 0
    [(erased,)] = rows(project, "SELECT id FROM contacts WHERE erased_at IS NOT NULL")
    source = f'{{"id": "c2", "email": "b@example.com"}}\n{{"id": "{erased}", "email": "c@example.com"}}\n'
    result = mauto(project, "contacts", "import", "-", "-f", "jsonl", "--skip-invalid", input=source)
    assert result.exit_code == 0, result.output
    assert "<stdin>:2:" in result.stderr and "SQLite" not in result.output
    assert rows(project, "SELECT id FROM contacts WHERE erased_at IS NULL") == [("c2",)]


def test_an_export_imports_back(project: Path) -> None:
    assert mauto(project, "contacts", "import", "-", "-f", "jsonl",
                 input='{"id": "c1", "email": "a@example.com", "first_name": "Ann"}\n').exit_code == 0
    assert mauto(project, "contacts", "export", "-f", "jsonl", "-o", str(project / "all.jsonl")).exit_code == 0
    result = mauto(project, "contacts", "import", str(project / "all.jsonl"))
    assert result.exit_code == 0, result.output


# --- events ingest -----------------------------------------------------------------------------------------------


def test_a_property_given_twice_in_an_event_is_a_bad_row(project: Path) -> None:
    assert mauto(project, "contacts", "import", "-", "-f", "jsonl", input='{"id": "c1"}\n').exit_code == 0
    before = rows(project, "SELECT count(*) FROM events")
    result = mauto(project, "events", "ingest", "-", input=json.dumps(
        {"contact": "c1", "event": "unsubscribed", "at": "2026-01-01T00:00:00Z", "channel": "email",
         "properties": {"channel": "sms"}}) + "\n")
    assert result.exit_code == 1, result.output
    assert "<stdin>:1:" in result.stderr and "channel" in result.stderr
    assert rows(project, "SELECT count(*) FROM events") == before


def test_a_bounce_of_kind_null_is_refused_or_suppresses(daemon: Daemon) -> None:
    result = mauto(daemon.root, "events", "ingest", "-", input=json.dumps(
        {"contact": "ana", "event": "email_bounced", "at": T0.isoformat(), "kind": None}) + "\n")
    if result.exit_code == 1:
        assert "<stdin>:1:" in result.stderr and "kind" in result.stderr
        return
    assert result.exit_code == 0, result.output
    daemon.tick(T0 + timedelta(minutes=1))
    assert daemon.store.is_suppressed("ana@example.com", "email")


# --- coupons load -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["", "spring\nsale", "spring\x1b[2J"])
def test_a_pool_name_that_is_not_one_line_of_text_is_a_usage_error(project: Path, pool: str) -> None:
    (project / "codes.txt").write_text("code\nA1\n", encoding="utf-8")
    result = mauto(project, "coupons", "load", pool, str(project / "codes.txt"))
    assert result.exit_code == 2, result.output
    assert rows(project, "SELECT count(*) FROM coupons") == [(0,)]


def test_a_code_with_an_invisible_character_is_refused(project: Path) -> None:
    (project / "codes.txt").write_text("code\nA1\nB2\u200b\n", encoding="utf-8")
    result = mauto(project, "coupons", "load", "spring", str(project / "codes.txt"))
    assert result.exit_code == 1, result.output
    assert "codes.txt:3" in result.stderr
    assert rows(project, "SELECT count(*) FROM coupons") == [(0,)]


# --- mauto.yaml ----------------------------------------------------------------------------------------------------


def test_lint_refuses_an_unknown_phone_region(tmp_path: Path) -> None:
    (tmp_path / "mauto.yaml").write_text(PROJECT_YAML + "phone_region: XX\n", encoding="utf-8")
    assert mauto(tmp_path, "db", "init").exit_code == 2
    result = mauto(tmp_path, "lint")
    assert result.exit_code == 1, result.output
    assert "phone_region" in result.output


# --- webhooks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_extra", [
    {"query": "?name=Zoë"},
    {"headers": {"X-Name": "日本"}},
])
def test_a_webhook_with_non_ascii_data_is_answered_not_raised(request_extra: dict) -> None:
    with HttpServer() as http:
        http.respond("/crm", 200, {"id": "crm-1"})
        request = {"url": http.url("/crm") + request_extra.get("query", ""),
                   "headers": request_extra.get("headers", {}), "body": {"contact": "c1"}}
        result = call_webhook(request, "hooked:c1:1")
    assert isinstance(result, WebhookResult)
