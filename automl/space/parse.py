"""Search-space files parsed and checked: every malformed entry is one ``SearchSpaceError``.

The message names the file, the key and what is allowed. ``parse_sections`` turns a TOML-shaped
mapping into the keyword arguments of ``SearchSpace`` (``automl.space.search_space`` builds it);
``stored_to_raw`` turns a space stored in a study back into that mapping, so a stored space is
checked by the same rules as a file.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import Field, fields, is_dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar, cast, get_args, get_type_hints

from automl.data.augment import AugmentOrder
from automl.data.datasets import list_datasets
from automl.errors import SearchSpaceError
from automl.models import get_spec, list_models
from automl.space.params import Choice, FloatRange, IntRange, Param
from automl.space.sections import (
    MAX_REPEATS,
    SCHEMA_VERSION,
    ConstraintSection,
    DataSection,
    ModelSection,
    ObjectiveSection,
    PrunerSection,
    SamplerSection,
    SchedulerKind,
    SchedulerSection,
    Searched,
    SearchSection,
    TrainSection,
)
from automl.space.widths import distinct_networks, section_builder

__all__ = ["parse_sections", "show", "stored_to_raw"]


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


def show(value: Any, limit: int = 60) -> str:
    """A value as one short line: values come from the file, which may hold anything (newlines,
    megabytes of text), and an error message stays a single readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(key: str, limit: int = 80) -> str:
    """A key as written when it is plain text, else quoted (a key may be any TOML string)."""
    return key if key.isprintable() and len(key) <= limit else show(key, limit)


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
                name, f"must be {'an integer' if kind is int else 'a number'}, got {show(v)}"
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
            raise self.fail(f"{section}.{key}", f"must be true or false, got {show(v)}")
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
            raise self.fail(f"{section}.{key}", f"must be a string, got {show(v)}")
        if choices is not None and v not in choices:
            raise self.fail(
                f"{section}.{key}", f"must be one of {', '.join(choices)}, got {show(v)}"
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
                raise self.fail(f"{section}.{f.name}", f"must be a table, got {show(sub)}")
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
                raise self.fail(name, f"value {show(v)} not allowed; allowed: {list(b.choices)}")
            return v
        if _non_finite(v):
            raise self.fail(name, f"value {v!r} is not a finite number: {_NOT_FINITE}")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.fail(name, f"values must be numbers, got {show(v)}")
        if b.integer and not isinstance(v, int):
            raise self.fail(name, f"values must be integers, got {show(v)}")
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
            raise self.fail(f"{name}.log", f"must be true or false, got {show(log)}")
        if log and lo <= 0:
            raise self.fail(name, f"a log range needs low > 0, got {lo}")
        step = raw.get("step")
        if step is not None and (
            isinstance(step, bool)
            or not isinstance(step, int | float)
            or _non_finite(step)
            or step <= 0
        ):
            raise self.fail(f"{name}.step", f"must be a positive finite number, got {show(step)}")
        if b.integer and step is not None and not isinstance(step, int):
            raise self.fail(f"{name}.step", f"must be an integer for this parameter, got {step}")
        if log and step is not None:
            raise self.fail(name, "'log' and 'step' cannot be combined")
        if step is not None:
            self._check_grid(name, lo, hi, step)
        if b.integer:
            return IntRange(int(lo), int(hi), log, int(step or 1))
        return FloatRange(float(lo), float(hi), log, float(step) if step is not None else None)

    def _check_grid(self, name: str, lo: float, hi: float, step: float) -> None:
        """``high`` must be on the grid ``low + n * step``: Optuna otherwise lowers ``high`` to the
        last point below it with only a warning, and a step wider than the range leaves ``low``
        alone (cot_weight 0..1 with step 5 trained every K > 1 trial without co-training)."""
        # Decimal arithmetic on the numbers as written, as Optuna does: 0.1 + 3 * 0.3 is 1.0.
        span = Decimal(str(hi)) - Decimal(str(lo))
        d_step = Decimal(str(step))
        if span > 0 and d_step > span:
            raise self.fail(
                f"{name}.step",
                f"{step} is wider than the range {lo}..{hi}: only {lo} would ever be tried; use a "
                f"step of at most {hi - lo}, or a fixed value",
            )
        try:
            off_grid = span % d_step != 0
        except InvalidOperation:  # more steps than 28 significant digits can count
            raise self.fail(
                f"{name}.step", f"{step} is too small for the range {lo}..{hi}; use a larger step"
            ) from None
        if off_grid:
            last = lo + float((span // d_step) * d_step)
            raise self.fail(
                f"{name}.step",
                f"the range {lo}..{hi} is not a whole number of steps of {step}: {hi} would never "
                f"be tried (the last value would be {last:g}); make high - low a multiple of step",
            )


# Bounds and allowed values of fields declared in another package (AugmentConfig belongs to the
# data package).
_EXTRA_BOUNDS: dict[str, dict[str, Any]] = {
    "train.augment.crop_padding": {"low": 0, "high": 64},
    "train.augment.random_erasing": {"low": 0.0, "high": 1.0},
    "train.augment.order": {"choices": tuple(o.value for o in AugmentOrder)},
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
            f"unknown model {show(name)}; available: {', '.join(list_models())}",
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
                f"must be a boolean, a number or a string, got {show(value)}",
            )
        if _non_finite(value):
            raise c.fail(f"model.options.{key}", f"is {value!r}: {_NOT_FINITE}")
    return dict(raw)


def _parse_search(c: _Ctx, raw: Mapping[str, Any], model: ModelSection) -> SearchSection:
    s = c.table(raw, "search", required=True)
    c.only(s, "search", {f.name for f in fields(SearchSection)})
    if "split_factor" not in s:
        raise c.fail("search.split_factor", "is required: a list of K values such as [1, 2, 4]")
    values: dict[str, Any] = {
        "repeats": c.number(s, "search", "repeats", 1, kind=int, low=1, high=MAX_REPEATS)
    }
    # `distinct = true` on the width range: the space is declared as the networks it holds.
    width_raw = s.get("width_mult")
    distinct = False
    if isinstance(width_raw, Mapping) and "distinct" in width_raw:
        distinct = width_raw["distinct"]
        if not isinstance(distinct, bool):
            raise c.fail(
                "search.width_mult.distinct", f"must be true or false, got {show(distinct)}"
            )
        s = {**s, "width_mult": {k: v for k, v in width_raw.items() if k != "distinct"}}
    for f in fields(SearchSection):
        if f.name == "repeats":
            continue
        # The width is not searched unless asked: the model's default width.
        default = (
            model.default_width_mult if f.name == "width_mult" else f.metadata["searched"].default
        )
        values[f.name] = c.searched(s, f, default)
    split = values["split_factor"]
    if isinstance(split, IntRange):
        # K is a choice among networks (sampled as a category): a range is the list of its
        # points, its step kept; a log scale would mean nothing there.
        if split.log:
            raise c.fail(
                "search.split_factor", "is sampled as a list of K values: 'log' does not apply"
            )
        values["split_factor"] = Choice(tuple(range(split.low, split.high + 1, split.step)))
    if 1 not in values["split_factor"].choices:
        raise c.fail(
            "search.split_factor",
            "must include 1: the undivided network is the baseline every front is compared with",
        )
    if distinct:
        values["width_mult"] = _distinct_widths(
            c, model, values["split_factor"], values["width_mult"]
        )
    return SearchSection(**values)


# More distinct widths than this is not a space to declare value by value.
MAX_DISTINCT_WIDTHS = 200


def _distinct_widths(c: _Ctx, model: ModelSection, ks: Choice, width: Param) -> Choice:
    """The width range as the choice of its networks: for every K, the smallest width that
    builds each distinct network (``automl.space.widths``), and the model's default width (the
    baseline's). A width of the union that builds, at some K, a network already listed is folded
    into it by the trial (``automl.space.networks.Network``), so no network is listed twice at
    any K and the sampler chooses among networks instead of among floats."""
    if not isinstance(width, FloatRange):
        raise c.fail(
            "search.width_mult.distinct",
            "applies to a range {low, high}: a list of widths is already its values",
        )

    _require_default_on_range(c, width, model.default_width_mult)

    try:
        ks_sorted = tuple(sorted(int(k) for k in ks.choices))
        counts = distinct_networks(section_builder(model), ks_sorted, width)
    except (ValueError, RuntimeError) as e:
        raise c.fail("search.width_mult", f"cannot build {model.name} over the range: {e}") from e
    widths = {round(w, 6) for n in counts for w in n.widths} | {model.default_width_mult}
    if not all(n.exact for n in counts) or len(widths) > MAX_DISTINCT_WIDTHS:
        raise c.fail(
            "search.width_mult.distinct",
            f"the range {width.low}..{width.high} holds too many networks of {model.name} to "
            f"list (more than {MAX_DISTINCT_WIDTHS}); narrow the range or drop distinct",
        )
    return Choice(tuple(sorted(widths)))


def parse_sections(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The keyword arguments of a ``SearchSpace``, every key of ``raw`` checked."""
    c = _Ctx(source)
    c.only(raw, "top level", _SECTIONS)
    study = c.table(raw, "study")
    c.only(study, "study", {"name"})
    name = c.string(study, "study", "name", None) or raw.get("name") or Path(source).stem
    data = _parse_data(c, raw)
    model = _parse_model(c, raw)
    # "recipe" is the section's older name (and the key of spaces stored by older versions).
    train = c.table(raw, "train") or c.table(raw, "recipe")
    space = dict(
        name=str(name),
        data=data,
        model=model,
        train=c.section(TrainSection, train, "train"),
        search=_parse_search(c, raw, model),
        objectives=c.section(ObjectiveSection, c.table(raw, "objectives"), "objectives"),
        constraints=c.section(ConstraintSection, c.table(raw, "constraints"), "constraints"),
        sampler=c.section(SamplerSection, c.table(raw, "sampler"), "sampler"),
        pruner=c.section(PrunerSection, c.table(raw, "pruner"), "pruner"),
        scheduler=c.section(SchedulerSection, c.table(raw, "scheduler"), "scheduler"),
        source=source,
    )
    _check_together(c, space)
    return space


def _check_together(c: _Ctx, space: Mapping[str, Any]) -> None:
    """Rules that tie keys of different sections together."""
    d: DataSection = space["data"]
    t: TrainSection = space["train"]
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
    sc: SchedulerSection = space["scheduler"]
    if sc.kind == SchedulerKind.DOMINANCE and not space["pruner"].enabled:
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
    if sc.mode == "promote" and sc.kind != SchedulerKind.ASHA:
        raise c.fail(
            "scheduler.mode",
            '"promote" pauses and resumes trials at the rungs of kind = "asha"; set kind = '
            '"asha" or mode = "stop"',
        )
    if sc.final_share > 0 and sc.final == "continue" and sc.mode != "promote":
        raise c.fail(
            "scheduler.final_share",
            'the final phase "continue" resumes paused trials, which only mode = "promote" '
            'keeps; set mode = "promote", final = "retrain", or final_share = 0',
        )
    _check_ordered(c, space)
    # The baseline is trained at the model's default width, enqueued as a fixed parameter: a
    # list of widths must hold it, or the baseline fails when it asks for its width; a range must
    # hold it too, or Optuna trains the baseline outside the range with only a warning.
    width = space["search"].width_mult
    default = space["model"].default_width_mult
    if isinstance(width, Choice) and len(width.choices) > 1 and default not in width.choices:
        raise c.fail(
            "search.width_mult",
            f"the choices {list(width.choices)} must include [model] default_width_mult "
            f"({default}), the width of the undivided baseline; add it or change the default",
        )
    if isinstance(width, FloatRange):
        _require_default_on_range(c, width, default)


def _require_default_on_range(c: _Ctx, width: FloatRange, default: float) -> None:
    """The baseline is trained at the model's default width: a range (and a range declared
    ``distinct``, before it becomes a list) must hold it, or Optuna trains the baseline outside
    the range with only a warning."""
    if not _on_range(width, default):
        grid = "" if width.step is None else f" on its grid of step {width.step}"
        raise c.fail(
            "search.width_mult",
            f"the range {width.low}..{width.high}{grid} must hold [model] default_width_mult "
            f"({default}), the width of the undivided baseline; widen the range or change the "
            "default",
        )


def _lowest(p: Param) -> float:
    return min(p.choices) if isinstance(p, Choice) else p.low


def _highest(p: Param) -> float:
    return max(p.choices) if isinstance(p, Choice) else p.high


def _on_range(r: FloatRange | IntRange, v: float) -> bool:
    if not r.low <= v <= r.high:
        return False
    if r.step is None:
        return True
    try:
        return (Decimal(str(v)) - Decimal(str(r.low))) % Decimal(str(r.step)) == 0
    except InvalidOperation:  # a step too fine to count: the range holds v for every purpose
        return True


def _check_ordered(c: _Ctx, space: Mapping[str, Any]) -> None:
    """Pairs of values that only mean something in one order, across sections: a trial would
    otherwise quietly run with another value than the file says."""
    t: TrainSection = space["train"]
    s: SearchSection = space["search"]
    # The schedule decays from lr to min_lr; below min_lr the decay would have to go up, and the
    # trial used to be clamped to a constant learning rate instead.
    lowest_lr, where = (t.lr, "[train] lr") if s.lr is None else (_lowest(s.lr), "search.lr")
    if t.min_lr > lowest_lr:
        raise c.fail(
            "train.min_lr",
            f"must not exceed the learning rate it decays from ({where}: {lowest_lr:g}), got "
            f"{t.min_lr:g}; lower min_lr (0 decays to zero)",
        )
    # The co-training weight ramps up over cot_warmup_epochs: with more warm-up epochs than
    # training epochs no trial ever trains at the cot_weight the file asks for.
    warm = _highest(s.cot_warmup_epochs)
    if len(s.split_factor.choices) > 1 and warm > t.epochs:
        raise c.fail(
            "search.cot_warmup_epochs",
            f"must not exceed [train] epochs ({t.epochs}), got {warm:g}: co-training would "
            "never reach its cot_weight; lower cot_warmup_epochs or raise epochs",
        )


def stored_to_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
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
    search = {
        k: v if k == "repeats" else param(v) for k, v in raw["search"].items() if v is not None
    }
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
