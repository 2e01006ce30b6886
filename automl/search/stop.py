"""What an early-stopping rule answers after each epoch: go on, or stop with a reason.

Every rule (``automl.search.scheduler``'s rungs, ``automl.search.pruning``'s dominance) implements
``EarlyStopper``; the trial's epoch reporter asks it and records the ``Stop`` it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import optuna

__all__ = ["EarlyStopper", "Stop"]


@dataclass(frozen=True)
class Stop:
    """Why a trial stops early, and where."""

    reason: str
    rung: int | None = None  # epochs at the rung that stopped it (asha only)
    pause: bool = False  # asha in promote mode: paused with its checkpoint kept, not stopped


class EarlyStopper(Protocol):
    def decide(
        self, study: optuna.Study, trial_number: int, epoch: int, accuracy: float, latency_ms: float
    ) -> Stop | None:
        """After epoch ``epoch`` (0-based) of trial ``trial_number``: a ``Stop``, or ``None`` to
        go on. The trial's own curve is already stored."""
