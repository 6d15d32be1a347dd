"""`build_transports`: the transports mauto.yaml asks for, and its mistakes at their place."""
from __future__ import annotations

import pytest

from mauto.channels import ConsoleTransport, FileTransport, HttpSmsTransport, SmtpTransport, build_transports
from mauto.errors import MautoError


def test_without_channels_everything_goes_to_the_console(project_at) -> None:
    transports = build_transports(project_at("timezone: Europe/Paris\n"), {})

    assert sorted(transports) == ["email", "sms"]
    assert all(isinstance(transport, ConsoleTransport) for transport in transports.values())
    assert (transports["email"].channel, transports["sms"].channel) == ("email", "sms")


def test_the_sample_projects_settings(project_at) -> None:
    project = project_at("""\
channels:
  email:
    transport: smtp
    host: 127.0.0.1
    port: 1025
    starttls: false
    username_env: SMTP_USER
    password_env: SMTP_PASSWORD
  sms:
    transport: console
""")
    transports = build_transports(project, {"SMTP_USER": "u", "SMTP_PASSWORD": "p"})
    email = transports["email"]

    assert isinstance(email, SmtpTransport)
    assert (email.host, email.port, email.starttls, email.tls, email.timeout) == ("127.0.0.1", 1025, False, False, 30)
    assert (email.username, email.password) == ("u", "p")
    assert isinstance(transports["sms"], ConsoleTransport)


def test_defaults_and_durations(project_at, tmp_path) -> None:
    project = project_at("""\
channels:
  email: {transport: smtp, host: smtp.example.com, starttls: true, timeout: 1m}
  sms: {transport: file, path: out/sms}
""")
    transports = build_transports(project, {})

    assert (transports["email"].port, transports["email"].timeout, transports["email"].username) == (587, 60, None)
    assert isinstance(transports["sms"], FileTransport)
    assert transports["sms"].folder == tmp_path / "out" / "sms"  # relative to mauto.yaml
    implicit = build_transports(project_at("channels: {email: {transport: smtp, host: h, tls: true}}\n"), {})
    assert implicit["email"].port == 465


def test_the_http_sms_transport(project_at) -> None:
    project = project_at("""\
channels:
  sms: {transport: http, url: "https://sms.example.com/v1/messages?account=7", token_env: SMS_TOKEN}
""")
    sms = build_transports(project, {"SMS_TOKEN": "t"})["sms"]

    assert isinstance(sms, HttpSmsTransport)
    assert (sms.endpoint.host, sms.endpoint.target, sms.timeout, sms.token) == \
        ("sms.example.com", "/v1/messages?account=7", 10, "t")


@pytest.mark.parametrize(("yaml", "environ", "message"), [
    ("channels:\n  email: {transport: smtp}\n", {},
     "mauto.yaml:2:10: channels.email: the smtp transport needs `host`"),
    ("channels:\n  sms: {transport: http, token_env: T}\n", {"T": "t"},
     "mauto.yaml:2:8: channels.sms: the http transport needs `url`"),
    ("channels:\n  sms: {transport: http, url: 'ftp://x/y', token_env: T}\n", {"T": "t"},
     "mauto.yaml:2:31: channels.sms.url: 'ftp://x/y' is not an http or https URL"),
    ("channels:\n  sms: {transport: http, url: 'https://x/y'}\n", {},
     "mauto.yaml:2:8: channels.sms: the http transport needs `token_env`: the environment variable that holds "
     "the provider's API token"),
    ("channels:\n  email: {transport: smtp, host: h, username_env: SMTP_USER, password_env: SMTP_PASSWORD}\n",
     {"SMTP_PASSWORD": "p"},
     "mauto.yaml:2:51: channels.email.username_env: the environment variable SMTP_USER named by `username_env` "
     "is not set (set it, or remove username_env and password_env from mauto.yaml to send without a login)"),
    ("channels:\n  email: {transport: smtp, host: h, username_env: SMTP_USER}\n", {"SMTP_USER": "u"},
     "mauto.yaml:2:51: channels.email.username_env: `username_env` without `password_env`: name both to log "
     "in, or neither"),
    ("channels:\n  email: {transport: smtp, host: h, tls: true, starttls: true}\n", {},
     "mauto.yaml:2:42: channels.email.tls: set `starttls` (upgrade a plain connection, port 587) or `tls` "
     "(implicit TLS, port 465), not both"),
    ("channels:\n  email: {transport: smtp, host: h, timeout: 30}\n", {},
     "mauto.yaml:2:46: channels.email.timeout: timeout `30` must be a duration longer than 0s, e.g. 30s"),
    ("channels:\n  email: {transport: smtp, host: h, timeout: 30 seconds}\n", {},
     "mauto.yaml:2:46: channels.email.timeout: `30 seconds` is not a duration; write `30s`"),
    ("channels:\n  email: {transport: smtp, host: h, port: 99999}\n", {},
     "mauto.yaml:2:43: channels.email.port: `port` must be a number from 1 to 65535"),
    ("channels:\n  email: {transport: pigeon}\n", {},
     "mauto.yaml:2:22: channels.email.transport: transport must be one of smtp, console, file, not 'pigeon'"),
    ("channels:\n  sms: {transport: smtp, host: h}\n", {},
     "mauto.yaml:2:20: channels.sms.transport: transport must be one of http, console, file, not 'smtp'"),
    ("channels:\n  email: {host: h}\n", {},
     "mauto.yaml:2:10: channels.email: needs a `transport`: smtp, console, file"),
    ("channels:\n  email: {transport: file}\n", {},
     "mauto.yaml:2:10: channels.email: the file transport needs `path`"),
    ("channels: [email]\n", {},
     "mauto.yaml:1:11: channels: must be a mapping with `email` and/or `sms`"),
])
def test_mistakes_are_reported_at_their_place_in_mauto_yaml(project_at, yaml: str, environ: dict,
                                                           message: str) -> None:
    with pytest.raises(MautoError) as raised:
        build_transports(project_at(yaml), environ)

    assert str(raised.value) == message
