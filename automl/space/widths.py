"""How many networks a width range holds: the generic count behind ``automl.space.networks``.

A width multiplier becomes channels by rounding, so equal architectures at both ends of an
interval of widths mean one network inside it (the channel counts only grow with the width).
``distinct_networks`` bisects a range on the meta device (no memory, no weights) and returns, per
K, the smallest width that builds each network. It takes a ``build(K, width)`` function
(``section_builder`` makes the ``[model]`` section's) and nothing of the ``SearchSpace``, so that
parsing a space (``[search] width_mult = { ..., distinct = true }``) can use it before one exists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from automl.models import create_model
from automl.space.params import Choice, Param
from automl.space.sections import ModelSection

__all__ = [
    "DEFAULT_MAX_BUILDS",
    "NetworkCount",
    "distinct_networks",
    "layer_shapes",
    "section_builder",
]

# Bisection stops refining an interval narrower than this (relative to its width).
_WIDTH_RESOLUTION = 1e-4
# Meta-device builds allowed per K when counting a space's networks: a deep family with a wide
# range is counted in a few hundred; past the bound the count is reported as a lower bound.
DEFAULT_MAX_BUILDS = 2000


def layer_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Every parameter's and buffer's name and shape: what makes two networks one."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def section_builder(model: ModelSection) -> Callable[[int, float], nn.Module]:
    """``build(K, width)`` for ``distinct_networks``: the ``[model]`` section's network. The class
    count and input channels change only the first and last layer, not which widths coincide."""

    def build(k: int, w: float) -> nn.Module:
        return create_model(
            model.name,
            num_classes=10,
            in_chans=3,
            split_factor=k,
            width_mult=w,
            drop_rate=model.drop_rate,
            combine=model.combine,
            **model.options,
        )

    return build


def _signature(build: Callable[[int, float], nn.Module], k: int, w: float) -> str:
    with torch.device("meta"):
        model = build(k, w)
    return json.dumps(layer_shapes(model))


@dataclass(frozen=True)
class NetworkCount:
    """The distinct networks of one K: the smallest width that builds each, in order."""

    split_factor: int
    widths: tuple[float, ...]
    exact: bool  # False when the build bound cut the count short (then it is a lower bound)


def distinct_networks(
    build: Callable[[int, float], nn.Module],
    split_factors: tuple[int, ...],
    width: Param,
    *,
    max_builds: int = DEFAULT_MAX_BUILDS,
) -> list[NetworkCount]:
    """The distinct networks per K that ``build(K, width)`` makes over ``width``'s values."""
    out: list[NetworkCount] = []
    for k in split_factors:
        if isinstance(width, Choice):
            firsts: dict[str, float] = {}
            for w in sorted(float(c) for c in width.choices):
                firsts.setdefault(_signature(build, k, w), w)
            out.append(NetworkCount(k, tuple(firsts.values()), exact=True))
            continue
        step = float(width.step) if width.step is not None else None
        out.append(_bisect(build, k, float(width.low), float(width.high), step, max_builds))
    return out


def _bisect(
    build: Callable[[int, float], nn.Module],
    k: int,
    low: float,
    high: float,
    step: float | None,
    max_builds: int,
) -> NetworkCount:
    cache: dict[float, str] = {}
    exact = True

    def sig(w: float) -> str:
        if w not in cache:
            cache[w] = _signature(build, k, w)
        return cache[w]

    # Widths on the grid of ``step`` (Optuna's discrete float) or, without one, a fine grid:
    # bisection in grid indices finds where each new network starts.
    unit = step if step else _WIDTH_RESOLUTION * max(1.0, high)
    last = max(0, math.floor((high - low) / unit + 1e-9))

    def at(i: int) -> float:
        return high if i == last and not step else low + i * unit

    starts = [low]
    todo = [(0, last)]
    while todo:
        i, j = todo.pop()
        if sig(at(i)) == sig(at(j)):
            continue
        if j - i <= 1 or len(cache) >= max_builds:
            exact = exact and j - i <= 1
            starts.append(at(j))
            continue
        mid = (i + j) // 2
        todo += [(i, mid), (mid, j)]
    starts.sort()
    # One width per network: neighbouring starts that build the same network are merged.
    firsts: dict[str, float] = {}
    for w in starts:
        firsts.setdefault(sig(w), w)
    return NetworkCount(k, tuple(sorted(firsts.values())), exact)
