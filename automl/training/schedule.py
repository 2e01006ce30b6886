"""The learning rate as a pure function of the step: linear warm-up, then cosine decay."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(
    step: int, *, total_steps: int, base_lr: float, warmup_steps: int, min_lr: float
) -> float:
    """Learning rate for optimisation step ``step`` (0-based), per iteration as in the paper."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))
