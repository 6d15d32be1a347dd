"""The workflow `webhook` step: one HTTP request, its answer for `as:`.

The engine describes the request (`effect.data["request"]`, see `mauto/engine/interpreter.py`) as
`{"url", "method", "headers", "headers_env"?, "body", "timeout", "retries"}`, with templates already
rendered. `headers_env` maps a header to the NAME of the environment variable holding its whole value
(`{"Authorization": "SHOP_API_AUTH"}`): the request is stored as it is, so the secret is read here, when the
request is sent, and is never written to the store or the logs. `call_webhook` sends the request with
`Idempotency-Key: <key>` (the same for every try of one step, so a receiver can drop a repeat), `User-Agent:
mauto` and, when there is a body, the body as JSON with `Content-Type: application/json` (the step's own
headers override those two, and `headers_env` overrides `headers`; Host, Content-Length, Transfer-Encoding
and Connection are http.client's and ignored). `retries` is the runner's business: it calls again after a
"retry" result, at most that many times.

The result:

- `ok`: a 2xx answer; `response` is the parsed JSON when the answer is JSON (by its Content-Type, or a body
  that is a JSON object or array), else the text.
- `retry`: 429, 5xx, 408, a refused connection, a timeout, a lost connection.
- `failed`: any other status (400, 404, a redirect, which is not followed), a URL that is not http(s) with a
  host or that holds a user name or password, a bad method or timeout, a header name that is not a token or
  a value with a control character (a line break would inject another header) or a character outside ASCII
  (the reason names the header, never its value), an environment variable of `headers_env` that is not
  set, a body that is not JSON-able, an answer over 1 MiB, any error nobody foresaw. These are never
  retried: the same request would fail the same way.

A URL's path and query outside ASCII (`?name={{ contact.first_name }}` with Zoë) are percent-encoded as
UTF-8, a host outside ASCII goes out in its IDNA form. No reason quotes a URL's query (contact data) nor
its user name and password: only its scheme, host and path.

Only http and https URLs are called; any host the workflow names is, since webhooks go to the team's own
services (lint makes the workflow write the host out, so a contact's data cannot choose it).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mauto.channels import _http
from mauto.workflow.durations import DurationError, check_timeout

OK, RETRY, FAILED = "ok", "retry", "failed"
MAX_RESPONSE = 1024 * 1024  # the answer goes into the enrollment's vars: keep it small
_METHOD = re.compile(r"[A-Z]{1,16}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FRAMING = {"host", "content-length", "transfer-encoding", "connection"}  # http.client sets them


@dataclass
class WebhookResult:
    status: str  # "ok" | "retry" | "failed"
    code: int | None  # the HTTP status, None when there was no answer
    response: Any  # parsed JSON when the answer is JSON, else its text; None without an answer
    detail: str  # one line: "HTTP 200", "HTTP 503: busy", "timed out after 10s"
    retry_after: float | None = None  # seconds the endpoint asked to wait (Retry-After), on a retry


def call_webhook(request: dict, key: str, timeout_default: float = 10.0,
                 context: ssl.SSLContext | None = None, environ: Mapping[str, str] | None = None) -> WebhookResult:
    """Send the webhook request the engine describes and classify the answer (see the module docstring).

    `environ` holds the variables `headers_env` names (default: the process's environment). Never raises: an
    error nobody foresaw is a FAILED result (RETRY for a network error) naming its type and the URL's host and
    path, never the error's text (http.client's may quote a header value, which may be a secret) nor the query.
    """
    try:
        return _call(request, key, timeout_default, context, environ)
    except Exception as error:  # noqa: BLE001 - the contract: an answer, never an exception
        status = RETRY if isinstance(error, (OSError, http.client.HTTPException)) else FAILED
        return WebhookResult(status, None, None, f"unexpected {type(error).__name__} calling {_place(request)}")


def _place(request: Any) -> str:
    """Where the request goes, for a message: host and path, never the query (see `_http.shown_url`)."""
    try:
        return _http.shown_url(request.get("url")) or "?"
    except Exception:  # noqa: BLE001 - not even a URL
        return "?"


def _call(request: dict, key: str, timeout_default: float, context: ssl.SSLContext | None,
          environ: Mapping[str, str] | None) -> WebhookResult:
    try:
        where = _endpoint(request.get("url"))
        method = str(request.get("method") or "POST").upper()
        if not _METHOD.fullmatch(method):
            raise ValueError(f"{method!r} is not an HTTP method")
        timeout = timeout_default
        if request.get("timeout") is not None:
            timeout = check_timeout(str(request["timeout"])).total_seconds()
        headers = {"user-agent": ("User-Agent", _http.USER_AGENT)}  # by lower-case name: one of each
        payload = None
        if request.get("body") is not None:
            payload = json.dumps(request["body"], ensure_ascii=False).encode("utf-8")
            headers["content-type"] = ("Content-Type", "application/json")
        for name, value in (request.get("headers") or {}).items():
            _add_header(headers, str(name), str(value), f"header {str(name)!r}")
        for name, variable in (request.get("headers_env") or {}).items():
            _add_header(headers, str(name), _from_environment(str(variable), environ),
                        f"header {str(name)!r} (from environment variable {variable})")
        if _CONTROL.search(key):
            raise ValueError("the idempotency key has a control character")
        # the key holds the contact id, which may be outside ASCII: percent-encoded, the same for every try
        headers["idempotency-key"] = ("Idempotency-Key", _http.ascii_text(key))
    except (ValueError, TypeError, DurationError) as problem:
        return WebhookResult(FAILED, None, None, f"not sent: {problem}")

    connection = _http.connection(where, timeout, context)
    try:
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as error:
            return WebhookResult(RETRY, None, None, _http.connect_problem(error, where, timeout))
        try:
            connection.request(method, where.target, body=payload, headers=dict(headers.values()))
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE + 1)
        except TimeoutError:
            return WebhookResult(RETRY, None, None, f"timed out after {timeout:g}s waiting for {where.where}")
        except (OSError, http.client.HTTPException) as error:
            return WebhookResult(RETRY, None, None,
                                 f"connection to {where.where} lost: {type(error).__name__}: {error}")
    finally:
        connection.close()

    status = response.status
    detail = f"HTTP {status}"
    if len(raw) > MAX_RESPONSE:
        return WebhookResult(FAILED, status, None, f"{detail}: the answer is larger than 1 MiB")
    answer = _http.decode(response, raw)
    body = _http.snippet(raw)
    if 200 <= status < 300:
        return WebhookResult(OK, status, answer, detail)
    if body:
        detail += f": {body}"
    if status in (408, 429) or 500 <= status < 600:
        retry_after = response.getheader("Retry-After")
        if retry_after:
            detail += f" (Retry-After: {retry_after.strip()})"
        return WebhookResult(RETRY, status, answer, detail,
                             _http.retry_after(retry_after, response.getheader("Date")))
    if 300 <= status < 400:
        detail += f" (redirects are not followed; Location: {response.getheader('Location') or '-'})"
    return WebhookResult(FAILED, status, answer, detail)


def _endpoint(url: Any) -> _http.Endpoint:
    """Where an http(s) URL points; ValueError for anything else, and for a URL holding credentials (a workflow
    names its secrets with `headers_env`; http.client would drop them silently)."""
    where = _http.endpoint(url)
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the URL to {where.where} holds a user name or password; give credentials with "
                         "headers_env")
    return where


def _add_header(headers: dict[str, tuple[str, str]], name: str, value: str, what: str) -> None:
    """Add one header, by lower-case name (the last one given wins); ValueError for one that cannot be sent.

    The value is never repeated in the message: it may be a secret, and the reason is stored.
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{what} is not a valid header name")
    control = _CONTROL.search(value)
    if control:
        raise ValueError(f"{what} has a control character (U+{ord(control.group()):04X}) in its value; "
                         "a header value is one line")
    if not value.isascii():  # Latin-1 would go out as bytes a receiver reads as it likes; more, not at all
        raise ValueError(f"{what} has a character outside ASCII in its value; a header value is ASCII "
                         "(send such data in the body or the URL)")
    if name.lower() not in _FRAMING:
        headers[name.lower()] = (name, value)


def _from_environment(variable: str, environ: Mapping[str, str] | None) -> str:
    """The value of an environment variable `headers_env` names; ValueError when it is not set."""
    if not _ENV_NAME.fullmatch(variable):
        raise ValueError(f"{variable!r} is not an environment variable name")
    value = (os.environ if environ is None else environ).get(variable)
    if value is None:
        raise ValueError(f"environment variable {variable} is not set")
    return value
