"""Interrupting a search, and errors that are not the trial's fault: real processes, real SQLite.

A stopped trial is failed with its reason and its retry enqueued at once, so the next run resumes
it from its checkpoint without waiting out the heartbeat grace period (300 s by default).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

import automl
from automl.errors import StorageError
from automl.search.study import DIRECTIONS
from automl.search.trial import HostFault
from automl.search.worker import WorkerOptions, install_stop_handlers, run_worker
from automl.store.attrs import TrialAttr
from automl.store.retry import db_retry
from tests.helpers import free_port, unpooled_storage, write_space

# Epochs of half a second (idle machine) to a few seconds (loaded): long enough to interrupt a
# trial between two of them.
EPOCHS, STEPS = 4, 40


def _search(tmp_path: Path, space: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("AUTOML_STORAGE", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "automl",
            "search",
            "--space",
            str(space),
            "--storage",
            f"sqlite:///{tmp_path / 's.db'}",
            "--artifacts",
            str(tmp_path / "art"),
            "--n-trials",
            "1",
            "--no-progress",
            *extra,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


_STORAGES: dict[Path, optuna.storages.RDBStorage] = {}


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    # One storage per database for every look (opening one takes a while); no pooled connection,
    # so no lock is held between looks.
    if tmp_path not in _STORAGES:
        _STORAGES[tmp_path] = unpooled_storage(f"sqlite:///{tmp_path / 's.db'}")
    return optuna.load_study(study_name="tiny", storage=_STORAGES[tmp_path]).trials


def _wait_for_epoch(tmp_path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            trials = _trials(tmp_path)
        except (KeyError, sqlalchemy.exc.OperationalError):  # not created yet
            trials = []
        if trials and trials[0].user_attrs.get(TrialAttr.CURVE):
            return
        time.sleep(0.05)
    raise AssertionError("trial 0 did not finish an epoch")


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """The process's output up to the chunk holding ``text`` (read from the pipe's descriptor, so
    that ``communicate`` gets the rest)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def _checkpoints(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "art" / "checkpoints").glob("*/*.pt"))


@pytest.mark.parametrize(("sig", "times"), [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_interrupted_search_leaves_the_baseline_waiting_and_the_rerun_resumes_it(
    tmp_path: Path, sig: signal.Signals, times: int
) -> None:
    space = write_space(tmp_path, epochs=EPOCHS, steps=STEPS)
    proc = _search(tmp_path, space)
    _wait_for_epoch(tmp_path, proc)
    head = ""
    for i in range(times):
        proc.send_signal(sig)
        if i + 1 < times:
            # Two signals sent too close together arrive as one: the next is sent once the
            # process has said it handled this one.
            head += _read_until(proc, "received: finishing the current epoch")
    out = head + proc.communicate(timeout=60)[0]
    # Once: at the next epoch boundary; twice: at once, with the same trial left to retry.
    assert proc.returncode == (130 if times == 2 else 128 + sig), out
    assert "Traceback" not in out, out
    first, retry = _trials(tmp_path)
    # Stopped mid-trial, not after it: what it trained is fewer epochs than the schedule (a
    # count, not a wall-clock bound, which a loaded machine would break).
    assert 1 <= len(first.user_attrs[TrialAttr.CURVE]) < EPOCHS
    assert first.state is TrialState.FAIL
    assert "worker stopped" in first.user_attrs[TrialAttr.FAIL_REASON]
    assert retry.state is TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert retry.params == first.params  # the K=1 baseline, not a fresh sample
    assert len(_checkpoints(tmp_path)) == 1

    # The rerun does not wait for the interrupted trial to go stale (300 s): it resumes it now.
    again = _search(tmp_path, space)
    out = again.communicate(timeout=240)[0]
    assert again.returncode == 0, out
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE], out
    assert trials[1].user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 1
    assert len(trials[1].user_attrs[TrialAttr.CURVE]) == EPOCHS
    assert _checkpoints(tmp_path) == []  # a finished trial leaves no checkpoint


def test_a_killed_search_is_resumed_by_the_rerun_without_waiting_out_the_grace(
    tmp_path: Path,
) -> None:
    # kill -9 sends no signal to handle: the trial stays RUNNING. Its process ran on this
    # machine and is gone, so the rerun retries it at once instead of after 300 s of grace.
    space = write_space(tmp_path, epochs=EPOCHS, steps=STEPS)
    proc = _search(tmp_path, space)
    _wait_for_epoch(tmp_path, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert [t.state for t in _trials(tmp_path)] == [TrialState.RUNNING]
    again = _search(tmp_path, space)
    out = again.communicate(timeout=280)[0]
    assert again.returncode == 0, out
    # The retry is the one trial asked for again, not one more beside it.
    first, retry = _trials(tmp_path)
    assert first.state is TrialState.FAIL and retry.state is TrialState.COMPLETE, out
    assert retry.system_attrs["failed_trial"] == 0
    assert f"process {proc.pid} on this machine) is gone" in first.user_attrs[TrialAttr.FAIL_REASON]
    assert retry.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 1


def test_liveness_tags_name_only_processes_of_this_machine_that_are_gone() -> None:
    from automl.store.liveness import gone_here, process_tag

    here = process_tag()
    host, boot, _ = here.rsplit("|", 2)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert gone_here(f"{host}|{boot}|{child.pid}") == child.pid
    assert gone_here(here) is None  # this process
    assert gone_here(f"{host}|{boot}|1") is None  # alive
    assert gone_here(f"another-host|{boot}|{child.pid}") is None
    assert gone_here(f"{host}|another-boot|{child.pid}") is None
    assert gone_here("not a tag") is None and gone_here(None) is None


def test_grace_period_option_is_checked(tmp_path: Path) -> None:
    proc = _search(tmp_path, write_space(tmp_path), "--grace-period", "0")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2, out
    assert out.strip().splitlines()[-1].startswith("automl: error: --grace-period"), out


def test_an_unwritable_artifact_folder_leaves_the_trial_retryable(tmp_path: Path) -> None:
    # A file where the checkpoint folder belongs: no epoch can be saved (even as root, unlike a
    # read-only mode). The trial is not at fault, so it must not be failed for good.
    art = tmp_path / "art"
    art.mkdir()
    (art / "checkpoints").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = automl.create_study(write_space(tmp_path, epochs=2, steps=2), url, artifact_dir=art)
    with pytest.raises(HostFault, match="trial 0 left to be retried"):
        study.optimize(n_trials=1)
    first, retry = study.trials()
    assert first.state is TrialState.FAIL
    assert "not the trial's fault" in first.user_attrs[TrialAttr.FAIL_REASON]
    assert retry.state is TrialState.WAITING and retry.params == first.params
    (art / "checkpoints").unlink()
    stats = study.optimize(n_trials=1)
    assert stats.completed == 1
    assert [t.state for t in study.trials()] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_study_automl_did_not_create_fails_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="plain", storage=url)
    same_directions = optuna.create_study(study_name="plain2", storage=url, directions=DIRECTIONS)
    same_directions.enqueue_trial({})
    for name in ("plain", "plain2"):
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="not created by automl"):
            automl.load_study(name, url)
        assert time.monotonic() - t0 < 5
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="not created by automl"):
        automl.create_study(write_space(tmp_path), url, study_name="plain")
    assert time.monotonic() - t0 < 5


def test_a_stop_ends_a_database_back_off_at_once() -> None:
    # A real refused connection: nothing listens on this port.
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/x",
        poolclass=sqlalchemy.pool.NullPool,
    )

    def connect() -> None:
        with engine.connect():
            pass

    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        db_retry(connect, what="connect", timeout_s=60, first_delay_s=20, stop_event=stop)
    assert time.monotonic() - t0 < 5


def test_a_worker_stopped_while_waiting_for_its_database_exits_at_once() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    opts = WorkerOptions(
        study="s",
        storage=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        device="cpu",
        progress=False,
    )
    t0 = time.monotonic()
    stats = run_worker(opts, stop_event=stop)
    # The back-off doubles 1, 2, 4 s: without the stop it would still sleep well past 7 s.
    assert time.monotonic() - t0 < 6
    assert stats.total == 0


def test_a_second_signal_lost_in_a_finaliser_is_delivered_again() -> None:
    # CPython runs a signal handler between any two bytecodes, also inside a finaliser (here a
    # weakref callback, as SQLAlchemy's that once swallowed one), where a raised exception is
    # printed as "Exception ignored" and lost. The second signal's stop must still happen.
    stop = threading.Event()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    hook = sys.unraisablehook
    try:
        install_stop_handlers(stop)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)  # the first signal: a graceful stop at the next epoch boundary

        class Held:
            pass

        def finaliser(_: object) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _i in range(100_000):  # the handler runs, and raises, in here
                pass

        held = Held()
        ref = weakref.ref(held, finaliser)
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            del held
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # delivered again here, outside the finaliser
                pass
        assert ref() is None
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        sys.unraisablehook = hook
