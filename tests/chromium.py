"""Headless Chromium for the tests that look at pages (tests/serve/test_browser.py: the pages of `mauto serve`
and a tracked email; tests/stats/test_report_browser.py: `mauto report`'s page): Debian's `chromium` and
`chromium-driver` (which .ci/run installs where missing) through selenium (the test extra). Missing, the tests
skip on a laptop and fail in CI (`CI` set)."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:  # the test extra is not installed: the tests skip (and fail in CI)
    webdriver = None

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = [name for name, found in [("Chromium (`chromium`)", CHROMIUM),
                                    ("its driver (`chromedriver`)", CHROMEDRIVER),
                                    ("selenium", webdriver)] if found is None]

# For a test module: `pytestmark = needs_chromium`.
needs_chromium = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                    reason=f"{' and '.join(MISSING)} not installed (.ci/run installs Debian's "
                                           "chromium and chromium-driver; selenium is in the test extra)")

# Every host name resolves to nothing and no proxy is asked: the only place the browser can reach is an address
# written as 127.0.0.1. The rest keeps Chromium's own background traffic (updates, sync, metrics) quiet.
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--no-proxy-server", "--dns-prefetch-disable",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--disable-domain-reliability", "--disable-breakpad", "--no-first-run",
    "--no-default-browser-check", "--metrics-recording-only", "--safebrowsing-disable-auto-update", "--lang=en-US",
]


def start_browser(home: Path, *flags: str) -> Any:
    """A headless Chromium (FLAGS and `flags`) whose profile, cache and temporary files are under `home`."""
    assert not MISSING, f"{' and '.join(MISSING)} not installed: .ci/run installs Debian's chromium and " \
                        "chromium-driver, and selenium comes with the test extra"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, *flags, f"--user-data-dir={home / 'profile'}", f"--disk-cache-dir={home / 'cache'}"]:
        options.add_argument(flag)
    # Given both paths, Selenium never runs Selenium Manager (which would download a driver); the driver and the
    # browser it starts keep their files (profile, crash reports, temporary files) in `home`.
    environment = {**os.environ, "HOME": str(home), "TMPDIR": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                   "XDG_CACHE_HOME": str(home / "cache"), "SE_OFFLINE": "true", "SE_AVOID_STATS": "true"}
    service = Service(CHROMEDRIVER, env=environment, log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(15)
    return driver


def browser_for_module(tmp_path_factory: pytest.TempPathFactory, *flags: str) -> Iterator[Any]:
    """One browser for a test module (the body of its module-scoped fixture)."""
    driver = start_browser(tmp_path_factory.mktemp("chromium"), *flags)
    try:
        yield driver
    finally:
        driver.quit()
