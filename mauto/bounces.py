"""The bounce mailbox read into `Feedback` records: what `mauto bounces ingest MAILDIR|MBOX` records.

Every message mauto sends has its own envelope sender, `bounces+<ref>@domain` (VERP, `mauto.links.verp_address`),
so that a delivery status notification comes back to an address that names the message it is about. This module
reads a Maildir folder or an mbox file of such notifications (the stdlib's `mailbox`), finds the failed
recipients with flufl.bounce (GNU Mailman's bounce detector) and the ref in the address each notification was
delivered to, and turns each into `Feedback`: a hard bounce (Action: failed), a soft one (Action: delayed), or a
complaint (an ARF abuse report, RFC 5965). Anything else in the mailbox (a vacation reply, a person writing back,
spam, a broken message) is reported with the reason it was not used, never raised: one bad message must not stop
the rest of the mailbox.

Only the address the notification was *delivered to* names the message (Delivered-To, X-Original-To,
Envelope-To, X-Envelope-To, To, Return-Path, first found first): the message a notification returns is whatever
the bouncing server says it is. A complaint names its message by the envelope sender the report gives
(Original-Mail-From) or the Return-Path or `X-Mauto-Ref` of the reported message, since feedback loops send
their reports to an address of their own.
"""
from __future__ import annotations

import email
import email.utils
import logging
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

from flufl.bounce import all_failures

from mauto.errors import MautoError
from mauto.feedback import COMPLAINT, HARD_BOUNCE, SOFT_BOUNCE, Feedback
from mauto.limits import LimitError, check_moment
from mauto.links import REF, verp_ref

PROVIDER = "mailbox"
# Where a notification is delivered, as the mail systems that deliver into a mailbox write it down.
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Return-Path")
# A notification says what it must at its start (the text, the delivery status); the returned message, which
# may be large, comes last. What is past this is not read.
MAX_READ = 256 * 1024
# RFC 5322 2.1.1: no line is longer. flufl.bounce's heuristic detectors search lines with patterns that take
# time quadratic in a line's length (a 64 KB line: 16 s), so longer lines are cut to this for it.
MAX_LINE = 998
MAX_REASON = 300
MAX_ID = 998
MAX_DEPTH = 100  # nested multiparts looked into; a notification has two or three levels

# flufl.bounce logs a detector's exception with its traceback (log.exception) before raising it; with no
# logging configured Python would print that on stderr. Its failure is reported with the message instead.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ADDRESS_SEPARATORS = re.compile(r"[\s<>,;\"'()\[\]]+")
_DIAGNOSTIC_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # `smtp`, `X-Postfix`: RFC 3464 2.3.6
_HAS_STATUS = re.compile(r"^\d{3}\b|\b[245]\.\d{1,3}\.\d{1,3}\b")  # a reply code first, or an enhanced status
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAILER_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


@dataclass(frozen=True)
class Found:
    """One thing read from the bounce mailbox: a `Feedback`, or the reason the message gave none.

    A message yields one `Found` for each failed recipient it names (usually one: each message mauto sends
    has one recipient), else one with `problem` set."""

    where: str  # "path/to/maildir:<key>" or "file.mbox:<n>" (messages numbered from 1): for messages
    feedback: Feedback | None  # None: not a bounce mauto can use
    problem: str | None  # why not, one line


def read_bounces(source: Path, bounce_address: str) -> Iterator[Found]:
    """Every message of the Maildir folder or mbox file `source`, in order (an mbox's; a Maildir's by the
    names its delivery agent gave, which begin with the time of delivery), read as bounces to VERP addresses
    made from `bounce_address`.

    The mailbox is opened and listed here, at once: MautoError (naming `source`) when it is neither a Maildir
    (a folder with cur, new and tmp) nor an mbox file, or cannot be read. The messages are read as the
    iterator is consumed; a message that cannot be read or used is a `Found` with a problem, never an error.
    Nothing is written to the mailbox."""
    try:
        box, keys, numbered = _open(source)
    except (OSError, mailbox.Error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise MautoError(f"cannot be read: {_line(reason)}", source) from None
    return _messages(source, box, keys, numbered, bounce_address)


def _open(source: Path) -> tuple[mailbox.Mailbox, list[str], bool]:
    """The mailbox at `source`, its keys in order, and whether its messages are named by number (mbox)."""
    if source.is_dir():
        if not all((source / name).is_dir() for name in ("cur", "new", "tmp")):
            raise MautoError("neither a Maildir (a folder with cur, new and tmp) nor an mbox file", source)
        maildir = mailbox.Maildir(source, factory=None, create=False)
        return maildir, sorted(maildir.keys(), key=_natural), False
    if source.is_file():
        with source.open("rb") as file:
            start = file.read(5)
        if start and start != b"From ":  # an empty file is an empty mbox
            raise MautoError("neither a Maildir nor an mbox file (an mbox file begins with a `From ` line)", source)
        mbox = mailbox.mbox(source, factory=None, create=False)
        return mbox, mbox.keys(), True  # listing an mbox reads it through: a read error is raised here
    if source.exists():
        raise MautoError("neither a Maildir (a folder with cur, new and tmp) nor an mbox file", source)
    raise MautoError("no such file or folder", source)


def _natural(key: str) -> list[tuple[int, str]]:
    """A Maildir name's sort key: its numbers as numbers (`1715677923.M99P…` before `1715677923.M100P…`)."""
    return [(int(piece), "") if piece.isdigit() else (-1, piece) for piece in re.split(r"(\d+)", key) if piece]


def _messages(source: Path, box: mailbox.Mailbox, keys: list[str], numbered: bool,
              bounce_address: str) -> Iterator[Found]:
    try:
        for number, key in enumerate(keys, start=1):
            where = f"{source}:{number if numbered else key}"
            try:
                with box.get_file(key) as file:
                    data = file.read(MAX_READ + 1)
            except KeyError:  # a mail reader moved or deleted it since the mailbox was listed
                yield _problem(where, "it went from the mailbox while it was read")
                continue
            except OSError as error:
                yield _problem(where, f"cannot be read ({error.strerror or error})")
                continue
            yield from read_message(data, bounce_address, where)
    finally:
        box.close()


def read_message(data: bytes, bounce_address: str, where: str = "") -> list[Found]:
    """One message (its bytes as delivered) read as a bounce or a complaint to a VERP address made from
    `bounce_address`: one `Found` per failed recipient, else one with the problem. Never raises."""
    try:
        return _read(data, bounce_address, where)
    except Exception as error:  # whatever a message does to the parsers (RecursionError...), the mailbox goes on
        return [_problem(where, f"cannot be read ({type(error).__name__}: {error})")]


def _read(data: bytes, bounce_address: str, where: str) -> list[Found]:
    cut = len(data) > MAX_READ
    message = email.message_from_bytes(data[:MAX_READ])
    parts = _report_parts(message)
    types = {part.get_content_type() for part in parts}
    if "message/feedback-report" in types or _report_type(message) == "feedback-report":
        found = _complaint(message, parts, bounce_address)
        return [Found(where, found, None) if isinstance(found, Feedback) else _problem(where, found)]
    statuses = _delivery_statuses(parts)
    is_dsn = "message/delivery-status" in types
    if not is_dsn and (automatic := _auto_reply(message)):
        return [_problem(where, f"an automatic reply, not a bounce ({automatic})")]
    permanent, temporary = _failures(message, data[:MAX_READ], bounce_address)
    actions = {status.action for status in statuses}
    if is_dsn and actions and not actions & {"failed", "delayed"}:
        return [_problem(where, f"a delivery status notification that reports no failure (Action: "
                                f"{', '.join(sorted(actions))})")]
    if is_dsn and not actions and not (permanent or temporary):
        return [_problem(where, "a delivery status notification that names no recipient (no Action)")]
    if not (permanent or temporary or is_dsn):
        broken = "" if cut else _defects(parts)
        return [_problem(where, "not a delivery status notification" + (f" (broken MIME: {broken})" if broken
                                                                         else ""))]
    ref = _ref_in(message, ENVELOPE_HEADERS, bounce_address)
    if ref is None:
        return [_problem(where, f"no mauto ref in the recipient address ({', '.join(ENVELOPE_HEADERS)})")]
    failed: list[tuple[str, str | None]] = [(HARD_BOUNCE, address) for address in sorted(permanent)]
    failed += [(SOFT_BOUNCE, address) for address in sorted(temporary - permanent)]
    if not failed:  # a notification whose recipients flufl.bounce cannot read: the store knows the message's
        failed = [(HARD_BOUNCE if "failed" in actions else SOFT_BOUNCE, None)]
    at, message_id = _when(message), _message_id(message)
    return [Found(where, Feedback(
        kind=kind, provider=PROVIDER, address=address, ref=ref, at=at,
        reason=_reason_for(statuses, kind, address),
        id=message_id if message_id is None or len(failed) == 1 else f"{message_id} {address}",
    ), None) for kind, address in failed]


def _problem(where: str, text: str) -> Found:
    """A message that gave no feedback, and why, in one line of at most 300 characters (a header's text in it
    may be anything)."""
    return Found(where, None, _line(text))


# --- the parts of a report ----------------------------------------------------------------------------------------

def _report_parts(message: Message) -> list[Message]:
    """The message and its parts, nested multiparts included, in order; not the parts of the message a report
    returns (a message/rfc822 part is listed, not opened: the returned message may be anything, a report too)."""
    found: list[Message] = []
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        found.append(part)
        if part.get_content_maintype() == "multipart" and part.is_multipart() and depth < MAX_DEPTH:
            subparts = part.get_payload()
            if isinstance(subparts, list):
                stack.extend((subpart, depth + 1) for subpart in reversed(subparts) if isinstance(subpart, Message))
    return found


def _report_type(message: Message) -> str:
    value = message.get_param("report-type", "", header="content-type")
    return _line(str(value)).lower() if isinstance(value, str) else ""


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part (the parser reads them as
    messages of headers; one it left as text is read here)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):
        return [email.message_from_string(block) for block in re.split(r"\n[ \t]*\n", payload) if block.strip()]
    return []


@dataclass(frozen=True)
class _Status:
    """One recipient of a delivery status notification (RFC 3464 2.3)."""

    addresses: frozenset[str]  # Final-Recipient and Original-Recipient, lower case
    action: str  # "failed", "delayed", "delivered", "relayed", "expanded", or as written
    reason: str


def _delivery_statuses(parts: list[Message]) -> list[_Status]:
    statuses = []
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _blocks(part):
            written = _first(block, "Action").lower()
            if not written:
                continue  # the per-message fields (Reporting-MTA, Arrival-Date): no recipient
            # as flufl.bounce reads it: comments after the action are seen, opensmtpd writes `error`
            action = ("failed" if written.startswith(("fail", "error"))
                      else "delayed" if written.startswith("delayed") else written.split(" ")[0])
            addresses = frozenset(_line(value.partition(";")[2], limit=None).strip(" <>").lower()
                                  for name in ("Final-Recipient", "Original-Recipient")
                                  for value in _values(block, name))
            statuses.append(_Status(addresses, action, _diagnosis(block)))
    return statuses


def _diagnosis(block: Message) -> str:
    """A recipient's reason, one line: its Diagnostic-Code without the diagnostic type (`smtp;`), with its
    Status before it when the code does not say one; the Status alone when there is no code."""
    status = _first(block, "Status").split(" ")[0]
    code = _first(block, "Diagnostic-Code")
    kind, semicolon, text = code.partition(";")
    if semicolon and _DIAGNOSTIC_TYPE.fullmatch(kind.strip()):
        code = text.strip()
    if status and not _HAS_STATUS.search(code):
        code = f"{status} {code}"
    return _line(code)


def _reason_for(statuses: list[_Status], kind: str, address: str | None) -> str:
    """The reason of the recipient `address`, else of the first recipient whose action is of `kind`."""
    action = "failed" if kind == HARD_BOUNCE else "delayed"
    if address is not None:
        for status in statuses:
            if address.lower() in status.addresses:
                return status.reason
    return next((status.reason for status in statuses if status.action == action), "")


def _failures(message: Message, data: bytes, bounce_address: str) -> tuple[set[str], set[str]]:
    """(permanent, temporary) failed recipients as flufl.bounce finds them: addresses only, never our own."""
    lines = data.split(b"\n")
    if any(len(line) > MAX_LINE for line in lines):
        message = email.message_from_bytes(b"\n".join(line[:MAX_LINE] for line in lines))
    try:
        # flufl.bounce gives (temporary, permanent): the reverse of what one might guess
        temporary, permanent = all_failures(message)
    except Exception:  # its detectors raise on what they do not expect (no From header, a non-ASCII Action):
        # the notification is then read from its delivery-status part alone
        return set(), set()
    return _usable(permanent, bounce_address), _usable(temporary, bounce_address)


def _usable(addresses: frozenset[bytes], bounce_address: str) -> set[str]:
    usable = set()
    for raw in addresses:
        address = raw.decode("ascii", "replace").strip().strip("<>")
        if ("@" in address and len(address) <= 254 and address.isprintable() and " " not in address
                and address.lower() != bounce_address.lower() and verp_ref(address, bounce_address) is None):
            usable.add(address)
    return usable


def _auto_reply(message: Message) -> str | None:
    """The header that says the message is an automatic reply (vacation, out of office), or None. Bounces
    carry `Auto-Submitted: auto-replied` too (RFC 3834 5): from a mailer daemon, or naming failed recipients,
    that is a bounce."""
    if message.get("X-Failed-Recipients") is not None:
        return None
    for name in ("X-Autoreply", "X-Autorespond"):
        if value := _first(message, name):
            return f"{name}: {value}"
    if (precedence := _first(message, "Precedence")).lower() == "auto_reply":
        return f"Precedence: {precedence}"
    submitted = _first(message, "Auto-Submitted")
    sender = email.utils.parseaddr(_first(message, "From")[:MAX_LINE])[1].lower()
    if submitted.lower().startswith("auto-replied") and not sender.startswith(_MAILER_DAEMONS):
        return f"Auto-Submitted: {submitted}"
    return None


def _defects(parts: list[Message]) -> str:
    """The parser's complaints about the message's MIME structure, in words, or ""."""
    names = []
    for part in parts:
        for defect in part.defects:
            name = _CAMEL.sub(" ", type(defect).__name__.removesuffix("Defect")).lower()
            if name not in names:
                names.append(name)
    return _line(", ".join(names))


# --- complaints ---------------------------------------------------------------------------------------------------

def _complaint(message: Message, parts: list[Message], bounce_address: str) -> Feedback | str:
    """An ARF report (RFC 5965) as a complaint, or the problem with it."""
    fields = next((block for part in parts if part.get_content_type() == "message/feedback-report"
                   for block in _blocks(part)[:1]), Message())
    feedback_type = _first(fields, "Feedback-Type").lower()
    if feedback_type != "abuse":
        return (f"a feedback report of type {feedback_type}, not a spam complaint (abuse)" if feedback_type
                else "a feedback report without a Feedback-Type")
    reported = _reported(parts)
    ref = _ref_in(fields, ("Original-Mail-From",), bounce_address)
    if ref is None and reported is not None:
        ref = _ref_in(reported, ("Return-Path",), bounce_address)
        if ref is None and REF.fullmatch(given := _first(reported, "X-Mauto-Ref")):
            ref = given
    if ref is None:
        ref = _ref_in(message, ENVELOPE_HEADERS, bounce_address)
    if ref is None:
        return "no mauto ref in the reported message (Original-Mail-From, Return-Path, X-Mauto-Ref)"
    agent = _first(fields, "User-Agent")
    return Feedback(kind=COMPLAINT, provider=PROVIDER, ref=ref, at=_when(message), id=_message_id(message),
                    reason=_line("Feedback-Type: abuse" + (f"; User-Agent: {agent}" if agent else "")))


def _reported(parts: list[Message]) -> Message | None:
    """The reported message (its headers at least) of a feedback report."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif content_type == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return email.message_from_bytes(text)
    return None


# --- headers ------------------------------------------------------------------------------------------------------

def _values(part: Message, name: str) -> list[str]:
    """Every value of the header `name`, each one line of text whatever its bytes."""
    return [_line(str(value), limit=None) for value in part.get_all(name) or []]


def _first(part: Message, name: str) -> str:
    values = _values(part, name)
    return values[0] if values else ""


def _line(text: str, limit: int | None = MAX_REASON) -> str:
    """`text` on one line: control characters and runs of white space made one space, at most `limit`
    characters (the last one an ellipsis when it was cut)."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _ref_in(part: Message, names: tuple[str, ...], bounce_address: str) -> str | None:
    """The ref of the first VERP address of ours in the headers `names` of `part`, in that order.

    A ref's case matters, but delivery agents may write the address they delivered to in lower case (Postfix's
    local and virtual write Delivered-To so): the first ref is taken in the case a later header keeps it."""
    refs = [ref for name in names for value in part.get_all(name) or []
            for word in _ADDRESS_SEPARATORS.split(str(value))
            if "@" in word and (ref := verp_ref(word, bounce_address)) is not None]
    if not refs:
        return None
    return next((ref for ref in refs if ref.lower() == refs[0].lower() and ref != ref.lower()), refs[0])


def _when(message: Message) -> datetime | None:
    """The message's Date, in UTC; None when it has none mauto can take."""
    text = _first(message, "Date")
    if not text:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
        if moment.tzinfo is None:  # `-0000`: in UTC, the local offset unknown (RFC 5322 3.3)
            moment = moment.replace(tzinfo=UTC)
        return check_moment(moment.astimezone(UTC))
    except (TypeError, ValueError, IndexError, OverflowError, LimitError):
        return None


def _message_id(message: Message) -> str | None:
    identifier = _line(_first(message, "Message-ID"), limit=MAX_ID + 1)
    return identifier if identifier and len(identifier) <= MAX_ID else None
