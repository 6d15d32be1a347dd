"""The `file` transport: each message written to `<path>/<key>.eml` (email) or `.txt` (SMS).

The file is written whole or not at all: to a temporary file in the same folder, then renamed over the
name (`os.replace`), so a reader never sees half a message. The name comes from the idempotency key, so a
message written twice (a retry after UNKNOWN) is one file. Always SENT, except when writing fails (a full
disk, no permission): RETRY with the error.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from mauto.channels.base import RETRY, SENT, Delivery, Handoff, Outgoing, Transport

_MAX_NAME = 120


def safe_name(key: str) -> str:
    """A file name from an idempotency key: only letters, digits, `.`, `_`, `-`, `+`, `@`; never hidden,
    never a path; a long key shortened with a hash of the whole, so two keys never share a name by it."""
    name = re.sub(r"[^A-Za-z0-9._+@-]", "_", key).lstrip(".") or "_"
    if len(name) > _MAX_NAME or name != key:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        name = f"{name[:_MAX_NAME]}-{digest}"
    return name


class FileTransport(Transport):
    """Writes each message to a file under `folder` (created when missing)."""

    name = "file"

    def __init__(self, channel: str, folder: Path) -> None:
        self.channel = channel
        self.folder = Path(folder)

    def path_for(self, message: Outgoing) -> Path:
        return self.folder / (safe_name(message.key) + (".eml" if message.channel == "email" else ".txt"))

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        target = self.path_for(message)
        if message.channel == "email":
            content = message.body
        else:
            header = f"To: {message.to}\nFrom: {message.sender or ''}\nMessage-ID: {message.message_id}\n\n"
            content = header.encode("utf-8") + message.body
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return Delivery(RETRY, f"could not create {self.folder}: {error.strerror or error}")
        handoff()
        temporary = None
        try:
            with tempfile.NamedTemporaryFile("wb", dir=self.folder, prefix=".", suffix=".tmp",
                                             delete=False) as handle:
                temporary = handle.name
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as error:
            if temporary is not None:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
            return Delivery(RETRY, f"could not write {target}: {error.strerror or error}")
        return Delivery(SENT, f"written to {target}", provider_id=target.name)
