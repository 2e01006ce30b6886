"""Declarative search spaces: TOML files loaded and validated into typed, frozen objects.

A space names the data, the model family, the fixed recipe, the searched parameters, the two
objectives, the constraints and the sampler. Every malformed entry raises ``SearchSpaceError`` with
the file, the key and what is allowed. ``to_dict``/``from_dict`` round-trip the space through the
study's attributes, so that a worker needs only the storage URL and the study name.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, is_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast, get_args, get_type_hints

import optuna
import torch

from automl.data import DataBundle
from automl.data.augment import AugmentConfig, AugmentOrder
from automl.data.datasets import check_available, list_datasets, load_dataset
from automl.device import resolve_device
from automl.errors import ConfigError, DataError, SearchSpaceError
from automl.latency import ExecutionMode
from automl.models import create_model, get_spec, list_models
from automl.models.ensemble import Combine, Ensemble
from automl.pruning import ParetoPruner
from automl.scheduler import EarlyStopper, RungScheduler, SchedulerKind, SchedulerSection
from automl.training.config import TrainConfig
from automl.training.execution import TrainForm
from automl.training.losses import CotKind

__all__ = [
    "Choice",
    "FloatRange",
    "IntRange",
    "Param",
    "SearchSpace",
    "TrainSection",
    "TrialParams",
    "load_space",
    "parse_space",
    "space_differences",
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


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if len(self.choices) == 1:
            return self.choices[0]
        return trial.suggest_categorical(name, list(self.choices))


Param = FloatRange | IntRange | Choice


def _setting(
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


@dataclass(frozen=True)
class DataSection:
    dataset: str
    root: str | None = None
    val_fraction: float = _setting(0.1, low=0.001, high=0.9)
    split_seed: int = _setting(0, low=0)
    # At least train.batch_size too (checked with the [train] section): one full batch.
    train_limit: int | None = _setting(None, low=2)
    eval_limit: int | None = _setting(None, low=1)
    image_size: int = _setting(224, low=8, high=MAX_IMAGE_SIZE)

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
    drop_rate: float = _setting(0.0, low=0.0, high=0.99)
    default_width_mult: float = _setting(1.0, low=1e-3, high=MAX_WIDTH_MULT)
    combine: str = _setting(str(Combine.MEAN_LOGITS), choices=tuple(Combine))
    # The family's own options (``get_spec(name).options``), passed to ``create_model`` as given;
    # absent ones are the paper's setting. Left out of the hash: a dict is not hashable, and the
    # other fields already tell sections apart wherever one is used as a key.
    options: dict[str, Any] = field(default_factory=dict, hash=False)


# The fixed part of the training recipe, the space's ``[train]`` section. Its defaults are
# TrainConfig's: one recipe, declared once.
_T = TrainConfig


@dataclass(frozen=True)
class TrainSection:
    epochs: int = _setting(_T.epochs, low=1, high=10_000)
    # BatchNorm cannot train on a batch of one image.
    batch_size: int = _setting(_T.batch_size, low=2, high=65_536)
    lr: float = _setting(_T.lr, low=1e-8, high=10.0)
    min_lr: float = _setting(_T.min_lr, low=0.0, high=10.0)
    momentum: float = _setting(_T.momentum, low=0.0, high=0.999)
    weight_decay: float = _setting(_T.weight_decay, low=0.0, high=1.0)
    # At most ``epochs`` (checked with the section).
    warmup_epochs: float = _setting(_T.warmup_epochs, low=0.0, high=10_000)
    label_smoothing: float = _setting(_T.label_smoothing, low=0.0, high=0.99)
    mixup_alpha: float = _setting(_T.mixup_alpha, low=0.0, high=100.0)
    cot_temperature: float = _setting(_T.cot_temperature, low=1e-3, high=100.0)
    cot_floor_after_warmup: bool = _T.cot_floor_after_warmup
    max_steps_per_epoch: int | None = _setting(_T.max_steps_per_epoch, low=1, high=10_000_000)
    amp: bool = _T.amp
    execution: str = _setting(_T.execution, choices=tuple(TrainForm))
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


@dataclass(frozen=True)
class ObjectiveSection:
    latency_batch_size: int = _setting(1, low=1, high=4096)
    latency_mode: str = _setting(str(ExecutionMode.AUTO), choices=tuple(ExecutionMode))
    latency_threads: int | None = _setting(None, low=1, high=MAX_LATENCY_THREADS)
    latency_min_run_s: float = _setting(1.0, low=LATENCY_RUN_S[0], high=LATENCY_RUN_S[1])
    latency_warmup_s: float = _setting(0.3, low=0.0, high=LATENCY_RUN_S[1])
    # The deployment target when it is not the worker's device: GPU workers can train on the GPU
    # and time on the CPU ("cpu", "cuda" or "cuda:N"; unset: the worker's device).
    latency_device: str | None = _setting(None)
    # Timed next to the study's baseline network, the latency kept as ratio x the baseline's
    # settled time (automl.latency): the machine's drift cancels in the ratio.
    latency_paired: bool = _setting(True)

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
    max_params: float | None = _setting(None, above=0.0)
    max_flops: float | None = _setting(None, above=0.0)
    max_params_ratio: float | None = _setting(None, above=0.0)
    max_flops_ratio: float | None = _setting(None, above=0.0)
    max_macs: float | None = _setting(None, above=0.0)
    max_macs_ratio: float | None = _setting(None, above=0.0)

    @property
    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


@dataclass(frozen=True)
class SamplerSection:
    name: str = _setting(str(SamplerName.TPE), choices=tuple(SamplerName))
    seed: int | None = _setting(0, low=0, high=MAX_SEED)
    n_startup_trials: int = _setting(8, low=0, high=100_000)
    population_size: int = _setting(16, low=2, high=100_000)


@dataclass(frozen=True)
class TrialParams:
    """One point of the space: the parameters a trial samples (the rest of its ``TrainConfig``
    comes from the space's ``[train]`` section)."""

    split_factor: int
    width_mult: float
    cot_weight: float
    cot_kind: str
    cot_warmup_epochs: int
    lr: float
    weight_decay: float
    divide_weight_decay: bool


@dataclass(frozen=True)
class SearchSpace:
    name: str
    data: DataSection
    model: ModelSection
    train: TrainSection
    search: SearchSection
    objectives: ObjectiveSection = field(default_factory=ObjectiveSection)
    constraints: ConstraintSection = field(default_factory=ConstraintSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    pruner: ParetoPruner = field(default_factory=ParetoPruner)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    source: str = "<dict>"

    # -- sampling -------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> TrialParams:
        s = self.search
        k = int(s.split_factor.suggest(trial, "split_factor"))
        wm = float(s.width_mult.suggest(trial, "width_mult"))
        # The co-training term is off for K = 1, so its parameters are only searched for K > 1.
        if k > 1:
            cot_w = float(s.cot_weight.suggest(trial, "cot_weight"))
            cot_kind = str(s.cot_kind.suggest(trial, "cot_kind"))
            cot_warm = int(s.cot_warmup_epochs.suggest(trial, "cot_warmup_epochs"))
        else:
            cot_w, cot_kind, cot_warm = 0.0, str(CotKind.JS), 0
        lr = float(s.lr.suggest(trial, "lr")) if s.lr is not None else self.train.lr
        wd = (
            float(s.weight_decay.suggest(trial, "weight_decay"))
            if s.weight_decay is not None
            else self.train.weight_decay
        )
        div_wd = bool(s.divide_weight_decay.suggest(trial, "divide_weight_decay"))
        return TrialParams(k, wm, cot_w, cot_kind, cot_warm, lr, wd, div_wd)

    def baseline_params(self) -> dict[str, Any]:
        """Parameters of the undivided baseline: K = 1 at the default width."""
        params: dict[str, Any] = {}
        if len(self.search.split_factor.choices) > 1:
            params["split_factor"] = 1
        if (
            not isinstance(self.search.width_mult, Choice)
            or len(self.search.width_mult.choices) > 1
        ):
            params["width_mult"] = self.model.default_width_mult
        return params

    def build_model(self, params: TrialParams, num_classes: int, in_chans: int) -> Ensemble:
        """The network of one point of the space (untrained)."""
        return create_model(
            self.model.name,
            num_classes=num_classes,
            in_chans=in_chans,
            split_factor=params.split_factor,
            width_mult=params.width_mult,
            drop_rate=self.model.drop_rate,
            combine=self.model.combine,
            **self.model.options,
        )

    def train_config(self, params: TrialParams, seed: int = 0) -> TrainConfig:
        """The whole recipe of a trial: the ``[train]`` section with the sampled parameters."""
        fixed = {f.name: getattr(self.train, f.name) for f in fields(TrainSection)}
        return TrainConfig(
            **fixed
            | {
                "lr": params.lr,
                "min_lr": min(self.train.min_lr, params.lr),
                "weight_decay": params.weight_decay,
                "divide_weight_decay": params.divide_weight_decay,
                "cot_weight": params.cot_weight,
                "cot_kind": CotKind(params.cot_kind),
                "cot_warmup_epochs": params.cot_warmup_epochs,
                "seed": seed,
            }
        )

    @property
    def scheduler_kind(self) -> SchedulerKind:
        """The early-stopping rule: ``[scheduler] kind``, else what ``[pruner]`` says."""
        if self.scheduler.kind is not None:
            return SchedulerKind(self.scheduler.kind)
        return SchedulerKind.DOMINANCE if self.pruner.enabled else SchedulerKind.NONE

    def early_stopper(self, epochs: int | None = None) -> EarlyStopper | None:
        """What decides after each epoch whether a trial goes on (``None``: every trial trains
        its full budget); ``epochs`` defaults to the recipe's."""
        kind = self.scheduler_kind
        if kind is SchedulerKind.ASHA:
            sc = self.scheduler
            return RungScheduler(sc.eta, sc.min_epochs, epochs or self.train.epochs)
        if kind is SchedulerKind.DOMINANCE:
            return self.pruner
        return None

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        sm = self.sampler
        if sm.name == SamplerName.TPE:
            return optuna.samplers.TPESampler(
                seed=sm.seed, n_startup_trials=sm.n_startup_trials, multivariate=True, group=True
            )
        if sm.name == SamplerName.NSGAII:
            return optuna.samplers.NSGAIISampler(seed=sm.seed, population_size=sm.population_size)
        return optuna.samplers.RandomSampler(seed=sm.seed)

    # -- what the file alone cannot tell -----------------------------------------------------------
    def check_runtime(self, device: str | torch.device | None = None, *, data: bool = True) -> None:
        """Check the space against this machine before a study is stored: with ``data`` that the
        data set's files are where ``[data]`` says (their presence, nothing is read); with a
        ``device`` that it exists here and can time the ``[objectives]`` latency mode."""
        if data:
            try:
                check_available(self.data.dataset, self.data.root)
            except DataError as e:
                raise DataError(f"{self.source}: [data] {e}") from e
        if device is not None:
            self._check_device(resolve_device(device))

    def _check_device(self, dev: torch.device) -> None:
        obj = self.objectives
        mode = ExecutionMode(obj.latency_mode)
        need = {
            ExecutionMode.STREAMS: ("cuda", 1, "a CUDA device"),
            ExecutionMode.DEVICES: ("cuda", 2, "two or more CUDA devices"),
            ExecutionMode.THREADS: ("cpu", 1, "the CPU"),
        }.get(mode)
        if need is not None:
            kind, count, what = need
            gpus = torch.cuda.device_count() if dev.type == "cuda" else 0
            if dev.type != kind or (kind == "cuda" and gpus < count):
                raise ConfigError(
                    f"{self.source}: [objectives.latency_mode] {mode.value!r} needs {what}, and "
                    f'this run uses {dev}; set latency_mode = "auto" in the space file, or '
                    "run on such a device with --device"
                )
        if obj.latency_device is not None:
            try:
                resolve_device(obj.latency_device)
            except ConfigError as e:
                raise ConfigError(f"{self.source}: [objectives.latency_device] {e}") from e
        cpus = os.cpu_count() or 1
        if obj.latency_threads is not None and obj.latency_threads > cpus:
            raise ConfigError(
                f"{self.source}: [objectives.latency_threads] is {obj.latency_threads}, and this "
                f"machine has {cpus} CPUs: more threads than cores time contention, not the "
                f"network; set it to at most {cpus} or leave it out"
            )

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return _jsonable(d)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        """Inverse of ``to_dict`` (how a worker reads the space stored in a study)."""
        return space_from_stored(raw)


def space_differences(a: SearchSpace, b: SearchSpace) -> list[str]:
    """The keys on which two spaces differ, each as "key: value in a vs value in b" (the file
    each came from is left out: the same space may be loaded from two paths)."""

    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, Mapping):
                out |= flat(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
        return out

    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    keys = sorted((fa.keys() | fb.keys()) - {"source"})
    differ = [k for k in keys if fa.get(k) != fb.get(k)]
    return [f"{k}: {_show(fa.get(k))} vs {_show(fb.get(k))}" for k in differ]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Parsing and validation
# ---------------------------------------------------------------------------------------------

_SECTIONS = {
    "study",
    "data",
    "model",
    "train",
    "search",
    "objectives",
    "constraints",
    "sampler",
    "name",
    "source",
    "recipe",
    "schema_version",
    "pruner",
    "scheduler",
}
S = TypeVar("S")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if isinstance(tp, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) < len(get_args(tp))
    return tp, False


def _show(value: Any, limit: int = 60) -> str:
    """A value as one short line: values come from the file, which may hold anything (newlines,
    megabytes of text), and an error message stays a single readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(key: str, limit: int = 80) -> str:
    """A key as written when it is plain text, else quoted (a key may be any TOML string)."""
    return key if key.isprintable() and len(key) <= limit else _show(key, limit)


def _non_finite(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


_NOT_FINITE = "nan and inf are not allowed; write a finite number"


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, msg: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: [{_key(key)}] {msg}")

    def table(self, raw: Mapping[str, Any], key: str, required: bool = False) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is missing: this section is required")
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a table, got {type(value).__name__}")
        return dict(value)

    def only(self, table: Mapping[str, Any], section: str, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                raise self.fail(
                    f"{section}.{_key(k, 60)}",
                    f"unknown key; allowed keys: {', '.join(sorted(allowed))}",
                )

    def number(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        default: Any,
        *,
        kind: type = float,
        low: float | None = None,
        high: float | None = None,
        above: float | None = None,
        optional: bool = False,
    ) -> Any:
        if key not in table:
            return default
        v = table[key]
        if v is None and optional:
            return None
        name = f"{section}.{key}"
        if _non_finite(v):
            raise self.fail(name, f"must be a finite number, got {v!r}: {_NOT_FINITE}")
        ok_types: tuple[type, ...] = (int,) if kind is int else (int, float)
        if isinstance(v, bool) or not isinstance(v, ok_types):
            raise self.fail(
                name, f"must be {'an integer' if kind is int else 'a number'}, got {_show(v)}"
            )
        v = cast(float, v)  # an int or a finite float, checked above
        if low is not None and v < low:
            raise self.fail(name, f"must be >= {low}, got {v}")
        if above is not None and v <= above:
            raise self.fail(name, f"must be > {above}, got {v}; leave the key out for no limit")
        if high is not None and v > high:
            raise self.fail(name, f"must be <= {high}, got {v}")
        return kind(v)

    def boolean(self, table: Mapping[str, Any], section: str, key: str, default: bool) -> bool:
        if key not in table:
            return default
        v = table[key]
        if not isinstance(v, bool):
            raise self.fail(f"{section}.{key}", f"must be true or false, got {_show(v)}")
        return v

    def string(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        default: str | None,
        choices: tuple[str, ...] | None = None,
    ) -> str | None:
        if key not in table:
            return default
        v = table[key]
        if not isinstance(v, str):
            raise self.fail(f"{section}.{key}", f"must be a string, got {_show(v)}")
        if choices is not None and v not in choices:
            raise self.fail(
                f"{section}.{key}", f"must be one of {', '.join(choices)}, got {_show(v)}"
            )
        return v

    def setting(self, table: Mapping[str, Any], section: str, f: Field[Any], tp: Any) -> Any:
        """The value of one key of a section, checked against its field's type and metadata."""
        base, optional = _unwrap_optional(tp)
        meta = {**f.metadata, **_EXTRA_BOUNDS.get(f"{section}.{f.name}", {})}
        if isinstance(base, types.UnionType) and str in get_args(base):
            # ``SomeStrEnum | str`` (e.g. AugmentConfig.order): a string, checked against the
            # choices declared for it; the owning dataclass turns it into its enum.
            base = str
        if base is bool:
            return self.boolean(table, section, f.name, False)
        if base is int or base is float:
            return self.number(
                table,
                section,
                f.name,
                None,
                kind=base,
                low=meta.get("low"),
                high=meta.get("high"),
                above=meta.get("above"),
                optional=optional,
            )
        if base is str:
            return self.string(table, section, f.name, None, meta.get("choices"))
        if is_dataclass(base):
            sub = table[f.name]
            if not isinstance(sub, Mapping):
                raise self.fail(f"{section}.{f.name}", f"must be a table, got {_show(sub)}")
            return self.section(cast(type, base), sub, f"{section}.{f.name}")
        raise TypeError(f"no parser for {section}.{f.name}: {tp}")  # a bug here, not user input

    def section(self, cls: type[S], table: Mapping[str, Any], section: str, **given: Any) -> S:
        """A section dataclass from ``table``: unknown keys refused, every present key checked,
        missing keys left to the field's default; ``given`` are values parsed elsewhere."""
        names = [f.name for f in fields(cast(Any, cls))]
        self.only(table, section, set(names))
        values = dict(given)
        hints = get_type_hints(cls)
        for f in fields(cast(Any, cls)):
            if f.name in table and f.name not in values:
                values[f.name] = self.setting(table, section, f, hints[f.name])
        return cls(**values)

    def searched(self, table: Mapping[str, Any], f: Field[Any], default: Any) -> Param | None:
        """A searched parameter from ``[search]``, with the bounds its field declares."""
        raw = table.get(f.name, default)
        return None if raw is None else self.param(raw, f.name, f.metadata["searched"])

    def param(self, raw: Any, key: str, bounds: Searched) -> Param:
        """A searched parameter: a fixed value, a list of choices, or {low, high, log, step}."""
        name = f"search.{key}"
        if isinstance(raw, list):
            if not raw:
                raise self.fail(name, "an empty list of choices; give at least one value")
            vals = tuple(self._searched_value(name, v, bounds) for v in raw)
            if len(set(vals)) != len(vals):
                raise self.fail(name, f"duplicate choices in {list(vals)}")
            return Choice(vals)
        if isinstance(raw, Mapping):
            return self._range(name, raw, bounds)
        return Choice((self._searched_value(name, raw, bounds),))

    def _searched_value(self, name: str, v: Any, b: Searched) -> Any:
        if b.choices is not None:
            # Compared by type too: TOML's 1 is not the flag true, nor 1.0 the string "1".
            if not any(type(v) is type(c) and v == c for c in b.choices):
                raise self.fail(name, f"value {_show(v)} not allowed; allowed: {list(b.choices)}")
            return v
        if _non_finite(v):
            raise self.fail(name, f"value {v!r} is not a finite number: {_NOT_FINITE}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(name, f"values must be numbers, got {_show(v)}")
        if b.integer and not isinstance(v, int):
            raise self.fail(name, f"values must be integers, got {_show(v)}")
        if (b.low is not None and v < b.low) or (b.high is not None and v > b.high):
            lo = b.low if b.low is not None else "-inf"
            hi = b.high if b.high is not None else "inf"
            raise self.fail(name, f"value {v} is outside the allowed range [{lo}, {hi}]")
        return v

    def _range(self, name: str, raw: Mapping[str, Any], b: Searched) -> FloatRange | IntRange:
        if b.choices is not None:
            raise self.fail(name, f"must be a value or a list of {list(b.choices)}, not a range")
        self.only(raw, name, {"low", "high", "log", "step"})
        if "low" not in raw or "high" not in raw:
            raise self.fail(name, "a range needs both 'low' and 'high'")
        lo, hi = (
            self._searched_value(name, raw["low"], b),
            self._searched_value(name, raw["high"], b),
        )
        if lo > hi:
            raise self.fail(name, f"low ({lo}) must not exceed high ({hi})")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise self.fail(f"{name}.log", f"must be true or false, got {_show(log)}")
        if log and lo <= 0:
            raise self.fail(name, f"a log range needs low > 0, got {lo}")
        step = raw.get("step")
        if step is not None and (
            isinstance(step, bool)
            or not isinstance(step, int | float)
            or _non_finite(step)
            or step <= 0
        ):
            raise self.fail(f"{name}.step", f"must be a positive finite number, got {_show(step)}")
        if b.integer and step is not None and not isinstance(step, int):
            raise self.fail(f"{name}.step", f"must be an integer for this parameter, got {step}")
        if log and step is not None:
            raise self.fail(name, "'log' and 'step' cannot be combined")
        if b.integer:
            return IntRange(int(lo), int(hi), log, int(step or 1))
        return FloatRange(float(lo), float(hi), log, float(step) if step is not None else None)


# Bounds and allowed values of fields declared in other packages (AugmentConfig belongs to the
# data package, ParetoPruner to the pruning module).
_EXTRA_BOUNDS: dict[str, dict[str, Any]] = {
    "train.augment.crop_padding": {"low": 0, "high": 64},
    "train.augment.random_erasing": {"low": 0.0, "high": 1.0},
    "train.augment.order": {"choices": tuple(o.value for o in AugmentOrder)},
    "pruner.warmup_epochs": {"low": 0, "high": 10_000},
    "pruner.min_dominators": {"low": 1, "high": 100_000},
}


def _parse_data(c: _Ctx, raw: Mapping[str, Any]) -> DataSection:
    d = c.table(raw, "data", required=True)
    c.only(d, "data", {f.name for f in fields(DataSection)})
    datasets = tuple(list_datasets())
    dataset = c.string(d, "data", "dataset", None, datasets)
    if dataset is None:
        raise c.fail("data.dataset", f"is required; one of {', '.join(datasets)}")
    root = c.string(d, "data", "root", None)
    return c.section(DataSection, d, "data", dataset=dataset, root=root or None)


def _parse_model(c: _Ctx, raw: Mapping[str, Any]) -> ModelSection:
    m = c.table(raw, "model", required=True)
    c.only(m, "model", {f.name for f in fields(ModelSection)})
    name = c.string(m, "model", "name", None)
    if name is None or name not in list_models():
        raise c.fail(
            "model.name",
            f"unknown model {_show(name)}; available: {', '.join(list_models())}",
        )
    options = _parse_model_options(c, m, name)
    return c.section(ModelSection, m, "model", name=name, options=options)


def _parse_model_options(c: _Ctx, m: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``[model.options]``: names checked against the model's own options at load time, so that a
    typo fails here and not on a worker after the study was created."""
    raw = m.get("options", {})
    if not isinstance(raw, Mapping):
        raise c.fail("model.options", f"must be a table, got {type(raw).__name__}")
    accepted = get_spec(name).options
    for key, value in raw.items():
        if key not in accepted:
            raise c.fail(
                f"model.options.{key}",
                f"model {name!r} has no such option; its options: "
                f"{', '.join(accepted) if accepted else 'none'}",
            )
        # The builders take plain values (flags, rates); tables or lists are a mistake.
        if not isinstance(value, bool | int | float | str):
            raise c.fail(
                f"model.options.{key}",
                f"must be a boolean, a number or a string, got {_show(value)}",
            )
        if _non_finite(value):
            raise c.fail(f"model.options.{key}", f"is {value!r}: {_NOT_FINITE}")
    return dict(raw)


def _parse_search(c: _Ctx, raw: Mapping[str, Any], model: ModelSection) -> SearchSection:
    s = c.table(raw, "search", required=True)
    c.only(s, "search", {f.name for f in fields(SearchSection)})
    if "split_factor" not in s:
        raise c.fail("search.split_factor", "is required: a list of K values such as [1, 2, 4]")
    values: dict[str, Any] = {}
    for f in fields(SearchSection):
        # The width is not searched unless asked: the model's default width.
        default = (
            model.default_width_mult if f.name == "width_mult" else f.metadata["searched"].default
        )
        values[f.name] = c.searched(s, f, default)
    split = values["split_factor"]
    if not isinstance(split, Choice):
        values["split_factor"] = Choice(tuple(range(int(split.low), int(split.high) + 1)))
    if 1 not in values["split_factor"].choices:
        raise c.fail(
            "search.split_factor",
            "must include 1: the undivided network is the baseline every front is compared with",
        )
    return SearchSection(**values)


def _parse(raw: Mapping[str, Any], source: str) -> SearchSpace:
    c = _Ctx(source)
    c.only(raw, "top level", _SECTIONS)
    study = c.table(raw, "study")
    c.only(study, "study", {"name"})
    name = c.string(study, "study", "name", None) or raw.get("name") or Path(source).stem
    data = _parse_data(c, raw)
    model = _parse_model(c, raw)
    # "recipe" is the section's older name (and the key of spaces stored by older versions).
    train = c.table(raw, "train") or c.table(raw, "recipe")
    space = SearchSpace(
        name=str(name),
        data=data,
        model=model,
        train=c.section(TrainSection, train, "train"),
        search=_parse_search(c, raw, model),
        objectives=c.section(ObjectiveSection, c.table(raw, "objectives"), "objectives"),
        constraints=c.section(ConstraintSection, c.table(raw, "constraints"), "constraints"),
        sampler=c.section(SamplerSection, c.table(raw, "sampler"), "sampler"),
        pruner=c.section(ParetoPruner, c.table(raw, "pruner"), "pruner"),
        scheduler=c.section(SchedulerSection, c.table(raw, "scheduler"), "scheduler"),
        source=source,
    )
    _check_together(c, space)
    return space


def _check_together(c: _Ctx, space: SearchSpace) -> None:
    """Rules that tie keys of different sections together."""
    d, t = space.data, space.train
    # Below one batch every step trains on the same partial batch; with drop_last the partial
    # batch is dropped, so a full one is what the fit loop needs.
    if d.train_limit is not None and d.train_limit < t.batch_size:
        raise c.fail(
            "data.train_limit",
            f"must be at least [train] batch_size ({t.batch_size}) so that a full batch "
            f"exists, got {d.train_limit}; raise train_limit or lower batch_size",
        )
    if t.warmup_epochs > t.epochs:
        raise c.fail(
            "train.warmup_epochs",
            f"must not exceed [train] epochs ({t.epochs}), got {t.warmup_epochs}: the learning "
            "rate would never reach its peak; lower warmup_epochs",
        )
    sc = space.scheduler
    if sc.kind == SchedulerKind.DOMINANCE and not space.pruner.enabled:
        raise c.fail(
            "scheduler.kind",
            '"dominance" is the [pruner] rule, which [pruner] enabled = false turns off; '
            "remove one of the two",
        )
    if sc.kind == SchedulerKind.ASHA and sc.min_epochs >= t.epochs:
        raise c.fail(
            "scheduler.min_epochs",
            f"must be below [train] epochs ({t.epochs}) for a rung to exist, got "
            f"{sc.min_epochs}; lower min_epochs or raise epochs",
        )
    # The baseline is trained at the model's default width, enqueued as a fixed parameter: a
    # list of widths must hold it, or the baseline fails when it asks for its width.
    width = space.search.width_mult
    default = space.model.default_width_mult
    if isinstance(width, Choice) and len(width.choices) > 1 and default not in width.choices:
        raise c.fail(
            "search.width_mult",
            f"the choices {list(width.choices)} must include [model] default_width_mult "
            f"({default}), the width of the undivided baseline; add it or change the default",
        )


def _from_stored(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``to_dict()`` output back into the TOML-shaped mapping the parser reads."""

    def param(p: Mapping[str, Any] | None) -> Any:
        if p is None:
            return None
        if "choices" in p:
            return list(p["choices"])
        out = {"low": p["low"], "high": p["high"], "log": p["log"]}
        if p.get("step") is not None and not p["log"]:
            out["step"] = p["step"]
        return out

    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise SearchSpaceError(
            f"the study's search space has schema version {raw.get('schema_version')}, this "
            f"automl reads version {SCHEMA_VERSION}; upgrade automl on this worker"
        )
    search = {k: param(v) for k, v in raw["search"].items() if v is not None}
    train = raw["train"] if "train" in raw else raw["recipe"]  # "recipe": older versions
    train = {k: v for k, v in train.items() if v is not None}
    return {
        "study": {"name": raw["name"]},
        "data": {k: v for k, v in raw["data"].items() if v is not None},
        "model": dict(raw["model"]),
        "train": train,
        "search": search,
        "objectives": {k: v for k, v in raw["objectives"].items() if v is not None},
        "constraints": {k: v for k, v in raw["constraints"].items() if v is not None},
        "sampler": {k: v for k, v in raw["sampler"].items() if v is not None},
        "pruner": dict(raw.get("pruner", {})),
        "scheduler": {k: v for k, v in raw.get("scheduler", {}).items() if v is not None},
    }


def space_from_stored(raw: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space stored in a study (``SearchSpace.to_dict()``)."""
    source = str(raw.get("source", "<study>"))
    try:
        shaped = _from_stored(raw)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SearchSpaceError(f"the search space stored in the study is malformed: {e}") from e
    try:
        return _parse(shaped, source)
    except SearchSpaceError as e:
        # A space an older automl accepted (nan, a bound since added): it can never run here.
        detail = str(e).removeprefix(f"{source}: ")
        raise SearchSpaceError(
            f"the search space stored in the study (from {source}) is no longer valid: {detail}; "
            "start a new study (another --study name) from a corrected space file"
        ) from e


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a TOML search space."""
    p = Path(path)
    if not p.is_file():
        raise SearchSpaceError(f"search space file {p} not found; see search_spaces/ for examples")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SearchSpaceError(f"{p}: not a UTF-8 text file") from e
    except OSError as e:
        raise SearchSpaceError(f"cannot read search space file {p}: {e.strerror}") from e
    return parse_space(text, str(p))


def parse_space(text: str, source: str = "<string>") -> SearchSpace:
    """Load and validate a search space from TOML text; ``source`` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SearchSpaceError(f"{source}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise SearchSpaceError(f"{source}: not valid TOML: nested too deeply") from e
    return _parse(raw, source)
