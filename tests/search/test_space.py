from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from automl.errors import SearchSpaceError
from automl.space import Choice, FloatRange, SearchSpace, load_space
from tests.helpers import REPO, TINY_SPACE

SHIPPED = sorted((REPO / "search_spaces").glob("*.toml"))


def test_the_shipped_spaces_load() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"smoke", "fashion_mnist_cpu", "cifar100_wrn28_10", "imagenet_resnet50"} <= names
    for path in SHIPPED:
        space = load_space(path)
        assert 1 in space.search.split_factor.choices


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_space_round_trips_through_its_stored_form(path: Path) -> None:
    space = load_space(path)
    back = SearchSpace.from_dict(space.to_dict())
    assert dataclasses.replace(back, source=space.source) == space


def test_parsed_types() -> None:
    space = load_space(REPO / "search_spaces" / "smoke.toml")
    assert space.search.split_factor == Choice((1, 2, 4))
    assert space.search.width_mult == FloatRange(0.5, 2.0, log=True)
    assert space.baseline_params() == {"split_factor": 1, "width_mult": 1.0}


BAD = {
    "unknown top-level key": ("[bogus]\nx = 1\n", r"\[top level.bogus\] unknown key"),
    "unknown search key": (
        "[search]\nsplit_factor = [1, 2]\nwidth = 1.0\n",
        r"\[search.width\] unknown key; allowed keys: .*width_mult",
    ),
    "bad K type": (
        '[search]\nsplit_factor = ["two"]\n',
        r"\[search.split_factor\] values must be numbers",
    ),
    "K without 1": ("[search]\nsplit_factor = [2, 4]\n", r"\[search.split_factor\] must include 1"),
    "low above high": (
        "[search]\nsplit_factor = [1, 2]\nwidth_mult = { low = 2.0, high = 1.0 }\n",
        r"low \(2.0\) must not exceed high",
    ),
    "log with zero": (
        "[search]\nsplit_factor = [1]\ncot_weight = { low = 0.0, high = 1.0, log = true }\n",
        r"log range needs low > 0",
    ),
    "bad cot kind": (
        '[search]\nsplit_factor = [1]\ncot_kind = ["js", "l2"]\n',
        r"value 'l2' not allowed",
    ),
    "bad epochs": ("[train]\nepochs = 0\n", r"\[train.epochs\] must be >= 1"),
    "bad latency mode": (
        '[objectives]\nlatency_mode = "gpu"\n',
        r"\[objectives.latency_mode\] must be one of",
    ),
    "bad sampler": (
        '[sampler]\nname = "cmaes"\n',
        r"\[sampler.name\] must be one of tpe, nsgaii, random",
    ),
    "bad cot floor": (
        '[train]\ncot_floor_after_warmup = "yes"\n',
        r"\[train.cot_floor_after_warmup\] must be true or false, got 'yes'",
    ),
    "bad augment order": (
        '[train]\n[train.augment]\norder = "random"\n',
        r"\[train.augment.order\] must be one of paper, normalise_first, got 'random'",
    ),
    "unknown model option": (
        '[model]\nname = "resnet110"\n[model.options]\ndeep_stem = true\n',
        r"\[model.options.deep_stem\] model 'resnet110' has no such option; "
        r"its options: zero_init_last_bn, avg_down",
    ),
    "option of a model without options": (
        '[model]\nname = "convnet_s"\n[model.options]\nshake = false\n',
        r"\[model.options.shake\] model 'convnet_s' has no such option; its options: none",
    ),
    "model option not a value": (
        '[model]\nname = "resnet110"\n[model.options]\navg_down = [true]\n',
        r"\[model.options.avg_down\] must be a boolean, a number or a string",
    ),
    "model options not a table": (
        '[model]\nname = "resnet110"\noptions = 1\n',
        r"\[model.options\] must be a table, got int",
    ),
}


def _with(section: str) -> str:
    """The tiny space with one section replaced (or added)."""
    base = TINY_SPACE.format(name="bad", epochs=1, steps=1)
    header = section.splitlines()[0]
    if header in base:
        start = base.index(header)
        end = base.find("\n[", start + 1)
        base = base[:start] + base[end + 1 :] if end != -1 else base[:start]
    return base + "\n" + section


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_files_name_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    text, pattern = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(_with(text))
    with pytest.raises(SearchSpaceError, match=pattern) as info:
        load_space(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_model_and_dataset(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(_with('[model]\nname = "vit_huge"\n'))
    with pytest.raises(SearchSpaceError, match=r"unknown model 'vit_huge'; available: .*convnet_s"):
        load_space(path)
    path.write_text(_with('[data]\ndataset = "mnist"\n'))
    with pytest.raises(SearchSpaceError, match=r"\[data.dataset\] must be one of"):
        load_space(path)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[search\nsplit_factor = [1,")
    with pytest.raises(SearchSpaceError, match="not valid TOML"):
        load_space(path)
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "absent.toml")
    path.write_text('[data]\ndataset = "digits"\n[model]\nname = "convnet_s"\n')
    with pytest.raises(SearchSpaceError, match=r"\[search\] is missing"):
        load_space(path)


def test_new_train_augment_and_model_keys_are_accepted_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    text = _with(
        '[model]\nname = "resnet110"\n[model.options]\nzero_init_last_bn = true\navg_down = false\n'
    )
    text = text.replace("[train]\n", "[train]\ncot_floor_after_warmup = true\n")
    path.write_text(text + '[train.augment]\norder = "normalise_first"\ncrop_padding = 2\n')
    space = load_space(path)
    assert space.train.cot_floor_after_warmup is True
    assert space.train.augment is not None
    assert space.train.augment.order == "normalise_first"
    assert space.model.options == {"zero_init_last_bn": True, "avg_down": False}
    params = space.suggest(optuna.create_study(directions=["maximize", "minimize"]).ask())
    config = space.train_config(params)
    assert config.cot_floor_after_warmup is True
    assert config.augment == space.train.augment
    back = SearchSpace.from_dict(space.to_dict())
    assert dataclasses.replace(back, source=space.source) == space
    assert back.model.options == space.model.options


def test_new_keys_default_to_the_papers_behaviour() -> None:
    space = load_space(REPO / "search_spaces" / "smoke.toml")
    assert space.train.cot_floor_after_warmup is False
    assert space.model.options == {}
    # A space stored before [model.options] existed still loads.
    raw = space.to_dict()
    del raw["model"]["options"], raw["train"]["cot_floor_after_warmup"]
    assert SearchSpace.from_dict(raw).model.options == {}
