"""``write_report``: one offline page, a table with the baseline and units, figures for this
problem."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from optuna.trial import TrialState

from automl.search.study import AutoMLStudy
from automl.store.attrs import TrialAttr
from automl.views.report import TRIALS_CSV_COLUMNS, write_report
from automl.views.report.data import collect
from tests.study_builders import finish_trial, start_trial, tiny_study

K2 = {"split_factor": 2, "width_mult": 0.8, "cot_weight": 0.5, "cot_kind": "js"}


def test_index_is_one_offline_page_with_the_baseline_marked(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    base = finish_trial(study, 0.80, 3.0)  # the enqueued baseline, dominated below
    fast = finish_trial(study, 0.85, 1.6828735555489198, params=K2)
    slow = finish_trial(study, 0.90, 4.0, params={**K2, "width_mult": 1.0})
    written = write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()

    # plotly inlined exactly once; no page of the report loads a script from the network.
    assert index.count("plotly.js v") == 1
    for page in (p for p in written if p.suffix == ".html"):
        srcs = re.findall(r"<script[^>]*\bsrc=['\"]([^'\"]+)", page.read_text())
        assert all(not s.startswith(("http:", "https:", "//")) for s in srcs), (page, srcs)
    assert (tmp_path / "rep" / "plotly.min.js").is_file()  # what the per-figure pages load
    for div in ("pareto_front", "hypervolume", "learning_curves"):
        assert f'id="{div}"' in index, div

    # The table: the front fastest first, then the baseline, marked, with units and no raw floats.
    rows = re.findall(r"<tr( class='baseline')?><td>([^<]*)</td><td>#(\d+)</td>", index)
    assert [(cls, mark, int(n)) for cls, mark, n in rows] == [
        ("", "front", fast),
        ("", "front", slow),
        (" class='baseline'", "baseline (K=1), dominated", base),
    ]
    md = (tmp_path / "rep" / "pareto.md").read_text()
    assert "baseline (K = 1 at the default width), dominated:" in md
    pareto = (tmp_path / "rep" / "pareto.html").read_text()
    for text in (index, pareto):
        # Accuracy as a fraction, as every other view prints it.
        assert "1.68 ms" in text and "0.8500" in text and "1.23 M" in text
        # What a reader sees: the page without its scripts (plotly's data keeps full precision).
        shown = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        assert not re.search(r"\d %", shown), "accuracy as a percentage"
        assert "<table" in shown and not re.search(r"\d\.\d{6,}", shown), "an unrounded number"

    # Axes say the direction, the device and the batch size.
    data = collect(study)
    assert data.latency_label == "latency (ms) at batch 1 on cpu (2 threads), lower is better ←"
    # (plotly writes non-ASCII characters as JSON escapes; the words are what matters)
    assert "at batch 1 on cpu (2 threads), lower is better" in index
    assert "validation accuracy (fraction), higher is better" in index
    assert "(1.1 \\u00d7 the slowest completed trial)" in index  # the reference in words
    assert data.reference == (0.0, 1.1 * 4.0)
    for png in ("pareto_front.png", "hypervolume_compute.png", "learning_curves.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG", png


def test_the_front_drawn_is_pareto_front_and_the_baseline_on_it_is_marked(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    base = finish_trial(study, 0.80, 1.0)
    finish_trial(study, 0.70, 2.0, params=K2)  # dominated by the baseline
    finish_trial(study, 0.95, 5.0, params=K2, curve=[0.5, 0.9, 0.95])
    data = collect(study)
    assert [r.number for r in data.front] == [r.number for r in study.pareto_front()]
    assert data.baseline is not None and data.baseline.number == base
    assert {c.number: len(c.accuracies) for c in data.curves}[2] == 3
    write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "<tr class='baseline'><td>baseline (K=1), on the front</td><td>#0</td>" in index
    assert index.count("class='baseline'") == 1


def test_a_study_without_completed_trials_gets_a_page_that_says_so(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    written = write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "the Pareto front is empty" in index
    assert "The baseline (K = 1 at the default width), trial #0, is waiting." in index
    assert not any(p.suffix == ".png" for p in written)


def _stop(study: AutoMLStudy, params: dict[str, object], curve: list[float], lat: float) -> int:
    """A trial the scheduler stopped early: its latency measured, ``curve`` trained."""
    t = start_trial(study, params)
    t.set_user_attr(TrialAttr.LATENCY_MS, lat)
    t.set_user_attr(TrialAttr.LATENCY_IQR_MS, 0.01)
    t.set_user_attr(TrialAttr.CURVE, curve)
    t.set_user_attr(TrialAttr.PRUNED_REASON, f"stopped at epoch {len(curve)}")
    study.optuna_study.tell(t, state=TrialState.PRUNED)
    return t.number


def test_every_trial_is_plotted_and_the_verdict_says_what_happened_to_k2(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    base = finish_trial(study, 0.80, 1.0)
    wide = finish_trial(study, 0.85, 2.0, params={"split_factor": 1, "width_mult": 1.5})
    s1 = _stop(study, K2, [0.40], 0.7)
    s2 = _stop(study, {**K2, "width_mult": 0.9}, [0.45, 0.52], 0.8)
    data = collect(study)
    assert [r.number for r in data.rows] == [base, wide, s1, s2]
    assert [r.state for r in data.rows] == ["complete", "complete", "stopped", "stopped"]
    # The stopped K = 2 trials are on the plot, hollow, at their last accuracy.
    from automl.views.report.figures import front_figure

    fig = front_figure(data)
    hollow = [t for t in fig.data if t.marker.symbol == "circle-open" and "stopped" in t.name]
    assert [t.name for t in hollow] == ["K = 2 stopped early (hollow: last accuracy)"]
    assert list(hollow[0].x) == [0.7, 0.8] and list(hollow[0].y) == [0.40, 0.52]
    assert "after 2 epoch(s)" in hollow[0].text[1]
    # Legend order is fixed: K ascending, then the front, then the baseline.
    names = [t.name for t in fig.data]
    assert names.index("K = 1 finished") < names.index(hollow[0].name)
    assert names[-1] == "baseline (K = 1, default width)"
    # The verdict, from the data: K = 2 never finished, and that is said with how far it went.
    assert (
        data.headline == "Not known yet: no network with K > 1 finished training (2 stopped early)."
    )
    assert data.verdicts[0].startswith("K = 1: on the front from 1 to 2 ms (2 of 2 front points)")
    assert data.verdicts[1] == (
        f"K = 2: no trial finished; 2 stopped early after at most 2 epoch(s) (best 0.5200 after "
        f"2, #{s2}): whether it pays is not known yet"
    )
    write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "4 trials (2 complete, 2 stopped); 2 finished configurations" in index
    assert "id='verdict'" in index and "id='pick'" in index and "id='trials'" in index


def test_dominated_k_and_the_pick_with_its_command(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 1.0)
    finish_trial(study, 0.90, 2.0, params={"split_factor": 1, "width_mult": 1.5})
    k2 = finish_trial(study, 0.85, 2.5, params=K2)  # slower and less accurate than trial 1
    data = collect(study, max_latency_ms=1.5)
    assert data.verdicts[1] == (
        f"K = 2: best 0.8500 at 2.5 ms (#{k2}), dominated by K = 1 at every latency it reached"
    )
    assert data.headline.startswith("Not in this study")
    assert data.pick.point is not None and data.pick.point.number == 0
    write_report(study, tmp_path / "rep", max_latency_ms=1.5)
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "Ship trial #0: K = 1" in index and "within the 1.5 ms budget" in index
    assert "--study tiny --trial 0 --out bundle-0" in index
    # Dividing wins somewhere: said with where.
    fast = finish_trial(study, 0.82, 0.5, params={**K2, "width_mult": 0.6})
    data = collect(study)
    assert data.headline == "Dividing pays here at 0.5 ms: K = 2 is on the front there."
    assert data.verdicts[1].startswith("K = 2: on the front at 0.5 ms (1 of 2 front points)")
    assert data.pick.point is not None  # the knee, without a budget
    assert fast in {p.number for p in data.front_points}


def test_noisy_latency_is_marked_and_not_picked(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 0.25)
    noisy = finish_trial(study, 0.86, 0.039, params=K2, iqr_ms=0.3475)
    data = collect(study, max_latency_ms=0.3)
    assert data.headline.startswith("Dividing seems to pay at 0.039 ms (K = 2 on the front there)")
    assert "(1 of 1 front points, 1 with a NOISY latency)" in data.verdicts[1]
    assert data.pick.point is not None and data.pick.point.number == 0
    assert any(f"#{noisy} (IQR 891%)" in w for w in data.pick.warnings)
    write_report(study, tmp_path / "rep", max_latency_ms=0.3)
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "NOISY latency (891% IQR)" in index  # the front table
    assert f"<tr class='complete noisy'><td data-sort='{noisy}'>#{noisy}</td>" in index
    md = (tmp_path / "rep" / "pareto.md").read_text()
    assert "NOISY latency" in md and "warning: left out for a latency spread" in md
    with (tmp_path / "rep" / "pareto.csv").open() as f:
        front = list(csv.DictReader(f))
    assert [(r["number"], r["latency_noisy"], r["trials"]) for r in front] == [
        (str(noisy), "True", str(noisy))
    ]


def test_trials_csv_has_every_column_and_the_rung_of_rungs(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 1.0)
    _stop(study, K2, [0.4], 0.7)
    write_report(study, tmp_path / "rep")
    with (tmp_path / "rep" / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == TRIALS_CSV_COLUMNS
    assert rows[1]["state"] == "stopped" and rows[1]["K"] == "2" and rows[1]["epochs"] == "1"
    assert rows[1]["co_training"] == "cot_kind=js cot_weight=0.5"
    assert rows[1]["val_accuracy"] == "0.4" and rows[1]["why_stopped"] == "stopped at epoch 1"
    assert rows[0]["test_accuracy"] == "0.79" and rows[0]["n_params"] == "1234567"


def test_a_baseline_over_budget_is_said_so(tmp_path: Path) -> None:
    study = tiny_study(tmp_path)
    t = start_trial(study)
    t.set_user_attr(TrialAttr.PRUNED_REASON, "over budget: 309,000 parameters > 100,000")
    study.optuna_study.tell(t, state=TrialState.PRUNED)
    write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert (
        "The baseline (K = 1 at the default width), trial #0, stopped: over budget: 309,000 "
        "parameters &gt; 100,000." in index
    )
    assert "has not completed yet" not in index


def test_when_only_noisy_latencies_fit_the_pick_says_so_and_what_it_would_be(
    tmp_path: Path,
) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.90, 0.55, iqr_ms=0.55)
    k2 = finish_trial(study, 0.88, 0.36, params=K2, iqr_ms=2.5)  # inside the baseline's spread
    data = collect(study)
    assert data.verdicts[1] == (
        f"K = 2: best 0.8800 at 0.36 ms (#{k2}), inside the measured spread of K = 1: not a "
        "separate trade-off"
    )
    assert data.pick.point is None and data.noisy_pick is not None
    write_report(study, tmp_path / "rep")
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "No model to recommend: every configuration that fits has a noisy latency." in index
    assert "With noisy latencies allowed it would be trial #0" in index
    assert "Ship it anyway with:<br><code>automl export" in index
