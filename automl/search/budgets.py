"""A trial's size against the space's budgets (``[constraints]``), checked before it trains.

Every budget becomes an Optuna constraint (``trial.set_constraint``; <= 0 is feasible, the value
normalised so that 0.1 means 10% over) so that samplers that take constraints see them, and the
list optuna-dashboard 0.21 reads. Relative budgets (``max_*_ratio``) are measured against the
study's baseline network, the undivided one at the default width.
"""

from __future__ import annotations

import optuna

from automl.models.complexity import count_flops_and_macs, count_parameters
from automl.models.ensemble import Ensemble
from automl.space import ConstraintSection

__all__ = ["Complexity", "complexity_of", "set_budgets"]

# (parameters, FLOPs, MACs): FLOPs PyTorch's count (2 per multiply-add), MACs the paper's.
Complexity = tuple[int, int, int]


def complexity_of(model: Ensemble, input_shape: tuple[int, int, int]) -> Complexity:
    """Parameters, FLOPs and MACs of ``model`` for one image of ``input_shape``."""
    # MACs the paper's way (BatchNorm outputs counted), so that they compare with its tables;
    # FLOPs stay PyTorch's count (2 per multiply-add), which existing budgets are written in.
    flops, macs = count_flops_and_macs(model, input_shape)
    return count_parameters(model), flops, macs


def set_budgets(
    trial: optuna.Trial,
    constraints: ConstraintSection,
    size: Complexity,
    baseline: Complexity | None,
    latency_ms: float | None = None,
) -> list[str]:
    """Set every budget of ``constraints`` on ``trial``; return the violated ones, in words.

    ``baseline`` is the baseline network's size, needed only when a relative budget is set.
    The latency budget is set once ``latency_ms`` is known (measured before training): the size
    budgets are checked first, so a network over them is never timed."""
    c = constraints
    params, flops, macs = size
    limits: dict[str, tuple[float, float]] = {}
    if c.max_params is not None:
        limits["params"] = (params, c.max_params)
    if c.max_flops is not None:
        limits["flops"] = (flops, c.max_flops)
    if c.max_macs is not None:
        limits["macs"] = (macs, c.max_macs)
    if any(r is not None for r in (c.max_params_ratio, c.max_flops_ratio, c.max_macs_ratio)):
        if baseline is None:
            raise ValueError("a relative budget needs the baseline's size")
        bp, bf, bm = baseline
        if c.max_params_ratio is not None:
            limits["params_ratio"] = (params / bp, c.max_params_ratio)
        if c.max_flops_ratio is not None:
            limits["flops_ratio"] = (flops / bf, c.max_flops_ratio)
        if c.max_macs_ratio is not None:
            limits["macs_ratio"] = (macs / bm, c.max_macs_ratio)
    if c.max_latency_ms is not None and latency_ms is not None:
        limits["latency_ms"] = (latency_ms, c.max_latency_ms)
    violated = []
    # A retry or a continuation carries its first attempt's constraints (the same values), and
    # the latency budget is set after the size budgets: each is set once, Optuna warns otherwise.
    present = trial.storage.get_trial_system_attrs(trial._trial_id)
    for name, (value, limit) in limits.items():
        if f"constraints:{name}" not in present:
            trial.set_constraint(name, value / limit - 1.0)
        if value > limit:
            violated.append(f"{name} {value:.4g} > {limit:.4g}")
    if limits:
        # optuna-dashboard 0.21 reads feasibility only from a list under "constraints" (the
        # format set_constraint replaced). Optuna 5 reads both, so trial.constraints names
        # each budget twice (by name and by index); feasibility is the same either way.
        trial.storage.set_trial_system_attr(
            trial._trial_id, "constraints", [v / lim - 1.0 for v, lim in limits.values()]
        )
    return violated
