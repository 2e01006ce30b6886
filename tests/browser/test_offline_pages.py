"""The helper later report tests use: a local HTML file, opened offline, with plotly drawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import pytest

from tests.browser.chromium import assert_plotly_rendered

# One xdist process runs the browser tests: one chromium and one served study, not two.
pytestmark = pytest.mark.xdist_group("browser")

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


def _page(tmp_path: Path, name: str, plotlyjs: str | bool) -> Path:
    path = tmp_path / f"{name}.html"
    go.Figure(go.Scatter(x=[1, 2], y=[3, 1])).write_html(str(path), include_plotlyjs=plotlyjs)
    return path


def test_a_page_with_plotly_embedded_renders_offline(chromium: WebDriver, tmp_path: Path) -> None:
    [plot] = assert_plotly_rendered(chromium, _page(tmp_path, "embedded", True))
    assert plot.size["width"] > 100


def test_a_page_that_loads_plotly_from_a_cdn_is_blank_here(
    chromium: WebDriver, tmp_path: Path
) -> None:
    """The browser is offline (as our machines are), so the helper sees what a user would."""
    with pytest.raises(AssertionError, match="plotly drew fewer than 1 plot"):
        assert_plotly_rendered(chromium, _page(tmp_path, "cdn", "cdn"), timeout=5)
