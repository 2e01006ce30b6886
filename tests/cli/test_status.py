"""``automl status`` on real studies: stale trials with their heartbeat's age, time spent and
left, readable parameters, latencies too noisy to rank on."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState

from automl.cli import main
from automl.cli.status_cmd import SHOWN_TRIALS, WIDE_SPREAD_RATIO
from automl.store.attrs import StudyAttr, TrialAttr
from automl.views.trial_text import duration, readable_params
from tests.study_builders import finish_trial, start_trial, tiny_study

K2 = {"split_factor": 2, "width_mult": 0.8, "cot_weight": 0.5, "cot_kind": "js"}


def _age_heartbeat(storage: RDBStorage, trial_id: int, seconds: float) -> None:
    """Record a heartbeat through the storage, then date it ``seconds`` back, as a worker that
    died that long ago leaves it."""
    storage.record_heartbeat(trial_id)
    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        assert now is not None
        beat = models.TrialHeartbeatModel.where_trial_id(trial_id, session)
        assert beat is not None
        beat.heartbeat = now.replace(tzinfo=None) - timedelta(seconds=seconds)
        session.commit()
    finally:
        session.close()


def test_status_flags_stale_trials_times_params_and_noisy_latency(
    tmp_path: Path, storage_url: str, study_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tiny_study(tmp_path, study_name, storage_url)
    storage = study.storage
    assert isinstance(storage, RDBStorage)
    finish_trial(study, 0.80, 1.0, iqr_ms=0.1)  # the baseline, a steady latency
    noisy = finish_trial(study, 0.85, 2.0, params=K2, iqr_ms=1.0)  # IQR half the median
    finish_trial(study, 0.90, 4.0, params=K2, iqr_ms=4 * WIDE_SPREAD_RATIO)  # at the limit: fine
    dead = start_trial(study, {**K2, "width_mult": 0.6})
    alive = start_trial(study, {"split_factor": 1, "width_mult": 0.9})
    _age_heartbeat(storage, dead._trial_id, 3600)
    _age_heartbeat(storage, alive._trial_id, 0)
    study.optuna_study.set_user_attr(StudyAttr.TARGET_TRIALS, 7)

    args = ["--storage", storage_url, "--study", study_name, "--grace-period", "600"]
    assert main(["status", *args]) == 0
    out = capsys.readouterr().out
    lines = {m.group(1): m.group(0) for m in re.finditer(r"running #(\d+) .*", out)}
    assert "STALE: last heartbeat 1 h 00 min ago (grace 10 min 00 s)" in lines[str(dead.number)]
    assert "K=2 width=0.6 cot_kind=js cot_weight=0.5" in lines[str(dead.number)]
    assert re.search(r"heartbeat \d+ s ago; K=1 width=0.9$", lines[str(alive.number)])
    assert "STALE" not in lines[str(alive.number)]
    assert "{" not in out.split("Pareto front:")[0]  # no raw dict of params
    assert re.search(r"elapsed: \d+ s since the first trial started; about \d+ s left: 4 of 7", out)
    assert "2 at a time" in out
    warning = next(line for line in out.splitlines() if line.startswith("warning: latency"))
    assert f"#{noisy} (IQR 50% of the median)" in warning
    assert warning.count("#") == 1  # neither the steady one nor the one at the limit


def test_status_without_heartbeats_or_target_says_what_it_knows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tiny_study(tmp_path)
    start_trial(study)  # the baseline, claimed, no heartbeat yet
    assert main(["status", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"running #0 on \? \? for \d+ s, epochs done 0, no heartbeat; K=1 width=1$", out, re.M
    )
    assert "warning" not in out


def test_durations_and_params_read_as_words() -> None:
    assert [duration(s) for s in (0.4, 59, 61, 3599, 3600, 7322)] == [
        "0 s",
        "59 s",
        "1 min 01 s",
        "59 min 59 s",
        "1 h 00 min",
        "2 h 02 min",
    ]
    params = {"lr": 0.012345, "cot_weight": 0.5, "width_mult": 1.5, "split_factor": 2}
    assert readable_params(params) == "K=2 width=1.5 cot_weight=0.5 lr=0.0123"


def test_status_lists_every_trial_the_verdict_and_the_pick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 1.0)
    finish_trial(study, 0.85, 2.0, params={"split_factor": 1, "width_mult": 1.5})
    k2 = finish_trial(study, 0.70, 1.5, params=K2)  # dominated by the baseline
    for _ in range(SHOWN_TRIALS):
        start = start_trial(study, {**K2, "width_mult": 0.9})
        start.set_user_attr(TrialAttr.CURVE, [0.4])
        start.set_user_attr(TrialAttr.LATENCY_MS, 1.2)
        study.optuna_study.tell(start, state=TrialState.PRUNED)
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    assert main(["status", "--storage", url, "--max-latency-ms", "1.2"]) == 0
    out = capsys.readouterr().out
    total = 3 + SHOWN_TRIALS
    # An open-ended run made more trials than the one (the baseline) ever asked for.
    assert f"trials: {total} | " in out and "of 1 asked for" not in out
    assert not re.search(r"of \d+ trials ended", out)
    assert f"(the last {SHOWN_TRIALS} of {total}; --all for every one)" in out
    assert f"K = 2: best 0.7000 at 1.5 ms (#{k2}), dominated by K = 1 at every latency" in out
    assert "Does dividing pay here? Not in this study" in out
    assert "Ship trial #0: K = 1, width 1, validation accuracy 0.8000" in out
    assert f"Ship it with: automl export --storage {url} --study tiny --trial 0" in out

    assert main(["status", "--storage", url, "--all"]) == 0
    out = capsys.readouterr().out
    table = out.split("trials:\n", 1)[1].split("hypervolume against compute")[0]
    header, *rows = table.strip().splitlines()
    assert header.split()[:7] == ["trial", "K", "width", "co-training", "state", "epochs", "rung"]
    assert len(rows) == total
    assert re.match(
        r"#3\s+2\s+0\.9\s+cot_kind=js cot_weight=0.5\s+stopped\s+1\s+-\s+0\.4000", rows[3].strip()
    )
    # Without a budget the pick is the knee of the front, and says so.
    assert "the knee of the front" in out


def test_status_shows_the_dominated_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tiny_study(tmp_path)
    finish_trial(study, 0.80, 3.0)
    finish_trial(study, 0.85, 1.0, params=K2)
    assert main(["status", "--storage", f"sqlite:///{tmp_path / 'tiny.db'}"]) == 0
    out = capsys.readouterr().out
    after = out.split("baseline (K = 1 at the default width), dominated:\n", 1)[1]
    assert re.search(r"^0\s+1\s+1\.000\s+-\s+0\.8000", after.splitlines()[2])
