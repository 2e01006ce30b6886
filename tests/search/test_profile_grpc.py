from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.trial import TrialState

import automl
from tests.helpers import free_port, write_space


def test_profile_stores_a_tensorboard_trace_with_the_trial(tmp_path: Path) -> None:
    study = automl.create_study(
        write_space(tmp_path, steps=6), storage=f"sqlite:///{tmp_path / 'p.db'}"
    )
    study.optimize(n_trials=1, profile=True)
    trial = study.trials()[0]
    metas = get_all_artifact_meta(trial, storage=study.storage)
    traces = [m for m in metas if m.filename.endswith(".pt.trace.json")]
    assert len(traces) == 1, [m.filename for m in metas]
    out = tmp_path / "trace.json"
    download_artifact(
        artifact_store=FileSystemArtifactStore(str(study.artifact_dir)),
        artifact_id=traces[0].artifact_id,
        file_path=str(out),
    )
    events = json.loads(out.read_text())["traceEvents"]
    assert any("ProfilerStep" in str(e.get("name", "")) for e in events)


def test_workers_through_the_grpc_proxy(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    automl.create_study(
        write_space(tmp_path), storage=db, artifact_dir=tmp_path / "art"
    ).add_trials(1)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proxy = subprocess.Popen(
        [sys.executable, "-m", "automl", "grpc-proxy", "--storage", db, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url = f"grpc://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                study = automl.load_study("tiny", url)
                break
            except automl.StorageError:
                assert time.monotonic() < deadline and proxy.poll() is None, "proxy did not start"
                time.sleep(0.5)
        stats = study.optimize()
        assert stats.completed == 2
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
    states = [t.state for t in optuna.load_study(study_name="tiny", storage=db).trials]
    assert states == [TrialState.COMPLETE] * 2
