"""HTTP plumbing shared by the SMS transport and webhooks: http.client rather than urllib, so that connecting
(safe to retry, before `handoff`) and writing the request are two separate steps, and so that no proxy
setting from the environment reroutes the traffic."""
from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import idna

from mauto.channels.base import one_line

USER_AGENT = "mauto"
RETRY_AFTER_CAP = 86400.0  # a provider asking for more than a day is capped at a day: the backoff goes on after
_PRINTABLE = "".join(map(chr, range(33, 127)))  # left as it is in a URL: ASCII but the space and DEL
_DELAY_SECONDS = re.compile(r"\s*(\d{1,15}(?:\.\d{1,9})?)\s*")


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int | None
    target: str  # path and query, as the request line carries them

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def endpoint(url: str) -> Endpoint:
    """Split an http(s) URL; anything else is a ValueError, which names the URL without its query, fragment
    or user name and password (`shown_url`: a query may hold contact data, a password is a secret).

    A host outside ASCII goes out in its IDNA form (`bücher.example` → `xn--bcher-kva.example`, IDNA 2008 with
    the UTS #46 mapping, as email addresses are), and a path or query outside ASCII percent-encoded as UTF-8
    (`?name=Zoë` → `?name=Zo%C3%AB`): a request line is ASCII."""
    if not isinstance(url, str):
        raise ValueError(f"{url!r} is not a URL")
    shown = shown_url(url)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{shown!r} is not an http or https URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown!r} has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"{shown!r} has no host")
    if any(ord(char) < 33 or ord(char) == 127 for char in parts.path + parts.query):
        raise ValueError(f"{shown!r} has spaces or control characters; percent-encode them")
    host = parts.hostname
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise ValueError(f"the host of {shown!r} is not a valid internationalised domain name: {error}") \
                from None
    target = ascii_text(parts.path or "/") + (f"?{ascii_text(parts.query)}" if parts.query else "")
    return Endpoint(parts.scheme, host, port, target)


def ascii_text(text: str) -> str:
    """`text` with each character outside ASCII percent-encoded (UTF-8), the rest as it is."""
    return text if text.isascii() else quote(text, safe=_PRINTABLE, errors="surrogatepass")


def shown_url(url: str) -> str:
    """The URL to name in a message: scheme, host, port and path; never its query or fragment (contact data) nor
    a user name or password (a secret)."""
    text = url.strip()
    cut = min((index for index in (text.find("?"), text.find("#")) if index >= 0), default=len(text))
    text = text[:cut]
    scheme, separator, rest = text.partition("://")
    if separator:
        authority, slash, path = rest.partition("/")
        text = f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"
    return text


def connection(where: Endpoint, timeout: float, context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An unconnected connection; `.connect()` opens it (and does the TLS handshake)."""
    if where.scheme == "https":
        return http.client.HTTPSConnection(where.host, where.port, timeout=timeout,
                                           context=context or ssl.create_default_context())
    return http.client.HTTPConnection(where.host, where.port, timeout=timeout)


def connect_problem(error: BaseException, where: Endpoint, timeout: float) -> str:
    """Why connecting failed, in words."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g}s connecting to {where.where}"
    if isinstance(error, ssl.SSLError):
        return f"TLS with {where.where} failed: {error}"
    if isinstance(error, OSError):
        return f"could not connect to {where.where}: {error.strerror or error}"
    return f"could not connect to {where.where}: {error}"


def snippet(raw: bytes, limit: int = 200) -> str:
    """The start of a response body, on one line."""
    return one_line(raw[:limit * 4].decode("utf-8", "replace"), limit)


def is_json(response: http.client.HTTPResponse) -> bool:
    content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def decode(response: http.client.HTTPResponse, raw: bytes) -> Any:
    """Parsed JSON when the answer says it is JSON (and is), else the text."""
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    if is_json(response) or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _http_date(value: str) -> float | None:
    """An HTTP-date (RFC 9110 §5.6.7: `Wed, 21 Oct 2026 07:28:00 GMT`, and the obsolete forms) as a POSIX
    timestamp, or None when it is not one."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # "-0000": UTC, "no information about the local time zone" (RFC 5322)
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        return None


def retry_after(value: str | None, date: str | None = None, now: float | None = None) -> float | None:
    """Seconds to wait before trying again, from a `Retry-After` answer header (RFC 9110 §10.2.3), or None
    when there is none or it is neither form of it (garbage is ignored, not guessed at).

    `delay-seconds` (`120`; a fraction is taken too) is used as it is. An HTTP-date is taken relative to the
    answer's own `Date` header when it has a valid one (so a provider's clock that is off does not matter),
    else to `now` (the clock, seconds since the epoch). Never below 0, never above RETRY_AFTER_CAP (a day)."""
    if value is None:
        return None
    delay: float | None
    number = _DELAY_SECONDS.fullmatch(value)
    if number is not None:
        delay = float(number.group(1))
    else:
        until = _http_date(value.strip())
        if until is None:
            return None
        reference = _http_date(date.strip()) if date else None
        if reference is None:
            reference = time.time() if now is None else now
        delay = until - reference
    return min(max(delay, 0.0), RETRY_AFTER_CAP)
