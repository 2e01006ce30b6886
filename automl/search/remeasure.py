"""The front for another device without retraining: time every completed trial's architecture
here, on the device asked for, and store it per target (``automl.measure.targets``).

Latency does not depend on the weights, so each architecture is rebuilt from its parameters and
timed untrained, with the same protocol as in the search (paired with the study's baseline, the
host's measurement lock held).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import optuna
import torch
from optuna.trial import TrialState
from tqdm.auto import tqdm

from automl.device import resolve_device
from automl.errors import ConfigError
from automl.measure.host_share import HostShare
from automl.measure.targets import (
    TargetLatency,
    device_label,
    latencies_for,
    store_remeasured,
    target_key,
)
from automl.search.study import AutoMLStudy
from automl.search.timing import LatencyTimer, ModelInput

__all__ = ["RemeasureResult", "remeasure"]


@dataclass(frozen=True)
class RemeasureResult:
    key: str
    measured: int
    skipped: int


def _model_input(study: AutoMLStudy) -> ModelInput:
    stored = ModelInput.stored(study.optuna_study)
    if stored is not None:
        return stored
    # A study from before the input was stored: the data set tells it, when it is here.
    return ModelInput.of(study.space.data.load())


def remeasure(
    study: AutoMLStudy,
    device: str,
    *,
    batch_size: int | None = None,
    name: str | None = None,
    force: bool = False,
    min_run_s: float | None = None,
    progress: bool = False,
    host_share: HostShare | None = None,
) -> RemeasureResult:
    """Time every complete trial's architecture on ``device`` and store it under the target
    ``name`` (default: the device's label, e.g. ``cpu`` or ``cuda:NVIDIA H200``) at
    ``batch_size`` (default: the space's). Trials already measured there are skipped unless
    ``force``."""
    space = study.space
    obj = space.objectives
    timer = LatencyTimer(space, host_share=host_share)
    dev = resolve_device(device)
    if name is not None and ("@" in name or "#" in name or not name.strip()):
        raise ConfigError(f"--name must be a plain label without '@' or '#', got {name!r}")
    label = name or device_label(dev)
    batch = batch_size or obj.latency_batch_size
    key = target_key(label, batch)
    runs = min_run_s if min_run_s is not None else obj.latency_min_run_s
    trials = study.trials(states=(TrialState.COMPLETE,))
    done = set() if force else set(latencies_for(study.optuna_study, key, trials))
    todo = [t for t in trials if t.number not in done]
    model_input = _model_input(study)
    x = torch.randn(batch, *model_input.shape)
    measured = 0
    for t in tqdm(todo, disable=not progress, unit="trial", desc=f"timing on {key}"):
        # A finished trial answers the space's suggestions with its own parameters.
        sampled = space.suggest(cast(optuna.Trial, t))
        model = space.build_model(sampled, model_input.num_classes, model_input.in_chans)
        rec, _ = timer.time(study.optuna_study, model, model_input, dev, x, runs)
        store_remeasured(study.optuna_study, t.number, key, TargetLatency.from_record(rec))
        measured += 1
    return RemeasureResult(key=key, measured=measured, skipped=len(trials) - len(todo))
