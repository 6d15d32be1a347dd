"""Random requests thrown at a real `mauto serve` application (uvicorn on 127.0.0.1, in a thread) through httpx:
random methods, paths, headers and bodies on every route, events with random fields, provider webhooks signed
with the tests' own keys around random payloads, and malformed HTTP on a raw socket. Whatever comes, the
answer is never a 5xx, a 4xx says why (a JSON `error`, or a page), and no traceback ever reaches the client.

One server serves the whole module (started once: the examples are many). All five providers are configured,
with secrets passed through `ServeConfig.environ`, so that the requests get past "not configured" into each
provider's checks, and, when signed, into its parser and the store."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
import string
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.config import load_project
from mauto.links import Signer
from tests.serve.conftest import HOST, SECRET, Served
from tests.servers import SmtpServer

TOPIC = "arn:aws:sns:eu-west-3:123456789012:mauto-feedback"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hook", "p@ss:word"
TWILIO_TOKEN = "12345678901234567890123456789012"
PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark", "twilio")
PROVIDERS_YAML = f"""\
  providers:
    ses: {{topic_arn: "{TOPIC}"}}
    sendgrid: {{public_key_env: FUZZ_SENDGRID_KEY}}
    mailgun: {{signing_key_env: FUZZ_MAILGUN_KEY}}
    postmark: {{username_env: FUZZ_POSTMARK_USER, password_env: FUZZ_POSTMARK_PASSWORD}}
    twilio: {{auth_token_env: FUZZ_TWILIO_TOKEN}}
"""
UVICORN_400 = "Invalid HTTP request received."  # uvicorn's own answer to what h11 cannot parse (before the app)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


# --- the server --------------------------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    """The served project, the keys its providers are checked with, and tokens that verify."""

    served: Served
    sendgrid: ec.EllipticCurvePrivateKey
    sns: rsa.RSAPrivateKey
    ref: str  # the ref of a message the store holds (ana's cart reminder)
    tokens: list[str]  # /u/, /o/ and /c/ tokens that verify, and some that nearly do

    @property
    def key(self) -> str:
        return self.served.key

    def request(self, method: str, target: str, headers: dict[str, Any], body: bytes) -> httpx.Response | None:
        """`method` on `target` exactly as given (no normalisation of `..` or of percent-escapes by httpx). None
        for a redirect whose Location httpx cannot parse: a signed click's URL, which the server passes on as
        it was in the message (`https://shop.example:port/`)."""
        try:
            return self.served.client.request(method, "/", content=body, headers=headers,
                                              extensions={"target": target.encode("ascii")})
        except httpx.RemoteProtocolError as error:
            if "location header" not in str(error):
                raise
            return None


def _sns_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def serve_providers(root: Path, smtp: SmtpServer, environ: dict[str, str], fetch: Callable[[str], bytes]) -> Served:
    """The harness's project with the five providers configured, served."""
    served = Served(root, smtp)
    # The providers go under `serve:` (the last block of the harness's mauto.yaml); appended here rather than
    # through Served's `serve_yaml`, whose text is dedented to column 0 and so lands outside `serve:`.
    with (root / "mauto.yaml").open("a", encoding="utf-8") as file:
        file.write(PROVIDERS_YAML)
    served.project = load_project(root / "mauto.yaml")
    assert sorted(served.project.serve.providers) == sorted(PROVIDERS)
    # The harness's socket is made without IPPROTO_TCP, so asyncio does not set TCP_NODELAY on the connections it
    # accepts, and each answer on a kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle): the
    # same port, bound again with the protocol named, answers in about a millisecond.
    served.sock.close()
    served.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    served.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    served.sock.bind((HOST, served.port))
    return served.start(environ=environ, fetch=fetch)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    sendgrid = ec.generate_private_key(ec.SECP256R1())
    sns = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _sns_certificate(sns)

    def fetch(url: str) -> bytes:  # the SNS certificate, from memory: nothing leaves 127.0.0.1
        return pem

    public = sendgrid.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    environ = {"FUZZ_SENDGRID_KEY": base64.b64encode(public).decode("ascii"), "FUZZ_MAILGUN_KEY": MAILGUN_KEY,
               "FUZZ_POSTMARK_USER": POSTMARK_USER, "FUZZ_POSTMARK_PASSWORD": POSTMARK_PASSWORD,
               "FUZZ_TWILIO_TOKEN": TWILIO_TOKEN}
    with SmtpServer() as smtp:
        served = serve_providers(tmp_path_factory.mktemp("fuzz"), smtp, environ, fetch)
        try:
            now = datetime.now(UTC)
            assert served.post_events({"contact": "ana", "event": "cart_abandoned", "at": now.isoformat()}
                                      ).status_code == 202
            served.tick(now + timedelta(seconds=1))
            link = smtp.messages[0].message["List-Unsubscribe"].strip("<>")
            signer = Signer(SECRET)
            ref = signer.check_unsubscribe(link.rsplit("/", 1)[1])
            assert ref is not None
            legacy = base64.urlsafe_b64encode(b"ben:email").decode().rstrip("=")
            legacy += "." + base64.urlsafe_b64encode(
                hmac.new(SECRET.encode(), legacy.encode(), hashlib.sha256).digest()).decode().rstrip("=")[:22]
            good = [signer.unsubscribe(ref), signer.open(ref), signer.click(ref, "https://shop.example/cart/42?x=1"),
                    signer.unsubscribe("B" * 22), signer.open("B" * 22), signer.click("B" * 22, "http://x.example/"),
                    legacy]
            tokens = good + [token[:-1] for token in good] + [token + "A" for token in good] + \
                [Signer("another key").unsubscribe(ref), signer.click(ref, "javascript:alert(1)")]
            yield Fuzzed(served, sendgrid, sns, ref, tokens)
        finally:
            served.stop()


# --- what every answer must be ----------------------------------------------------------------------------------


def _shown(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} characters)"


def settled(served: Served) -> None:
    """Wait until the server has finished its requests, logging included. After a 500, uvicorn logs the
    exception's traceback in the server's thread once the answer is sent (Python 3.11's traceback parses source
    with `ast` for its carets) while pytest parses the test's source to show the failure: with this venv's
    Python 3.11.7 the two at once can end the whole session with "INTERNALERROR ... SystemError: AST
    constructor recursion depth mismatch" instead of reporting the failure. So a test waits here first."""
    deadline = time.monotonic() + 5
    while served.server is not None and served.server.server_state.tasks and time.monotonic() < deadline:
        time.sleep(0.01)


def check(answer: httpx.Response | None, method: str, target: str, headers: dict[str, Any], body: bytes,
          served: Served) -> None:
    """Never a 5xx, never a traceback; a 4xx says why."""
    request = f"{method} {_shown(target, 200)} headers={_shown(headers)} body={_shown(body)}"
    if answer is None:  # a redirect (httpx parses Location only then) to an odd URL: only a click token does that
        assert target.startswith("/c/"), f"a redirect to a URL httpx cannot parse for {request}"
        return
    status = answer.status_code
    if status >= 500:
        settled(served)
    assert status < 500, f"{status} {answer.text[:500]!r} for {request}"
    assert "Traceback" not in answer.text and 'File "' not in answer.text, f"a traceback for {request}"
    if status < 400 or method == "HEAD":
        return
    media = answer.headers.get("content-type", "").split(";")[0].strip()
    if media == "application/json":
        reason = answer.json().get("error")
        assert isinstance(reason, str) and reason.strip(), f"{status} without a reason for {request}"
    elif media == "text/html":
        assert "<h1" in answer.text or "<p" in answer.text, f"{status} with an empty page for {request}"
    elif media == "text/plain" and answer.text == UVICORN_400:
        pass  # h11 refused the request before it reached the application
    elif status == 404 and target.startswith("/o/") and not answer.content:
        pass  # the open pixel: an image request, whose 404 nobody reads; it is bare
    else:
        raise AssertionError(f"{status} with a {media or 'missing'} body {answer.text[:200]!r} for {request}")


# --- strategies ---------------------------------------------------------------------------------------------------

SPECIAL_TEXT = st.sampled_from([
    "", " ", "\x00", "\t\r\n", "ana", "ben", "cy", "nobody", "ana@example.com", "Ana@Example.COM", "+33612345678",
    "+33 6 12 34 56 78", "STOP", "stop.", "ARRÊT", "2026-12-01T10:00:00+00:00", "2026-12-01", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "+2h", "-40d", "x" * 5000, "é" * 300, "\u202e", "\ufeff", "<script>alert(1)</script>",
    "{{ 7*7 }}", "%s%n", "../../etc/passwd", "null", "[]", "😀", "\U0010ffff", "\ud800", "a\udfffb",
])
SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
TEXT = st.one_of(st.text(max_size=30), SPECIAL_TEXT, SURROGATES)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**300), max_value=10**300),
                 st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(LEAF, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)), max_leaves=12)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy`, now and then any JSON value instead: shapes mostly right, so that checks further in run."""
    return st.integers(0, 7).flatmap(lambda n: JSON if n == 0 else strategy)


def dumps(value: Any) -> str:
    """JSON as a client writes it: lone surrogates come out as `\\ud800` escapes (ensure_ascii)."""
    return json.dumps(value)


RAW_JSON = st.sampled_from([
    "1" * 5000, "-" + "9" * 4400, "1e99999", "-1e400", "[1e400]", "0.000000000000000000000000000001e-400",
    "[" * 33 + "]" * 33, "[" * 32 + "]" * 32, "[" * 100_000, "{" * 50_000, '{"a":' * 40 + "1" + "}" * 40,
    '"\\ud800"', '["\\udc00\\ud800"]', "NaN", "Infinity", "-Infinity", "[NaN]", '{"__proto__": {"a": 1}}',
    "\ufeff{}", "{}", "[]", "[[]]", "[{}]", "null", "true", '""', "[" + ",".join(["{}"] * 10_001) + "]",
    '{"contact": "ana", "event": "page_viewed", "at": "2026-12-01T10:00:00Z", "url": "\\ud800"}',
    '{"contact": "ana\\u0000", "event": "page_viewed", "at": "2026-12-01T10:00:00Z"}',
    '{"contact": "ana", "event": "page_viewed", "at": "2026-12-01T10:00:00Z", "id": "\\udfff"}',
    '{"contact": "ana", "event": "page_viewed", "at": 1e400}',
    '{"contact": 1e400, "event": "page_viewed", "at": "2026-12-01T10:00:00Z"}',
    '{"contact": "ana", "event": "page_viewed", "at": "2026-12-01T10:00:00Z", "id": 1e400}',
    '{"contact": "ana", "event": "page_viewed", "at": "2026-12-01T10:00:00Z", "url": ' + "9" * 4000 + "}",
    '{"contact": "ana", "contact": "ben", "event": "page_viewed", "at": "2026-12-01T10:00:00Z"}',
])
AT = st.one_of(st.sampled_from(["2026-12-01T10:00:00+00:00", "2026-12-01T10:00:00Z", "2026-12-01T10:00:00",
                                "2026-03-29T02:30:00", "1000-01-01T00:00:00Z", "8999-12-31T23:59:59Z"]),
               st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(datetime.isoformat),
               LEAF)
EVENT = st.fixed_dictionaries(
    {"contact": mostly(st.sampled_from(["ana", "ben", "cy", "nobody"]) | TEXT),
     "event": mostly(st.sampled_from(["page_viewed", "cart_abandoned", "ordered", "email_clicked", "made_up"]) | TEXT),
     "at": mostly(AT)},
    optional={"id": st.one_of(st.uuids().map(str), TEXT, st.integers(), st.floats(), JSON),
              "url": mostly(TEXT), "cart_url": mostly(TEXT), "properties": mostly(st.dictionaries(TEXT, JSON,
                                                                                               max_size=3)),
              "extra": JSON})
EVENTS_BODY = st.one_of(EVENT.map(dumps), st.lists(mostly(EVENT), max_size=5).map(dumps),
                        st.lists(mostly(EVENT), min_size=1, max_size=5).map(lambda items: "\n".join(map(dumps, items))))


def _multipart(parts: list[tuple[str, bytes]]) -> bytes:
    chunks = [b"--fuzzboundary\r\nContent-Disposition: form-data; name=\"" + name.encode("utf-8", "replace") +
              b"\"\r\n\r\n" + value + b"\r\n" for name, value in parts]
    return b"".join(chunks) + b"--fuzzboundary--\r\n"


FORM = st.lists(st.tuples(TEXT, TEXT), max_size=6).map(
    lambda pairs: urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                             for k, v in pairs]).encode("ascii"))
BODY = st.one_of(
    st.just(b""), st.binary(max_size=600), JSON.map(lambda value: dumps(value).encode()),
    RAW_JSON.map(str.encode), EVENTS_BODY.map(str.encode), FORM,
    st.sampled_from([b"List-Unsubscribe=One-Click", b"source=page", b"form=preferences&channel=email&list=offers",
                     b"form=preferences", b"\xff\xfe\x00{", b"a=%ff%fe&b=%00", "&".join(["a=1"] * 200).encode()]),
    st.lists(st.tuples(TEXT, st.binary(max_size=100)), max_size=4).map(_multipart),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
)
CONTENT_TYPE = st.one_of(st.none(), st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/JSON", "application/json; charset=latin-1",
    "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=fuzzboundary", "multipart/form-data",
    "text/plain", "text/xml", "text/html; charset=utf-7", "application/octet-stream", "", ";", ";;;",
    "application/json;;;charset=", "*/*", "application/json, text/plain", "x" * 2000,
]))
HEADER_NAME = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}", fullmatch=True).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding", "host", "connection", "upgrade",
                                      "te", "trailer", "expect"))
# What h11 lets a client send as a header value: visible ASCII and obs-text, spaces and tabs only inside.
HEADER_VALUE = st.binary(max_size=200).map(
    lambda raw: bytes(byte for byte in raw if byte in b"\t " or 0x21 <= byte <= 0x7e or byte >= 0x80).strip(b" \t"))
AUTHORIZATION = st.one_of(HEADER_VALUE, st.sampled_from([
    "Bearer {key}", "bearer {key}", "BEARER  {key}", "Bearer {key}x", "Bearer {key} {key}", "Bearer", "Bearer ",
    "Basic {postmark}", "Basic {key}", "Basic !!!", "Token {key}", "{key}", "Bearer mk_", "Bearer " + "A" * 4000,
    "Bearer \x80\xff", "Digest username=\"x\"",
]))
FORWARDED = st.fixed_dictionaries({}, optional={
    "X-Forwarded-For": st.one_of(HEADER_VALUE, st.sampled_from(["17.1.2.3", "::1", "1.2.3.4, 17.0.0.1", "999.1.1.1",
                                                                 "unix:/tmp/x", "[::1]:80", "a, b, c"])),
    "X-Forwarded-Proto": st.one_of(HEADER_VALUE, st.sampled_from(["https", "ws", "HTTPS", "javascript", ""])),
    "User-Agent": st.one_of(HEADER_VALUE, st.just("Mozilla/5.0")),
})
METHOD = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
                   st.from_regex(r"[A-Z]{1,12}", fullmatch=True))
SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "%2e%2e", "%2E.", "%00", "%ff", "%", "%zz", "%2F", "..%2F..", "\\", ";", "~",
                     "%u002e", "%0d%0a", "*", "%25", "%252e%252e", "a%00b", "%c0%ae%c0%ae", "%ed%a0%80"]),
    st.text(max_size=30).map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
    st.text(string.ascii_letters + string.digits + "-_.~!$&'()*+,;=:@", max_size=40),
)
QUERY = st.one_of(st.just(""), st.lists(st.tuples(TEXT, TEXT), max_size=3).map(
    lambda pairs: "?" + urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                                   for k, v in pairs])), st.sampled_from(["?", "??", "?%00", "#frag", "?a=%ff"]))
RANDOM_PATH = st.one_of(
    st.lists(SEGMENT, max_size=8).map(lambda segments: "/" + "/".join(segments)),
    st.integers(1000, 20_000).map(lambda n: "/" + "a" * n),
    st.sampled_from(["*", "/", "//", "http://127.0.0.1/healthz", "/healthz/", "/HEALTHZ", "/v1//events", "/v1/events/",
                     "/v1/providers/", "/v1/providers//", "/u/", "/o/", "/c/", "/u//preferences", "/%2e%2e/healthz",
                     "/v1/providers/..%2F..%2Fhealthz", "/./healthz", "/../../../etc/passwd", "/metrics/../healthz"]),
)
PROVIDER_NAME = st.one_of(st.sampled_from(PROVIDERS + ("SES", "acme", "ses.json", "%00", "ses%2F..", "a" * 500)),
                          SEGMENT)


@st.composite
def token(draw: st.DrawFn, tokens: list[str]) -> str:
    """A token that verifies, one that nearly does, or any text."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.sampled_from(tokens))
    if choice == 1:  # one character of a good token changed
        good = draw(st.sampled_from(tokens))
        at = draw(st.integers(0, len(good) - 1))
        return good[:at] + draw(st.sampled_from("A_-.9z%")) + good[at + 1:]
    if choice == 2:
        body = draw(st.text(string.ascii_letters + string.digits + "-_", min_size=22, max_size=22))
        return body + "." + draw(st.text(string.ascii_letters + string.digits + "-_.", max_size=40))
    return draw(SEGMENT)


@st.composite
def target(draw: st.DrawFn, tokens: list[str]) -> str:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        path = draw(st.sampled_from(["/v1/events", "/v1/sms/inbound", "/healthz", "/metrics"]))
    elif kind == 1:
        path = "/v1/providers/" + draw(PROVIDER_NAME)
    elif kind in (2, 3):
        path = f"/{draw(st.sampled_from('uoc'))}/{draw(token(tokens))}" + draw(
            st.sampled_from(["", "", "/preferences", "/", "/preferences/", "/x", "/preferences/x"]))
    else:
        path = draw(RANDOM_PATH)
    return path + draw(QUERY)


@st.composite
def headers(draw: st.DrawFn, key: str) -> dict[str, Any]:
    """Now and then an Authorization (the real key among others), a Content-Type, proxy headers, any others."""
    found: dict[str, Any] = {}
    postmark = base64.b64encode(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}".encode()).decode()
    if draw(st.booleans()):
        auth = draw(AUTHORIZATION)
        found["Authorization"] = auth.format(key=key, postmark=postmark).strip().encode("latin-1", "replace") \
            if isinstance(auth, str) else auth
    media = draw(CONTENT_TYPE)
    if media is not None:
        found["Content-Type"] = media
    found.update(draw(FORWARDED))
    for name, value in draw(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=4)):
        found.setdefault(name, value)
    return found


# --- anything, anywhere -------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_any_method_path_headers_and_body_is_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    method = data.draw(METHOD, "method")
    path = data.draw(target(fuzzed.tokens), "target")
    sent = data.draw(headers(fuzzed.key), "headers")
    body = data.draw(BODY, "body")
    check(fuzzed.request(method, path, sent, body), method, path, sent, body, fuzzed.served)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_posted_events_are_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    """The events API with the real key (mostly), so that parsing, validation and storing all run."""
    sent = data.draw(headers(fuzzed.key), "headers")
    if data.draw(st.integers(0, 4)) > 0:
        sent["Authorization"] = f"Bearer {fuzzed.key}"
        sent["Content-Type"] = data.draw(st.sampled_from(["application/json", "application/x-ndjson",
                                                           "application/json; charset=utf-8"]) | CONTENT_TYPE.filter(
            lambda media: media is not None), "content type")
    body = data.draw(st.one_of(EVENTS_BODY.map(str.encode), RAW_JSON.map(str.encode), BODY), "body")
    check(fuzzed.request("POST", "/v1/events", sent, body), "POST", "/v1/events", sent, body, fuzzed.served)


SMS = st.fixed_dictionaries({}, optional={"from": mostly(TEXT), "text": mostly(TEXT), "to": JSON})


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_inbound_sms_is_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    sent = data.draw(headers(fuzzed.key), "headers")
    if data.draw(st.integers(0, 4)) > 0:
        sent["Authorization"] = f"Bearer {fuzzed.key}"
        sent["Content-Type"] = data.draw(st.sampled_from(["application/json", "application/x-ndjson"]))
    body = data.draw(st.one_of(SMS.map(dumps).map(str.encode), st.lists(SMS, max_size=2).map(dumps).map(str.encode),
                               BODY), "body")
    check(fuzzed.request("POST", "/v1/sms/inbound", sent, body), "POST", "/v1/sms/inbound", sent, body, fuzzed.served)


# --- links: unsubscribe, preferences, opens, clicks ------------------------------------------------------------------


URL = st.one_of(
    st.sampled_from(["https://shop.example/", "http://[", "http://[::1", "http://]x", "http://\uff03x/",
                     "http://a\u2100b/", "https://a:b@shop.example:99999/",
                     "http://shop.example:port/", "https://shop.example/\r\nSet-Cookie: a=b", "http://é.example/ü?ä=ö",
                     " http://x/", "\x00https://x/", "http://[v1.x]/", "http://[::1]x/", "http:// /",
                     "HTTPS://SHOP.EXAMPLE/", "http:", "https://", "http://\x00/", "https://x/" + "a" * 6000,
                     "javascript:alert(1)", "//evil.example/", "data:text/html,<script>", "http://\ud800.example/"]),
    st.text(max_size=60).map(lambda text: "https://shop.example/" + text),
    st.text(max_size=60).map(lambda text: "http://" + text),
)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_links_with_signed_and_forged_tokens_are_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    """Tokens that verify (the store's message, an unknown one, a click to any URL the renderer might have
    signed) and tokens that nearly do, with the methods and forms the pages post."""
    signer = Signer(SECRET)
    ref = data.draw(st.sampled_from([fuzzed.ref, "B" * 22]), "ref")
    kind = data.draw(st.sampled_from("uoc"), "kind")
    if kind == "c":
        url = data.draw(URL, "url")
        link = signer.click(ref, url) if data.draw(st.booleans()) else data.draw(token(fuzzed.tokens))
    else:
        link = (signer.unsubscribe(ref) if kind == "u" else signer.open(ref)) if data.draw(st.booleans()) else \
            data.draw(token(fuzzed.tokens))
    path = f"/{kind}/{quote(link, safe='.-_~')}" + data.draw(st.sampled_from(["", "", "/preferences"]))
    method = data.draw(st.sampled_from(["GET", "POST", "HEAD", "GET", "POST"]), "method")
    sent = data.draw(headers(fuzzed.key), "headers")
    if data.draw(st.booleans()):
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    body = data.draw(st.one_of(FORM, BODY, st.lists(st.sampled_from(
        ["form=preferences", "channel=email", "channel=sms", "channel=push", "list=offers", "list=newsletter",
         "list=%00", "source=page", "List-Unsubscribe=One-Click"]), max_size=6).map(lambda parts: "&".join(parts)
                                                                                 .encode())), "body")
    check(fuzzed.request(method, path, sent, body), method, path, sent, body, fuzzed.served)


@pytest.mark.parametrize("url", ["http://[", "http://[::1", "http://]x", "http://\uff03x/", "http://a\u2100b/"])
def test_a_signed_click_to_a_url_urlsplit_refuses_is_a_404(served: Served, url: str) -> None:
    """Found by the test above (a 500: urlsplit's ValueError in Server.click). The renderer signs whatever href
    a message holds (a template's, or an event property's through `{{ event.cart_url }}`), so such a token is
    one mauto itself can hand out."""
    path = "/c/" + Signer(SECRET).click("A" * 22, url)
    answer = served.client.get(path, headers={"Connection": "close"})  # uvicorn closes after a 500 anyway
    check(answer, "GET", path, {}, b"", served)
    assert answer.status_code == 404 and "location" not in answer.headers


# --- providers: signed as each provider signs, around random payloads ------------------------------------------------

ADDRESS = mostly(st.one_of(
    st.sampled_from(["ana@example.com", "ben@example.com", "Ana@Example.COM", "nobody@example.com", "not an address",
                     "", "a@b", "<ana@example.com>", "ana@example.com, ben@example.com", "x" * 300 + "@example.com",
                     "+33612345678", "ana@exam\x00ple.com", "\ud800@example.com"]), TEXT))
MOMENT_TEXT = mostly(st.one_of(st.sampled_from(["2026-12-01T10:00:00.000Z", "2026-12-01T10:00:00+00:00", "0001-01-01",
                                                "9999-12-31T23:59:59Z", "yesterday"]), TEXT))
NUMBER = st.one_of(st.integers(), st.floats(), st.sampled_from([1_700_000_000, 0, -1, 2**63, 1e300]))


@st.composite
def refs(draw: st.DrawFn, ref: str) -> Any:
    return draw(mostly(st.sampled_from([ref, "B" * 22, "short", ref + "x"]) | TEXT))


@st.composite
def sendgrid_request(draw: st.DrawFn, fuzzed: Fuzzed) -> tuple[dict[str, Any], bytes]:
    event = st.fixed_dictionaries(
        {"event": mostly(st.sampled_from(["bounce", "dropped", "spamreport", "delivered", "deferred", "open"]) | TEXT),
         "email": ADDRESS},
        optional={"timestamp": NUMBER, "sg_message_id": mostly(TEXT), "sg_event_id": mostly(TEXT),
                  "reason": mostly(st.sampled_from(["Bounced Address", "Invalid", "Spam Reporting Address"]) | TEXT),
                  "type": mostly(st.sampled_from(["bounce", "blocked"]) | TEXT), "response": mostly(TEXT),
                  "mauto_ref": refs(fuzzed.ref), "unique_args": mostly(st.fixed_dictionaries(
                      {"mauto_ref": refs(fuzzed.ref)})), "status": mostly(TEXT), "bounce_classification": JSON})
    body = draw(st.one_of(st.lists(mostly(event), max_size=4).map(dumps).map(str.encode), BODY))
    stamp = draw(mostly(st.just(str(int(time.time())))))
    stamp_text = (stamp if isinstance(stamp, str) else dumps(stamp)).strip() or "0"  # a header value: trimmed
    signature = fuzzed.sendgrid.sign(stamp_text.encode("utf-8", "surrogatepass") + body, ec.ECDSA(hashes.SHA256()))
    sent = {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp_text.encode("utf-8", "surrogatepass"),
            "Content-Type": "application/json"}
    return sent, body


@st.composite
def mailgun_request(draw: st.DrawFn, fuzzed: Fuzzed) -> tuple[dict[str, Any], bytes]:
    token_text, stamp = uuid.uuid4().hex, str(int(time.time()))
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token_text).encode(), hashlib.sha256).hexdigest()
    block = draw(mostly(st.just({"token": token_text, "timestamp": stamp, "signature": signature})))
    event = st.fixed_dictionaries(
        {"event": mostly(st.sampled_from(["failed", "complained", "delivered", "opened"]) | TEXT),
         "recipient": ADDRESS},
        optional={"severity": mostly(st.sampled_from(["permanent", "temporary"]) | TEXT), "timestamp": NUMBER,
                  "id": mostly(TEXT), "reason": JSON,
                  "message": mostly(st.fixed_dictionaries({"headers": mostly(st.fixed_dictionaries(
                      {"message-id": mostly(TEXT)}))})),
                  "delivery-status": mostly(st.fixed_dictionaries({}, optional={
                      "code": NUMBER, "message": mostly(TEXT), "description": mostly(TEXT)})),
                  "envelope": mostly(st.fixed_dictionaries({"sender": mostly(
                      refs(fuzzed.ref).map(lambda ref: f"bounces+{ref}@shop.example"))})),
                  "user-variables": mostly(st.fixed_dictionaries({"mauto_ref": refs(fuzzed.ref)}))})
    payload = draw(mostly(st.fixed_dictionaries({"signature": st.just(block), "event-data": mostly(event)})))
    return {"Content-Type": "application/json"}, dumps(payload).encode()


@st.composite
def postmark_request(draw: st.DrawFn, fuzzed: Fuzzed) -> tuple[dict[str, Any], bytes]:
    record = st.fixed_dictionaries(
        {"RecordType": mostly(st.sampled_from(["Bounce", "SpamComplaint", "Delivery", "Open"]) | TEXT)},
        optional={"Type": mostly(st.sampled_from(["HardBounce", "SoftBounce", "SpamComplaint", "AutoResponder"])
                                 | TEXT),
                  "ID": mostly(st.integers() | st.sampled_from([2**63, -1, 0])), "Email": ADDRESS,
                  "Recipient": ADDRESS, "MessageID": mostly(TEXT), "BouncedAt": MOMENT_TEXT,
                  "DeliveredAt": MOMENT_TEXT, "Details": mostly(TEXT), "Description": mostly(TEXT),
                  "Metadata": mostly(st.fixed_dictionaries({"mauto_ref": refs(fuzzed.ref)}))})
    body = draw(st.one_of(mostly(record).map(dumps).map(str.encode), BODY))
    credentials = draw(mostly(st.just(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}")))
    raw = credentials if isinstance(credentials, str) else dumps(credentials)
    return {"Authorization": ("Basic " + base64.b64encode(raw.encode("utf-8", "surrogatepass")).decode()).strip(),
            "Content-Type": "application/json"}, body


@st.composite
def twilio_request(draw: st.DrawFn, fuzzed: Fuzzed) -> tuple[dict[str, Any], bytes]:
    params = draw(st.fixed_dictionaries(
        {"From": mostly(st.sampled_from(["+33612345678", "+33 6 12 34 56 78", "", "not a number"]) | TEXT)},
        optional={"Body": mostly(st.sampled_from(["STOP", " stop! ", "Stop texting me", "ARRÊT", ""]) | TEXT),
                  "OptOutType": mostly(st.sampled_from(["STOP", "START", "HELP"]) | TEXT),
                  "MessageSid": mostly(TEXT), "To": TEXT}).map(
        lambda values: {name: value if isinstance(value, str) else dumps(value) for name, value in values.items()}))
    pairs = [(name, value.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
             for name, value in params.items()]
    url = f"{fuzzed.served.base}/v1/providers/twilio"
    # https://www.twilio.com/docs/usage/security#validating-requests: the URL, then each name and value, sorted
    signed = url + "".join(name + value for name, value in sorted(pairs))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}, \
        urlencode(pairs).encode("ascii")


@st.composite
def ses_request(draw: st.DrawFn, fuzzed: Fuzzed) -> tuple[dict[str, Any], bytes]:
    mail = st.fixed_dictionaries({}, optional={
        "messageId": mostly(TEXT), "source": mostly(refs(fuzzed.ref).map(lambda ref: f"bounces+{ref}@shop.example")),
        "tags": mostly(st.fixed_dictionaries({"mauto_ref": mostly(st.lists(refs(fuzzed.ref), max_size=2))})),
        "headers": mostly(st.lists(st.fixed_dictionaries({"name": mostly(st.sampled_from(
            ["X-Mauto-Ref", "Return-Path", "List-Unsubscribe"]) | TEXT), "value": mostly(TEXT)}), max_size=3))})
    recipients = st.lists(mostly(st.fixed_dictionaries({"emailAddress": ADDRESS}, optional={
        "status": mostly(TEXT), "diagnosticCode": mostly(TEXT)})), max_size=3)
    notification = st.fixed_dictionaries(
        {"notificationType": mostly(st.sampled_from(["Bounce", "Complaint", "Delivery", "Received"]) | TEXT),
         "mail": mostly(mail)},
        optional={"bounce": mostly(st.fixed_dictionaries(
                      {"bounceType": mostly(st.sampled_from(["Permanent", "Transient", "Undetermined"]) | TEXT),
                       "bouncedRecipients": mostly(recipients)},
                      optional={"bounceSubType": mostly(TEXT), "feedbackId": mostly(TEXT), "timestamp": MOMENT_TEXT})),
                  "complaint": mostly(st.fixed_dictionaries({"complainedRecipients": mostly(recipients)}, optional={
                      "complaintFeedbackType": mostly(TEXT), "feedbackId": mostly(TEXT), "timestamp": MOMENT_TEXT})),
                  "delivery": mostly(st.fixed_dictionaries({"recipients": mostly(st.lists(ADDRESS, max_size=3))},
                                                           optional={"timestamp": MOMENT_TEXT,
                                                                     "smtpResponse": mostly(TEXT)}))})
    message = draw(st.one_of(mostly(notification).map(dumps), TEXT, RAW_JSON))
    kind = draw(st.sampled_from(["Notification", "Notification", "SubscriptionConfirmation",
                                 "UnsubscribeConfirmation"]))
    now = datetime.now(UTC)
    envelope: dict[str, Any] = {
        "Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC, "Message": message,
        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "SignatureVersion": draw(st.sampled_from(["1", "2"])),
        "SigningCertURL": f"https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-{uuid.uuid4().hex}.pem"}
    if kind != "Notification":
        envelope["Token"] = uuid.uuid4().hex
        envelope["SubscribeURL"] = draw(st.sampled_from([
            f"https://sns.eu-west-3.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
            "https://evil.example/confirm", "http://sns.eu-west-3.amazonaws.com/"]))
    if draw(st.booleans()):
        envelope["Subject"] = draw(TEXT)
    fields = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")}.get(
        kind, ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"))
    canonical = "".join(f"{name}\n{envelope[name]}\n" for name in fields if name in envelope)
    digest = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    envelope["Signature"] = base64.b64encode(fuzzed.sns.sign(canonical.encode("utf-8", "surrogatepass"),
                                                             padding.PKCS1v15(), digest)).decode()
    for name, value in draw(st.dictionaries(st.sampled_from(sorted(envelope)), JSON, max_size=1)).items():
        envelope[name] = value  # now and then one field spoilt after signing
    return {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind}, dumps(envelope).encode()


SIGNED = {"sendgrid": sendgrid_request, "mailgun": mailgun_request, "postmark": postmark_request,
          "twilio": twilio_request, "ses": ses_request}


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_signed_provider_webhooks_with_random_payloads_are_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    """Each provider's request signed as that provider signs, so that its parser and the store are reached."""
    name = data.draw(st.sampled_from(PROVIDERS), "provider")
    sent, body = data.draw(SIGNED[name](fuzzed), "request")
    path = f"/v1/providers/{name}"
    check(fuzzed.request("POST", path, sent, body), "POST", path, sent, body, fuzzed.served)


def _no_fetch(url: str) -> bytes:
    raise AssertionError(f"nothing is fetched here ({url})")


@pytest.mark.parametrize("body", [b'{"Type": []}', b'{"Type": {}}'])
def test_an_sns_message_whose_type_is_not_text_is_not_a_5xx(tmp_path: Path, smtp: SmtpServer, body: bytes) -> None:
    """Found by the test above (a 500: TypeError, unhashable, in providers._sns_envelope); no signature needed:
    anyone who can reach the server could do it."""
    served = serve_providers(tmp_path, smtp, {}, _no_fetch)
    try:
        headers = {"Content-Type": "text/plain; charset=UTF-8", "Connection": "close"}
        answer = served.client.post("/v1/providers/ses", content=body, headers=headers)
        check(answer, "POST", "/v1/providers/ses", headers, body, served)
    finally:
        served.stop()


PROVIDER_HEADERS = st.fixed_dictionaries({}, optional={
    "X-Twilio-Email-Event-Webhook-Signature": HEADER_VALUE, "X-Twilio-Email-Event-Webhook-Timestamp": st.one_of(
        HEADER_VALUE, st.sampled_from(["0", "-1", "1" * 20, str(int(time.time())), "1e10", "+1700000000"]),
        st.just("１７".encode())),
    "X-Twilio-Signature": HEADER_VALUE, "x-amz-sns-message-type": st.one_of(HEADER_VALUE, st.sampled_from(
        ["Notification", "SubscriptionConfirmation"])),
})


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_unsigned_provider_webhooks_are_never_a_5xx(fuzzed: Fuzzed, data: st.DataObject) -> None:
    """Random signature headers and bodies: every provider's refusals."""
    name = data.draw(st.sampled_from(PROVIDERS), "provider")
    sent = {**data.draw(headers(fuzzed.key), "headers"), **data.draw(PROVIDER_HEADERS, "signature headers")}
    body = data.draw(st.one_of(BODY, sendgrid_request(fuzzed).map(lambda request: request[1])), "body")
    path = f"/v1/providers/{name}"
    check(fuzzed.request("POST", path, sent, body), "POST", path, sent, body, fuzzed.served)


# --- malformed HTTP on a raw socket -----------------------------------------------------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS ClientHello
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(5000)) + b"\r\n",
    b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /u/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n",
    b"POST /u/x.y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: x\n\n",  # bare LF: h11 takes it
    b"GET /healthz HTTP/1.0\r\n\r\n",
]


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes, or until one whole answer came, or for a few seconds at most."""
    received = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _complete(received):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        except TimeoutError:
            continue
        if not chunk:
            break
        received += chunk
    return received


def _complete(received: bytes) -> bool:
    head, ended, body = received.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(ended) and found is not None and len(body) >= int(found.group(1))


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_http_is_refused_or_cut_never_a_5xx(fuzzed: Fuzzed, request_bytes: bytes) -> None:
    with socket.create_connection((HOST, fuzzed.served.port), timeout=0.5) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # refused while still sending: closed
            sock.sendall(request_bytes)
        answer = _answer(sock)
    if answer:
        status = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
        assert status is not None, answer[:300]
        assert int(status.group(1)) < 500, answer[:500]
        assert b"Traceback" not in answer, answer[:500]
    assert fuzzed.served.client.get("/healthz").status_code == 200


def test_no_answer_of_the_whole_run_was_a_5xx(fuzzed: Fuzzed) -> None:
    """The server's own count (metrics): every request this module sent, whoever sent it, got less than 500."""
    metrics = fuzzed.served.client.get("/metrics").text
    statuses = re.findall(r'^mauto_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)', metrics, re.M)
    assert statuses, metrics[:2000]
    assert [(route, status, count) for route, status, count in statuses if status.startswith("5")] == []
