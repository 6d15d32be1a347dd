"""What people see, in real headless Chromium: the unsubscribe page and its button, the preference centre, a
tracked email opened as a mail client shows it (its pixel loads, its links go through `/c/`), and the page of a
link that does not work. The browser reaches nothing but 127.0.0.1: every name resolves to nothing, no proxy.

On a laptop without Chromium, its driver or selenium these skip; in CI (CI=true) they run, and fail if one is
missing (.ci/run installs Debian's chromium and chromium-driver; selenium is in the test extra)."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import browser_for_module, needs_chromium
from tests.serve.conftest import Served, write
from tests.servers import HttpServer, ReceivedMessage

try:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the test extra is not installed: the tests below skip (and fail in CI)
    pass

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, its profile, cache and temporary files under pytest's tmp."""
    yield from browser_for_module(tmp_path_factory, "--window-size=1024,768")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """The browser, on a blank page with no cookie at the start and the end of each test."""
    browser.get("about:blank")
    browser.delete_all_cookies()
    yield browser
    browser.get("about:blank")


# --- helpers -------------------------------------------------------------------------------------------------


def _email_to_ana(served: Served) -> ReceivedMessage:
    """The daemon sends ana the cart reminder (a marketing email) through the SMTP test server."""
    now = datetime.now(UTC)
    assert served.post_events({"contact": "ana", "event": "cart_abandoned", "at": now.isoformat()}
                              ).status_code == 202
    assert served.tick(now + timedelta(seconds=1)).sent == 1
    [received] = served.smtp.messages
    assert received.message["To"] == "ana@example.com"
    return received


def _unsubscribe_link(served: Served, received: ReceivedMessage) -> str:
    link = received.message["List-Unsubscribe"].strip("<>")
    assert link.startswith(served.base + "/u/")
    return link


def _status(driver: Any) -> int:
    """The HTTP status of the page the browser shows (the Navigation Timing entry of its document)."""
    return driver.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")


def _loaded(driver: Any) -> list[str]:
    """Every resource the page loaded besides its document (and the favicon, which Chromium asks for itself)."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [name for name in names if not name.endswith("/favicon.ico")]


def _wait_title(driver: Any, title: str) -> None:
    WebDriverWait(driver, 10).until(lambda d: d.title == title, f"the page never became `{title}`")


def _text(driver: Any) -> str:
    return driver.find_element(By.TAG_NAME, "main").text


def _wait_text(driver: Any, needle: str) -> None:
    """Wait until the page's <main> says `needle`, across the navigation a form's submit starts: the <main> read
    before the new page replaced it goes stale (or is briefly missing), which is a reason to look again, not a
    failure."""
    WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(
        lambda d: needle in _text(d), f"the page never said `{needle}`")


def _no_cookie(driver: Any) -> None:
    assert driver.get_cookies() == []
    assert driver.execute_cdp_cmd("Storage.getCookies", {})["cookies"] == []  # none for any host either


def _fits_a_phone(driver: Any) -> None:
    """On a phone's screen (360 px wide) the page needs no sideways scrolling and its button is in view."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 360, "height": 640,
                                                                   "deviceScaleFactor": 2, "mobile": True})
    try:
        width, scrolled, button = driver.execute_script(
            "const b = document.querySelector('button').getBoundingClientRect();"
            "return [innerWidth, document.documentElement.scrollWidth, [b.left, b.right, b.bottom]]")
        assert width == 360 and scrolled <= width, (width, scrolled)
        assert button[0] >= 0 and button[1] <= width and button[2] <= 640, button
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _contact(served: Served, contact: str = "ana") -> tuple[int, int, list[str]]:
    [(email, sms, fields)] = served.rows("SELECT email_consent, sms_consent, fields FROM contacts WHERE id = ?",
                                         contact)
    return email, sms, json.loads(fields).get("lists", [])


def _html_part(received: ReceivedMessage) -> str:
    [html] = [part.get_content() for part in received.message.walk() if part.get_content_type() == "text/html"]
    return html


# --- the tests -----------------------------------------------------------------------------------------------


def test_the_browser_resolves_no_name(page: Any) -> None:
    """The guard the other tests stand on: even `localhost` resolves to nothing, only 127.0.0.1 is reached."""
    with HttpServer() as local:
        local.respond("/here", 200, text="here")
        page.get(local.url("/here"))
        assert page.find_element(By.TAG_NAME, "body").text == "here"
        with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
            page.get(f"http://localhost:{local.port}/there")
        assert [request.path for request in local.requests if request.path != "/favicon.ico"] == ["/here"]


def test_the_unsubscribe_page_changes_nothing_until_its_button_is_clicked(served: Served, page: Any) -> None:
    link = _unsubscribe_link(served, _email_to_ana(served))
    page.get(link)
    assert (page.title, _status(page)) == ("Unsubscribe", 200)
    assert page.find_element(By.TAG_NAME, "h1").text == "Unsubscribe"
    assert "Stop emails to a•••@example.com?" in _text(page)
    assert "ana@example.com" not in page.page_source
    button = page.find_element(By.CSS_SELECTOR, "form button[type=submit]")
    assert button.text == "Unsubscribe" and button.is_displayed() and button.is_enabled()
    assert _loaded(page) == []  # nothing from anywhere else, not even from this server
    _fits_a_phone(page)
    # A GET (a link scanner's, or this one) changed nothing.
    assert _contact(served) == (1, 1, ["newsletter", "offers"])
    assert served.events("unsubscribed") == []

    button.click()
    _wait_title(page, "You are unsubscribed")
    assert _status(page) == 200 and page.current_url == link  # answered in place: no redirect
    assert "You will get no more emails from us at a•••@example.com." in _text(page)
    assert _contact(served) == (0, 1, ["newsletter", "offers"])
    [(contact, _, properties)] = served.events("unsubscribed")
    assert contact == "ana" and properties["source"] == "page" and properties["channel"] == "email"
    assert (properties["workflow"], properties["step"], properties["template"]) == ("cart", "reminder",
                                                                                      "cart/reminder")
    assert served.rows("SELECT channel, reason FROM suppressions") == [("email", "unsubscribed")]
    _no_cookie(page)


def test_the_preference_centre_leaves_a_channel_and_a_list(served: Served, page: Any) -> None:
    link = _unsubscribe_link(served, _email_to_ana(served))
    page.get(link)
    page.find_element(By.LINK_TEXT, "choose what you receive").click()
    _wait_title(page, "Your preferences")
    assert (page.current_url, _status(page)) == (link + "/preferences", 200)
    labels = page.find_elements(By.CSS_SELECTOR, "form label")
    assert [label.text for label in labels] == ["Emails to a•••@example.com", "Text messages to +33 •••• 78",
                                                "The monthly newsletter", "Special offers"]
    boxes = {label.text: label.find_element(By.CSS_SELECTOR, "input[type=checkbox]") for label in labels}
    assert all(box.is_selected() and box.is_displayed() for box in boxes.values())
    _fits_a_phone(page)
    assert _contact(served) == (1, 1, ["newsletter", "offers"])  # showing the page changed nothing

    boxes["Special offers"].click()
    labels[1].click()  # a click on the label's text ticks its box as well
    assert [box.is_selected() for box in boxes.values()] == [True, False, True, False]
    page.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait_text(page, "Saved.")
    assert (page.title, _status(page), page.current_url) == ("Your preferences", 200, link + "/preferences")
    assert [label.text for label in page.find_elements(By.CSS_SELECTOR, "form label")] == [
        "Emails to a•••@example.com", "The monthly newsletter"]

    assert _contact(served) == (1, 0, ["newsletter"])
    [(contact, _, properties)] = served.events("unsubscribed")
    assert (contact, properties["channel"], properties["source"]) == ("ana", "sms", "preferences")
    [(contact, _, properties)] = served.events("contact_updated")
    assert contact == "ana" and properties == {"changed": ["lists"], "previous": {"lists": ["newsletter", "offers"]}}
    assert served.rows("SELECT channel, reason FROM suppressions") == [("sms", "unsubscribed")]
    _no_cookie(page)


def test_a_tracked_email_in_a_browser_loads_its_pixel_and_clicks_through(served: Served, page: Any,
                                                                         tmp_path: Path) -> None:
    with HttpServer() as shop:
        # The Content-Type given is sent after the server's own text/plain: browsers take the last one.
        shop.respond("/landing", 200, text="<!DOCTYPE html><title>Your cart</title><h1>Your cart</h1>",
                     headers={"Content-Type": "text/html; charset=utf-8"})
        landing = shop.url("/landing?utm=x&y=1")
        # The daemon renders from the project's files: the link of the message leads to the shop above.
        write(served.root / "templates" / "cart" / "reminder.email.html", f"""\
            ---
            subject: "reminder {{{{ contact.first_name }}}}"
            ---
            <html><body><p>Hello {{{{ contact.first_name }}}}, your cart is waiting.</p>
            <p><a href="{shop.url('/landing?utm=x&amp;y=1')}">See your cart</a></p>
            <p><a href="{shop.url('/help')}">Help</a> | <a href="mailto:help@shop.example">Write to us</a></p>
            <p><a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p></body></html>
            """)
        received = _email_to_ana(served)
        message = tmp_path / "message.html"
        message.write_text(_html_part(received), encoding="utf-8")

        page.get(message.as_uri())  # returns once the page has loaded, its images with it
        links = page.execute_script("return [...document.links].map(a => [a.textContent, a.href])")
        images = page.execute_script("return [...document.images].map(i => [i.src, i.naturalWidth, "
                                     "i.naturalHeight, i.complete])")
        by_text = dict(links)
        assert list(by_text) == ["See your cart", "Help", "Write to us", "Unsubscribe"]
        assert by_text["Unsubscribe"] == _unsubscribe_link(served, received)
        assert by_text["Write to us"] == "mailto:help@shop.example"
        for text in ("See your cart", "Help"):
            assert by_text[text].startswith(served.base + "/c/"), (text, by_text[text])
        # The pixel is the message's only image, loaded, 1x1.
        assert len(images) == 1 and images[0][0].startswith(served.base + "/o/"), images
        assert images[0][1:] == [1, 1, True], images
        [(contact, _, opened)] = served.events("email_opened")
        assert contact == "ana" and opened["prefetched"] is False
        assert (opened["workflow"], opened["step"], opened["template"]) == ("cart", "reminder", "cart/reminder")

        page.find_element(By.LINK_TEXT, "See your cart").click()
        _wait_title(page, "Your cart")
        assert page.current_url == landing
        assert [request.path for request in shop.requests if request.path.startswith("/landing")] == [
            "/landing?utm=x&y=1"]
    [(contact, _, clicked)] = served.events("email_clicked")
    assert contact == "ana" and clicked["url"] == landing and clicked["message"] == opened["message"]
    assert (clicked["workflow"], clicked["step"], clicked["template"]) == ("cart", "reminder", "cart/reminder")


def test_a_link_that_does_not_work_says_so_and_goes_nowhere(served: Served, page: Any) -> None:
    received = _email_to_ana(served)
    token = _unsubscribe_link(served, received).rsplit("/", 1)[1]
    html = _html_part(received)
    pixel = html.split(served.base + "/o/", 1)[1].split('"', 1)[0]
    click = html.split(served.base + "/c/", 1)[1].split('"', 1)[0]
    ref, _, signature = click.split(".")
    elsewhere = base64.urlsafe_b64encode(b"http://127.0.0.1:9/elsewhere").decode().rstrip("=")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    for url in (f"{served.base}/u/{forged}", f"{served.base}/u/{token[:-3]}",
                f"{served.base}/u/{forged}/preferences",
                f"{served.base}/u/{pixel}",  # a valid token of another kind
                f"{served.base}/c/{ref}.{elsewhere}.{signature}"):  # a signed link made to go elsewhere
        page.get(url)
        assert (page.title, _status(page), page.current_url) == ("This link does not work", 404, url)
        assert page.find_element(By.TAG_NAME, "h1").text == "This link does not work"
        assert "The link is incomplete or was changed." in _text(page)
        assert page.find_elements(By.TAG_NAME, "form") == []
    assert _contact(served) == (1, 1, ["newsletter", "offers"])
    assert served.events("unsubscribed") == served.events("email_clicked") == []
    _no_cookie(page)
