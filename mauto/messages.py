"""Messages rendered from templates: the email (subject, HTML and text parts, headers) or the SMS text."""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from html import unescape
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote

from mauto.addresses import shown
from mauto.channels.files import bounded_name, safe_name
from mauto.channels.smtp import check_address, idna_address
from mauto.config import Project, Tracking
from mauto.engine.context import Scope
from mauto.engine.records import ContactState, Event
from mauto.errors import MautoError
from mauto.links import Signer, verp_address
from mauto.templates import TEXT_PART, TemplateInfo, TemplateProblem, TemplateSet
from mauto.tracking import has_opt_out, rewrite_links, track

SIMULATION_SECRET = "mauto-simulation"  # signs unsubscribe links in simulations only


_LINE_BREAKS = re.compile("[\t\n\x0b\x0c\r\x1c-\x1e\x85\u2028\u2029]+")  # every break str.splitlines knows, and tab
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")  # the other C0 controls, DEL and C1
_SURROGATES = re.compile("[\ud800-\udfff]")
_MAX_LINE = 998  # RFC 5322 §2.1.1: a line MUST be at most 998 characters (and SHOULD be at most 78)
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8: printable ASCII but the colon


def header_safe(value: object) -> str:
    """A header value from contact data, made safe to write: it can neither add a header nor carry a control.

    - every line break (CR, LF, VT, FF, the file/group/record separators, NEL, U+2028, U+2029) and tab
      becomes one space, as a line break in a first name should read: no header injection;
    - every other control character (the rest of C0, DEL, C1) is removed: it means nothing in a header, and
      raw it breaks parsers, logs and terminals (a NUL, an ESC sequence); encoding it would only carry it to
      the reader;
    - a lone surrogate (a `"\\ud800"` from JSON, which is not text) becomes U+FFFD;
    - leading and trailing spaces are dropped.
    """
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    if value.isascii() and value.isprintable():  # the usual case: nothing to do
        return value.strip()
    value = _CONTROLS.sub("", _SURROGATES.sub("\ufffd", value))
    return _LINE_BREAKS.sub(" ", value).strip()


_ADDRESS_HEADERS = {"From", "To", "Cc", "Reply-To", "Sender"}
_OWN_HEADERS = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                "content-transfer-encoding"}  # written by `to_bytes` itself, once
_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters (and MUST be at most 998)
_URL_SAFE = string.punctuation  # what `quote` leaves alone in a List-* header: all of printable ASCII
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # a display name holding one of these is written quoted
_TEMPLATED = re.compile(r"\{\{|\{%")  # Jinja2 at work in a front matter value
_NAMED_ADDRESS = re.compile(r"(.*)<([^<>]*)>", re.DOTALL)  # `display name <address>`, split at the last `<…>`


def _fold(name: str, words: list[str]) -> list[str]:
    """`name:` and the words, one space between each, folded before a word that would pass column 78
    (also right after `name:` when the first word does not fit there: RFC 5322 allows folding there).

    A word longer than a line stays whole on a line of its own: callers make sure none passes 998. Never
    before an empty word (two spaces in a row), so that no folded line is only white space (RFC 5322 §3.2.2)."""
    lines, current, width = [], f"{name}:", len(name) + 1
    for word in words:
        size = len(word) if word.isascii() else len(word.encode("utf-8"))  # octets: RFC 6532 counts those
        if word and width + 1 + size > _FOLD_AT and (current != f"{name}:" or 1 + size <= _FOLD_AT):
            lines.append(current)
            current, width = "", 0
        current += " " + word
        width += 1 + size
    return lines + [current]


def _encoded_words(value: str, name: str | None = None) -> list[str]:
    """`value` as RFC 2047 encoded words (UTF-8), each short enough to fit a folded line of 78; the first
    also after `name: ` when `name` is given."""
    encoded = Header(value, "utf-8", maxlinelen=_FOLD_AT, header_name=name).encode(linesep="\n")
    return [word for line in encoded.split("\n") for word in line.split(" ") if word]


def _text_header(name: str, value: str) -> str:
    """An unstructured header (Subject): printable ASCII folded at spaces to 78 columns when that fits;
    otherwise (text outside ASCII, a word too long for a line, or what would read as an encoded word, `=?`)
    RFC 2047 encoded words, which always fold to 78.

    Only these get encoded words: the `email` package's default policy also folds a long `List-Unsubscribe`
    URL into one (`=?utf-8?q?=3Chttps…`), which is not valid there and breaks one-click unsubscribe.
    """
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT and value.isascii() and "=?" not in value:
        return line
    if value.isascii() and "=?" not in value:
        lines = _fold(name, value.split(" "))
        if all(len(line) <= _FOLD_AT for line in lines):
            return "\n".join(lines)
    return "\n".join(_fold(name, _encoded_words(value, name)))


def _display_name(name: str, header: str | None) -> list[str]:
    """A display name as the words of a phrase: ASCII atoms or one quoted string (which may be folded at its
    spaces: unfolding gives it back), else RFC 2047 encoded words (outside ASCII, a word too long to fold, or
    what would read as an encoded word). `header`: the header's name when the phrase comes first in it."""
    words = name.split(" ")
    if name.isascii() and "=?" not in name and max(map(len, words)) <= _FOLD_AT - 8:
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            words = name.split(" ")
        return words
    return _encoded_words(name, header)


def _address_header(name: str, value: str | None) -> str:
    """An address header: each mailbox as `display name <address>` or a bare address, folded at 78.

    Display names outside ASCII are RFC 2047 encoded words. Addresses cannot be encoded (RFC 2047 §5): the
    domain goes out in its ASCII (IDNA) form, and a local part outside ASCII is written as UTF-8, as RFC 6532
    allows in a message sent with SMTPUTF8 (which the SMTP transport then asks for, or parks the message).
    An address too long for any header line (998) is left out: no server would take it anyway.
    """
    value = header_safe(value or "")
    if len(value) <= _FOLD_AT - len(name) - 2 and value.isascii() and _PLAIN_ADDRESS.fullmatch(value):
        return f"{name}: {value}"  # the usual `ann@example.com` or `Shop <shop@example.com>`: as it is
    mailboxes: list[list[str]] = []
    for display, address in getaddresses([value]):
        display, address = header_safe(display), header_safe(address)  # again: the parser unquotes
        if not address and not display:
            continue
        try:
            written = idna_address(address)
        except ValueError:  # not a valid IDN: as it is (UTF-8 is allowed with SMTPUTF8, which it then needs)
            written = address
        if len(written.encode("utf-8")) > _MAX_LINE - len(name) - 5:  # octets: "<", ">", ",", the fold's space
            continue
        mailboxes.append(_display_name(display, None if mailboxes else name) + [f"<{written}>"] if display
                         else [written])
    words = [word for mailbox in mailboxes for word in mailbox[:-1] + [mailbox[-1] + ","]]
    if words:
        words[-1] = words[-1][:-1]
    return "\n".join(_fold(name, words))


_ADDR_SPEC = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ADDR_SPEC}|[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_ADDR_SPEC}>")


def _list_header(name: str, value: str) -> str | None:
    """A List-* header (RFC 2369: URLs in angle brackets) as one plain line, never an encoded word: a mail
    client does not decode one there. None when even so it would pass 998 characters: `MessageRenderer`
    refuses such an `unsubscribe_url` first, so only a message made by hand loses the header."""
    line = f"{name}: {_url_safe(value)}"
    return line if len(line) <= _MAX_LINE else None


def _url_safe(value: str) -> str:
    return value if value.isascii() else quote(value, safe=_URL_SAFE)


_DATE_LINE = re.compile(rb"^Date: ([^\n]*)$", re.MULTILINE)


def dated(message: bytes, moment: datetime) -> bytes:
    """An email's bytes with its `Date:` set to `moment` (in the zone the message was written in): the
    moment it is handed over, not the one it was planned for (RFC 5322 §3.6.1; a tick that ran a day late
    must not send yesterday's date). Only the header block is looked at; the Message-ID stays the same."""
    head_end = message.find(b"\n\n")
    head = message if head_end < 0 else message[:head_end]
    found = _DATE_LINE.search(head)
    if found is None:
        return message
    try:
        written = parsedate_to_datetime(found.group(1).decode("ascii"))
        moment = moment.astimezone(written.tzinfo) if written.tzinfo is not None else moment
    except (ValueError, TypeError, UnicodeDecodeError):
        pass  # a Date line mauto did not write: replaced all the same, in the moment's own zone
    line = f"Date: {format_datetime(moment)}".encode("ascii")
    return message[:found.start()] + line + message[found.end():]


_NOT_7BIT = re.compile(rb"\x00|\r(?!\n)")  # RFC 2045 §2.7: 7bit data holds no NUL and no bare CR


def _body(text: str) -> tuple[str, str, bytes]:
    """(charset, transfer encoding, encoded body): 7bit when it can be, else whichever of quoted-printable
    and base64 is shorter (the `email` package's choice)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which is not text
        text = _SURROGATES.sub("\ufffd", text)
        data = text.encode("utf-8")
    if data.isascii() and max(map(len, data.split(b"\n"))) <= 998 and not _NOT_7BIT.search(data):
        return "utf-8", "7bit", data
    wide = len(data) - len(text)  # bytes beyond the first of each non-ASCII character, roughly
    if wide * 3 > len(data):
        return "utf-8", "base64", base64.encodebytes(data)
    return "utf-8", "quoted-printable", binascii.b2a_qp(data, istext=True)


def _boundary(key: str, *bodies: bytes) -> str:
    """A boundary made from the message's key (the same message gives the same bytes), checked absent."""
    salt = 0
    while True:
        boundary = "=_mauto_" + hashlib.sha256(f"{key}:{salt}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if not any(boundary.encode() in body for body in bodies):
            return boundary
        salt += 1


# The first closing tag after an opening one, as `(?:[^<]*+<(?!/name\s*>))*+[^<]*+</name\s*>` (possessive: no
# backtracking) rather than `.*?</name\s*>`: the same match, found without trying the rest at every character.
_HIDDEN = re.compile(r"<(script|style|head|title)\b(?:[^<]*+<(?!/\1\s*>))*+[^<]*+</\1\s*>", re.IGNORECASE)
_LINK = re.compile(r"<a\b[^>]*?\bhref\s*=\s*(\"[^\"]*\"|'[^']*')[^>]*>((?:[^<]*+<(?!/a\s*>))*+[^<]*+)</a\s*>",
                   re.IGNORECASE)
_BREAK = re.compile(r"<\s*(br|/p|p|/div|div|tr|/tr|/h[1-6]|h[1-6]|table|/table|/li|ul|/ul|ol|/ol)\b[^>]*>",
                    re.IGNORECASE)
_ITEM = re.compile(r"<\s*li\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BLANK_LINES = re.compile(r"\n\n\n+")  # a literal start: the regex engine looks for it as a substring


def _single_spaces(text: str) -> str:
    """Each run of spaces, tabs, CR, FF and VT as one space (`re.sub(r"[ \t\r\f\v]+", " ", text)`, in a third of
    its time: that regex makes a match of every space between two words)."""
    for blank in "\t\r\f\v":
        if blank in text:
            text = text.replace(blank, " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def html_to_text(html: str) -> str:
    """The text part of an email made from its HTML: links as `text (url)`, blocks on their own lines.

    Regular expressions rather than an HTML parser: the HTML is our own template's output, and this runs
    for every email without a .email.txt part that is written or sent (a parser costs more than rendering the
    template). tests/test_messages_render.py checks it against the plain form of each pass on any HTML.
    """
    text = _COMMENT.sub("", html) if "<!--" in html else html
    text = _HIDDEN.sub("", text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({unescape(m.group(1)[1:-1])})", text)
    text = _ITEM.sub("\n- ", text)
    text = _BREAK.sub("\n", text)
    text = _single_spaces(unescape(_TAG.sub("", text)))
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"


class _TextPart:
    """`RenderedMessage.text`, a data descriptor: given as a string, or as None for "made from the HTML", which
    `html_to_text` then does on the first read (the message's bytes, a file written, a test). A simulation that
    only counts its messages never reads it, and an email without a `.email.txt` part costs `html_to_text`
    more than rendering its templates does; a daemon that writes the message makes it once, when writing."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _TextPart: ...

    @overload
    def __get__(self, instance: RenderedMessage, owner: type | None = None) -> str: ...

    def __get__(self, instance: RenderedMessage | None, owner: type | None = None) -> str | _TextPart:
        if instance is None:  # the class's own attribute: no default for the dataclass field (a required argument)
            raise AttributeError(self.slot[1:])
        text = instance.__dict__[self.slot]
        if text is None:
            html = instance.__dict__.get("_raw_html")  # as the template wrote it: links untracked
            text = instance.__dict__[self.slot] = html_to_text(html) if html is not None else ""
        return text

    def __set__(self, instance: RenderedMessage, value: str | None) -> None:
        instance.__dict__[self.slot] = value


class _HtmlPart:
    """`RenderedMessage.html`, a data descriptor: given as rendered, and read with `tracker` applied (links
    through `/c/`, the open pixel, the opt-out attributes removed) on the first read. A simulation that never
    reads its messages' HTML never pays for tracking them (177 µs a message: three times the rest of a
    message's rendering); the daemon pays once, when it writes the message."""

    def __get__(self, instance: RenderedMessage | None, owner: type | None = None) -> str | None:
        if instance is None:  # the class's own attribute: the dataclass field's default
            return None
        found = instance.__dict__
        if "_html" not in found:
            raw, tracker = found.get("_raw_html"), instance.tracker
            found["_html"] = tracker(raw) if tracker is not None and raw is not None else raw
        return found["_html"]

    def __set__(self, instance: RenderedMessage, value: str | None) -> None:
        if isinstance(value, _HtmlPart):  # the dataclass's default, handed to __init__
            value = None
        instance.__dict__["_raw_html"] = value
        instance.__dict__.pop("_html", None)


@dataclass
class RenderedMessage:
    """A message ready to send. `text` given as None is made from `html` when first read (`_TextPart`)."""

    channel: str
    contact: str
    to: str | None
    at: datetime
    workflow: str
    step: str
    template: str
    key: str
    marketing: bool
    text: _TextPart = _TextPart()
    subject: str | None = None
    html: _HtmlPart = _HtmlPart()
    sender: str | None = None
    preheader: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ref: str | None = None  # the opaque name of this message in its links (mauto.links), kept by the outbox
    envelope: str | None = None  # the envelope sender (VERP: bounces+<ref>@…), when `serve.bounce_address` is set
    # what `html` goes through when first read (the tracked links and the pixel), or None; never compared
    tracker: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    @property
    def message_id(self) -> str:
        digest = hashlib.sha256(self.key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"<{digest}@mauto>"

    def to_bytes(self) -> bytes:
        """The whole RFC 5322 message, `\\n` line ends (SMTP's DATA turns them into CRLF).

        Written directly rather than through `email.message.EmailMessage`, which cost 4.3 ms of the daemon's
        5.5 ms per message (docs/performance.md); the tests read it back with the `email` parser.

        Never raises, whatever the text in it (contact data ends up in the subject, the display names and the
        addresses): every header value goes through `header_safe` (no line break, no control character), every
        line is folded to 78 columns where it can be and is never longer than 998 (RFC 5322 §2.1.1). The
        head is ASCII unless an address has a local part outside ASCII (then UTF-8, RFC 6532: the SMTP
        transport sends such a message only with SMTPUTF8, or parks it).
        """
        lines = [_address_header("From", self.sender), _address_header("To", self.to),
                 _text_header("Subject", header_safe(self.subject)),
                 f"Date: {format_datetime(self.at)}", f"Message-ID: {self.message_id}"]
        for name, value in self.headers.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or name.lower() in _OWN_HEADERS:
                continue  # not a header name, or one written above: nothing may make a second one
            value = header_safe(value)
            if name in _ADDRESS_HEADERS:
                lines.append(_address_header(name, value))
            elif name.startswith("List-"):  # URLs in angle brackets: never an encoded word (RFC 2369)
                line = _list_header(name, value)
                if line is not None:
                    lines.append(line)
            else:
                lines.append(_text_header(name, value))
        lines.append("MIME-Version: 1.0")
        text_type, text_encoding, text_body = _body(self.text)
        if self.html is None:
            lines += [f'Content-Type: text/plain; charset="{text_type}"', f"Content-Transfer-Encoding: {text_encoding}"]
            return "\n".join(lines).encode("utf-8") + b"\n\n" + text_body
        html_type, html_encoding, html_body = _body(self.html)
        boundary = _boundary(self.key, text_body, html_body)
        lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
        head = "\n".join(lines).encode("utf-8")
        return b"".join((
            head, b"\n--", boundary.encode(), b"\n",
            f'Content-Type: text/plain; charset="{text_type}"\nContent-Transfer-Encoding: {text_encoding}\n\n'.encode(),
            text_body, b"\n--", boundary.encode(), b"\n",
            f'Content-Type: text/html; charset="{html_type}"\nContent-Transfer-Encoding: {html_encoding}\n\n'.encode(),
            html_body, b"\n--", boundary.encode(), b"--\n"))

    def file_name(self, index: int) -> str:
        """`NNN-YYYYMMDDTHHMM-<workflow>-<step>.eml` (or `.txt`), in safe characters, shortened with a hash when
        long: a file name has at most 255 bytes."""
        stamp = self.at.strftime("%Y%m%dT%H%M")
        suffix = ".eml" if self.channel == "email" else ".txt"
        whole = f"{index:03d}-{stamp}-{self.workflow}-{self.step}"
        return bounded_name(re.sub(r"[^A-Za-z0-9._+-]", "_", whole), whole) + suffix

    def write(self, folder: Path, index: int) -> Path:
        """Write under `folder`/<contact>/: the contact id is made a safe file name (`files.safe_name`: never a
        path, never hidden, bounded), the message a bounded one. MautoError when the file cannot be written."""
        target = folder / safe_name(self.contact) / self.file_name(index)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if self.channel == "email":
                target.write_bytes(self.to_bytes())
            else:
                target.write_text(f"To: {header_safe(self.to)}\nAt: {self.at.isoformat()}\n\n{self.text}",
                                  encoding="utf-8", errors="replace")
        except OSError as error:
            raise MautoError(f"--render: cannot write {target}: {error.strerror or error}") from None
        return target


def _without_opt_outs(html: str) -> str:
    return rewrite_links(html, lambda url: None)


def _trackable(url: str, unsubscribe_url: str) -> bool:
    """Whether a link may go through `/c/`: not the unsubscribe link, not one whose redirect could lead
    elsewhere than the link (a backslash, which browsers read as a slash before the query, percent-encoded in
    a Location header), and not one too long for a token."""
    return url != unsubscribe_url and "\\" not in url and len(url) <= MAX_TRACKED_URL


MAX_TRACKED_URL = 4000  # characters; its click token (base64, a third longer) stays within links.MAX_TOKEN


class MessageRenderer:
    """Renders the message a send effect asks for, with the contact's data at the moment of sending."""

    def __init__(self, project: Project, secret: str | None = None) -> None:
        self.project = project
        self.templates = TemplateSet(project.templates_dir, project.display_root)
        data = project.data
        self.sender = data.get("sender") or {}
        self.serve = project.serve
        self.unsubscribe_template = data.get("unsubscribe_url")
        if not self.unsubscribe_template and self.serve.public_url:  # mauto serve answers it
            self.unsubscribe_template = self.serve.public_url + "/u/{{ token }}"
        slot = re.fullmatch(r"([^{}]*)\{\{\s*token\s*\}\}([^{}]*)", self.unsubscribe_template or "")
        self._token_slot = slot.groups() if slot else None
        env_name = data.get("unsubscribe_secret_env")
        self.secret = secret or (os.environ.get(env_name) if env_name else None) or SIMULATION_SECRET
        self._emails: dict[str, tuple[str, TemplateInfo, str | None]] = {}
        self._tracking: dict[Any, Tracking] = {}

    @property
    def secret(self) -> str:
        """The key links are signed with."""
        return self.signer.secret

    @secret.setter
    def secret(self, secret: str) -> None:
        self.signer = Signer(secret)

    def _unsubscribe_too_long(self, contact_id: str, url: str) -> MautoError:
        """The List-Unsubscribe header must be one line (never an encoded word) of at most 998 characters."""
        position = self.project.document.pos(("unsubscribe_url",))
        return MautoError(f"unsubscribe_url: the link for contact `{shown(contact_id)}` is {len(url)} characters "
                          f"long, too long for the List-Unsubscribe header (one line of at most {_MAX_LINE} "
                          "characters, RFC 5322); shorten unsubscribe_url", self.project.document.path,
                          position.line, position.col)

    def _sender(self, source: str, names: dict[str, Any], info: TemplateInfo, contact_id: str,
                key: str = "from") -> str:
        """The From header's value for a template's `from:` front matter: always exactly one mailbox, at the
        address the template wrote, whatever the contact's data.

        `Name <address>` (split at the last `<…>`, which ends it): only the display name is rendered as a
        template; what it gives goes through `header_safe` and is quoted when it holds a special character
        (RFC 5322 §3.2.3), so that `Jo <jo@evil.example>, Smith` stays a name and neither chooses the address
        nor adds a mailbox. Anything else is an address alone. An address written with `{{ }}` or `{% %}` is
        rendered and must give exactly one email address, else TemplateProblem (which fails the enrollment).
        """
        where = info.display_path
        named = _NAMED_ADDRESS.fullmatch(source.strip())
        address_source = named.group(2) if named else source
        address = address_source.strip()
        if _TEMPLATED.search(address_source):
            address = self.templates.render_string(address_source, names, where).strip()
            try:
                check_address(address, key)
            except ValueError:
                position = info.front.pos((key,)) if info.front is not None else None
                raise TemplateProblem(
                    f"front matter `{key}`: the address `{address_source.strip()}` does not render to one email "
                    f"address for contact `{shown(contact_id)}`; write the address out: "
                    "`{{ … }} at Shop <shop@example.com>`", where, position.line if position else None,
                    position.col if position else None) from None
        if named is None:
            return address
        name_source = named.group(1).strip()
        if len(name_source) >= 2 and name_source[0] == name_source[-1] == '"':  # written quoted: the text inside
            name_source = name_source[1:-1]
        name = self.templates.render_string(name_source, names, where) if _TEMPLATED.search(name_source) \
            else name_source
        name = header_safe(name)
        if not name:
            return address
        if _SPECIALS.search(name):  # as email.utils.formataddr does, which would also encode a name outside ASCII
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{address}>"

    def _email(self, template: str) -> tuple[str, TemplateInfo, str | None]:
        """(the HTML part's loader name, its analysis, the text part's name or None: made from the HTML) of an
        email template, looked up once; TemplateProblem, each time, when it cannot be used."""
        found = self._emails.get(template)
        if found is not None:
            return found
        name = template + ".email.html"
        info = self.templates.info(name)
        if not self.templates.exists(name):
            raise TemplateProblem(f"template `{template}` not found", self.templates.display(name))
        if info.error is not None:
            raise info.error
        text_name = template + TEXT_PART
        found = self._emails[template] = (name, info, text_name if self.templates.exists(text_name) else None)
        return found

    def _unsubscribe_url(self, ref: str) -> str:
        if not self.unsubscribe_template:
            return ""
        token = self.signer.unsubscribe(ref)
        if self._token_slot is not None:  # the usual `https://…/{{ token }}`: no template to run
            return self._token_slot[0] + token + self._token_slot[1]
        return self.templates.render_string(self.unsubscribe_template, {"token": token}, "mauto.yaml unsubscribe_url")

    def _ref_headers(self, ref: str) -> dict[str, str]:
        """The message's ref in the headers the configured providers echo back in their webhooks (each its own
        documented metadata header), so that a bounce or a complaint names its message exactly."""
        if not self.serve.public_url:
            return {}
        headers = {"X-Mauto-Ref": ref}
        providers = self.serve.providers
        if "ses" in providers:
            headers["X-SES-MESSAGE-TAGS"] = f"mauto_ref={ref}"
        if "sendgrid" in providers:
            headers["X-SMTPAPI"] = f'{{"unique_args": {{"mauto_ref": "{ref}"}}}}'
        if "mailgun" in providers:
            headers["X-Mailgun-Variables"] = f'{{"mauto_ref": "{ref}"}}'
        if "postmark" in providers:
            headers["X-PM-Metadata-mauto_ref"] = ref
        return headers

    def tracking(self, override: Any) -> Tracking:
        """The project's tracking with a workflow's `settings.tracking` over it; none without a public URL."""
        key = override if not isinstance(override, dict) else tuple(sorted(override.items()))
        found = self._tracking.get(key)
        if found is None:
            found = self._tracking[key] = self.serve.tracking.merged(override) if self.serve.public_url \
                else Tracking()
        return found

    def _track(self, html: str, ref: str, tracking: Tracking, unsubscribe_url: str) -> str:
        """The HTML with its links through `/c/` and the open pixel, as `tracking` asks (the opt-out attributes
        removed whatever it asks), in one pass over its tags."""
        base, signer = self.serve.public_url, self.signer

        def click(url: str) -> str | None:
            if not tracking.clicks or not _trackable(url, unsubscribe_url):
                return None
            return f"{base}/c/{signer.click(ref, url)}"

        return track(html, click, f"{base}/o/{signer.open(ref)}" if tracking.opens else None)

    def render(self, effect, contact: ContactState, declared: dict[str, Any]) -> RenderedMessage:
        """The message `effect` (a send) asks for. An email without a `.email.txt` part gets its text part made
        from the HTML when first read (`RenderedMessage.text`); every template is rendered here, so that a
        template's error fails the send now, never later."""
        data = effect.data
        channel, template = data["channel"], data["template"]
        trigger_event = data.get("trigger_event")
        event = Event.from_dict(trigger_event) if trigger_event else None
        scope = Scope(contact, contact.record(declared), effect.at, None, data.get("vars") or {},
                      event.record() if event else None, data.get("zone") or self.project.timezone)
        names = scope.names()
        ref = self.signer.ref(effect.key)
        names["unsubscribe_url"] = unsubscribe_url = self._unsubscribe_url(ref)
        fields = contact.fields
        marketing = data.get("marketing", True)
        if channel == "sms":
            text = self.templates.render(template + ".sms.txt", names).strip()
            return RenderedMessage(channel, contact.id, fields.get("phone"), effect.at, effect.workflow, effect.step,
                                   template, effect.key, marketing, text + "\n", sender=self.sender.get("sms"),
                                   ref=ref)
        name, info, text_name = self._email(template)
        front = info.front.data if info.front is not None else {}
        where = info.display_path
        render_string = self.templates.render_string
        subject = render_string(front.get("subject", ""), names, where).strip()
        preheader = render_string(front["preheader"], names, where).strip() if front.get("preheader") else None
        sender = self._sender(front["from"], names, info, contact.id) if front.get("from") else \
            self.sender.get("email")
        html = self.templates.render(name, names)
        text_part = self.templates.render(text_name, names) if text_name is not None else None  # None: from the HTML
        tracker: Callable[[str], str] | None = None
        tracking = self.tracking(data.get("tracking"))
        if (tracking.opens or tracking.clicks) and (marketing or tracking.transactional):
            def tracker(html: str) -> str:
                return self._track(html, ref, tracking, unsubscribe_url)
        elif has_opt_out(html):  # means nothing to a mail client: never sent, tracked or not
            tracker = _without_opt_outs
        headers = {}
        if front.get("reply_to"):  # as `from:`: one mailbox, at the address written, whatever the contact's data
            headers["Reply-To"] = self._sender(front["reply_to"], names, info, contact.id, "reply_to")
        elif self.sender.get("reply_to"):
            headers["Reply-To"] = self.sender["reply_to"]
        headers.update(self._ref_headers(ref))
        if marketing and unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            if _list_header("List-Unsubscribe", header_safe(headers["List-Unsubscribe"])) is None:
                raise self._unsubscribe_too_long(contact.id, unsubscribe_url)
        bounce = self.serve.bounce_address
        return RenderedMessage(channel, contact.id, fields.get("email"), effect.at, effect.workflow, effect.step,
                               template, effect.key, marketing, text_part, subject, html, sender, preheader, headers,
                               ref, verp_address(bounce, ref) if bounce else None, tracker)



