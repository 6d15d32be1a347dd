"""SMS over an HTTP provider: one JSON POST a message.

The request: `POST <url>` with `{"to", "from", "text", "idempotency_key"}` and the headers
`Authorization: Bearer <token>`, `Idempotency-Key: <key>`, `Content-Type: application/json`,
`User-Agent: mauto`. The key is `Outgoing.message_id`, the same for every attempt of one message.

The answer:

- 2xx → SENT; `provider_id` is the `id` of the JSON answer when there is one.
- 429, 5xx and 408 → RETRY (a 429 with `Delivery.pushback`: the runner slows the channel down), with the
  provider's Retry-After in the detail when it gives one, and in
  `Delivery.retry_after` (seconds: `120`, or an HTTP-date taken relative to the answer's `Date`; at most a
  day; a value that is neither is ignored), which the runner waits at least before the next attempt.
- any other status (400, 401, 404, 422, a redirect, which is not followed) → PARKED, with the status and the
  start of the body.
- a refused connection, a connect timeout or a failed TLS handshake → RETRY; `handoff()` was not called.
- the connection lost or the timeout reached *after* the request was written → RETRY as well, although the
  provider may have received it. This is deliberate: every attempt carries the same `Idempotency-Key`, by
  which the provider recognises a repeated request and drops the duplicate instead of sending a second SMS.
  A provider that ignores the key could send a message twice in that one case.

The connection is kept open across a batch when the provider allows it; one found closed by the provider is
re-opened before `handoff()`.
"""
from __future__ import annotations

import http.client
import json
import re
import select
import ssl

from mauto.channels import _http
from mauto.channels.base import PARKED, RETRY, SENT, Delivery, Handoff, Outgoing, Transport, one_line, seconds

_HEADER_TOKEN = re.compile(r"[!-~]{1,998}")


def _retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status < 600


class HttpSmsTransport(Transport):
    """Sends SMS as JSON POSTs to a provider's endpoint."""

    name = "http"

    def __init__(self, url: str, token: str, *, timeout: float = 10.0,
                 context: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.endpoint = _http.endpoint(url)
        if not token or any(ord(char) < 32 or ord(char) == 127 for char in token):
            raise ValueError("the API token is empty or has control characters")
        self.token = token
        self.timeout = timeout
        self._context = context
        self._connection: http.client.HTTPConnection | None = None

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        try:
            text = message.body.decode("utf-8")
        except UnicodeDecodeError:
            return Delivery(PARKED, "not sent: the SMS text is not UTF-8")
        if not _HEADER_TOKEN.fullmatch(message.message_id or ""):  # it goes into a request header as it is
            return Delivery(PARKED, f"not sent: the idempotency key {message.message_id!r} is not printable ASCII "
                                    "without spaces")
        payload = json.dumps({"to": message.to, "from": message.sender, "text": text,
                              "idempotency_key": message.message_id}).encode("utf-8")
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": message.message_id,
                   "Content-Type": "application/json", "User-Agent": _http.USER_AGENT}
        try:
            connection = self._open()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Delivery(RETRY, _http.connect_problem(error, self.endpoint, self.timeout))
        handoff()
        try:
            connection.request("POST", self.endpoint.target, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except TimeoutError:
            self.close()
            return Delivery(RETRY, f"timed out after {seconds(self.timeout)} waiting for {self.endpoint.where} "
                                   "after the request was written; retrying is safe: the provider drops a "
                                   "duplicate by its Idempotency-Key")
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return Delivery(RETRY, f"connection to {self.endpoint.where} lost after the request was written "
                                   f"({type(error).__name__}: {error}); retrying is safe: the provider drops a "
                                   "duplicate by its Idempotency-Key")
        if response.will_close:
            self.close()
        return self._classify(response, raw)

    def clone(self) -> HttpSmsTransport:
        """The same provider and token, a connection of its own (`channels.sms.connections`)."""
        twin = HttpSmsTransport(self.url, self.token, timeout=self.timeout, context=self._context)
        twin.pace = self.pace
        return twin

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _open(self) -> http.client.HTTPConnection:
        """A connected connection: the kept-alive one unless the provider has closed it since."""
        if self._connection is not None and self._connection.sock is not None:
            readable, _, _ = select.select([self._connection.sock], [], [], 0)
            if not readable:  # an idle connection has nothing to read; readable means closed (EOF) or garbage
                return self._connection
            self.close()
        self._connection = _http.connection(self.endpoint, self.timeout, self._context)
        self._connection.connect()
        return self._connection

    def _classify(self, response: http.client.HTTPResponse, raw: bytes) -> Delivery:
        status = response.status
        detail = f"HTTP {status}"
        body = _http.snippet(raw)
        if body:
            detail += f": {body}"
        if 200 <= status < 300:
            answer = _http.decode(response, raw)
            provider_id = answer.get("id") if isinstance(answer, dict) else None
            return Delivery(SENT, detail, provider_id=str(provider_id) if provider_id is not None else None)
        if _retryable(status):
            retry_after = response.getheader("Retry-After")
            if retry_after:
                detail += f" (Retry-After: {one_line(retry_after, 60)})"
            return Delivery(RETRY, detail, retry_after=_http.retry_after(retry_after, response.getheader("Date")),
                            pushback=status == 429)
        if 300 <= status < 400:
            detail += f" (redirects are not followed; Location: {response.getheader('Location') or '-'})"
        return Delivery(PARKED, detail)
