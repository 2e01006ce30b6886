"""How far each trial went (its rung, why it stopped) and the front's hypervolume against compute.

Compute is counted in epochs trained and in training seconds (GPU-seconds on a GPU worker), read
from every trial's stored curve and epoch times, so early-stopped trials count for what they
spent. A finished trial adds its compute when it ends; the hypervolume at that point is the one of
the feasible completed trials so far (``reference_point``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search.hypervolume import hypervolume_2d
from automl.store.attrs import TrialAttr
from automl.store.storage import retried_numbers

__all__ = [
    "ComputePoint",
    "TrialStage",
    "hypervolume_by_compute",
    "reference_point",
    "trial_stages",
]

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def reference_point(study: optuna.Study) -> list[float]:
    """Hypervolume reference: accuracy 0 and 1.1 x the slowest completed trial's latency."""
    lat = [t.values[1] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return [0.0, 1.1 * max(lat) if lat else 1.0]


@dataclass(frozen=True)
class TrialStage:
    number: int
    state: str
    epochs: int  # epochs trained (and recorded)
    rung: int | None  # epochs at the highest rung reached ([scheduler] asha)
    why: str  # why it stopped early or failed; "" otherwise

    # The columns of ``line``: the rung is named by its epoch count, as the reasons do.
    HEADER = "#     state     epochs  rung (epoch)  why it stopped"

    def line(self) -> str:
        rung = str(self.rung) if self.rung is not None else "-"
        return f"#{self.number:<4} {self.state:<9} {self.epochs:>6}  {rung:>12}  {self.why}"


def _epochs(t: FrozenTrial) -> int:
    curve = t.user_attrs.get(TrialAttr.CURVE)
    return sum(1 for v in curve if v is not None) if isinstance(curve, list) else 0


def _seconds(t: FrozenTrial) -> float:
    secs = t.user_attrs.get(TrialAttr.EPOCH_SECONDS)
    return sum(float(s) for s in secs if s is not None) if isinstance(secs, list) else 0.0


def trial_stages(trials: Sequence[FrozenTrial]) -> list[TrialStage]:
    out = []
    for t in trials:
        why = ""
        if t.state is TrialState.PRUNED:
            why = str(t.user_attrs.get(TrialAttr.PRUNED_REASON, "pruned (no reason stored)"))
        elif t.state is TrialState.FAIL:
            why = str(t.user_attrs.get(TrialAttr.FAIL_REASON, "failed (no reason stored)"))
        rung = t.user_attrs.get(TrialAttr.RUNG)
        out.append(
            TrialStage(
                t.number,
                t.state.name.lower(),
                _epochs(t),
                int(rung) if rung is not None else None,
                why,
            )
        )
    return out


@dataclass(frozen=True)
class ComputePoint:
    trials_ended: int
    epochs: int
    seconds: float
    hypervolume: float


def hypervolume_by_compute(
    trials: Sequence[FrozenTrial], reference: Sequence[float]
) -> list[ComputePoint]:
    """One point per ended trial, in the order they ended: compute spent by all ended trials so
    far, and the hypervolume of the feasible completed ones. An attempt that was retried counts
    with its retry (whose curve holds its epochs), not on its own."""
    # A retried attempt's epochs are in its retry's curve too: counted once, with the retry.
    superseded = retried_numbers(trials)
    ended = [
        t
        for t in trials
        if t.state in _ENDED and t.datetime_complete is not None and t.number not in superseded
    ]
    ended.sort(key=lambda t: (t.datetime_complete, t.number))
    points: list[tuple[float, float]] = []
    epochs, seconds = 0, 0.0
    out = []
    for i, t in enumerate(ended, start=1):
        epochs += _epochs(t)
        seconds += _seconds(t)
        feasible = all(v <= 0.0 for v in t.constraints.values())
        if t.state is TrialState.COMPLETE and t.values is not None and feasible:
            points.append((float(t.values[0]), float(t.values[1])))
        out.append(ComputePoint(i, epochs, seconds, hypervolume_2d(points, reference)))
    return out
