"""Messages rendered from templates: the email (subject, HTML and text parts, headers) or the SMS text."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from html import unescape
from pathlib import Path
from typing import Any

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

    def to_email(self) -> EmailMessage:
        message = EmailMessage()
        message["From"] = header_safe(self.sender or "")
        message["To"] = header_safe(self.to or "")
        message["Subject"] = header_safe(self.subject or "")
        message["Date"] = format_datetime(self.at)
        message["Message-ID"] = self.message_id
        for name, value in self.headers.items():
            message[name] = header_safe(value)
        message.set_content(self.text)
        if self.html is not None:
            message.add_alternative(self.html, subtype="html")
        return message

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
            target.write_bytes(bytes(self.to_email()))
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



