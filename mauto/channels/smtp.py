"""Email over SMTP, one connection reused across a batch.

The envelope sender is the address of `Outgoing.sender` (the From header's value; the body's From header
when the row has none); the recipient is `Outgoing.to`. A message whose addresses cannot go into an envelope
(a line break or another control character, no `@`, a domain that is not a valid internationalised domain
name) is PARKED without touching the network.

Internationalised addresses: a domain outside ASCII (`user@bücher.example`) goes into the envelope in its
ASCII (IDNA) form, `user@xn--bcher-kva.example`, and needs nothing of the server. A local part outside ASCII
(`josé@example.com`) cannot be written in ASCII at all: the message goes with the SMTPUTF8 option (RFC 6531)
when the server offers it (so does a message whose headers carry such an address, RFC 6532), and is PARKED
("the server does not offer SMTPUTF8, which josé@example.com needs") when it does not.

When each answer is final:

- before DATA (connecting, TLS, login, MAIL FROM, RCPT TO) nothing was handed off: a refused or timed-out
  connection, a failed TLS handshake or login, a 4xx reply → RETRY; a 5xx reply to MAIL FROM or RCPT TO →
  PARKED, with the server's code and text (the same for a command the message's data makes the client or
  the server refuse: only that message is parked, and the connection goes on with the next). A connection
  the server closed between two messages (an idle timeout, a 421) is re-opened once, transparently: nothing
  was sent yet. A 530 (authentication or STARTTLS required) is RETRY, not PARKED: it is the configuration's
  fault, and every message would get it.
- `handoff()` is called once MAIL FROM and RCPT TO were accepted, right before DATA.
- the server's reply to the DATA command itself (before any of the message was sent): 354 goes on; 4xx →
  RETRY, 5xx → PARKED; a connection lost here → RETRY, since not a byte of the message was sent.
- a connection lost *while* the message is written → RETRY: the end-of-data line never arrived, and a server
  must not deliver a message without it (RFC 5321 §4.1.1.4).
- the final answer after the end-of-data line: 2xx → SENT (detail: the server's answer; provider_id: the
  queue id of "queued as ABC" when the server gives one, else its whole answer), 4xx → RETRY (an explicit
  refusal, safe to retry), 5xx → PARKED. No answer at all — the connection lost or the timeout reached
  between the end-of-data line and the reply — is UNKNOWN: the server may have accepted the message before
  the connection broke (RFC 1047), so a retry could deliver it twice. So is a reply that is neither 2xx,
  4xx nor 5xx.

A 421 anywhere (but a reused connection's first, re-opened transparently), and a 4xx whose text says the server
throttles (Amazon SES: `454 Throttling failure: Maximum sending rate exceeded`), is RETRY with
`Delivery.pushback`: the runner slows the channel down rather than counting a failed attempt
(`mauto.channels.pace`).

After any failure the transaction is reset (RSET), or the connection closed when it is in doubt, so that the
next message of the batch starts afresh.
"""
from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from functools import lru_cache

import idna

from mauto.channels.base import PARKED, RETRY, SENT, UNKNOWN, Delivery, Handoff, Outgoing, Transport, one_line, seconds

_ADDRESS = re.compile(r"[^\s<>@\"(),;:\\\[\]\x00-\x1f\x7f-\x9f]+@[^\s<>@\"(),;:\\\[\]\x00-\x1f\x7f-\x9f]+")
_QUEUED = re.compile(r"queued as\s+<?([^\s>]+)>?", re.IGNORECASE)
# Amazon SES's SMTP answer: `250 Ok <message id>`, the id its bounce and complaint notifications name.
_OK_ID = re.compile(r"^\d{3}\s+(?:\d\.\d{1,3}\.\d{1,3}\s+)?Ok\s+<?([^\s<>]{8,})>?\s*$", re.IGNORECASE)
_CRLF = b"\r\n"
# A temporary refusal that says the server throttles us, whatever its code: Amazon SES's `454 Throttling failure:
# Maximum sending rate exceeded`, `451 4.7.1 rate limited`, `450 too many messages`.
_THROTTLED = re.compile(r"throttl|rate.limit|sending rate|too many (?:messages|mails|emails|recipients)",
                        re.IGNORECASE)


class _Failure(Exception):
    """A Delivery decided before the message was handed off."""

    def __init__(self, delivery: Delivery) -> None:
        super().__init__(delivery.detail)
        self.delivery = delivery


class _Lost(Exception):
    """The connection broke (or the server said 421) before the message was handed off."""

    def __init__(self, detail: str, timed_out: bool = False, pushback: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timed_out = timed_out  # a slow server, not a stale connection: no transparent second try
        self.pushback = pushback  # the server said 421: maybe an idle connection closed, maybe "slow down"


@lru_cache(maxsize=1)
def _local_hostname() -> str:
    """The name we give in EHLO; looked up once, since getfqdn can be slow (a DNS query)."""
    return socket.getfqdn()


def envelope_sender(message: Outgoing) -> str:
    """The envelope sender the outbox row names (VERP: `bounces+<ref>@…`, where bounces go), else the address of
    `message.sender` (the From header's value, kept in the outbox row), else of the body's From.

    The outbox row first: parsing the headers out of the body cost 0.4 ms a message.
    """
    if message.envelope:
        return message.envelope
    addresses = [address for _, address in getaddresses([message.sender or ""]) if address]
    if addresses:
        return addresses[0]
    try:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(message.body)
        from_header = str(headers.get("From") or "")
    except Exception:  # noqa: BLE001 - a header the parser chokes on: no address
        from_header = ""
    addresses = [address for _, address in getaddresses([from_header]) if address]
    if addresses:
        return addresses[0]
    raise ValueError("the message has no From address")


def idna_address(address: str) -> str:
    """`address` with its domain in ASCII: IDNA 2008 with the UTS #46 mapping, as email-validator does
    (`user@Bücher.example` → `user@xn--bcher-kva.example`); the local part as it is. An address without a
    domain outside ASCII comes back unchanged. ValueError when the domain is not a valid IDN."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as error:
        raise ValueError(f"the domain of {address!r} is not a valid internationalised domain name: {error}") \
            from None
    return f"{local}@{ascii_domain}"


def check_address(address: str, what: str) -> str:
    """The address as the envelope carries it (see `idna_address`); ValueError when it cannot be one: a
    single `local@domain`, no display name, no space, no control character, a valid domain."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ValueError(f"{what} {address!r} is not an email address")
    return idna_address(address)


def _needs_smtputf8(addresses: dict[str, str], body: bytes) -> str | None:
    """What needs SMTPUTF8 in this message, in words, or None: an envelope address outside ASCII (only its
    local part can be, after `idna_address`; named as the message has it, the key of `addresses`), or
    headers that are not ASCII (RFC 6532 addresses)."""
    for written, envelope in addresses.items():
        if not envelope.isascii():
            return written
    head = body.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    if not head.isascii():
        return "a header of the message (an address outside ASCII)"
    return None


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return one_line(f"{code} {text}")


def _slows_down(code: int, answer: str) -> bool:
    """Whether a reply is the server's pushback (`Delivery.pushback`): 421 (it closes the connection, most often
    because we send too fast or over too many connections), or a 4xx that says it throttles."""
    return code == 421 or (400 <= code < 500 and _THROTTLED.search(answer) is not None)


def _timed_out(error: BaseException) -> bool:
    """smtplib turns a socket timeout into SMTPServerDisconnected; the timeout is its context."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _stuffed(body: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, leading dots doubled, ended by CRLF.CRLF."""
    data = re.sub(rb"\r\n|\r|\n", _CRLF, body)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(_CRLF):
        data += _CRLF
    return data + b"." + _CRLF


class SmtpTransport(Transport):
    """Sends email to one SMTP server; `send` returns a Delivery and never raises for a network problem."""

    name = "smtp"

    def __init__(self, host: str, port: int | None = None, *, starttls: bool = False, tls: bool = False,
                 timeout: float = 30.0, username: str | None = None, password: str | None = None,
                 context: ssl.SSLContext | None = None) -> None:
        if starttls and tls:
            raise ValueError("starttls and tls exclude each other")
        self.host = host
        self.port = port or (465 if tls else 587 if starttls else 25)
        self.starttls = starttls
        self.tls = tls
        self.timeout = timeout
        self.username = username
        self.password = password
        self._context = context  # tests give one that trusts their own certificate
        self._smtp: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    # --- the interface ---------------------------------------------------------------------------------

    def send(self, message: Outgoing, handoff: Handoff) -> Delivery:
        try:
            from_address = envelope_sender(message)
            sender = check_address(from_address, "sender")
            recipient = check_address(message.to, "recipient")
        except ValueError as problem:
            return Delivery(PARKED, f"not sent: {problem}")
        eight_bit = not message.body.isascii()
        utf8_for = _needs_smtputf8({message.to: recipient, from_address: sender}, message.body)
        for attempt in (1, 2):
            reused = self._smtp is not None  # open since an earlier message: the server may have closed it
            try:
                smtp = self._connection()
                if utf8_for is not None and not smtp.has_extn("smtputf8"):
                    return Delivery(PARKED, f"not sent: the server {self.where} does not offer SMTPUTF8, which "
                                            f"{utf8_for} needs")
                self._envelope(smtp, sender, recipient, eight_bit, utf8_for is not None)
                break
            except _Failure as failure:
                self._reset()
                return failure.delivery
            except _Lost as lost:
                self._drop()
                if reused and attempt == 1 and not lost.timed_out:
                    continue  # the server closed an idle connection: nothing was sent, open a new one
                return Delivery(RETRY, lost.detail, pushback=lost.pushback)
        try:
            handoff()
        except BaseException:
            self._reset()
            raise
        return self._data(smtp, message.body)

    def clone(self) -> SmtpTransport:
        """The same server and settings, a connection of its own (`channels.email.connections`)."""
        twin = SmtpTransport(self.host, self.port, starttls=self.starttls, tls=self.tls, timeout=self.timeout,
                             username=self.username, password=self.password, context=self._context)
        twin.pace = self.pace
        return twin

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    # --- the steps -------------------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        smtp: smtplib.SMTP | None = None
        pushback = False
        try:
            if self.tls:
                smtp = smtplib.SMTP_SSL(self.host, self.port, local_hostname=_local_hostname(),
                                        timeout=self.timeout, context=self.context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=_local_hostname(), timeout=self.timeout)
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=self.context())
                smtp.ehlo()
            if self.username is not None:
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as error:
            detail = f"login to {self.where} refused: {_reply(error.smtp_code, error.smtp_error)}"
        except smtplib.SMTPNotSupportedError as error:
            detail = f"{self.where}: {error}"
        except smtplib.SMTPResponseException as error:
            detail = f"{self.where} refused the connection: {_reply(error.smtp_code, error.smtp_error)}"
            pushback = _slows_down(error.smtp_code, detail)
        except smtplib.SMTPServerDisconnected as error:
            detail = (f"timed out after {seconds(self.timeout)} connecting to {self.where}" if _timed_out(error)
                      else f"{self.where} closed the connection while connecting: {error}")
        except smtplib.SMTPException as error:
            detail = f"{self.where}: {error}"
        except ssl.SSLError as error:
            detail = f"TLS with {self.where} failed: {error}"
        except TimeoutError:
            detail = f"timed out after {seconds(self.timeout)} connecting to {self.where}"
        except OSError as error:
            detail = f"could not connect to {self.where}: {error.strerror or error}"
        else:
            self._smtp = smtp
            return smtp
        if smtp is not None:
            smtp.close()
        raise _Failure(Delivery(RETRY, one_line(detail), pushback=pushback))

    def _command(self, stage: str, call, *args) -> tuple[int, bytes]:
        try:
            code, text = call(*args)
        except smtplib.SMTPServerDisconnected as error:
            if _timed_out(error):
                raise _Lost(f"timed out after {seconds(self.timeout)} at {stage}, "
                            "before the message was handed off", timed_out=True) from None
            raise _Lost(f"connection to {self.where} lost at {stage}, before the message was handed off") \
                from None
        except (smtplib.SMTPNotSupportedError, UnicodeEncodeError):  # SMTPUTF8 needed and not offered
            raise _Failure(Delivery(PARKED, f"{stage}: the address is not ASCII and {self.where} does not "
                                            "offer SMTPUTF8")) from None
        except ValueError as error:  # smtplib refuses the command: this message's data, not the connection's
            raise _Failure(Delivery(PARKED, one_line(f"{stage}: not sent: {error}"))) from None
        if code == 421:  # the server is closing the connection: maybe just an idle one
            raise _Lost(f"{stage}: {_reply(code, text)}", pushback=True)
        if code == 530:  # RFC 4954/3207: log in or STARTTLS first; mauto.yaml's fault, not the message's
            raise _Failure(Delivery(RETRY, f"{stage}: {_reply(code, text)} (the server wants a login or TLS: "
                                           "check channels.email in mauto.yaml)"))
        if not 200 <= code < 300:
            answer = f"{stage}: {_reply(code, text)}"
            if 500 <= code < 600:
                raise _Failure(Delivery(PARKED, answer))
            raise _Failure(Delivery(RETRY, answer, pushback=_slows_down(code, answer)))
        return code, text

    def _envelope(self, smtp: smtplib.SMTP, sender: str, recipient: str, eight_bit: bool, smtputf8: bool) -> None:
        smtp.command_encoding = "ascii"  # smtplib makes it UTF-8 for a MAIL FROM with SMTPUTF8; reset it after
        options = []
        if smtputf8:
            options.append("SMTPUTF8")  # smtplib refuses it when the server does not offer SMTPUTF8
        if eight_bit and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        self._command("MAIL FROM", smtp.mail, sender, options)
        self._command("RCPT TO", smtp.rcpt, recipient)

    def _data(self, smtp: smtplib.SMTP, body: bytes) -> Delivery:
        try:
            code, text = smtp.docmd("DATA")
        except smtplib.SMTPServerDisconnected:
            self._drop()
            return Delivery(RETRY, f"connection to {self.where} lost at DATA, before any of the message was sent")
        if code != 354:
            self._reset()
            answer = f"DATA: {_reply(code, text)}"
            if 500 <= code < 600:
                return Delivery(PARKED, answer)
            return Delivery(RETRY, answer, pushback=_slows_down(code, answer))
        try:
            smtp.send(_stuffed(body))
        except smtplib.SMTPServerDisconnected as error:
            self._drop()
            what = f"timed out after {seconds(self.timeout)}" if _timed_out(error) else "connection lost"
            return Delivery(RETRY, f"{what} while the message was written, before its end: "
                                   "the server cannot have accepted it")
        try:
            code, text = smtp.getreply()
        except smtplib.SMTPServerDisconnected as error:
            self._drop()
            what = (f"timed out after {seconds(self.timeout)} waiting for the answer" if _timed_out(error)
                    else f"connection to {self.where} lost before the answer")
            return Delivery(UNKNOWN, f"{what} to a message already handed off: it may have been delivered "
                                     "(RFC 1047); not retried")
        answer = _reply(code, text)
        if 200 <= code < 300:
            queued = _QUEUED.search(answer) or _OK_ID.match(answer)
            provider_id = queued.group(1) if queued else answer.split(" ", 1)[-1]
            return Delivery(SENT, answer, provider_id=provider_id)
        if code == 421:
            self._drop()
        if 400 <= code < 500:
            return Delivery(RETRY, answer, pushback=_slows_down(code, answer))
        if 500 <= code < 600:
            return Delivery(PARKED, answer)
        self._drop()
        return Delivery(UNKNOWN, f"unexpected answer to the message: {answer}")

    def _reset(self) -> None:
        """RSET the transaction; a connection that does not take it is closed, and re-opened on the next send."""
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if not 200 <= code < 300:
            self._drop()

    def _drop(self) -> None:
        """Close without QUIT: the connection is broken or in doubt."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()
