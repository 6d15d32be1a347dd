"""Email over SMTP, against a real aiosmtpd server on 127.0.0.1."""
from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from mauto.channels import PARKED, RETRY, SENT, UNKNOWN, SmtpTransport, build_transports
from tests.servers import SmtpServer, self_signed_certificate

from .helpers import EnvelopeSmtpServer, Handoffs, closed_port, email_outgoing, rendered_email


def transport_for(server: SmtpServer, **settings) -> SmtpTransport:
    return SmtpTransport(server.host, server.port, **settings)


def test_a_multipart_alternative_message_arrives_whole(smtp_server: SmtpServer, handoff: Handoffs) -> None:
    outgoing = email_outgoing(1)
    with transport_for(smtp_server) as transport:
        delivery = transport.send(outgoing, handoff)

    assert (delivery.status, delivery.detail, delivery.provider_id) == (SENT, "250 2.0.0 Ok: queued as Q0001",
                                                                       "Q0001")
    assert handoff.calls == 1
    [received] = smtp_server.messages
    assert received.mail_from == "hello@lumio.example"  # the address of the From header
    assert received.rcpt_tos == ["ann@example.com"]
    assert received.message_id == outgoing.message_id
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content() == \
        "Hello Ann,\n\nthanks for signing up.\n\n. a line that starts with a dot\n"
    assert message.get_body(("html",)).get_content().strip() == \
        "<p>Hello Ann,</p><p>thanks for signing up.</p>"
    assert (message["Subject"], message["From"], message["Reply-To"]) == \
        ("Welcome, Ann", "Lumio <hello@lumio.example>", "care@lumio.example")


def test_non_ascii_text_arrives_intact(smtp_server: SmtpServer, handoff: Handoffs) -> None:
    with transport_for(smtp_server) as transport:
        delivery = transport.send(email_outgoing(1, first_name="Zoë Åström"), handoff)

    assert delivery.status == SENT
    message = smtp_server.messages[0].message
    assert message["Subject"] == "Welcome, Zoë Åström"
    assert message.get_body(("plain",)).get_content().startswith("Hello Zoë Åström,\n")


def test_one_connection_carries_a_batch_of_twenty(smtp_server: SmtpServer) -> None:
    handoff = Handoffs()
    outgoing = [email_outgoing(number, to=f"contact{number}@example.com") for number in range(1, 21)]
    with transport_for(smtp_server) as transport:
        statuses = [transport.send(message, handoff).status for message in outgoing]

    assert statuses == [SENT] * 20
    assert handoff.calls == 20
    assert smtp_server.connections == 1
    assert smtp_server.message_ids() == {message.message_id: 1 for message in outgoing}
    assert [received.rcpt_tos for received in smtp_server.messages] == [[message.to] for message in outgoing]


def test_451_at_rcpt_is_retry_and_the_next_message_still_goes(smtp_server: SmtpServer) -> None:
    smtp_server.on("rcpt", "451 4.3.0 try later", recipient="busy@example.com")
    busy, ready = Handoffs(), Handoffs()
    with transport_for(smtp_server) as transport:
        first = transport.send(email_outgoing(1, to="busy@example.com"), busy)
        second = transport.send(email_outgoing(2, to="ann@example.com"), ready)

    assert (first.status, first.detail) == (RETRY, "RCPT TO: 451 4.3.0 try later")
    assert busy.calls == 0  # refused before DATA: nothing handed off
    assert (second.status, ready.calls) == (SENT, 1)
    assert [received.rcpt_tos for received in smtp_server.messages] == [["ann@example.com"]]
    assert smtp_server.connections == 1  # RSET, not a new connection


def test_451_after_data_is_retry_and_the_next_message_still_goes(smtp_server: SmtpServer) -> None:
    smtp_server.on("data", "451 4.3.0 try later", times=1)
    handoff = Handoffs()
    with transport_for(smtp_server) as transport:
        first = transport.send(email_outgoing(1), handoff)
        second = transport.send(email_outgoing(2), handoff)

    assert (first.status, first.detail) == (RETRY, "451 4.3.0 try later")
    assert second.status == SENT
    assert handoff.calls == 2
    assert smtp_server.connections == 1


def test_550_at_rcpt_is_parked_with_the_servers_answer(smtp_server: SmtpServer, handoff: Handoffs) -> None:
    smtp_server.on("rcpt", "550 5.1.1 no such user", recipient="gone@example.com")
    with transport_for(smtp_server) as transport:
        delivery = transport.send(email_outgoing(1, to="gone@example.com"), handoff)
        after = transport.send(email_outgoing(2), Handoffs())

    assert (delivery.status, delivery.detail) == (PARKED, "RCPT TO: 550 5.1.1 no such user")
    assert "550" in delivery.detail
    assert handoff.calls == 0
    assert after.status == SENT
    assert len(smtp_server.messages) == 1


def test_5xx_at_mail_and_after_data_is_parked(smtp_server: SmtpServer) -> None:
    smtp_server.on("mail", "553 5.7.1 sender not allowed", times=1)
    smtp_server.on("data", "554 5.6.0 message refused", times=1)
    at_mail, at_data = Handoffs(), Handoffs()
    with transport_for(smtp_server) as transport:
        first = transport.send(email_outgoing(1), at_mail)
        second = transport.send(email_outgoing(2), at_data)

    assert (first.status, first.detail, at_mail.calls) == (PARKED, "MAIL FROM: 553 5.7.1 sender not allowed", 0)
    assert (second.status, second.detail, at_data.calls) == (PARKED, "554 5.6.0 message refused", 1)


def test_a_connection_dropped_after_the_message_is_unknown(smtp_server: SmtpServer, handoff: Handoffs) -> None:
    smtp_server.on("data", drop=True, times=1)
    outgoing = email_outgoing(1)
    with transport_for(smtp_server) as transport:
        delivery = transport.send(outgoing, handoff)
        next_one = transport.send(email_outgoing(2), Handoffs())

    assert delivery.status == UNKNOWN
    assert delivery.detail == (f"connection to 127.0.0.1:{smtp_server.port} lost before the answer to a message "
                               "already handed off: it may have been delivered (RFC 1047); not retried")
    assert handoff.calls == 1
    # The server did get the whole message: exactly why a retry could deliver it twice.
    assert smtp_server.messages[0].message_id == outgoing.message_id
    assert smtp_server.messages[0].answer == "dropped"
    assert next_one.status == SENT  # on a fresh connection
    assert smtp_server.connections == 2


def test_no_answer_within_the_timeout_after_the_message_is_unknown(smtp_server: SmtpServer,
                                                                  handoff: Handoffs) -> None:
    smtp_server.on("data", delay=5, times=1)
    with transport_for(smtp_server, timeout=0.5) as transport:
        delivery = transport.send(email_outgoing(1), handoff)

    assert delivery.status == UNKNOWN
    assert delivery.detail.startswith("timed out after 0.5s waiting for the answer to a message already handed off")
    assert handoff.calls == 1


def test_no_answer_within_the_timeout_before_data_is_retry(smtp_server: SmtpServer) -> None:
    handoff = Handoffs()
    with transport_for(smtp_server, timeout=0.5) as transport:
        first = transport.send(email_outgoing(1), handoff)
        smtp_server.on("rcpt", delay=5, times=1)
        slow = transport.send(email_outgoing(2), handoff)
        third = transport.send(email_outgoing(3), handoff)

    assert (first.status, third.status) == (SENT, SENT)
    assert (slow.status, slow.detail) == (RETRY, "timed out after 0.5s at RCPT TO, before the message was handed off")
    assert handoff.calls == 2
    assert smtp_server.connections == 2  # a slow server is not tried again at once; the next message reconnects


def test_a_refused_connection_is_retry_and_nothing_is_handed_off(handoff: Handoffs) -> None:
    port = closed_port()
    with SmtpTransport("127.0.0.1", port, timeout=5) as transport:
        delivery = transport.send(email_outgoing(1), handoff)

    assert delivery.status == RETRY
    assert delivery.detail.startswith(f"could not connect to 127.0.0.1:{port}: ")
    assert handoff.calls == 0


def test_a_handoff_that_raises_sends_nothing(smtp_server: SmtpServer) -> None:
    failing = Handoffs(error=RuntimeError("database is locked"))
    with transport_for(smtp_server) as transport:
        with pytest.raises(RuntimeError, match="database is locked"):
            transport.send(email_outgoing(1), failing)
        assert smtp_server.messages == []
        after = transport.send(email_outgoing(2), Handoffs())

    assert failing.calls == 1
    assert after.status == SENT
    assert [received.message_id for received in smtp_server.messages] == [email_outgoing(2).message_id]
    assert smtp_server.connections == 1


def test_a_connection_the_server_closed_between_messages_is_reopened(smtp_server: SmtpServer) -> None:
    handoff = Handoffs()
    with transport_for(smtp_server) as transport:
        first = transport.send(email_outgoing(1), handoff)
        smtp_server.close_connections()
        time.sleep(0.1)  # let the server's FIN arrive
        second = transport.send(email_outgoing(2), handoff)

    assert (first.status, second.status) == (SENT, SENT)
    assert handoff.calls == 2
    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 2


def test_login_with_the_user_and_password_named_in_mauto_yaml(project_at) -> None:
    with SmtpServer(auth=("mauto", "s3cret")) as server:
        project = project_at(f"""\
channels:
  email: {{transport: smtp, host: 127.0.0.1, port: {server.port}, username_env: SMTP_USER,
          password_env: SMTP_PASSWORD}}
""")
        good = build_transports(project, {"SMTP_USER": "mauto", "SMTP_PASSWORD": "s3cret"})["email"]
        bad = build_transports(project, {"SMTP_USER": "mauto", "SMTP_PASSWORD": "wrong"})["email"]
        anonymous = SmtpTransport(server.host, server.port)
        handoffs = Handoffs()
        with good, bad, anonymous:
            accepted = good.send(email_outgoing(1), handoffs)
            refused = bad.send(email_outgoing(2), handoffs)
            unauthenticated = anonymous.send(email_outgoing(3), handoffs)

    assert accepted.status == SENT
    assert refused.status == RETRY and refused.detail.startswith(f"login to 127.0.0.1:{server.port} refused: 535")
    # A server that wants a login is the configuration's fault, not the message's: retried, not parked.
    assert unauthenticated.status == RETRY and unauthenticated.detail.startswith("MAIL FROM: 530")
    assert handoffs.calls == 1
    assert server.logins[0] == ("mauto", True)
    assert server.logins[1:] and all(login == ("mauto", False) for login in server.logins[1:])  # smtplib
    # tries each mechanism the server offers
    assert len(server.messages) == 1


def test_a_header_injection_through_contact_data_adds_no_header(smtp_server: SmtpServer) -> None:
    message = rendered_email(1, first_name="Ann\nBcc: spy@evil.example")
    handoff = Handoffs()
    with transport_for(smtp_server) as transport:
        delivery = transport.send(email_outgoing(1, message=message), handoff)
        injected_to = transport.send(email_outgoing(2, to="ann@example.com\r\nRCPT TO:<spy@evil.example>"),
                                     handoff)

    assert delivery.status == SENT
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.com"]
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "Welcome, Ann Bcc: spy@evil.example"
    assert injected_to.status == PARKED and injected_to.detail.startswith("not sent: recipient ")
    assert handoff.calls == 1


def test_starttls_with_a_certificate_the_client_trusts(smtp_server: SmtpServer, tmp_path: Path) -> None:
    certificate = self_signed_certificate(tmp_path)
    if certificate is None:
        pytest.skip("no way to make a test certificate: neither the cryptography package nor openssl is here")
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with SmtpServer(certificate=certificate) as server:
        handoffs = Handoffs()
        with SmtpTransport(server.host, server.port, starttls=True, context=trusting) as transport:
            secured = transport.send(email_outgoing(1), handoffs)
        with SmtpTransport(server.host, server.port, starttls=True) as transport:  # the system's CAs only
            untrusted = transport.send(email_outgoing(2), handoffs)
        with SmtpTransport(server.host, server.port) as transport:  # no STARTTLS: the server refuses
            plain = transport.send(email_outgoing(3), handoffs)

    assert secured.status == SENT
    assert untrusted.status == RETRY and "certificate verify failed" in untrusted.detail
    assert plain.status == RETRY and plain.detail.startswith("MAIL FROM: 530")
    assert handoffs.calls == 1
    assert [received.message_id for received in server.messages] == [email_outgoing(1).message_id]


# --- internationalised addresses and one message's bad data (issue 10) -------------------------------------

def test_a_non_ascii_local_part_goes_with_smtputf8_when_the_server_offers_it(handoff: Handoffs) -> None:
    with EnvelopeSmtpServer(smtputf8=True) as server, transport_for(server) as transport:
        delivery = transport.send(email_outgoing(1, to="josé@example.com"), handoff)

    assert delivery.status == SENT, delivery.detail
    [received] = server.messages
    assert received.rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in server.mail_options[0]
    assert "To: josé@example.com".encode() in received.content.split(b"\r\n")  # RFC 6532: UTF-8 in the header


def test_a_non_ascii_local_part_is_parked_when_the_server_does_not_offer_smtputf8() -> None:
    with EnvelopeSmtpServer(smtputf8=False) as server, transport_for(server) as transport:
        parked_handoff, next_handoff = Handoffs(), Handoffs()
        parked = transport.send(email_outgoing(1, to="josé@example.com"), parked_handoff)
        after = transport.send(email_outgoing(2), next_handoff)

    assert (parked.status, parked.detail) == (
        PARKED, f"not sent: the server 127.0.0.1:{server.port} does not offer SMTPUTF8, which josé@example.com needs")
    assert parked_handoff.calls == 0
    assert (after.status, next_handoff.calls) == (SENT, 1)  # the same connection goes on with the batch
    assert server.connections == 1
    assert [received.rcpt_tos for received in server.messages] == [["ann@example.com"]]


def test_headers_with_a_utf8_address_need_smtputf8_too() -> None:
    message = rendered_email(1)
    message.headers = {"Reply-To": "josé@example.com"}
    with EnvelopeSmtpServer(smtputf8=False) as server, transport_for(server) as transport:
        delivery = transport.send(email_outgoing(1, message=message), Handoffs())

    assert delivery.status == PARKED
    assert delivery.detail == (f"not sent: the server 127.0.0.1:{server.port} does not offer SMTPUTF8, which a "
                               "header of the message (an address outside ASCII) needs")
    assert server.messages == []


@pytest.mark.parametrize("smtputf8", [True, False])
def test_an_idn_domain_goes_into_rcpt_to_in_its_ascii_form_without_smtputf8(smtputf8: bool) -> None:
    message = rendered_email(1, to="user@bücher.example")
    message.sender = "Zoë <hello@Lumiö.example>"
    with EnvelopeSmtpServer(smtputf8=smtputf8) as server, transport_for(server) as transport:
        delivery = transport.send(email_outgoing(1, to="user@bücher.example", message=message), Handoffs())

    assert delivery.status == SENT, delivery.detail
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == ("hello@xn--lumi-8qa.example", ["user@xn--bcher-kva.example"])
    assert server.mail_options == [[]]  # neither SMTPUTF8 nor 8BITMIME: the message is all ASCII
    assert received.content.isascii()
    assert received.message["To"] == "user@xn--bcher-kva.example"
    assert received.message["From"].addresses[0].display_name == "Zoë"


@pytest.mark.parametrize(("to", "reason"), [
    ("ann\x00@example.com", "not sent: recipient 'ann\\x00@example.com' is not an email address"),
    ("ann@exam\x7fple.com", "not sent: recipient 'ann@exam\\x7fple.com' is not an email address"),
    ("ann@bü..example", "not sent: the domain of 'ann@bü..example' is not a valid internationalised domain name"),
])
def test_an_address_no_envelope_can_carry_is_parked_without_the_network(smtp_server: SmtpServer, to: str,
                                                                        reason: str) -> None:
    handoff = Handoffs()
    with transport_for(smtp_server) as transport:
        delivery = transport.send(email_outgoing(1, to=to), handoff)
        after = transport.send(email_outgoing(2), Handoffs())

    assert delivery.status == PARKED
    assert delivery.detail.startswith(reason)
    assert handoff.calls == 0
    assert after.status == SENT
    assert [received.rcpt_tos for received in smtp_server.messages] == [["ann@example.com"]]


def test_a_line_the_server_finds_too_long_parks_that_message_and_the_batch_goes_on(smtp_server: SmtpServer) -> None:
    long_line = email_outgoing(1)
    long_line.body = b"X-Long: " + b"x" * 2000 + b"\n" + long_line.body  # not made by mauto: it folds
    handoff = Handoffs()
    with transport_for(smtp_server) as transport:
        refused = transport.send(long_line, handoff)
        after = transport.send(email_outgoing(2), handoff)

    assert refused.status == PARKED
    assert refused.detail.startswith("500 "), refused.detail  # aiosmtpd: "500 Line too long (see RFC5321 ...)"
    assert after.status == SENT
    assert smtp_server.connections == 1
    assert [received.message_id for received in smtp_server.delivered()] == [email_outgoing(2).message_id]


def test_the_parked_reason_names_the_address_as_the_message_has_it() -> None:
    with EnvelopeSmtpServer(smtputf8=False) as server, transport_for(server) as transport:
        delivery = transport.send(email_outgoing(1, to="josé@bücher.example"), Handoffs())

    assert delivery.detail.endswith("does not offer SMTPUTF8, which josé@bücher.example needs")  # as stored
