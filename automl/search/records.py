"""A completed trial flattened for tables, fronts and scripts: ``ParetoRecord``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from automl.store.attrs import TrialAttr

__all__ = ["ParetoRecord"]


@dataclass(frozen=True)
class ParetoRecord:
    """One trial of the Pareto front, flattened for tables and scripts."""

    number: int
    params: dict[str, Any]
    accuracy: float
    latency_ms: float
    n_params: int | None
    flops: int | None
    macs: int | None
    member_accuracies: list[float]
    test_accuracy: float | None
    latency_mode: str | None
    latency_iqr_ms: float | None
    device: str | None
    # Set on the points of ``pareto_front(include_subsets=True)`` that are the first m members
    # (by validation accuracy) of this trial's ensemble; None for the trial itself.
    subset_members: int | None = None

    @classmethod
    def from_trial(cls, t: FrozenTrial) -> ParetoRecord:
        u = t.user_attrs
        return cls(
            number=t.number,
            params=dict(t.params),
            accuracy=float(t.values[0]),
            latency_ms=float(t.values[1]),
            n_params=u.get(TrialAttr.N_PARAMS),
            flops=u.get(TrialAttr.FLOPS),
            macs=u.get(TrialAttr.MACS),
            member_accuracies=list(u.get(TrialAttr.MEMBER_ACCURACIES, [])),
            test_accuracy=u.get(TrialAttr.TEST_ACCURACY),
            latency_mode=u.get(TrialAttr.LATENCY_MODE),
            latency_iqr_ms=u.get(TrialAttr.LATENCY_IQR_MS),
            device=u.get(TrialAttr.DEVICE),
        )

    @property
    def split_factor(self) -> int:
        return int(self.params.get("split_factor", 1))
