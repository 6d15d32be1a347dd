"""Real servers on 127.0.0.1 for tests that send: an SMTP server (aiosmtpd) and an HTTP server (http.server),
each in a thread, each recording what it receives and answering as a test scripts it.

No fixtures here, so that any test folder can use them: `from tests.servers import SmtpServer, HttpServer`.

    with SmtpServer() as smtp:
        smtp.on("rcpt", "550 5.1.1 no such user", recipient="gone@example.com")
        smtp.on("data", drop=True, times=1)          # read the message, then hang up without answering
        ... send ...
        assert smtp.message_ids()["<abc@mauto>"] == 1
        assert smtp.connections == 1

    with HttpServer() as http:
        http.respond("/sms", 201, {"id": "sm-1"})
        http.respond("/slow", 200, {}, delay=2.0)       # answers after 2 s: a client with 1 s times out
        ... send to http.url("/sms") ...
        assert http.requests[0].json["to"] == "+33600000000"
"""
from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


# --- SMTP -----------------------------------------------------------------------------------------------


@dataclass
class Behaviour:
    """How the SMTP server answers one command, in place of accepting it."""

    stage: str  # "mail", "rcpt" or "data"
    reply: str | None = None  # e.g. "451 4.3.0 try later"; None: the usual answer (after `delay`)
    drop: bool = False  # close the connection instead of answering
    delay: float = 0.0  # seconds to wait before answering
    recipient: str | None = None  # only for envelopes to this address (at "mail": the sender address)
    times: int | None = None  # how many times it applies; None: always


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # as received, after DATA's dot-unstuffing
    message: EmailMessage  # parsed with the default policy, line ends made \n as a mailbox stores them
    message_id: str | None
    answer: str  # what the server replied, or "dropped"
    connection: int  # which connection brought it, from 1


class _Session(SMTP):
    """An SMTP session that tells the server it exists, so the server can count and close connections."""

    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # AUTH without TLS is what a test of login wants
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            super().__init__(*args, **kwargs)
        self.owner = owner
        self.number = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS calls this again for the same connection
        super().connection_made(transport)
        if first:
            self.number = self.owner._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.owner._closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return _Session(self.owner, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.port == 0:  # bound to a free port: learn which before connecting to it
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        answer = await self.owner._behave(server, "mail", [address])
        if answer is not None:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = await self.owner._behave(server, "rcpt", [address])
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        record = self.owner._record(envelope, content, server)
        answer = await self.owner._behave(server, "data", list(envelope.rcpt_tos), record)
        if answer is None:
            answer = f"250 2.0.0 Ok: queued as Q{len(self.owner.messages):04d}"
        record.answer = answer
        return answer


class SmtpServer:
    """An SMTP server on 127.0.0.1 (a free port unless `port` is given).

    - `auth=(user, password)`: AUTH PLAIN/LOGIN offered without TLS and required before MAIL.
    - `certificate=(cert_file, key_file)`: STARTTLS offered and required (see `self_signed_certificate`).
    """

    def __init__(self, *, port: int = 0, auth: tuple[str, str] | None = None,
                 certificate: tuple[Path, Path] | None = None) -> None:
        self.messages: list[ReceivedMessage] = []
        self.connections = 0  # connections opened by clients
        self.logins: list[tuple[str, bool]] = []  # (user, accepted)
        self.behaviours: list[Behaviour] = []
        self._auth = auth
        self._lock = threading.Lock()
        self._open_sessions: set[_Session] = set()
        kwargs: dict[str, Any] = {"server_hostname": "mauto-test-smtp", "ident": "mauto test server"}
        if auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False, auth_required=True)
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            kwargs.update(tls_context=context, require_starttls=True)
        self._controller = _Controller(self, _Handler(self), hostname=HOST, port=port, **kwargs)

    # --- life ---

    def start(self) -> SmtpServer:
        self._controller.start()
        with self._lock:  # start() opened a connection of its own to check the server answers
            self.connections = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._controller.port

    # --- scripting ---

    def on(self, stage: str, reply: str | None = None, *, drop: bool = False, delay: float = 0.0,
           recipient: str | None = None, times: int | None = None) -> Behaviour:
        """Answer `stage` ("mail", "rcpt" or "data") with `reply`, or hang up (`drop`), or answer late
        (`delay`); only for `recipient` if given; `times` times, or always. The first matching rule wins."""
        if stage not in ("mail", "rcpt", "data"):
            raise ValueError(f"stage must be mail, rcpt or data, not {stage!r}")
        behaviour = Behaviour(stage, reply, drop, delay, recipient, times)
        with self._lock:
            self.behaviours.append(behaviour)
        return behaviour

    def close_connections(self) -> None:
        """Hang up every open connection from the server's side, as an idle timeout does."""
        with self._lock:
            sessions = list(self._open_sessions)
        done = threading.Event()

        def close() -> None:
            for session in sessions:
                if session.transport is not None:
                    session.transport.close()
            done.set()

        self._controller.loop.call_soon_threadsafe(close)
        done.wait(5)

    # --- what arrived ---

    def message_ids(self) -> Counter:
        """How many times each Message-ID arrived (a value above 1 is a duplicate)."""
        return Counter(message.message_id for message in self.messages)

    def delivered(self) -> list[ReceivedMessage]:
        """The messages the server accepted with a 2xx answer."""
        return [message for message in self.messages if message.answer.startswith("2")]

    # --- inside the server thread ---

    def _opened(self, session: _Session) -> int:
        with self._lock:
            self.connections += 1
            self._open_sessions.add(session)
            return self.connections

    def _closed(self, session: _Session) -> None:
        with self._lock:
            self._open_sessions.discard(session)

    def _take(self, stage: str, addresses: list[str]) -> Behaviour | None:
        with self._lock:
            for behaviour in self.behaviours:
                if behaviour.stage != stage or behaviour.times == 0:
                    continue
                if behaviour.recipient is not None and behaviour.recipient not in addresses:
                    continue
                if behaviour.times is not None:
                    behaviour.times -= 1
                return behaviour
        return None

    async def _behave(self, server: SMTP, stage: str, addresses: list[str],
                      record: ReceivedMessage | None = None) -> str | None:
        behaviour = self._take(stage, addresses)
        if behaviour is None:
            return None
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.drop:
            if record is not None:
                record.answer = "dropped"
            server.transport.close()
            await asyncio.sleep(3600)  # connection_lost cancels this session's task
        return behaviour.reply

    def _record(self, envelope: Any, content: bytes, server: _Session) -> ReceivedMessage:
        parsed = BytesParser(policy=default_policy).parsebytes(content.replace(b"\r\n", b"\n"))
        record = ReceivedMessage(envelope.mail_from, list(envelope.rcpt_tos), content, parsed,
                                 parsed.get("Message-ID"), "", server.number)
        with self._lock:
            self.messages.append(record)
        return record

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        accepted = (user, password) == self._auth
        with self._lock:
            self.logins.append((user, accepted))
        return AuthResult(success=accepted, handled=False)


def self_signed_certificate(folder: Path, host: str = HOST) -> tuple[Path, Path] | None:
    """A certificate for `host` (an IP address) and its key, made now; None when neither the `cryptography`
    package nor the `openssl` command is there. Trust it on the client with
    `ssl.create_default_context(cafile=cert)`."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _certificate_with_cryptography(cert, key, host)
        return cert, key
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=IP:{host}"],
        capture_output=True, timeout=60)
    return (cert, key) if result.returncode == 0 and cert.is_file() and key.is_file() else None


def _certificate_with_cryptography(cert: Path, key: Path, host: str) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


# --- HTTP -----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None  # sent as text/plain when there is no json
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    times: int | None = None  # how many requests it answers; None: all


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes
    connection: int  # which connection brought it, from 1

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse a connection
    timeout = 30  # an idle kept-alive connection is closed after this long
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.number = self.server.owner._opened()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet, pytest shows failures
        pass

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, self.headers, body, self.number)
        reply = owner._record(request)
        if reply.delay and owner._stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.json is not None:
            payload, content_type = json.dumps(reply.json).encode(), "application/json"
        else:
            payload, content_type = (reply.text or "").encode(), "text/plain; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpServer


class HttpServer:
    """An HTTP/1.1 server on 127.0.0.1 that records requests and answers as scripted per path
    (the path without its query string); an unscripted path gets 404."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.connections = 0
        self.replies: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((HOST, 0), _HttpHandler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def respond(self, path: str, status: int = 200, json: Any = None, *, text: str | None = None,
                headers: dict[str, str] | None = None, delay: float = 0.0, times: int | None = None) -> Reply:
        """Answer requests to `path` so; rules for one path apply in the order given, each `times` times
        (None: for good)."""
        reply = Reply(status, json, text, dict(headers or {}), delay, times)
        with self._lock:
            self.replies.setdefault(path, []).append(reply)
        return reply

    def _opened(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _record(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        with self._lock:
            self.requests.append(request)
            for reply in self.replies.get(path, []):
                if reply.times == 0:
                    continue
                if reply.times is not None:
                    reply.times -= 1
                return reply
        return Reply(404, {"error": f"no reply scripted for {path}"})
