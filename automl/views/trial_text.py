"""Trials in words for terminals: parameters as ``K=2 width=1.5 cot_kind=js``, durations as
``1 h 02 min``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["duration", "readable_params"]

# The names people say; the rest keep their parameter names.
_SHORT = {"split_factor": "K", "width_mult": "width"}
_ORDER = ("split_factor", "width_mult", "cot_kind", "cot_weight", "cot_warmup_epochs")


def readable_params(params: Mapping[str, Any]) -> str:
    """K and width first, then co-training, then the rest by name; floats to 3 digits."""
    keys = [k for k in _ORDER if k in params] + sorted(k for k in params if k not in _ORDER)
    parts = []
    for k in keys:
        v = params[k]
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        parts.append(f"{_SHORT.get(k, k)}={text}")
    return " ".join(parts) or "(no parameters yet)"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: precise enough to judge a wait."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
