"""Fault tests with real worker processes and the real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.storages import BaseStorage
from optuna.trial import TrialState

import automl
from automl.search.dedup import NOT_TRAINED
from automl.search.runner import run_trials
from automl.search.trial import Claimed, TrialEnv, TrialLife
from automl.store.attrs import TrialAttr
from automl.store.storage import StorageSettings
from tests.helpers import spawn_worker, trials_done, unpooled_storage, write_space

# One xdist group: these start many worker processes against the one server; side by side
# with each other they would compete for its connections and for the two cores.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("pg-workers")]

# Epochs long enough (about half a second each) to interrupt a trial in the middle.
EPOCHS, STEPS = 4, 12
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]


def _worker(pg_url: str, study: str, cwd: Path, *extra: str, **kw: Any) -> subprocess.Popen[str]:
    return spawn_worker(pg_url, study, cwd, *HEARTBEAT, *extra, **kw)


def _study(
    pg_url: str, name: str, tmp_path: Path, n: int, epochs: int = EPOCHS
) -> automl.AutoMLStudy:
    space = write_space(tmp_path, epochs=epochs, steps=STEPS)
    study = automl.create_study(
        space,
        storage=pg_url,
        study_name=name,
        artifact_dir=tmp_path / "art",
        settings=StorageSettings(heartbeat_interval=1, grace_period=3),
    )
    study.add_trials(n - study.waiting_trials())
    return study


def _wait_for_epochs(
    pg_url: str, name: str, number: int, epochs: int, timeout: float = 120, running: bool = False
) -> None:
    """Wait until trial ``number`` has at least ``epochs`` epochs on its curve (and, with
    ``running``, is RUNNING then: claimed by a worker)."""
    # One storage for all the looks, without a pool: a storage per look would leave its pooled
    # connections open until collected, and a poll of 10 looks a second runs the server out.
    storage = unpooled_storage(pg_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trials = optuna.load_study(study_name=name, storage=storage).trials
        if (
            len(trials) > number
            and (not running or trials[number].state is TrialState.RUNNING)
            and len(trials[number].user_attrs.get(TrialAttr.CURVE, [])) >= epochs
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"trial {number} did not reach epoch {epochs}")


def _curve_length(pg_url: str, name: str, number: int) -> int:
    trial = optuna.load_study(study_name=name, storage=pg_url).trials[number]
    return len(trial.user_attrs.get(TrialAttr.CURVE, []))


def _uninterrupted_accuracy(tmp_path: Path) -> float:
    """Trial 0 (the baseline, fixed parameters and seed) run without interruption elsewhere."""
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    ref = automl.create_study(
        write_space(tmp_path, epochs=EPOCHS, steps=STEPS),
        storage=url,
        artifact_dir=tmp_path / "ref-art",
    )
    ref.optimize(n_trials=1)
    return float(ref.trials()[0].values[0])


def test_kill_9_mid_trial_is_retried_and_resumed_from_its_checkpoint(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    _study(pg_url, study_name, tmp_path, n=2)
    a = _worker(pg_url, study_name, tmp_path)
    _wait_for_epochs(pg_url, study_name, 0, 2)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    b = _worker(pg_url, study_name, tmp_path)
    out = b.communicate(timeout=300)[0]
    assert b.returncode == 0, out
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 2, states
    assert trials[0].state is TrialState.FAIL  # failed as stale...
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state is TrialState.COMPLETE  # ...and completed by the other worker
    assert retry.params == trials[0].params
    assert retry.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 2
    assert len(retry.user_attrs[TrialAttr.CURVE]) == EPOCHS
    # The resumed trial ends where an uninterrupted run of the same trial ends.
    assert retry.values[0] == pytest.approx(_uninterrupted_accuracy(tmp_path), abs=0.01)


def test_sigterm_exits_0_in_grace_and_the_trial_is_retried(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    _study(pg_url, study_name, tmp_path, n=1)
    a = _worker(pg_url, study_name, tmp_path)
    _wait_for_epochs(pg_url, study_name, 0, 1)
    a.send_signal(signal.SIGTERM)
    out = a.communicate(timeout=60)[0]
    assert a.returncode == 0, out
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    assert trials[0].state is TrialState.FAIL
    # At an epoch boundary, not after the whole trial: counted in epochs, not in seconds.
    assert 1 <= len(trials[0].user_attrs[TrialAttr.CURVE]) < EPOCHS
    assert "worker stopped" in trials[0].user_attrs[TrialAttr.FAIL_REASON]
    assert trials[1].state is TrialState.WAITING  # re-enqueued at once, no grace period needed
    b = _worker(pg_url, study_name, tmp_path)
    out = b.communicate(timeout=300)[0]
    assert b.returncode == 0, out
    retry = optuna.load_study(study_name=study_name, storage=pg_url).trials[1]
    assert (
        retry.state is TrialState.COMPLETE and retry.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 1
    )


def _pg_restart_command() -> list[str] | None:
    if (
        os.geteuid() != 0
        or shutil.which("pg_ctlcluster") is None
        or not Path("/etc/postgresql").is_dir()
    ):
        return None
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]


@pytest.mark.pg_restart
def test_postgres_restart_during_a_study_loses_no_trial(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    restart = _pg_restart_command()
    if restart is None:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster (a local Debian cluster)")
    _study(pg_url, study_name, tmp_path, n=3)
    a = _worker(pg_url, study_name, tmp_path)
    _wait_for_epochs(pg_url, study_name, 0, EPOCHS)  # the first trial has (nearly) finished
    _wait_for_epochs(pg_url, study_name, 1, 1)
    subprocess.run(restart, check=True, timeout=120)
    out = a.communicate(timeout=300)[0]
    assert a.returncode == 0, out
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 3, [(t.number, t.state) for t in trials]
    assert {t.number for t in complete} >= {0}


def test_eight_workers_complete_exactly_n_trials(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    n = 16
    space = write_space(tmp_path, epochs=1, steps=1)
    study = automl.create_study(
        space, storage=pg_url, study_name=study_name, artifact_dir=tmp_path / "art"
    )
    study.add_trials(n - study.waiting_trials())
    counts = [tmp_path / f"worker-{i}.json" for i in range(8)]
    procs = [_worker(pg_url, study_name, tmp_path, threads=1, stats_json=c) for c in counts]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, logs
    for log in logs:
        assert "deadlock" not in log.lower() and "Traceback" not in log, log
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    # A trial whose configuration was training elsewhere at that moment trains nothing and a new
    # trial takes its place: n trials are trained (or take a stored outcome), none twice at once.
    not_trained = [
        t
        for t in trials
        if t.state is TrialState.FAIL
        and str(t.user_attrs.get(TrialAttr.FAIL_REASON)).startswith(NOT_TRAINED)
    ]
    ran = [t for t in trials if t not in not_trained]
    assert len(ran) == n
    assert all(t.state is TrialState.COMPLETE for t in ran)
    assert sum(trials_done(c) for c in counts) == n


class _FaultyLife(TrialLife):
    """The real trial, where trial 1 runs out of memory (simulated) and trial 2 diverges."""

    def steps(self) -> tuple[float, float]:
        if self.trial.number == 1:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (simulated)"
            )
        if self.trial.number == 2:  # a learning rate no network survives: the loss is non-finite
            self.space = dataclasses.replace(
                self.space, train=dataclasses.replace(self.space.train, lr=1e12, warmup_epochs=0.0)
            )
        return super().steps()


def _faulty(
    env: TrialEnv, study: optuna.Study, storage: BaseStorage, claimed: Claimed
) -> TrialState:
    return _FaultyLife(env, study, storage, claimed).run()


def test_non_finite_loss_and_out_of_memory_fail_only_their_trial(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    study = automl.create_study(
        write_space(tmp_path, epochs=2, steps=8),
        storage=pg_url,
        study_name=study_name,
        artifact_dir=tmp_path / "art",
    )
    study.add_trials(3)
    env = TrialEnv(study.space, device=torch.device("cpu"), artifact_dir=tmp_path / "art")
    stats = run_trials(study.optuna_study, study.storage, env, run=_faulty)
    trials = study.optuna_study.trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert "OutOfMemoryError" in trials[1].user_attrs[TrialAttr.FAIL_REASON]
    assert "DivergedError" in trials[2].user_attrs[TrialAttr.FAIL_REASON]
    assert "non-finite" in trials[2].user_attrs[TrialAttr.FAIL_REASON]
    assert (stats.completed, stats.failed) == (2, 2)


def test_a_trial_whose_worker_keeps_dying_fails_for_good_and_the_study_goes_on(
    pg_url: str, study_name: str, tmp_path: Path
) -> None:
    # SIGSEGV from outside ends the worker exactly as a crash in native code (a segfault in a
    # kernel) would: no Python handler runs, the trial stops sending heartbeats.
    # Two attempts are each killed after an epoch of their own, with epochs left: on a fast
    # CPU the retry can train two half-second epochs between the look that sees its first one
    # and the signal, so the trial is longer than the other fault tests' by that margin.
    epochs = EPOCHS + 2
    study = _study(pg_url, study_name, tmp_path, n=1, epochs=epochs)
    retry_flag = ("--max-retry", "1")
    inherited = 0
    for number in (0, 1):  # the first attempt, then its single retry
        w = _worker(pg_url, study_name, tmp_path, *retry_flag)
        # The retry inherits the first attempt's curve and resumes after it: it is killed once it
        # has trained an epoch of its own, not when the inherited curve first shows (then it may
        # not have been claimed yet, and the next worker would run it to the end).
        _wait_for_epochs(pg_url, study_name, number, inherited + 1, running=True)
        w.send_signal(signal.SIGSEGV)
        assert w.wait(timeout=30) == -signal.SIGSEGV
        inherited = _curve_length(pg_url, study_name, number)
        assert inherited < epochs, f"attempt {number} finished before it was killed"
    study.add_trials(1)  # the study goes on with a new trial
    stats = tmp_path / "stats.json"
    c = _worker(pg_url, study_name, tmp_path, *retry_flag, stats_json=stats)
    out = c.communicate(timeout=300)[0]
    assert c.returncode == 0, out
    trials = optuna.load_study(study_name=study_name, storage=pg_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    first, retry = trials[0].user_attrs, trials[1].user_attrs
    # Its process ran on this machine: the next worker sees it is gone, without the grace.
    assert "on this machine) is gone" in first[TrialAttr.FAIL_REASON]
    assert "retried (retry 1 of 1)" in first[TrialAttr.FAIL_REASON]
    assert "not retried" in retry[TrialAttr.FAIL_REASON]
    assert retry[TrialAttr.RETRIED_AFTER] == first[TrialAttr.FAIL_REASON]
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials_done(stats) == 1  # the new trial, and no third attempt at trial 0
