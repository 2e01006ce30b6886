"""A search space: the typed, frozen whole of a space file, and what a trial does with it.

``SearchSpace.suggest`` samples one point (``TrialParams``) from an Optuna trial, ``build_model``
and ``train_config`` turn it into the network and the recipe (``automl.search.samplers`` builds
the space's sampler). ``to_dict``/``from_dict`` round-trip the space through the study's
attributes, so that a worker needs only the storage URL and the study name.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import torch

from automl.data.datasets import check_available, input_of
from automl.device import resolve_device
from automl.errors import ConfigError, DataError, SearchSpaceError
from automl.files import FileKindError, TooLargeError, describe, read_capped
from automl.measure.latency import ExecutionMode
from automl.models import create_model
from automl.models.complexity import count_flops_and_macs, count_parameters
from automl.models.ensemble import Ensemble
from automl.space.params import Choice
from automl.space.parse import parse_sections, show, stored_to_raw
from automl.space.sections import (
    SCHEMA_VERSION,
    ConstraintSection,
    DataSection,
    ModelSection,
    ObjectiveSection,
    PrunerSection,
    SamplerName,
    SamplerSection,
    SchedulerKind,
    SchedulerSection,
    SearchSection,
    TrainSection,
)
from automl.training.config import TrainConfig
from automl.training.losses import CotKind

__all__ = [
    "SearchSpace",
    "TrialParams",
    "load_space",
    "parse_space",
    "space_differences",
    "space_from_stored",
]


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
    pruner: PrunerSection = field(default_factory=PrunerSection)
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

    @property
    def surveys_latency(self) -> bool:
        """Whether the baseline's worker times every network first (``automl.search.startup``):
        ``[sampler] startup = "latency"``, or the survey sampler, which needs it."""
        return self.sampler.startup == "latency" or self.sampler.name == SamplerName.SURVEY

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
        self.check_budgets()

    def check_budgets(self) -> None:
        """A study whose ``[constraints]`` no network of the space meets could never have a
        front: every trial would be infeasible. Sizes only grow with the width, so the narrowest
        network of each K decides; nothing is trained or timed."""
        c = self.constraints
        absolute = (c.max_params, c.max_flops, c.max_macs)
        ratios = (c.max_params_ratio, c.max_flops_ratio, c.max_macs_ratio)
        # The baseline is a network of the space and its ratios are 1: ratios of 1 or more
        # admit it without building anything (every shipped space).
        if all(v is None for v in absolute) and all(r is None or r >= 1 for r in ratios):
            return
        d = self.data
        shape = input_of(d.dataset, d.root, d.image_size)
        if shape is None:  # an image folder not on this machine: its class count is unknown
            return
        classes, chans, side = shape
        width = self.search.width_mult
        narrowest = min(width.choices) if isinstance(width, Choice) else width.low
        base_width = (
            width.choices[0]
            if isinstance(width, Choice) and len(width.choices) == 1
            else self.model.default_width_mult
        )

        def size(k: int, w: float) -> tuple[float, float, float]:
            params = TrialParams(k, w, 0.0, str(CotKind.JS), 0, self.train.lr, 0.0, True)
            model = self.build_model(params, classes, chans)
            flops, macs = count_flops_and_macs(model, (chans, side, side))
            return float(count_parameters(model)), float(flops), float(macs)

        base = size(1, base_width)
        names = ("params", "FLOPs", "MACs")
        limits = [(n, v) for n, v in zip(names, absolute, strict=True) if v is not None]
        limits += [(f"{n} ratio", r) for n, r in zip(names, ratios, strict=True) if r is not None]
        smallest: dict[str, float] = {}
        for k in sorted(self.search.split_factor.choices):
            got = size(k, narrowest)
            values = {n: v for n, v in zip(names, got, strict=True)}
            values |= {f"{n} ratio": v / b for n, v, b in zip(names, got, base, strict=True)}
            if all(values[n] <= limit for n, limit in limits):
                return
            for n, _ in limits:
                smallest[n] = min(smallest.get(n, math.inf), values[n])
        # The budgets no network meets on its own; when each is met by some network but none
        # meets all at once, all of them.
        alone = [(n, limit) for n, limit in limits if smallest[n] > limit] or limits
        over = [f"{n} <= {limit:.4g} (smallest: {smallest[n]:.4g})" for n, limit in alone]
        raise ConfigError(
            f"{self.source}: [constraints] no network of the space meets the budgets "
            f"({'; '.join(over)}, over K in {sorted(self.search.split_factor.choices)} at width "
            f"{narrowest:g}): every trial would be infeasible and the study would have no front; "
            "raise or remove the budget"
        )

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
    return [f"{k}: {show(fa.get(k))} vs {show(fb.get(k))}" for k in differ]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def space_from_stored(raw: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a space stored in a study (``SearchSpace.to_dict()``)."""
    source = str(raw.get("source", "<study>"))
    try:
        shaped = stored_to_raw(raw)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise SearchSpaceError(f"the search space stored in the study is malformed: {e}") from e
    try:
        return SearchSpace(**parse_sections(shaped, source))
    except SearchSpaceError as e:
        # A space an older automl accepted (nan, a bound since added): it can never run here.
        detail = str(e).removeprefix(f"{source}: ")
        raise SearchSpaceError(
            f"the search space stored in the study (from {source}) is no longer valid: {detail}; "
            "start a new study (another --study name) from a corrected space file"
        ) from e


# A space is a page of TOML (the largest shipped one is 3 KiB); a bigger file is a mistake, and
# tomllib would spend seconds and gigabytes on a file of one huge array before it could be refused.
MAX_SPACE_BYTES = 1 << 20


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a TOML search space: a regular file of at most ``MAX_SPACE_BYTES``, or a
    pipe the shell passes by descriptor (``--space <(generate-space)``, ``--space /dev/stdin``)."""
    p = Path(path)
    examples = "see search_spaces/ for examples"
    try:
        data = read_capped(p, MAX_SPACE_BYTES, allow_pipe_descriptor=True)
    except (FileNotFoundError, NotADirectoryError):
        raise SearchSpaceError(f"search space file {p} not found; {examples}") from None
    except FileKindError:
        kind = describe(p) or "not a regular file"
        raise SearchSpaceError(
            f"search space {p} is {kind}, not a TOML file; pass the path of a .toml file "
            f"(a pipe works only as <(command) or /dev/stdin); {examples}"
        ) from None
    except TooLargeError:
        raise SearchSpaceError(
            f"search space file {p} is larger than {MAX_SPACE_BYTES // 1024} KiB; a space is a "
            f"page of TOML, so this is not one; {examples}"
        ) from None
    except OSError as e:
        raise SearchSpaceError(f"cannot read search space file {p}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SearchSpaceError(f"{p}: not a UTF-8 text file") from e
    return parse_space(text, str(p))


def parse_space(text: str, source: str = "<string>") -> SearchSpace:
    """Load and validate a search space from TOML text; ``source`` names it in errors."""
    if len(text) > MAX_SPACE_BYTES:
        raise SearchSpaceError(
            f"{source}: {len(text)} characters, more than a search space's "
            f"{MAX_SPACE_BYTES // 1024} KiB; a space is a page of TOML"
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SearchSpaceError(f"{source}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise SearchSpaceError(f"{source}: not valid TOML: nested too deeply") from e
    return SearchSpace(**parse_sections(raw, source))
