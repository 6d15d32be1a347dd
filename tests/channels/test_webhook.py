"""The workflow `webhook` step, against a real http.server on 127.0.0.1."""
from __future__ import annotations

from mauto.channels import WebhookResult, call_webhook
from tests.servers import HttpServer

from .helpers import closed_port


def request(url: str, **fields) -> dict:
    """A request as the engine describes it (mauto/engine/interpreter.py, the `webhook` step)."""
    return {"url": url, "method": "POST", "headers": {}, "body": None, "timeout": "10s", "retries": 3, **fields}


def test_a_json_answer_is_parsed(http_server: HttpServer) -> None:
    http_server.respond("/crm/leads", 200, {"lead": {"id": 17, "owner": "Ines"}})
    result = call_webhook(request(http_server.url("/crm/leads?source=mauto"),
                                  headers={"X-Team": "growth", "content-type": "application/vnd.crm+json"},
                                  body={"contact": "c1", "score": 42}),
                          key="enr-9:notify-crm:0")

    assert result == WebhookResult("ok", 200, {"lead": {"id": 17, "owner": "Ines"}}, "HTTP 200")
    [received] = http_server.requests
    assert (received.method, received.path) == ("POST", "/crm/leads?source=mauto")
    assert received.json == {"contact": "c1", "score": 42}
    assert received.headers["Idempotency-Key"] == "enr-9:notify-crm:0"
    assert received.headers["X-Team"] == "growth"
    assert received.headers.get_all("Content-Type") == ["application/vnd.crm+json"]  # the step's own, once
    assert received.headers["User-Agent"] == "mauto"


def test_a_text_answer_is_kept_as_text(http_server: HttpServer) -> None:
    http_server.respond("/ping", 200, text="pong")
    result = call_webhook(request(http_server.url("/ping"), method="get"), key="k1")

    assert result == WebhookResult("ok", 200, "pong", "HTTP 200")
    [received] = http_server.requests
    assert received.method == "GET" and received.body == b""
    assert received.headers["Content-Type"] is None


def test_500_is_retry(http_server: HttpServer) -> None:
    http_server.respond("/hook", 500, {"error": "boom"})
    result = call_webhook(request(http_server.url("/hook")), key="k1")

    assert result == WebhookResult("retry", 500, {"error": "boom"}, 'HTTP 500: {"error": "boom"}')


def test_404_is_failed(http_server: HttpServer) -> None:
    result = call_webhook(request(http_server.url("/nowhere")), key="k1")

    assert (result.status, result.code) == ("failed", 404)
    assert result.detail == 'HTTP 404: {"error": "no reply scripted for /nowhere"}'


def test_a_timeout_is_retry(http_server: HttpServer) -> None:
    http_server.respond("/slow", 200, {}, delay=3)
    result = call_webhook(request(http_server.url("/slow"), timeout="1s"), key="k1")

    assert result.status == "retry" and result.code is None
    assert result.detail == f"timed out after 1s waiting for 127.0.0.1:{http_server.port}"


def test_the_default_timeout_applies_without_one(http_server: HttpServer) -> None:
    http_server.respond("/slow", 200, {}, delay=3)
    result = call_webhook(request(http_server.url("/slow"), timeout=None), key="k1", timeout_default=0.2)

    assert result.detail.startswith("timed out after 0.2s")


def test_a_refused_connection_is_retry() -> None:
    port = closed_port()
    result = call_webhook(request(f"http://127.0.0.1:{port}/hook"), key="k1")

    assert result.status == "retry"
    assert result.detail.startswith(f"could not connect to 127.0.0.1:{port}: ")


def test_only_http_urls_and_valid_requests_are_sent(http_server: HttpServer) -> None:
    results = [
        call_webhook(request("file:///etc/passwd"), key="k1"),
        call_webhook(request("ftp://127.0.0.1/x"), key="k1"),
        call_webhook(request(http_server.url("/x"), headers={"X-Evil": "a\r\nHost: evil"}), key="k1"),
        call_webhook(request(http_server.url("/x"), timeout="soon"), key="k1"),
        call_webhook(request(http_server.url("/x"), method="GET /admin"), key="k1"),
    ]

    assert [result.status for result in results] == ["failed"] * 5
    assert results[0].detail == "not sent: 'file:///etc/passwd' is not an http or https URL"
    assert http_server.requests == []
