"""The report's index.html in a real browser, offline: every plot drawn from the inlined plotly."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from automl.views.report import write_report
from tests.browser.chromium import assert_plotly_rendered, screenshot
from tests.study_builders import finish_trial, tiny_study

# One xdist process runs the browser tests: one chromium and one served study, not two.
pytestmark = pytest.mark.xdist_group("browser")


if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

K2 = {"split_factor": 2, "width_mult": 0.6, "cot_weight": 0.5, "cot_kind": "js"}


def test_the_report_index_renders_offline(chromium: WebDriver, tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 3.0)  # the enqueued baseline
    finish_trial(study, 0.85, 1.7, params=K2, curve=[0.6, 0.75, 0.85])
    finish_trial(study, 0.90, 4.0, params={**K2, "width_mult": 1.0})
    write_report(study, tmp_path / "rep")
    index = tmp_path / "rep" / "index.html"
    # The front, the hypervolume against compute and the learning curves.
    plots = assert_plotly_rendered(chromium, index, plots=3)
    assert all(p.size["width"] > 100 and p.size["height"] > 100 for p in plots)
    text = chromium.find_element("tag name", "body").text
    assert "baseline" in text
    assert "latency" in text and "batch 1" in text
    # Points of the front are drawn: plotly renders each marker as a path in the scatter layer.
    markers = chromium.find_elements("css selector", "#pareto_front .scatterlayer .point")
    assert len(markers) >= 3
    screenshot(chromium, "report-index")
