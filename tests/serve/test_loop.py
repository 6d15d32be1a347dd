"""The whole loop through real parts: the daemon sends to the SMTP test server, the recipient's mail client
follows what is in the message (its List-Unsubscribe header, a rewritten link, the pixel) against a real
uvicorn, and the next tick acts on it."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from tests.serve.conftest import Served

pytestmark = pytest.mark.both_stores  # the endpoints on SQLite and on PostgreSQL (`served`)


def _parts(received) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in received.message.walk()
            if not part.is_multipart()}


def test_a_one_click_unsubscribe_from_the_header_stops_the_next_tick(served: Served) -> None:
    now = datetime.now(UTC)
    assert served.post_events([{"contact": "ana", "event": "cart_abandoned", "at": now.isoformat()},
                               {"contact": "ben", "event": "cart_abandoned", "at": now.isoformat()}]
                              ).status_code == 202
    report = served.tick(now + timedelta(seconds=1))
    assert report.sent == 2
    ana = next(m for m in served.smtp.messages if m.message["To"] == "ana@example.com")
    assert ana.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = ana.message["List-Unsubscribe"].strip("<>")
    assert link.startswith(served.base + "/u/") and "ana" not in link

    # What Gmail does (RFC 8058 §3.2): a POST with this body, no cookie, following no redirect.
    answer = served.client.post(link, content=b"List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200 and "set-cookie" not in answer.headers
    assert served.rows("SELECT email_consent FROM contacts WHERE id = 'ana'") == [(0,)]
    [(contact, _, properties)] = served.events("unsubscribed")
    assert contact == "ana" and properties["source"] == "one-click" and properties["channel"] == "email"
    assert (properties["workflow"], properties["step"]) == ("cart", "reminder")

    # Two days on, the wait times out: ben gets his last reminder, ana nothing.
    served.smtp.messages.clear()
    report = served.tick(now + timedelta(days=2, minutes=1))
    assert [m.message["To"] for m in served.smtp.messages] == ["ben@example.com"]
    assert served.rows("SELECT count(*) FROM suppressions") == [(1,)]


def test_a_click_through_a_rewritten_link_wakes_the_wait_for_email_clicked(served: Served) -> None:
    now = datetime.now(UTC)
    served.post_events({"contact": "ben", "event": "cart_abandoned", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    [received] = served.smtp.messages
    html = _parts(received)["text/html"]
    text = _parts(received)["text/plain"]
    assert "https://shop.example/cart/42" not in html  # rewritten
    assert "https://shop.example/cart/42?x=1&y=2" in text  # the text part shows where the link goes
    click = next(part.split('"')[0] for part in html.split('href="')[1:] if "/c/" in part)
    assert click.startswith(served.base + "/c/")
    assert served.base + "/o/" in html  # the pixel

    answer = served.client.get(click.replace("&amp;", "&"))
    assert answer.status_code == 302 and answer.headers["location"] == "https://shop.example/cart/42?x=1&y=2"
    [(contact, _, properties)] = served.events("email_clicked")
    assert contact == "ben" and properties["url"] == "https://shop.example/cart/42?x=1&y=2"
    assert (properties["workflow"], properties["step"], properties["template"]) == ("cart", "reminder",
                                                                                      "cart/reminder")

    served.smtp.messages.clear()
    served.tick(datetime.now(UTC) + timedelta(seconds=2))
    assert [m.message["Subject"] for m in served.smtp.messages] == ["thanks Ben"]


def test_the_envelope_sender_names_the_message(served: Served) -> None:
    now = datetime.now(UTC)
    served.post_events({"contact": "ben", "event": "cart_abandoned", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    [received] = served.smtp.messages
    [(ref,)] = served.rows("SELECT ref FROM messages")
    assert received.mail_from == f"bounces+{ref}@shop.example"


def test_mautos_own_send_is_an_email_sent_event_that_wakes_a_wait_for(served: Served) -> None:
    now = datetime.now(UTC)
    served.post_events({"contact": "ben", "event": "ordered", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    [(contact, _, properties)] = served.events("email_sent")
    assert contact == "ben" and properties["step"] == "receipt" and properties["template"] == "cart/receipt"
    served.tick(now + timedelta(seconds=2))
    assert [m.message["Subject"] for m in served.smtp.messages] == ["receipt Ben", "follow Ben"]


def test_the_pixel_records_an_open_and_marks_a_privacy_proxys(served: Served) -> None:
    now = datetime.now(UTC)
    served.post_events({"contact": "ben", "event": "cart_abandoned", "at": now.isoformat()})
    served.tick(now + timedelta(seconds=1))
    html = _parts(served.smtp.messages[0])["text/html"]
    pixel = next(part.split('"')[0] for part in html.split('src="')[1:] if "/o/" in part)
    answer = served.client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a") and "no-store" in answer.headers["cache-control"]
    served.client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})  # Apple Mail Privacy Protection's fetch
    assert [properties["prefetched"] for _, _, properties in served.events("email_opened")] == [False, True]
    assert urlsplit(pixel).path.startswith("/o/")
