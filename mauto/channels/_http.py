"""HTTP plumbing shared by the SMS transport and webhooks: http.client rather than urllib, so that connecting
(safe to retry, before `handoff`) and writing the request are two separate steps, and so that no proxy
setting from the environment reroutes the traffic."""
from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mauto.channels.base import one_line

USER_AGENT = "mauto"


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
    """Split an http(s) URL; anything else is a ValueError."""
    if not isinstance(url, str):
        raise ValueError(f"{url!r} is not a URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http or https URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    if any(ord(char) < 33 or ord(char) == 127 for char in parts.path + parts.query):
        raise ValueError(f"{url!r} has spaces or control characters; percent-encode them")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.scheme, parts.hostname, port, target)


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
