"""The typed training configuration: one recipe, validated once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from automl.data.augment import AugmentConfig
from automl.errors import ConfigError
from automl.training.execution import TrainForm
from automl.training.losses import CotKind

__all__ = ["TrainConfig"]


def _one_of(kind: type[StrEnum]) -> str:
    """'a', 'b' or 'c': the allowed values of an enum, for messages."""
    names = [f"'{k}'" for k in kind]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's trajectory (together with the model and data).

    ``augment=None`` uses the data set's default augmentation. ``weight_decay`` is the undivided
    value; with ``divide_weight_decay`` it becomes wd * exp(1/K - 1) for K members.
    ``max_steps_per_epoch`` caps an epoch for quick runs. ``cot_floor_after_warmup`` keeps the
    co-training weight at least 0.005 after the warm-up too (the authors' code floors it during the
    warm-up only, which is the default).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    min_lr: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    divide_weight_decay: bool = True
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    cot_weight: float = 0.5
    cot_kind: CotKind = CotKind.JS
    cot_warmup_epochs: int = 40
    cot_temperature: float = 1.0
    cot_floor_after_warmup: bool = False
    mixup_alpha: float = 0.0
    augment: AugmentConfig | None = None
    seed: int = 0
    amp: bool = True
    # None: channels_last on CUDA, and on the CPU the faster layout, timed on the first batch.
    channels_last: bool | None = None
    max_steps_per_epoch: int | None = None
    execution: str = str(TrainForm.AUTO)
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "cot_kind", self._kind(self.cot_kind))
        positive_int = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive_int.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        checks = {
            "lr": self.lr > 0,
            "min_lr": 0 <= self.min_lr <= self.lr,
            "momentum": 0 <= self.momentum < 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_epochs": self.warmup_epochs >= 0,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "cot_weight": self.cot_weight >= 0 and math.isfinite(self.cot_weight),
            "cot_warmup_epochs": self.cot_warmup_epochs >= 0,
            "cot_temperature": self.cot_temperature > 0,
            "mixup_alpha": self.mixup_alpha >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid training setting {name}={getattr(self, name)!r}")
        if self.execution not in tuple(TrainForm):
            raise ConfigError(f"execution must be {_one_of(TrainForm)}, got {self.execution!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")

    @staticmethod
    def _kind(value: object) -> CotKind:
        try:
            return CotKind(str(value))
        except ValueError as e:
            raise ConfigError(f"cot_kind must be {_one_of(CotKind)}, got {value!r}") from e

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cot_kind"] = str(self.cot_kind)
        return d

    def fingerprint(self) -> str:
        """A short hash of the settings that shape the trajectory (refuses foreign checkpoints)."""
        d = self.to_dict()
        d.pop("eval_batch_size", None)
        # The form changes kernels, not the trajectory: a run may resume in either form.
        d.pop("execution", None)
        # Added later with a default that changes nothing: leaving it out at its default keeps
        # the fingerprints of checkpoints written before it existed, so those runs still resume.
        if not self.cot_floor_after_warmup:
            d.pop("cot_floor_after_warmup", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
