"""The provider webhooks of `mauto serve` (mauto/serve/providers.py): each provider's signing checked the way
that provider documents it, with the tests' own keys; each sample shaped as the provider's documentation shows
(the page is cited above each one). Amazon SNS certificates are served by a real HTTP server on 127.0.0.1,
reached through a `fetch` that maps the amazonaws.com URL's path onto it: nothing here contacts AWS."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mauto.feedback import COMPLAINT, DELIVERED, HARD_BOUNCE, SMS_STOP, SOFT_BOUNCE, Feedback
from mauto.serve import providers
from mauto.serve.providers import PROVIDERS, Parsed, ProviderRequest, Rejected, parse
from tests.servers import HttpServer

NOW = datetime.now(UTC).replace(microsecond=0)
REF = "AbCdEfGhIjKlMnOpQrStUv"  # a message's ref: 22 base64url characters (mauto.links)
OTHER_REF = "zyxwvutsrqponmlkjihg-_"
TOPIC = "arn:aws:sns:eu-west-3:123456789012:mauto-feedback"


# --- Amazon SES through Amazon SNS ------------------------------------------------------------------------


@dataclass
class SnsKeys:
    key: rsa.RSAPrivateKey
    pem: bytes
    server: HttpServer

    def cert_url(self) -> str:
        """A certificate URL of its own (the module caches certificates by URL), served by the local server."""
        path = f"/SimpleNotificationService-{uuid.uuid4().hex}.pem"
        self.server.respond(path, 200, text=self.pem.decode("ascii"))
        return f"https://sns.eu-west-3.amazonaws.com{path}"

    def fetch(self, url: str) -> bytes:
        """What AWS would answer, from the local server: the URL's host is AWS's, its path and query the local
        server's."""
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.hostname.endswith(".amazonaws.com")
        local = self.server.url(parts.path + ("?" + parts.query if parts.query else ""))
        with urllib.request.urlopen(local, timeout=5) as answer:
            return answer.read()

    def fetched(self) -> list[str]:
        return [request.path for request in self.server.requests]


def _certificate(key: rsa.RSAPrivateKey, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(not_before)
                   .not_valid_after(not_after).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsKeys]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with HttpServer() as server:
        yield SnsKeys(key, _certificate(key, NOW - timedelta(days=1), NOW + timedelta(days=30)), server)


_SNS_FIELDS = {  # https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message-verify-message-signature.html
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_message(keys: SnsKeys, message: str, *, kind: str = "Notification", version: str = "1",
                topic: str = TOPIC, at: datetime = NOW, cert_url: str | None = None,
                subject: str | None = None, key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    """An SNS message to an HTTP(S) endpoint, signed as SNS signs: the JSON document of
    https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html"""
    message_id = str(uuid.uuid4())
    envelope: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message,
        "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "SignatureVersion": version,
        "SigningCertURL": cert_url or keys.cert_url(),
    }
    if subject is not None:
        envelope["Subject"] = subject
    if kind == "Notification":
        envelope["UnsubscribeURL"] = ("https://sns.eu-west-3.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
                                      f"{TOPIC}:c9135db0-26c4-47ec-8998-413945fb5a96")
    else:
        envelope["Token"] = "2336412f37fb687f5d51e6e2425dacbba" + uuid.uuid4().hex
        envelope["SubscribeURL"] = ("https://sns.eu-west-3.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                                    f"{TOPIC}&Token={envelope['Token']}")
    canonical = "".join(f"{name}\n{envelope[name]}\n" for name in _SNS_FIELDS[kind] if name in envelope)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    envelope["Signature"] = base64.b64encode((key or keys.key).sign(canonical.encode("utf-8"), padding.PKCS1v15(),
                                                                    digest)).decode("ascii")
    return envelope


def sns_request(envelope: dict[str, Any], body: bytes | None = None) -> ProviderRequest:
    return ProviderRequest("https://mauto.example.com/v1/providers/ses",
                           {"content-type": "text/plain; charset=UTF-8",
                            "x-amz-sns-message-type": envelope["Type"],
                            "x-amz-sns-topic-arn": envelope["TopicArn"]},
                           body if body is not None else json.dumps(envelope).encode("utf-8"))


SES_SECRETS = {"ses_topic_arn": TOPIC}


def ses_mail(*, headers: list[dict[str, str]] | None = None, source: str = "john@example.com") -> dict[str, Any]:
    """The `mail` object of https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html#mail-object
    (the example of https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html)."""
    return {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "source": source,
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "callerIdentity": "IAM_user_or_role_name",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
        "headersTruncated": False,
        "headers": headers if headers is not None else [
            {"name": "From", "value": "\"John Doe\" <john@example.com>"},
            {"name": "To", "value": "\"Jane Doe\" <jane@example.com>, \"Mary Doe\" <mary@example.com>"},
            {"name": "Message-ID", "value": "custom-message-ID"},
            {"name": "X-Mauto-Ref", "value": REF},
            {"name": "Subject", "value": "Hello"},
        ],
        "commonHeaders": {
            "from": ["John Doe <john@example.com>"],
            "date": "Wed, 27 Jan 2016 14:05:45 +0000",
            "to": ["Jane Doe <jane@example.com>, Mary Doe <mary@example.com>, Richard Doe <richard@example.com>"],
            "messageId": "custom-message-ID",
            "subject": "Hello",
        },
    }


def ses_bounce(bounce_type: str = "Permanent", **mail: Any) -> dict[str, Any]:
    """"Bounce notification with a DSN", https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html"""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "reportingMTA": "dns; email.example.com",
            "bouncedRecipients": [
                {"emailAddress": "jane@example.com", "status": "5.1.1", "action": "failed",
                 "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User"},
            ],
            "bounceSubType": "General",
            "timestamp": "2016-01-27T14:59:38.237Z",
            "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
            "remoteMtaIp": "127.0.2.0",
        },
        "mail": ses_mail(**mail),
    }


def ses_complaint() -> dict[str, Any]:
    """"Complaint notification with a feedback report", same page."""
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": "richard@example.com"}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2016-01-27T14:59:38.237Z",
            "timestamp": "2016-01-27T14:59:38.237Z",
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": ses_mail(),
    }


def ses_delivery() -> dict[str, Any]:
    """"Amazon SNS delivery notification example", same page."""
    return {
        "notificationType": "Delivery",
        "mail": ses_mail(),
        "delivery": {
            "timestamp": "2016-01-27T14:59:38.237Z",
            "recipients": ["jane@example.com", "mary@example.com"],
            "processingTimeMillis": 546,
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "remoteMtaIp": "127.0.2.0",
        },
    }


def parse_ses(keys: SnsKeys, envelope: dict[str, Any], secrets: dict[str, str] | None = None,
              now: datetime = NOW) -> Parsed:
    return parse("ses", sns_request(envelope), SES_SECRETS if secrets is None else secrets, now, keys.fetch)


def rejected(call: Callable[[], Any]) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce_is_a_hard_bounce_of_the_message_named_by_its_header(sns: SnsKeys, version: str) -> None:
    envelope = sns_message(sns, json.dumps(ses_bounce()), version=version)
    parsed = parse_ses(sns, envelope)
    assert parsed == Parsed([Feedback(
        HARD_BOUNCE, "ses", "email", "jane@example.com", REF,
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC), "smtp; 550 5.1.1 <jane@example.com>... User",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000:jane@example.com",
        {"bounce_type": "Permanent", "bounce_subtype": "General", "status": "5.1.1"})])


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_ses_transient_and_undetermined_bounces_are_soft(sns: SnsKeys, bounce_type: str) -> None:
    parsed = parse_ses(sns, sns_message(sns, json.dumps(ses_bounce(bounce_type))))
    assert [(item.kind, item.address) for item in parsed.feedback] == [(SOFT_BOUNCE, "jane@example.com")]


def test_ses_complaint_and_delivery(sns: SnsKeys) -> None:
    complaint = parse_ses(sns, sns_message(sns, json.dumps(ses_complaint()), version="2")).feedback
    assert [(item.kind, item.address, item.ref, item.details) for item in complaint] == \
        [(COMPLAINT, "richard@example.com", REF, {"feedback_type": "abuse"})]
    delivery = parse_ses(sns, sns_message(sns, json.dumps(ses_delivery()))).feedback
    assert [(item.kind, item.address, item.reason) for item in delivery] == [
        (DELIVERED, "jane@example.com", "250 ok: Message 64111812 accepted"),
        (DELIVERED, "mary@example.com", "250 ok: Message 64111812 accepted")]
    assert len({item.id for item in delivery}) == 2  # one notification, two recipients: two records, not one


def test_ses_ref_from_the_verp_sender_or_the_list_unsubscribe_url(sns: SnsKeys) -> None:
    verp = ses_bounce(headers=[], source=f"bounces+{REF}@mail.example.com")
    assert parse_ses(sns, sns_message(sns, json.dumps(verp))).feedback[0].ref == REF
    unsubscribe = ses_bounce(headers=[{"name": "List-Unsubscribe",
                                       "value": f"<https://mauto.example.com/u/{OTHER_REF}.abcdefghijklmnop>"}])
    assert parse_ses(sns, sns_message(sns, json.dumps(unsubscribe))).feedback[0].ref == OTHER_REF
    assert parse_ses(sns, sns_message(sns, json.dumps(ses_bounce(headers=[])))).feedback[0].ref is None


def test_ses_event_publishing_and_other_messages(sns: SnsKeys) -> None:
    # Event publishing names the type `eventType` (notification-contents.html) and may carry tags.
    event = ses_bounce(headers=[])
    event["eventType"] = event.pop("notificationType")
    event["mail"]["tags"] = {"mauto_ref": [REF]}
    assert [(item.kind, item.ref) for item in parse_ses(sns, sns_message(sns, json.dumps(event))).feedback] == \
        [(HARD_BOUNCE, REF)]
    # What SES itself publishes when the topic is set up, and events mauto does not take: nothing, no error.
    text = "Successfully validated SNS topic for Amazon SES event destination."
    assert parse_ses(sns, sns_message(sns, text)) == Parsed([])
    assert parse_ses(sns, sns_message(sns, json.dumps({"eventType": "Open", "mail": ses_mail()}))) == Parsed([])


def test_ses_subscription_confirmation_gives_the_url_to_confirm(sns: SnsKeys) -> None:
    envelope = sns_message(sns, "You have chosen to subscribe to the topic.", kind="SubscriptionConfirmation")
    assert parse_ses(sns, envelope) == Parsed([], confirm_url=envelope["SubscribeURL"])
    unsubscribed = sns_message(sns, "You have chosen to deactivate subscription.", kind="UnsubscribeConfirmation")
    assert parse_ses(sns, unsubscribed) == Parsed([])


def test_ses_subscribe_url_elsewhere_is_not_confirmed(sns: SnsKeys) -> None:
    envelope = sns_message(sns, "subscribe", kind="SubscriptionConfirmation")
    envelope["SubscribeURL"] = "https://evil.example.com/?Action=ConfirmSubscription"
    canonical = "".join(f"{name}\n{envelope[name]}\n" for name in _SNS_FIELDS["SubscriptionConfirmation"])
    envelope["Signature"] = base64.b64encode(sns.key.sign(canonical.encode(), padding.PKCS1v15(),
                                                          hashes.SHA1())).decode()
    error = rejected(lambda: parse_ses(sns, envelope))
    assert (error.status, error.reason) == (422, "the SubscribeURL is not an Amazon SNS URL: not confirmed")


def test_ses_confirm_gets_the_subscribe_url(sns: SnsKeys) -> None:
    sns.server.respond("/", 200, text="<ConfirmSubscriptionResponse/>")
    envelope = sns_message(sns, "You have chosen to subscribe to the topic.", kind="SubscriptionConfirmation")
    url = parse_ses(sns, envelope).confirm_url
    assert url is not None
    before = len(sns.server.requests)
    providers.confirm(url, sns.fetch)
    assert [(request.method, request.path) for request in sns.server.requests[before:]] == \
        [("GET", "/" + url.split("/", 3)[3])]

    error = rejected(lambda: providers.confirm("https://evil.example.com/?Action=ConfirmSubscription", sns.fetch))
    assert (error.status, error.reason) == (422, "the SubscribeURL is not an Amazon SNS URL: not confirmed")

    def failing(url: str) -> bytes:
        raise OSError("connection reset")

    error = rejected(lambda: providers.confirm(url, failing))
    assert (error.status, error.reason) == (503, "could not confirm the Amazon SNS subscription")
    assert len(sns.server.requests) == before + 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x.pem", "https://127.0.0.1:9/x.pem", "file:///etc/passwd",
                                 "https://sns.eu-west-3.amazonaws.com.evil.example.com/x.pem"])
def test_default_fetch_refuses_what_is_not_amazon_sns(url: str) -> None:
    with pytest.raises(ValueError, match="not an Amazon SNS URL"):
        providers.fetch_sns(url)


def test_ses_bad_signature_and_tampered_message(sns: SnsKeys) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = sns_message(sns, json.dumps(ses_bounce()), key=other)
    error = rejected(lambda: parse_ses(sns, forged))
    assert (error.status, error.reason) == (401, "the Amazon SNS signature does not verify")
    tampered = sns_message(sns, json.dumps(ses_bounce()))
    tampered["Message"] = tampered["Message"].replace("jane@example.com", "victim@example.com")
    error = rejected(lambda: parse_ses(sns, tampered))
    assert (error.status, error.reason) == (401, "the Amazon SNS signature does not verify")
    garbled = sns_message(sns, json.dumps(ses_bounce()))
    garbled["Signature"] = "not base64!"
    assert rejected(lambda: parse_ses(sns, garbled)).status == 401


def test_ses_stale_timestamp_is_a_replay(sns: SnsKeys) -> None:
    old = sns_message(sns, json.dumps(ses_bounce()), at=NOW - timedelta(hours=1, seconds=1))
    error = rejected(lambda: parse_ses(sns, old))
    assert (error.status, error.reason) == \
        (401, "the Amazon SNS timestamp is more than 60 minutes from now: a replay, or a clock that is off")
    within = sns_message(sns, json.dumps(ses_bounce()), at=NOW - timedelta(minutes=59))
    assert len(parse_ses(sns, within).feedback) == 1


@pytest.mark.parametrize("url", [
    "https://evil.example.com/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-3.amazonaws.com.evil.example.com/SimpleNotificationService-abc.pem",
    "https://s3.amazonaws.com/sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.pem",
    "http://sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.txt",
    "https://sns.eu-west-3.amazonaws.com:8443/SimpleNotificationService-abc.pem",
    "https://user@sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
    "https://127.0.0.1/SimpleNotificationService-abc.pem",
])
def test_ses_certificate_url_off_amazon_sns_is_not_fetched(sns: SnsKeys, url: str) -> None:
    before = len(sns.server.requests)
    fetched: list[str] = []

    def fetch(wanted: str) -> bytes:
        fetched.append(wanted)
        return sns.fetch(wanted)

    envelope = sns_message(sns, json.dumps(ses_bounce()), cert_url=url)
    error = rejected(lambda: parse("ses", sns_request(envelope), SES_SECRETS, NOW, fetch))
    assert (error.status, error.reason) == \
        (401, "the SigningCertURL is not an Amazon SNS certificate URL: not fetched")
    assert fetched == [] and len(sns.server.requests) == before


def test_ses_china_region_certificate_url_is_accepted(sns: SnsKeys) -> None:
    path = f"/SimpleNotificationService-{uuid.uuid4().hex}.pem"
    sns.server.respond(path, 200, text=sns.pem.decode())
    envelope = sns_message(sns, json.dumps(ses_bounce()), cert_url=f"https://sns.cn-north-1.amazonaws.com.cn{path}")
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        with urllib.request.urlopen(sns.server.url(urllib.parse.urlsplit(url).path), timeout=5) as answer:
            return answer.read()

    assert len(parse("ses", sns_request(envelope), SES_SECRETS, NOW, fetch).feedback) == 1
    assert fetched == [envelope["SigningCertURL"]]


def test_ses_certificate_fetched_once_then_cached(sns: SnsKeys) -> None:
    url = sns.cert_url()
    path = urllib.parse.urlsplit(url).path
    for _ in range(3):
        assert len(parse_ses(sns, sns_message(sns, json.dumps(ses_bounce()), cert_url=url)).feedback) == 1
    assert sns.fetched().count(path) == 1


def test_ses_other_topic_is_refused_before_any_fetch(sns: SnsKeys) -> None:
    before = len(sns.server.requests)
    envelope = sns_message(sns, json.dumps(ses_bounce()), topic="arn:aws:sns:us-east-1:999999999999:attacker")
    error = rejected(lambda: parse_ses(sns, envelope))
    assert (error.status, error.reason) == (403, "this Amazon SNS topic is not accepted here")
    assert len(sns.server.requests) == before
    # Several topics (SES may publish bounces, complaints and deliveries to three) are accepted, each one.
    other = "arn:aws:sns:eu-west-3:123456789012:mauto-deliveries"
    assert parse_ses(sns, sns_message(sns, json.dumps(ses_delivery()), topic=other),
                     {"ses_topic_arn": f"{TOPIC}, {other}"}).feedback


def test_ses_missing_topic_secret_is_not_configured(sns: SnsKeys) -> None:
    before = len(sns.server.requests)
    error = rejected(lambda: parse_ses(sns, sns_message(sns, json.dumps(ses_bounce())), {}))
    assert (error.status, error.reason) == \
        (503, "Amazon SES feedback is not configured on this server (no SNS topic ARN)")
    assert len(sns.server.requests) == before


def test_ses_certificate_unreachable_expired_or_not_a_certificate(sns: SnsKeys) -> None:
    def failing(url: str) -> bytes:
        raise OSError("connection refused")

    envelope = sns_message(sns, json.dumps(ses_bounce()))
    error = rejected(lambda: parse("ses", sns_request(envelope), SES_SECRETS, NOW, failing))
    assert (error.status, error.reason) == (503, "could not fetch the Amazon SNS signing certificate")

    expired = _certificate(sns.key, NOW - timedelta(days=30), NOW - timedelta(days=1))
    envelope = sns_message(sns, json.dumps(ses_bounce()))
    error = rejected(lambda: parse("ses", sns_request(envelope), SES_SECRETS, NOW, lambda url: expired))
    assert (error.status, error.reason) == (401, "the Amazon SNS signing certificate is not valid now")

    envelope = sns_message(sns, json.dumps(ses_bounce()))
    error = rejected(lambda: parse("ses", sns_request(envelope), SES_SECRETS, NOW, lambda url: b"<html>"))
    assert (error.status, error.reason) == (401, "the Amazon SNS signing certificate is not a PEM certificate")


def test_ses_malformed_envelopes(sns: SnsKeys) -> None:
    def status(body: bytes) -> tuple[int, str]:
        error = rejected(lambda: parse("ses", ProviderRequest("https://x/v1/providers/ses", {}, body), SES_SECRETS,
                                       NOW, sns.fetch))
        return error.status, error.reason

    assert status(b"\xff\xfe") == (400, "the Amazon SNS body is not UTF-8")
    assert status(b"{") == (400, "the Amazon SNS body is not JSON")
    assert status(b"[" * 100_000 + b"]" * 100_000) == (400, "the Amazon SNS body is not JSON")
    assert status(b"[]") == (400, "the Amazon SNS message is not a JSON object")
    assert status(b'{"Type": "Notification"}') == \
        (400, "the Amazon SNS message has no `Message` (text of at most 524288 characters)")
    assert status(b'{"Type": "Notification", "Message": ""}') == (400, "the Amazon SNS message has no `MessageId`")
    assert status(b'{"Type": "Shout"}') == (400, "unknown Amazon SNS message type")
    envelope = sns_message(sns, json.dumps(ses_bounce()))
    envelope["Timestamp"] = "yesterday"
    assert status(json.dumps(envelope).encode()) == (400, "the Amazon SNS `Timestamp` is not an ISO 8601 time")
    envelope = sns_message(sns, json.dumps(ses_bounce()))
    envelope["MessageId"] = 12
    assert status(json.dumps(envelope).encode())[0] == 400
    envelope = sns_message(sns, json.dumps(ses_bounce()))
    envelope["Message"] = "\ud800"  # a lone surrogate: valid JSON, not text
    assert status(json.dumps(envelope).encode())[0] == 400


def test_ses_signed_but_unusable_notification(sns: SnsKeys) -> None:
    broken = ses_bounce()
    broken["bounce"]["bouncedRecipients"] = "jane@example.com"
    error = rejected(lambda: parse_ses(sns, sns_message(sns, json.dumps(broken))))
    assert (error.status, error.reason) == (400, "the SES bounce's `bouncedRecipients` is not a list")
    broken = ses_bounce()
    broken["bounce"]["timestamp"] = "9999-12-31T23:59:59Z"
    error = rejected(lambda: parse_ses(sns, sns_message(sns, json.dumps(broken))))
    assert error.status == 400 and "outside the times mauto handles" in error.reason


# --- SendGrid -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public(key: ec.EllipticCurvePrivateKey, pem: bool = False) -> str:
    """The verification key as SendGrid's settings show it: base64 of the DER public key (or PEM)."""
    public = key.public_key()
    if pem:
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def sendgrid_request(key: ec.EllipticCurvePrivateKey, body: bytes, at: datetime = NOW) -> ProviderRequest:
    """Signed as https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
    says: ECDSA (P-256, SHA-256) over the timestamp header followed by the raw body."""
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return ProviderRequest("https://mauto.example.com/v1/providers/sendgrid", {
        "content-type": "application/json",
        "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode("ascii"),
        "x-twilio-email-event-webhook-timestamp": timestamp}, body)


def sendgrid_events() -> list[dict[str, Any]]:
    """Events as https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event shows them, with the
    custom argument `mauto_ref` (custom arguments are merged into each event)."""
    common = {"smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "category": "cat facts",
              "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "mauto_ref": REF}
    return [
        {"email": "example@test.com", "timestamp": 1513299569, "event": "processed", "sg_event_id": "e1", **common},
        {"email": "gone@test.com", "timestamp": 1513299569, "event": "bounce", "sg_event_id": "e2",
         "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce", **common},
        {"email": "blocked@test.com", "timestamp": 1513299569, "event": "bounce", "sg_event_id": "e3",
         "reason": "550 blocked by policy", "status": "5.7.1", "type": "blocked", **common},
        {"email": "again@test.com", "timestamp": 1513299569, "event": "dropped", "sg_event_id": "e4",
         "reason": "Bounced Address", "status": "5.0.0", **common},
        {"email": "not an address", "timestamp": 1513299569, "event": "dropped", "sg_event_id": "e5",
         "reason": "Invalid", "status": "5.0.0", **common},
        {"email": "left@test.com", "timestamp": 1513299569, "event": "dropped", "sg_event_id": "e6",
         "reason": "Unsubscribed Address", "status": "5.0.0", **common},
        {"email": "later@test.com", "timestamp": 1513299569, "event": "deferred", "sg_event_id": "e7",
         "response": "400 try again later", "attempt": "5", **common},
        {"email": "example@test.com", "timestamp": 1513299569, "event": "delivered", "sg_event_id": "e8",
         "response": "250 OK", **common},
        {"email": "angry@test.com", "timestamp": 1513299569, "event": "spamreport", "sg_event_id": "e9", **common},
        {"email": "example@test.com", "timestamp": 1513299569, "event": "open", "sg_event_id": "e10",
         "useragent": "Mozilla/4.0", "ip": "255.255.255.255", **common},
    ]


def test_sendgrid_events(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    body = json.dumps(sendgrid_events()).encode()
    parsed = parse("sendgrid", sendgrid_request(sendgrid_key, body),
                   {"sendgrid_public_key": sendgrid_public(sendgrid_key)}, NOW)
    at = datetime.fromtimestamp(1513299569, UTC)
    assert parsed == Parsed([
        Feedback(HARD_BOUNCE, "sendgrid", "email", "gone@test.com", REF, "14c5d75ce93.dfd.64b469", at,
                 "500 unknown recipient", "e2", {"status": "5.0.0"}),
        Feedback(SOFT_BOUNCE, "sendgrid", "email", "blocked@test.com", REF, "14c5d75ce93.dfd.64b469", at,
                 "550 blocked by policy", "soft:14c5d75ce93.dfd.64b469:blocked@test.com",
                 {"status": "5.7.1", "type": "blocked"}),
        Feedback(HARD_BOUNCE, "sendgrid", "email", "again@test.com", REF, "14c5d75ce93.dfd.64b469", at,
                 "Bounced Address", "e4", {"status": "5.0.0"}),
        Feedback(HARD_BOUNCE, "sendgrid", "email", "not an address", REF, "14c5d75ce93.dfd.64b469", at,
                 "Invalid", "e5", {"status": "5.0.0"}),
        Feedback(DELIVERED, "sendgrid", "email", "example@test.com", REF, "14c5d75ce93.dfd.64b469", at,
                 "250 OK", "e8"),
        Feedback(COMPLAINT, "sendgrid", "email", "angry@test.com", REF, "14c5d75ce93.dfd.64b469", at, "", "e9"),
    ])


def test_sendgrid_pem_key_and_spam_reporting_drop(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    body = json.dumps([{"email": "a@test.com", "timestamp": 1513299569, "event": "dropped",
                        "reason": "Spam Reporting Address", "sg_event_id": "x1"}]).encode()
    parsed = parse("sendgrid", sendgrid_request(sendgrid_key, body),
                   {"sendgrid_public_key": sendgrid_public(sendgrid_key, pem=True)}, NOW)
    assert [(item.kind, item.address, item.ref, item.provider_id) for item in parsed.feedback] == \
        [(COMPLAINT, "a@test.com", None, None)]


def test_sendgrid_bad_signature_tampered_body_stale_timestamp(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    secrets = {"sendgrid_public_key": sendgrid_public(sendgrid_key)}
    body = json.dumps(sendgrid_events()).encode()
    other = ec.generate_private_key(ec.SECP256R1())
    error = rejected(lambda: parse("sendgrid", sendgrid_request(other, body), secrets, NOW))
    assert (error.status, error.reason) == (401, "the SendGrid signature does not verify")

    signed = sendgrid_request(sendgrid_key, body)
    tampered = ProviderRequest(signed.url, signed.headers, body.replace(b"gone@test.com", b"victim@test.com"))
    error = rejected(lambda: parse("sendgrid", tampered, secrets, NOW))
    assert (error.status, error.reason) == (401, "the SendGrid signature does not verify")

    old = sendgrid_request(sendgrid_key, body, NOW - timedelta(minutes=10, seconds=1))
    error = rejected(lambda: parse("sendgrid", old, secrets, NOW))
    assert (error.status, error.reason) == \
        (401, "the SendGrid timestamp is more than 10 minutes from now: a replay, or a clock that is off")
    assert parse("sendgrid", sendgrid_request(sendgrid_key, body, NOW - timedelta(minutes=9)), secrets, NOW).feedback

    unsigned = ProviderRequest(signed.url, {"content-type": "application/json"}, body)
    error = rejected(lambda: parse("sendgrid", unsigned, secrets, NOW))
    assert (error.status, error.reason) == (401, "the SendGrid signature headers are missing")
    bad_time = ProviderRequest(signed.url, {**signed.headers, "x-twilio-email-event-webhook-timestamp": "١٢٣"}, body)
    assert rejected(lambda: parse("sendgrid", bad_time, secrets, NOW)).status == 401


def test_sendgrid_missing_or_unusable_key(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    request = sendgrid_request(sendgrid_key, json.dumps(sendgrid_events()).encode())
    error = rejected(lambda: parse("sendgrid", request, {}, NOW))
    assert (error.status, error.reason) == \
        (503, "SendGrid feedback is not configured on this server (no verification key)")
    rsa_der = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for key in ("not a key", base64.b64encode(rsa_der).decode()):
        error = rejected(lambda key=key: parse("sendgrid", request, {"sendgrid_public_key": key}, NOW))
        assert (error.status, error.reason) == \
            (503, "the SendGrid verification key configured here is not a P-256 public key")


def test_sendgrid_signed_but_malformed(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    secrets = {"sendgrid_public_key": sendgrid_public(sendgrid_key)}
    for body, reason in [(b'{"event": "bounce"}', "the SendGrid body is not a JSON array of events"),
                         (b'[1]', "a SendGrid event is not a JSON object"),
                         (b'[{"event": "bounce"}]', "the SendGrid event has no `email`"),
                         (b'[{"event": "bounce", "email": "a@b", "timestamp": 1e999}]',
                          "the SendGrid event's `timestamp` is not a time in seconds")]:
        error = rejected(lambda body=body: parse("sendgrid", sendgrid_request(sendgrid_key, body), secrets, NOW))
        assert (error.status, error.reason) == (400, reason)


# --- Mailgun ------------------------------------------------------------------------------------------------

MAILGUN_KEY = "key-4b2e7a0d8c1f6e9a3b5d7c2e1f0a9b8c"


def mailgun_body(event_data: dict[str, Any], *, at: datetime = NOW, token: str | None = None,
                 key: str = MAILGUN_KEY) -> bytes:
    """A webhook as https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks
    signs it: HMAC-SHA256 (hex) of the timestamp followed by the token, with the webhook signing key."""
    timestamp = str(int(at.timestamp()))
    token = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]  # 50 characters, as Mailgun's
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def mailgun_failed(severity: str = "permanent") -> dict[str, Any]:
    """The "failed" event-data of https://documentation.mailgun.com/docs/mailgun/user-manual/events/ (permanent
    failure example), with `mauto_ref` among the user variables."""
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1521233195.375624,
        "log-level": "error",
        "event": "failed",
        "severity": severity,
        "reason": "suppress-bounce" if severity == "permanent" else "generic",
        "delivery-status": {"attempt-no": 1, "message": "", "code": 605,
                            "description": "Not delivering to previously bounced address", "session-seconds": 0.0},
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "envelope": {"sender": "bob@sandbox.mailgun.org", "transport": "smtp", "targets": "alice@example.com"},
        "message": {"headers": {"to": "Alice <alice@example.com>",
                                "message-id": "20130503192659.13651.20287@sandbox.mailgun.org",
                                "from": "Bob <bob@sandbox.mailgun.org>", "subject": "Test permanent_fail webhook"},
                    "attachments": [], "size": 111},
        "recipient": "alice@example.com",
        "recipient-domain": "example.com",
        "campaigns": [],
        "tags": ["my_tag_1", "my_tag_2"],
        "user-variables": {"my_var_1": "Mailgun Variable #1", "mauto_ref": REF},
    }


def mailgun_request(body: bytes) -> ProviderRequest:
    return ProviderRequest("https://mauto.example.com/v1/providers/mailgun", {"content-type": "application/json"},
                           body)


MAILGUN_SECRETS = {"mailgun_signing_key": MAILGUN_KEY}


def test_mailgun_permanent_failure_is_a_hard_bounce() -> None:
    parsed = parse("mailgun", mailgun_request(mailgun_body(mailgun_failed())), MAILGUN_SECRETS, NOW)
    assert parsed == Parsed([Feedback(
        HARD_BOUNCE, "mailgun", "email", "alice@example.com", REF,
        "<20130503192659.13651.20287@sandbox.mailgun.org>", datetime.fromtimestamp(1521233195.375624, UTC),
        "Not delivering to previously bounced address", "G9Bn5sl1TC6nu79C8C0bwg",
        {"severity": "permanent", "reason": "suppress-bounce", "code": "605"})])


def test_mailgun_temporary_failure_complaint_delivery_and_others() -> None:
    def kinds(event_data: dict[str, Any]) -> list[str]:
        return [item.kind for item in parse("mailgun", mailgun_request(mailgun_body(event_data)), MAILGUN_SECRETS,
                                             NOW).feedback]

    assert kinds(mailgun_failed("temporary")) == [SOFT_BOUNCE]
    # complained / delivered / opened event-data, as the events page shows them
    base = {"id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1521233123.501324, "recipient": "alice@example.com",
            "message": {"headers": {"message-id": "20130503182626.18666.16540@sandbox.mailgun.org"}}}
    assert kinds({**base, "event": "complained"}) == [COMPLAINT]
    assert kinds({**base, "event": "delivered", "delivery-status": {"message": "OK", "code": 250}}) == [DELIVERED]
    assert kinds({**base, "event": "opened"}) == []
    verp = {**base, "event": "complained", "envelope": {"sender": f"bounces+{REF}@mail.example.com"}}
    assert parse("mailgun", mailgun_request(mailgun_body(verp)), MAILGUN_SECRETS, NOW).feedback[0].ref == REF


def test_a_soft_bounce_counts_once_per_message_and_address() -> None:
    """Mailgun posts a temporary failure at each retry of one message (each with its own event id): one soft
    bounce, not one per retry (the store suppresses an address at its third)."""
    first, second = mailgun_failed("temporary"), mailgun_failed("temporary")
    second["id"], second["timestamp"] = "Xk3TKnMJRXm9cZAWNWNhpg", 1521234995.0
    ids = [parse("mailgun", mailgun_request(mailgun_body(event)), MAILGUN_SECRETS, NOW).feedback[0].id
           for event in (first, second)]
    assert ids == ["soft:<20130503192659.13651.20287@sandbox.mailgun.org>:alice@example.com"] * 2
    records = [postmark_bounce("Transient"), {**postmark_bounce("SoftBounce"), "ID": 42}]
    ids = [parse("postmark", postmark_request(record), POSTMARK_SECRETS, NOW).feedback[0].id for record in records]
    assert ids == ["soft:883953f4-6105-42a2-a16a-77a8eac79483:john@example.com"] * 2
    # a hard bounce keeps the provider's own id; so does a soft bounce that names no message
    assert parse("mailgun", mailgun_request(mailgun_body(mailgun_failed())), MAILGUN_SECRETS, NOW).feedback[0].id == \
        "G9Bn5sl1TC6nu79C8C0bwg"
    anonymous = {**postmark_bounce("SoftBounce"), "MessageID": None, "Metadata": {}}
    assert parse("postmark", postmark_request(anonymous), POSTMARK_SECRETS, NOW).feedback[0].id == \
        "Bounce:4323372036854775807"


def test_mailgun_bad_signature_stale_timestamp_and_replayed_token() -> None:
    error = rejected(lambda: parse("mailgun", mailgun_request(mailgun_body(mailgun_failed(), key="key-other")),
                                   MAILGUN_SECRETS, NOW))
    assert (error.status, error.reason) == (401, "the Mailgun signature does not verify")

    # Mailgun signs the timestamp and the token only: changing either breaks the signature.
    payload = json.loads(mailgun_body(mailgun_failed()))
    payload["signature"]["token"] = "x" + payload["signature"]["token"][1:]
    error = rejected(lambda: parse("mailgun", mailgun_request(json.dumps(payload).encode()), MAILGUN_SECRETS, NOW))
    assert (error.status, error.reason) == (401, "the Mailgun signature does not verify")

    old = mailgun_body(mailgun_failed(), at=NOW - timedelta(minutes=10, seconds=1))
    error = rejected(lambda: parse("mailgun", mailgun_request(old), MAILGUN_SECRETS, NOW))
    assert (error.status, error.reason) == \
        (401, "the Mailgun timestamp is more than 10 minutes from now: a replay, or a clock that is off")

    # A token is single-use: the parse hands it on (`once`), and the write records it in the store, with the
    # feedback, in one transaction (tests/serve/test_feedback.py: a replay to another server, or after a restart,
    # is refused; tests/serve/test_pg_review.py: Mailgun's retry after a 503 is taken).
    body = mailgun_body(mailgun_failed())
    parsed = parse("mailgun", mailgun_request(body), MAILGUN_SECRETS, NOW)
    assert parsed.feedback and parsed.once == (json.loads(body)["signature"]["token"],
                                               "this Mailgun token was used before: a replay")


def test_mailgun_forged_token_is_not_remembered() -> None:
    """A request that does not verify must not use up its token: else anyone could block a real delivery."""
    token = uuid.uuid4().hex
    forged = mailgun_body(mailgun_failed(), token=token, key="key-other")
    assert rejected(lambda: parse("mailgun", mailgun_request(forged), MAILGUN_SECRETS, NOW)).status == 401
    assert parse("mailgun", mailgun_request(mailgun_body(mailgun_failed(), token=token)), MAILGUN_SECRETS,
                 NOW).feedback


def test_mailgun_subaccount_parent_signature() -> None:
    payload = json.loads(mailgun_body(mailgun_failed(), key="key-of-the-subaccount"))
    block = payload["signature"]
    block["parent-signature"] = hmac.new(MAILGUN_KEY.encode(), (block["timestamp"] + block["token"]).encode(),
                                         hashlib.sha256).hexdigest()
    assert parse("mailgun", mailgun_request(json.dumps(payload).encode()), MAILGUN_SECRETS, NOW).feedback


def test_mailgun_missing_key_and_malformed() -> None:
    error = rejected(lambda: parse("mailgun", mailgun_request(mailgun_body(mailgun_failed())), {}, NOW))
    assert (error.status, error.reason) == \
        (503, "Mailgun feedback is not configured on this server (no webhook signing key)")
    for body, status, reason in [
            (b"token=abc&timestamp=1&signature=00", 400, "the Mailgun body is not JSON"),
            (b'{"event-data": {}}', 401, "the Mailgun signature block is missing"),
            (b'{"signature": {"timestamp": "1", "token": "t", "signature": 5}, "event-data": {}}', 401,
             "the Mailgun signature block is malformed")]:
        error = rejected(lambda body=body: parse("mailgun", mailgun_request(body), MAILGUN_SECRETS, NOW))
        assert (error.status, error.reason) == (status, reason)
    error = rejected(lambda: parse("mailgun", mailgun_request(mailgun_body({"event": "failed"})), MAILGUN_SECRETS,
                                   NOW))
    assert (error.status, error.reason) == (400, "the Mailgun event-data has no `recipient`")


# --- Postmark -----------------------------------------------------------------------------------------------

POSTMARK_SECRETS = {"postmark_username": "postmark", "postmark_password": "s3cret: with colon"}


def postmark_request(record: dict[str, Any], user: str = "postmark",
                     password: str = "s3cret: with colon") -> ProviderRequest:
    """Basic HTTP authentication, as https://postmarkapp.com/developer/webhooks/webhooks-overview sets it up
    (`https://<username>:<password>@example.com/webhook`)."""
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ProviderRequest("https://mauto.example.com/v1/providers/postmark",
                           {"content-type": "application/json", "authorization": f"Basic {credentials}"},
                           json.dumps(record).encode())


def postmark_bounce(kind: str = "HardBounce", record_type: str = "Bounce") -> dict[str, Any]:
    """https://postmarkapp.com/developer/webhooks/bounce-webhook (and spam-complaint-webhook: the same record with
    RecordType SpamComplaint)."""
    return {
        "RecordType": record_type,
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"a_key": "a_value", "mauto_ref": REF},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "Test bounce details",
        "Email": "john@example.com",
        "From": "sender@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
        "Content": "Test content",
    }


def postmark_delivery() -> dict[str, Any]:
    """https://postmarkapp.com/developer/webhooks/delivery-webhook"""
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Recipient": "john@example.com",
        "Tag": "welcome-email",
        "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
        "Details": "Test delivery webhook details",
        "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    }


def test_postmark_bounces_complaints_and_deliveries() -> None:
    parsed = parse("postmark", postmark_request(postmark_bounce()), POSTMARK_SECRETS, NOW)
    assert parsed == Parsed([Feedback(
        HARD_BOUNCE, "postmark", "email", "john@example.com", REF, "883953f4-6105-42a2-a16a-77a8eac79483",
        datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC), "Test bounce details", "Bounce:4323372036854775807",
        {"type": "HardBounce"})])

    def kinds(record: dict[str, Any]) -> list[str]:
        return [item.kind for item in parse("postmark", postmark_request(record), POSTMARK_SECRETS, NOW).feedback]

    assert kinds(postmark_bounce("BadEmailAddress")) == [HARD_BOUNCE]
    assert kinds(postmark_bounce("SoftBounce")) == [SOFT_BOUNCE]
    assert kinds(postmark_bounce("Transient")) == [SOFT_BOUNCE]
    assert kinds(postmark_bounce("SpamComplaint")) == [COMPLAINT]
    assert kinds(postmark_bounce("SpamComplaint", "SpamComplaint")) == [COMPLAINT]
    assert kinds(postmark_bounce("AutoResponder")) == []
    assert kinds({"RecordType": "Open", "MessageID": "x", "Recipient": "john@example.com"}) == []
    delivery = parse("postmark", postmark_request(postmark_delivery()), POSTMARK_SECRETS, NOW).feedback
    assert [(item.kind, item.address, item.ref, item.id) for item in delivery] == \
        [(DELIVERED, "john@example.com", None, "Delivery:00000000-0000-0000-0000-000000000000:john@example.com")]


def test_postmark_credentials() -> None:
    for request in (postmark_request(postmark_bounce(), password="wrong"),
                    postmark_request(postmark_bounce(), user="someone"),
                    ProviderRequest("https://x", {"authorization": "Basic %%%"}, b"{}"),
                    ProviderRequest("https://x", {"authorization": "Bearer abc"}, b"{}")):
        error = rejected(lambda request=request: parse("postmark", request, POSTMARK_SECRETS, NOW))
        assert (error.status, error.reason) == (401, "the Postmark credentials do not match")
    error = rejected(lambda: parse("postmark", ProviderRequest("https://x", {}, b"{}"), POSTMARK_SECRETS, NOW))
    assert (error.status, error.reason) == (401, "the Postmark credentials are missing")
    error = rejected(lambda: parse("postmark", postmark_request(postmark_bounce()), {"postmark_username": "u"}, NOW))
    assert (error.status, error.reason) == \
        (503, "Postmark feedback is not configured on this server (no username and password)")


def test_postmark_malformed() -> None:
    record = postmark_bounce()
    record["ID"] = 10 ** 30
    error = rejected(lambda: parse("postmark", postmark_request(record), POSTMARK_SECRETS, NOW))
    assert (error.status, error.reason) == (400, "the Postmark record's `ID` is not a number")
    record = postmark_bounce()
    del record["Email"]
    error = rejected(lambda: parse("postmark", postmark_request(record), POSTMARK_SECRETS, NOW))
    assert (error.status, error.reason) == (400, "the Postmark record has no `Email`")


# --- Twilio inbound SMS -------------------------------------------------------------------------------------

TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mauto.example.com/v1/providers/twilio"


def twilio_signature(url: str, params: list[tuple[str, str]], token: str = TWILIO_TOKEN) -> str:
    """https://www.twilio.com/docs/usage/webhooks/webhooks-security: the URL, then each POST parameter sorted by
    name, name and value with no delimiter; HMAC-SHA1 with the auth token; base64."""
    signed = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def twilio_request(params: list[tuple[str, str]], url: str = TWILIO_URL, signed_url: str | None = None,
                   token: str = TWILIO_TOKEN) -> ProviderRequest:
    return ProviderRequest(url, {"content-type": "application/x-www-form-urlencoded",
                                 "x-twilio-signature": twilio_signature(signed_url or url, params, token)},
                           urllib.parse.urlencode(params).encode())


def inbound_sms(body: str, **extra: str) -> list[tuple[str, str]]:
    """The parameters of https://www.twilio.com/docs/messaging/guides/webhook-request"""
    return [("ToCountry", "FR"), ("ToState", ""), ("SmsMessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
            ("NumMedia", "0"), ("ToCity", ""), ("FromZip", ""), ("SmsSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"),
            ("FromState", ""), ("SmsStatus", "received"), ("FromCity", ""), ("Body", body), ("FromCountry", "FR"),
            ("To", "+33755512345"), ("ToZip", ""), ("NumSegments", "1"),
            ("MessageSid", "SM1f0e8ae6ade43cb3c0ce4525424e404f"), ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
            ("From", "+33612345678"), ("ApiVersion", "2010-04-01"), *extra.items()]


TWILIO_SECRETS = {"twilio_auth_token": TWILIO_TOKEN}
EMPTY_TWIML = ("text/xml", b'<?xml version="1.0" encoding="UTF-8"?><Response/>')


@pytest.mark.parametrize("body", ["STOP", "stop", " Stop\n", "STOPALL", "Unsubscribe", "cancel", "END", "quit",
                                  "REVOKE", "OPTOUT", "opt out", "Stop.", "ARRET", "Arrêt", "arre\u0302t"])
def test_twilio_stop_words(body: str) -> None:
    parsed = parse("twilio", twilio_request(inbound_sms(body)), TWILIO_SECRETS, NOW)
    assert parsed == Parsed([Feedback(SMS_STOP, "twilio", "sms", "+33612345678",
                                      id="SM1f0e8ae6ade43cb3c0ce4525424e404f",
                                      reason=f"replied {' '.join(body.split())!r}")], answer=EMPTY_TWIML)


@pytest.mark.parametrize("body", ["Stop texting me? No, keep them coming", "STOP IT", "START", "HELP", "", "merci"])
def test_twilio_other_replies_record_nothing(body: str) -> None:
    assert parse("twilio", twilio_request(inbound_sms(body)), TWILIO_SECRETS, NOW) == Parsed([], answer=EMPTY_TWIML)


def test_twilio_advanced_opt_out_custom_keyword() -> None:
    """A Messaging Service with Advanced Opt-Out says itself which replies are opt-outs (`OptOutType`)."""
    parsed = parse("twilio", twilio_request(inbound_sms("DESABONNER", OptOutType="STOP")), TWILIO_SECRETS, NOW)
    assert [(item.kind, item.address) for item in parsed.feedback] == [(SMS_STOP, "+33612345678")]


def test_twilio_signature_as_twilio_documents_it() -> None:
    """Twilio's own example: its SDK's test vector for this URL, these parameters and the token 12345."""
    params = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
              ("To", "+18005551212"), ("Caller", "+14158675309")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    request = ProviderRequest(url, {"x-twilio-signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
                              urllib.parse.urlencode(params).encode())
    assert parse("twilio", request, TWILIO_SECRETS, NOW) == Parsed([], answer=EMPTY_TWIML)
    # repeated names: sorted by name, then by value, each (name, value) once (the SDK's second vector)
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    request = ProviderRequest(url, {"x-twilio-signature": "IK+Dwps556ElfBT0I3Rgjkr1wJU="},
                              urllib.parse.urlencode(params).encode())
    error = rejected(lambda: parse("twilio", request, TWILIO_SECRETS, NOW))
    assert (error.status, error.reason) == (400, "the Twilio request has no `From`")  # verified, then unusable


def test_twilio_url_with_or_without_port() -> None:
    params = inbound_sms("STOP")
    signed_with_port = twilio_request(params, TWILIO_URL, "https://mauto.example.com:443/v1/providers/twilio")
    assert parse("twilio", signed_with_port, TWILIO_SECRETS, NOW).feedback
    seen_with_port = twilio_request(params, "https://mauto.example.com:443/v1/providers/twilio", TWILIO_URL)
    assert parse("twilio", seen_with_port, TWILIO_SECRETS, NOW).feedback


def test_twilio_bad_signature_tampered_body_missing_token() -> None:
    error = rejected(lambda: parse("twilio", twilio_request(inbound_sms("STOP"), token="other"), TWILIO_SECRETS,
                                   NOW))
    assert (error.status, error.reason) == (401, "the Twilio signature does not verify")
    signed = twilio_request(inbound_sms("hello"))
    tampered = ProviderRequest(signed.url, signed.headers, signed.body.replace(b"Body=hello", b"Body=STOP"))
    error = rejected(lambda: parse("twilio", tampered, TWILIO_SECRETS, NOW))
    assert (error.status, error.reason) == (401, "the Twilio signature does not verify")
    other_url = twilio_request(inbound_sms("STOP"), url="https://mauto.example.com/v1/providers/twilio?x=1",
                               signed_url=TWILIO_URL)
    assert rejected(lambda: parse("twilio", other_url, TWILIO_SECRETS, NOW)).status == 401
    unsigned = ProviderRequest(TWILIO_URL, {}, signed.body)
    error = rejected(lambda: parse("twilio", unsigned, TWILIO_SECRETS, NOW))
    assert (error.status, error.reason) == (401, "the Twilio signature header is missing")
    error = rejected(lambda: parse("twilio", signed, {}, NOW))
    assert (error.status, error.reason) == (503, "Twilio inbound SMS is not configured on this server (no auth token)")
    error = rejected(lambda: parse("twilio", ProviderRequest(TWILIO_URL, signed.headers, b"Body=%FF"),
                                   TWILIO_SECRETS, NOW))
    assert (error.status, error.reason) == (400, "the Twilio body is not a UTF-8 form")


# --- all providers ------------------------------------------------------------------------------------------


def test_unknown_provider() -> None:
    error = rejected(lambda: parse("../../etc/passwd", ProviderRequest("https://x", {}, b""), {}, NOW))
    assert (error.status, error.reason) == (404, "unknown provider (known: ses, sendgrid, mailgun, postmark, twilio)")
    assert sorted(PROVIDERS) == ["mailgun", "postmark", "sendgrid", "ses", "twilio"]


def test_secret_names_per_provider() -> None:
    assert providers.SECRETS == {"ses": ("ses_topic_arn",), "sendgrid": ("sendgrid_public_key",),
                                 "mailgun": ("mailgun_signing_key",),
                                 "postmark": ("postmark_username", "postmark_password"),
                                 "twilio": ("twilio_auth_token",)}


def test_rejections_never_show_a_secret(sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    secrets = {**MAILGUN_SECRETS, **POSTMARK_SECRETS, **TWILIO_SECRETS, **SES_SECRETS,
               "sendgrid_public_key": sendgrid_public(sendgrid_key)}
    reasons = []
    for name in PROVIDERS:
        for body in (b"", b"{}", b"[]", b'{"signature": {}}'):
            try:
                parse(name, ProviderRequest("https://x", {"authorization": "Basic eDp5"}, body), secrets, NOW)
            except Rejected as error:
                reasons.append(error.reason)
    assert reasons and not [reason for reason in reasons for secret in secrets.values()
                            if secret.strip() and secret in reason]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4),
                    max_leaves=20)
LEAVES = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 20, max_value=10 ** 400)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
          | st.sampled_from(["Bounce", "Complaint", "Delivery", "Permanent", "Transient", "bounce", "blocked",
                             "dropped", "failed", "permanent", "temporary", "complained", "delivered", "spamreport",
                             "HardBounce", "SpamComplaint", "Bounced Address", "Invalid", "2016-01-27T14:59:38.237Z",
                             "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59", REF, "a@b.example",
                             f"bounces+{REF}@x", "\u0000\n", "x" * 5000]))
MUTATION_VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                               | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _mutate(draw: Callable[[Any], Any], value: Any) -> Any:
    """`value` with one part changed: a key deleted, a value replaced, or a change further in."""
    if isinstance(value, dict) and value and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(value)))
        how = draw(st.sampled_from(["delete", "replace", "deeper", "deeper"]))
        if how == "delete":
            del value[key]
        else:
            value[key] = draw(MUTATION_VALUES) if how == "replace" else _mutate(draw, value[key])
        return value
    if isinstance(value, list) and value and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(value) - 1))
        value[index] = _mutate(draw, value[index])
        return value
    return draw(MUTATION_VALUES)


def mutated(draw: Callable[[Any], Any], samples: list[Any]) -> Any:
    value = json.loads(json.dumps(draw(st.sampled_from(samples))))  # a copy
    for _ in range(draw(st.integers(1, 4))):
        value = _mutate(draw, value)
    return value


def ses_samples() -> list[Any]:
    event = ses_bounce()
    event["eventType"] = event.pop("notificationType")
    event["mail"]["tags"] = {"mauto_ref": [REF]}
    return [ses_bounce(), ses_bounce("Transient"), ses_complaint(), ses_delivery(), event]


def mailgun_samples() -> list[Any]:
    base = {"id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1521233123.501324, "recipient": "alice@example.com",
            "message": {"headers": {"message-id": "20130503182626.18666.16540@sandbox.mailgun.org"}},
            "envelope": {"sender": f"bounces+{REF}@mail.example.com"}}
    return [mailgun_failed(), mailgun_failed("temporary"), {**base, "event": "complained"},
            {**base, "event": "delivered", "delivery-status": {"message": "OK", "code": 250}}]


def _only_rejected_or_parsed(call: Callable[[], Parsed]) -> None:
    try:
        result = call()
    except Rejected as error:
        assert 400 <= error.status < 600 and error.reason and "\n" not in error.reason
    else:
        assert isinstance(result, Parsed) and all(isinstance(item, Feedback) for item in result.feedback)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(PROVIDERS)), body=st.binary(max_size=200) | JSON.map(
    lambda value: json.dumps(value).encode()), header=st.text(max_size=30))
def test_random_bodies_give_rejected_or_parsed(name: str, body: bytes, header: str,
                                               sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    secrets = {**MAILGUN_SECRETS, **POSTMARK_SECRETS, **TWILIO_SECRETS, **SES_SECRETS,
               "sendgrid_public_key": sendgrid_public(sendgrid_key)}
    headers = {"authorization": header, "x-twilio-signature": header, "x-amz-sns-message-type": header,
               "x-twilio-email-event-webhook-signature": header, "x-twilio-email-event-webhook-timestamp": header}
    _only_rejected_or_parsed(lambda: parse(name, ProviderRequest("https://x/" + header, headers, body), secrets,
                                           NOW, lambda url: b""))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_signed_mutated_payloads_give_rejected_or_parsed(data: st.DataObject, sns: SnsKeys,
                                                          sendgrid_key: ec.EllipticCurvePrivateKey) -> None:
    """Past each signature check: the documented samples above, changed at random (a key deleted, a value
    replaced by another of any type), signed as each provider signs."""
    draw = data.draw
    cert_url = getattr(sns, "fuzz_url", None) or sns.cert_url()
    sns.fuzz_url = cert_url  # type: ignore[attr-defined]  # one certificate for all examples: fetched once
    message = json.dumps(mutated(draw, ses_samples()))
    _only_rejected_or_parsed(lambda: parse_ses(sns, sns_message(sns, message, cert_url=cert_url)))
    batch = json.dumps(mutated(draw, [sendgrid_events()])).encode()
    _only_rejected_or_parsed(lambda: parse("sendgrid", sendgrid_request(sendgrid_key, batch),
                                           {"sendgrid_public_key": sendgrid_public(sendgrid_key)}, NOW))
    body = mailgun_body(mutated(draw, mailgun_samples()))
    _only_rejected_or_parsed(lambda: parse("mailgun", mailgun_request(body), MAILGUN_SECRETS, NOW))
    record = mutated(draw, [postmark_bounce(), postmark_bounce("SpamComplaint", "SpamComplaint"),
                            postmark_delivery()])
    _only_rejected_or_parsed(lambda: parse("postmark", postmark_request(record), POSTMARK_SECRETS, NOW))
    params = draw(st.lists(st.tuples(st.sampled_from(["Body", "From", "OptOutType", "MessageSid", "To"])
                                     | st.text(max_size=8), st.text(max_size=20)), max_size=6))
    _only_rejected_or_parsed(lambda: parse("twilio", twilio_request(params), TWILIO_SECRETS, NOW))
