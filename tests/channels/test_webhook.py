"""The workflow `webhook` step, against a real http.server on 127.0.0.1."""
from __future__ import annotations

import pytest

from mauto.channels import WebhookResult, _http, call_webhook
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


# --- what may not be sent: each fails at once, for good, with its reason, and nothing is sent ----------------

@pytest.mark.parametrize(("url", "detail"), [
    ("file:///etc/passwd", "not sent: 'file:///etc/passwd' is not an http or https URL"),
    ("ftp://127.0.0.1/x", "not sent: 'ftp://127.0.0.1/x' is not an http or https URL"),
    ("gopher://127.0.0.1:70/_x", "not sent: 'gopher://127.0.0.1:70/_x' is not an http or https URL"),
    ("127.0.0.1/hook", "not sent: '127.0.0.1/hook' is not an http or https URL"),
    ("http:///hook", "not sent: 'http:///hook' has no host"),
])
def test_a_rendered_url_that_is_not_http_with_a_host_fails_for_good(http_server: HttpServer, url, detail) -> None:
    result = call_webhook(request(url), key="k1")

    assert result == WebhookResult("failed", None, None, detail)
    assert http_server.requests == []


def test_a_url_holding_credentials_is_not_called(http_server: HttpServer) -> None:
    # Before: called, with the user name and password silently dropped by http.client.
    url = http_server.url("/hook").replace("http://", "http://shop:hunter2@")
    result = call_webhook(request(url), key="k1")

    assert result.status == "failed"
    assert result.detail == (f"not sent: the URL to 127.0.0.1:{http_server.port} holds a user name or password; "
                             "give credentials with headers_env")
    assert http_server.requests == []


@pytest.mark.parametrize("value", ["a\r\nX-Admin: yes", "a\nb", "a\0b", "a\x0bb", "a\x7fb", "a\tb"])
def test_a_header_value_with_a_control_character_fails_for_good(http_server: HttpServer, value) -> None:
    # Before: only CR, LF and NUL were refused; VT, DEL, tab went out.
    result = call_webhook(request(http_server.url("/x"), headers={"X-Name": value}), key="k1")

    assert result.status == "failed" and result.code is None
    assert result.detail == (f"not sent: header 'X-Name' has a control character (U+{ord(value[1]):04X}) in its "
                             "value; a header value is one line")
    assert http_server.requests == []


def test_a_timeout_past_what_a_socket_can_wait_fails_for_good(http_server: HttpServer) -> None:
    # Before: OverflowError out of call_webhook (the daemon's tick stopped).
    results = [call_webhook(request(http_server.url("/x"), timeout=timeout), key="k1")
               for timeout in ("99999999999d", "2h", "0s")]

    assert [result.detail for result in results] == [
        "not sent: `99999999999d` is longer than mauto handles (at most 365000d (about 1,000 years))",
        "not sent: a timeout of `2h` is longer than a request may wait (at most 1h)",
        "not sent: a timeout of `0s` gives up before anything is sent; write at least 1s",
    ]
    assert http_server.requests == []


# --- headers_env: secrets from the environment, read when sending -----------------------------------------

def test_headers_env_sends_the_variables_value(http_server: HttpServer) -> None:
    http_server.respond("/crm", 200, {"ok": True})
    hook = request(http_server.url("/crm"), headers={"Authorization": "overridden", "X-Team": "growth"},
                   headers_env={"Authorization": "SHOP_API_AUTH", "X-Api-Key": "SHOP_API_KEY"})
    result = call_webhook(hook, key="k1", environ={"SHOP_API_AUTH": "Bearer s3cr3t", "SHOP_API_KEY": "k3y"})

    assert result.status == "ok"
    [received] = http_server.requests
    assert received.headers.get_all("Authorization") == ["Bearer s3cr3t"]
    assert received.headers["X-Api-Key"] == "k3y" and received.headers["X-Team"] == "growth"
    assert hook["headers_env"] == {"Authorization": "SHOP_API_AUTH", "X-Api-Key": "SHOP_API_KEY"}  # untouched


def test_headers_env_reads_the_process_environment_by_default(http_server: HttpServer, monkeypatch) -> None:
    monkeypatch.setenv("MAUTO_TEST_HOOK_AUTH", "Bearer from-env")
    http_server.respond("/crm", 200, {})
    call_webhook(request(http_server.url("/crm"), headers_env={"Authorization": "MAUTO_TEST_HOOK_AUTH"}), key="k1")

    assert http_server.requests[0].headers["Authorization"] == "Bearer from-env"


def test_a_variable_that_is_not_set_fails_the_call_for_good(http_server: HttpServer) -> None:
    result = call_webhook(request(http_server.url("/crm"), headers_env={"Authorization": "SHOP_API_AUTH"}),
                          key="k1", environ={})

    assert result == WebhookResult("failed", None, None, "not sent: environment variable SHOP_API_AUTH is not set")
    assert http_server.requests == []


def test_a_variable_holding_a_line_break_fails_without_showing_it(http_server: HttpServer) -> None:
    result = call_webhook(request(http_server.url("/crm"), headers_env={"Authorization": "SHOP_API_AUTH"}),
                          key="k1", environ={"SHOP_API_AUTH": "Bearer s3cr3t\r\nX-Admin: yes"})

    assert result.status == "failed"
    assert result.detail == ("not sent: header 'Authorization' (from environment variable SHOP_API_AUTH) has a "
                             "control character (U+000D) in its value; a header value is one line")
    assert "s3cr3t" not in result.detail and http_server.requests == []


# --- data outside ASCII: percent-encoded where it can be, refused by name where it cannot, never raised ------

def test_a_url_outside_ascii_is_percent_encoded_and_called(http_server: HttpServer) -> None:
    # Before: UnicodeEncodeError out of call_webhook (`?name={{ contact.first_name }}` with Zoë).
    http_server.respond("/crm/Zo%C3%AB", 200, {"id": "crm-1"})
    result = call_webhook(request(http_server.url("/crm/Zoë?name=Zoë&city=東京&raw=%41")), key="k1")

    assert result == WebhookResult("ok", 200, {"id": "crm-1"}, "HTTP 200")
    [received] = http_server.requests
    assert received.path == "/crm/Zo%C3%AB?name=Zo%C3%AB&city=%E6%9D%B1%E4%BA%AC&raw=%41"  # what was encoded stays


def test_a_host_outside_ascii_goes_out_in_its_idna_form() -> None:
    # Not called: no traffic leaves 127.0.0.1; the endpoint is what http.client is given.
    where = _http.endpoint("https://Bücher.example:8443/zoë?q=ë")

    assert (where.host, where.port, where.target) == ("xn--bcher-kva.example", 8443, "/zo%C3%AB?q=%C3%AB")
    with pytest.raises(ValueError, match=r"^the host of 'https://a\.\.b\u00fc/x' is not a valid internationalised"):
        _http.endpoint("https://a..bü/x?email=ann@example.com")


@pytest.mark.parametrize("value", ["日本", "Zoë", "\u2028"])
def test_a_header_value_outside_ascii_fails_for_good_naming_the_header_not_the_value(http_server: HttpServer,
                                                                                       value) -> None:
    # Before: UnicodeEncodeError out of call_webhook for 日本 and U+2028; Zoë went out as a Latin-1 byte.
    result = call_webhook(request(http_server.url("/x"), headers={"X-Name": value}), key="k1")

    assert result == WebhookResult("failed", None, None, "not sent: header 'X-Name' has a character outside ASCII in "
                                   "its value; a header value is ASCII (send such data in the body or the URL)")
    assert http_server.requests == []


def test_an_idempotency_key_outside_ascii_is_percent_encoded(http_server: HttpServer) -> None:
    # The key holds the contact id. Before: UnicodeEncodeError for 日本, a Latin-1 byte for ë.
    http_server.respond("/crm", 200, {})
    results = [call_webhook(request(http_server.url("/crm")), key=key) for key in ("hooked:zoë:1", "hooked:日本:1")]

    assert [result.status for result in results] == ["ok", "ok"]
    assert [received.headers["Idempotency-Key"] for received in http_server.requests] == [
        "hooked:zo%C3%AB:1", "hooked:%E6%97%A5%E6%9C%AC:1"]


def test_an_unforeseen_error_is_a_failed_result_naming_host_and_path_only(http_server: HttpServer) -> None:
    # Before: RecursionError out of call_webhook (json.dumps of a body nested too deep).
    body: list = []
    for _ in range(100_000):
        body = [body]
    result = call_webhook(request(http_server.url("/crm?email=ann@example.com"), body=body), key="k1")

    assert result == WebhookResult("failed", None, None,
                                   f"unexpected RecursionError calling http://127.0.0.1:{http_server.port}/crm")
    assert http_server.requests == []


@pytest.mark.parametrize(("url", "detail"), [
    ("ftp://127.0.0.1/x?email=ann@example.com", "not sent: 'ftp://127.0.0.1/x' is not an http or https URL"),
    ("http://shop:hunter2@127.0.0.1:99999/x?email=ann@example.com#ann",
     "not sent: 'http://127.0.0.1:99999/x' has a bad port"),
    ("http://127.0.0.1/a b?email=ann@example.com", "not sent: 'http://127.0.0.1/a b' has spaces or control "
     "characters; percent-encode them"),
])
def test_no_reason_quotes_the_query_or_a_password(http_server: HttpServer, url, detail) -> None:
    # Before: the whole URL was quoted, the contact's address (and the password) with it.
    result = call_webhook(request(url), key="k1")

    assert result == WebhookResult("failed", None, None, detail)
    assert "ann@" not in result.detail and "hunter2" not in result.detail
