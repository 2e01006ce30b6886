"""``automl dashboard`` as a user sees it, in headless chromium, on a tiny study it really ran."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import (
    PLOTLY_RENDERED,
    automl_env,
    screenshot,
    serving_dashboard,
    wait_for,
)
from tests.helpers import write_space

# One xdist process runs the browser tests: one chromium and one served study, not two.
pytestmark = pytest.mark.xdist_group("browser")

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

FRONT = '[id="user-defined-plot:automl-pareto-front"]'


def _automl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "automl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=automl_env(),
    )


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``automl dashboard`` serving a study of 2 trials run by ``automl search``: its base URL
    and the study's id."""
    tmp = tmp_path_factory.mktemp("browser")
    search = _automl(
        "search", "--space", str(write_space(tmp)), "--n-trials", "2", "--no-progress", cwd=tmp
    )
    assert search.returncode == 0, search.stderr
    with serving_dashboard(tmp, "--study", "tiny") as served:
        yield served


def test_the_study_page_shows_the_front_by_k(
    chromium: WebDriver, dashboard: tuple[str, int]
) -> None:

    base, study_id = dashboard
    chromium.get(f"{base}/dashboard/studies/{study_id}")
    try:
        # plotly draws into the card's own element, which becomes the .js-plotly-plot.
        plot = wait_for(chromium, f"{FRONT}{PLOTLY_RENDERED}")[0]
        # Drawn by plotly in the page: the legend names K and the baseline, the axes say which
        # way is better.
        text = str(wait_for(chromium, FRONT)[0].get_attribute("textContent"))
        assert "K = 1" in text, text
        assert "baseline" in text, text
        assert "validation accuracy (higher is better)" in text, text
        assert "batch 1 (lower is better)" in text, text
        assert plot.size["width"] > 200 and plot.size["height"] > 200
        chromium.execute_script("arguments[0].scrollIntoView({block: 'center'});", plot)
    finally:
        screenshot(chromium, "dashboard-study")


def test_a_trial_page_lists_its_weights(chromium: WebDriver, dashboard: tuple[str, int]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    base, study_id = dashboard
    chromium.get(f"{base}/dashboard/studies/{study_id}/trials?numbers=0")
    try:
        WebDriverWait(chromium, 30).until(
            lambda d: "weights.pt" in d.find_element("tag name", "body").text
        )
        body = chromium.find_element("tag name", "body").text
        assert "learning_curve.json" in body
        weights = chromium.find_element("xpath", "//*[text()='weights.pt']")
        chromium.execute_script("arguments[0].scrollIntoView({block: 'center'});", weights)
        # The note pushed when the trial ended, rendered from its Markdown.
        assert "Trial 0: convnet_s, K = 1" in body
    finally:
        screenshot(chromium, "dashboard-trial-0")
