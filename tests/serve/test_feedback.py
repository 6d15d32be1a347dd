"""Bounces, complaints, deliveries and STOPs recorded: through the store's `record`, a provider's webhook
posted to the real server, and `mauto bounces ingest` on a real Maildir."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import mailbox
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mauto.cli import app
from mauto.feedback import COMPLAINT, DELIVERED, HARD_BOUNCE, SMS_STOP, SOFT_BOUNCE, Feedback
from mauto.store.feedback import record
from tests.serve.conftest import Served, store_url

pytestmark = pytest.mark.both_stores  # recorded on SQLite and on PostgreSQL (`served`, `store_kind`)

DATA = Path(__file__).parent / "bounce_data"
MAILGUN_KEY = "key-0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-for-tests"


def _sent(served: Served, contact: str = "ben") -> str:
    """Send `contact` the cart reminder; the message's ref."""
    now = datetime.now(UTC)
    served.post_events({"contact": contact, "event": "cart_abandoned", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    [(ref,)] = served.rows("SELECT ref FROM messages WHERE contact = ? ORDER BY id DESC LIMIT 1", contact)
    return ref


def _record(served: Served, *items: Feedback):
    store = served.store
    with store.transaction():
        return [record(store, item, datetime.now(UTC), served.project.serve.soft_bounce_limit) for item in items]


def test_a_hard_bounce_suppresses_the_address_and_says_which_step_sent_it(served: Served) -> None:
    ref = _sent(served)
    [done] = _record(served, Feedback(HARD_BOUNCE, "ses", ref=ref, reason="550 5.1.1 user unknown", id="n1"))
    assert (done.matched, done.suppressed, done.event) == (True, True, "email_bounced")
    [(contact, _, properties)] = served.events("email_bounced")
    assert contact == "ben" and properties == {"workflow": "cart", "step": "reminder", "template": "cart/reminder",
                                               "message": ref, "kind": "hard", "provider": "ses",
                                               "reason": "550 5.1.1 user unknown"}
    assert served.store.is_suppressed("BEN@example.com", "email")
    [again] = _record(served, Feedback(HARD_BOUNCE, "ses", ref=ref, id="n1"))  # delivered twice by the provider
    assert again.duplicate and len(served.events("email_bounced")) == 1


def test_soft_bounces_count_and_suppress_at_the_limit(served: Served) -> None:
    ref = _sent(served)
    results = _record(served, *(Feedback(SOFT_BOUNCE, "mailgun", ref=ref, id=f"s{n}") for n in range(3)))
    assert [result.suppressed for result in results] == [False, False, True]
    assert [p["kind"] for _, _, p in served.events("email_bounced")] == ["soft"] * 3


def test_complaints_deliveries_and_what_matches_nothing(served: Served) -> None:
    ref = _sent(served)
    complaint, delivered, stranger, forged = _record(
        served, Feedback(COMPLAINT, "postmark", provider_id="unknown", ref=ref.lower()),  # lower-cased VERP
        Feedback(DELIVERED, "postmark", ref=ref), Feedback(HARD_BOUNCE, "ses", address="gone@else.example"),
        Feedback(HARD_BOUNCE, "mailbox", address="ana@example.com", ref="A" * 22))
    assert (complaint.matched, complaint.suppressed, complaint.event) == (True, True, "email_complained")
    assert delivered.event == "email_delivered" and not delivered.suppressed
    # A signed provider's bounce for mail mauto did not send: the address it names is suppressed.
    assert (stranger.matched, stranger.suppressed) == (False, True)
    assert stranger.note == "no message of ours matches it; the address was suppressed"
    assert served.store.is_suppressed("gone@else.example", "email")
    # Anyone can write to the bounce mailbox, naming anyone: without a ref of ours, nothing is done.
    assert (forged.matched, forged.suppressed, forged.note) == (False, False,
                                                                 "no message of ours has this ref: nothing done")
    assert not served.store.is_suppressed("ana@example.com", "email")


def test_the_soft_bounce_window_counts_from_the_first_by_the_providers_moment(served: Served) -> None:
    ref = _sent(served)
    start = datetime.now(UTC) - timedelta(days=90)
    days = (0, 29, 58, 59)  # 0 and 29 within 30 days; 58 begins a new count, 59 its second
    results = _record(served, *(Feedback(SOFT_BOUNCE, "mailgun", ref=ref, id=f"w{day}",
                                         at=start + timedelta(days=day)) for day in days))
    assert [result.suppressed for result in results] == [False, False, False, False]
    [third] = _record(served, Feedback(SOFT_BOUNCE, "mailgun", ref=ref, id="w60", at=start + timedelta(days=60)))
    assert third.suppressed


def test_a_stop_withdraws_sms_consent_of_whoever_has_the_number(served: Served) -> None:
    [done] = _record(served, Feedback(SMS_STOP, "twilio", "sms", "+33 6 12 34 56 78"))
    assert done.event == "unsubscribed" and done.suppressed
    assert served.rows("SELECT sms_consent FROM contacts WHERE id = 'ana'") == [(0,)]
    [(contact, _, properties)] = served.events("unsubscribed")
    assert (contact, properties) == ("ana", {"channel": "sms", "source": "sms-stop", "provider": "twilio"})


# --- through the real server -------------------------------------------------------------------------------------

PROVIDERS = """\
  providers:
    mailgun: {signing_key_env: MG_KEY}
    twilio: {auth_token_env: TW_TOKEN}
"""


def _mailgun(ref: str, event: str = "failed", severity: str = "permanent") -> bytes:
    timestamp, token = str(int(datetime.now(UTC).timestamp())), uuid.uuid4().hex
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                       "event-data": {"id": uuid.uuid4().hex, "timestamp": datetime.now(UTC).timestamp(),
                                      "event": event, "severity": severity, "recipient": "ben@example.com",
                                      "delivery-status": {"code": 550, "description": "no such user"},
                                      "message": {"headers": {"message-id": "abc@mailgun"}},
                                      "user-variables": {"mauto_ref": ref}}}).encode()


def test_a_signed_mailgun_webhook_is_recorded_and_a_forged_one_refused(tmp_path, smtp, store_kind, request) -> None:
    served = Served(tmp_path, smtp, PROVIDERS, store_url(store_kind, request)).start(
        environ={"MG_KEY": MAILGUN_KEY, "TW_TOKEN": TWILIO_TOKEN})
    try:
        ref = _sent(served)
        answer = served.client.post("/v1/providers/mailgun", content=_mailgun(ref),
                                    headers={"Content-Type": "application/json"})
        assert (answer.status_code, answer.json()) == (200, {"recorded": 1, "duplicates": 0, "unmatched": 0})
        assert [p["kind"] for _, _, p in served.events("email_bounced")] == ["hard"]
        assert served.store.is_suppressed("ben@example.com", "email")
        forged = json.loads(_mailgun(ref))
        forged["signature"]["signature"] = "0" * 64
        answer = served.client.post("/v1/providers/mailgun", json=forged)
        assert answer.status_code == 401 and "error" in answer.json()
        assert len(served.events("email_bounced")) == 1
    finally:
        served.stop()


def test_a_mailgun_token_is_used_once_across_restarts_and_servers(tmp_path, smtp, store_kind, request) -> None:
    # Mailgun signs the timestamp and the token, not the event: a signature seen once must not carry another
    # event, on this server after a restart (its memory of tokens gone) or on another server of the same store.

    served = Served(tmp_path, smtp, PROVIDERS, store_url(store_kind, request)).start(
        environ={"MG_KEY": MAILGUN_KEY, "TW_TOKEN": TWILIO_TOKEN})
    try:
        ref = _sent(served)
        signed = json.loads(_mailgun(ref))
        answer = served.client.post("/v1/providers/mailgun", json=signed)
        assert (answer.status_code, answer.json()) == (200, {"recorded": 1, "duplicates": 0, "unmatched": 0})
        # nothing is remembered in the process: another `mauto serve` (or this one restarted) reads the store
        forged = json.loads(_mailgun(ref, "complained"))
        forged["signature"] = signed["signature"]
        answer = served.client.post("/v1/providers/mailgun", json=forged)
        assert (answer.status_code, answer.json()) == (401, {"error": "this Mailgun token was used before: a replay"})
        assert served.events("email_complained") == []
    finally:
        served.stop()


def test_twilio_signs_the_public_url_not_the_one_behind_the_proxy(tmp_path, smtp, store_kind, request) -> None:
    served = Served(tmp_path, smtp, PROVIDERS, store_url(store_kind, request)).start(
        environ={"MG_KEY": MAILGUN_KEY, "TW_TOKEN": TWILIO_TOKEN})
    try:
        params = {"From": "+33612345678", "Body": "STOP", "MessageSid": "SM" + "0" * 32}
        url = served.project.serve.public_url + "/v1/providers/twilio"
        signed = url + "".join(name + params[name] for name in sorted(params))
        signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest())
        answer = served.client.post("/v1/providers/twilio", data=params,
                                    headers={"X-Twilio-Signature": signature.decode()})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
        assert served.rows("SELECT sms_consent FROM contacts WHERE id = 'ana'") == [(0,)]
    finally:
        served.stop()


# --- the bounce mailbox --------------------------------------------------------------------------------------------


def _dsn(ref: str, recipient: str = "ben@example.com") -> bytes:
    """Postfix's DSN of bounce_data/postfix_failed.eml, retargeted at one of our messages."""
    text = (DATA / "postfix_failed.eml").read_bytes()
    original = message_from_bytes(text)
    old_ref = original["Delivered-To"].split("+", 1)[1].split("@", 1)[0]
    return (text.replace(old_ref.encode(), ref.encode()).replace(b"mail.shop.example", b"shop.example")
            .replace(b"nobody@customer.example", recipient.encode()))


def test_bounces_ingest_matches_each_bounce_to_its_message_and_runs_twice_safely(served: Served) -> None:
    ref = _sent(served)
    folder = served.root / "bounces"
    box = mailbox.Maildir(folder, create=True)
    box.add(_dsn(ref))
    box.add((DATA / "vacation.eml").read_bytes())
    box.close()
    runner = CliRunner()
    result = runner.invoke(app, ["-p", str(served.root / "mauto.yaml"), "bounces", "ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "2 messages read; 1 hard bounce recorded; 1 address suppressed; 0 unmatched; 0 seen before; " \
           "1 not bounces" in result.stdout
    assert "skipped:" in result.stderr
    [(contact, _, properties)] = served.events("email_bounced")
    assert contact == "ben" and properties["provider"] == "mailbox" and properties["step"] == "reminder"
    again = runner.invoke(app, ["-p", str(served.root / "mauto.yaml"), "bounces", "ingest", str(folder),
                                "--format", "json"])
    assert json.loads(again.stdout)["duplicates"] == 1 and len(served.events("email_bounced")) == 1


def test_bounces_ingest_needs_a_bounce_address_and_a_mailbox(tmp_path, smtp) -> None:
    served = Served(tmp_path, smtp)
    try:
        runner = CliRunner()
        result = runner.invoke(app, ["-p", str(tmp_path / "mauto.yaml"), "bounces", "ingest", str(tmp_path / "no")])
        assert result.exit_code == 2 and "no such file or folder" in result.stderr
        text = (tmp_path / "mauto.yaml").read_text().replace("  bounce_address: bounces@shop.example\n", "")
        (tmp_path / "mauto.yaml").write_text(text)
        result = runner.invoke(app, ["-p", str(tmp_path / "mauto.yaml"), "bounces", "ingest", str(tmp_path)])
        assert result.exit_code == 2
        assert "mauto.yaml:" in result.stderr and "serve.bounce_address is not set" in result.stderr
    finally:
        served.stop()
