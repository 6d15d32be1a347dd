"""What email and SMS providers POST to `mauto serve` about the messages mauto sent (`POST /v1/providers/<name>`):
each request verified the way that provider signs it, then read into `mauto.feedback.Feedback` records. Pure
code: no framework, no store; the app hands over a `ProviderRequest` and records what `parse` returns.

    parsed = parse("mailgun", ProviderRequest(url, headers, body), secrets, now)   # or raises Rejected

Providers, what each is verified with (`secrets`, read by the app from the environment variables `mauto.yaml`
names: `SECRETS` lists them), and what becomes feedback:

- `ses`: Amazon SES notifications through an Amazon SNS topic (HTTPS subscription). The SNS message is signed
  by SNS (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA, over the canonical string of its type's fields)
  with the certificate at `SigningCertURL`, which is fetched only when it is an https URL on
  `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`) ending in `.pem`, and cached by URL. Only the topics in
  `ses_topic_arn` (one ARN, or several separated by commas or spaces) are accepted: any AWS account can
  create a topic and subscribe this URL to it, and SNS would sign its messages just as well. A `Timestamp`
  more than an hour from now is refused (a replay). `SubscriptionConfirmation` gives the `SubscribeURL` to
  GET (`Parsed.confirm_url`); `UnsubscribeConfirmation` nothing. The notification (`notificationType`, or
  `eventType` for event publishing): Bounce with `bounceType` Permanent → hard bounce, Transient or
  Undetermined (or a type SES adds later) → soft; Complaint → complaint; Delivery → delivered; one record per
  recipient. Anything else on the topic (SES's own "Successfully validated SNS topic" text, opens, sends) is
  taken and ignored. `confirm(url)` GETs a `confirm_url`.
- `sendgrid`: the Event Webhook, signed with ECDSA P-256/SHA-256 over the timestamp header followed by the body
  (`sendgrid_public_key`: the verification key, base64 DER as SendGrid shows it, or PEM); a timestamp more than
  10 minutes from now is refused. bounce → hard, its `type` blocked (or any other) → soft; dropped with reason
  "Bounced Address" or "Invalid" → hard, "Spam Reporting Address" → complaint, other drops ignored (SendGrid
  refused to send: nothing was said about the address); spamreport → complaint; delivered. `deferred` is
  ignored: SendGrid keeps retrying for 72 hours and posts one `deferred` per attempt, so each would count as a
  soft bounce of one message; the outcome comes later as delivered, bounce or dropped.
- `mailgun`: webhooks signed with HMAC-SHA256 (hex) of the timestamp and the token (`mailgun_signing_key`;
  a subaccount's `parent-signature` is accepted too); a timestamp more than 10 minutes from now, or a token seen
  before, is refused. Mailgun signs only the timestamp and the token, not the event: remembering the tokens is
  what stops one signature from carrying another event. failed with severity permanent → hard, temporary (or
  another) → soft; complained → complaint; delivered.
- `postmark`: HTTP Basic authentication, as Postmark's webhook URL carries it (`postmark_username`,
  `postmark_password`), compared in constant time. Bounce records: HardBounce, BadEmailAddress,
  ManuallyDeactivated → hard; SoftBounce, Transient, DnsError, Blocked, SpamNotification → soft; SpamComplaint
  → complaint; other types (auto-responders, challenges, Postmark's own errors) ignored. SpamComplaint records
  → complaint; Delivery → delivered; opens, clicks and subscription changes ignored.
- `twilio`: inbound SMS, `X-Twilio-Signature` = base64 HMAC-SHA1 of the URL and the form parameters sorted by
  name (`twilio_auth_token`), tried with and without the URL's port as Twilio's own libraries do. A reply that
  is only an opt-out keyword (trimmed, case-folded, ending punctuation dropped): Twilio's defaults STOP,
  STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT; CTIA's "OPT OUT"; ARRET/ARRÊT (the French keyword
  Canadian carriers require; France itself uses STOP) — or one Twilio's Advanced Opt-Out marked
  `OptOutType=STOP` — is an SMS STOP from `From`. Anything else records nothing. The answer is always an empty
  TwiML `<Response/>` (`Parsed.answer`), so Twilio sends no reply of its own making.

Refusals (`Rejected`): 400 malformed (not UTF-8, not JSON, wrong shapes or types, times out of range); 401
credentials missing, malformed, wrong, stale or replayed; 403 an SNS topic not accepted; 404 an unknown
provider; 422 signed but unusable (a `SubscribeURL` off Amazon SNS); 503 this server cannot check the request:
the provider's secret is not configured (or is not a usable key), or the SNS certificate could not be fetched.
503 and not 401 for a missing secret because the fault is the server's, not the sender's credentials: SNS,
SendGrid, Mailgun and Postmark retry a 5xx, so feedback they sent before the secret was set is not lost once it
is (Twilio does not retry an inbound message; it blocks a number that sent STOP itself, though).
A reason never shows a secret.

`Feedback.id` is the provider's id of the notification (per recipient where one notification names several),
so that a notification posted twice is recorded once; a soft bounce's is `soft:<message>:<address>` instead,
so that it counts once per message however often the provider retries it (see `_soft_once`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import threading
import unicodedata
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from functools import lru_cache
from typing import IO, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mauto.feedback import COMPLAINT, DELIVERED, HARD_BOUNCE, SMS_STOP, SOFT_BOUNCE, Feedback
from mauto.limits import EARLIEST, LATEST, LimitError, check_moment
from mauto.links import REF

SNS_WINDOW = timedelta(hours=1)  # how far an SNS `Timestamp` may be from now
SENDGRID_WINDOW = timedelta(minutes=10)
MAILGUN_WINDOW = timedelta(minutes=10)
FETCH_TIMEOUT = 5.0  # seconds, to GET an Amazon SNS URL (a certificate, a SubscribeURL)
MAX_FETCHED = 64 * 1024  # bytes read of what that GET answers: an SNS certificate is about 2 KB
CACHED_CERTIFICATES = 32  # SNS rotates its certificates rarely; one per region in use

SECRETS: dict[str, tuple[str, ...]] = {  # what each provider's check needs from `secrets`
    "ses": ("ses_topic_arn",),
    "sendgrid": ("sendgrid_public_key",),
    "mailgun": ("mailgun_signing_key",),
    "postmark": ("postmark_username", "postmark_password"),
    "twilio": ("twilio_auth_token",),
}

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class ProviderRequest:
    """A provider's POST as the server received it."""

    url: str  # the full URL the provider posted to, as the server saw it (Twilio signs it)
    headers: Mapping[str, str]  # lower-case names
    body: bytes


class Rejected(Exception):
    """The request is refused and nothing is recorded: `status` for the answer, `reason` (one line, never a
    secret) for its JSON body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Parsed:
    """What a verified request says."""

    feedback: list[Feedback]
    confirm_url: str | None = None  # SNS SubscriptionConfirmation: the SubscribeURL to GET (it was checked)
    answer: tuple[str, bytes] | None = None  # (content type, body) when the provider expects one (Twilio)
    # a token the provider signs for one use only (Mailgun's), and the reason a second use is refused with: this
    # process remembers it, and the store too (`mauto serve` restarted, or several servers on one store)
    once: tuple[str, str] | None = field(default=None, compare=False)


Parser = Callable[[ProviderRequest, Mapping[str, str], datetime, Fetch], Parsed]


def parse(name: str, request: ProviderRequest, secrets: Mapping[str, str], now: datetime,
          fetch: Fetch | None = None) -> Parsed:
    """Verify `request` as provider `name` signs, and read what it says; Rejected when it is refused.

    `now` is the server's clock (for the providers' timestamps); `fetch` GETs an Amazon SNS certificate URL
    (already checked to be one) and returns its body (default: `fetch_sns`)."""
    parser = PROVIDERS.get(name)
    if parser is None:
        raise Rejected(404, f"unknown provider (known: {', '.join(PROVIDERS)})")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    headers = {key.lower(): value for key, value in request.headers.items()}
    parsed = parser(ProviderRequest(request.url, headers, request.body), secrets, now, fetch or fetch_sns)
    return replace(parsed, feedback=[_soft_once(item) for item in parsed.feedback])


def _soft_once(feedback: Feedback) -> Feedback:
    """A soft bounce counts once per message and address: its id names them, not the notification. Mailgun
    posts a temporary failure at each retry of one message, Postmark a Transient record at each delay, and the
    store suppresses an address at its third soft bounce: one greylisted message must not do that."""
    message = feedback.provider_id or feedback.ref
    if feedback.kind != SOFT_BOUNCE or not message or not feedback.address:
        return feedback
    return replace(feedback, id=f"soft:{message}:{feedback.address.lower()}")


# --- reading JSON ---------------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads takes NaN and Infinity unless told not to


def _json(body: bytes, what: str) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, f"the {what} body is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise Rejected(400, f"the {what} body is not JSON") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected(400, f"{what} is not a JSON object")
    return value


def _is_text(value: Any, limit: int) -> bool:
    """A string of at most `limit` characters that is text (JSON's \\ud800 escapes give lone surrogates)."""
    if not isinstance(value, str) or len(value) > limit:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(record: Mapping[str, Any], key: str, what: str, *, limit: int = 1000) -> str:
    """The non-empty string `record[key]`; 400 when it is missing or not one."""
    value = _optional_text(record, key, what, limit=limit)
    if not value:
        raise Rejected(400, f"{what} has no `{key}`")
    return value


def _optional_text(record: Mapping[str, Any], key: str, what: str, *, limit: int = 1000) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not _is_text(value, limit):
        raise Rejected(400, f"{what}'s `{key}` is not a string of at most {limit} characters")
    return value


def _list(record: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = record.get(key)
    if not isinstance(value, list):
        raise Rejected(400, f"{what}'s `{key}` is not a list")
    return value


def _line(text: str | None, limit: int = 300) -> str:
    """One line of at most `limit` characters: what a Feedback's reason holds."""
    if not text:
        return ""
    return " ".join("".join(char if char.isprintable() else " " for char in text).split())[:limit]


def _details(**values: Any) -> dict[str, str]:
    """The string values given, on one line each; the rest (absent, other types) left out."""
    return {key: _line(value, 100) for key, value in values.items() if _is_text(value, 1000) and _line(value)}


# --- times ----------------------------------------------------------------------------------------------------

_EPOCH_SECONDS = re.compile(r"[0-9]{1,12}")


def _iso_moment(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Rejected(400, f"{what} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return check_moment(moment, what)
    except LimitError as error:
        raise Rejected(400, str(error)) from None


def _unix_moment(value: Any, what: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (isinstance(value, float) and not math.isfinite(value)) or \
            not EARLIEST.timestamp() <= value < LATEST.timestamp():
        raise Rejected(400, f"{what} is not a time in seconds")
    return datetime.fromtimestamp(value, UTC)


def _signed_moment(value: Any, what: str) -> datetime:
    """A timestamp a signature covers (seconds since 1970, as digits): 401 when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not _EPOCH_SECONDS.fullmatch(value) or \
            not EARLIEST.timestamp() <= int(value) < LATEST.timestamp():
        raise Rejected(401, f"the {what} timestamp is malformed")
    return datetime.fromtimestamp(int(value), UTC)


def _fresh(moment: datetime, now: datetime, window: timedelta, what: str) -> None:
    if abs(now - moment) > window:
        minutes = int(window.total_seconds() // 60)
        raise Rejected(401, f"the {what} timestamp is more than {minutes} minutes from now: a replay, "
                            "or a clock that is off")


# --- mauto's ref in what providers echo -------------------------------------------------------------------------

_VERP = re.compile(r"[^@\s<>]*\+([A-Za-z0-9_-]{22})@[^@\s<>]+")  # bounces+<ref>@domain (mauto.links)
_UNSUBSCRIBE_URL = re.compile(r"/u/([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{16}(?![A-Za-z0-9_-])")


def _ref(value: Any) -> str | None:
    """`value` when it is a ref of mauto's (mauto.links.REF), else None: a provider echoes what it was given."""
    return value if isinstance(value, str) and REF.fullmatch(value) else None


def _verp_ref(address: Any) -> str | None:
    if not isinstance(address, str) or len(address) > 1000:
        return None
    found = _VERP.fullmatch(address.strip(" <>"))
    return found.group(1) if found else None


def _unsubscribe_ref(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 10_000:
        return None
    found = _UNSUBSCRIBE_URL.search(value)
    return found.group(1) if found else None


def _metadata_ref(metadata: Any) -> str | None:
    return _ref(metadata.get("mauto_ref")) if isinstance(metadata, dict) else None


# --- Amazon SES through Amazon SNS ------------------------------------------------------------------------------

_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")
_URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_SNS_SIGNED = {  # the fields of the string SNS signs, in its order (a field absent from the message is left out)
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_SNS_OPTIONAL = {"Subject"}
_SNS_LIMITS = {"Message": 512 * 1024, "Subject": 1000}  # SNS: 256 KB messages, 100-character subjects
_SES_BOUNCE_KINDS = {"Permanent": HARD_BOUNCE, "Transient": SOFT_BOUNCE, "Undetermined": SOFT_BOUNCE}

_certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
_certificates_lock = threading.Lock()


def is_sns_url(url: str, *, certificate: bool) -> bool:
    """Whether `url` is an https URL on an Amazon SNS host (`sns.<region>.amazonaws.com`, or `.com.cn`), with
    no credentials and no other port; for a `certificate`, also a path ending in `.pem` and no query."""
    if not _URL_CHARACTERS.fullmatch(url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or "@" in parts.netloc or port not in (None, 443) or \
            not _SNS_HOST.fullmatch(parts.hostname or ""):
        return False
    return not certificate or (parts.path.endswith(".pem") and not parts.query and not parts.fragment)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """What is fetched comes from the URL that was checked, never from where it redirects."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        return None


def fetch_sns(url: str) -> bytes:
    """GET an Amazon SNS URL: a signing certificate, a SubscribeURL (https, the server's certificate verified, no
    redirects, a short timeout, at most MAX_FETCHED bytes read). Raises on any failure, and on a URL that is
    not on an Amazon SNS host."""
    if not is_sns_url(url, certificate=False):
        raise ValueError("not an Amazon SNS URL")
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(url, timeout=FETCH_TIMEOUT) as answer:
        return bytes(answer.read(MAX_FETCHED + 1))


def confirm(url: str, fetch: Fetch | None = None) -> None:
    """Confirm an SNS subscription: GET its SubscribeURL (`Parsed.confirm_url`), checked again to be an https URL
    on an Amazon SNS host. Rejected(503) when the GET fails: SNS sends the confirmation again after a 5xx (and
    the AWS console can ask for it again)."""
    if not is_sns_url(url, certificate=False):
        raise Rejected(422, "the SubscribeURL is not an Amazon SNS URL: not confirmed")
    try:
        (fetch or fetch_sns)(url)
    except Exception:  # whatever the fetch raises: network, HTTP status, timeout
        raise Rejected(503, "could not confirm the Amazon SNS subscription") from None


def _sns_key(url: str, fetch: Fetch, now: datetime) -> rsa.RSAPublicKey:
    with _certificates_lock:
        certificate = _certificates.get(url)
    if certificate is None:
        try:
            pem = fetch(url)
        except Exception:  # whatever the fetch raises (network, HTTP status, timeout): SNS will retry
            raise Rejected(503, "could not fetch the Amazon SNS signing certificate") from None
        try:
            if not isinstance(pem, bytes) or len(pem) > MAX_FETCHED:
                raise ValueError("not a certificate")
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise Rejected(401, "the Amazon SNS signing certificate is not a PEM certificate") from None
        with _certificates_lock:
            _certificates[url] = certificate
            while len(_certificates) > CACHED_CERTIFICATES:
                _certificates.popitem(last=False)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Rejected(401, "the Amazon SNS signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Rejected(401, "the Amazon SNS signing certificate has no RSA key")
    return key


def _sns_envelope(request: ProviderRequest) -> tuple[str, dict[str, str | None]]:
    """The SNS message's type and the fields its signature covers."""
    envelope = _object(_json(request.body, "Amazon SNS"), "the Amazon SNS message")
    kind = envelope.get("Type")
    if not isinstance(kind, str) or kind not in _SNS_SIGNED:
        raise Rejected(400, "unknown Amazon SNS message type")
    declared = request.headers.get("x-amz-sns-message-type")
    if declared is not None and declared != kind:
        raise Rejected(400, "the x-amz-sns-message-type header and the message's Type differ")
    what = "the Amazon SNS message"
    fields: dict[str, str | None] = {}
    for name in _SNS_SIGNED[kind]:
        limit = _SNS_LIMITS.get(name, 2048)
        if name in _SNS_OPTIONAL:
            fields[name] = _optional_text(envelope, name, what, limit=limit)
        elif name == "Message":  # may be empty; must be there
            if not _is_text(envelope.get(name), limit):
                raise Rejected(400, f"{what} has no `Message` (text of at most {limit} characters)")
            fields[name] = envelope[name]
        else:
            fields[name] = _text(envelope, name, what, limit=limit)
    for name in ("SignatureVersion", "Signature", "SigningCertURL"):
        fields[name] = _text(envelope, name, what, limit=2048)
    return kind, fields


def _sns_verify(fields: Mapping[str, str | None], kind: str, fetch: Fetch, now: datetime) -> None:
    version = fields["SignatureVersion"]
    if version not in ("1", "2"):
        raise Rejected(401, "unsupported Amazon SNS SignatureVersion")
    try:
        signature = base64.b64decode(fields["Signature"] or "", validate=True)
    except ValueError:
        raise Rejected(401, "the Amazon SNS signature is not base64") from None
    url = fields["SigningCertURL"] or ""
    if not is_sns_url(url, certificate=True):
        raise Rejected(401, "the SigningCertURL is not an Amazon SNS certificate URL: not fetched")
    key = _sns_key(url, fetch, now)
    canonical = "".join(f"{name}\n{fields[name]}\n" for name in _SNS_SIGNED[kind] if fields[name] is not None)
    try:
        key.verify(signature, canonical.encode("utf-8"), padding.PKCS1v15(),
                   hashes.SHA1() if version == "1" else hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise Rejected(401, "the Amazon SNS signature does not verify") from None


def _topics(setting: str | None) -> set[str]:
    return set(re.split(r"[\s,]+", setting.strip())) - {""} if setting else set()


def _ses(request: ProviderRequest, secrets: Mapping[str, str], now: datetime, fetch: Fetch) -> Parsed:
    topics = _topics(secrets.get("ses_topic_arn"))
    if not topics:
        raise Rejected(503, "Amazon SES feedback is not configured on this server (no SNS topic ARN)")
    kind, fields = _sns_envelope(request)
    if fields["TopicArn"] not in topics:  # before any fetch: a foreign topic costs nothing
        raise Rejected(403, "this Amazon SNS topic is not accepted here")
    _fresh(_iso_moment(fields["Timestamp"] or "", "the Amazon SNS `Timestamp`"), now, SNS_WINDOW, "Amazon SNS")
    _sns_verify(fields, kind, fetch, now)
    if kind == "SubscriptionConfirmation":
        url = fields["SubscribeURL"] or ""
        if not is_sns_url(url, certificate=False):
            raise Rejected(422, "the SubscribeURL is not an Amazon SNS URL: not confirmed")
        return Parsed([], confirm_url=url)
    if kind == "UnsubscribeConfirmation":
        return Parsed([])
    return Parsed(_ses_feedback(fields["Message"] or "", fields["MessageId"] or ""))


def _ses_feedback(message: str, sns_id: str) -> list[Feedback]:
    try:
        notification = json.loads(message, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return []  # not an SES notification: SES's "Successfully validated SNS topic ..." text, say
    if not isinstance(notification, dict):
        return []
    kind = notification.get("notificationType", notification.get("eventType"))
    if kind not in ("Bounce", "Complaint", "Delivery"):
        return []  # event publishing's sends, opens, clicks...: mauto has its own
    mail = _object(notification.get("mail"), "the SES notification's `mail`")
    provider_id = _optional_text(mail, "messageId", "the SES `mail`")
    ref = _ses_ref(mail)
    if kind == "Bounce":
        return _ses_bounce(_object(notification.get("bounce"), "the SES `bounce`"), sns_id, ref, provider_id)
    if kind == "Complaint":
        return _ses_complaint(_object(notification.get("complaint"), "the SES `complaint`"), sns_id, ref,
                              provider_id)
    delivery = _object(notification.get("delivery"), "the SES `delivery`")
    at = _ses_moment(delivery, "the SES delivery")
    reason = _line(_optional_text(delivery, "smtpResponse", "the SES delivery"))
    return [Feedback(DELIVERED, "ses", address=address, ref=ref, provider_id=provider_id, at=at, reason=reason,
                     id=f"{sns_id}:{address}")
            for address in _addresses(_list(delivery, "recipients", "the SES delivery"), "the SES delivery")]


def _ses_bounce(bounce: dict[str, Any], sns_id: str, ref: str | None, provider_id: str | None) -> list[Feedback]:
    what = "the SES bounce"
    bounce_type = _text(bounce, "bounceType", what)
    subtype = _optional_text(bounce, "bounceSubType", what)
    base = _optional_text(bounce, "feedbackId", what) or sns_id
    at = _ses_moment(bounce, what)
    result = []
    for recipient in _list(bounce, "bouncedRecipients", what):
        recipient = _object(recipient, "a bounced recipient")
        address = _text(recipient, "emailAddress", "a bounced recipient", limit=1000)
        status = _optional_text(recipient, "status", "a bounced recipient")
        diagnostic = _optional_text(recipient, "diagnosticCode", "a bounced recipient", limit=10_000)
        result.append(Feedback(_SES_BOUNCE_KINDS.get(bounce_type, SOFT_BOUNCE), "ses", address=address, ref=ref,
                               provider_id=provider_id, at=at, reason=_line(diagnostic or status or subtype),
                               id=f"{base}:{address}",
                               details=_details(bounce_type=bounce_type, bounce_subtype=subtype, status=status)))
    return result


def _ses_complaint(complaint: dict[str, Any], sns_id: str, ref: str | None,
                   provider_id: str | None) -> list[Feedback]:
    what = "the SES complaint"
    base = _optional_text(complaint, "feedbackId", what) or sns_id
    feedback_type = _optional_text(complaint, "complaintFeedbackType", what)
    at = _ses_moment(complaint, what)
    result = []
    for recipient in _list(complaint, "complainedRecipients", what):
        address = _text(_object(recipient, "a complained recipient"), "emailAddress", "a complained recipient")
        result.append(Feedback(COMPLAINT, "ses", address=address, ref=ref, provider_id=provider_id, at=at,
                               reason=_line(feedback_type), id=f"{base}:{address}",
                               details=_details(feedback_type=feedback_type)))
    return result


def _ses_moment(record: dict[str, Any], what: str) -> datetime | None:
    text = _optional_text(record, "timestamp", what, limit=100)
    return _iso_moment(text, f"{what}'s `timestamp`") if text else None


def _addresses(values: list[Any], what: str) -> list[str]:
    if not all(_is_text(value, 1000) and value for value in values):
        raise Rejected(400, f"{what}'s recipients are not all addresses")
    return values


def _ses_ref(mail: dict[str, Any]) -> str | None:
    """mauto's ref in an SES `mail` object: a `mauto_ref` tag (SES API sends), the X-Mauto-Ref header, the
    VERP envelope sender, the List-Unsubscribe URL. The headers are there only when the identity's
    notifications include them; whatever is missing or odd here is passed over: the address still counts."""
    tags = mail.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get("mauto_ref"), list) and tags["mauto_ref"]:
        found = _ref(tags["mauto_ref"][0])
        if found:
            return found
    headers = mail.get("headers")
    named: dict[str, Any] = {}
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and isinstance(header.get("name"), str):
                named.setdefault(header["name"].lower(), header.get("value"))
    value = named.get("x-mauto-ref")
    return (_ref(value.strip() if isinstance(value, str) else None) or _verp_ref(mail.get("source"))
            or _verp_ref(named.get("return-path")) or _unsubscribe_ref(named.get("list-unsubscribe")))


# --- SendGrid -------------------------------------------------------------------------------------------------

_SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
_SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
_SENDGRID_DROPPED = {"bounced address": HARD_BOUNCE, "invalid": HARD_BOUNCE, "spam reporting address": COMPLAINT}


@lru_cache(maxsize=4)
def _sendgrid_key(text: str) -> ec.EllipticCurvePublicKey | None:
    """The verification key SendGrid shows (base64 of the DER public key), or the same key in PEM."""
    try:
        if "BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, UnsupportedAlgorithm):  # binascii.Error and UnicodeError are ValueErrors
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def _sendgrid(request: ProviderRequest, secrets: Mapping[str, str], now: datetime, fetch: Fetch) -> Parsed:
    setting = (secrets.get("sendgrid_public_key") or "").strip()
    if not setting:
        raise Rejected(503, "SendGrid feedback is not configured on this server (no verification key)")
    key = _sendgrid_key(setting)
    if key is None:
        raise Rejected(503, "the SendGrid verification key configured here is not a P-256 public key")
    signature, timestamp = request.headers.get(_SENDGRID_SIGNATURE), request.headers.get(_SENDGRID_TIMESTAMP)
    if not signature or not timestamp:
        raise Rejected(401, "the SendGrid signature headers are missing")
    _fresh(_signed_moment(timestamp, "SendGrid"), now, SENDGRID_WINDOW, "SendGrid")
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode("ascii") + request.body,
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Rejected(401, "the SendGrid signature does not verify") from None
    events = _json(request.body, "SendGrid")
    if not isinstance(events, list):
        raise Rejected(400, "the SendGrid body is not a JSON array of events")
    return Parsed([item for event in events if (item := _sendgrid_event(event)) is not None])


def _sendgrid_kind(event: dict[str, Any], name: str) -> str | None:
    if name == "bounce":
        bounce_type = event.get("type")
        return HARD_BOUNCE if bounce_type in (None, "bounce") else SOFT_BOUNCE
    if name == "dropped":
        reason = _optional_text(event, "reason", "the SendGrid event") or ""
        return _SENDGRID_DROPPED.get(reason.strip().lower())
    return {"spamreport": COMPLAINT, "delivered": DELIVERED}.get(name)


def _sendgrid_event(value: Any) -> Feedback | None:
    what = "the SendGrid event"
    event = _object(value, "a SendGrid event")
    kind = _sendgrid_kind(event, _text(event, "event", what))
    if kind is None:
        return None
    address = _text(event, "email", what)
    at = _unix_moment(event["timestamp"], f"{what}'s `timestamp`") if "timestamp" in event else None
    message_id = _optional_text(event, "sg_message_id", what)
    # sg_message_id is the X-Message-Id SendGrid answered the send with, then ".filter…": the outbox keeps the first
    provider_id = message_id.split(".filter", 1)[0] if message_id else None
    reason = _optional_text(event, "reason", what, limit=10_000) or _optional_text(event, "response", what,
                                                                                     limit=10_000)
    ref = _ref(event.get("mauto_ref")) or _metadata_ref(event.get("unique_args")) or \
        _metadata_ref(event.get("custom_args"))
    bounce_type = event.get("type") if event.get("event") == "bounce" and event.get("type") != "bounce" else None
    return Feedback(kind, "sendgrid", address=address, ref=ref, provider_id=provider_id, at=at,
                    reason=_line(reason), id=_optional_text(event, "sg_event_id", what),
                    details=_details(status=event.get("status"), type=bounce_type,
                                     classification=event.get("bounce_classification")))


# --- Mailgun --------------------------------------------------------------------------------------------------

_MAILGUN_TOKEN = re.compile(r"[\x21-\x7e]{1,256}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
REPLAYED_MAILGUN_TOKEN = "this Mailgun token was used before: a replay"
def _mailgun_signed(block: dict[str, Any], key: str, now: datetime) -> None:
    token, timestamp = block.get("token"), block.get("timestamp")
    signatures = [block.get("signature"), block.get("parent-signature")]
    if not isinstance(token, str) or not _MAILGUN_TOKEN.fullmatch(token) or \
            not isinstance(signatures[0], str) or \
            not all(value is None or (isinstance(value, str) and _HEX_SHA256.fullmatch(value)) for value in signatures):
        raise Rejected(401, "the Mailgun signature block is malformed")
    moment = _signed_moment(timestamp, "Mailgun")
    _fresh(moment, now, MAILGUN_WINDOW, "Mailgun")
    expected = hmac.new(key.encode("utf-8", "surrogatepass"), (str(timestamp) + token).encode("ascii"),
                        hashlib.sha256).hexdigest().encode("ascii")
    # every comparison made, whatever the first gave: the time taken says nothing
    matches = [hmac.compare_digest(expected, value.lower().encode("ascii")) for value in signatures
               if isinstance(value, str)]
    if not any(matches):
        raise Rejected(401, "the Mailgun signature does not verify")
    # Not remembered here: the write records the token in the store (`Parsed.once`), rolled back with a group
    # that fails, so that Mailgun's retry after our 503 is taken, and a replay is refused by every server.


def _mailgun(request: ProviderRequest, secrets: Mapping[str, str], now: datetime, fetch: Fetch) -> Parsed:
    key = (secrets.get("mailgun_signing_key") or "").strip()
    if not key:
        raise Rejected(503, "Mailgun feedback is not configured on this server (no webhook signing key)")
    payload = _object(_json(request.body, "Mailgun"), "the Mailgun body")
    block = payload.get("signature")
    if not isinstance(block, dict):
        raise Rejected(401, "the Mailgun signature block is missing")
    _mailgun_signed(block, key, now)
    return Parsed(_mailgun_event(_object(payload.get("event-data"), "the Mailgun event-data")),
                  once=(str(block["token"]), REPLAYED_MAILGUN_TOKEN))


def _mailgun_kind(event: dict[str, Any]) -> str | None:
    name = _text(event, "event", "the Mailgun event-data")
    if name == "failed":
        return HARD_BOUNCE if event.get("severity") == "permanent" else SOFT_BOUNCE
    return {"complained": COMPLAINT, "delivered": DELIVERED}.get(name)


def _mailgun_event(event: dict[str, Any]) -> list[Feedback]:
    what = "the Mailgun event-data"
    kind = _mailgun_kind(event)
    if kind is None:
        return []  # opened, clicked, accepted, unsubscribed...: not feedback mauto takes from Mailgun
    address = _text(event, "recipient", what)
    at = _unix_moment(event["timestamp"], f"{what}'s `timestamp`") if "timestamp" in event else None
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = _optional_text(headers, "message-id", "the Mailgun message headers") \
        if isinstance(headers, dict) else None
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    code = status.get("code")
    envelope = event.get("envelope")
    ref = _metadata_ref(event.get("user-variables")) or \
        (_verp_ref(envelope.get("sender")) if isinstance(envelope, dict) else None)
    reason = _optional_text(status, "message", "the Mailgun delivery-status", limit=10_000) or \
        _optional_text(status, "description", "the Mailgun delivery-status", limit=10_000)
    return [Feedback(kind, "mailgun", address=address, ref=ref,
                     provider_id=f"<{message_id.strip('<>')}>" if message_id else None, at=at, reason=_line(reason),
                     id=_optional_text(event, "id", what),
                     details=_details(severity=event.get("severity") if kind in (HARD_BOUNCE, SOFT_BOUNCE) else None,
                                      reason=event.get("reason"),
                                      code=str(code) if isinstance(code, int) and not isinstance(code, bool)
                                      and 0 <= code < 1000 else None))]


# --- Postmark -------------------------------------------------------------------------------------------------

_POSTMARK_BOUNCES = {
    "HardBounce": HARD_BOUNCE, "BadEmailAddress": HARD_BOUNCE, "ManuallyDeactivated": HARD_BOUNCE,
    "SoftBounce": SOFT_BOUNCE, "Transient": SOFT_BOUNCE, "DnsError": SOFT_BOUNCE, "Blocked": SOFT_BOUNCE,
    "SpamNotification": SOFT_BOUNCE, "SpamComplaint": COMPLAINT,
}


def _postmark_authorised(header: str | None, user: str, password: str) -> None:
    if not header:
        raise Rejected(401, "the Postmark credentials are missing")
    scheme, _, encoded = header.strip().partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True) if scheme.lower() == "basic" else b""
    except ValueError:
        given = b""
    given_user, colon, given_password = given.partition(b":")
    # both compared, always: the time taken says nothing of which one was wrong
    user_ok = hmac.compare_digest(given_user, user.encode("utf-8", "surrogatepass"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8", "surrogatepass"))
    if not (colon and user_ok and password_ok):
        raise Rejected(401, "the Postmark credentials do not match")


def _postmark(request: ProviderRequest, secrets: Mapping[str, str], now: datetime, fetch: Fetch) -> Parsed:
    user, password = secrets.get("postmark_username"), secrets.get("postmark_password")
    if not user or not password:
        raise Rejected(503, "Postmark feedback is not configured on this server (no username and password)")
    _postmark_authorised(request.headers.get("authorization"), user, password)
    record = _object(_json(request.body, "Postmark"), "the Postmark record")
    record_type = _text(record, "RecordType", "the Postmark record")
    if record_type in ("Bounce", "SpamComplaint"):
        return Parsed(_postmark_bounce(record, record_type))
    if record_type == "Delivery":
        return Parsed([_postmark_delivery(record)])
    return Parsed([])  # Open, Click, SubscriptionChange: mauto has its own


def _postmark_bounce(record: dict[str, Any], record_type: str) -> list[Feedback]:
    what = "the Postmark record"
    bounce_type = _text(record, "Type", what)
    kind = COMPLAINT if record_type == "SpamComplaint" else _POSTMARK_BOUNCES.get(bounce_type)
    if kind is None:
        return []
    number = record.get("ID")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 1 << 63:
        raise Rejected(400, f"{what}'s `ID` is not a number")
    at_text = _optional_text(record, "BouncedAt", what, limit=100)
    reason = _optional_text(record, "Details", what, limit=10_000) or \
        _optional_text(record, "Description", what, limit=10_000)
    return [Feedback(kind, "postmark", address=_text(record, "Email", what), ref=_metadata_ref(record.get("Metadata")),
                     provider_id=_optional_text(record, "MessageID", what),
                     at=_iso_moment(at_text, f"{what}'s `BouncedAt`") if at_text else None, reason=_line(reason),
                     id=f"{record_type}:{number}", details=_details(type=bounce_type))]


def _postmark_delivery(record: dict[str, Any]) -> Feedback:
    what = "the Postmark record"
    address = _text(record, "Recipient", what)
    message_id = _text(record, "MessageID", what)
    at_text = _optional_text(record, "DeliveredAt", what, limit=100)
    # a delivery record has no ID of its own: one message is delivered to one recipient once
    return Feedback(DELIVERED, "postmark", address=address, ref=_metadata_ref(record.get("Metadata")),
                    provider_id=message_id, at=_iso_moment(at_text, f"{what}'s `DeliveredAt`") if at_text else None,
                    reason=_line(_optional_text(record, "Details", what, limit=10_000)),
                    id=f"Delivery:{message_id}:{address}")


# --- Twilio inbound SMS -----------------------------------------------------------------------------------------

EMPTY_TWIML = ("text/xml", b'<?xml version="1.0" encoding="UTF-8"?><Response/>')
STOP_WORDS = frozenset({"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                        "opt out", "opt-out", "arret", "arrêt"})
_PUNCTUATION = ".!?,;:'\"()[]¡¿"


def is_stop(text: str) -> bool:
    """Whether an SMS reply is an opt-out keyword and nothing else (STOP_WORDS; case, surrounding spaces and
    punctuation aside): "Stop." is one, "stop texting me" is not, as for Twilio and the carriers."""
    words = " ".join(unicodedata.normalize("NFC", text).strip().strip(_PUNCTUATION).split())
    return words.casefold() in STOP_WORDS


def _url_variants(url: str) -> list[str]:
    """The URL as seen, without its port, and with the scheme's default port: Twilio signs the URL as it was
    configured, which a proxy in front of the server may show otherwise (Twilio's libraries try the same)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return [url]
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    default = 443 if parts.scheme == "https" else 80
    return list(dict.fromkeys([url, parts._replace(netloc=host).geturl(),
                               parts._replace(netloc=f"{host}:{default}").geturl()]))


def _twilio_signature(token: str, url: str, params: list[tuple[str, str]]) -> str:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.encode("utf-8", "surrogatepass"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _twilio(request: ProviderRequest, secrets: Mapping[str, str], now: datetime, fetch: Fetch) -> Parsed:
    token = (secrets.get("twilio_auth_token") or "").strip()
    if not token:
        raise Rejected(503, "Twilio inbound SMS is not configured on this server (no auth token)")
    signature = request.headers.get("x-twilio-signature")
    if not signature:
        raise Rejected(401, "the Twilio signature header is missing")
    try:
        params = urllib.parse.parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict",
                                        max_num_fields=1000)
    except ValueError:  # UnicodeDecodeError, and too many fields
        raise Rejected(400, "the Twilio body is not a UTF-8 form") from None
    if not _is_text(request.url, 10_000):
        raise Rejected(400, "the request URL is not text")
    given = signature.strip().encode("utf-8", "surrogatepass")
    matches = [hmac.compare_digest(_twilio_signature(token, url, params).encode("ascii"), given)
               for url in _url_variants(request.url)]
    if not any(matches):
        raise Rejected(401, "the Twilio signature does not verify")
    first = dict(reversed(params))  # a name given twice: its first value
    sender = first.get("From", "").strip()
    if not sender:
        raise Rejected(400, "the Twilio request has no `From`")
    text = first.get("Body", "")
    if not (is_stop(text) or first.get("OptOutType", "").strip().upper() == "STOP"):
        return Parsed([], answer=EMPTY_TWIML)
    return Parsed([Feedback(SMS_STOP, "twilio", "sms", address=sender, id=first.get("MessageSid") or None,
                            reason=_line(f"replied {' '.join(text.split())[:40]!r}"))], answer=EMPTY_TWIML)


PROVIDERS: dict[str, Parser] = {
    "ses": _ses,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "postmark": _postmark,
    "twilio": _twilio,
}
