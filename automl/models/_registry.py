"""The model registry: every family registers its named configurations here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from automl.errors import ModelError

Builder = Callable[..., nn.Module]
"""``builder(*, members, split_factor, width_mult, num_classes, in_chans, drop_rate)``."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Builder
    image_size: int
    description: str
    paper_params_m: dict[int, float] | None = None


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
