"""``write_report``: one offline page, a table with the baseline and units, figures for this
problem."""

from __future__ import annotations

import re
from pathlib import Path

from automl.views.report import write_report
from automl.views.report.data import collect
from tests.study_builders import finish_trial, tiny_study

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
        assert "1.68 ms" in text and "85.00 %" in text and "1.23 M" in text
        # What a reader sees: the page without its scripts (plotly's data keeps full precision).
        shown = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        assert "<table>" in shown and not re.search(r"\d\.\d{6,}", shown), "an unrounded number"

    # Axes say the direction, the device and the batch size.
    data = collect(study)
    assert data.latency_label == "latency (ms) at batch 1 on cpu (2 threads), lower is better ←"
    # (plotly writes non-ASCII characters as JSON escapes; the words are what matters)
    assert "at batch 1 on cpu (2 threads), lower is better" in index
    assert "validation accuracy (%), higher is better" in index
    assert "(1.1 \\u00d7 the slowest completed trial)" in index  # the reference in words
    assert data.reference == (0.0, 1.1 * 4.0)
    for png in ("pareto_front.png", "hypervolume.png", "learning_curves.png"):
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
    assert "has not completed yet" in index
    assert not any(p.suffix == ".png" for p in written)
