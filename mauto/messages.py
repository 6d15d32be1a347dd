"""Messages rendered from templates: the email (subject, HTML and text parts, headers) or the SMS text."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import string
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mauto.config import Project
from mauto.engine.context import Scope
from mauto.engine.records import ContactState, Event
from mauto.templates import TEXT_PART, TemplateProblem, TemplateSet

SIMULATION_SECRET = "mauto-simulation"  # signs unsubscribe links in simulations only


def unsubscribe_token(contact_id: str, channel: str, secret: str) -> str:
    """`<contact id, base64url>.<HMAC-SHA256, 22 chars>`: the unsubscribe endpoint checks it without a lookup."""
    payload = base64.urlsafe_b64encode(f"{contact_id}:{channel}".encode()).decode().rstrip("=")
    signature = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return payload + "." + base64.urlsafe_b64encode(signature).decode().rstrip("=")[:22]


def header_safe(value: str) -> str:
    """A header value from contact data, with line breaks folded to spaces: no header injection."""
    return re.sub(r"[\r\n]+", " ", value).strip()


_ADDRESS_HEADERS = {"From", "To", "Cc", "Reply-To", "Sender"}
_FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters (and MUST be at most 998)
_URL_SAFE = string.punctuation  # what `quote` leaves alone in a List-* header: all of printable ASCII


def _text_header(name: str, value: str) -> str:
    """An unstructured header: ASCII folded at spaces to 78 columns, anything else as RFC 2047 encoded words.

    Only these get encoded words: the `email` package's default policy also folds a long `List-Unsubscribe`
    URL into one (`=?utf-8?q?=3Chttps…`), which is not valid there and breaks one-click unsubscribe.
    """
    if not value.isascii():
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\n")
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT:
        return line
    folded, current = [], f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > _FOLD_AT and current != f"{name}:":
            folded.append(current)
            current = ""
        current += " " + word
    return "\n".join(folded + [current])


def _address_header(name: str, value: str | None) -> str:
    """An address header: display names outside ASCII as encoded words, the addresses as they are."""
    value = header_safe(value or "")
    if value.isascii():
        return _text_header(name, value)
    pairs = getaddresses([value])
    return f"{name}: " + ", ".join(formataddr(pair, "utf-8") for pair in pairs)


def _url_safe(value: str) -> str:
    return value if value.isascii() else quote(value, safe=_URL_SAFE)


def _body(text: str) -> tuple[str, str, bytes]:
    """(charset, transfer encoding, encoded body): 7bit when it can be, else whichever of quoted-printable
    and base64 is shorter (the `email` package's choice)."""
    data = text.encode("utf-8")
    if data.isascii() and max(map(len, data.split(b"\n"))) <= 998:
        return "utf-8", "7bit", data
    wide = len(data) - len(text)  # bytes beyond the first of each non-ASCII character, roughly
    if wide * 3 > len(data):
        return "utf-8", "base64", base64.encodebytes(data)
    return "utf-8", "quoted-printable", binascii.b2a_qp(data, istext=True)


def _boundary(key: str, *bodies: bytes) -> str:
    """A boundary made from the message's key (the same message gives the same bytes), checked absent."""
    salt = 0
    while True:
        boundary = "=_mauto_" + hashlib.sha256(f"{key}:{salt}".encode()).hexdigest()[:16]
        if not any(boundary.encode() in body for body in bodies):
            return boundary
        salt += 1


_HIDDEN = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LINK = re.compile(r"<a\b[^>]*?\bhref\s*=\s*(\"[^\"]*\"|'[^']*')[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<\s*(br|/p|p|/div|div|tr|/tr|/h[1-6]|h[1-6]|table|/table|/li|ul|/ul|ol|/ol)\b[^>]*>",
                    re.IGNORECASE)
_ITEM = re.compile(r"<\s*li\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def html_to_text(html: str) -> str:
    """The text part of an email made from its HTML: links as `text (url)`, blocks on their own lines.

    Regular expressions rather than an HTML parser: the HTML is our own template's output, and this runs
    for every email without a .email.txt part (a parser costs more than rendering the template).
    """
    text = _COMMENT.sub("", html)
    text = _HIDDEN.sub("", text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({unescape(m.group(1)[1:-1])})", text)
    text = _ITEM.sub("\n- ", text)
    text = _BREAK.sub("\n", text)
    text = unescape(_TAG.sub("", text))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    lines = [line.strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


@dataclass
class RenderedMessage:
    channel: str
    contact: str
    to: str | None
    at: datetime
    workflow: str
    step: str
    template: str
    key: str
    marketing: bool
    text: str
    subject: str | None = None
    html: str | None = None
    sender: str | None = None
    preheader: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def message_id(self) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:32]
        return f"<{digest}@mauto>"

    def to_bytes(self) -> bytes:
        """The whole RFC 5322 message, `\\n` line ends (SMTP's DATA turns them into CRLF).

        Written directly rather than through `email.message.EmailMessage`, which cost 4.3 ms of the daemon's
        5.5 ms per message (docs/performance.md); the tests read it back with the `email` parser.
        """
        lines = [_address_header("From", self.sender), _address_header("To", self.to),
                 _text_header("Subject", header_safe(self.subject or "")),
                 f"Date: {format_datetime(self.at)}", f"Message-ID: {self.message_id}"]
        for name, value in self.headers.items():
            value = header_safe(value)
            if name in _ADDRESS_HEADERS:
                lines.append(_address_header(name, value))
            elif name.startswith("List-"):  # URLs in angle brackets: never an encoded word (RFC 2369)
                lines.append(f"{name}: {_url_safe(value)}")
            else:
                lines.append(_text_header(name, value))
        lines.append("MIME-Version: 1.0")
        text_type, text_encoding, text_body = _body(self.text)
        if self.html is None:
            lines += [f'Content-Type: text/plain; charset="{text_type}"', f"Content-Transfer-Encoding: {text_encoding}"]
            return "\n".join(lines).encode() + b"\n\n" + text_body
        html_type, html_encoding, html_body = _body(self.html)
        boundary = _boundary(self.key, text_body, html_body)
        lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
        head = "\n".join(lines).encode()
        return b"".join((
            head, b"\n--", boundary.encode(), b"\n",
            f'Content-Type: text/plain; charset="{text_type}"\nContent-Transfer-Encoding: {text_encoding}\n\n'.encode(),
            text_body, b"\n--", boundary.encode(), b"\n",
            f'Content-Type: text/html; charset="{html_type}"\nContent-Transfer-Encoding: {html_encoding}\n\n'.encode(),
            html_body, b"\n--", boundary.encode(), b"--\n"))

    def file_name(self, index: int) -> str:
        stamp = self.at.strftime("%Y%m%dT%H%M")
        suffix = ".eml" if self.channel == "email" else ".txt"
        return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{index:03d}-{stamp}-{self.workflow}-{self.step}") + suffix

    def write(self, folder: Path, index: int) -> Path:
        """Write under `folder`/<contact>/: the contact id is made a safe file name, never a path."""
        safe_contact = re.sub(r"[^A-Za-z0-9._@+-]", "_", self.contact).lstrip(".") or "_"
        target = folder / safe_contact / self.file_name(index)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.channel == "email":
            target.write_bytes(self.to_bytes())
        else:
            target.write_text(f"To: {self.to}\nAt: {self.at.isoformat()}\n\n{self.text}", encoding="utf-8")
        return target


class MessageRenderer:
    """Renders the message a send effect asks for, with the contact's data at the moment of sending."""

    def __init__(self, project: Project, secret: str | None = None) -> None:
        self.project = project
        self.templates = TemplateSet(project.templates_dir, project.display_root)
        data = project.data
        self.sender = data.get("sender") or {}
        self.unsubscribe_template = data.get("unsubscribe_url")
        slot = re.fullmatch(r"([^{}]*)\{\{\s*token\s*\}\}([^{}]*)", self.unsubscribe_template or "")
        self._token_slot = slot.groups() if slot else None
        env_name = data.get("unsubscribe_secret_env")
        self.secret = secret or (os.environ.get(env_name) if env_name else None) or SIMULATION_SECRET

    def render(self, effect, contact: ContactState, declared: dict[str, Any]) -> RenderedMessage:
        data = effect.data
        channel, template = data["channel"], data["template"]
        event = Event.from_dict(data["trigger_event"]) if data.get("trigger_event") else None
        scope = Scope(contact, contact.record(declared), effect.at, None, data.get("vars") or {},
                      event.record() if event else None, data.get("zone") or self.project.timezone)
        names = scope.names()
        unsubscribe_url = ""
        if self.unsubscribe_template:
            token = unsubscribe_token(contact.id, channel, self.secret)
            if self._token_slot is not None:  # the usual `https://…/{{ token }}`: no template to run
                unsubscribe_url = self._token_slot[0] + token + self._token_slot[1]
            else:
                unsubscribe_url = self.templates.render_string(self.unsubscribe_template, {"token": token},
                                                               "mauto.yaml unsubscribe_url")
        names["unsubscribe_url"] = unsubscribe_url
        fields = contact.fields
        common = dict(channel=channel, contact=contact.id, at=effect.at, workflow=effect.workflow, step=effect.step,
                      template=template, key=effect.key, marketing=data.get("marketing", True))
        if channel == "sms":
            name = template + ".sms.txt"
            text = self.templates.render(name, names).strip()
            return RenderedMessage(to=fields.get("phone"), text=text + "\n", sender=self.sender.get("sms"), **common)
        name = template + ".email.html"
        info = self.templates.info(name)
        if not self.templates.exists(name):
            raise TemplateProblem(f"template `{template}` not found", self.templates.display(name))
        if info.error is not None:
            raise info.error
        front = info.front.data if info.front is not None else {}
        where = info.display_path
        subject = self.templates.render_string(front.get("subject", ""), names, where).strip()
        preheader = self.templates.render_string(front["preheader"], names, where).strip() \
            if front.get("preheader") else None
        sender = self.templates.render_string(front["from"], names, where) if front.get("from") else \
            self.sender.get("email")
        html = self.templates.render(name, names)
        text_name = template + TEXT_PART
        text = self.templates.render(text_name, names) if self.templates.exists(text_name) else html_to_text(html)
        headers = {}
        if self.sender.get("reply_to"):
            headers["Reply-To"] = self.sender["reply_to"]
        if common["marketing"] and unsubscribe_url:
            headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return RenderedMessage(to=fields.get("email"), text=text, subject=subject, html=html, sender=sender,
                               preheader=preheader, headers=headers, **common)



