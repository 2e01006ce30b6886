"""Declarative search spaces: TOML files loaded and validated into typed, frozen objects.

A space names the data, the model family, the fixed recipe, the searched parameters, the two
objectives, the constraints and the sampler. Every malformed entry raises ``SearchSpaceError`` with
the file, the key and what is allowed. ``to_dict``/``from_dict`` round-trip the space through the
study's attributes, so that a worker needs only the storage URL and the study name.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import optuna

from automl.data.augment import AugmentConfig
from automl.data.datasets import list_datasets
from automl.errors import SearchSpaceError
from automl.models import get_spec, list_models
from automl.pruning import ParetoPruner
from automl.training.config import TrainConfig
from automl.training.losses import CotKind

__all__ = [
    "Choice",
    "FloatRange",
    "IntRange",
    "Param",
    "SearchSpace",
    "TrialConfig",
    "load_space",
]

SCHEMA_VERSION = 1


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


@dataclass(frozen=True)
class DataSection:
    dataset: str
    root: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    train_limit: int | None = None
    eval_limit: int | None = None
    image_size: int = 224


@dataclass(frozen=True)
class ModelSection:
    name: str
    drop_rate: float = 0.0
    default_width_mult: float = 1.0
    combine: str = "mean_logits"


@dataclass(frozen=True)
class RecipeSection:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    min_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cot_temperature: float = 1.0
    max_steps_per_epoch: int | None = None
    amp: bool = True
    execution: str = "auto"
    augment: AugmentConfig | None = None


@dataclass(frozen=True)
class SearchSection:
    split_factor: Choice
    width_mult: Param
    cot_weight: Param
    cot_kind: Choice
    cot_warmup_epochs: Param
    lr: Param | None = None
    weight_decay: Param | None = None
    divide_weight_decay: Choice = field(default_factory=lambda: Choice((True,)))


@dataclass(frozen=True)
class ObjectiveSection:
    latency_batch_size: int = 1
    latency_mode: str = "auto"
    latency_threads: int | None = None
    latency_min_run_s: float = 1.0
    latency_warmup_s: float = 0.3


@dataclass(frozen=True)
class ConstraintSection:
    max_params: float | None = None
    max_flops: float | None = None
    max_params_ratio: float | None = None
    max_flops_ratio: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


@dataclass(frozen=True)
class SamplerSection:
    name: str = "tpe"
    seed: int | None = 0
    n_startup_trials: int = 8
    population_size: int = 16


@dataclass(frozen=True)
class TrialConfig:
    """One point of the space: what a trial trains."""

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
    recipe: RecipeSection
    search: SearchSection
    objectives: ObjectiveSection = field(default_factory=ObjectiveSection)
    constraints: ConstraintSection = field(default_factory=ConstraintSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    pruner: ParetoPruner = field(default_factory=ParetoPruner)
    source: str = "<dict>"

    # -- sampling -------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> TrialConfig:
        s = self.search
        k = int(s.split_factor.suggest(trial, "split_factor"))
        wm = float(s.width_mult.suggest(trial, "width_mult"))
        # The co-training term is off for K = 1, so its parameters are only searched for K > 1.
        if k > 1:
            cot_w = float(s.cot_weight.suggest(trial, "cot_weight"))
            cot_kind = str(s.cot_kind.suggest(trial, "cot_kind"))
            cot_warm = int(s.cot_warmup_epochs.suggest(trial, "cot_warmup_epochs"))
        else:
            cot_w, cot_kind, cot_warm = 0.0, "js", 0
        lr = float(s.lr.suggest(trial, "lr")) if s.lr is not None else self.recipe.lr
        wd = (
            float(s.weight_decay.suggest(trial, "weight_decay"))
            if s.weight_decay is not None
            else self.recipe.weight_decay
        )
        div_wd = bool(s.divide_weight_decay.suggest(trial, "divide_weight_decay"))
        return TrialConfig(k, wm, cot_w, cot_kind, cot_warm, lr, wd, div_wd)

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

    def train_config(self, cfg: TrialConfig, seed: int = 0) -> TrainConfig:
        r = self.recipe
        return TrainConfig(
            epochs=r.epochs,
            batch_size=r.batch_size,
            lr=cfg.lr,
            min_lr=min(r.min_lr, cfg.lr),
            momentum=r.momentum,
            weight_decay=cfg.weight_decay,
            divide_weight_decay=cfg.divide_weight_decay,
            warmup_epochs=r.warmup_epochs,
            label_smoothing=r.label_smoothing,
            cot_weight=cfg.cot_weight,
            cot_kind=CotKind(cfg.cot_kind),
            cot_warmup_epochs=cfg.cot_warmup_epochs,
            cot_temperature=r.cot_temperature,
            mixup_alpha=r.mixup_alpha,
            augment=r.augment,
            seed=seed,
            amp=r.amp,
            max_steps_per_epoch=r.max_steps_per_epoch,
            execution=r.execution,
        )

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        sm = self.sampler
        if sm.name == "tpe":
            return optuna.samplers.TPESampler(
                seed=sm.seed, n_startup_trials=sm.n_startup_trials, multivariate=True, group=True
            )
        if sm.name == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=sm.seed, population_size=sm.population_size)
        return optuna.samplers.RandomSampler(seed=sm.seed)

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return _jsonable(d)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        """Inverse of ``to_dict`` (how a worker reads the space stored in a study)."""
        return space_from_stored(raw)


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
}
_LATENCY_MODES = ("auto", "sequential", "fused", "threads", "streams", "devices")
_SAMPLERS = ("tpe", "nsgaii", "random")


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, msg: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: [{key}] {msg}")

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
                    f"{section}.{k}", f"unknown key; allowed keys: {', '.join(sorted(allowed))}"
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
        optional: bool = False,
    ) -> Any:
        if key not in table:
            return default
        v = table[key]
        if v is None and optional:
            return None
        ok_types: tuple[type, ...] = (int,) if kind is int else (int, float)
        if (
            isinstance(v, bool)
            or not isinstance(v, ok_types)
            or (isinstance(v, float) and not math.isfinite(v))
        ):
            raise self.fail(
                f"{section}.{key}",
                f"must be {'an integer' if kind is int else 'a number'}, got {v!r}",
            )
        v = cast(float, v)  # an int or a finite float, checked above
        if low is not None and v < low:
            raise self.fail(f"{section}.{key}", f"must be >= {low}, got {v}")
        if high is not None and v > high:
            raise self.fail(f"{section}.{key}", f"must be <= {high}, got {v}")
        return kind(v)

    def boolean(self, table: Mapping[str, Any], section: str, key: str, default: bool) -> bool:
        if key not in table:
            return default
        v = table[key]
        if not isinstance(v, bool):
            raise self.fail(f"{section}.{key}", f"must be true or false, got {v!r}")
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
            raise self.fail(f"{section}.{key}", f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(f"{section}.{key}", f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def param(
        self,
        raw: Any,
        key: str,
        *,
        integer: bool = False,
        low: float | None = None,
        high: float | None = None,
        choices: tuple[Any, ...] | None = None,
    ) -> Param:
        """A searched parameter: a fixed value, a list of choices, or {low, high, log, step}."""
        name = f"search.{key}"

        def check_value(v: Any) -> Any:
            if choices is not None:
                if v not in choices:
                    raise self.fail(name, f"value {v!r} not allowed; allowed: {list(choices)}")
                return v
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.fail(name, f"values must be numbers, got {v!r}")
            if integer and not isinstance(v, int):
                raise self.fail(name, f"values must be integers, got {v!r}")
            if (low is not None and v < low) or (high is not None and v > high):
                bounds = (
                    f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
                )
                raise self.fail(name, f"value {v} is outside the allowed range {bounds}")
            return v

        if isinstance(raw, list):
            if not raw:
                raise self.fail(name, "an empty list of choices; give at least one value")
            vals = tuple(check_value(v) for v in raw)
            if len(set(vals)) != len(vals):
                raise self.fail(name, f"duplicate choices in {list(vals)}")
            return Choice(vals)
        if isinstance(raw, Mapping):
            if choices is not None:
                raise self.fail(name, f"must be a value or a list of {list(choices)}, not a range")
            self.only(raw, name, {"low", "high", "log", "step"})
            if "low" not in raw or "high" not in raw:
                raise self.fail(name, "a range needs both 'low' and 'high'")
            lo, hi = check_value(raw["low"]), check_value(raw["high"])
            if lo > hi:
                raise self.fail(name, f"low ({lo}) must not exceed high ({hi})")
            log = raw.get("log", False)
            if not isinstance(log, bool):
                raise self.fail(f"{name}.log", f"must be true or false, got {log!r}")
            if log and lo <= 0:
                raise self.fail(name, f"a log range needs low > 0, got {lo}")
            step = raw.get("step")
            if step is not None and (
                isinstance(step, bool) or not isinstance(step, int | float) or step <= 0
            ):
                raise self.fail(f"{name}.step", f"must be a positive number, got {step!r}")
            if log and step is not None:
                raise self.fail(name, "'log' and 'step' cannot be combined")
            if integer:
                return IntRange(int(lo), int(hi), log, int(step or 1))
            return FloatRange(float(lo), float(hi), log, float(step) if step is not None else None)
        return Choice((check_value(raw),))


def _parse(raw: Mapping[str, Any], source: str) -> SearchSpace:
    c = _Ctx(source)
    c.only(raw, "top level", _SECTIONS)

    study = c.table(raw, "study")
    c.only(study, "study", {"name"})
    name = c.string(study, "study", "name", None) or raw.get("name") or Path(source).stem

    d = c.table(raw, "data", required=True)
    c.only(
        d,
        "data",
        {
            "dataset",
            "root",
            "val_fraction",
            "split_seed",
            "train_limit",
            "eval_limit",
            "image_size",
        },
    )
    dataset = c.string(d, "data", "dataset", None, tuple(list_datasets()))
    if dataset is None:
        raise c.fail("data.dataset", f"is required; one of {', '.join(list_datasets())}")
    root = c.string(d, "data", "root", None)
    data = DataSection(
        dataset=dataset,
        root=root or None,
        val_fraction=c.number(d, "data", "val_fraction", 0.1, low=0.001, high=0.9),
        split_seed=c.number(d, "data", "split_seed", 0, kind=int, low=0),
        train_limit=c.number(d, "data", "train_limit", None, kind=int, low=1, optional=True),
        eval_limit=c.number(d, "data", "eval_limit", None, kind=int, low=1, optional=True),
        image_size=c.number(d, "data", "image_size", 224, kind=int, low=8),
    )

    m = c.table(raw, "model", required=True)
    c.only(m, "model", {"name", "drop_rate", "default_width_mult", "combine"})
    model_name = c.string(m, "model", "name", None)
    if model_name is None or model_name not in list_models():
        raise c.fail(
            "model.name", f"unknown model {model_name!r}; available: {', '.join(list_models())}"
        )
    get_spec(model_name)
    model = ModelSection(
        name=model_name,
        drop_rate=c.number(m, "model", "drop_rate", 0.0, low=0.0, high=0.99),
        default_width_mult=c.number(m, "model", "default_width_mult", 1.0, low=1e-3),
        combine=c.string(
            m, "model", "combine", "mean_logits", ("mean_logits", "mean_probs", "geometric")
        )
        or "mean_logits",
    )

    t = c.table(raw, "train") or c.table(raw, "recipe")
    recipe_keys = {f for f in RecipeSection.__dataclass_fields__}
    c.only(t, "train", recipe_keys)
    aug_raw = t.get("augment")
    augment: AugmentConfig | None = None
    if aug_raw is not None:
        if not isinstance(aug_raw, Mapping):
            raise c.fail("train.augment", "must be a table")
        c.only(aug_raw, "train.augment", {"crop_padding", "hflip", "random_erasing", "autoaugment"})
        augment = AugmentConfig(
            crop_padding=c.number(
                aug_raw, "train.augment", "crop_padding", 0, kind=int, low=0, high=64
            ),
            hflip=c.boolean(aug_raw, "train.augment", "hflip", False),
            random_erasing=c.number(
                aug_raw, "train.augment", "random_erasing", 0.0, low=0.0, high=1.0
            ),
            autoaugment=c.boolean(aug_raw, "train.augment", "autoaugment", False),
        )
    recipe = RecipeSection(
        epochs=c.number(t, "train", "epochs", 10, kind=int, low=1),
        batch_size=c.number(t, "train", "batch_size", 128, kind=int, low=1),
        lr=c.number(t, "train", "lr", 0.1, low=1e-8),
        min_lr=c.number(t, "train", "min_lr", 1e-4, low=0.0),
        momentum=c.number(t, "train", "momentum", 0.9, low=0.0, high=0.999),
        weight_decay=c.number(t, "train", "weight_decay", 5e-4, low=0.0),
        warmup_epochs=c.number(t, "train", "warmup_epochs", 0.0, low=0.0),
        label_smoothing=c.number(t, "train", "label_smoothing", 0.0, low=0.0, high=0.99),
        mixup_alpha=c.number(t, "train", "mixup_alpha", 0.0, low=0.0),
        cot_temperature=c.number(t, "train", "cot_temperature", 1.0, low=1e-3),
        max_steps_per_epoch=c.number(
            t, "train", "max_steps_per_epoch", None, kind=int, low=1, optional=True
        ),
        amp=c.boolean(t, "train", "amp", True),
        execution=c.string(t, "train", "execution", "auto", ("auto", "divided", "fused")) or "auto",
        augment=augment,
    )

    s = c.table(raw, "search", required=True)
    c.only(
        s,
        "search",
        {
            "split_factor",
            "width_mult",
            "cot_weight",
            "cot_kind",
            "cot_warmup_epochs",
            "lr",
            "weight_decay",
            "divide_weight_decay",
        },
    )
    if "split_factor" not in s:
        raise c.fail("search.split_factor", "is required: a list of K values such as [1, 2, 4]")
    split = c.param(s["split_factor"], "split_factor", integer=True, low=1, high=64)
    if not isinstance(split, Choice):
        split = Choice(tuple(range(int(split.low), int(split.high) + 1)))
    search = SearchSection(
        split_factor=split,
        width_mult=c.param(
            s.get("width_mult", model.default_width_mult), "width_mult", low=1e-3, high=64
        ),
        cot_weight=c.param(s.get("cot_weight", 0.5), "cot_weight", low=0.0, high=100.0),
        cot_kind=c.param(s.get("cot_kind", "js"), "cot_kind", choices=("js", "kl")),  # type: ignore[arg-type]
        cot_warmup_epochs=c.param(
            s.get("cot_warmup_epochs", 0), "cot_warmup_epochs", integer=True, low=0, high=10_000
        ),
        lr=c.param(s["lr"], "lr", low=1e-8, high=10.0) if "lr" in s else None,
        weight_decay=c.param(s["weight_decay"], "weight_decay", low=0.0, high=1.0)
        if "weight_decay" in s
        else None,
        divide_weight_decay=c.param(
            s.get("divide_weight_decay", True), "divide_weight_decay", choices=(True, False)
        ),  # type: ignore[arg-type]
    )
    if 1 not in search.split_factor.choices:
        raise c.fail(
            "search.split_factor",
            "must include 1: the undivided network is the baseline every front is compared with",
        )

    o = c.table(raw, "objectives")
    c.only(
        o,
        "objectives",
        {
            "latency_batch_size",
            "latency_mode",
            "latency_threads",
            "latency_min_run_s",
            "latency_warmup_s",
        },
    )
    objectives = ObjectiveSection(
        latency_batch_size=c.number(o, "objectives", "latency_batch_size", 1, kind=int, low=1),
        latency_mode=c.string(o, "objectives", "latency_mode", "auto", _LATENCY_MODES) or "auto",
        latency_threads=c.number(
            o, "objectives", "latency_threads", None, kind=int, low=1, optional=True
        ),
        latency_min_run_s=c.number(o, "objectives", "latency_min_run_s", 1.0, low=0.01),
        latency_warmup_s=c.number(o, "objectives", "latency_warmup_s", 0.3, low=0.0),
    )

    cons = c.table(raw, "constraints")
    c.only(cons, "constraints", {"max_params", "max_flops", "max_params_ratio", "max_flops_ratio"})
    constraints = ConstraintSection(
        **{k: c.number(cons, "constraints", k, None, low=0.0, optional=True) for k in cons}
    )

    sm = c.table(raw, "sampler")
    c.only(sm, "sampler", {"name", "seed", "n_startup_trials", "population_size"})
    sampler = SamplerSection(
        name=c.string(sm, "sampler", "name", "tpe", _SAMPLERS) or "tpe",
        seed=c.number(sm, "sampler", "seed", 0, kind=int, optional=True),
        n_startup_trials=c.number(sm, "sampler", "n_startup_trials", 8, kind=int, low=0),
        population_size=c.number(sm, "sampler", "population_size", 16, kind=int, low=2),
    )
    pr = c.table(raw, "pruner")
    c.only(pr, "pruner", {"enabled", "warmup_epochs", "margin", "min_dominators"})
    pruner = ParetoPruner(
        enabled=c.boolean(pr, "pruner", "enabled", True),
        warmup_epochs=c.number(pr, "pruner", "warmup_epochs", 1, kind=int, low=0),
        margin=c.number(pr, "pruner", "margin", 0.02, low=0.0, high=1.0),
        min_dominators=c.number(pr, "pruner", "min_dominators", 2, kind=int, low=1),
    )
    return SearchSpace(
        name=str(name),
        data=data,
        model=model,
        recipe=recipe,
        search=search,
        objectives=objectives,
        constraints=constraints,
        sampler=sampler,
        pruner=pruner,
        source=source,
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
    recipe = {k: v for k, v in raw["recipe"].items() if v is not None}
    return {
        "study": {"name": raw["name"]},
        "data": {k: v for k, v in raw["data"].items() if v is not None},
        "model": dict(raw["model"]),
        "train": recipe,
        "search": search,
        "objectives": {k: v for k, v in raw["objectives"].items() if v is not None},
        "constraints": {k: v for k, v in raw["constraints"].items() if v is not None},
        "sampler": {k: v for k, v in raw["sampler"].items() if v is not None},
        "pruner": dict(raw.get("pruner", {})),
    }


def space_from_stored(raw: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space stored in a study (``SearchSpace.to_dict()``)."""
    try:
        return _parse(_from_stored(raw), str(raw.get("source", "<study>")))
    except (KeyError, TypeError) as e:
        raise SearchSpaceError(f"the search space stored in the study is malformed: {e}") from e


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a TOML search space."""
    p = Path(path)
    if not p.is_file():
        raise SearchSpaceError(f"search space file {p} not found; see search_spaces/ for examples")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SearchSpaceError(f"{p}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise SearchSpaceError(f"{p}: not a UTF-8 text file") from e
    return _parse(raw, str(p))
