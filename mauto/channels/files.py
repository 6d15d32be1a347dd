"""The `file` transport: each message written to `<path>/<key>.eml` (email) or `.txt` (SMS).

The file is written whole or not at all: to a temporary file in the same folder, then renamed over the
name (`os.replace`), so a reader never sees half a message. The name comes from the idempotency key, so a
message written twice is one file. Hence no `handoff()`: there is no point of no return to record, and a
crash between the write and the recorded answer leaves the message pending, to be written again over the
same file (no second message, and no `unknown` for a person to decide). Always SENT, except when writing
fails (a full disk, no permission): RETRY with the error. Nothing in one message makes `send` raise: an SMS's
address or sender with a line break or another control character is written escaped (`\\n`, `\\x00`), so it
cannot add a line to the file's header; a message that cannot be written at all is PARKED with the reason.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from mauto.channels.base import PARKED, RETRY, SENT, Delivery, Handoff, Outgoing, Transport, one_line
from mauto.errors import printable

_MAX_NAME = 120


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def safe_name(key: str) -> str:
    """A file name from an idempotency key (or a contact id): only letters, digits, `.`, `_`, `-`, `+`, `@`;
    never hidden, never a path, at most 133 characters; a key that had to be changed or shortened gets a hash
    of the whole, so two keys never share a name by it."""
    name = re.sub(r"[^A-Za-z0-9._+@-]", "_", key).lstrip(".") or "_"
    if len(name) > _MAX_NAME or name != key:
        name = f"{name[:_MAX_NAME]}-{_digest(key)}"
    return name


def bounded_name(name: str, whole: str) -> str:
    """`name` (already in safe characters) as it is when short, else its first 120 characters and a hash of
    `whole` (what it was made from): a file name has at most 255 bytes ("File name too long")."""
    return name if len(name) <= _MAX_NAME else f"{name[:_MAX_NAME]}-{_digest(whole)}"


def _field(value: object) -> str:
    """A value for a line of the SMS file's header: control characters escaped, so it stays one line."""
    return printable(value if isinstance(value, str) else "" if value is None else str(value))


class FileTransport(Transport):
    """Writes each message to a file under `folder` (created when missing)."""

    name = "file"

    def __init__(self, channel: str, folder: Path) -> None:
        self.channel = channel
        self.folder = Path(folder)

    def path_for(self, key: str, channel: str) -> Path:
        """The file the message with this key is written to (also what erasure deletes)."""
        return self.folder / (safe_name(key) + (".eml" if channel == "email" else ".txt"))

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        try:
            target = self.path_for(message.key, message.channel)
            if message.channel == "email":
                content = bytes(message.body)
            else:
                header = (f"To: {_field(message.to)}\nFrom: {_field(message.sender)}\n"
                          f"Message-ID: {_field(message.message_id)}\n\n")
                content = header.encode("utf-8", "backslashreplace") + bytes(message.body)
        except Exception as error:  # noqa: BLE001 - this message's odd data, not the transport's: park it alone
            return Delivery(PARKED, one_line(f"not written: {type(error).__name__}: {error}"))
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as error:
            return Delivery(RETRY, f"could not create {self.folder}: {getattr(error, 'strerror', None) or error}")
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
        except (OSError, ValueError) as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return Delivery(RETRY, f"could not write {target}: {getattr(error, 'strerror', None) or error}")
        return Delivery(SENT, f"written to {target}", provider_id=target.name)
