"""The `file` transport: each message written to `<path>/<key>.eml` (email) or `.txt` (SMS).

The file is written whole or not at all: to a temporary file in the same folder, then renamed over the
name (`os.replace`), so a reader never sees half a message. The name comes from the idempotency key, so a
message written twice is one file. Hence no `handoff()`: there is no point of no return to record, and a
crash between the write and the recorded answer leaves the message pending, to be written again over the
same file (no second message, and no `unknown` for a person to decide). Always SENT, except when writing
fails (a full disk, no permission): RETRY with the error.
"""
from __future__ import annotations

import hashlib
import os
import re
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
        # Hidden, and named by the target and this process: no other writer shares it (one tick at a time per
        # store; two stores writing one folder are two processes), so no random name is needed.
        temporary = self.folder / f".{target.name}.{os.getpid()}.tmp"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                left = memoryview(content)
                while left:  # a regular file takes it all at once; a short write is allowed, though
                    left = left[os.write(descriptor, left):]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary, target)
        except OSError as error:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            return Delivery(RETRY, f"could not write {target}: {error.strerror or error}")
        return Delivery(SENT, f"written to {target}", provider_id=target.name)
