"""Studies with finished trials made in milliseconds: each trial is asked through Optuna, its
parameters drawn by the space itself (``SearchSpace.suggest``, the objective's own call) and told
the values a trained trial would store, so that reports and status read real storage rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

import automl
from automl.search.study import AutoMLStudy
from automl.search.trial import Claimed, TrialEnv, TrialLife
from automl.store.attrs import TrialAttr
from tests.helpers import write_space


def tiny_study(tmp_path: Path, name: str = "tiny", storage: str | None = None) -> AutoMLStudy:
    """A study of the tiny space (K in {1, 2}) in ``storage``, by default an SQLite file under
    ``tmp_path`` named after the study."""
    url = storage or f"sqlite:///{tmp_path / f'{name}.db'}"
    return automl.create_study(write_space(tmp_path, name=name), storage=url)


def start_trial(study: AutoMLStudy, params: dict[str, Any] | None = None) -> optuna.Trial:
    """The next trial, running. Optuna hands out the oldest waiting trial first: the enqueued
    baseline until it has been started, then the one enqueued here with ``params``."""
    ost = study.optuna_study
    if params is not None:
        ost.enqueue_trial(params)
    trial = ost.ask()
    study.space.suggest(trial)
    return trial


def life_of(env: TrialEnv, study: optuna.Study, trial: optuna.Trial) -> TrialLife:
    """The life of a trial started by hand (``study.ask()``), to run its steps one by one."""
    return TrialLife(env, study, study._storage, Claimed(trial, trial.number, trial._trial_id))


def finish_trial(
    study: AutoMLStudy,
    accuracy: float,
    latency_ms: float,
    *,
    params: dict[str, Any] | None = None,
    iqr_ms: float = 0.01,
    curve: list[float] | None = None,
) -> int:
    """Run one trial to completion with the given outcome; returns its number."""
    trial = start_trial(study, params)
    attrs: dict[str, Any] = {
        TrialAttr.N_PARAMS: 1_234_567,
        TrialAttr.FLOPS: 45_678_901,
        TrialAttr.MACS: 22_839_450,
        TrialAttr.LATENCY_MS: latency_ms,
        TrialAttr.LATENCY_IQR_MS: iqr_ms,
        TrialAttr.LATENCY_MODE: "sequential",
        TrialAttr.DEVICE: "cpu (2 threads)",
        TrialAttr.TEST_ACCURACY: accuracy - 0.01,
        TrialAttr.CURVE: curve if curve is not None else [accuracy - 0.1, accuracy],
        TrialAttr.EPOCH_SECONDS: [1.5, 1.5],
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.optuna_study.tell(trial, [accuracy, latency_ms])
    return trial.number
