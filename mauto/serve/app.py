"""The ASGI application of `mauto serve` (Starlette): what it answers, and how.

Every write goes through one `GroupWriter` (grouped commits); a `2xx` is sent only once its write is
committed. Bad input of any kind is a `4xx` with a JSON reason (or, for the pages people see, a page that says
what is wrong); the store failing is a `503` with `Retry-After`; nothing else is ever a `5xx`, and no traceback
reaches a client.

Routes:

- `GET /healthz`, `GET /metrics`;
- `POST /v1/events` (Bearer API key): one event, a JSON array, or JSON Lines;
- `POST /v1/sms/inbound` (Bearer API key): an inbound SMS (`{"from": …, "text": …}`): STOP and the like
  unsubscribe that number from SMS;
- `POST /v1/providers/<name>`: a provider's webhook (bounces, complaints, deliveries; Twilio's inbound SMS);
- `GET|POST /u/<token>`: unsubscribe (RFC 8058 one-click by POST; GET shows a page whose button POSTs);
  `GET|POST /u/<token>/preferences`: the preference centre;
- `GET /o/<token>`: the open pixel; `GET /c/<token>`: a click, redirected to the link that was in the message.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mauto.config import Project, ServeSettings
from mauto.datafiles import decode_json, value_problem
from mauto.feedback import SMS_STOP, Feedback
from mauto.links import Signer
from mauto.serve import pages
from mauto.serve.metrics import CONTENT_TYPE, Metrics
from mauto.store import feedback as recorded
from mauto.store.events import check_event
from mauto.store.keys import PREFIX as KEY_PREFIX
from mauto.store.keys import key_name
from mauto.store.sqlite import Store, StoreError, stamp, wall_clock
from mauto.store.writer import GroupWriter, WriterStopped, schema_version

log = logging.getLogger("mauto.serve")

MAX_EVENTS = 10_000  # events in one request at most
MAX_DEPTH = 32  # nesting of a posted JSON value at most (deeper: refused before it is parsed)
BODY_TIMEOUT = 10.0  # seconds a client may take to send its body
SLOW = 1.0  # seconds: an answer slower than this is logged at INFO
INLINE_BODY = 16 * 1024  # bytes: a smaller batch is checked on the event loop (a thread hop costs more)
RECORD_WAIT = 2.0  # seconds an open or a click waits for its commit before the answer goes anyway
WRITE_TIMEOUT = 30.0  # seconds a request waits for its write (the store's own lock wait is 5 s a group)
KEY_CACHE_SECONDS = 2.0  # a revoked key is refused at most this long after `mauto keys revoke`
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
       b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")  # 1x1, transparent: 43 bytes
NO_STORE = {"Cache-Control": "no-store, private", "X-Robots-Tag": "noindex"}
NDJSON = {"application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq"}
APPLE_PROXIES = ipaddress.ip_network("17.0.0.0/8")  # Apple's; Mail Privacy Protection fetches from it
PROVIDER_SECRETS = {  # mauto.yaml's `serve.providers.<name>.<setting>_env` → the name the parser reads
    "sendgrid": ("public_key",), "mailgun": ("signing_key",), "postmark": ("username", "password"),
    "twilio": ("auth_token",),
}


class LinkNotFound(Exception):
    """A link of a message that does not work (forged, cut short, or for a message the store does not hold):
    the page that says so, 404."""


class Refused(Exception):
    """A request answered with a 4xx and a reason."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class ServeConfig:
    """What the application needs; `mauto serve` makes it from the project, tests as they like."""

    project: Project
    store_path: Path | str  # the store: a SQLite file or a `postgresql://` URL (`mauto.store.store_path`)
    # the signing key of links (the daemon's: `unsubscribe_secret_env`, else the store's); never in a repr
    secret: str = field(repr=False)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    now: Callable[[], datetime] = wall_clock
    fetch: Callable[[str], bytes] | None = None  # SNS certificates and confirmations (None: the parser's own)
    body_timeout: float = BODY_TIMEOUT

    @property
    def settings(self) -> ServeSettings:
        return self.project.serve

    def provider_secrets(self) -> dict[str, str]:
        """Each configured provider's secrets, read from the environment variables mauto.yaml names."""
        found: dict[str, str] = {}
        for provider, settings in self.settings.providers.items():
            for name in PROVIDER_SECRETS.get(provider, ()):
                variable = settings.get(f"{name}_env")
                value = self.environ.get(variable) if variable else None
                if value:
                    found[f"{provider}_{name}"] = value
            if provider == "ses" and settings.get("topic_arn"):
                found["ses_topic_arn"] = settings["topic_arn"]
        return found


def _json(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status, headers=headers)


def _redacted(path: str) -> str:
    """A path as the log shows it: tokens cut (a token is as good as the link it is in), and no character
    that could start a line of its own or fool a terminal (`%0A` decodes to a line break)."""
    path = re.sub(r"^/([uoc])/[^/]+", r"/\1/…", path)
    return path if path.isprintable() else repr(path)[1:-1]


def _route(path: str) -> str:
    for prefix in ("/v1/events", "/v1/sms/inbound", "/v1/providers", "/healthz", "/metrics"):
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    if path.startswith(("/u/", "/o/", "/c/")):
        return path[:2]
    return "other"


class Observed:
    """ASGI middleware: counts and times every request (metrics), and logs it with its tokens cut."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        route = _route(scope.get("path", ""))

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            # Every request at DEBUG (`mauto serve --access-log`); what needs a look (an error, a slow answer)
            # at INFO: formatting a line for each of thousands of requests a second was 7% of the loop's time.
            level = logging.INFO if status >= 400 or elapsed > SLOW else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, "%s %s %d %.1fms", scope.get("method", "?"), _redacted(scope.get("path", "")),
                        status, elapsed * 1000)


class Server:
    """The routes' handlers, around one writer and one signer."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.settings = config.settings
        self.signer = Signer(config.secret)
        self.metrics = Metrics()
        project = config.project
        self.writer = GroupWriter(config.store_path, phone_region=project.phone_region,
                                  shown=project.display(config.store_path), on_commit=self.metrics.committed,
                                  password_env=project.data.get("store_password_env"), log=log)
        self.catalogue = project.events
        self.zone = project.timezone
        self.provider_secrets = config.provider_secrets()
        self.keys: dict[str, tuple[str | None, float]] = {}  # key -> (its name or None, when checked)
        self.used: dict[str, float] = {}  # key name -> when `last_used_at` was last written

    # --- plumbing -------------------------------------------------------------------------------------------

    async def body(self, request: Request) -> bytes:
        """The request's body: 413 past `serve.max_body`, 408 when it comes too slowly."""
        limit = self.settings.max_body
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 15:
                raise Refused(400, "Content-Length is not a number of bytes")
            if int(length) > limit:
                raise Refused(413, f"the body is {int(length)} bytes; at most {limit} are accepted")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.config.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise Refused(413, f"the body is over {limit} bytes, the most accepted")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.config.body_timeout:g}s") from None
        return b"".join(chunks)

    async def write(self, job: Callable[[Store], Any]) -> Any:
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                return await self.writer.run(job)
        except TimeoutError:
            log.error("the store's writer did not answer within %ss", WRITE_TIMEOUT)
            raise Refused(503, "the store is busy; try again shortly", {"Retry-After": "5"}) from None
        except (StoreError, OSError, WriterStopped) as error:
            log.error("the store failed: %s", error)
            raise Refused(503, "the store is unavailable; try again shortly", {"Retry-After": "5"}) from None
        except Exception as error:
            # The driver's own errors (SQLite's, psycopg's: a deadlock lost three times, a lock held past 5 s,
            # a constraint): the store's, never the request's; a 5xx that says to retry, not a 500.
            if type(error).__module__.startswith(("sqlite3", "psycopg")):
                log.error("the store failed: %s", _first_line(error))
                raise Refused(503, "the store is unavailable; try again shortly", {"Retry-After": "5"}) from None
            raise

    async def record_quietly(self, job: Callable[[Store], bool], what: str) -> bool:
        """Record an open or a click without holding up the person: wait for the commit a moment (so that it
        is usually there when the answer goes), then answer anyway; the write goes on in the writer, and a
        failure is logged. True when it was recorded in that moment."""
        future = asyncio.wrap_future(self.writer.submit(job))
        try:
            async with asyncio.timeout(RECORD_WAIT):
                return bool(await asyncio.shield(future))
        except TimeoutError:
            def later(done: asyncio.Future[bool]) -> None:
                failure = None if done.cancelled() else done.exception()
                if failure is not None:
                    log.error("%s not recorded: %s", what, _first_line(failure))

            future.add_done_callback(later)
            return False
        except Exception as error:  # noqa: BLE001 - the person still gets the pixel or the page they asked for
            log.error("%s not recorded: %s", what, _first_line(error))
            return False

    async def authenticate(self, request: Request) -> str:
        """The name of the API key the request carries; 401 without a valid one."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Refused(401, "an API key is needed: `Authorization: Bearer <key>` (`mauto keys create NAME`)",
                          {"WWW-Authenticate": 'Bearer realm="mauto"'})
        key = key.strip()
        invalid = Refused(401, "this API key is not valid (unknown or revoked)",
                          {"WWW-Authenticate": 'Bearer realm="mauto", error="invalid_token"'})
        if not key.startswith(KEY_PREFIX) or len(key) > 200:  # not one of ours: no need to ask the store
            raise invalid
        now = time.monotonic()
        cached = self.keys.get(key)
        if cached is None or now - cached[1] > KEY_CACHE_SECONDS:
            name = await self.write(lambda store: key_name(store.db, key))
            known = {held: entry for held, entry in self.keys.items() if entry[0] is not None}
            if len(self.keys) >= 1000:  # bounded; made-up keys never push the real ones out
                self.keys = known if len(known) < 1000 else {}
            self.keys[key] = cached = (name, now)
        if cached[0] is None:
            raise invalid
        return cached[0]

    def _used(self, name: str) -> str | None:
        """The key name whose `last_used_at` this request should write (once a minute per key at most)."""
        now = time.monotonic()
        if now - self.used.get(name, -1e9) < 60:
            return None
        self.used[name] = now
        return name

    # --- health and metrics ---------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        version = await self.write(schema_version)
        return _json(200, {"status": "ok", "schema_version": version})

    async def metrics_page(self, request: Request) -> Response:
        return Response(self.metrics.text(), 200, media_type=CONTENT_TYPE)

    # --- events ---------------------------------------------------------------------------------------------

    def parse_events(self, body: bytes, content_type: str) -> list[Any]:
        media = content_type.split(";")[0].strip().lower()
        if media not in NDJSON and media != "application/json":
            raise Refused(415, f"Content-Type must be application/json or application/x-ndjson, not "
                               f"`{media or 'none'}`")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Refused(400, f"the body is not UTF-8 (byte {error.start})") from None
        if media == "application/json":
            value = _loads(text, "the body")
            items = value if isinstance(value, list) else [value]
        else:
            items = [_loads(line, f"line {number}") for number, line in enumerate(text.split("\n"), 1)
                     if line.strip()]
        if not items:
            raise Refused(422, "no event in the body")
        if len(items) > MAX_EVENTS:
            raise Refused(413, f"{len(items)} events in one request; at most {MAX_EVENTS}")
        return items

    def check_events(self, body: bytes, content_type: str) -> tuple[int, list[tuple[int, dict[str, Any]]],
                                                                    list[dict[str, Any]]]:
        """(how many events, the good ones as rows with their index, the problems of the others)."""
        items = self.parse_events(body, content_type)
        escapes = b"\\u" in body  # the only way a lone surrogate gets into strictly decoded UTF-8
        problems: list[dict[str, Any]] = []
        checked: list[tuple[int, dict[str, Any]]] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append({"index": index, "reason": "an event must be a JSON object"})
                continue
            problem = value_problem(item, escapes)
            if problem is not None:
                problems.append({"index": index, "reason": problem})
                continue
            try:
                checked.append((index, check_event(item, self.catalogue, self.zone)))
            except ValueError as error:
                problems.append({"index": index, "reason": str(error)})
        return len(items), checked, problems

    async def events(self, request: Request) -> Response:
        key = await self.authenticate(request)
        body = await self.body(request)
        # Decoding and checking thousands of events is CPU work: off the event loop, so that a big batch
        # never holds up a click's redirect or a pixel; a few events are checked at once (18 µs an event,
        # against 84 µs through a thread).
        content_type = request.headers.get("content-type", "")
        if len(body) <= INLINE_BODY:
            count, checked, problems = self.check_events(body, content_type)
        else:
            count, checked, problems = await asyncio.to_thread(self.check_events, body, content_type)
        used = self._used(key)
        received = stamp(self.config.now())
        result = await self.write(lambda store: _store_events(store, checked, problems, received, used))
        if result is None:
            problems.sort(key=lambda problem: problem["index"])
            return _json(422, {"error": f"{len(problems)} of {count} events are not valid; none was stored",
                               "problems": problems})
        accepted, duplicates = result
        self.metrics.events.inc(accepted)
        self.metrics.duplicates.inc(duplicates)
        return _json(202, {"accepted": accepted, "duplicates": duplicates})

    # --- unsubscribe and preferences ------------------------------------------------------------------------

    def _token(self, request: Request) -> tuple[str | None, tuple[str, str] | None]:
        """(the ref, or (contact, channel) for a token of the first format) of an unsubscribe link; LinkNotFound
        (the page saying so) when it does not verify."""
        token = request.path_params["token"]
        ref = self.signer.check_unsubscribe(token)
        if ref is not None:
            return ref, None
        legacy = self.signer.legacy_unsubscribe(token)
        if legacy is not None:
            return None, legacy
        raise LinkNotFound

    def _whom(self, store: Store, ref: str | None, legacy: tuple[str, str] | None) -> dict[str, Any] | None:
        """Who an unsubscribe link names: contact, channel, address, and the message's properties."""
        db = store.db
        if ref is not None:
            message = recorded.message_by_ref(db, ref)
            if message is None:
                return None
            contact, channel, properties = message.contact, message.channel, message.properties()
        else:
            assert legacy is not None
            contact, channel = legacy
            properties = {}
        row = db.execute("SELECT email, phone, email_consent, sms_consent FROM contacts WHERE id = ? AND "
                         "erased_at IS NULL", [contact]).fetchone()
        if row is None:
            return {"contact": None, "channel": channel, "properties": properties}
        return {"contact": contact, "channel": channel, "properties": properties,
                "address": row[0] if channel == "email" else row[1],
                "channels": [("email", row[0], bool(row[2])), ("sms", row[1], bool(row[3]))],
                "lists": recorded.contact_lists(db, contact) or []}

    def public(self, request: Request) -> str:
        """This request's URL as the recipient reached it: under `public_url` (which may have a path the
        proxy strips), so that the pages' forms and links lead back here."""
        base = self.settings.public_url
        return (base + request.url.path) if base else request.url.path

    async def unsubscribe_page(self, request: Request) -> Response:
        ref, legacy = self._token(request)
        whom = await self.write(lambda store: self._whom(store, ref, legacy))
        if whom is None:
            return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)
        if whom["contact"] is None:
            return HTMLResponse(pages.gone(), 200, headers=NO_STORE)
        here = self.public(request)
        preferences = f"{here}/preferences"
        if not _receives(whom):  # unsubscribed before: say so, and offer the rest
            return HTMLResponse(pages.done(whom["channel"], whom["address"], preferences), 200, headers=NO_STORE)
        return HTMLResponse(pages.unsubscribe(here, whom["channel"], whom["address"], preferences),
                            200, headers=NO_STORE)

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058: a POST (body `List-Unsubscribe=One-Click` from a mail client, or our page's form)
        unsubscribes at once: 200, no redirect, no cookie, no login."""
        ref, legacy = self._token(request)
        body = await self.body(request)
        form = _form(body)
        source = "page" if form.get("source") == ["page"] else "one-click"
        at = self.config.now()

        def job(store: Store) -> dict[str, Any] | None:
            whom = self._whom(store, ref, legacy)
            if whom is None or whom["contact"] is None:
                return whom
            whom["done"] = recorded.unsubscribe(store, whom["contact"], whom["channel"], at,
                                                {"source": source, **whom["properties"]})
            return whom

        whom = await self.write(job)
        if whom is None:
            return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)
        if whom["contact"] is None:
            return HTMLResponse(pages.gone(), 200, headers=NO_STORE)
        if whom["done"]:
            self.metrics.unsubscribes.labels(whom["channel"], source).inc()
        return HTMLResponse(pages.done(whom["channel"], whom["address"], f"{self.public(request)}/preferences"),
                            200, headers=NO_STORE)

    async def preferences(self, request: Request) -> Response:
        ref, legacy = self._token(request)
        saved = False
        if request.method == "POST":
            form = _form(await self.body(request))
            if form.get("form") != ["preferences"]:
                raise Refused(400, "not the preference centre's form")
            keep_channels, keep_lists = set(form.get("channel", [])), set(form.get("list", []))
            at = self.config.now()
            offered = set(self.settings.lists)

            def job(store: Store) -> dict[str, Any] | None:
                whom = self._whom(store, ref, legacy)
                if whom is None or whom["contact"] is None:
                    return whom
                left = [channel for channel, address, on in whom["channels"]
                        if on and address and channel not in keep_channels and recorded.unsubscribe(
                            store, whom["contact"], channel, at, {"source": "preferences", **whom["properties"]})]
                recorded.leave_lists(store.db, whom["contact"], offered - keep_lists, at)
                return {**(self._whom(store, ref, legacy) or {}), "left": left}

            whom = await self.write(job)
            for channel in (whom or {}).get("left", []):  # counted once committed
                self.metrics.unsubscribes.labels(channel, "preferences").inc()
            saved = True
        else:
            whom = await self.write(lambda store: self._whom(store, ref, legacy))
        if whom is None:
            return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)
        if whom["contact"] is None:
            return HTMLResponse(pages.gone(), 200, headers=NO_STORE)
        channels = [(channel, address, on) for channel, address, on in whom["channels"] if address and on]
        lists = [(name, label) for name, label in self.settings.lists.items() if name in whom["lists"]]
        return HTMLResponse(pages.preferences(self.public(request), channels, lists, saved), 200, headers=NO_STORE)

    # --- opens and clicks -----------------------------------------------------------------------------------

    def _prefetched(self, request: Request) -> bool:
        """Fetched by Apple Mail Privacy Protection: from Apple's network, or with its bare user agent. Such
        an open is recorded but marked: MPP loads every pixel whether the message is read or not."""
        agent = request.headers.get("user-agent", "")
        if agent.strip() == "Mozilla/5.0":
            return True
        host = request.client.host if request.client else None
        try:
            return host is not None and ipaddress.ip_address(host) in APPLE_PROXIES
        except ValueError:
            return False

    async def open_pixel(self, request: Request) -> Response:
        ref = self.signer.check_open(request.path_params["token"])
        if ref is None:
            return Response(b"", 404, headers=NO_STORE)
        if request.method == "HEAD":  # a link checker asking whether it exists: nobody opened anything
            return Response(b"", 200, media_type="image/gif", headers=NO_STORE)
        prefetched = self._prefetched(request)
        at = self.config.now()

        def job(store: Store) -> bool:
            message = recorded.message_by_ref(store.db, ref)
            if message is None or not recorded.contact_exists(store.db, message.contact):
                return False
            properties: dict[str, Any] = {**message.properties(), "prefetched": prefetched}
            recorded.add_event(store.db, message.contact, "email_opened", at, properties, stamp(at))
            return True

        if await self.record_quietly(job, "an open"):
            self.metrics.opens.labels(str(prefetched).lower()).inc()
        return Response(GIF, 200, media_type="image/gif", headers=NO_STORE)

    async def click(self, request: Request) -> Response:
        click = self.signer.check_click(request.path_params["token"])
        if click is None or not _web_url(click.url):
            return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)
        if request.method == "HEAD":  # a link checker (mail security scanners send these): no click
            return RedirectResponse(click.url, 302, headers=NO_STORE)
        at = self.config.now()

        def job(store: Store) -> bool:
            message = recorded.message_by_ref(store.db, click.ref)
            if message is None or not recorded.contact_exists(store.db, message.contact):
                return False  # the link still works: it was in the message; nothing is recorded
            recorded.add_event(store.db, message.contact, "email_clicked", at,
                               {**message.properties(), "url": click.url}, stamp(at))
            return True

        if await self.record_quietly(job, "a click"):
            self.metrics.clicks.inc()
        return RedirectResponse(click.url, 302, headers=NO_STORE)

    # --- providers and inbound SMS --------------------------------------------------------------------------

    async def record_feedback(self, items: Iterable[Feedback], provider: str = "",
                              once: tuple[str, str] | None = None) -> list[recorded.Recorded]:
        """Record what a provider said; with `once` (a token signed for one use, and the reason a replay is
        refused with), 401 when the store holds the token already: another server of the store, or this one
        before a restart, took it (its memory of tokens is its own)."""
        at = self.config.now()
        limit = self.settings.soft_bounce_limit
        items = list(items)

        def job(store: Store) -> list[recorded.Recorded] | None:
            if once is not None and recorded.seen(store.db, f"{provider}-token", once[0], stamp(at)):
                return None
            return [recorded.record(store, item, at, limit) for item in items]

        done = await self.write(job)
        if done is None:
            assert once is not None
            raise Refused(401, once[1])
        for item, result in zip(items, done, strict=True):
            if not result.duplicate:
                self.metrics.feedback.labels(item.provider, item.kind).inc()
        return done

    async def provider(self, request: Request) -> Response:
        from mauto.serve import providers

        name = request.path_params["name"]
        if name not in providers.PROVIDERS:
            raise Refused(404, f"unknown provider `{name[:40]}`; mauto knows {', '.join(sorted(providers.PROVIDERS))}")
        if name not in self.settings.providers:
            raise Refused(404, f"provider `{name}` is not configured: add it under serve.providers in mauto.yaml")
        body = await self.body(request)
        # The URL the provider posted to, as it wrote it (Twilio signs it): behind the TLS proxy, the server
        # sees http://127.0.0.1…; the public URL is what the provider was given.
        url = str(request.url)
        if self.settings.public_url:
            query = request.url.query
            url = self.settings.public_url + request.url.path + (f"?{query}" if query else "")
        incoming = providers.ProviderRequest(url, {k.lower(): v for k, v in request.headers.items()}, body)
        try:
            parsed = await asyncio.to_thread(providers.parse, name, incoming, self.provider_secrets,
                                             self.config.now(), self.config.fetch)
            if parsed.confirm_url:
                log.info("%s: confirming the subscription", name)
                await asyncio.to_thread(providers.confirm, parsed.confirm_url, self.config.fetch)
        except providers.Rejected as refused:
            raise Refused(refused.status, refused.reason) from None
        done = await self.record_feedback(parsed.feedback, name, parsed.once)
        if parsed.answer is not None:
            media, content = parsed.answer
            return Response(content, 200, media_type=media)
        return _json(200, {"recorded": sum(not item.duplicate for item in done),
                           "duplicates": sum(item.duplicate for item in done),
                           "unmatched": sum(not item.matched and not item.duplicate for item in done)})

    async def sms_inbound(self, request: Request) -> Response:
        from mauto.serve.providers import is_stop

        await self.authenticate(request)
        body = await self.body(request)
        value = self.parse_events(body, request.headers.get("content-type", ""))
        if len(value) != 1 or not isinstance(value[0], dict):
            raise Refused(422, "post one JSON object: {\"from\": \"+33…\", \"text\": \"STOP\"}")
        sender, text = value[0].get("from"), value[0].get("text")
        if not isinstance(sender, str) or not isinstance(text, str) or not sender.strip():
            raise Refused(422, "`from` (the number) and `text` (the message) must be strings")
        if not is_stop(text):
            return _json(200, {"stop": False})
        done = await self.record_feedback([Feedback(SMS_STOP, "inbound", "sms", sender.strip())])
        if done[0].note == "not a phone number":
            raise Refused(422, f"`from`: `{sender[:40]}` is not a phone number")
        return _json(200, {"stop": True, "unsubscribed": done[0].event is not None})


def _first_line(error: BaseException) -> str:
    """An error of the store's driver for the log: its first line only (psycopg's next ones, `DETAIL: Key
    (id)=(…)`, would carry what a request sent)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _receives(whom: dict[str, Any]) -> bool:
    """Whether the contact an unsubscribe link names still receives messages on its channel."""
    return any(channel == whom["channel"] and on for channel, _, on in whom["channels"])


def _web_url(url: str) -> bool:
    """Whether a signed URL may be redirected to: http(s), parseable, one line (a Location header)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # `http://[` and the like: nothing a browser could open either
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc) and url.isprintable()


def _loads(text: str, where: str) -> Any:
    """A JSON text decoded as `mauto events ingest` decodes a line (datafiles.decode_json: numbers within 64
    bits and finite, no key twice), nested at most MAX_DEPTH levels; 400 saying what is wrong."""
    try:
        value = decode_json(text)
    except ValueError as error:
        if str(error).startswith("nested more than"):  # the parser's own recursion limit, far past ours
            raise Refused(400, f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
        raise Refused(400, f"{where}: {error}") from None
    if _deeper(value, MAX_DEPTH):
        raise Refused(400, f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _deeper(value: Any, limit: int) -> bool:
    """Whether lists and objects nest past `limit` levels in a decoded value. It walks the containers only,
    after the C parser has done the reading: a character loop over the text before parsing cost 229 µs for a
    batch of 50 events, five times the parse."""
    level = [value]
    for _ in range(limit):
        level = [inner for item in level if isinstance(item, (list, dict))
                 for inner in (item.values() if isinstance(item, dict) else item)
                 if isinstance(inner, (list, dict))]
        if not level:
            return False
    return True


def _form(body: bytes) -> dict[str, list[str]]:
    """A form body (application/x-www-form-urlencoded); anything else reads as an empty form."""
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return {}


def _store_events(store: Store, checked: list[tuple[int, dict[str, Any]]], problems: list[dict[str, Any]],
                  received: str, key: str | None) -> tuple[int, int] | None:
    """Store the events, all or none: None (nothing written) when any is invalid or names an unknown contact."""
    db = store.db
    contacts = sorted({event["contact"] for _, event in checked})
    known: set[str] = set()
    found = 0
    for start in range(0, len(contacts), 500):  # counted first: the ids are read only when some are missing
        part = contacts[start:start + 500]
        found += db.execute(f"SELECT count(*) FROM contacts WHERE id IN ({','.join('?' * len(part))}) AND "
                            "erased_at IS NULL", part).fetchone()[0]
    if found < len(contacts):
        for start in range(0, len(contacts), 500):
            part = contacts[start:start + 500]
            known.update(row for (row,) in db.execute(
                f"SELECT id FROM contacts WHERE id IN ({','.join('?' * len(part))}) AND erased_at IS NULL", part))
        for index, event in checked:
            if event["contact"] not in known:
                problems.append({"index": index, "reason": f"unknown contact `{event['contact'][:80]}`"})
    if problems:
        return None
    before = db.conn.total_changes
    db.conn.executemany("INSERT OR IGNORE INTO events (id, contact, name, at, properties, received_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", [(event.get("id"), event["contact"], event["name"], event["at"],
                                                       event["properties"], received) for _, event in checked])
    accepted = db.conn.total_changes - before
    if key is not None:
        db.execute("UPDATE api_keys SET last_used_at = ? WHERE name = ? AND revoked_at IS NULL", [received, key])
    return accepted, len(checked) - accepted


def create_app(config: ServeConfig) -> Starlette:
    """The application; its writer starts with it (lifespan) and stops with it."""
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(server.writer.start)
        try:
            yield
        finally:
            await asyncio.to_thread(server.writer.stop)

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        return _json(error.status, {"error": error.reason}, error.headers)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        path = request.url.path
        if error.status_code == 404 and request.method in ("GET", "HEAD") and (
                path in ("/u", "/c", "/o") or path.startswith(("/u/", "/c/", "/o/"))):  # a link cut short: a page
            return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)
        reason = {404: "no such endpoint", 405: f"{request.method} is not allowed here"}.get(
            error.status_code, str(error.detail))
        return _json(error.status_code, {"error": reason}, dict(error.headers or {}))

    async def link_not_found(request: Request, error: Exception) -> Response:
        return HTMLResponse(pages.not_found(), 404, headers=NO_STORE)

    async def disconnected(request: Request, error: Exception) -> Response:
        return Response(b"", 400)  # nobody is listening any more

    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, _redacted(request.url.path), exc_info=error)
        return _json(500, {"error": "internal error; the server's log has the details"})

    routes = [
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(b"", 204), methods=["GET"]),  # browsers ask on every page
        Route("/metrics", server.metrics_page, methods=["GET"]),
        Route("/v1/events", server.events, methods=["POST"]),
        Route("/v1/sms/inbound", server.sms_inbound, methods=["POST"]),
        Route("/v1/providers/{name}", server.provider, methods=["POST"]),
        Route("/u/{token}", server.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", server.unsubscribe, methods=["POST"]),
        Route("/u/{token}/preferences", server.preferences, methods=["GET", "POST"]),
        Route("/o/{token}", server.open_pixel, methods=["GET"]),
        Route("/c/{token}", server.click, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        Refused: refused, LinkNotFound: link_not_found, HTTPException: http_error, ClientDisconnect: disconnected,
        Exception: unexpected})
    app.state.server = server
    app.add_middleware(Observed, metrics=server.metrics)
    return app
