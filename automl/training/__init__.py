"""Co-training: losses, the learning-rate schedule, the typed recipe and the fit loop.

What this package guarantees: one readable loop (``fit``) whose learning rate is a pure function of
the step, a divided and a fused training form that compute the same losses and gradients, and
epoch checkpoints written atomically and resumed only by the run that wrote them
(``checkpoint``). ``TrainConfig``, ``fit``, ``evaluate``, the co-training losses.
"""

from __future__ import annotations

from automl.training.config import TrainConfig
from automl.training.evaluate import EvalResult, evaluate
from automl.training.fit import EpochRecord, FitResult, fit
from automl.training.losses import (
    CotKind,
    LossParts,
    co_training_loss,
    cot_weight_at,
    ensemble_loss,
)
from automl.training.schedule import lr_at

__all__ = [
    "CotKind",
    "EpochRecord",
    "EvalResult",
    "FitResult",
    "LossParts",
    "TrainConfig",
    "co_training_loss",
    "cot_weight_at",
    "ensemble_loss",
    "evaluate",
    "fit",
    "lr_at",
]
