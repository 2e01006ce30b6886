"""The members of a divided network: ordered by validation accuracy, and picked out.

A co-trained ensemble can answer with fewer members at a lower latency; the m members it keeps are
the first m by validation accuracy (best first; the greedy choice, not a search over all subsets).
"""

from __future__ import annotations

from collections.abc import Sequence

from automl.errors import ConfigError
from automl.models.ensemble import DividedNet

__all__ = ["member_order", "select_members"]


def member_order(member_accuracies: Sequence[float], k: int) -> list[int]:
    """Member indices by validation accuracy, best first (ties: lower index first)."""
    if len(member_accuracies) != k:
        return list(range(k))
    return sorted(range(k), key=lambda i: (-float(member_accuracies[i]), i))


def select_members(model: DividedNet, indices: Sequence[int]) -> DividedNet:
    """An ensemble of the members ``indices`` of ``model`` (sharing their modules).

    The model config keeps the trained K: the members' widths were divided by it, and ``fuse``
    builds the grouped network from it.
    """
    k = model.split_factor
    if not indices or any(not 0 <= i < k for i in indices) or len(set(indices)) != len(indices):
        raise ConfigError(f"members must be distinct indices in 0..{k - 1}, got {list(indices)}")
    if list(indices) == list(range(k)):
        return model
    picked = DividedNet([model.members[i] for i in indices], model.model_config, model.combine)
    picked.train(model.training)
    return picked
