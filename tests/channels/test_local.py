"""The console and file transports, the recording transport, and the retry schedule."""
from __future__ import annotations

import io
from email import message_from_bytes
from pathlib import Path

from mauto.channels import (
    MAX_ATTEMPTS,
    PARKED,
    RETRY,
    SENT,
    ConsoleTransport,
    Delivery,
    FileTransport,
    RecordingTransport,
    backoff,
)
from mauto.messages import RenderedMessage

from .helpers import Handoffs, email_outgoing, rendered_email, sms_outgoing


def test_the_console_prints_a_short_block_per_message(handoff: Handoffs) -> None:
    stream = io.StringIO()
    long_text = rendered_email(2)
    long_text.text = "".join(f"line {number}\n" for number in range(1, 10))
    with ConsoleTransport("email", stream) as email, ConsoleTransport("sms", stream) as sms:
        deliveries = [email.send(email_outgoing(1), handoff),
                      email.send(email_outgoing(2, message=long_text), handoff),
                      sms.send(sms_outgoing(3), handoff)]

    assert [delivery.status for delivery in deliveries] == [SENT] * 3
    assert handoff.calls == 3
    assert stream.getvalue() == """\
--- email #1 to ann@example.com (welcome/hello)
From:    Lumio <hello@lumio.example>
Subject: Welcome, Ann
    Hello Ann,

    thanks for signing up.

    . a line that starts with a dot

--- email #2 to ann@example.com (welcome/hello)
From:    Lumio <hello@lumio.example>
Subject: Welcome, Ann
    line 1
    line 2
    line 3
    line 4
    line 5
    line 6
    ... (3 more lines)

--- sms #3 to +33600000001 (cart/remind)
From:    LUMIO
    Your cart misses you: 10% off today

"""


def test_the_console_prints_to_standard_output_by_default(capsys, handoff: Handoffs) -> None:
    with ConsoleTransport("sms") as transport:
        transport.send(sms_outgoing(1), handoff)

    assert capsys.readouterr().out.startswith("--- sms #1 to +33600000001 (cart/remind)\n")


def test_the_file_transport_writes_one_file_per_key(tmp_path: Path, handoff: Handoffs) -> None:
    folder = tmp_path / "outbox"
    email = email_outgoing(1)
    with FileTransport("email", folder) as emails, FileTransport("sms", folder) as texts:
        first = emails.send(email, handoff)
        again = emails.send(email, handoff)  # the same key: the same file
        sms = texts.send(sms_outgoing(2), handoff)

    assert [first.status, again.status, sms.status] == [SENT] * 3
    assert handoff.calls == 0  # writing again replaces the same file: nothing to mark before it
    names = sorted(path.name for path in folder.iterdir())
    assert names == [first.provider_id, sms.provider_id]  # no temporary file left behind
    assert first.provider_id.startswith("e1_welcome_hello_0-") and first.provider_id.endswith(".eml")
    assert (folder / first.provider_id).read_bytes() == email.body
    assert message_from_bytes(email.body)["Message-ID"] == email.message_id
    assert (folder / sms.provider_id).read_text(encoding="utf-8") == (
        f"To: +33600000001\nFrom: LUMIO\nMessage-ID: {sms_outgoing(2).message_id}\n\n"
        "Your cart misses you: 10% off today")


def test_a_key_never_makes_a_path(tmp_path: Path, handoff: Handoffs) -> None:
    message = rendered_email(1)
    outgoing = email_outgoing(1, message=message)
    outgoing.key = "../../etc/passwd"
    with FileTransport("email", tmp_path / "out") as transport:
        delivery = transport.send(outgoing, handoff)

    assert delivery.status == SENT
    assert [path.parent for path in (tmp_path / "out").iterdir()] == [tmp_path / "out"]
    assert not delivery.provider_id.startswith(".")


def test_the_file_transport_says_retry_when_it_cannot_write(tmp_path: Path, handoff: Handoffs) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    with FileTransport("email", tmp_path / "taken" / "outbox") as transport:
        delivery = transport.send(email_outgoing(1), handoff)

    assert delivery.status == RETRY
    assert delivery.detail.startswith(f"could not create {tmp_path / 'taken' / 'outbox'}: ")
    assert handoff.calls == 0


def test_the_recording_transport_keeps_what_was_handed_off() -> None:
    transport = RecordingTransport("sms", script=[Delivery(RETRY, "HTTP 503")])
    handoff = Handoffs()
    with transport:
        first = transport.send(sms_outgoing(1), handoff)
        second = transport.send(sms_outgoing(2), handoff)

    assert (first.status, second.status) == (RETRY, SENT)
    assert [message.id for message in transport.sent] == [1, 2]
    assert (transport.opened, transport.closed, handoff.calls) == (1, 1, 2)


def test_backoff_doubles_from_a_minute_up_to_an_hour_with_full_jitter() -> None:
    assert [backoff(attempt, rng=lambda: 1.0) for attempt in range(1, MAX_ATTEMPTS + 1)] == \
        [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff(3, rng=lambda: 0.5) == 120
    assert backoff(5, rng=lambda: 0.0) == 0
    assert backoff(0, rng=lambda: 1.0) == 60  # an attempt below 1 counts as the first
    assert backoff(10_000, rng=lambda: 1.0) == 3600  # no overflow
    assert backoff(2, base=1, cap=10, rng=lambda: 1.0) == 2
    assert all(0 <= backoff(4) <= 480 for _ in range(200))
    assert MAX_ATTEMPTS == 8


def test_a_rendered_message_without_html_is_one_text_part(handoff: Handoffs) -> None:
    message: RenderedMessage = rendered_email(1, html=False)
    stream = io.StringIO()
    with ConsoleTransport("email", stream) as transport:
        transport.send(email_outgoing(1, message=message), handoff)

    assert "    Hello Ann," in stream.getvalue()


# --- one message's odd data never raises out of `send` (issue 10) ------------------------------------------

def test_the_file_transport_writes_odd_addresses_escaped_on_one_line(tmp_path: Path, handoff: Handoffs) -> None:
    outgoing = sms_outgoing(1, to="+336\nFrom: forged\x00\ud800")
    outgoing.sender = "LU\rMIO"
    with FileTransport("sms", tmp_path / "out") as transport:
        delivery = transport.send(outgoing, handoff)

    assert delivery.status == SENT, delivery.detail
    assert (tmp_path / "out" / delivery.provider_id).read_text(encoding="utf-8") == (
        f"To: +336\\nFrom: forged\\x00\\ud800\nFrom: LU\\rMIO\nMessage-ID: {outgoing.message_id}\n\n"
        "Your cart misses you: 10% off today")


def test_the_file_transport_names_a_key_that_is_not_text(tmp_path: Path, handoff: Handoffs) -> None:
    outgoing = email_outgoing(1)
    outgoing.key = "e1:\ud800:" + "x" * 400  # a lone surrogate: `key.encode()` raised UnicodeEncodeError
    with FileTransport("email", tmp_path / "out") as transport:
        delivery = transport.send(outgoing, handoff)

    assert delivery.status == SENT, delivery.detail
    assert len(delivery.provider_id) <= 140
    assert (tmp_path / "out" / delivery.provider_id).read_bytes() == outgoing.body


def test_the_file_transport_parks_a_message_it_cannot_make_bytes_of(tmp_path: Path, handoff: Handoffs) -> None:
    outgoing = sms_outgoing(1)
    outgoing.body = None  # type: ignore[assignment] - a row without a body
    with FileTransport("sms", tmp_path / "out") as transport:
        delivery = transport.send(outgoing, handoff)

    assert (delivery.status, delivery.detail) == (
        PARKED, "not written: TypeError: cannot convert 'NoneType' object to bytes")


def test_the_console_shows_control_characters_escaped(handoff: Handoffs) -> None:
    stream = io.StringIO()
    message = rendered_email(1, to="ann@example.com", first_name="Ann\x1b[2J")
    outgoing = email_outgoing(1, message=message)
    outgoing.to = "ann@example.com\n--- email #99 to forged"
    sms = sms_outgoing(2, text="Hi\x1b]0;owned\x07 there\u2028next")
    sms.sender = "LU\x00MIO"
    with ConsoleTransport("email", stream) as email, ConsoleTransport("sms", stream) as texts:
        deliveries = [email.send(outgoing, handoff), texts.send(sms, handoff)]

    assert [delivery.status for delivery in deliveries] == [SENT, SENT]
    printed = stream.getvalue()
    assert "\x1b" not in printed and "\x00" not in printed and "\x07" not in printed
    assert printed.splitlines()[0] == "--- email #1 to ann@example.com\\n--- email #99 to forged (welcome/hello)"
    assert "Subject: Welcome, Ann[2J" in printed  # the writer removed the ESC from the header
    assert "    Hello Ann\\x1b[2J," in printed  # the body keeps it, shown escaped
    assert "From:    LU\\x00MIO" in printed
    assert "    Hi\\x1b]0;owned\\x07 there\n    next" in printed


def test_the_console_escapes_what_its_stream_cannot_encode(tmp_path: Path, handoff: Handoffs) -> None:
    with open(tmp_path / "out.txt", "w", encoding="ascii") as stream, ConsoleTransport("sms", stream) as transport:
        delivery = transport.send(sms_outgoing(1, to="+33\ud800", text="Zoë"), handoff)

    assert delivery.status == SENT
    printed = (tmp_path / "out.txt").read_text(encoding="ascii")
    assert printed.startswith("--- sms #1 to +33\\ud800 (cart/remind)\n")
    assert "    Zo\\xeb\n" in printed


def test_the_console_says_retry_when_its_stream_is_closed(handoff: Handoffs) -> None:
    stream = io.StringIO()
    stream.close()
    with ConsoleTransport("sms", stream) as transport:
        delivery = transport.send(sms_outgoing(1), handoff)

    assert (delivery.status, delivery.detail) == (RETRY, "could not print to the console: I/O operation on closed file")
