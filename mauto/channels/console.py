"""The `console` transport, for trying a project out locally: each message printed as a short block.

```
--- email #12 to ann@example.com (welcome/step-1)
From:    Lumio <hello@lumio.example>
Subject: Welcome, Ann
    Hello Ann,
    thanks for signing up.
    ... (6 more lines)
```

Always SENT; nothing leaves the machine. Control characters in what is printed (a contact's name in the
subject, an address) are shown escaped (`\\n`, `\\x1b`): a message can neither add a line nor send the terminal
an escape sequence. Text the stream cannot encode is shown as backslash escapes. Only a stream that cannot be
written at all (a closed pipe) makes a message RETRY.
"""
from __future__ import annotations

import sys
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import TextIO

from mauto.channels.base import RETRY, SENT, Delivery, Handoff, Outgoing, Transport, one_line
from mauto.errors import printable

PREVIEW_LINES = 6


def email_text(body: bytes) -> tuple[EmailMessage, str]:
    """The parsed message and its text part (the HTML part as it is when there is no text part)."""
    parsed = BytesParser(policy=default_policy).parsebytes(body)
    try:
        part = parsed.get_body(preferencelist=("plain", "html"))
        text = part.get_content() if part is not None else ""
    except Exception:  # noqa: BLE001 - an unknown charset, a broken transfer encoding or MIME structure
        text = ""
    return parsed, text if isinstance(text, str) else ""


def _header(parsed: EmailMessage, name: str) -> str:
    """A header of the message as the `email` package decodes it; its raw text when that fails."""
    try:
        return str(parsed.get(name, ""))
    except Exception:  # noqa: BLE001 - the parser's own trouble with an odd header must not stop the printing
        return next((str(value) for key, value in parsed.raw_items() if key.lower() == name.lower()), "")


def preview(text: str, lines: int = PREVIEW_LINES) -> list[str]:
    """The first lines of a text, indented, and how many more there are."""
    kept = [line.rstrip() for line in text.strip().splitlines()]
    shown = ["    " + line if line else "" for line in kept[:lines]]
    if len(kept) > lines:
        shown.append(f"    ... ({len(kept) - lines} more lines)")
    return shown


class ConsoleTransport(Transport):
    """Prints each message to `stream` (standard output when None, looked up at each send)."""

    name = "console"

    def __init__(self, channel: str, stream: TextIO | None = None) -> None:
        self.channel = channel
        self.stream = stream

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        handoff()
        title = f"--- {message.channel} #{message.id} to {_shown(message.to)}"
        lines = [f"{title} ({_shown(message.workflow)}/{_shown(message.step)})"]
        if message.channel == "email":
            parsed, text = email_text(bytes(message.body))
            lines.append(f"From:    {_shown(_header(parsed, 'From'))}")
            lines.append(f"Subject: {_shown(_header(parsed, 'Subject'))}")
        else:
            text = bytes(message.body).decode("utf-8", "replace")
            if message.sender:
                lines.append(f"From:    {_shown(message.sender)}")
        lines.extend(_shown(line) for line in preview(text))
        block = "\n".join(lines) + "\n\n"
        stream = self.stream or sys.stdout
        try:
            try:
                stream.write(block)
            except UnicodeEncodeError:  # a terminal or a pipe in ASCII or Latin-1: escape what it cannot show
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(block.encode(encoding, "backslashreplace").decode(encoding, "replace"))
            stream.flush()
        except (OSError, ValueError) as error:  # a closed pipe or stream
            return Delivery(RETRY, one_line(f"could not print to the console: {error}"))
        return Delivery(SENT, "printed to the console")


def _shown(value: object) -> str:
    """One line of the block: control characters escaped, lone surrogates too (a stream cannot encode them)."""
    text = printable(value if isinstance(value, str) else "" if value is None else str(value))
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
