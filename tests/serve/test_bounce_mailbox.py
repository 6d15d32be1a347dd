"""`mauto.bounces`: the bounce mailbox read into `Feedback` records.

The samples in bounce_data/ are delivery status notifications as Postfix, Exim, Gmail, Exchange Online and
qmail write them, an ARF spam complaint (RFC 5965) and a vacation reply, each delivered to a VERP address of
`bounces@mail.shop.example`. The tests put them into real Maildir folders and mbox files in tmp_path (with the
stdlib's `mailbox`, as a mail delivery agent would) and read them back."""
from __future__ import annotations

import mailbox
import subprocess
import sys
import time
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.bounces import Found, read_bounces, read_message
from mauto.errors import MautoError
from mauto.feedback import COMPLAINT, HARD_BOUNCE, SOFT_BOUNCE, Feedback
from mauto.links import REF

DATA = Path(__file__).parent / "bounce_data"
BOUNCE = "bounces@mail.shop.example"
NO_REF = ("no mauto ref in the recipient address (Delivered-To, X-Original-To, Envelope-To, X-Envelope-To, To, "
          "Return-Path)")
# The refs the samples carry (made by mauto.links.Signer("fixture").ref(...)).
POSTFIX, DELAYED, EXIM, GMAIL = "epUraTH-ad51u53UasaUSg", "6BdKDmgeSnqlzzeqY-ZhNO", "OgE67PNNWdbgXV3dObpPNb", \
    "vgITeoGrUaajsKYUaYdju9"
EXCHANGE, QMAIL, ARF, VACATION = "9NowZ9g_TLQLxESysJuzdt", "GFvbwzkEkqawR8aQ9gmBOM", "YVhIFfd7k7XyPm4v2ONN2f", \
    "nPth5ZQv5N_1A0MvaHZYG9"


def sample(name: str, *replacements: tuple[str, str]) -> bytes:
    """A sample message, with each (old, new) replaced (each `old` must be there)."""
    text = (DATA / f"{name}.eml").read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return text.encode("utf-8")


def make_maildir(folder: Path, messages: list[bytes]) -> list[str]:
    """A Maildir holding `messages` (delivered in that order); their keys."""
    box = mailbox.Maildir(folder, create=True)
    return [box.add(message) for message in messages]


def make_mbox(path: Path, messages: list[bytes]) -> None:
    box = mailbox.mbox(path, create=True)
    for message in messages:
        box.add(message)
    box.close()


def read_one(tmp_path: Path, message: bytes) -> list[Found]:
    """What an mbox holding only `message` reads as."""
    (tmp_path / "one.mbox").unlink(missing_ok=True)
    make_mbox(tmp_path / "one.mbox", [message])
    return list(read_bounces(tmp_path / "one.mbox", BOUNCE))


def bounce(kind: str, address: str | None, ref: str, at: datetime | None, reason: str, id: str | None) -> Feedback:
    return Feedback(kind=kind, provider="mailbox", address=address, ref=ref, at=at, reason=reason, id=id)


# --- bounces as each mail system writes them ---------------------------------------------------------------------

def test_a_maildir_of_bounces_from_postfix_exim_gmail_exchange_and_qmail(tmp_path: Path) -> None:
    folder = tmp_path / "bounces"
    keys = make_maildir(folder, [sample(name) for name in (
        "postfix_failed", "postfix_delayed", "exim_failed", "gmail_failed", "exchange_failed", "qmail_failed")])
    gmail_diagnostic = (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 "
        "double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. For more "
        "information, go to 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser "
        "a640c23a62f3a-a5a17b01829si123456566b.123 - gsmtp")
    assert len(gmail_diagnostic) > 300
    assert all(REF.fullmatch(ref) for ref in (POSTFIX, DELAYED, EXIM, GMAIL, EXCHANGE, QMAIL, ARF, VACATION))

    found = list(read_bounces(folder, BOUNCE))

    assert found == [Found(f"{folder}:{key}", feedback, None) for key, feedback in zip(keys, [
        # Delivered-To names the VERP address; the reason is the Diagnostic-Code, unfolded, without `smtp;`
        bounce(HARD_BOUNCE, "nobody@customer.example", POSTFIX, datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC),
               "550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown in virtual "
               "mailbox table", "<4VfL2m0Qk1z9sXy.1715677923@mx.shop.example>"),
        # Action: delayed is a soft bounce; a Diagnostic-Code without a status code gets the Status before it.
        # Delivered-To is the mailbox's own address (no ref): X-Original-To has the VERP address.
        bounce(SOFT_BOUNCE, "slow@busy.example", DELAYED, datetime(2024, 5, 14, 13, 15, 40, tzinfo=UTC),
               "4.4.1 connect to mx.busy.example[198.51.100.40]:25: Connection timed out",
               "<4VfM8r2Hd7z9sZa.1715692540@mx.shop.example>"),
        # Exim's Envelope-to; its Date in +0200, given in UTC
        bounce(HARD_BOUNCE, "full.box@customer.example", EXIM, datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC),
               "552 5.2.2 Mailbox full", "<E1s6q2L-000Abc-1x@mx2.shop.example>"),
        # only To names the VERP address; the reason is cut at 300 characters
        bounce(HARD_BOUNCE, "gone.away@gmail.com", GMAIL, datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC),
               gmail_diagnostic[:299] + "…", "<66433d6b.050a0220.3a8c1.5b2eGMR@mx.google.com>"),
        # X-Envelope-To; the recipient as Exchange spells it; a folded Message-ID
        bounce(HARD_BOUNCE, "Former.Staff@contoso.com", EXCHANGE, datetime(2024, 5, 14, 9, 12, 4, tzinfo=UTC),
               "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
               "<b7d1c6a2-8f0e-4f3c-a1e9-0d5c3b2a1f00@DB9PR01MB1234.eurprd01.prod.exchangelabs.com>"),
        # no delivery-status part (flufl.bounce's qmail heuristics find the address): no reason; no Message-ID;
        # a Date in -0000 (UTC, RFC 5322 3.3)
        bounce(HARD_BOUNCE, "no.such.user@qmail.example", QMAIL, datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC),
               "", None),
    ], strict=True)]


def test_the_same_bounces_in_an_mbox_are_numbered_from_1(tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    make_mbox(path, [sample("exim_failed"), sample("vacation"), sample("postfix_delayed")])

    found = list(read_bounces(path, BOUNCE))

    assert [(item.where, item.feedback and (item.feedback.kind, item.feedback.ref), item.problem)
            for item in found] == [
        (f"{path}:1", (HARD_BOUNCE, EXIM), None),
        (f"{path}:2", None, "an automatic reply, not a bounce (Auto-Submitted: auto-replied (vacation))"),
        (f"{path}:3", (SOFT_BOUNCE, DELAYED), None),
    ]


def test_one_feedback_per_failed_recipient_hard_ones_first_each_with_its_own_id(tmp_path: Path) -> None:
    diagnostic = "    rejected: User unknown in virtual mailbox table\n"
    two = sample("postfix_failed", (
        diagnostic,
        diagnostic + "\n"
        "Final-Recipient: rfc822; later@customer.example\n"
        "Action: delayed\n"
        "Status: 4.2.2\n"
        "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\n\n"
        "Final-Recipient: rfc822; also.gone@customer.example\n"
        "Action: failed (bad destination mailbox address)\n"
        "Status: 5.1.1\n"))
    at = datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC)
    mid = "<4VfL2m0Qk1z9sXy.1715677923@mx.shop.example>"

    found = read_one(tmp_path, two)

    assert [item.feedback for item in found] == [
        bounce(HARD_BOUNCE, "also.gone@customer.example", POSTFIX, at, "5.1.1", f"{mid} also.gone@customer.example"),
        bounce(HARD_BOUNCE, "nobody@customer.example", POSTFIX, at,
               "550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown in virtual "
               "mailbox table", f"{mid} nobody@customer.example"),
        bounce(SOFT_BOUNCE, "later@customer.example", POSTFIX, at, "452 4.2.2 Mailbox full",
               f"{mid} later@customer.example"),
    ]


def test_a_dsn_whose_recipient_flufl_bounce_cannot_read_gives_no_address(tmp_path: Path) -> None:
    # An internationalised address (RFC 6533 `utf-8` address type): flufl.bounce only reads `rfc822`. The
    # message is ours (the ref) and failed: the store uses the address it was sent to.
    found = read_one(tmp_path, sample(
        "postfix_failed", ("Final-Recipient: rfc822; nobody@customer.example\nOriginal-Recipient: "
                           "rfc822;nobody@customer.example\n", "Final-Recipient: utf-8; josé@customer.example\n")))

    assert [item.feedback for item in found] == [
        bounce(HARD_BOUNCE, None, POSTFIX, datetime(2024, 5, 14, 9, 12, 3, tzinfo=UTC),
               "550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown in virtual "
               "mailbox table", "<4VfL2m0Qk1z9sXy.1715677923@mx.shop.example>")]


def test_a_non_utf8_action_header_still_reads_as_a_bounce(tmp_path: Path) -> None:
    # flufl.bounce's DSN detector raises on it (the header is an email.header.Header, which has no .lower())
    broken = sample("postfix_failed").replace(b"Action: failed", b"Action: failed \xff\xfe")

    found = read_one(tmp_path, broken)

    assert [(item.feedback and (item.feedback.kind, item.feedback.address, item.feedback.ref), item.problem)
            for item in found] == [((HARD_BOUNCE, None, POSTFIX), None)]


def test_a_ref_written_in_lower_case_is_taken_in_the_case_another_header_keeps(tmp_path: Path) -> None:
    # Postfix's local and virtual delivery agents write Delivered-To in lower case; the DSN's To keeps the case
    lowered = sample("postfix_failed", ("Delivered-To: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example",
                                        "Delivered-To: bounces+epurath-ad51u53uasausg@mail.shop.example"))
    assert [item.feedback and item.feedback.ref for item in read_one(tmp_path, lowered)] == [POSTFIX]


def test_huge_headers_still_read_and_problems_stay_one_short_line(tmp_path: Path) -> None:
    folded = "X-Tracking: " + "\n ".join(["t" * 990] * 100) + "\n"
    bounce_with_big_header = sample("postfix_failed", ("Auto-Submitted: auto-replied\n",
                                                       "Auto-Submitted: auto-replied\n" + folded))
    report = sample("arf_abuse", ("Feedback-Type: abuse", "Feedback-Type: " + "abuse" * 20_000))

    found = read_one(tmp_path, bounce_with_big_header) + read_one(tmp_path, report)

    assert [(item.feedback and item.feedback.ref, item.problem) for item in found] == [
        (POSTFIX, None), (None, "a feedback report of type " + ("abuse" * 60)[:273] + "…")]
    assert all(len(item.problem) == 300 for item in found if item.problem)


def test_a_success_notification_is_not_a_bounce(tmp_path: Path) -> None:
    found = read_one(tmp_path, sample("postfix_failed", ("Action: failed", "Action: delivered")))

    assert [(item.feedback, item.problem) for item in found] == [
        (None, "a delivery status notification that reports no failure (Action: delivered)")]
    found = read_one(tmp_path, sample("postfix_failed", ("Action: failed\n", "")))
    assert [(item.feedback, item.problem) for item in found] == [
        (None, "a delivery status notification that names no recipient (no Action)")]


def test_a_date_that_is_missing_or_not_a_date_is_none(tmp_path: Path) -> None:
    found = read_one(tmp_path, sample("exim_failed", ("Date: Tue, 14 May 2024 11:12:03 +0200", "Date: soon")))
    assert [item.feedback.at for item in found if item.feedback] == [None]
    found = read_one(tmp_path, sample("qmail_failed", ("Date: 14 May 2024 09:12:03 -0000\n", "")))
    assert [item.feedback.at for item in found if item.feedback] == [None]


# --- complaints (ARF, RFC 5965) -----------------------------------------------------------------------------------

COMPLAINED = bounce(COMPLAINT, None, ARF, datetime(2024, 5, 16, 8, 0, tzinfo=UTC),
                    "Feedback-Type: abuse; User-Agent: SomeGenerator/1.0", "<fbl-20240516-0800-42@isp.example>")
ORIGINAL_MAIL_FROM = ("Original-Mail-From: <bounces+YVhIFfd7k7XyPm4v2ONN2f@mail.shop.example>\n", "")
RETURN_PATH = ("Return-Path: <bounces+YVhIFfd7k7XyPm4v2ONN2f@mail.shop.example>\n", "")
MAUTO_REF = ("X-Mauto-Ref: YVhIFfd7k7XyPm4v2ONN2f\n", "")


@pytest.mark.parametrize("replacements", [
    pytest.param((), id="Original-Mail-From of the report"),
    pytest.param((ORIGINAL_MAIL_FROM,), id="Return-Path of the reported message"),
    pytest.param((ORIGINAL_MAIL_FROM, RETURN_PATH), id="X-Mauto-Ref of the reported message"),
    pytest.param((ORIGINAL_MAIL_FROM, RETURN_PATH, ("Content-Type: message/rfc822",
                                                    "Content-Type: text/rfc822-headers")),
                 id="X-Mauto-Ref of the reported headers"),
])
def test_an_abuse_report_is_a_complaint_about_the_message_it_names(
        tmp_path: Path, replacements: tuple[tuple[str, str], ...]) -> None:
    # No address: feedback loops often redact the recipient; the message the ref names has the real one.
    assert [(item.feedback, item.problem) for item in read_one(tmp_path, sample("arf_abuse", *replacements))] \
        == [(COMPLAINED, None)]


def test_an_abuse_report_naming_no_message_of_ours_is_a_problem(tmp_path: Path) -> None:
    found = read_one(tmp_path, sample("arf_abuse", ORIGINAL_MAIL_FROM, RETURN_PATH, MAUTO_REF))

    assert [(item.feedback, item.problem) for item in found] == [
        (None, "no mauto ref in the reported message (Original-Mail-From, Return-Path, X-Mauto-Ref)")]


def test_a_feedback_report_that_is_not_about_abuse_is_not_a_complaint(tmp_path: Path) -> None:
    found = read_one(tmp_path, sample("arf_abuse", ("Feedback-Type: abuse", "Feedback-Type: not-spam")))

    assert [(item.feedback, item.problem) for item in found] == [
        (None, "a feedback report of type not-spam, not a spam complaint (abuse)")]


# --- what is not a bounce mauto can use ---------------------------------------------------------------------------

def test_a_bounce_without_a_ref_is_a_problem_even_when_the_returned_message_has_one(tmp_path: Path) -> None:
    # Only where the notification was delivered counts: the returned message (its Return-Path) may be anyone's.
    message = sample("postfix_failed", ("Delivered-To: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example",
                                        "Delivered-To: postmaster@shop.example"),
                     ("To: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example", "To: postmaster@shop.example"))

    assert [(item.feedback, item.problem) for item in read_one(tmp_path, message)] == [(None, NO_REF)]


def test_a_ref_for_another_bounce_address_does_not_count(tmp_path: Path) -> None:
    assert [(item.feedback, item.problem) for item in read_one(tmp_path, sample("exim_failed"))] != [(None, NO_REF)]
    make_mbox(tmp_path / "b.mbox", [sample("exim_failed")])
    found = list(read_bounces(tmp_path / "b.mbox", "bounces@other.example"))
    assert [(item.feedback, item.problem) for item in found] == [(None, NO_REF)]


def test_a_vacation_reply_and_an_ordinary_message_are_problems(tmp_path: Path) -> None:
    ordinary = (b"From: Ann <ann@customer.example>\nTo: bounces+nPth5ZQv5N_1A0MvaHZYG9@mail.shop.example\n"
                b"Subject: Re: Spring sale\nDate: Tue, 14 May 2024 10:00:00 +0000\n\nHow much is the red one?\n")
    make_mbox(tmp_path / "b.mbox", [sample("vacation"), ordinary])

    found = list(read_bounces(tmp_path / "b.mbox", BOUNCE))

    path = tmp_path / "b.mbox"
    assert [(item.where, item.feedback, item.problem) for item in found] == [
        (f"{path}:1", None, "an automatic reply, not a bounce (Auto-Submitted: auto-replied (vacation))"),
        (f"{path}:2", None, "not a delivery status notification"),
    ]


def test_broken_messages_are_problems_and_the_next_message_is_still_read(tmp_path: Path) -> None:
    no_boundary = (b"From: MAILER-DAEMON@mx.shop.example\n"
                   b"To: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example\n"
                   b"Subject: Undelivered Mail Returned to Sender\n"
                   b"MIME-Version: 1.0\n"
                   b"Content-Type: multipart/report; report-type=delivery-status\n\n"
                   b"--lost\nContent-Type: message/delivery-status\n\n"
                   b"Final-Recipient: rfc822; nobody@customer.example\nAction: failed\n--lost--\n")
    # thousands of nested multiparts: the stdlib's parser itself runs out of stack
    nested = b"From: x@example.com\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level) for level in range(3000))
    path = tmp_path / "b.mbox"
    make_mbox(path, [no_boundary, nested, sample("postfix_failed")])

    found = list(read_bounces(path, BOUNCE))

    assert [(item.where, item.feedback and item.feedback.ref, item.problem) for item in found] == [
        (f"{path}:1", None, "not a delivery status notification (broken MIME: no boundary in multipart, multipart "
                             "invariant violation)"),
        (f"{path}:2", None, "cannot be read (RecursionError: maximum recursion depth exceeded)"),
        (f"{path}:3", POSTFIX, None),
    ]


def test_a_quadratic_trap_for_flufl_bounce_is_read_quickly(tmp_path: Path) -> None:
    # flufl.bounce's Exchange detector searches each line with `[^\s@]+@[^\s@]+ on `: quadratic in a line's
    # length (a 64 KB line takes 16 s, this one would take hours). Lines past SMTP's 998 are cut for it.
    trap = (b"From: x@example.com\nTo: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example\n\n"
            b"did not reach the following recipient\n" + b"a" * 500_000 + b"@" + b"b" * 500_000 + b"\n")
    started = time.monotonic()
    found = read_one(tmp_path, trap)
    assert time.monotonic() - started < 20
    assert [(item.feedback, item.problem) for item in found] == [(None, "not a delivery status notification")]


def test_a_message_past_the_size_read_is_read_from_its_start(tmp_path: Path) -> None:
    # the returned message comes last: a huge one does not hide the notification before it
    huge = sample("exim_failed").replace(b"Content-Type: text/plain; charset=utf-8\n\n",
                                         b"Content-Type: text/plain; charset=utf-8\n\n" + (b"z" * 900 + b"\n") * 20_000)
    assert len(huge) > 16 * 1024 * 1024

    found = read_one(tmp_path, huge)

    assert [(item.feedback and (item.feedback.kind, item.feedback.address, item.feedback.reason), item.problem)
            for item in found] == [((HARD_BOUNCE, "full.box@customer.example", "552 5.2.2 Mailbox full"), None)]


def test_flufl_bounce_failing_writes_nothing_to_stderr() -> None:
    # Without a From header flufl.bounce's Yale detector raises IndexError, and flufl.bounce logs the traceback
    # with log.exception: with no logging configured, Python prints it on stderr (pytest's own log handlers
    # hide that in-process, hence a real interpreter).
    script = ("from mauto.bounces import read_message\n"
              "print(read_message(b'Subject: hello\\n\\nhi\\n', 'bounces@mail.shop.example', 'x')[0].problem)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "not a delivery status notification\n", "")


# --- the mailbox itself -------------------------------------------------------------------------------------------

def test_a_path_that_is_neither_a_maildir_nor_an_mbox_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "cur").mkdir()
    text = tmp_path / "bounce.eml"
    text.write_bytes(sample("postfix_failed"))

    with pytest.raises(MautoError) as folder_error:
        read_bounces(folder, BOUNCE)
    with pytest.raises(MautoError) as file_error:
        read_bounces(text, BOUNCE)
    with pytest.raises(MautoError) as missing_error:
        read_bounces(tmp_path / "missing", BOUNCE)

    assert str(folder_error.value) == f"{folder}: neither a Maildir (a folder with cur, new and tmp) nor an mbox file"
    assert str(file_error.value) == (f"{text}: neither a Maildir nor an mbox file (an mbox file begins with a "
                                     "`From ` line)")
    assert str(missing_error.value) == f"{tmp_path / 'missing'}: no such file or folder"


def test_an_empty_mbox_holds_nothing_and_a_maildir_is_read_in_new_and_cur(tmp_path: Path) -> None:
    (tmp_path / "empty.mbox").write_bytes(b"")
    assert list(read_bounces(tmp_path / "empty.mbox", BOUNCE)) == []
    folder = tmp_path / "bounces"
    box = mailbox.Maildir(folder, create=True)
    seen = mailbox.MaildirMessage(sample("exim_failed"))
    seen.set_subdir("cur")  # as a mail reader leaves a message it showed
    seen.add_flag("S")
    keys = [box.add(seen), box.add(sample("postfix_failed"))]
    assert [path.parent.name for path in sorted(folder.glob("*/*"))] == ["cur", "new"]

    found = list(read_bounces(folder, BOUNCE))

    assert [(item.where, item.feedback and item.feedback.ref) for item in found] == [
        (f"{folder}:{keys[0]}", EXIM), (f"{folder}:{keys[1]}", POSTFIX)]


def test_a_maildir_entry_that_cannot_be_read_or_went_is_a_problem_and_the_rest_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "bounces"
    first, second, third = make_maildir(folder, [sample("exim_failed"), sample("gmail_failed"),
                                                 sample("postfix_failed")])
    entry = folder / "new" / first
    entry.unlink()
    entry.symlink_to(entry)  # a link to itself: open() fails (root could read a file without permissions)

    found = read_bounces(folder, BOUNCE)  # listed now
    (folder / "new" / second).unlink()  # as a mail reader deleting it meanwhile

    assert [(item.where, item.feedback and item.feedback.ref, item.problem) for item in found] == [
        (f"{folder}:{first}", None, "cannot be read (Too many levels of symbolic links)"),
        (f"{folder}:{second}", None, "it went from the mailbox while it was read"),
        (f"{folder}:{third}", POSTFIX, None),
    ]


# --- never raises -------------------------------------------------------------------------------------------------

SAMPLES = [sample(name) for name in ("postfix_failed", "postfix_delayed", "exim_failed", "gmail_failed",
                                     "exchange_failed", "qmail_failed", "arf_abuse", "vacation")]
PIECES = [b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n", b"--B\n", b"--B--\n", b"\n",
          b"Content-Type: message/delivery-status\n", b"Content-Type: message/feedback-report\n",
          b"Content-Type: message/rfc822\n", b"Content-Type: text/rfc822-headers\n", b"Action: failed\n",
          b"Action: delayed \xff\n", b"Final-Recipient: rfc822; a@b.example\n", b"Final-Recipient: \xff; \xe9@b\n",
          b"Feedback-Type: abuse\n", b"Original-Mail-From: <bounces+epUraTH-ad51u53UasaUSg@mail.shop.example>\n",
          b"To: bounces+epUraTH-ad51u53UasaUSg@mail.shop.example\n", b"X-Mauto-Ref: \xff\n", b"Date: \xff\n",
          b"Date: Tue, 14 May 9999 23:59:59 -2359\n", b"Message-ID: \x00\n", b"X-Failed-Recipients: \xff@x, <>\n",
          b"From: mailer-daemon@yahoo.com\n", b"did not reach the following recipient\n", b"Auto-Submitted: no\n",
          b"Content-Type: multipart/mixed; boundary=\"\"\n", b"Content-Transfer-Encoding: base64\n", b"=ZZ\r\n",
          b"Feedback-Type: " + b"\xe9" * 400 + b"\n", b"Auto-Submitted: auto-replied " + b"(" * 400 + b"\n",
          b"Date: Mon, 1 Jan 0001 00:00:00 +2359\n", b"Status: 5.1.1\nDiagnostic-Code: " + b"x " * 300 + b"\n"]
messages = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.tuples(st.sampled_from(SAMPLES), st.integers(0, 10_000), st.integers(0, 200), st.binary(max_size=50)).map(
        lambda cut: cut[0][:cut[1]] + cut[3] + cut[0][cut[1] + cut[2]:]),
)
folders = count()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=4), st.booleans())
def test_any_bytes_never_raise_and_every_message_is_accounted_for(
        tmp_path: Path, contents: list[bytes], as_maildir: bool) -> None:
    path = tmp_path / str(next(folders))
    if as_maildir:
        make_maildir(path, contents)
    else:
        make_mbox(path, contents)

    found = list(read_bounces(path, BOUNCE))

    assert len({item.where for item in found}) == len(contents)
    for item in found:
        assert (item.feedback is None) != (item.problem is None)
        if item.problem is not None:
            assert item.problem.isprintable() and len(item.problem) <= 300
        if item.feedback is not None:
            assert item.feedback.reason.isprintable() and len(item.feedback.reason) <= 300
            assert item.feedback.ref is not None and REF.fullmatch(item.feedback.ref)
            assert item.feedback.at is None or item.feedback.at.tzinfo is not None


@settings(max_examples=300, deadline=None, database=None)
@given(messages)
def test_read_message_never_raises(message: bytes) -> None:
    assert read_message(message, BOUNCE, "here")
