"""The study API on every storage, for real: SQLite files and the PostgreSQL server."""

from __future__ import annotations

import multiprocessing as mp
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import automl
from automl.errors import SearchSpaceError, StorageError
from automl.search.front import network_front
from automl.search.study import METRIC_NAMES
from automl.store.attrs import StudyAttr, TrialAttr
from tests.helpers import write_space


def test_create_run_and_resume(storage_url: str, study_name: str, tmp_path: Path) -> None:
    space = write_space(tmp_path)
    study = automl.create_study(
        space, storage=storage_url, study_name=study_name, artifact_dir=tmp_path / "art"
    )
    stats = study.optimize(n_trials=3)
    assert stats.completed == 3
    # Resume: the same study, its trials kept, more trials added.
    again = automl.create_study(space, storage=storage_url, study_name=study_name)
    assert len(again.trials()) == 3
    assert again.artifact_dir == (tmp_path / "art").resolve()
    again.optimize(n_trials=1)
    assert len(again.trials(states=(TrialState.COMPLETE,))) == 4
    # Plain Optuna opens it, with our metric names and attributes.
    plain = optuna.load_study(study_name=study_name, storage=storage_url)
    assert plain.metric_names == METRIC_NAMES
    assert [d.name for d in plain.directions] == ["MAXIMIZE", "MINIMIZE"]
    t = plain.trials[0]
    assert t.params == {"split_factor": 1, "width_mult": 1.0}  # the baseline comes first
    for attr in (
        TrialAttr.N_PARAMS,
        TrialAttr.FLOPS,
        TrialAttr.MEMBER_ACCURACIES,
        TrialAttr.TEST_ACCURACY,
        TrialAttr.LATENCY_IQR_MS,
        TrialAttr.DEVICE,
        TrialAttr.CURVE,
    ):
        assert attr in t.user_attrs, attr
    assert len(t.user_attrs[TrialAttr.CURVE]) == 2
    arts = optuna.artifacts.get_all_artifact_meta(plain.trials[1], storage=plain._storage)
    assert sorted(a.filename for a in arts) == ["learning_curve.json", "weights.pt"]


def test_space_round_trips_through_the_study(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    space = automl.load_space(write_space(tmp_path))
    automl.create_study(space, storage=storage_url, study_name=study_name)
    loaded = automl.load_study(study_name, storage_url)
    assert loaded.space.to_dict() | {"source": ""} == space.to_dict() | {"source": ""}
    raw = optuna.load_study(study_name=study_name, storage=storage_url).user_attrs[StudyAttr.SPACE]
    assert raw["model"]["name"] == "convnet_s"


def test_a_different_space_under_the_same_name_is_refused(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    automl.create_study(write_space(tmp_path, epochs=2), storage=storage_url, study_name=study_name)
    other = write_space(tmp_path, name="other", epochs=3)
    with pytest.raises(StorageError, match="already holds a different search space"):
        automl.create_study(other, storage=storage_url, study_name=study_name)
    with pytest.raises(StorageError, match="already exists"):
        automl.create_study(
            write_space(tmp_path, epochs=2),
            storage=storage_url,
            study_name=study_name,
            load_if_exists=False,
        )


def test_pareto_front_agrees_with_optuna(storage_url: str, study_name: str, tmp_path: Path) -> None:
    study = automl.create_study(write_space(tmp_path), storage=storage_url, study_name=study_name)
    study.optimize(n_trials=5)
    front = study.pareto_front()
    points = network_front(study.trials())
    best = optuna.load_study(study_name=study_name, storage=storage_url).best_trials
    # One record per configuration of the denoised front; every trial Optuna calls best is one
    # of them, a repeat of one, or left to a neighbour inside its measured spread.
    assert [r.number for r in front] == [p.number for p in points]
    covered = {n for p in points for n in (*p.trials, *p.reused, *p.absorbed)}
    assert {t.number for t in best} <= covered
    assert [r.latency_ms for r in front] == sorted(r.latency_ms for r in front)
    for p, r in zip(points, front, strict=True):
        if len(p.trials) == 1:
            t = study.optuna_study.trials[r.number]
            assert (r.accuracy, r.latency_ms) == tuple(t.values)
        assert r.n_params is not None and len(r.member_accuracies) == r.split_factor


def _create(args: tuple[str, str, str]) -> int:
    space, url, name = args
    study = automl.create_study(space, storage=url, study_name=name)
    return len(study.trials())


def test_baseline_enqueued_once_when_workers_start_together(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    space = str(write_space(tmp_path))
    # Forked from one server that imported the package once: four processes that start within
    # milliseconds of each other (and not each paying seconds of imports, on two cores).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["automl"])
    with ctx.Pool(4) as pool:
        pool.map(_create, [(space, storage_url, study_name)] * 4)
    trials = optuna.load_study(study_name=study_name, storage=storage_url).trials
    baselines = [
        t for t in trials if t.system_attrs.get("fixed_params", {}).get("split_factor") == 1
    ]
    assert len(baselines) == 1 and len(trials) == 1


def test_bad_space_writes_nothing(storage_url: str, study_name: str, tmp_path: Path) -> None:
    before = optuna.get_all_study_names(storage_url)
    bad = tmp_path / "bad.toml"
    bad.write_text(write_space(tmp_path).read_text().replace('name = "convnet_s"', 'name = "nope"'))
    with pytest.raises(SearchSpaceError):
        automl.create_study(bad, storage=storage_url, study_name=study_name)
    # The PostgreSQL database is shared with the suite's other worker, which may add its own
    # studies meanwhile: nothing under the name this call was given, and nothing removed.
    after = optuna.get_all_study_names(storage_url)
    assert study_name not in after
    assert set(before) <= set(after)


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://root@127.0.0.1/test", "unsupported backend 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to the study database"),
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
    ],
)
def test_bad_urls_are_clear_errors(url: str, pattern: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=pattern):
        automl.create_study(write_space(tmp_path), storage=url)


def test_passwords_never_appear_in_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        automl.create_study(
            write_space(tmp_path), storage="postgresql://bob:hunter2@127.0.0.1:1/test"
        )
    assert "hunter2" not in str(info.value)


def test_load_unknown_study_lists_existing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    automl.create_study(write_space(tmp_path), storage=url, study_name="present")
    with pytest.raises(StorageError, match="no study named 'absent'.*present"):
        automl.load_study("absent", url)


def _seconds(t: optuna.trial.FrozenTrial) -> float:
    assert t.datetime_start is not None and t.datetime_complete is not None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def test_time_budget_ends_the_search_and_loses_nothing(tmp_path: Path) -> None:
    # Only what the budget guarantees is asserted, not how long the run took (this machine is
    # shared): no trial starts after the budget, the search ends long before 30 trials of a
    # budget of 3, and every trial asked for is done or still waiting.
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    study = automl.create_study(
        write_space(tmp_path, epochs=4, steps=12), storage=url, artifact_dir=tmp_path / "art"
    )
    study.optimize(n_trials=1)
    budget = 3 * _seconds(study.trials()[0])
    t0 = datetime.now()
    study.optimize(n_trials=30, budget_s=budget)
    trials = study.trials()
    starts = [t.datetime_start for t in trials[1:] if t.datetime_start is not None]
    assert starts, "the first trial of a budget always starts"
    assert all(s < t0 + timedelta(seconds=budget) for s in starts)
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    waiting = [t for t in trials if t.state is TrialState.WAITING]
    assert len(done) + len(waiting) == 31, [t.state for t in trials]
    assert waiting, "30 trials do not fit in the time of 3"
    # A trial the budget stopped failed as stopped and waits as a retry with its parameters.
    stopped = [t for t in trials if t.state is TrialState.FAIL]
    assert len(stopped) <= 1
    for t in stopped:
        assert "worker stopped" in str(t.user_attrs[TrialAttr.FAIL_REASON])
        assert any(w.system_attrs.get("failed_trial") == t.number for w in waiting)
    with pytest.raises(automl.errors.ConfigError, match="budget_s"):
        study.optimize(n_trials=1, budget_s=0)


def test_a_trial_running_when_the_budget_is_spent_stops_and_resumes(tmp_path: Path) -> None:
    # The same trial twice, in two studies (within one study the second would reuse the first's
    # outcome): the first run says how long it takes outside and inside training; the second gets
    # its time outside training and a third of its training, so that the budget ends after its
    # first epochs (a stop during the measurement re-enqueues before training, with nothing to
    # resume) and long before its last of 8.
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    space = write_space(tmp_path, epochs=8, steps=24)
    for name in ("warm-up", "timing"):  # the first run here also loads the data set
        timing = automl.create_study(
            space, storage=url, study_name=name, artifact_dir=tmp_path / "art"
        )
        timing.optimize(n_trials=1)
    first = timing.trials()[0]
    study = automl.create_study(space, storage=url, artifact_dir=tmp_path / "art")
    training = float(first.user_attrs[TrialAttr.TRAIN_SECONDS])
    outside = _seconds(first) - training
    budget = outside + training / 3
    for _ in range(3):
        study.optimize(budget_s=budget)  # runs its waiting baseline (or its retry)
        stopped = study.trials()[-2]
        # On a busy machine the measurement can take the whole budget: the stop then lands
        # before the first epoch, with nothing to resume; the retry runs with more time.
        if stopped.user_attrs.get(TrialAttr.CURVE):
            break
        budget += training / 4
    assert stopped.params == first.params
    assert stopped.state is TrialState.FAIL
    assert "worker stopped" in str(stopped.user_attrs[TrialAttr.FAIL_REASON])
    checkpoints = sorted((tmp_path / "art" / "checkpoints").glob("*/*.pt"))
    assert len(checkpoints) == 1, "the stopped trial keeps its checkpoint"
    (retry,) = study.trials(states=(TrialState.WAITING,))
    assert retry.params == first.params
    study.optimize()
    resumed = study.trials()[-1]
    assert resumed.state is TrialState.COMPLETE
    assert sorted((tmp_path / "art" / "checkpoints").glob("*/*.pt")) == []
