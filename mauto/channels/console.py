"""The `console` transport, for trying a project out locally: each message printed as a short block.

```
--- email #12 to ann@example.com (welcome/step-1)
From:    Lumio <hello@lumio.example>
Subject: Welcome, Ann
    Hello Ann,
    thanks for signing up.
    ... (6 more lines)
```

Always SENT; nothing leaves the machine.
"""
from __future__ import annotations

import sys
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import TextIO

from mauto.channels.base import SENT, Delivery, Handoff, Outgoing, Transport

PREVIEW_LINES = 6


def email_text(body: bytes) -> tuple[EmailMessage, str]:
    """The parsed message and its text part (the HTML part as it is when there is no text part)."""
    parsed = BytesParser(policy=default_policy).parsebytes(body)
    part = parsed.get_body(preferencelist=("plain", "html"))
    try:
        text = part.get_content() if part is not None else ""
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        text = ""
    return parsed, text if isinstance(text, str) else ""


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
        lines = [f"--- {message.channel} #{message.id} to {message.to} ({message.workflow}/{message.step})"]
        if message.channel == "email":
            parsed, text = email_text(message.body)
            lines.append(f"From:    {parsed.get('From', '')}")
            lines.append(f"Subject: {parsed.get('Subject', '')}")
        else:
            text = message.body.decode("utf-8", "replace")
            if message.sender:
                lines.append(f"From:    {message.sender}")
        lines.extend(preview(text))
        stream = self.stream or sys.stdout
        stream.write("\n".join(lines) + "\n\n")
        stream.flush()
        return Delivery(SENT, "printed to the console")
