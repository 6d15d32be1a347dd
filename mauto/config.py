"""Find and read `mauto.yaml`, the project file."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

from mauto.errors import MautoError, ProjectNotFound, YamlError
from mauto.workflow.expressions import Expression
from mauto.workflow.loader import Document, load

PROJECT_FILE = "mauto.yaml"

BUILTIN_FIELDS = {
    "id": "string", "email": "string", "phone": "string", "timezone": "string", "locale": "string",
    "score": "integer", "tags": "list", "lists": "list", "email_consent": "boolean", "sms_consent": "boolean",
    "created_at": "datetime",
}

# What every event about a message carries: the step that sent it, and its ref (`message`); those recorded
# from a provider or a bounce also the provider's name and its diagnostic.
_MESSAGE_EVENT = {"workflow": "string", "step": "string", "template": "string", "message": "string"}
_FEEDBACK_EVENT = {**_MESSAGE_EVENT, "provider": "string", "reason": "string"}
BUILTIN_EVENTS: dict[str, dict[str, Any]] = {
    "contact_created": {"fields": "object"},
    "contact_updated": {"changed": "list", "previous": "object"},
    "email_sent": _MESSAGE_EVENT, "email_delivered": _FEEDBACK_EVENT,
    # `prefetched`: fetched by a privacy proxy (Apple Mail Privacy Protection loads every pixel, read or not)
    "email_opened": {**_MESSAGE_EVENT, "prefetched": "boolean"},
    "email_clicked": {**_MESSAGE_EVENT, "url": "string"},
    "email_bounced": {**_FEEDBACK_EVENT, "kind": {"enum": ["hard", "soft"]}},
    "email_complained": _FEEDBACK_EVENT,
    "sms_sent": _MESSAGE_EVENT, "sms_delivered": _FEEDBACK_EVENT, "sms_failed": _FEEDBACK_EVENT,
    # `source`: how (one-click, page, preferences, sms-stop, cli); `message`: the message whose link was used
    "unsubscribed": {"channel": {"enum": ["email", "sms"]}, "source": "string", "message": "string"},
}
EVENT_ATTRIBUTES = ("name", "at", "id", "contact")


def find_project(start: Path | None = None, explicit: Path | None = None) -> Path:
    """The `mauto.yaml` to use: `explicit` (a file or its folder), else the nearest one upwards from `start`."""
    if explicit is not None:
        candidate = explicit / PROJECT_FILE if explicit.is_dir() else explicit
        if not candidate.is_file():
            raise ProjectNotFound(f"no project file at {candidate}")
        return candidate
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    raise ProjectNotFound(f"no {PROJECT_FILE} in {here} or any parent folder; run mauto inside a project "
                          "or pass --project PATH")


@dataclass
class Project:
    """A loaded `mauto.yaml`. Accessors are lenient: lint reports schema problems, others rely on a valid file."""

    path: Path
    document: Document
    display_root: Path = field(default_factory=Path.cwd)
    load_error: YamlError | None = None  # set only by a lenient load: the file is not YAML mauto reads

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def data(self) -> dict:
        return self.document.data if isinstance(self.document.data, dict) else {}

    @property
    def workflows_dir(self) -> Path:
        return self.root / "workflows"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def timezone(self) -> str:
        zone = self.data.get("timezone")
        return zone if isinstance(zone, str) else "UTC"

    @cached_property
    def phone_region(self) -> str | None:
        """`phone_region` (two letters, e.g. FR): the country whose national numbers an import reads
        (`06 12 34 56 78` is +33612345678 in FR). None when unset: numbers must then be written in
        international form (+33…). An unknown region is an error at its line in mauto.yaml."""
        from mauto.addresses import check_region

        region = self.data.get("phone_region")
        if region is None:
            return None
        try:
            return check_region(region)
        except ValueError as error:
            position = self.document.pos(("phone_region",))
            raise MautoError(f"`phone_region`: {error}", self.document.path, position.line, position.col) from None

    @cached_property
    def store_location(self) -> Path | str:
        """`store:`: the SQLite file (relative to mauto.yaml, default mauto.db) or the PostgreSQL URL. A URL
        carrying a password is an error at its line: the password comes from the environment (docs/store.md)."""
        from mauto.store.locations import store_path

        location = store_path(self)
        if isinstance(location, str):
            from urllib.parse import parse_qs, urlsplit

            position = self.document.pos(("store",))
            try:
                parts = urlsplit(location)
                # libpq takes it from the user part or from `?password=`: neither may be in the file
                password = parts.password or next(iter(parse_qs(parts.query).get("password", [])), None)
            except ValueError as error:
                raise MautoError(f"`store`: not a URL mauto can read: {error}", self.document.path, position.line,
                                 position.col) from None
            if password is not None:
                raise MautoError("`store`: the URL carries a password; mauto.yaml is reviewed and committed, so keep "
                                 "the password out of it: name a variable with `store_password_env`, or use "
                                 "PGPASSWORD or ~/.pgpass", self.document.path, position.line, position.col)
        return location

    @cached_property
    def serve(self) -> ServeSettings:
        """`serve:` in mauto.yaml, with its defaults (lenient: lint reports what is wrong in it)."""
        return ServeSettings.read(self.data.get("serve"))

    @cached_property
    def task_handoff(self) -> TaskHandoff | None:
        """`tasks.handoff:` in mauto.yaml, checked: how a `task` step's task reaches its owner (an email, a
        webhook into a CRM), or None when tasks are not handed over. MautoError at the place in mauto.yaml of
        the first thing wrong in it."""
        return _TaskSettings(self).handoff()

    @cached_property
    def contact_fields(self) -> dict[str, Any]:
        """Every contact field, built-in and declared, with its type."""
        declared = self.data.get("contact_fields")
        fields = dict(BUILTIN_FIELDS)
        if isinstance(declared, dict):
            fields.update(declared)
        return fields

    @cached_property
    def segments(self) -> dict[str, Expression]:
        segments = self.data.get("segments")
        if not isinstance(segments, dict):
            return {}
        return {name: Expression(source, self.document.path, self.document.pos(("segments", name)))
                for name, source in segments.items() if isinstance(source, str)}

    @cached_property
    def events(self) -> dict[str, dict[str, Any]] | None:
        """The event catalogue with the built-in events, or None when mauto.yaml has none."""
        catalogue = self.data.get("events")
        if not isinstance(catalogue, dict):
            return None
        events: dict[str, dict[str, Any]] = dict(BUILTIN_EVENTS)
        for name, properties in catalogue.items():
            events[name] = properties if isinstance(properties, dict) else {}
        return events

    @cached_property
    def blackout_dates(self) -> frozenset[date] | None:
        """`limits.blackout_dates`: the days (in each contact's zone) no marketing message goes out on, or None.
        MautoError at the place in mauto.yaml of the first one that is not a date (`mauto lint` says so too)."""
        limits = self.data.get("limits")
        written = limits.get("blackout_dates") if isinstance(limits, dict) else None
        if not written:
            return None
        if not isinstance(written, list):
            position = self.document.pos(("limits", "blackout_dates"))
            raise MautoError("limits.blackout_dates: must be a list of dates (YYYY-MM-DD), e.g. [\"2026-12-25\"]",
                             self.document.path, position.line, position.col)
        dates = set()
        for index, item in enumerate(written):
            try:
                # the years mauto handles (mauto.limits), as the schema's pattern says
                if not isinstance(item, str) or len(item) != 10 or not "1000" <= item[:4] <= "8999":
                    raise ValueError
                dates.add(date.fromisoformat(item))
            except ValueError:
                position = self.document.pos(("limits", "blackout_dates", index))
                raise MautoError(f"limits.blackout_dates: `{item}` is not a date; write YYYY-MM-DD, e.g. 2026-12-25",
                                 self.document.path, position.line, position.col) from None
        return frozenset(dates)

    @cached_property
    def coupons(self) -> dict[str, CouponPool]:
        """`coupons:` in mauto.yaml, checked: per pool, the event that redeems its codes and when it runs low.
        MautoError at the place in mauto.yaml of the first thing wrong in it."""
        return _CouponSettings(self).pools()

    def coupon_pool(self, name: str) -> CouponPool:
        """The settings of one pool: as mauto.yaml gives them, else the defaults (no redemption, low below 10%)."""
        return self.coupons.get(name) or CouponPool()

    @cached_property
    def _display_root(self) -> str:
        return os.path.realpath(self.display_root)

    def display(self, path: Path | str) -> str:
        """A path as the user should see it: relative to where they stand when possible (a PostgreSQL URL
        without its password)."""
        if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
            from mauto.store.postgres import shown_url

            return shown_url(path)
        absolute = os.path.realpath(path)
        root = self._display_root
        if absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(absolute, root)
        return str(path)


@dataclass(frozen=True)
class Tracking:
    """Open and click tracking: which, and whether transactional emails get it too."""

    opens: bool = False
    clicks: bool = False
    transactional: bool = False

    def merged(self, override: Any) -> Tracking:
        """These settings with a workflow's `settings.tracking` over them (false: none)."""
        if override is False:
            return Tracking()
        if not isinstance(override, dict):
            return self
        return Tracking(*(override.get(name, getattr(self, name)) is True
                          for name in ("opens", "clicks", "transactional")))


@dataclass(frozen=True)
class ServeSettings:
    """What `mauto serve` answers at, and what it accepts."""

    public_url: str | None = None  # without a trailing slash
    bounce_address: str | None = None
    tracking: Tracking = Tracking()
    lists: dict[str, str] = field(default_factory=dict)
    soft_bounce_limit: int = 3
    max_body: int = 1 << 20
    providers: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, data: Any) -> ServeSettings:
        if not isinstance(data, dict):
            return cls()
        url = data.get("public_url")
        url = url.rstrip("/") if isinstance(url, str) and url else None
        # With a public URL, opens and clicks are tracked unless mauto.yaml says otherwise.
        tracking = Tracking(opens=url is not None, clicks=url is not None).merged(data.get("tracking"))
        lists = data.get("lists")
        providers = data.get("providers")
        limit, size = data.get("soft_bounce_limit"), data.get("max_body")
        bounce = data.get("bounce_address")
        return cls(url, bounce if isinstance(bounce, str) and "@" in bounce else None, tracking,
                   {str(k): str(v) for k, v in lists.items()} if isinstance(lists, dict) else {},
                   limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else 3,
                   size if isinstance(size, int) and not isinstance(size, bool) and size >= 1024 else 1 << 20,
                   {str(name): {str(k): str(v) for k, v in value.items()} for name, value in providers.items()
                    if isinstance(value, dict)} if isinstance(providers, dict) else {})


# --- tasks: the hand-off of a `task` step's task to its owner (done by mauto.daemon.tasks) -----------------

TASK_EMAIL_TO = "{{ task.assignee }}"
TASK_EMAIL_SUBJECT = "Task: {{ task.title }}"
TASK_EMAIL_BODY = """\
{{ task.title }}

Contact: {{ contact.id }}{% if contact.email %} <{{ contact.email }}>{% endif %}
{% if task.due_at %}Due: {{ task.due_at | date('%Y-%m-%d %H:%M') }}
{% endif %}{% if task.notes %}
{{ task.notes }}
{% endif %}
Task {{ task.id }}, from step {{ task.step }} of workflow {{ task.workflow }}.
When it is done: mauto tasks done {{ task.id }}
"""
TASK_WEBHOOK_TIMEOUT = "10s"
TASK_HANDOFF_RETRIES = 3
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The webhook step's rule (docs/workflow-language.md): http(s), the host written out up to the first `/`, `?`
# or `#`, a template only after it, so that a contact's data never chooses where a request goes; no `user:pass@`.
_HANDOFF_URL = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[^/?#@{}\s\\]+(?:[/?#][^\x00-\x1f\x7f]*)?")
_SECRET_HEADER = re.compile(r"^(?:authorization|proxy-authorization|cookie|x-api-key|x-auth-token)$"
                            r"|token|secret|api-?key|password", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"^(?:.*(?:token|secret|api[-_]?key|password|passwd|sig(?:nature)?)|key)$", re.IGNORECASE)
_TEMPLATE_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


@dataclass(frozen=True)
class TaskEmail:
    """A task mailed to its owner: `sender` (the From header, one mailbox), and the templates of the recipient,
    the subject and the text body, rendered with `task` and `contact`."""

    sender: str
    to: str = TASK_EMAIL_TO
    subject: str = TASK_EMAIL_SUBJECT
    body: str = TASK_EMAIL_BODY


@dataclass(frozen=True)
class TaskWebhook:
    """A task POSTed to a CRM: `url` (a template after its host), `headers` (templates), `headers_env` (header ->
    the environment variable holding its whole value, read when the request is sent), `timeout` as written."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    headers_env: dict[str, str] = field(default_factory=dict)
    timeout: str = TASK_WEBHOOK_TIMEOUT


@dataclass(frozen=True)
class TaskHandoff:
    """`tasks.handoff`: an email, a webhook, or both; a temporary failure is tried again up to `retries` times."""

    email: TaskEmail | None = None
    webhook: TaskWebhook | None = None
    retries: int = TASK_HANDOFF_RETRIES


class _TaskSettings:
    """`tasks:` in mauto.yaml, read and checked; each error names its place (`mauto.yaml:12:7: tasks.handoff…`)."""

    def __init__(self, project: Project) -> None:
        self.project, self.document = project, project.document

    def error(self, path: tuple[str, ...], message: str, key: bool = False) -> MautoError:
        position = self.document.key_pos(path) if key else self.document.pos(path)
        return MautoError(f"{'.'.join(path)}: {message}", self.document.path, position.line, position.col)

    def mapping(self, value: Any, path: tuple[str, ...], known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping with {', '.join(f'`{name}`' for name in known)}")
        for name in value:
            if name not in known:
                import difflib

                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean `{close[0]}`?" if close else f"; expected {', '.join(known)}"
                raise self.error(path + (str(name),), f"unknown key `{name}`{hint}", key=True)
        return value

    def text(self, data: dict[str, Any], name: str, path: tuple[str, ...], default: str | None = None,
             template: bool = True) -> str | None:
        value = data.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(path + (name,), f"`{name}` must be a non-empty string")
        if template:
            self.template(value, path + (name,))
        return value

    def template(self, source: str, path: tuple[str, ...]) -> None:
        """A template that does not compile is an error now, not at every task's hand-off."""
        from jinja2 import TemplateSyntaxError

        from mauto.workflow.expressions import sandbox

        try:
            sandbox().parse(source)
        except TemplateSyntaxError as error:
            raise self.error(path, f"`{path[-1]}` is not a template mauto can render: {error.message}") from None

    def handoff(self) -> TaskHandoff | None:
        data = self.project.data
        if data.get("tasks") is None:
            return None
        tasks = self.mapping(data["tasks"], ("tasks",), ("handoff",))
        if tasks.get("handoff") is None:
            return None
        path = ("tasks", "handoff")
        handoff = self.mapping(tasks["handoff"], path, ("email", "webhook", "retries"))
        email = self.email(handoff["email"], path + ("email",)) if "email" in handoff else None
        webhook = self.webhook(handoff["webhook"], path + ("webhook",)) if "webhook" in handoff else None
        if email is None and webhook is None:
            raise self.error(path, "needs `email`, `webhook` or both: how a task reaches its owner")
        retries = handoff.get("retries", TASK_HANDOFF_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 20:
            raise self.error(path + ("retries",), "`retries` must be a whole number from 0 to 20")
        return TaskHandoff(email, webhook, retries)

    def email(self, value: Any, path: tuple[str, ...]) -> TaskEmail:
        from mauto.channels.smtp import check_address

        data = self.mapping(value, path, ("from", "to", "subject", "body"))
        sender = self.text(data, "from", path, template=False)
        if sender is None:
            senders = self.project.data.get("sender")
            sender = senders.get("email") if isinstance(senders, dict) else None
            if not isinstance(sender, str) or not sender.strip():
                raise self.error(path, "needs `from`, or `sender.email` in mauto.yaml: the address tasks are "
                                       "mailed from")
        named = re.fullmatch(r"(.*)<([^<>]*)>", sender.strip(), re.DOTALL)
        try:
            check_address((named.group(2) if named else sender).strip(), "the sender")
        except ValueError as error:
            raise self.error(path + ("from",) if "from" in data else ("sender", "email"),
                             f"{error}; write one mailbox: `Shop <shop@example.com>`") from None
        return TaskEmail(sender.strip(), self.text(data, "to", path) or TASK_EMAIL_TO,
                         self.text(data, "subject", path) or TASK_EMAIL_SUBJECT,
                         self.text(data, "body", path) or TASK_EMAIL_BODY)

    def webhook(self, value: Any, path: tuple[str, ...]) -> TaskWebhook:
        data = self.mapping(value, path, ("url", "headers", "headers_env", "timeout"))
        if data.get("url") is None:
            raise self.error(path, "needs `url`: the http(s) address tasks are POSTed to")
        url = (self.text(data, "url", path) or "").strip()
        if not _HANDOFF_URL.fullmatch(url):
            raise self.error(path + ("url",), "`url` must be http or https with its host written out before any "
                                              "{{ }} and no user:password@, e.g. https://crm.example/tasks (give "
                                              "credentials with headers_env)")
        if not _TEMPLATE_BLOCK.search(url):
            from mauto.channels._http import endpoint

            try:
                endpoint(url)
            except ValueError as error:
                raise self.error(path + ("url",), str(error)) from None
        query = _TEMPLATE_BLOCK.sub(lambda block: "\x00" * len(block.group()), url).partition("?")[2]
        for pair in query.partition("#")[0].split("&"):
            name, equals, written = pair.partition("=")
            if equals and _SECRET_QUERY.match(name.strip()) and written.replace("\x00", "").strip():
                raise self.error(path + ("url",), f"the query parameter `{name.strip()}` carries a credential "
                                                  "written into mauto.yaml; give it in a header with headers_env, "
                                                  "e.g. headers_env: {Authorization: CRM_AUTH}")
        headers = self.headers(data.get("headers"), path + ("headers",))
        headers_env = self.headers_env(data.get("headers_env"), path + ("headers_env",))
        both = {name.lower() for name in headers} & {name.lower() for name in headers_env}
        if both:
            name = next(name for name in headers_env if name.lower() in both)
            raise self.error(path + ("headers_env", name), f"header `{name}` is given in `headers` and in "
                                                           "`headers_env`: give it once", key=True)
        timeout = data.get("timeout", TASK_WEBHOOK_TIMEOUT)
        from mauto.workflow.durations import DurationError, check_timeout

        try:
            if not isinstance(timeout, str):
                raise DurationError(f"`{timeout}` is not a duration; write one, e.g. 10s")
            check_timeout(timeout)
        except DurationError as error:
            raise self.error(path + ("timeout",), str(error)) from None
        return TaskWebhook(url, headers, headers_env, timeout)

    def headers(self, value: Any, path: tuple[str, ...]) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, "must be a mapping of header names to values")
        for name, text in value.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise self.error(path + (str(name),), f"`{name}` is not a valid header name", key=True)
            if _SECRET_HEADER.search(name):
                raise self.error(path + (name,), f"header `{name}` carries a credential, which mauto.yaml never "
                                                 "holds; put it in an environment variable and name it with "
                                                 f"`headers_env: {{{name}: VARIABLE}}`", key=True)
            if not isinstance(text, str) or _LINE_CONTROL.search(text) or not text.isascii():
                raise self.error(path + (name,), f"header `{name}` must be one line of ASCII text")
            self.template(text, path + (name,))
        return dict(value)

    def headers_env(self, value: Any, path: tuple[str, ...]) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not value:
            raise self.error(path, "must map header names to environment variables, e.g. {Authorization: CRM_AUTH}")
        for name, variable in value.items():
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                raise self.error(path + (str(name),), f"`{name}` is not a valid header name", key=True)
            if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
                raise self.error(path + (name,), f"`{variable}` is not an environment variable name (the "
                                                 "variable holds the header's whole value, e.g. CRM_AUTH)")
        return dict(value)


# --- coupons: redemption and running low (read by mauto.store.coupons) --------------------------------------

DEFAULT_LOW_PERCENT = 10.0  # a pool is low when fewer than this share of its codes is left
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOW_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")


@dataclass(frozen=True)
class CouponPool:
    """`coupons.POOL` in mauto.yaml. `event` and `property`: an event of that name whose property holds one of
    the pool's assigned codes redeems it. `low_below` (a count) or `low_percent` (a share of the pool's codes):
    the pool runs low when fewer codes than that are left to hand out."""

    event: str | None = None
    property: str | None = None
    low_below: int | None = None
    low_percent: float = DEFAULT_LOW_PERCENT

    def low_at(self, total: int) -> int:
        """Fewer codes left than this is running low, for a pool of `total` codes."""
        if self.low_below is not None:
            return self.low_below
        return math.ceil(total * self.low_percent / 100)


class _CouponSettings(_TaskSettings):
    """`coupons:` in mauto.yaml, read and checked (the helpers that name a place are the tasks settings')."""

    def pools(self) -> dict[str, CouponPool]:
        data = self.project.data.get("coupons")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.error(("coupons",), "must map pool names to their settings, e.g. "
                                           "{WELCOME10: {redeemed_by: {event: order_placed, property: coupon}}}")
        return {str(name): self.pool(settings, ("coupons", str(name))) for name, settings in data.items()}

    def pool(self, value: Any, path: tuple[str, ...]) -> CouponPool:
        settings = self.mapping(value if value is not None else {}, path, ("redeemed_by", "low_below"))
        event = prop = None
        if settings.get("redeemed_by") is not None:
            where = path + ("redeemed_by",)
            redeemed = self.mapping(settings["redeemed_by"], where, ("event", "property"))
            for name in ("event", "property"):
                if not isinstance(redeemed.get(name), str) or not redeemed[name].strip():
                    raise self.error(where, f"needs `{name}`: the event that redeems a code, and the property "
                                            "holding the code, e.g. {event: order_placed, property: coupon}")
            event, prop = redeemed["event"], redeemed["property"]
            if not _PROPERTY_NAME.fullmatch(prop):
                raise self.error(where + ("property",), f"`{prop}` is not a property name: use letters, digits "
                                                        "and `_`, e.g. coupon")
            catalogue = self.project.events
            if catalogue is not None and event not in catalogue:
                raise self.error(where + ("event",), f"`{event}` is not in the `events:` catalogue of mauto.yaml")
            declared = catalogue.get(event) if catalogue is not None else None
            if declared and prop not in declared:
                raise self.error(where + ("property",), f"`{event}` has no property `{prop}` in the `events:` "
                                                        f"catalogue; declare it there (`{prop}: string`)")
        low = settings.get("low_below")
        if low is None:
            return CouponPool(event, prop)
        if isinstance(low, int) and not isinstance(low, bool) and low >= 0:
            return CouponPool(event, prop, low_below=low)
        share = _LOW_PERCENT.fullmatch(low) if isinstance(low, str) else None
        if share is None or float(share.group(1)) > 100:
            raise self.error(path + ("low_below",), "`low_below` must be a number of codes (100) or a share of the "
                                                    "pool's codes (\"10%\", at most 100%)")
        return CouponPool(event, prop, low_percent=float(share.group(1)))


def load_project(path: Path, display_root: Path | None = None, lenient: bool = False) -> Project:
    """Read `mauto.yaml`. YAML errors raise, or with `lenient` (for lint) are kept in `load_error`;
    schema problems are left to `mauto lint`."""
    root = display_root or Path.cwd()
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    try:
        return Project(path, load(path, shown), root)
    except YamlError as error:
        if not lenient:
            raise
        return Project(path, Document(shown, "", None), root, load_error=error)
