"""Fuzzing the space parser: mutations of the shipped spaces (keys dropped, values of the wrong
type, nan/inf/huge/negative numbers, unknown keys in any language, sections turned into values),
random text, and mutations of a space's stored form. Whatever comes in, the loader returns a
valid space, one that survives being stored and read back, or raises the project's own one-line
error; never anything else."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
import warnings
from collections.abc import Iterator
from typing import Any

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.errors import AutoMLError, SearchSpaceError
from automl.space import SearchSpace, parse_space
from tests.helpers import REPO, TINY_SPACE

TEXTS = [p.read_text() for p in sorted((REPO / "search_spaces").glob("*.toml"))]
TEXTS.append(TINY_SPACE.format(name="tiny", epochs=2, steps=4))
DOCS = [tomllib.loads(t) for t in TEXTS]

# Few examples, no example database in the work tree: seconds per run, a new sample every run.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_NUMBERS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0, -1, 1, 0.0, -0.0, 1e308, 5e-324]),
    st.sampled_from([2**63 - 1, -(2**63), 2**31, 2**32, 65, 1025, 100_000]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
_SCALARS = st.one_of(_NUMBERS, st.booleans(), st.text(max_size=12))
HOSTILE = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=4),
    st.dictionaries(st.sampled_from(["low", "high", "log", "step", "x"]), _SCALARS, max_size=4),
    st.dictionaries(st.text(max_size=6), _SCALARS, max_size=3),
)


def _tables(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield doc
    for v in doc.values():
        if isinstance(v, dict):
            yield from _tables(v)


def _numbers(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key or index) of every number in the document, lists included."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        if isinstance(v, dict | list):
            yield from _numbers(v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            yield node, k


@st.composite
def mutated_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(DOCS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        numbers = list(_numbers(doc))
        if numbers and draw(st.integers(min_value=0, max_value=3)) == 0:
            # nan/inf anywhere a number is: the values no comparison with a bound catches.
            container, key = draw(st.sampled_from(numbers))
            container[key] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
            continue
        table = draw(st.sampled_from(list(_tables(doc))))
        keys = sorted(table)
        op = draw(st.sampled_from(["drop", "replace", "add", "wrap", "nudge"]))
        if op == "add" or not keys:
            table[draw(st.text(min_size=1, max_size=10))] = draw(HOSTILE)
            continue
        key = draw(st.sampled_from(keys))
        if op == "drop":
            del table[key]
        elif op == "replace":
            table[key] = draw(HOSTILE)
        elif op == "wrap":  # a value where a list is expected, or the other way round
            v = table[key]
            table[key] = v[0] if isinstance(v, list) and v else [v]
        elif isinstance(table[key], int | float) and not isinstance(table[key], bool):
            # Just past a bound: the edges are where off-by-one rules live.
            table[key] = draw(st.sampled_from([-1, 0, 1, -table[key], table[key] * 1000]))
    return doc


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        # JSON's escapes are TOML's, but TOML wants DEL escaped too.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    """Top-level tables as sections, everything deeper inline."""
    top = [
        f"{_toml_value(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)
    ]
    sections = [
        "\n".join(
            [f"[{_toml_value(k)}]", *(f"{_toml_value(a)} = {_toml_value(b)}" for a, b in v.items())]
        )
        for k, v in doc.items()
        if isinstance(v, dict)
    ]
    return "\n\n".join(["\n".join(top), *sections]) + "\n"


def _check(load: Any) -> None:
    """The property: a space that stores and loads back as itself, or the project's error."""
    try:
        space = load()
    except AutoMLError as e:
        assert isinstance(e, SearchSpaceError), repr(e)
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(space, SearchSpace)
    stored = space.to_dict()
    # Stored as JSON in the study: every number finite, and read back unchanged.
    json.dumps(stored, allow_nan=False)
    back = SearchSpace.from_dict(stored)
    assert dataclasses.replace(back, source=space.source) == space


def test_the_serialiser_writes_what_the_parser_reads() -> None:
    for doc in DOCS:
        assert tomllib.loads(to_toml(doc)) == doc
        parse_space(to_toml(doc))


@FUZZ
@given(mutated_docs())
def test_mutated_spaces_load_or_fail_with_a_space_error(doc: dict[str, Any]) -> None:
    _check(lambda: parse_space(to_toml(doc), "fuzz.toml"))


@FUZZ
@given(
    st.sampled_from(TEXTS),
    st.integers(min_value=0, max_value=2000),
    st.integers(min_value=0, max_value=40),
    st.text(max_size=40),
)
def test_damaged_text_loads_or_fails_with_a_space_error(
    text: str, at: int, cut: int, insert: str
) -> None:
    at = min(at, len(text))
    _check(lambda: parse_space(text[:at] + insert + text[at + cut :], "fuzz.toml"))


@settings(FUZZ, max_examples=100)
@given(st.text(max_size=200))
def test_random_text_loads_or_fails_with_a_space_error(text: str) -> None:
    _check(lambda: parse_space(text, "fuzz.toml"))


@settings(FUZZ, max_examples=100)
@given(mutated_docs())
def test_a_damaged_stored_space_is_a_space_error(doc: dict[str, Any]) -> None:
    # The stored form of a valid space, damaged the same way (another version, a hand edit).
    try:
        stored = parse_space(to_toml(DOCS[-1])).to_dict()
    except SearchSpaceError:
        raise AssertionError("the tiny space must load") from None
    target = copy.deepcopy(stored)
    for section, values in doc.items():
        if section in target and isinstance(values, dict) and isinstance(target[section], dict):
            target[section].update(values)
        else:
            target[section] = values
    _check(lambda: SearchSpace.from_dict(target))


_BOUND = st.one_of(
    st.integers(min_value=-2, max_value=12),
    st.floats(min_value=-1.0, max_value=12.0, allow_nan=False),
)
_RANGE = st.fixed_dictionaries(
    {"low": _BOUND, "high": _BOUND},
    optional={
        "step": st.one_of(_BOUND, st.sampled_from([5, 0.3, 0.25, 1e-9])),
        "log": st.booleans(),
    },
)
_SEARCHED = st.one_of(_BOUND, st.lists(_BOUND, min_size=1, max_size=3), _RANGE)


@st.composite
def co_training_docs(draw: st.DrawFn) -> dict[str, Any]:
    """The tiny space with its co-training settings, epochs and learning rates drawn."""
    doc = copy.deepcopy(DOCS[-1])
    search = doc["search"]
    search["split_factor"] = draw(st.sampled_from([[1, 2], [1, 3, 4], {"low": 1, "high": 3}]))
    search["cot_weight"] = draw(_SEARCHED)
    search["cot_warmup_epochs"] = draw(_SEARCHED)
    search["cot_kind"] = draw(st.sampled_from(["js", ["js", "kl"], ["kl"]]))
    if draw(st.booleans()):
        search["lr"] = draw(_SEARCHED)
    doc["train"]["epochs"] = draw(st.integers(min_value=1, max_value=6))
    if draw(st.booleans()):
        doc["train"]["min_lr"] = draw(st.sampled_from([0.0, 1e-4, 0.05, 0.5, 2.0]))
    return doc


def _inside(value: Any, written: Any) -> bool:
    """Whether ``value`` is one the file's entry allows: the value, one of the list, or a point
    of the range (on its step grid when it has one)."""
    if isinstance(written, list):
        return value in written
    if not isinstance(written, dict):
        return bool(value == written)
    if not written["low"] - 1e-12 <= value <= written["high"] + 1e-12:
        return False
    step = written.get("step")
    if step is None:
        return True
    n = (value - written["low"]) / step
    return abs(n - round(n)) < 1e-6


@FUZZ
@given(co_training_docs(), st.integers(min_value=0, max_value=2**16))
def test_every_divided_trial_trains_with_the_co_training_the_file_says(
    doc: dict[str, Any], seed: int
) -> None:
    """Either one project error, or every K > 1 trial's co-training settings (and learning-rate
    floor) are inside what the file says: nothing quietly narrowed, clamped or switched off."""
    try:
        space = parse_space(to_toml(doc), "fuzz.toml")
    except AutoMLError as e:
        assert isinstance(e, SearchSpaceError) and "\n" not in str(e), repr(e)
        return
    search, train = doc["search"], doc["train"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for k in space.search.split_factor.choices:
        if k > 1:
            study.enqueue_trial({"split_factor": k})
    with warnings.catch_warnings():
        # An Optuna warning (a bound moved, a value outside its range) is the quiet change the
        # rules must prevent.
        warnings.simplefilter("error")
        for _ in range(len(space.search.split_factor.choices) + 2):
            params = space.suggest(study.ask())
            if params.split_factor == 1:
                continue
            assert _inside(params.cot_weight, search["cot_weight"]), (params, search)
            assert _inside(params.cot_warmup_epochs, search["cot_warmup_epochs"]), params
            assert _inside(params.cot_kind, search["cot_kind"]), params
            assert params.cot_warmup_epochs <= train["epochs"], params
            config = space.train_config(params)
            assert config.min_lr == train.get("min_lr", config.min_lr) <= params.lr, config
