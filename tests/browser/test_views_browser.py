"""The views that answer "does dividing pay, which model to ship, how sure are we", in headless
chromium: every trial on the report's plot (stopped ones hollow), the all-trials table sorting on
a click, the pick box, and a read-only dashboard that offers no control it would refuse."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from optuna.trial import TrialState

from automl.store.attrs import TrialAttr
from automl.views.dashboard_guard import READ_ONLY_MARK, REFUSED_ICONS
from automl.views.report import write_report
from tests.browser.chromium import assert_plotly_rendered, screenshot, serving_dashboard, wait_for
from tests.study_builders import finish_trial, start_trial, tiny_study

# One xdist process runs the browser tests: one chromium and one served study, not two.
pytestmark = pytest.mark.xdist_group("browser")

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from automl.search.study import AutoMLStudy

K2 = {"split_factor": 2, "width_mult": 0.6, "cot_weight": 0.5, "cot_kind": "js"}


def _study(tmp: Path) -> AutoMLStudy:
    """A baseline, a wider K = 1, and three K = 2 trials stopped early, one with a noisy latency."""
    study = tiny_study(tmp)
    finish_trial(study, 0.80, 3.0)
    finish_trial(study, 0.88, 5.0, params={"split_factor": 1, "width_mult": 1.5})
    for i, (acc, lat, iqr) in enumerate([(0.52, 1.2, 0.01), (0.61, 1.6, 0.01), (0.58, 0.9, 0.5)]):
        t = start_trial(study, {**K2, "width_mult": 0.6 + 0.1 * i})
        t.set_user_attr(TrialAttr.LATENCY_MS, lat)
        t.set_user_attr(TrialAttr.LATENCY_IQR_MS, iqr)
        t.set_user_attr(TrialAttr.CURVE, [acc - 0.1, acc])
        t.set_user_attr(TrialAttr.PRUNED_REASON, "stopped at rung 1 of 2 (epoch 2)")
        study.optuna_study.tell(t, state=TrialState.PRUNED)
    return study


def test_report_plots_every_trial_sorts_its_table_and_recommends(
    chromium: WebDriver, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    write_report(_study(tmp_path), tmp_path / "rep", max_latency_ms=4.0)
    index = tmp_path / "rep" / "index.html"
    assert_plotly_rendered(chromium, index, plots=3)
    legend = str(chromium.find_element(By.ID, "pareto_front").get_attribute("textContent"))
    assert "K = 2 stopped early (hollow: last accuracy)" in legend
    assert "noisy latency" in legend
    # The three stopped trials are drawn: one marker each in their trace.
    traces = chromium.find_elements(By.CSS_SELECTOR, "#pareto_front .scatterlayer .trace")
    hollow = [t for t in traces if len(t.find_elements(By.CSS_SELECTOR, ".point")) == 3]
    assert hollow, "no trace with the 3 stopped trials"
    # The verdict and the pick, in words a reader sees.
    verdict = chromium.find_element(By.ID, "verdict").text
    assert "K = 2: no trial finished; 3 stopped early" in verdict
    pick = chromium.find_element(By.ID, "pick")
    assert "Ship trial #0: K = 1" in pick.text and "within the 4 ms budget" in pick.text
    assert "automl export --storage sqlite:///" in pick.text and "--trial 0" in pick.text
    chromium.execute_script("arguments[0].scrollIntoView({block: 'center'});", pick)
    screenshot(chromium, "report-verdict-and-pick")

    # The all-trials table sorts by latency on a click, and the other way on a second one.
    table = chromium.find_element(By.ID, "trials")
    header = table.find_element(By.XPATH, ".//th[text()='latency ms']")

    def numbers() -> list[str]:
        return [
            r.find_element(By.TAG_NAME, "td").text
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    assert numbers() == ["#0", "#1", "#2", "#3", "#4"]
    header.click()
    assert numbers() == ["#4", "#2", "#3", "#0", "#1"]
    header.click()
    assert numbers() == ["#1", "#0", "#3", "#2", "#4"]
    noisy = table.find_elements(By.CSS_SELECTOR, "tbody tr.noisy")
    assert [r.find_element(By.TAG_NAME, "td").text for r in noisy] == ["#4"]
    chromium.execute_script("arguments[0].scrollIntoView({block: 'start'});", table)
    screenshot(chromium, "report-all-trials-sorted")


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """``automl dashboard --read-only`` on a study made without training: base URL, study id."""
    tmp = tmp_path_factory.mktemp("read-only")
    _study(tmp)
    with serving_dashboard(
        tmp, "--storage", f"sqlite:///{tmp / 'tiny.db'}", "--read-only"
    ) as served:
        yield served


def _shows(text: str, driver: WebDriver) -> bool:
    return text in driver.find_element("tag name", "body").text


def _visible_buttons(driver: WebDriver) -> set[str]:
    from selenium.webdriver.common.by import By

    found = set()
    for b in driver.find_elements(By.CSS_SELECTOR, "button, [role=button]"):
        if b.is_displayed():
            found.add((b.text or "").strip())
            found.add(str(b.get_attribute("aria-label") or ""))
    return found


def test_a_read_only_dashboard_offers_no_write_control(
    chromium: WebDriver, read_only: tuple[str, int]
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    base, study_id = read_only
    for page, name, ready in (
        (f"{base}/dashboard/", "read-only-studies", "RELOAD"),
        (f"{base}/dashboard/studies/{study_id}/trials?numbers=0", "read-only-trial", "Trial 0"),
    ):
        chromium.get(page)
        try:
            bar = wait_for(chromium, f"#{READ_ONLY_MARK}")[0]
            assert "This dashboard is read-only" in bar.text and bar.is_displayed()
            WebDriverWait(chromium, 30).until(functools.partial(_shows, ready))
            time.sleep(0.5)  # the page's last renders, seen by the hiding script
            shown = _visible_buttons(chromium)
            # Selenium reads the text as shown: MUI buttons are upper-cased by their style.
            refused = {"CREATE", "UPLOAD", "EDIT", "DELETE", "delete study", "rename study",
                       "delete artifact", "FAIL TRIAL", "Create", "Upload", "Edit"}  # fmt: skip
            assert not shown & refused, shown & refused
            icons = chromium.execute_script(
                "return Array.from(document.querySelectorAll('button svg[data-testid]'))"
                ".filter(s => s.closest('button').offsetParent !== null)"
                ".map(s => s.getAttribute('data-testid'))"
            )
            assert not set(icons) & set(REFUSED_ICONS), icons
        finally:
            screenshot(chromium, f"dashboard-{name}")
