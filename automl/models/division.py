"""The paper's rules for dividing one network into K members of about 1/K its parameters."""

from __future__ import annotations

import math

from automl.errors import ModelError

__all__ = [
    "check_division_args",
    "divide_cardinality",
    "divide_dropout",
    "divide_widen_factor",
    "divide_width",
    "divided_weight_decay",
]


def check_division_args(split_factor: object, width_mult: object) -> tuple[int, float]:
    """Validate K and the width multiplier at the public boundary."""
    if isinstance(split_factor, bool) or not isinstance(split_factor, int):
        raise ModelError(
            f"split_factor must be an integer >= 1, got {split_factor!r}; use e.g. 1, 2 or 4"
        )
    if split_factor < 1:
        raise ModelError(f"split_factor must be >= 1, got {split_factor}; use e.g. 1, 2 or 4")
    if isinstance(width_mult, bool) or not isinstance(width_mult, int | float):
        raise ModelError(f"width_mult must be a positive number, got {width_mult!r}")
    if not math.isfinite(width_mult) or width_mult <= 0:
        raise ModelError(f"width_mult must be > 0, got {width_mult}; 1.0 keeps the paper's widths")
    return split_factor, float(width_mult)


def divide_width(base: int, split_factor: int, width_mult: float = 1.0, multiple: int = 4) -> int:
    """Width of one member: ``base * width_mult / sqrt(K)`` rounded to the nearest ``multiple``.

    With ``multiple`` 2 for CIFAR ResNets (base 16) and 4 for ImageNet ResNets (base 64) this
    reproduces the paper's tables: 16 -> 12/8/6/4 and 64 -> 44/32/24 for K = 2/4/8(/16).
    """
    raw = base * width_mult / math.sqrt(split_factor)
    return max(multiple, round(raw / multiple) * multiple)


def divide_widen_factor(widen_factor: float, split_factor: int) -> int:
    """Wide ResNet rule: ``int(max(k / sqrt(K) + 0.4, 1))``; WRN-28-10: 10 -> 7 (K=2), 5 (K=4)."""
    return int(max(widen_factor / math.sqrt(split_factor) + 0.4, 1.0))


def divide_cardinality(cardinality: int, split_factor: int) -> int:
    """ResNeXt rule: the number of groups is divided by K; the width per group is kept."""
    if cardinality % split_factor != 0:
        raise ModelError(
            f"split_factor={split_factor} does not divide the cardinality {cardinality}; "
            f"choose K among {[k for k in range(1, cardinality + 1) if cardinality % k == 0]}"
        )
    return cardinality // split_factor


def divide_dropout(drop_rate: float, split_factor: int) -> float:
    """Dropout is divided by K, since each member is already a smaller, less over-fitting net."""
    if not 0.0 <= drop_rate < 1.0:
        raise ModelError(f"drop_rate must be in [0, 1), got {drop_rate}")
    return drop_rate / split_factor


def divided_weight_decay(weight_decay: float, split_factor: int) -> float:
    """Weight decay of a divided network: ``wd * exp(1/K - 1)`` (x0.607 at K=2, x0.472 at K=4)."""
    return weight_decay * math.exp(1.0 / split_factor - 1.0)
