"""Which form of the ensemble a training run uses: the K member modules, or the fused network.

Both compute the same losses and gradients (tested); the fused form runs one grouped kernel per
layer instead of K, which is faster when the members are small. ``auto`` times a few training steps
of each form on a real batch and keeps the faster, once per model shape and device in a process.
"""

from __future__ import annotations

import copy
import json
import time
from enum import StrEnum

import torch

from automl.errors import ConfigError
from automl.models.ensemble import DividedNet, Ensemble
from automl.models.fusion import fuse

__all__ = ["TrainForm", "choose_form", "time_training_step"]


class TrainForm(StrEnum):
    AUTO = "auto"
    DIVIDED = "divided"
    FUSED = "fused"


_DECISIONS: dict[str, TrainForm] = {}


def time_training_step(
    model: Ensemble,
    views: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 3,
    warmup: int = 2,
    channels_last: bool = True,
) -> float:
    """Median seconds of forward + loss + backward on a copy of ``model`` (weights untouched)."""
    m = copy.deepcopy(model).train()
    if channels_last:
        m.to(memory_format=torch.channels_last)
    device = views.device
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        logits = m(views)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]))
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        m.zero_grad(set_to_none=True)
    times.sort()
    return times[len(times) // 2]


def choose_form(
    model: Ensemble,
    wanted: TrainForm | str,
    views: torch.Tensor,
    y: torch.Tensor,
    *,
    channels_last: bool = True,
) -> TrainForm:
    """Resolve ``auto`` by timing both forms; K = 1 always trains the plain network."""
    try:
        form = TrainForm(wanted)
    except ValueError as e:
        allowed = ", ".join(TrainForm)
        raise ConfigError(f"execution must be one of {allowed}, got {wanted!r}") from e
    if form is not TrainForm.AUTO:
        return form
    if model.split_factor == 1 or not isinstance(model, DividedNet):
        return TrainForm.DIVIDED if isinstance(model, DividedNet) else TrainForm.FUSED
    key = json.dumps(
        [model.model_config, list(views.shape), str(views.device), channels_last],
        sort_keys=True,
        default=str,
    )
    if key not in _DECISIONS:
        t_div = time_training_step(model, views, y, channels_last=channels_last)
        t_fus = time_training_step(fuse(model), views, y, channels_last=channels_last)
        _DECISIONS[key] = TrainForm.FUSED if t_fus < t_div else TrainForm.DIVIDED
    return _DECISIONS[key]
