"""The workflow `webhook` step: one HTTP request, its answer for `as:`.

The engine describes the request (`effect.data["request"]`, see `mauto/engine/interpreter.py`) as
`{"url", "method", "headers", "body", "timeout", "retries"}`, with templates already rendered. `call_webhook`
sends it with `Idempotency-Key: <key>` (the same for every try of one step, so a receiver can drop a
repeat), `User-Agent: mauto` and, when there is a body, the body as JSON with `Content-Type:
application/json` (the step's own headers override those two; Host, Content-Length, Transfer-Encoding and
Connection are http.client's and ignored). `retries` is the runner's business: it
calls again after a "retry" result, at most that many times.

The result:

- `ok`: a 2xx answer; `response` is the parsed JSON when the answer is JSON (by its Content-Type, or a body
  that is a JSON object or array), else the text.
- `retry`: 429, 5xx, 408, a refused connection, a timeout, a lost connection.
- `failed`: any other status (400, 404, a redirect, which is not followed), a URL that is not http(s), a bad
  method, header or timeout, a body that is not JSON-able, an answer over 1 MiB.

Only http and https URLs are called; any host the workflow names is, since webhooks go to the team's own
services.
"""
from __future__ import annotations

import http.client
import json
import re
import ssl
from dataclasses import dataclass
from typing import Any

from mauto.channels import _http
from mauto.workflow.durations import DurationError, parse_duration

OK, RETRY, FAILED = "ok", "retry", "failed"
MAX_RESPONSE = 1024 * 1024  # the answer goes into the enrollment's vars: keep it small
_METHOD = re.compile(r"[A-Z]{1,16}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FRAMING = {"host", "content-length", "transfer-encoding", "connection"}  # http.client sets them


@dataclass
class WebhookResult:
    status: str  # "ok" | "retry" | "failed"
    code: int | None  # the HTTP status, None when there was no answer
    response: Any  # parsed JSON when the answer is JSON, else its text; None without an answer
    detail: str  # one line: "HTTP 200", "HTTP 503: busy", "timed out after 10s"


def call_webhook(request: dict, key: str, timeout_default: float = 10.0,
                 context: ssl.SSLContext | None = None) -> WebhookResult:
    """Send the webhook request the engine describes and classify the answer (see the module docstring)."""
    try:
        where = _http.endpoint(request.get("url"))
        method = str(request.get("method") or "POST").upper()
        if not _METHOD.fullmatch(method):
            raise ValueError(f"{method!r} is not an HTTP method")
        timeout = timeout_default
        if request.get("timeout") is not None:
            timeout = parse_duration(str(request["timeout"])).total_seconds()
            if timeout <= 0:
                raise ValueError(f"timeout {request['timeout']!r} must be longer than 0s")
        headers = {"user-agent": ("User-Agent", _http.USER_AGENT)}  # by lower-case name: one of each
        payload = None
        if request.get("body") is not None:
            payload = json.dumps(request["body"], ensure_ascii=False).encode("utf-8")
            headers["content-type"] = ("Content-Type", "application/json")
        for name, value in (request.get("headers") or {}).items():
            name, value = str(name), str(value)
            if not _TOKEN.fullmatch(name) or re.search(r"[\r\n\0]", value):
                raise ValueError(f"header {name!r} is not a valid header")
            if name.lower() not in _FRAMING:
                headers[name.lower()] = (name, value)
        if re.search(r"[\r\n\0]", key):
            raise ValueError("the idempotency key has a line break")
        headers["idempotency-key"] = ("Idempotency-Key", key)
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
        return WebhookResult(RETRY, status, answer, detail)
    if 300 <= status < 400:
        detail += f" (redirects are not followed; Location: {response.getheader('Location') or '-'})"
    return WebhookResult(FAILED, status, answer, detail)
