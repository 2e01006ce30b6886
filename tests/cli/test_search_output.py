"""What ``automl search`` prints without progress bars: one line per ended trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from automl.cli.search_cmd import print_trial_end
from automl.store.attrs import TrialAttr
from tests.study_builders import finish_trial, start_trial, tiny_study


def test_one_line_per_ended_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.8123, 1.5)
    t = start_trial(
        study, {"split_factor": 2, "width_mult": 0.8, "cot_weight": 0.5, "cot_kind": "js"}
    )
    t.set_user_attr(TrialAttr.CURVE, [0.4])
    t.set_user_attr(TrialAttr.PRUNED_REASON, "stopped at rung 1 of 2 (epoch 1)")
    study.optuna_study.tell(t, state=TrialState.PRUNED)
    ost = study.optuna_study
    for frozen in ost.get_trials():
        print_trial_end(ost, study.space, frozen._trial_id)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "trial #0 complete after 2 epoch(s): accuracy 0.8123, latency 1.5 ms; K=1 width=1",
        "trial #1 stopped after 1 epoch(s): stopped at rung 1 of 2 (epoch 1); K=2 width=0.8 "
        "cot_kind=js cot_weight=0.5",
    ]
