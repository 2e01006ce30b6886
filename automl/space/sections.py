"""The sections of a search-space file as typed, frozen dataclasses, with their bounds.

Each field declares its default and the bounds or choices the parser checks (``setting``), so a
rule is written once, next to the value it governs. Nothing here samples, builds or runs: these are
the plain values a worker reads back from the study.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field
from enum import StrEnum
from typing import Any

from automl.data import DataBundle
from automl.data.augment import AugmentConfig
from automl.data.datasets import load_dataset
from automl.errors import ConfigError
from automl.measure.latency import ExecutionMode
from automl.models.ensemble import Combine
from automl.space.params import Choice, Param
from automl.training.config import TrainConfig
from automl.training.execution import TrainForm
from automl.training.losses import CotKind

__all__ = [
    "ConstraintSection",
    "DataSection",
    "ModelSection",
    "ObjectiveSection",
    "PrunerSection",
    "SamplerName",
    "SamplerSection",
    "SchedulerKind",
    "SchedulerSection",
    "SearchSection",
    "Searched",
    "TrainSection",
]

SCHEMA_VERSION = 1

# Width scales a network's parameters about quadratically: 4 is already 16 times the family's own
# size (64 gave convnet_s 314M parameters); a bigger network is another model of the registry.
MAX_WIDTH_MULT = 4.0
# Sampler seeds reach NumPy (which takes seeds below 2**32) after each worker adds its own offset
# of up to 10**6, so they stop well short of that.
MAX_SEED = 2**31 - 1
# No CPU has more cores than this; asking torch for 100000 threads crashed the process outright.
MAX_LATENCY_THREADS = 1024
# Timing windows: shorter than 10 ms is timer noise, longer than a minute per mode stalls a trial.
LATENCY_RUN_S = (0.01, 60.0)
# The largest image side a folder data set is resized to (EfficientNet-B7 uses 600).
MAX_IMAGE_SIZE = 1024
# Seeds per configuration ([search] repeats): each one a full training run.
MAX_REPEATS = 20


def setting(
    default: Any = MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A field of a section with the bounds or allowed values the parser checks (declared once).

    ``low``/``high`` are inclusive bounds, ``above`` an exclusive lower bound (budgets: > 0).
    """
    meta = {"low": low, "high": high, "above": above, "choices": choices}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


class SamplerName(StrEnum):
    TPE = "tpe"
    NSGAII = "nsgaii"
    RANDOM = "random"
    GP = "gp"
    # Expected hypervolume improvement over the networks of the latency survey
    # (automl.search.survey_sampler).
    SURVEY = "survey"


@dataclass(frozen=True)
class DataSection:
    dataset: str
    root: str | None = None
    val_fraction: float = setting(0.1, low=0.001, high=0.9)
    split_seed: int = setting(0, low=0)
    # At least train.batch_size too (checked with the [train] section): one full batch.
    train_limit: int | None = setting(None, low=2)
    eval_limit: int | None = setting(None, low=1)
    image_size: int = setting(224, low=8, high=MAX_IMAGE_SIZE)

    def load(self) -> DataBundle:
        """The data set this section names, split and limited as it says."""
        return load_dataset(
            self.dataset,
            self.root,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            train_limit=self.train_limit,
            eval_limit=self.eval_limit,
            image_size=self.image_size,
        )


@dataclass(frozen=True)
class ModelSection:
    name: str
    drop_rate: float = setting(0.0, low=0.0, high=0.99)
    default_width_mult: float = setting(1.0, low=1e-3, high=MAX_WIDTH_MULT)
    combine: str = setting(str(Combine.MEAN_LOGITS), choices=tuple(Combine))
    # The family's own options (``get_spec(name).options``), passed to ``create_model`` as given;
    # absent ones are the paper's setting. Left out of the hash: a dict is not hashable, and the
    # other fields already tell sections apart wherever one is used as a key.
    options: dict[str, Any] = field(default_factory=dict, hash=False)


# The fixed part of the training recipe, the space's ``[train]`` section. Its defaults are
# TrainConfig's: one recipe, declared once.
_T = TrainConfig


@dataclass(frozen=True)
class TrainSection:
    epochs: int = setting(_T.epochs, low=1, high=10_000)
    # BatchNorm cannot train on a batch of one image.
    batch_size: int = setting(_T.batch_size, low=2, high=65_536)
    lr: float = setting(_T.lr, low=1e-8, high=10.0)
    min_lr: float = setting(_T.min_lr, low=0.0, high=10.0)
    momentum: float = setting(_T.momentum, low=0.0, high=0.999)
    weight_decay: float = setting(_T.weight_decay, low=0.0, high=1.0)
    # At most ``epochs`` (checked with the section).
    warmup_epochs: float = setting(_T.warmup_epochs, low=0.0, high=10_000)
    label_smoothing: float = setting(_T.label_smoothing, low=0.0, high=0.99)
    mixup_alpha: float = setting(_T.mixup_alpha, low=0.0, high=100.0)
    cot_temperature: float = setting(_T.cot_temperature, low=1e-3, high=100.0)
    cot_floor_after_warmup: bool = _T.cot_floor_after_warmup
    max_steps_per_epoch: int | None = setting(_T.max_steps_per_epoch, low=1, high=10_000_000)
    amp: bool = _T.amp
    execution: str = setting(_T.execution, choices=tuple(TrainForm))
    augment: AugmentConfig | None = _T.augment


@dataclass(frozen=True)
class Searched:
    """How a searched parameter is checked, and its value when the space does not search it."""

    default: Any = None
    integer: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None


def _searched(default: Any = None, **bounds: Any) -> dict[str, Searched]:
    return {"searched": Searched(default, **bounds)}


@dataclass(frozen=True)
class SearchSection:
    split_factor: Choice = field(metadata=_searched(integer=True, low=1, high=64))
    width_mult: Param = field(metadata=_searched(low=1e-3, high=MAX_WIDTH_MULT))
    cot_weight: Param = field(metadata=_searched(0.5, low=0.0, high=100.0))
    cot_kind: Choice = field(
        metadata=_searched(str(CotKind.JS), choices=tuple(str(k) for k in CotKind))
    )
    cot_warmup_epochs: Param = field(metadata=_searched(0, integer=True, low=0, high=10_000))
    lr: Param | None = field(default=None, metadata=_searched(low=1e-8, high=10.0))
    weight_decay: Param | None = field(default=None, metadata=_searched(low=0.0, high=1.0))
    divide_weight_decay: Choice = field(
        default_factory=lambda: Choice((True,)), metadata=_searched(True, choices=(True, False))
    )
    # Not searched: each configuration trained to the end is trained with this many seeds, and
    # the study works on the mean of their validation accuracies (their spread stored).
    repeats: int = 1


@dataclass(frozen=True)
class ObjectiveSection:
    latency_batch_size: int = setting(1, low=1, high=4096)
    latency_mode: str = setting(str(ExecutionMode.AUTO), choices=tuple(ExecutionMode))
    latency_threads: int | None = setting(None, low=1, high=MAX_LATENCY_THREADS)
    latency_min_run_s: float = setting(1.0, low=LATENCY_RUN_S[0], high=LATENCY_RUN_S[1])
    latency_warmup_s: float = setting(0.3, low=0.0, high=LATENCY_RUN_S[1])
    # The deployment target when it is not the worker's device: GPU workers can train on the GPU
    # and time on the CPU ("cpu", "cuda" or "cuda:N"; unset: the worker's device).
    latency_device: str | None = setting(None)
    # Timed next to the study's baseline network, the latency kept as ratio x the baseline's
    # settled time (automl.measure.latency): the machine's drift cancels in the ratio.
    latency_paired: bool = setting(True)

    def __post_init__(self) -> None:
        d = self.latency_device
        if d is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", d):
            raise ConfigError(
                f"[objectives] latency_device must be 'cpu', 'cuda' or 'cuda:N', got {d!r}; "
                "leave it out to time on the worker's device"
            )


@dataclass(frozen=True)
class ConstraintSection:
    # Budgets: a budget of zero or less admits no network at all.
    max_params: float | None = setting(None, above=0.0)
    max_flops: float | None = setting(None, above=0.0)
    max_params_ratio: float | None = setting(None, above=0.0)
    max_flops_ratio: float | None = setting(None, above=0.0)
    max_macs: float | None = setting(None, above=0.0)
    max_macs_ratio: float | None = setting(None, above=0.0)
    # Measured before training: a network slower than this is rejected untrained.
    max_latency_ms: float | None = setting(None, above=0.0)

    @property
    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


@dataclass(frozen=True)
class SamplerSection:
    name: str = setting(str(SamplerName.TPE), choices=tuple(SamplerName))
    seed: int | None = setting(0, low=0, high=MAX_SEED)
    n_startup_trials: int = setting(8, low=0, high=100_000)
    population_size: int = setting(16, low=2, high=100_000)
    # How the start's trials are chosen: "random" (the sampler's own start), or "latency": every
    # network of the space timed first and the start spread over the latency order
    # (automl.search.startup).
    startup: str = setting("random", choices=("random", "latency"))


class SchedulerKind(StrEnum):
    ASHA = "asha"
    DOMINANCE = "dominance"
    NONE = "none"


@dataclass(frozen=True)
class SchedulerSection:
    """``[scheduler]``: which early-stopping rule a study uses, and the rungs of ``asha``."""

    # None: from [pruner] (dominance when it is enabled, else none).
    kind: str | None = setting(None, choices=tuple(SchedulerKind))
    eta: int = setting(3, low=2, high=100)
    min_epochs: int = setting(1, low=1, high=100_000)
    # asha: "stop" ends a trial that does not earn the next rung; "promote" pauses it with its
    # checkpoint kept, and resumes it when enough trials at its rung rank below it.
    mode: str = setting("stop", choices=("stop", "promote"))
    # Checkpoints of paused trials kept at once; past it the oldest dominated one is discarded.
    max_paused_checkpoints: int = setting(64, low=1, high=1_000_000)
    # With a time budget: the share of it kept for the final phase.
    final_share: float = setting(0.0, low=0.0, high=0.9)
    # What the final phase does: "continue" resumes the paused networks to the end of their
    # schedule (promote mode); "retrain" trains the most accurate configuration again with a
    # schedule as long as the time left holds (automl.search.retrain), then resumes paused ones;
    # "restart" does the same from the weights that configuration ended with (a warm restart:
    # a new warm-up and cosine of that length).
    final: str = setting("continue", choices=("continue", "retrain", "restart"))


@dataclass(frozen=True)
class PrunerSection:
    """``[pruner]``: the dominance rule (``automl.search.pruning``): stop a trial at epoch e when
    ``min_dominators`` finished trials were as fast and more accurate by ``margin`` there."""

    enabled: bool = True
    warmup_epochs: int = setting(1, low=0, high=10_000)
    margin: float = setting(0.02, low=0.0, high=1.0)
    min_dominators: int = setting(2, low=1, high=100_000)
