"""What the renderer writes for `mauto serve`: tracked links and the pixel (per project, workflow, link),
the unsubscribe link built from the public URL, the VERP envelope sender and the ref headers."""
from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mauto.config import load_project
from mauto.engine.records import ContactState
from mauto.engine.state import Effect
from mauto.links import Signer
from mauto.messages import MessageRenderer

HTML = ('<html><body><p>Hi</p><a href="https://shop.example/a?x=1&amp;y=2">shop</a> '
        '<a href="https://shop.example/b" data-mauto-track="off">untracked</a> '
        '<a href="mailto:care@shop.example">mail</a> <a href="{{ unsubscribe_url }}">unsubscribe</a></body></html>\n')
CONTACT = ContactState("c1", {"email": "ann@example.com", "email_consent": True})


def _renderer(tmp_path: Path, serve: str = "") -> MessageRenderer:
    (tmp_path / "mauto.yaml").write_text("timezone: UTC\nsender: {email: shop@shop.example}\n" +
                                         textwrap.dedent(serve), encoding="utf-8")
    (tmp_path / "templates" / "t").mkdir(parents=True)
    (tmp_path / "templates" / "t" / "hi.email.html").write_text("---\nsubject: hi\n---\n" + HTML, encoding="utf-8")
    return MessageRenderer(load_project(tmp_path / "mauto.yaml"), secret="k" * 40)


def _render(renderer: MessageRenderer, marketing: bool = True, tracking=None):
    data = {"channel": "email", "template": "t/hi", "marketing": marketing}
    if tracking is not None:
        data["tracking"] = tracking
    effect = Effect("send", datetime(2026, 12, 1, 9, tzinfo=UTC), "e1", "w", "c1", "hello", "e1:steps.0:1", data)
    return renderer.render(effect, CONTACT, renderer.project.contact_fields)


SERVE = """\
serve:
  public_url: https://mail.shop.example/
  bounce_address: bounces@shop.example
  providers: {ses: {topic_arn: "arn:aws:sns:eu-west-1:1:t"}, postmark: {username_env: U, password_env: P}}
"""


def test_a_marketing_email_gets_the_pixel_tracked_links_and_its_ref_everywhere(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, SERVE)
    message = _render(renderer)
    signer = Signer("k" * 40)
    ref = message.ref
    assert ref == signer.ref("e1:steps.0:1")
    click = signer.click(ref, "https://shop.example/a?x=1&y=2")
    assert f'href="https://mail.shop.example/c/{click}"' in message.html
    assert '<a href="https://shop.example/b">untracked</a>' in message.html  # opted out, attribute gone
    assert 'href="mailto:care@shop.example"' in message.html
    unsubscribe = f"https://mail.shop.example/u/{signer.unsubscribe(ref)}"
    assert f'href="{unsubscribe}"' in message.html  # never rewritten
    assert f'src="https://mail.shop.example/o/{signer.open(ref)}"' in message.html
    assert message.headers["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert message.envelope == f"bounces+{ref}@shop.example"
    assert message.headers["X-Mauto-Ref"] == ref
    assert message.headers["X-SES-MESSAGE-TAGS"] == f"mauto_ref={ref}"
    assert message.headers["X-PM-Metadata-mauto_ref"] == ref
    assert "X-SMTPAPI" not in message.headers and "X-Mailgun-Variables" not in message.headers
    assert "https://shop.example/a?x=1&y=2" in message.text and "/c/" not in message.text  # as written
    assert "data-mauto-track" not in message.to_bytes().decode()


@pytest.mark.parametrize(("serve", "marketing", "tracking", "pixel", "clicks"), [
    (SERVE, False, None, False, False),  # transactional: untouched
    (SERVE + "  tracking: {transactional: true}\n", False, None, True, True),
    (SERVE + "  tracking: false\n", True, None, False, False),
    (SERVE + "  tracking: {clicks: false}\n", True, None, True, False),
    (SERVE, True, False, False, False),  # the workflow's settings.tracking: false
    (SERVE, True, {"opens": False}, False, True),
    ("", True, None, False, False),  # no public URL: nothing to point at
])
def test_tracking_per_project_workflow_and_category(tmp_path: Path, serve, marketing, tracking, pixel,
                                                    clicks) -> None:
    message = _render(_renderer(tmp_path, serve), marketing, tracking)
    assert ("/o/" in message.html) is pixel
    assert ("/c/" in message.html) is clicks
    assert "data-mauto-track" not in message.html  # never sent, tracked or not


def test_without_serve_the_message_carries_no_serve_headers(tmp_path: Path) -> None:
    message = _render(_renderer(tmp_path, 'unsubscribe_url: "https://shop.example/u/{{ token }}"\n'))
    assert message.envelope is None and "X-Mauto-Ref" not in message.headers
    token = Signer("k" * 40).unsubscribe(message.ref)
    assert message.headers["List-Unsubscribe"] == f"<https://shop.example/u/{token}>"


def test_a_simulation_makes_email_sent_at_the_send_so_wait_for_email_sent_goes_on(tmp_path: Path) -> None:
    # The daemon records email_sent when its provider accepts the message (tests/serve/test_loop.py); the
    # simulation's provider accepts every message at once: the same wait_for wakes, at the send.
    from datetime import timedelta

    from mauto.engine.records import Event
    from tests.engine.conftest import SimProject

    sim = SimProject(tmp_path)
    workflow = textwrap.dedent("""\
        id: receipt
        version: 1
        name: receipt
        trigger: {event: signed_up}
        steps:
          - id: hello
            email: t/hi
          - wait_for: {event: email_sent, timeout: 1h}
            on_event:
              - id: sent
                email: t/hi
        """)
    start = datetime(2026, 6, 10, tzinfo=UTC)
    contact = ContactState("c1", {"email": "ann@example.com", "email_consent": True})
    result = sim.run([workflow], [contact], [Event("c1", "signed_up", start + timedelta(hours=1))], start,
                     start + timedelta(days=1))
    assert [(message.step, message.at) for message in result.messages] == [
        ("hello", start + timedelta(hours=1)), ("sent", start + timedelta(hours=1))]


def test_an_opt_out_written_in_capitals_is_removed_from_untracked_mail_too(tmp_path: Path) -> None:
    renderer = _renderer(tmp_path, SERVE)
    (tmp_path / "templates" / "t" / "hi.email.html").write_text(
        "---\nsubject: hi\n---\n" + HTML.replace("data-mauto-track", "DATA-MAUTO-TRACK"), encoding="utf-8")
    message = _render(renderer, marketing=False)  # transactional: not tracked
    assert "/c/" not in message.html and "mauto-track" not in message.html.lower()
