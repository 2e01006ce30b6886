"""Several worker processes sharing one PostgreSQL study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import automl
from tests.conftest import write_space


@pytest.mark.postgres
def test_two_workers_complete_exactly_n_trials(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    n = 8
    study = automl.create_study(
        write_space(tmp_path, steps=3),
        storage=pg_url,
        study_name=study_name,
        artifact_dir=tmp_path / "art",
    )
    study.add_trials(n - study.waiting_trials())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers",
                "--storage",
                pg_url,
                "--study",
                study_name,
                "--no-progress",
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    assert len(trials) == n
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n
    assert sorted(t.number for t in trials) == list(range(n))
    # Both workers took part (each logs its own count), and no trial ran twice.
    done = [int(log.split("worker done: ")[1].split(" complete")[0]) for log in logs]
    assert sum(done) == n, logs
    starts = [t.datetime_start for t in trials]
    assert len(set(starts)) == n
