"""The ``chromium`` fixture: one headless Debian chromium per session (see ``chromium.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import missing_browser, new_driver

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    """Skipped, with the reason, only where Debian's chromium or its driver is not installed."""
    problem = missing_browser()
    if problem is not None:
        pytest.skip(problem)
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()
