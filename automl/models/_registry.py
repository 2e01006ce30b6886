"""The model registry: every family registers its named configurations here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from automl.errors import ModelError

Builder = Callable[..., nn.Module]
"""``builder(*, members, split_factor, width_mult, num_classes, in_chans, drop_rate, **options)``.

``options`` are the family's own keyword options (``ModelSpec.options``), e.g. ``avg_down``.
"""


@dataclass(frozen=True)
class ModelSpec:
    """A registered network.

    ``paper_size`` maps K to the paper's (parameters in millions, GMACs) for the tabulated sizes
    (CIFAR-100 classifiers for 32x32 networks, ImageNet for the others); MACs as the paper counts
    them (``automl.models.complexity.count_macs(..., include_norm=True)``). ``split_factors`` are
    the K the paper uses for this network. ``options`` are the keyword options ``create_model``
    accepts for it, with the paper's defaults in the builder. ``deterministic`` are option values
    that make a training step deterministic (no random branch weights or dropped paths), which the
    tests use to check that the fused form trains exactly like the divided one; empty when the
    network is deterministic already. ``has_fused_form`` is False where a family cannot be
    written with per-member layers (none so far: every family here can).
    """

    name: str
    family: str
    builder: Builder
    image_size: int
    description: str
    paper_params_m: dict[int, float] | None = None
    paper_size: dict[int, tuple[float, float]] | None = None
    split_factors: tuple[int, ...] = (1, 2, 4)
    options: tuple[str, ...] = ()
    deterministic: dict[str, Any] = field(default_factory=dict)
    has_fused_form: bool = True


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ModelError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally for one family."""
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def all_specs() -> dict[str, Any]:
    return dict(_REGISTRY)
