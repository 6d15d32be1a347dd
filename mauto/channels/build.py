"""The transports `mauto.yaml` asks for, under `channels:`.

```yaml
channels:
  email: {transport: smtp, host: smtp.example.com, port: 587, starttls: true,
          username_env: SMTP_USER, password_env: SMTP_PASSWORD, timeout: 30s}
  sms:   {transport: http, url: "https://sms.example.com/v1/messages", token_env: SMS_TOKEN, timeout: 10s}
```

A channel that is not configured (no `channels:`, or no `email:` / `sms:` under it) goes to the console:
messages are printed, never sent, so that a new project never mails anyone by accident. `file` needs a
`path`, relative to the folder of `mauto.yaml`.

Secrets are read from the environment variables that `mauto.yaml` names, when the transports are built. A
variable that is named and not set (or empty) is an error, not a silent anonymous login: SMTP logs in only
when both `username_env` and `password_env` are named, and then both must be set. The SMS `http` transport
needs `url` and `token_env`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from mauto.channels._http import endpoint
from mauto.channels.base import Transport
from mauto.channels.console import ConsoleTransport
from mauto.channels.files import FileTransport
from mauto.channels.pace import attach_paces
from mauto.channels.sms import HttpSmsTransport
from mauto.channels.smtp import SmtpTransport
from mauto.config import Project
from mauto.errors import MautoError
from mauto.workflow.durations import DurationError, check_timeout

TRANSPORTS = {"email": ("smtp", "console", "file"), "sms": ("http", "console", "file")}
DEFAULT_TIMEOUT = {"email": 30.0, "sms": 10.0}


class _Settings:
    """One channel's settings, with errors at their place in mauto.yaml."""

    def __init__(self, project: Project, channel: str, data: dict[str, Any]) -> None:
        self.project = project
        self.channel = channel
        self.data = data

    def error(self, message: str, key: str | None = None) -> MautoError:
        path = ("channels", self.channel) + ((key,) if key else ())
        position = self.project.document.pos(path)
        where = ".".join(path)
        return MautoError(f"{where}: {message}", self.project.document.path, position.line, position.col)

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"`{key}` must be a non-empty string", key)
        return value.strip()

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.error(f"the {self.data.get('transport')} transport needs `{key}`")
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise self.error(f"`{key}` must be true or false", key)
        return value

    def timeout(self) -> float:
        value = self.data.get("timeout")
        if value is None:
            return DEFAULT_TIMEOUT[self.channel]
        if not isinstance(value, str):
            raise self.error(f"timeout `{value}` must be a duration longer than 0s, e.g. 30s", "timeout")
        try:  # at most an hour: a socket overflows on a 1,000-year timeout, and no provider needs one
            return check_timeout(value).total_seconds()
        except DurationError as error:
            raise self.error(str(error), "timeout") from None

    def secret(self, key: str, environ: Mapping[str, str], advice: str) -> str:
        name = self.text(key)
        value = environ.get(name) if name else None
        if not value:
            raise self.error(f"the environment variable {name} named by `{key}` is not set ({advice})", key)
        return value


def build_transports(project: Project, environ: Mapping[str, str] = os.environ,
                     stream: TextIO | None = None) -> dict[str, Transport]:
    """`{"email": transport, "sms": transport}` as `mauto.yaml` configures them (console when it does not);
    `stream` is where console transports print (standard output when None). Raises MautoError, at its
    place in mauto.yaml, for a missing or bad setting or a named environment variable that is not set."""
    channels = project.data.get("channels")
    if channels is None:
        channels = {}
    if not isinstance(channels, dict):
        position = project.document.pos(("channels",))
        raise MautoError("channels: must be a mapping with `email` and/or `sms`", project.document.path,
                         position.line, position.col)
    transports: dict[str, Transport] = {}
    for channel in ("email", "sms"):
        data = channels.get(channel)
        if data is None:
            transports[channel] = ConsoleTransport(channel, stream)
            continue
        settings = _Settings(project, channel, data if isinstance(data, dict) else {})
        if not isinstance(data, dict):
            raise settings.error("must be a mapping with a `transport`")
        transports[channel] = _transport(settings, environ, stream)
    return attach_paces(project, transports)  # connections and rate per channel


def _transport(settings: _Settings, environ: Mapping[str, str], stream: TextIO | None) -> Transport:
    channel = settings.channel
    kind = settings.data.get("transport")
    if kind not in TRANSPORTS[channel]:
        choices = ", ".join(TRANSPORTS[channel])
        raise settings.error(f"transport must be one of {choices}, not {kind!r}" if kind is not None
                             else f"needs a `transport`: {choices}", "transport" if kind is not None else None)
    if kind == "console":
        return ConsoleTransport(channel, stream)
    if kind == "file":
        folder = Path(settings.required_text("path"))
        return FileTransport(channel, folder if folder.is_absolute() else settings.project.root / folder)
    if kind == "smtp":
        host = settings.required_text("host")
        port = settings.data.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise settings.error("`port` must be a number from 1 to 65535", "port")
        starttls, tls = settings.flag("starttls"), settings.flag("tls")
        if starttls and tls:
            raise settings.error("set `starttls` (upgrade a plain connection, port 587) or `tls` (implicit TLS, "
                                 "port 465), not both", "tls")
        named = [key for key in ("username_env", "password_env") if settings.data.get(key) is not None]
        if len(named) == 1:
            missing = "password_env" if named == ["username_env"] else "username_env"
            raise settings.error(f"`{named[0]}` without `{missing}`: name both to log in, or neither", named[0])
        advice = "set it, or remove username_env and password_env from mauto.yaml to send without a login"
        username = settings.secret("username_env", environ, advice) if named else None
        password = settings.secret("password_env", environ, advice) if named else None
        return SmtpTransport(host, port, starttls=starttls, tls=tls, timeout=settings.timeout(),
                             username=username, password=password)
    url = settings.required_text("url")
    try:
        endpoint(url)
    except ValueError as error:
        raise settings.error(str(error), "url") from None
    if settings.data.get("token_env") is None:
        raise settings.error("the http transport needs `token_env`: the environment variable that holds the "
                             "provider's API token")
    token = settings.secret("token_env", environ, "set it to the provider's API token")
    try:
        return HttpSmsTransport(url, token, timeout=settings.timeout())
    except ValueError as error:
        raise settings.error(f"{settings.data['token_env']}: {error}", "token_env") from None
