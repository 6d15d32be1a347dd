"""SMS over HTTP, against a real http.server on 127.0.0.1."""
from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from mauto.channels import PARKED, RETRY, SENT, HttpSmsTransport, _http, build_transports
from mauto.errors import MautoError
from tests.servers import HttpServer

from .helpers import Handoffs, closed_port, sms_outgoing


def transport_for(server: HttpServer, path: str = "/v1/sms", timeout: float = 5.0) -> HttpSmsTransport:
    return HttpSmsTransport(server.url(path), "tok-123", timeout=timeout)


def test_the_json_body_and_headers_arrive(http_server: HttpServer, project_at, handoff: Handoffs) -> None:
    http_server.respond("/v1/sms", 201, {"id": "sm-42", "status": "queued"})
    project = project_at(f"""\
channels:
  sms: {{transport: http, url: "{http_server.url('/v1/sms')}", token_env: SMS_TOKEN, timeout: 5s}}
""")
    transport = build_transports(project, {"SMS_TOKEN": "tok-123"})["sms"]
    outgoing = sms_outgoing(7, text="Zoë, your cart misses you: 10% off today")
    with transport:
        delivery = transport.send(outgoing, handoff)

    assert (delivery.status, delivery.provider_id) == (SENT, "sm-42")
    assert delivery.detail == 'HTTP 201: {"id": "sm-42", "status": "queued"}'
    assert handoff.calls == 1
    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", "/v1/sms")
    assert request.json == {"to": "+33600000001", "from": "LUMIO", "text": "Zoë, your cart misses you: 10% off today",
                            "idempotency_key": outgoing.message_id}
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["Idempotency-Key"] == outgoing.message_id
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "mauto"


def test_one_connection_carries_a_batch(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 200, {"id": "x"})
    handoff = Handoffs()
    with transport_for(http_server) as transport:
        statuses = [transport.send(sms_outgoing(number), handoff).status for number in range(1, 6)]

    assert statuses == [SENT] * 5
    assert handoff.calls == 5
    assert http_server.connections == 1


def test_a_connection_the_provider_closes_is_reopened_before_the_next_message(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 200, {"id": "x"}, headers={"Connection": "close"})
    handoff = Handoffs()
    with transport_for(http_server) as transport:
        statuses = [transport.send(sms_outgoing(number), handoff).status for number in range(1, 4)]

    assert statuses == [SENT] * 3
    assert http_server.connections == 3


def test_503_is_retry_with_the_providers_retry_after(http_server: HttpServer, handoff: Handoffs) -> None:
    http_server.respond("/v1/sms", 503, {"error": "maintenance"}, headers={"Retry-After": "120"})
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1), handoff)

    assert (delivery.status, delivery.detail) == (RETRY, 'HTTP 503: {"error": "maintenance"} (Retry-After: 120)')
    assert handoff.calls == 1


def test_429_is_retry(http_server: HttpServer, handoff: Handoffs) -> None:
    http_server.respond("/v1/sms", 429, text="slow down")
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1), handoff)

    assert (delivery.status, delivery.detail) == (RETRY, "HTTP 429: slow down")


def test_400_is_parked_with_the_status_and_the_start_of_the_body(http_server: HttpServer, handoff: Handoffs) -> None:
    http_server.respond("/v1/sms", 400, {"error": "invalid number", "field": "to", "doc": "x" * 500})
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1, to="+336"), handoff)
        after = transport.send(sms_outgoing(2), Handoffs())

    assert delivery.status == PARKED
    assert delivery.detail.startswith('HTTP 400: {"error": "invalid number", "field": "to"')
    assert len(delivery.detail) < 220
    assert after.status == PARKED  # the same answer, on the same connection: nothing left in a bad state


def test_a_read_timeout_after_the_request_was_written_is_retry(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 200, {"id": "late"}, delay=3, times=1)
    http_server.respond("/v1/sms", 200, {"id": "sm-2"})
    slow, quick = Handoffs(), Handoffs()
    outgoing = sms_outgoing(1)
    with transport_for(http_server, timeout=0.3) as transport:
        delivery = transport.send(outgoing, slow)
        retried = transport.send(outgoing, quick)

    assert delivery.status == RETRY
    assert delivery.detail.startswith("timed out after 0.3s waiting for 127.0.0.1:")
    assert "Idempotency-Key" in delivery.detail
    assert slow.calls == 1
    # The retry carries the same key: the provider recognises the duplicate.
    assert (retried.status, retried.provider_id) == (SENT, "sm-2")
    assert [request.headers["Idempotency-Key"] for request in http_server.requests] == [outgoing.message_id] * 2


def test_a_refused_connection_is_retry_and_nothing_is_handed_off(handoff: Handoffs) -> None:
    port = closed_port()
    with HttpSmsTransport(f"http://127.0.0.1:{port}/v1/sms", "tok", timeout=5) as transport:
        delivery = transport.send(sms_outgoing(1), handoff)

    assert delivery.status == RETRY
    assert delivery.detail.startswith(f"could not connect to 127.0.0.1:{port}: ")
    assert handoff.calls == 0


def test_a_handoff_that_raises_sends_nothing(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 200, {"id": "x"})
    with transport_for(http_server) as transport:
        with pytest.raises(RuntimeError):
            transport.send(sms_outgoing(1), Handoffs(error=RuntimeError("database is locked")))
        after = transport.send(sms_outgoing(2), Handoffs())

    assert after.status == SENT
    assert [request.json["idempotency_key"] for request in http_server.requests] == [sms_outgoing(2).message_id]


def test_a_token_variable_that_is_not_set_is_a_configuration_error(project_at) -> None:
    project = project_at("""\
timezone: Europe/Paris
channels:
  sms:
    transport: http
    url: https://sms.example.com/v1/messages
    token_env: SMS_TOKEN
""")
    with pytest.raises(MautoError) as raised:
        build_transports(project, {})

    assert str(raised.value) == ("mauto.yaml:6:16: channels.sms.token_env: the environment variable SMS_TOKEN "
                                 "named by `token_env` is not set (set it to the provider's API token)")


# --- Retry-After and one message's bad data (issue 10) -----------------------------------------------------

@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (503, {"Retry-After": "120"}, 120.0),
    (429, {"Retry-After": " 30 "}, 30.0),
    (503, {"Retry-After": "99999999999"}, 86400.0),  # a day at most
    (503, {"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}, 0.0),  # a moment past: at once (the backoff decides)
    (503, {"Retry-After": "soon, please"}, None),  # garbage is ignored: the backoff decides
    (503, {"Retry-After": "-5"}, None),
    (503, {}, None),
])
def test_a_retry_after_on_429_or_503_is_in_the_delivery_in_seconds(http_server: HttpServer, status: int,
                                                                    headers: dict, retry_after: float | None) -> None:
    http_server.respond("/v1/sms", status, {"error": "later"}, headers=headers)
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1), Handoffs())

    assert (delivery.status, delivery.retry_after) == (RETRY, retry_after)


def test_a_retry_after_http_date_counts_from_the_answers_date(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 429, {"error": "later"},
                        headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)})
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1), Handoffs())

    assert delivery.status == RETRY
    assert 118 <= delivery.retry_after <= 121  # HTTP-dates have whole seconds


def test_retry_after_reads_both_forms_and_ignores_garbage() -> None:
    at_0728 = 1792567680.0  # Wed, 21 Oct 2026 07:28:00 GMT
    assert _http.retry_after("Wed, 21 Oct 2026 07:30:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT", now=0.0) == 120.0
    assert _http.retry_after("Wed, 21 Oct 2026 07:30:00 GMT", None, now=at_0728) == 120.0  # no Date: the clock
    assert _http.retry_after("Wed, 21 Oct 2026 07:30:00 GMT", "garbage", now=at_0728) == 120.0
    assert _http.retry_after("Wednesday, 21-Oct-26 07:30:00 GMT", None, now=at_0728) == 120.0  # RFC 850 form
    assert _http.retry_after("1.5") == 1.5
    assert _http.retry_after("") is None
    assert _http.retry_after("Mon, 99 Foo 2026 99:99:99 GMT") is None


def test_a_sent_or_parked_answer_has_no_retry_after(http_server: HttpServer) -> None:
    http_server.respond("/v1/sms", 400, {"error": "bad"}, headers={"Retry-After": "60"})
    with transport_for(http_server) as transport:
        delivery = transport.send(sms_outgoing(1), Handoffs())

    assert (delivery.status, delivery.retry_after) == (PARKED, None)


@pytest.mark.parametrize("key", ["<clé@mauto>", "<a\x00b@mauto>", "<a b@mauto>", ""])
def test_an_idempotency_key_no_header_can_carry_is_parked_before_the_handoff(http_server: HttpServer,
                                                                            key: str) -> None:
    http_server.respond("/v1/sms", 200, {"id": "x"})
    outgoing = sms_outgoing(1)
    outgoing.message_id = key
    handoff = Handoffs()
    with transport_for(http_server) as transport:
        delivery = transport.send(outgoing, handoff)
        after = transport.send(sms_outgoing(2), Handoffs())

    assert delivery.status == PARKED
    assert delivery.detail == f"not sent: the idempotency key {key!r} is not printable ASCII without spaces"
    assert handoff.calls == 0  # it raised UnicodeEncodeError after the hand-off: the tick took it for unknown
    assert after.status == SENT
    assert [request.json["idempotency_key"] for request in http_server.requests] == [sms_outgoing(2).message_id]
