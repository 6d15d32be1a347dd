"""The email writer (RenderedMessage.to_bytes): what it writes, read back with the standard library's parser."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mauto.channels.base import Outgoing
from mauto.channels.smtp import envelope_sender
from mauto.engine.records import ContactState, Event
from mauto.errors import MautoError
from mauto.messages import RenderedMessage, header_safe

UNSUBSCRIBE = ("<https://shop.example.com/unsubscribe/" + "Y29udGFjdC0xMjM0NTY3ODk6ZW1haWw" * 3
               + ".abcdefghij0123456789AB>")


def message(**changes) -> RenderedMessage:
    fields = dict(channel="email", contact="c1", to="ann@example.com", at=datetime(2026, 12, 1, 9, tzinfo=UTC),
                  workflow="welcome", step="hello", template="hello", key="welcome:c1:1:hello:1", marketing=True,
                  text="Hello Ann\n", subject="Welcome", html="<p>Hello Ann</p>\n", sender="Shop <shop@example.com>",
                  headers={"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    fields.update(changes)
    return RenderedMessage(**fields)


def parsed(rendered: RenderedMessage):
    email = message_from_bytes(rendered.to_bytes(), policy=policy.default)
    assert not email.defects
    for part in email.walk():
        assert not part.defects, part.defects
    return email


def contents(email) -> dict[str, str]:
    if not email.is_multipart():
        return {email.get_content_type(): email.get_content()}
    return {part.get_content_type(): part.get_content() for part in email.iter_parts()}


def header_lines(data: bytes) -> list[str]:
    head = data.split(b"\n\n", 1)[0].decode("ascii")
    return head.split("\n")


def test_a_long_list_unsubscribe_url_stays_one_plain_line():
    data = message().to_bytes()
    lines = header_lines(data)
    (line,) = [line for line in lines if line.startswith("List-Unsubscribe:")]
    assert line == "List-Unsubscribe: " + UNSUBSCRIBE  # not folded, never an encoded word (=?utf-8?q?=3Chttps...)
    assert len(line) > 78
    assert lines[lines.index(line) + 1] == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    assert parsed(message())["List-Unsubscribe"] == UNSUBSCRIBE


def test_multipart_alternative_text_then_html_and_the_headers_read_back():
    email = parsed(message(headers={"Reply-To": "help@example.com"}))
    assert email.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in email.iter_parts()] == ["text/plain", "text/html"]
    assert contents(email) == {"text/plain": "Hello Ann\n", "text/html": "<p>Hello Ann</p>\n"}
    assert email["From"] == "Shop <shop@example.com>"
    assert email["To"] == "ann@example.com"
    assert email["Subject"] == "Welcome"
    assert email["Reply-To"] == "help@example.com"
    assert email["Message-ID"] == message().message_id
    assert email["Date"].datetime == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert email["MIME-Version"] == "1.0"


def test_a_text_only_message_is_one_text_part():
    email = parsed(message(html=None, text="Just text\n"))
    assert not email.is_multipart()
    assert contents(email) == {"text/plain": "Just text\n"}


def test_non_ascii_headers_are_encoded_words_and_read_back():
    rendered = message(subject="Ünïcode – a subject long enough to be folded over more than one line, really",
                       sender="Störe Team <shop@example.com>")
    email = parsed(rendered)
    assert email["Subject"] == rendered.subject
    assert email["From"].addresses[0].display_name == "Störe Team"
    assert email["From"].addresses[0].addr_spec == "shop@example.com"
    lines = header_lines(rendered.to_bytes())  # all ASCII (decode would raise), every line short
    assert all(len(line) <= 78 for line in lines if not line.startswith("List-Unsubscribe:"))


def test_a_long_ascii_subject_is_folded_at_spaces_and_unfolds_to_itself():
    subject = " ".join(f"word{n}" for n in range(40))
    data = message(subject=subject).to_bytes()
    lines = header_lines(data)
    start = next(n for n, line in enumerate(lines) if line.startswith("Subject:"))
    assert lines[start + 1].startswith(" ")  # folded: the next line continues the header
    assert all(len(line) <= 78 for line in lines if not line.startswith("List-Unsubscribe:"))
    assert parsed(message(subject=subject))["Subject"] == subject


def test_bodies_choose_7bit_quoted_printable_or_base64():
    def encodings(rendered):
        email = message_from_bytes(rendered.to_bytes(), policy=policy.default)
        return [part["Content-Transfer-Encoding"] for part in email.iter_parts()]

    assert encodings(message()) == ["7bit", "7bit"]
    latin = message(text="Prix : 10 € = pas cher\n", html="<p>Crème brûlée</p>\n")
    assert encodings(latin) == ["quoted-printable", "quoted-printable"]
    japanese = message(text="こんにちは、アンさん。ご登録ありがとうございます。\n",
                       html="<p>ありがとうございます</p>\n")
    assert encodings(japanese) == ["base64", "base64"]
    long_line = message(text="x" * 2000 + "\n")  # ASCII, but over SMTP's 998-octet line limit
    assert encodings(long_line)[0] == "quoted-printable"
    for rendered in (latin, japanese, long_line):
        assert contents(parsed(rendered)) == {"text/plain": rendered.text, "text/html": rendered.html}
        assert max(len(line) for line in rendered.to_bytes().split(b"\n")) <= 998


def test_a_body_holding_the_boundary_gets_another_one():
    first = message().to_bytes()
    boundary = first.split(b'boundary="', 1)[1].split(b'"', 1)[0].decode()
    rendered = message(text=f"--{boundary}\nsneaky\n")
    assert boundary.encode() not in rendered.to_bytes().split(b"\n\n", 1)[0]
    assert contents(parsed(rendered)) == {"text/plain": rendered.text, "text/html": rendered.html}


def test_a_line_break_in_contact_data_adds_no_header():
    rendered = message(subject="Hi Ann\r\nBcc: everyone@example.com", to="ann@example.com\nBcc: x@example.com",
                       headers={"Reply-To": "a@example.com\r\nX-Injected: yes"})
    email = parsed(rendered)
    assert email["Bcc"] is None and email["X-Injected"] is None
    assert email["Subject"] == "Hi Ann Bcc: everyone@example.com"


def test_the_same_message_gives_the_same_bytes():
    assert message().to_bytes() == message().to_bytes()
    assert message().to_bytes() != message(key="welcome:c2:1:hello:1").to_bytes()


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"), max_size=300)


@settings(max_examples=150, deadline=None)
@given(subject=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200), text=texts, html=texts)
def test_any_subject_and_bodies_read_back_unchanged(subject, text, html):
    rendered = message(subject=subject, text=text, html=html)
    data = rendered.to_bytes()
    assert data.isascii()  # 7bit, quoted-printable, base64 and encoded words only: no 8BITMIME needed
    assert max(len(line) for line in data.split(b"\n")) <= 998
    email = message_from_bytes(data, policy=policy.default)
    assert email["Subject"] == " ".join(subject.split()) or email["Subject"] == subject.strip()
    assert contents(email) == {"text/plain": text.replace("\r\n", "\n"), "text/html": html.replace("\r\n", "\n")}


# --- contact data that used to break the writer (issue 10) -----------------------------------------------

def utf8_parsed(rendered: RenderedMessage):
    """Read back a message whose head may be UTF-8 (RFC 6532): the bytes parser would take it as unknown-8bit."""
    return message_from_string(rendered.to_bytes().decode("utf-8"), policy=policy.default)


def test_a_non_ascii_local_part_is_written_as_utf8_per_rfc_6532():
    rendered = message(to="josé@example.com")
    data = rendered.to_bytes()  # raised UnicodeEncodeError in formataddr
    assert "To: josé@example.com".encode() in data.split(b"\n")
    email = utf8_parsed(rendered)
    assert email["To"].addresses[0].addr_spec == "josé@example.com"
    assert email["Subject"] == "Welcome"


def test_an_idn_domain_goes_out_in_its_ascii_form_and_a_non_ascii_name_stays_an_encoded_word():
    rendered = message(to="user@bücher.example", sender="Zoë Störe <josé@Bücher.example>")
    data = rendered.to_bytes()
    lines = header_lines(data.replace("josé".encode(), b"jose"))
    assert "To: user@xn--bcher-kva.example" in lines
    assert "From: =?utf-8?b?Wm/DqyBTdMO2cmU=?= <jose@xn--bcher-kva.example>" in lines  # "Zoë Störe"
    email = utf8_parsed(rendered)
    assert email["From"].addresses[0].display_name == "Zoë Störe"
    assert email["From"].addresses[0].addr_spec == "josé@xn--bcher-kva.example"
    assert message(to="user@bücher.example").to_bytes().isascii()  # no SMTPUTF8 needed for an IDN domain


def test_a_line_separator_in_an_address_neither_raises_nor_breaks_the_header():
    rendered = message(to="ann\u2028@example.com", sender="Ann\u2029Shop <shop@example.com>")
    data = rendered.to_bytes()  # raised UnicodeEncodeError
    head = data.split(b"\n\n", 1)[0].decode("utf-8")
    assert "\u2028" not in head and "\u2029" not in head
    email = utf8_parsed(rendered)
    assert email["From"].addresses[0].display_name == "Ann Shop"


def test_a_2000_character_first_name_is_folded_and_reads_back():
    name = "A" * 2000
    rendered = message(subject=f"Welcome, {name}", sender=f"{name} Shop <shop@example.com>",
                       headers={"Reply-To": f"{name} <care@example.com>"})
    lines = header_lines(rendered.to_bytes())
    assert all(len(line) <= 78 for line in lines if not line.startswith("List-Unsubscribe:"))  # was 2,010
    email = parsed(rendered)
    assert email["Subject"] == f"Welcome, {name}"
    assert email["From"].addresses[0].addr_spec == "shop@example.com"
    # Python's address parser keeps the spaces between encoded words of a phrase (RFC 2047 §6.2 drops them)
    assert rfc2047(rendered, "From") == f"{name} Shop <shop@example.com>"
    assert rfc2047(rendered, "Reply-To") == f"{name} <care@example.com>"

    words = " ".join(["Ann"] * 500)  # a long name of short words is folded at its spaces and stays plain
    rendered = message(subject=f"Welcome, {words}", sender=f"{words} <shop@example.com>")
    lines = header_lines(rendered.to_bytes())
    assert all(len(line) <= 78 for line in lines if not line.startswith("List-Unsubscribe:"))
    assert not any("=?" in line for line in lines)
    email = parsed(rendered)
    assert email["Subject"] == f"Welcome, {words}"
    assert email["From"].addresses[0].display_name == words


def rfc2047(rendered: RenderedMessage, name: str) -> str:
    """A header's value unfolded and decoded as RFC 2047 says (`email.header.decode_header`)."""
    raw = message_from_bytes(rendered.to_bytes(), policy=policy.compat32)[name]
    return str(make_header(decode_header(raw)))


def test_no_folded_line_is_white_space_only():
    subject = "a" * 69 + "  " + "b" * 77  # a fold before the empty word between the two spaces left " " alone
    lines = header_lines(message(subject=subject).to_bytes())
    assert all(line.strip() for line in lines)
    assert parsed(message(subject=subject))["Subject"] == subject


def test_control_characters_never_reach_a_header_raw():
    subject = "Hi\x0bAnn\x0c\x00\x7f\x1b[31m\x85\u2028x\u2029 and\tTab"
    rendered = message(subject=subject, sender="Sh\x00op\x9b <shop@example.com>", to="ann@exam\x01ple.com")
    head = rendered.to_bytes().split(b"\n\n", 1)[0].decode("ascii")
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", head)
    email = parsed(rendered)
    # line breaks of every kind and tabs are spaces; the other controls are removed
    assert email["Subject"] == "Hi Ann [31m x  and Tab"
    assert email["From"].addresses[0].display_name == "Shop"
    assert email["To"] == "ann@example.com"


def test_something_that_reads_as_an_encoded_word_is_encoded_so_it_reads_back_as_written():
    subject = "=?utf-8?q?Bcc=3A_x?= really"
    assert parsed(message(subject=subject))["Subject"] == subject
    assert parsed(message(sender="=?utf-8?q?Boss?= <shop@example.com>"))["From"].addresses[0].display_name == \
        "=?utf-8?q?Boss?="


def test_a_list_unsubscribe_url_too_long_for_a_header_line_is_left_out_never_folded():
    url = "<https://shop.example.com/u/" + "x" * 1000 + ">"
    rendered = message(headers={"List-Unsubscribe": url, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    data = rendered.to_bytes()
    assert max(len(line) for line in data.split(b"\n")) <= 998
    assert b"List-Unsubscribe:" not in data  # MessageRenderer refuses to make such a message: see below


def test_an_odd_header_name_or_a_second_from_is_not_written():
    rendered = message(headers={"X-Ok": "yes", "Bad Name": "x", "Bcc:": "a@b.c", "from": "evil@example.com",
                                "Content-Type": "text/plain"})
    head = rendered.to_bytes().split(b"\n\n", 1)[0].decode()
    assert "X-Ok: yes" in head.split("\n")
    assert [line.split(":")[0] for line in head.split("\n") if not line.startswith(" ")] == [
        "From", "To", "Subject", "Date", "Message-ID", "X-Ok", "MIME-Version", "Content-Type"]


def test_a_lone_surrogate_anywhere_is_replaced_not_raised():
    rendered = message(subject="a\ud800b", text="x\udfffy\n", html="<p>\ud83d</p>\n", to="\ud800@example.com",
                       key="k\ud800")
    email = utf8_parsed(rendered)
    assert email["Subject"] == "a\ufffdb"
    assert contents(email)["text/plain"] == "x\ufffdy\n"


def test_write_makes_a_bounded_safe_name_for_a_300_character_contact_id(tmp_path):
    contact = "c" * 300
    rendered = message(contact=contact, workflow="w" * 200, step="s" * 200)
    path = rendered.write(tmp_path / "out", 1)  # was OSError: File name too long
    assert path.is_file() and (tmp_path / "out") in path.parents
    assert len(path.name) <= 140 and len(path.parent.name) <= 140
    assert path.parent.name.startswith("c" * 120 + "-")
    assert path.name.startswith("001-20261201T0900-www") and path.name.endswith(".eml")
    other = message(contact="c" * 299 + "d").write(tmp_path / "out", 1)
    assert other.parent != path.parent  # the hash of the whole id keeps two long ids apart
    sms = message(channel="sms", contact="../../x", to="+3360000\n0000").write(tmp_path / "out", 2)
    assert (tmp_path / "out") in sms.parents
    assert sms.read_text(encoding="utf-8").startswith("To: +3360000 0000\nAt: ")


def test_write_says_which_file_it_cannot_write(tmp_path):
    (tmp_path / "out").write_text("a file, not a folder")
    with pytest.raises(MautoError, match=r"^--render: cannot write .*out/c1/001-20261201T0900-welcome-hello.eml: "):
        message().write(tmp_path / "out", 1)


# --- the header writer never raises, never breaks a line, never adds a header ------------------------

_ANY = st.characters(codec=None, categories=None, exclude_categories=())  # controls and lone surrogates too
any_text = st.one_of(
    st.text(_ANY, max_size=120),
    st.builds(lambda part, times: part * times, st.text(_ANY, min_size=1, max_size=6), st.integers(1, 600)))
addresses = st.one_of(
    any_text, st.emails(),
    st.builds(lambda local, domain: f"{local}@{domain}",
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1, max_size=70),
              st.sampled_from(["example.com", "bücher.example", "例え.jp", "xn--bcher-kva.example", "-x-.com"])))
HEAD_NAMES = ["From", "To", "Subject", "Date", "Message-ID", "Reply-To", "X-Campaign", "List-Unsubscribe",
              "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]


@settings(max_examples=300, deadline=None)
@given(name=any_text, subject=any_text, to=addresses, sender=addresses, reply_to=any_text, campaign=any_text,
       unsubscribe=any_text)
def test_to_bytes_never_raises_and_keeps_every_header_whole(name, subject, to, sender, reply_to, campaign,
                                                            unsubscribe):
    rendered = message(subject=f"Welcome, {name}! {subject}", to=to, sender=f"{name} <{sender}>",
                       headers={"Reply-To": reply_to, "X-Campaign": campaign, "List-Unsubscribe": unsubscribe,
                                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    data = rendered.to_bytes()
    assert max(len(line) for line in data.split(b"\n")) <= 998
    head = data.split(b"\n\n", 1)[0].decode("utf-8")  # ASCII, or UTF-8 for an address (RFC 6532): never other bytes
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]", head)
    lines = head.split("\n")
    assert all(line.strip() for line in lines)  # no folded line of white space only
    starts = [line.split(":", 1)[0] for line in lines if not line.startswith(" ")]
    assert [name for name in starts if name != "List-Unsubscribe"] == \
        [name for name in HEAD_NAMES if name != "List-Unsubscribe"]  # nothing added, nothing lost
    assert all(len(line) <= 78 for line in _header_lines(lines, "Subject"))
    email = message_from_string(data.decode("utf-8"), policy=policy.default)
    assert " ".join(email["Subject"].split()) == " ".join(header_safe(rendered.subject).split())


def _header_lines(lines: list[str], name: str) -> list[str]:
    """The lines of one header: its first and the folded ones after it."""
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{name}:"))
    following = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" "):
            break
        following.append(line)
    return following


def test_the_unsubscribe_link_carries_no_contact_id_so_a_long_one_gets_its_mail(tmp_path):
    # Before refs, the link carried the contact id: an id of 800 characters made it too long for the header,
    # and that contact's enrollment failed. The link now names the message by its ref: the same length for all.
    from tests.engine.conftest import SimProject

    sim = SimProject(tmp_path)
    long_id = "c" * 800
    start = datetime(2026, 6, 10, tzinfo=UTC)
    contacts = [ContactState(contact, {"email": "ann@example.com", "email_consent": True})
                for contact in ("c1", long_id, "c3")]
    workflow = "id: hi\nversion: 1\nname: hi\ntrigger: {event: signed_up}\nsteps:\n  - id: hello\n    email: t/hi\n"
    result = sim.run([workflow], contacts,
                     [Event(contact.id, "signed_up", start + timedelta(hours=1)) for contact in contacts],
                     start, start + timedelta(days=1))
    assert [message.contact for message in result.messages] == ["c1", long_id, "c3"]
    assert len({len(message.headers["List-Unsubscribe"]) for message in result.messages}) == 1
    assert not [entry for entry in result.timeline if entry.kind == "failed"]


# --- a template's `from:`: the address is what the template wrote, never what the data made -------------------

def _sent_from(tmp_path, from_source: str, first_names: list[str]):
    """Simulate `t/from` (front matter `from: <from_source>`) for one contact per first name: (messages, failures)."""
    from tests.engine.conftest import SimProject

    sim = SimProject(tmp_path)
    (tmp_path / "templates" / "t" / "from.email.html").write_text(
        f"---\nsubject: hi\nfrom: {json.dumps(from_source)}\n---\n<p>hi</p>\n", encoding="utf-8")
    start = datetime(2026, 6, 10, tzinfo=UTC)
    contacts = [ContactState(f"c{index}", {"email": "ann@example.com", "email_consent": True, "first_name": name})
                for index, name in enumerate(first_names)]
    workflow = "id: hi\nversion: 1\nname: hi\ntrigger: {event: signed_up}\nsteps:\n  - id: hello\n    email: t/from\n"
    result = sim.run([workflow], contacts,
                     [Event(contact.id, "signed_up", start + timedelta(hours=1)) for contact in contacts],
                     start, start + timedelta(days=1))
    return result.messages, [entry for entry in result.timeline if entry.kind == "failed"]


def _mailboxes(rendered: RenderedMessage) -> list[tuple[str, str]]:
    from_header = parsed(rendered)["From"]
    assert not from_header.defects, from_header.defects
    return [(address.display_name, address.addr_spec) for address in from_header.addresses]


@pytest.mark.parametrize(("first_name", "display_name"), [
    ("Jo <jo@evil.example>, Smith", "Jo <jo@evil.example>, Smith at Shop"),
    ('Jo "x" \\ <jo@evil.example>', 'Jo "x" \\ <jo@evil.example> at Shop'),
    ("Jo\r\nBcc: jo@evil.example", "Jo Bcc: jo@evil.example at Shop"),
    ("Zoë <zoë@evil.example>", "Zoë <zoë@evil.example> at Shop"),
    ("=?utf-8?q?jo=40evil.example?=", "=?utf-8?q?jo=40evil.example?= at Shop"),
    ("Ann", "Ann at Shop"),
])
def test_contact_data_in_a_from_display_name_stays_a_name(tmp_path, first_name, display_name):
    # Before: `Jo <jo@evil.example>, Smith at Shop <shop@example.com>`, two mailboxes, jo@evil.example first
    # (the envelope sender too).
    messages, failures = _sent_from(tmp_path, "{{ contact.first_name }} at Shop <shop@example.com>", [first_name])

    assert failures == []
    [rendered] = messages
    assert _mailboxes(rendered) == [(display_name, "shop@example.com")]
    row = Outgoing(1, "k", "email", "ann@example.com", rendered.sender, "<m@mauto>", b"", "c0", "hi", "hello")
    assert envelope_sender(row) == "shop@example.com"  # from the outbox row's `sender`, as the SMTP transport does


def test_a_literal_display_name_with_a_comma_is_one_mailbox(tmp_path):
    # Before: `Shop, Inc. <shop@example.com>` as written: two mailboxes, `Shop` (no address) and `Inc.`.
    messages, _ = _sent_from(tmp_path, "Shop, Inc. <shop@example.com>", ["Ann"])
    quoted, _ = _sent_from(tmp_path, '"Shop, Inc." <shop@example.com>', ["Ann"])

    assert messages[0].sender == quoted[0].sender == '"Shop, Inc." <shop@example.com>'
    assert _mailboxes(messages[0]) == [("Shop, Inc.", "shop@example.com")]


def test_a_display_name_rendering_empty_leaves_the_address(tmp_path):
    messages, _ = _sent_from(tmp_path, "{{ contact.first_name }} <shop@example.com>", ["", " \n "])

    assert [message.sender for message in messages] == ["shop@example.com", "shop@example.com"]


def test_a_templated_address_must_render_to_one_address_else_that_enrollment_fails(tmp_path):
    # Before: `a@x.example, b@y.example` went out as the From header, a@x.example as the envelope sender.
    messages, failures = _sent_from(tmp_path, "{{ contact.first_name }}",
                                    ["news@shop.example", "a@x.example, b@y.example", "Jo <jo@evil.example>", ""])

    assert [(message.contact, message.sender) for message in messages] == [("c0", "news@shop.example")]
    assert [failure.contact for failure in failures] == ["c1", "c2", "c3"]
    assert failures[0].detail == (
        "template t/from: templates/t/from.email.html:3:7: front matter `from`: the address "
        "`{{ contact.first_name }}` does not render to one email address for contact `c1`; write the address out: "
        "`{{ … }} at Shop <shop@example.com>`")


def test_a_templated_address_in_angle_brackets_is_checked_too(tmp_path):
    messages, failures = _sent_from(tmp_path, "Shop <{{ contact.first_name }}@shop.example>",
                                    ["news", "x@evil.example> <y"])

    assert [message.sender for message in messages] == ["Shop <news@shop.example>"]
    assert [failure.contact for failure in failures] == ["c1"]


@pytest.mark.both_stores
@pytest.mark.usefixtures("cli_environment")  # a PostgreSQL store's releases go to tmp_path
def test_over_smtp_the_envelope_sender_and_the_outbox_row_are_the_templates_address(daemon):
    # A real SMTP server on 127.0.0.1: MAIL FROM, the From header and the outbox's `sender` column.
    from tests.daemon.harness import T0, write

    write(daemon.root / "templates" / "promo" / "hello.email.html",
          '---\nsubject: "hello"\nfrom: "{{ contact.first_name }} at Shop <shop@example.com>"\n---\n'
          '<p>hello</p><a href="{{ unsubscribe_url }}">unsubscribe</a>\n')
    from mauto.deploy import deploy

    deploy(daemon.project, daemon.store, T0 - timedelta(minutes=30))  # the daemon sends what was deployed
    daemon.store.db.execute("UPDATE contacts SET fields = ? WHERE id = 'ana'",
                            [json.dumps({"first_name": 'Jo "<jo@evil.example>", \\ Smith'})])
    daemon.store.db.commit()
    daemon.event("ana", "signed_up", T0)
    daemon.tick(T0 + timedelta(minutes=1))

    [received] = daemon.smtp.messages
    assert received.mail_from == "shop@example.com"
    from_header = message_from_bytes(received.content, policy=policy.default)["From"]
    assert [(address.display_name, address.addr_spec) for address in from_header.addresses] == [
        ('Jo "<jo@evil.example>", \\ Smith at Shop', "shop@example.com")]
    assert daemon.rows("SELECT sender FROM messages") == [
        ('"Jo \\"<jo@evil.example>\\", \\\\ Smith at Shop" <shop@example.com>',)]


def test_a_template_s_reply_to_is_used_and_stays_one_mailbox(tmp_path):
    # `reply_to:` was an accepted front matter key that nothing read; it is rendered as `from:` is.
    from tests.engine.conftest import SimProject

    sim = SimProject(tmp_path)
    (tmp_path / "templates" / "t" / "reply.email.html").write_text(
        '---\nsubject: hi\nreply_to: "{{ contact.first_name }} desk <desk@example.com>"\n---\n<p>hi</p>\n',
        encoding="utf-8")
    start = datetime(2026, 6, 10, tzinfo=UTC)
    contact = ContactState("c1", {"email": "ann@example.com", "email_consent": True,
                                  "first_name": "Jo <jo@evil.example>, Smith"})
    workflow = "id: hi\nversion: 1\nname: hi\ntrigger: {event: signed_up}\nsteps:\n  - id: hello\n    email: t/reply\n"
    result = sim.run([workflow], [contact], [Event("c1", "signed_up", start + timedelta(hours=1))],
                     start, start + timedelta(days=1))
    [message] = result.messages
    header = parsed(message)["Reply-To"]
    assert not header.defects
    assert [(address.display_name, address.addr_spec) for address in header.addresses] == [
        ("Jo <jo@evil.example>, Smith desk", "desk@example.com")]
