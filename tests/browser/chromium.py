"""Headless Debian chromium for tests that look at pages as a user does (``selenium``).

The browser is the one the set-up installs from Debian (``chromium``, ``chromium-driver``); no
browser is ever downloaded. It runs offline: every host name but the loopback ones fails to
resolve, so a page that loads a script from a CDN is seen blank, as on our machines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers import REPO, free_port

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

__all__ = [
    "ARTIFACTS",
    "CHROMEDRIVER",
    "CHROMIUM",
    "PLOTLY_RENDERED",
    "assert_plotly_rendered",
    "missing_browser",
    "new_driver",
    "screenshot",
    "wait_for",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Screenshots, kept by CI as artifacts; git ignores the folder.
ARTIFACTS = REPO / "test-artifacts"
# What a plot that plotly.js drew looks like in the page.
PLOTLY_RENDERED = ".js-plotly-plot .main-svg"


def missing_browser() -> str | None:
    """Why no browser test can run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: apt-get install chromium chromium-driver "
            "(scripts/setup.sh does it where it can)"
        )
    return None


def new_driver(width: int = 1400, height: int = 1000) -> WebDriver:
    """A headless chromium, offline except for loopback."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        # Tests run as root in containers, where chromium's sandbox cannot start.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9._-]', '-', name)}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: WebDriver, css: str, timeout: float = 30, count: int = 1) -> list[WebElement]:
    """At least ``count`` elements matching ``css``, waiting up to ``timeout`` seconds."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(
            lambda d: found if len(found := d.find_elements(By.CSS_SELECTOR, css)) >= count else []
        )
    except TimeoutException:
        raise AssertionError(
            f"{driver.current_url}: no {count} element(s) {css!r} after {timeout} s"
        ) from None


def assert_plotly_rendered(
    driver: WebDriver, page: str | Path, *, plots: int = 1, timeout: float = 30
) -> list[WebElement]:
    """Open ``page`` (a URL, or a local HTML file) and check that plotly drew ``plots`` plots or
    more; a screenshot is kept either way. Returns the plots' elements."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(d: WebDriver) -> list[WebElement]:
        # Each plot holds several .main-svg layers: count the plots that have one.
        found = [
            p
            for p in d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
            if p.find_elements(By.CSS_SELECTOR, ".main-svg")
        ]
        return found if len(found) >= plots else []

    url = page.resolve().as_uri() if isinstance(page, Path) else page
    driver.get(url)
    name = page.stem if isinstance(page, Path) else url.rstrip("/").rsplit("/", 1)[-1]
    try:
        return WebDriverWait(driver, timeout).until(drawn)
    except TimeoutException:
        raise AssertionError(
            f"{url}: plotly drew fewer than {plots} plot(s) ({PLOTLY_RENDERED!r}) in {timeout} s"
        ) from None
    finally:
        screenshot(driver, f"plotly-{name}")


def automl_env() -> dict[str, str]:
    """This checkout's automl for a child process, whatever the editable install points at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOML_")}
    return {**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def serving_dashboard(cwd: Path, *args: str) -> Iterator[tuple[str, int]]:
    """``automl dashboard ARGS`` on a free port until it answers: its base URL and the id of the
    one study it serves; stopped on exit."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "automl", "dashboard", "--port", str(port), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=automl_env(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as r:
                    [summary] = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "automl dashboard did not answer in 60 s"
                time.sleep(0.5)
        yield base, int(summary["study_id"])
    finally:
        server.terminate()
        server.wait(timeout=10)
