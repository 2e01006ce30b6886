"""``automl export --trial best``: the pick over configurations, a noisy latency never taken
silently. The studies are made without training: the pick happens before any weight is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl.cli import main
from tests.study_builders import finish_trial, tiny_study

K2 = {"split_factor": 2, "width_mult": 0.8, "cot_weight": 0.5, "cot_kind": "js"}


def test_best_leaves_out_a_noisy_latency_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 0.25)
    # 6x faster than the baseline with a spread of 891% of its median: noise, not a trade-off.
    noisy = finish_trial(study, 0.86, 0.039, params=K2, iqr_ms=0.3475)
    base = ["export", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}", "--trial", "best"]

    # Under 0.3 ms the quiet pick is the baseline; exporting it fails later (no weights stored).
    assert main([*base, "--max-latency-ms", "0.3", "--out", str(tmp_path / "a")]) == 2
    out, err = capsys.readouterr()
    assert "--trial best: trial 0 (K = 1, accuracy 0.8000, latency 0.25 ms, within 0.3 ms)" in out
    assert (
        f"warning: left out for a latency spread over 25% of the median: #{noisy} (IQR 891%)" in err
    )
    assert "has no weights.pt" in err

    # Asked for, the noisy trial is taken, with a warning.
    assert (
        main([*base, "--max-latency-ms", "0.3", "--allow-noisy", "--out", str(tmp_path / "b")]) == 2
    )
    out, err = capsys.readouterr()
    assert f"--trial best: trial {noisy} (K = 2" in out
    assert f"warning: trial #{noisy}'s latency spread is 891% of its median" in err

    # Only the noisy trial fits: refused, with how to take it anyway.
    assert main([*base, "--max-latency-ms", "0.1", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no trial of study 'tiny' fits --max-latency-ms 0.1" in err
    assert "pass --allow-noisy to consider them" in err
