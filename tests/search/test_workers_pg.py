"""Several worker processes sharing one PostgreSQL study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import automl
from automl.search.dedup import NOT_TRAINED
from automl.store.attrs import TrialAttr
from tests.helpers import spawn_worker, trials_done, write_space


@pytest.mark.postgres
@pytest.mark.xdist_group("pg-workers")
def test_two_workers_complete_exactly_n_trials(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    n = 6
    study = automl.create_study(
        write_space(tmp_path, steps=2),
        storage=pg_url,
        study_name=study_name,
        artifact_dir=tmp_path / "art",
    )
    study.add_trials(n - study.waiting_trials())
    counts = [tmp_path / f"worker-{i}.json" for i in range(2)]
    procs = [spawn_worker(pg_url, study_name, tmp_path, stats_json=c) for c in counts]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    # A trial whose configuration was training in the other worker at that moment trains nothing
    # and a new trial takes its place (automl.search.dedup): n trials ran, none twice at once.
    not_trained = [
        t
        for t in trials
        if t.state is TrialState.FAIL
        and str(t.user_attrs.get(TrialAttr.FAIL_REASON)).startswith(NOT_TRAINED)
    ]
    ran = [t for t in trials if t not in not_trained]
    assert len(ran) == n, [
        (t.number, t.state, t.user_attrs.get(TrialAttr.FAIL_REASON)) for t in trials
    ]
    assert [t.state for t in ran] == [TrialState.COMPLETE] * n
    # Each worker reports its own count; together they ran every trial, none twice.
    assert sum(trials_done(c) for c in counts) == n, logs
    starts = [t.datetime_start for t in ran]
    assert len(set(starts)) == n
