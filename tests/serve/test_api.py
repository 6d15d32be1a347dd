"""Every endpoint of `mauto serve` and every error, against a real uvicorn on 127.0.0.1 with httpx."""
from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mauto.links import Signer
from mauto.store import migrations
from mauto.store.keys import create_key, revoke_key
from tests.serve.conftest import HOST, SECRET, Served

pytestmark = pytest.mark.both_stores  # the endpoints on SQLite and on PostgreSQL (`served`)

AT = "2026-12-01T10:00:00+00:00"


def _event(contact: str = "ana", event: str = "page_viewed", **more) -> dict:
    return {"contact": contact, "event": event, "at": AT, **more}


# --- the events API -------------------------------------------------------------------------------------------


def test_one_event_an_array_and_json_lines_are_accepted_once_committed(served: Served) -> None:
    answer = served.post_events(_event(url="/a", id="e1"))
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0})
    answer = served.post_events([_event(url="/b", id="e2"), _event("ben", url="/c")])
    assert (answer.status_code, answer.json()) == (202, {"accepted": 2, "duplicates": 0})
    lines = "\n".join(json.dumps(_event(url=f"/{n}", id=f"l{n}")) for n in range(3)) + "\n"
    answer = served.post_events(lines, **{"Content-Type": "application/x-ndjson"})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 3, "duplicates": 0})
    # Committed before the answer: another connection sees them at once.
    assert served.rows("SELECT count(*) FROM events WHERE name = 'page_viewed'") == [(6,)]
    assert served.rows("SELECT last_used_at IS NOT NULL FROM api_keys WHERE name = 'website'") == [(1,)]


def test_events_are_idempotent_by_id(served: Served) -> None:
    assert served.post_events([_event(id="x"), _event(id="y")]).json() == {"accepted": 2, "duplicates": 0}
    assert served.post_events([_event(id="x"), _event(id="z"), _event(id="z")]).json() == {
        "accepted": 1, "duplicates": 2}
    assert served.rows("SELECT id FROM events WHERE name = 'page_viewed' ORDER BY seq") == [("x",), ("y",), ("z",)]


def test_a_bad_event_refuses_the_whole_request_with_every_reason(served: Served) -> None:
    answer = served.post_events([_event(), {"contact": "ana", "at": AT}, _event("nobody"), 7,
                                 _event(event="made_up"), _event(at="yesterday")])
    assert answer.status_code == 422
    assert answer.json() == {"error": "5 of 6 events are not valid; none was stored", "problems": [
        {"index": 1, "reason": "event has no `event`"},
        {"index": 2, "reason": "unknown contact `nobody`"},
        {"index": 3, "reason": "an event must be a JSON object"},
        {"index": 4, "reason": "unknown event `made_up`; add it to `events` in mauto.yaml"},
        {"index": 5, "reason": answer.json()["problems"][4]["reason"]},
    ]}
    assert answer.json()["problems"][4]["reason"].startswith("`at`: ")
    assert served.rows("SELECT count(*) FROM events WHERE name != 'contact_created'") == [(0,)]


def test_keys(served: Served) -> None:
    assert served.post_events(_event(), Authorization="").status_code == 401
    answer = served.post_events(_event(), Authorization="Bearer mk_not-a-key")
    assert answer.status_code == 401 and answer.json() == {"error": "this API key is not valid (unknown or revoked)"}
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert served.post_events(_event(), Authorization=f"Basic {served.key}").status_code == 401
    other = create_key(served.store, "crm", datetime.now(UTC))
    assert served.post_events(_event(), Authorization=f"Bearer {other}").status_code == 202
    revoke_key(served.store, "crm", datetime.now(UTC))
    time.sleep(2.1)  # KEY_CACHE_SECONDS: a revoked key is refused within 2 s
    assert served.post_events(_event(), Authorization=f"Bearer {other}").status_code == 401
    assert served.rows("SELECT count(*) FROM events WHERE name != 'contact_created'") == [(1,)]


def test_bodies_that_are_not_events(served: Served) -> None:
    cases = [
        (b"{", "application/json", 400, "the body: invalid JSON: "),
        (b'{"contact": "ana", "n": 1e400}', "application/json", 400,
         "the body: field `n`: must be a finite number, not `Infinity`"),
        (b'{"contact": "ana", "contact": "ben"}', "application/json", 400,
         "the body: `contact` is given twice in one object; keep one"),
        (b"\xff\xfe{}", "application/json", 400, "the body is not UTF-8 (byte 0)"),
        (b"[" * 100 + b"]" * 100, "application/json", 400, "the body: JSON nested deeper than 32 levels"),
        (b"[]", "application/json", 422, "no event in the body"),
        (b"NaN", "application/json", 400, "the body: "),
        (b"{}", "text/plain", 415, "Content-Type must be application/json or application/x-ndjson, not `text/plain`"),
        (b'{"a": 1}\n{', "application/x-ndjson", 400, "line 2: invalid JSON: "),
    ]
    for body, content_type, status, reason in cases:
        answer = served.post_events(body, **{"Content-Type": content_type})
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"].startswith(reason), answer.json()
    assert served.rows("SELECT count(*) FROM events WHERE name != 'contact_created'") == [(0,)]


def test_too_large_bodies_are_refused_before_and_while_reading(served: Served) -> None:
    big = b"[" + b",".join([json.dumps(_event(url="x" * 1000)).encode()] * 1100) + b"]"
    answer = served.post_events(big)
    assert answer.status_code == 413 and "at most 1048576 are accepted" in answer.json()["error"]

    def chunks():  # no Content-Length: read until past the limit
        for _ in range(1100):
            yield b" " * 1000
    answer = served.client.post("/v1/events", content=chunks(), headers={
        "Authorization": f"Bearer {served.key}", "Content-Type": "application/json"})
    assert answer.status_code == 413 and "over 1048576 bytes" in answer.json()["error"]


def test_a_client_that_sends_its_body_too_slowly_is_cut_off(tmp_path, smtp) -> None:
    served = Served(tmp_path, smtp).start(body_timeout=0.5)
    try:
        with socket.create_connection((HOST, served.port), timeout=5) as sock:
            sock.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {served.key}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[".encode())
            answer = b""
            while b"}" not in answer:  # the head, then the JSON body
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 0.5s" in answer
    finally:
        served.stop()


# --- unsubscribe and the preference centre --------------------------------------------------------------------


def _sent(served: Served, contact: str = "ana") -> str:
    """Send `contact` the cart reminder; its unsubscribe link."""
    now = datetime.now(UTC)
    served.post_events({"contact": contact, "event": "cart_abandoned", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    received = next(m for m in served.smtp.messages if m.message["To"] == f"{contact}@example.com")
    return received.message["List-Unsubscribe"].strip("<>")


def test_the_page_changes_nothing_and_its_button_unsubscribes(served: Served) -> None:
    link = _sent(served)
    page = served.client.get(link)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "a•••@example.com" in page.text and "ana@example.com" not in page.text
    assert '<form method="post"' in page.text
    assert served.rows("SELECT email_consent FROM contacts WHERE id = 'ana'") == [(1,)]  # a GET changes nothing
    done = served.client.post(link, data={"source": "page"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert served.rows("SELECT email_consent FROM contacts WHERE id = 'ana'") == [(0,)]
    assert [p["source"] for _, _, p in served.events("unsubscribed")] == ["page"]
    again = served.client.post(link, content=b"List-Unsubscribe=One-Click")
    assert again.status_code == 200
    assert len(served.events("unsubscribed")) == 1  # nothing written twice
    later = served.client.get(link)  # the link opened again: no button, the way to the rest
    assert "You are unsubscribed" in later.text and "<form" not in later.text
    assert f'href="{link}/preferences"' in later.text


def test_the_preference_centre_leaves_channels_and_lists_one_by_one(served: Served) -> None:
    link = _sent(served)
    page = served.client.get(link + "/preferences")
    assert page.status_code == 200
    assert 'value="newsletter" checked' in page.text and 'value="offers" checked' in page.text
    assert 'value="email" checked' in page.text and 'value="sms" checked' in page.text
    saved = served.client.post(link + "/preferences", data={"form": "preferences", "channel": ["email"],
                                                            "list": ["offers"]})
    assert saved.status_code == 200 and "Saved." in saved.text
    assert served.rows("SELECT email_consent, sms_consent FROM contacts WHERE id = 'ana'") == [(1, 0)]
    [(fields,)] = served.rows("SELECT fields FROM contacts WHERE id = 'ana'")
    assert json.loads(fields)["lists"] == ["offers"]
    assert [(p["channel"], p["source"]) for _, _, p in served.events("unsubscribed")] == [("sms", "preferences")]
    assert 'value="sms"' not in saved.text and 'value="newsletter"' not in saved.text
    assert served.client.post(link + "/preferences", data={"channel": "email"}).status_code == 400


def test_forged_truncated_and_foreign_tokens_are_404_and_change_nothing(served: Served) -> None:
    link = _sent(served)
    token = link.rsplit("/", 1)[1]
    ref = Signer(SECRET).check_unsubscribe(token)
    forged = [token[:-1], token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x", "x" * 39,
              Signer("another key").unsubscribe(ref or ""), Signer(SECRET).open(ref or ""), "%00", "a" * 9000]
    for bad in forged:
        for method in ("GET", "POST"):
            answer = served.client.request(method, f"/u/{bad}", content=b"List-Unsubscribe=One-Click")
            assert answer.status_code in (404, 414), (bad, answer.status_code)
    assert served.rows("SELECT email_consent FROM contacts WHERE id = 'ana'") == [(1,)]
    assert served.events("unsubscribed") == []
    for cut in ("/u/", "/u", "/c/", f"/u/{token}/x/y"):  # a link cut short, followed by a person: a page
        answer = served.client.get(cut)
        assert answer.status_code == 404 and "This link does not work" in answer.text, cut


def test_a_token_of_the_first_format_still_unsubscribes(served: Served) -> None:
    import base64
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b"ben:email").decode().rstrip("=")
    signature = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).digest())
    token = payload + "." + signature.decode().rstrip("=")[:22]
    assert served.client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click").status_code == 200
    assert served.rows("SELECT email_consent FROM contacts WHERE id = 'ben'") == [(0,)]


# --- clicks -----------------------------------------------------------------------------------------------------


def test_a_click_token_that_does_not_verify_never_redirects(served: Served) -> None:
    signer = Signer(SECRET)
    good = signer.click("A" * 22, "https://shop.example/")
    for bad in (good[:-2], good.replace("A", "B", 1), signer.click("A" * 22, "javascript:alert(1)"),
                Signer("other").click("A" * 22, "https://evil.example/"), "x", signer.open("A" * 22)):
        answer = served.client.get(f"/c/{bad}")
        assert answer.status_code == 404 and "location" not in answer.headers, bad
    # Signed but for a message the store does not hold (erased, or another store): redirects, records nothing.
    answer = served.client.get(f"/c/{good}")
    assert (answer.status_code, answer.headers["location"]) == (302, "https://shop.example/")
    assert served.events("email_clicked") == []


# --- inbound SMS, health, metrics, the rest ----------------------------------------------------------------------


def test_an_inbound_stop_unsubscribes_the_number_from_sms(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.key}"}
    answer = served.client.post("/v1/sms/inbound", json={"from": "+33 6 12 34 56 78", "text": "hello"},
                                headers=headers)
    assert answer.json() == {"stop": False}
    answer = served.client.post("/v1/sms/inbound", json={"from": "+33 6 12 34 56 78", "text": " Stop "},
                                headers=headers)
    assert answer.json() == {"stop": True, "unsubscribed": True}
    assert served.rows("SELECT sms_consent FROM contacts WHERE id = 'ana'") == [(0,)]
    assert served.client.post("/v1/sms/inbound", json={"from": "nope", "text": "STOP"},
                              headers=headers).status_code == 422
    assert served.client.post("/v1/sms/inbound", json={"from": "+33612345678", "text": "STOP"}).status_code == 401


def test_health_metrics_and_unknown_paths(served: Served) -> None:
    # the version the store holds, read from it: SQLite's PRAGMA user_version, PostgreSQL's mauto_schema
    assert served.client.get("/healthz").json() == {"status": "ok", "schema_version": migrations.latest()}
    served.post_events(_event())
    metrics = served.client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'mauto_http_requests_total{route="/v1/events",status="202"} 1.0' in metrics.text
    assert "mauto_events_accepted_total 1.0" in metrics.text
    assert "mauto_store_commit_seconds_count" in metrics.text
    answer = served.client.get("/nowhere")
    assert (answer.status_code, answer.json()) == (404, {"error": "no such endpoint"})
    answer = served.client.get("/v1/events")
    assert (answer.status_code, answer.json()) == (405, {"error": "GET is not allowed here"})
    answer = served.client.post("/v1/providers/acme", content=b"{}")
    assert answer.status_code == 404 and answer.json()["error"].startswith("unknown provider `acme`")
    answer = served.client.post("/v1/providers/mailgun", content=b"{}")
    assert answer.status_code == 404 and "not configured" in answer.json()["error"]


def test_secrets_and_tokens_never_reach_the_log(served: Served, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="mauto.serve")  # as `mauto serve --access-log`
    link = _sent(served)
    served.client.get(link)
    served.post_events(_event())
    text = caplog.text
    assert "GET /u/… 200" in text and "POST /v1/events 202" in text
    assert link.rsplit("/", 1)[1] not in text and served.key not in text and SECRET not in text


def test_a_server_without_a_store_answers_503_not_500(served: Served) -> None:
    served.store.db.execute("DROP TABLE api_keys")  # a store damaged under the server
    answer = served.post_events(_event())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json() == {"error": "the store is unavailable; try again shortly"}


def test_httpx_against_the_real_port(served: Served) -> None:
    with httpx.Client() as client:
        assert client.get(f"http://{HOST}:{served.port}/healthz").status_code == 200


def _hold_the_events(served: Served):
    """Another connection holding what the writer needs to record an event, in a transaction left open: SQLite's
    write lock (`mauto contacts import`, or a long tick), PostgreSQL's lock on the events table."""
    if served.store.dialect == "sqlite":
        import sqlite3

        holder = sqlite3.connect(served.root / "mauto.db")
        holder.execute("BEGIN IMMEDIATE")
        return holder
    import psycopg

    holder = psycopg.connect(str(served.location))
    holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")  # reads go on, writes wait
    return holder


def test_a_click_redirects_and_a_pixel_answers_even_while_the_store_is_locked(served: Served) -> None:
    link = _sent(served, "ben")
    ref = Signer(SECRET).check_unsubscribe(link.rsplit("/", 1)[1]) or ""
    click = Signer(SECRET).click(ref, "https://shop.example/x")
    assert served.client.head(f"/c/{click}").status_code == 302  # a link checker's HEAD: no click
    holder = _hold_the_events(served)
    try:
        started = time.monotonic()
        answer = served.client.get(f"/c/{click}")
        assert (answer.status_code, answer.headers["location"]) == (302, "https://shop.example/x")
        assert time.monotonic() - started < 4
    finally:
        holder.rollback()
        holder.close()
    deadline = time.monotonic() + 10
    while not served.events("email_clicked"):  # written once the lock is gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert len(served.events("email_clicked")) == 1


def test_mauto_serve_on_a_port_in_use_says_so(served: Served) -> None:
    from typer.testing import CliRunner

    from mauto.cli import app

    result = CliRunner().invoke(app, ["-p", str(served.root / "mauto.yaml"), "serve", "--port", str(served.port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{served.port}: Address already in use" in result.stderr
    assert "Traceback" not in result.output
