"""The links mauto writes into messages, and the tokens in them: made when a message is rendered, checked by
`mauto serve` when a recipient follows one.

Every token is signed with the project's signing key (the environment variable `unsubscribe_secret_env` names,
else the store's own key), so that a forged, truncated or altered token is refused before the store is read.

- A message's **ref** is the first 22 characters (132 bits) of the base64url HMAC-SHA256 of its outbox key: it
  names the message (and through it the contact, the workflow, the step and the template) without showing any
  of them, the same ref for the same message however often it is rendered (a re-run after a crash). The
  outbox keeps it (`messages.ref`) for good, so that a link works long after the mail was sent.
- `/u/<ref>.<sig>`: unsubscribe (RFC 8058 one-click by POST; a page with a button by GET), and the preference
  centre under it;
- `/o/<ref>.<sig>`: the open pixel;
- `/c/<ref>.<url, base64url>.<sig>`: a click, redirected to the URL that was in the message. The URL is in the
  token, signed: the server redirects only to what it signed, never anywhere a request asks (no open
  redirect), and a link still redirects after the contact was erased.
- `bounces+<ref>@domain`: the envelope sender (VERP), so that a bounce names its message exactly.

`<sig>` is 16 characters (96 bits) of the HMAC of the kind and the rest: a token of one kind never passes as
another. Tokens made before refs existed (`<contact id, base64url>.<signature>`, unsubscribe only) are still
honoured (`legacy_unsubscribe`).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

REF_LENGTH = 22
SIGNATURE_LENGTH = 16
_URLSAFE = bytes.maketrans(b"+/", b"-_")  # base64 to base64url (RFC 4648 §5)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
REF = re.compile(r"[A-Za-z0-9_-]{22}")
MAX_TOKEN = 8192  # a click token carries its URL; past this no token of ours is this long


def base64url(data: bytes) -> str:
    """base64url without padding, as in JWTs (RFC 7515 §2)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).decode("ascii").rstrip("=")


def unbase64url(text: str) -> bytes:
    """The bytes of base64url text without padding; ValueError when it is not that."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


@dataclass(frozen=True)
class Click:
    """A verified click token: the message and the URL that was in it."""

    ref: str
    url: str


class Signer:
    """Makes and checks the tokens of one signing key. The key's HMAC state is made once and copied for each
    token: a renderer signs several links per message."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._keyed = hmac.new(secret.encode("utf-8", "surrogatepass"), digestmod=hashlib.sha256)

    def _mac(self, *parts: str) -> bytes:
        keyed = self._keyed.copy()
        keyed.update("\0".join(parts).encode("utf-8", "surrogatepass"))
        return keyed.digest()

    def ref(self, key: str) -> str:
        """The message's ref: its outbox key, keyed-hashed (unguessable, stable)."""
        return base64url(self._mac("ref", key))[:REF_LENGTH]

    def _sign(self, kind: str, body: str) -> str:
        return body + "." + base64url(self._mac(kind, body))[:SIGNATURE_LENGTH]

    def _check(self, kind: str, token: str) -> str | None:
        """The signed body of a token of `kind`, or None when it does not verify."""
        if len(token) > MAX_TOKEN or not token.isascii():
            return None
        body, dot, signature = token.rpartition(".")
        if not dot or len(signature) != SIGNATURE_LENGTH:
            return None
        expected = base64url(self._mac(kind, body))[:SIGNATURE_LENGTH]
        return body if hmac.compare_digest(expected, signature) else None

    def unsubscribe(self, ref: str) -> str:
        return self._sign("u", ref)

    def open(self, ref: str) -> str:
        return self._sign("o", ref)

    def click(self, ref: str, url: str) -> str:
        return self._sign("c", ref + "." + base64url(url.encode("utf-8", "surrogatepass")))

    def check_unsubscribe(self, token: str) -> str | None:
        """The ref of a valid unsubscribe token, else None."""
        ref = self._check("u", token)
        return ref if ref is not None and REF.fullmatch(ref) else None

    def check_open(self, token: str) -> str | None:
        ref = self._check("o", token)
        return ref if ref is not None and REF.fullmatch(ref) else None

    def check_click(self, token: str) -> Click | None:
        body = self._check("c", token)
        if body is None:
            return None
        ref, _, encoded = body.partition(".")
        if not REF.fullmatch(ref):
            return None
        try:
            url = unbase64url(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return Click(ref, url)

    def legacy_unsubscribe(self, token: str) -> tuple[str, str] | None:
        """(contact id, channel) of an unsubscribe token of the first format (`<contact:channel, base64url>.
        <22-character signature>`, before refs): links in mail sent then must still work."""
        if len(token) > MAX_TOKEN or not token.isascii():
            return None
        payload, dot, signature = token.partition(".")
        if not dot or len(signature) != 22:
            return None
        keyed = self._keyed.copy()
        keyed.update(payload.encode("ascii"))
        if not hmac.compare_digest(base64url(keyed.digest())[:22], signature):
            return None
        try:
            contact, _, channel = unbase64url(payload).decode("utf-8").rpartition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (contact, channel) if contact and channel in ("email", "sms") else None


def verp_address(bounce_address: str, ref: str) -> str:
    """`bounces@example.com` and a ref: `bounces+<ref>@example.com` (the envelope sender of one message)."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{ref}@{domain}"


def verp_ref(address: str, bounce_address: str) -> str | None:
    """The ref in a VERP address made from `bounce_address`, else None (case-insensitive in the fixed parts,
    as mail systems may change their case)."""
    local, _, domain = bounce_address.rpartition("@")
    found = re.fullmatch(re.escape(local) + r"\+([A-Za-z0-9_-]{22})@" + re.escape(domain), address.strip(" <>"),
                         re.IGNORECASE)
    return found.group(1) if found else None
