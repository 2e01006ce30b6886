"""Checkpoints that must not be resumed: damaged files and other runs' files, through real retries.

A trial resumes only a checkpoint written by its own earlier attempt: the same study (its stored
uuid, not only its name), space, data split, model and parameters. Anything else is moved into
``quarantine/`` beside it and the trial trains from epoch 0.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

import automl
from automl.search.checkpoints import TrialCheckpoint
from automl.search.retries import retry_later
from automl.store.attrs import TrialAttr
from automl.store.storage import StorageSettings
from automl.training.checkpoint import QUARANTINE_DIR
from tests.helpers import spawn_worker, write_space

# Epochs of half a second (idle machine) to a few seconds (loaded): a stop seen after the first
# epoch lands before the last.
EPOCHS, STEPS = 3, 40
HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]


def _curve_len(storage: optuna.storages.BaseStorage, name: str, number: int) -> int:
    trials = optuna.load_study(study_name=name, storage=storage).trials
    return len(trials[number].user_attrs.get(TrialAttr.CURVE, [])) if len(trials) > number else 0


def _wait(cond: object, what: str, timeout: float = 180) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def _stopped_after_first_epoch(study: automl.AutoMLStudy, number: int) -> None:
    """Run waiting trial ``number`` in this process and stop it after its first epoch, as a
    signal stops a worker (the same runner: failed, retry enqueued, checkpoint kept)."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            trials = study.trials()
            if len(trials) > number and trials[number].user_attrs.get(TrialAttr.CURVE):
                stop.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    study.optimize(stop_event=stop)
    stop.set()
    watcher.join()
    assert study.trials()[number].state is TrialState.FAIL


def test_damaged_checkpoints_are_quarantined_and_their_retries_train_from_scratch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    art = tmp_path / "art"
    study = automl.create_study(
        write_space(tmp_path, epochs=EPOCHS, steps=STEPS), url, artifact_dir=art
    )
    # Trials 1 and 2: divided networks with their own co-training weights, so that none is the
    # configuration of another (which would be reused, not retried).
    for cot in (0.3, 0.6):
        study.optuna_study.enqueue_trial(
            {"split_factor": 2, "width_mult": 0.7, "cot_weight": cot, "cot_kind": "js"}
        )
    # Trial 0 stopped after its first epoch by a real worker: its retry waits, its checkpoint
    # kept.
    w = spawn_worker(url, "tiny", tmp_path, *HEARTBEAT)
    _wait(lambda: _curve_len(study.storage, "tiny", 0) >= 1, "trial 0 ran an epoch")
    w.send_signal(signal.SIGTERM)
    out = w.communicate(timeout=60)[0]
    assert w.returncode == 0, out
    # Trials 1 and 2 left as a stop leaves them: failed, retry enqueued, a checkpoint file (its
    # content is damaged below in any case). Retries are claimed first, so they are made here
    # rather than by running the trials, which would resume trial 0 instead.
    for number in (1, 2):
        trial = study.optuna_study.ask()
        assert trial.number == number
        study.space.suggest(trial)
        retry_later(study.optuna_study, trial, "worker stopped: interrupted", None)
        path = TrialCheckpoint.of(art, study.optuna_study, number).path
        path.write_bytes(b"checkpoint")
    [ckpt_dir] = (art / "checkpoints").glob("tiny-*")
    ckpts = sorted(ckpt_dir.glob("trial-*.pt"))
    assert [p.name for p in ckpts] == ["trial-0.pt", "trial-1.pt", "trial-2.pt"]
    truncated, empty, garbage = ckpts
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty.write_bytes(b"")
    garbage.write_bytes(os.urandom(4096))

    # A real worker takes the three retries.
    t0 = time.monotonic()
    again = spawn_worker(url, "tiny", tmp_path, *HEARTBEAT)
    out = again.communicate(timeout=600)[0]
    print(f"three retries in a worker: {time.monotonic() - t0:.1f}s")
    assert again.returncode == 0, out
    assert "Traceback" not in out, out
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == [0, 1, 2]
    for t in retries:
        assert t.state is TrialState.COMPLETE, (t.number, t.user_attrs.get(TrialAttr.FAIL_REASON))
        assert not t.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH), t.number  # trained from 0
        assert len(t.user_attrs[TrialAttr.CURVE]) == EPOCHS
    quarantined = sorted(p.name for p in (ckpt_dir / QUARANTINE_DIR).iterdir())
    assert [n.split("-")[1] for n in quarantined] == ["0", "1", "2"], quarantined
    assert list(ckpt_dir.glob("*.pt")) == []  # the finished trials left no checkpoint
    assert out.count("moved to") == 3, out


def _run_trial_0(tmp_path: Path, db: str, art: Path) -> optuna.trial.FrozenTrial:
    """Trial 0 of study ``tiny`` in database ``db`` (a new one unless it exists), artifacts in
    ``art``; returns the attempt that ran it."""
    path = write_space(tmp_path / db, epochs=EPOCHS, steps=STEPS)
    study = automl.create_study(path, f"sqlite:///{tmp_path / db / 's.db'}", artifact_dir=art)
    study.optimize(n_trials=1)
    return [t for t in study.trials() if t.state is TrialState.COMPLETE][-1]


def _checkpoint_of(study: automl.AutoMLStudy, key: int) -> Path:
    return TrialCheckpoint.of(study.artifact_dir, study.optuna_study, key).path


def test_a_same_named_study_in_another_database_leaves_the_checkpoint_alone(
    tmp_path: Path,
) -> None:
    art = tmp_path / "art"  # one artifact folder, as when automl.db is deleted and made again
    (tmp_path / "first").mkdir()
    first = automl.create_study(
        write_space(tmp_path / "first", epochs=EPOCHS, steps=STEPS),
        f"sqlite:///{tmp_path / 'first' / 's.db'}",
        artifact_dir=art,
    )
    _stopped_after_first_epoch(first, 0)
    ckpt = _checkpoint_of(first, 0)
    assert ckpt.is_file() and ckpt.parent.name.startswith("tiny-")
    kept = ckpt.read_bytes()

    # Another database, a study of the same name: its trial 0 has the same number, parameters
    # and seed. It trains from scratch in its own folder and never touches the first's file.
    (tmp_path / "same-space").mkdir()
    foreign = _run_trial_0(tmp_path, "same-space", art)
    assert not foreign.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH)
    assert ckpt.read_bytes() == kept
    assert not list(ckpt.parent.glob(f"{QUARANTINE_DIR}/*"))

    # Even placed in the other study's folder (or with another split), the file is not resumed:
    # its identity names the study that wrote it.
    for db, vf in (("copied", None), ("other-split", 0.3)):
        (tmp_path / db).mkdir()
        path = write_space(tmp_path / db, epochs=EPOCHS, steps=STEPS)
        if vf:
            path.write_text(path.read_text().replace("val_fraction = 0.15", f"val_fraction = {vf}"))
        other = automl.create_study(path, f"sqlite:///{tmp_path / db / 's.db'}", artifact_dir=art)
        target = _checkpoint_of(other, 0)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(kept)
        other.optimize(n_trials=1)
        done = [t for t in other.trials() if t.state is TrialState.COMPLETE][-1]
        assert not done.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH), db
        assert len(list((target.parent / QUARANTINE_DIR).glob("trial-0-*.pt"))) == 1

    # The study that wrote it still resumes it.
    first.optimize()
    resumed = first.trials()[-1]
    assert resumed.state is TrialState.COMPLETE
    assert resumed.user_attrs[TrialAttr.RESUMED_FROM_EPOCH] >= 1
    assert not ckpt.exists()


def test_a_trial_failed_for_good_leaves_no_checkpoint(tmp_path: Path) -> None:
    # A worker killed outright, and no retry allowed: the stale trial fails for good and its
    # checkpoint, which nothing will resume, is removed by the worker that finds it stale.
    url = f"sqlite:///{tmp_path / 's.db'}"
    art = tmp_path / "art"
    automl.create_study(write_space(tmp_path, epochs=EPOCHS, steps=STEPS), url, artifact_dir=art)
    w = spawn_worker(url, "tiny", tmp_path, *HEARTBEAT, "--max-retry", "0")
    settings = StorageSettings(heartbeat_interval=1, grace_period=3, max_retry=0)
    study = automl.load_study("tiny", url, settings=settings)
    _wait(lambda: _curve_len(study.storage, "tiny", 0) >= 1, "trial 0 ran an epoch")
    w.send_signal(signal.SIGKILL)
    w.wait(timeout=30)
    ckpt = _checkpoint_of(study, 0)
    assert ckpt.is_file()
    study.optimize()  # waits for the trial to go stale (3 s), fails it, runs nothing
    (only,) = study.trials()
    assert only.state is TrialState.FAIL
    assert "not retried" in only.user_attrs[TrialAttr.FAIL_REASON]
    assert not ckpt.exists()
