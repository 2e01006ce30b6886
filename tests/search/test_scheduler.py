"""The multi-fidelity scheduler: rungs, two-objective ranking, decisions read from the storage,
the [scheduler] section, and real studies that use it."""

from __future__ import annotations

import csv
import math
import re
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

import automl
from automl.errors import SearchSpaceError
from automl.search.progress import hypervolume_by_compute
from automl.search.pruning import ParetoPruner
from automl.search.reporter import EpochReporter
from automl.search.scheduler import (
    RungScheduler,
    SchedulerKind,
    crowding_distances,
    early_stopper,
    nondominated_fronts,
    rank_at_rung,
    rungs,
)
from automl.space import SearchSpace, load_space, parse_space
from automl.store.attrs import TrialAttr
from automl.training import EpochRecord
from tests.helpers import write_space
from tests.search.test_cli import run_cli

DIRECTIONS = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


def test_rungs_are_geometric_and_below_the_last_epoch() -> None:
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(1, 3, 10) == [1, 3, 9]
    assert rungs(2, 2, 9) == [2, 4, 8]
    assert rungs(5, 3, 5) == []


def test_nondominated_sorting_and_crowding() -> None:
    # (accuracy up, latency down)
    pts = [(0.9, 3.0), (0.8, 1.0), (0.85, 2.0), (0.7, 2.5), (0.6, 4.0), (0.85, 2.0)]
    assert nondominated_fronts(pts) == [0, 0, 0, 1, 2, 0]
    crowd = crowding_distances(pts, [0, 1, 2, 5])
    assert crowd[0] == math.inf and crowd[1] == math.inf
    # 2 and 5 are equal: each has the other for a neighbour on one side.
    assert 0 < crowd[2] < math.inf and 0 < crowd[5] < math.inf
    assert crowding_distances(pts, [3, 4]) == {3: math.inf, 4: math.inf}
    # The ends of the first front come first; a point of the second front after the whole first.
    assert rank_at_rung(pts, 0) == (0, 0)
    assert rank_at_rung(pts, 3) == (4, 1)
    assert rank_at_rung(pts, 4) == (5, 2)


def _study_at_rung(points: list[tuple[float, float]], state: TrialState) -> optuna.Study:
    study = optuna.create_study(directions=DIRECTIONS)
    for acc, lat in points:
        attrs: dict[str, Any] = {TrialAttr.CURVE: [acc, acc + 0.01], TrialAttr.LATENCY_MS: lat}
        if state is TrialState.COMPLETE:
            study.add_trial(
                optuna.trial.create_trial(values=[acc, lat], user_attrs=attrs, state=state)
            )
        else:
            study.add_trial(optuna.trial.create_trial(user_attrs=attrs, state=state))
    return study


def test_a_trial_goes_on_only_in_the_best_third_of_its_rung() -> None:
    others = [(0.9, 3.0), (0.8, 1.0), (0.85, 2.0), (0.88, 2.5), (0.82, 1.5)]
    study = _study_at_rung(others, TrialState.COMPLETE)
    sched = RungScheduler(eta=3, min_epochs=1, epochs=9)
    me = study.ask().number
    # Not a rung (epoch 2 of 9): no decision at all, however bad.
    assert sched.decide(study, me, 1, 0.1, 9.0) is None
    # 6 trials at rung 1: the best 2 go on. Dominated by everyone: stopped, with the reason.
    stop = sched.decide(study, me, 0, 0.5, 5.0)
    assert stop is not None and stop.rung == 1
    assert stop.reason.startswith("stopped at rung 1 of 2 (epoch 1): ranked 6 of 6")
    assert "the best 2 (1/3) go on" in stop.reason
    # The fastest model yet is an end of the first front: it goes on whatever its accuracy.
    assert sched.decide(study, me, 0, 0.5, 0.5) is None
    # The most accurate model yet, too.
    assert sched.decide(study, me, 0, 0.95, 4.0) is None
    # On the front but in its crowded middle: ranked after the two ends.
    stop = sched.decide(study, me, 0, 0.86, 2.2)
    assert stop is not None and "front 1" in stop.reason


def test_failed_attempts_and_trials_that_did_not_reach_the_rung_are_not_counted() -> None:
    study = _study_at_rung([(0.9, 1.0), (0.9, 1.0)], TrialState.FAIL)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.RUNNING,
            user_attrs={TrialAttr.CURVE: [0.99], TrialAttr.LATENCY_MS: 0.1},
        )
    )
    me = study.ask().number
    sched = RungScheduler(eta=3, min_epochs=1, epochs=9)
    # At rung 3 nobody else has 3 epochs: alone, it goes on.
    assert sched.decide(study, me, 2, 0.1, 9.0) is None
    # At rung 1 only the running trial counts (the failed attempts' retries carry their curves).
    stop = sched.decide(study, me, 0, 0.1, 9.0)
    assert stop is not None and "ranked 2 of 2" in stop.reason


def _record(epoch: int, acc: float) -> EpochRecord:
    return EpochRecord(epoch, 1.0, 1.0, 0.0, 0.0, 0.1, acc, [acc], 0.5)


def test_the_reporter_records_the_rung_and_the_stop() -> None:
    study = _study_at_rung([(0.9, 1.0), (0.95, 0.5)], TrialState.COMPLETE)
    sched = RungScheduler(eta=2, min_epochs=1, epochs=4)

    def reporter(trial: optuna.Trial) -> EpochReporter:
        return EpochReporter(
            trial, latency_ms=2.0, stopper=sched, epochs=4, stop_event=threading.Event()
        )

    bad = study.ask()
    with pytest.raises(optuna.TrialPruned, match="stopped at rung 1"):
        reporter(bad)(_record(0, 0.5))
    attrs = study.trials[bad.number].user_attrs
    assert attrs[TrialAttr.RUNG] == 1 and attrs[TrialAttr.STOPPED_EPOCH] == 1
    assert attrs[TrialAttr.CURVE] == [0.5]  # its curve stays
    study.tell(bad, state=TrialState.PRUNED)

    good = study.ask()
    report = reporter(good)
    report(_record(0, 0.99))  # the most accurate: goes on
    assert study.trials[good.number].user_attrs[TrialAttr.RUNG] == 1
    report(_record(1, 0.99))  # rung 2: nobody else has 2 epochs
    assert study.trials[good.number].user_attrs[TrialAttr.RUNG] == 2
    report(_record(2, 0.99))
    report(_record(3, 0.99))  # the last epoch is never stopped
    assert TrialAttr.STOPPED_EPOCH not in study.trials[good.number].user_attrs


def _space(tmp_path: Path, section: str, *, epochs: int = 4) -> SearchSpace:
    text = write_space(tmp_path, epochs=epochs).read_text() + section
    return parse_space(text, source="scheduler.toml")


def test_the_scheduler_section(tmp_path: Path) -> None:
    asha = _space(tmp_path, '\n[scheduler]\nkind = "asha"\neta = 2\nmin_epochs = 1\n')
    assert asha.scheduler_kind is SchedulerKind.ASHA
    stopper = early_stopper(asha)
    assert isinstance(stopper, RungScheduler) and stopper.rungs == [1, 2]
    # Stored in the study and read back by a worker unchanged.
    assert early_stopper(SearchSpace.from_dict(asha.to_dict())) == stopper
    # Without the section, [pruner] decides as it always did.
    # (The tiny space of the tests has [pruner] enabled = false.)
    off = _space(tmp_path, "")
    assert off.scheduler_kind is SchedulerKind.NONE and early_stopper(off) is None
    text = write_space(tmp_path).read_text().replace("enabled = false", "enabled = true")
    plain = parse_space(text, source="pruner.toml")
    assert plain.scheduler_kind is SchedulerKind.DOMINANCE
    assert isinstance(early_stopper(plain), ParetoPruner)
    none = _space(tmp_path, '\n[scheduler]\nkind = "none"\n')
    assert early_stopper(none) is None
    # The example spaces parse with it.
    for path in sorted(Path("search_spaces").glob("*.toml")):
        load_space(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('kind = "hyperband"', r"scheduler\.kind\] must be one of asha, dominance, none"),
        ('kind = "asha"\neta = 1', r"scheduler\.eta"),
        ('kind = "asha"\nmin_epochs = 4', r"scheduler\.min_epochs.*below \[train\] epochs \(4\)"),
        ('kind = "asha"\nrungs = [1, 2]', r"scheduler.*rungs"),
    ],
)
def test_a_bad_scheduler_section_is_one_clear_error(
    tmp_path: Path, section: str, message: str
) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        _space(tmp_path, f"\n[scheduler]\n{section}\n")


def test_dominance_with_the_pruner_off_is_a_contradiction(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="scheduler.kind.*remove one"):
        _space(tmp_path, '\n[scheduler]\nkind = "dominance"\n')  # [pruner] enabled = false


def test_a_real_study_stops_trials_at_rungs(tmp_path: Path) -> None:
    # Random sampling here; TPE and NSGA-II with the scheduler: tests/search/test_simulate.py.
    path = write_space(tmp_path, epochs=4, steps=3)
    path.write_text(path.read_text() + '\n[scheduler]\nkind = "asha"\neta = 4\nmin_epochs = 1\n')
    study = automl.create_study(
        path, storage=f"sqlite:///{tmp_path / 's.db'}", artifact_dir=tmp_path / "art"
    )
    stats = study.optimize(n_trials=6)
    trials = study.trials()
    pruned = [t for t in trials if t.state is TrialState.PRUNED]
    assert stats.completed + stats.pruned == 6 and pruned
    for t in pruned:
        # Stopped at a rung (1, or 4 x 1 = 4 is the last epoch: never), its curve kept.
        assert t.user_attrs[TrialAttr.STOPPED_EPOCH] == t.user_attrs[TrialAttr.RUNG] == 1
        assert len(t.user_attrs[TrialAttr.CURVE]) == 1
        assert str(t.user_attrs[TrialAttr.PRUNED_REASON]).startswith("stopped at rung 1 of 1")
    for t in trials:
        if t.state is TrialState.COMPLETE:
            assert t.user_attrs[TrialAttr.RUNG] == 1
            assert len(t.user_attrs[TrialAttr.CURVE]) == 4
    # Nothing left behind: a stopped trial's checkpoint is removed like a finished one's.
    assert list((tmp_path / "art").glob("checkpoints/*/*.pt")) == []
    # What a user sees: each trial's epochs, rung and reason, and hypervolume against compute.
    url = f"sqlite:///{tmp_path / 's.db'}"
    status = run_cli("status", "--storage", url, "--study", "tiny", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "early stopping: asha, eta 4, rungs at epochs [1] of 4" in out
    for t in pruned:
        assert re.search(
            rf"#{t.number}\s.*\sstopped\s+1\s+1 of 1 \(epoch 1\)\s.*"
            r"\sstopped at rung 1 of 1 \(epoch 1\)",
            out,
        )
    assert "hypervolume against compute" in out and "epochs" in out
    report = run_cli("report", "--storage", url, "--study", "tiny", "--out", "rep", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    rows = list(csv.DictReader((tmp_path / "rep" / "trials.csv").open()))
    said = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "stopped"}
    assert [r["state"] for r in rows] == [said[t.state] for t in trials]
    assert {r["rung"] for r in rows} == {"1"}
    hv = list(csv.DictReader((tmp_path / "rep" / "hypervolume_compute.csv").open()))
    assert [int(r["epochs"]) for r in hv] == sorted(int(r["epochs"]) for r in hv)
    assert int(hv[-1]["epochs"]) == sum(len(t.user_attrs[TrialAttr.CURVE]) for t in trials)
    assert float(hv[-1]["hypervolume"]) > 0
    assert (tmp_path / "rep" / "hypervolume_compute.png").read_bytes()[:4] == b"\x89PNG"


def test_compute_counts_a_retried_attempt_once() -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    curve: dict[str, Any] = {TrialAttr.CURVE: [0.5, 0.6], TrialAttr.EPOCH_SECONDS: [1.0, 1.0]}
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={**curve}))
    study.add_trial(
        optuna.trial.create_trial(
            values=[0.7, 2.0],
            user_attrs={
                TrialAttr.CURVE: [0.5, 0.6, 0.7],
                TrialAttr.EPOCH_SECONDS: [1.0, 1.0, 1.0],
            },
            system_attrs={"failed_trial": 0, "retry_history": [0]},
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            user_attrs={TrialAttr.CURVE: [0.2], TrialAttr.EPOCH_SECONDS: [2.0]},
        )
    )
    points = hypervolume_by_compute(study.trials, [0.0, 4.0])
    assert [(p.trials_ended, p.epochs, p.seconds) for p in points] == [(1, 3, 3.0), (2, 4, 5.0)]
    assert points[-1].hypervolume == pytest.approx(0.7 * 2.0)
