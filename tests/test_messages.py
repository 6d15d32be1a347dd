"""The email writer (RenderedMessage.to_bytes): what it writes, read back with the standard library's parser."""
from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy

from hypothesis import given, settings
from hypothesis import strategies as st

from mauto.messages import RenderedMessage

UNSUBSCRIBE = "<https://shop.example.com/unsubscribe/" + "Y29udGFjdC0xMjM0NTY3ODk6ZW1haWw" * 3 + ".abcdefghij0123456789AB>"


def message(**changes) -> RenderedMessage:
    fields = dict(channel="email", contact="c1", to="ann@example.com", at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc),
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
    assert email["Date"].datetime == datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
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
    japanese = message(text="こんにちは、アンさん。ご登録ありがとうございます。\n", html="<p>ありがとうございます</p>\n")
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
