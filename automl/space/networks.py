"""The networks a space holds: the unit of evidence is the network, not the sampled float.

A width multiplier becomes channels by rounding (``automl.models.division.divide_width``: each
member's base width times the multiplier over sqrt(K), to the nearest multiple of 4), so a
continuous width range holds only a few distinct networks per K. ``Network.of`` resolves a built
model to its canonical architecture: the family, K and every parameter's shape, with a stable id,
so two widths that round to the same channels are one network. ``distinct_networks`` counts what a
space holds per K by bisecting its width range on the meta device (no memory, no weights): the
channel counts only grow with the width, so equal architectures at both ends of an interval mean
one network inside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from automl.space.search_space import SearchSpace
from automl.space.widths import (
    DEFAULT_MAX_BUILDS,
    NetworkCount,
    distinct_networks,
    layer_shapes,
    section_builder,
)

__all__ = [
    "DEFAULT_MAX_BUILDS",
    "Network",
    "NetworkCount",
    "describe_counts",
    "distinct_networks",
    "member_widths",
    "space_networks",
]


def member_widths(model: nn.Module) -> tuple[int, ...]:
    """The output channels of the first member's convolutions, in order, repeats folded."""
    shapes = layer_shapes(model)
    if any(k.startswith("members.0.") for k, _ in shapes):
        shapes = [(k, s) for k, s in shapes if k.startswith("members.0.")]
    widths: list[int] = []
    for key, shape in shapes:
        if key.endswith("weight") and len(shape) == 4 and (not widths or widths[-1] != shape[0]):
            widths.append(shape[0])
    return tuple(widths)


@dataclass(frozen=True)
class Network:
    """A canonical architecture: equal for every width that builds the same layers."""

    id: str
    family: str
    split_factor: int
    n_params: int
    widths: tuple[int, ...]

    @classmethod
    def of(
        cls, model: nn.Module, family: str, split_factor: int, options: dict[str, Any]
    ) -> Network:
        shapes = layer_shapes(model)
        text = json.dumps([family, split_factor, sorted(options.items()), shapes], default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        n_params = sum(p.numel() for p in model.parameters())
        return cls(
            id=f"{family}-k{split_factor}-{digest}",
            family=family,
            split_factor=split_factor,
            n_params=n_params,
            widths=member_widths(model),
        )

    def describe(self) -> str:
        widths = list(self.widths)
        return f"K = {self.split_factor}, member channels {widths}, {self.n_params:,} parameters"


def space_networks(
    space: SearchSpace, *, max_builds: int = DEFAULT_MAX_BUILDS
) -> list[NetworkCount]:
    """The distinct networks per K of ``space``'s model over its width range."""
    ks = tuple(sorted(int(k) for k in space.search.split_factor.choices))
    return distinct_networks(
        section_builder(space.model), ks, space.search.width_mult, max_builds=max_builds
    )


def describe_counts(counts: list[NetworkCount]) -> str:
    """E.g. "17 distinct networks (K=1: 7, K=2: 6, K=4: 4)"; "at least" where a count is cut."""
    total = sum(len(c.widths) for c in counts)
    per_k = ", ".join(f"K={c.split_factor}: {len(c.widths)}" for c in counts)
    bound = "" if all(c.exact for c in counts) else "at least "
    return f"{bound}{total} distinct networks ({per_k})"
