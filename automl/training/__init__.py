"""Co-training: losses, the learning-rate schedule, the typed recipe and the fit loop."""

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
