"""The running trial's progress bar names its phase; library noise stays out of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import automl
from automl.search.trial import TrialEnv
from tests.helpers import write_space
from tests.study_builders import life_of, start_trial

AUTOML = [sys.executable, "-m", "automl"]


def test_a_trial_reports_each_phase_in_order(tmp_path: Path) -> None:
    study = automl.create_study(
        write_space(tmp_path, epochs=2, steps=2), storage=f"sqlite:///{tmp_path / 's.db'}"
    )
    env = TrialEnv(study.space, device=torch.device("cpu"), artifact_dir=tmp_path / "a")
    phases: list[str] = []
    env.on_phase = phases.append
    start_trial(study)  # the enqueued baseline (K = 1) comes first: left aside
    trial = start_trial(study, {"split_factor": 2, "width_mult": 0.5})
    assert trial.params["split_factor"] == 2
    life_of(env, study.optuna_study, trial).steps()
    assert phases == [
        "building",
        "measuring latency",
        "choosing the training form",
        "epoch 1/2",
        "epoch 1/2: evaluating",
        "epoch 2/2",
        "epoch 2/2: evaluating",
        "measuring member subsets",
        "evaluating on the test split",
    ]


def test_search_with_profile_shows_phases_and_no_kineto_noise(tmp_path: Path) -> None:
    write_space(tmp_path, name="prof", epochs=1, steps=6)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KINETO_LOG_LEVEL", None)
    env.pop("AUTOML_STORAGE", None)
    out = subprocess.run(
        [*AUTOML, "search", "--space", "prof.toml", "--n-trials", "1", "--profile"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    # tqdm redraws with carriage returns: each redraw is one state of the bar.
    states = out.stderr.replace("\r", "\n")
    for phase in ("trial 0: building", "trial 0: measuring latency", "trial 0: epoch 1/1"):
        assert phase in states, phase
    for noise in ("gpuGetDeviceCount", "profiler_start", "profiler_stop", "USDT:", "STAGE:"):
        assert noise not in out.stderr, noise
