"""Which form of the ensemble a training run uses: the K member modules, or the fused network.

Both compute the same losses and gradients (tested); the fused form runs one grouped kernel per
layer instead of K, which is faster when the members are small. ``auto`` times a few training steps
of each form on a real batch and keeps the faster, once per model shape and device in a process.
The memory format is chosen the same way on the CPU, where neither layout is always faster.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from enum import StrEnum

import torch

from automl.errors import ConfigError
from automl.models.ensemble import DividedNet, Ensemble
from automl.models.fusion import fuse

__all__ = ["Layout", "TrainForm", "choose_layout", "layout_candidates", "time_training_step"]


class TrainForm(StrEnum):
    AUTO = "auto"
    DIVIDED = "divided"
    FUSED = "fused"


_DECISIONS: dict[str, Layout] = {}


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
    m.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if channels_last and views.dim() == 4:
        views = views.contiguous(memory_format=torch.channels_last)
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


@dataclass(frozen=True)
class Layout:
    """How a run trains: the form of the ensemble and the memory format of its activations."""

    form: TrainForm
    channels_last: bool


def layout_candidates(
    model: Ensemble, form: TrainForm, channels_last: bool | None, device: torch.device
) -> list[Layout]:
    """What ``choose_layout`` may pick from. ``channels_last=None`` means chosen per device:
    channels_last on CUDA (cuDNN's fast path); on the CPU oneDNN is faster in either layout
    depending on the CPU and the shapes (BENCHMARKS.md (a')), so both are timed there."""
    if form is TrainForm.AUTO:
        if model.split_factor > 1 and isinstance(model, DividedNet):
            forms = [TrainForm.DIVIDED, TrainForm.FUSED]
        else:
            forms = [TrainForm.DIVIDED if isinstance(model, DividedNet) else TrainForm.FUSED]
    else:
        forms = [form]
    if channels_last is not None:
        layouts = [channels_last]
    else:
        layouts = [True] if device.type == "cuda" else [True, False]
    return [Layout(f, cl) for f in forms for cl in layouts]


def choose_layout(
    model: Ensemble,
    wanted: TrainForm | str,
    views: torch.Tensor,
    y: torch.Tensor,
    *,
    channels_last: bool | None = None,
) -> Layout:
    """Resolve ``auto`` form and an unset memory format by timing a few training steps of each
    candidate on a real batch, once per model shape and device in a process."""
    try:
        form = TrainForm(wanted)
    except ValueError as e:
        allowed = ", ".join(TrainForm)
        raise ConfigError(f"execution must be one of {allowed}, got {wanted!r}") from e
    candidates = layout_candidates(model, form, channels_last, views.device)
    if len(candidates) == 1:
        return candidates[0]
    # Keyed by the layers' shapes, not the width asked for: widths that round to the same
    # channels are one network and train at one speed.
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    key = json.dumps(
        [type(model).__name__, shapes, list(views.shape), str(views.device), form, channels_last],
        sort_keys=True,
        default=str,
    )
    if key not in _DECISIONS:
        wants_fused = any(c.form is TrainForm.FUSED for c in candidates)
        fused = fuse(model) if wants_fused and isinstance(model, DividedNet) else None
        times = {}
        for c in candidates:
            m = fused if c.form is TrainForm.FUSED and fused is not None else model
            times[c] = time_training_step(m, views, y, channels_last=c.channels_last)
        _DECISIONS[key] = min(times, key=lambda c: times[c])
    return _DECISIONS[key]
