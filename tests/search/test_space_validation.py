"""Every key of a space has a rule, checked before anything is stored: one case per rule, each
naming the key; the data set and the device are checked against this machine before a study is
created; a stored space that no longer validates says what is wrong with it."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
import torch

import automl
from automl.errors import ConfigError, DataError, SearchSpaceError, StorageError
from automl.space import SearchSpace, load_space, parse_space
from automl.store.attrs import StudyAttr
from tests.helpers import TINY_SPACE

BASE = TINY_SPACE.format(name="rules", epochs=2, steps=2)


def _edit(section: str, line: str, base: str = BASE) -> str:
    """The tiny space with ``line`` added at the top of ``[section]`` (the section added when it
    is absent); TOML keeps the last of nothing, so a key already there is removed first."""
    key = line.split("=")[0].strip()
    lines = base.splitlines()
    header = f"[{section}]"
    if header not in lines:
        return base + f"\n{header}\n{line}\n"
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [ln for ln in lines[start:end] if ln.split("=")[0].strip() != key]
    return "\n".join([*lines[:start], line, *body, *lines[end:]]) + "\n"


# (section, line, key the message must name, words it must hold)
RULES: dict[str, tuple[str, str, str, str]] = {
    # non-finite numbers anywhere
    "nan range low": (
        "search",
        "width_mult = { low = nan, high = 1.0 }",
        "search.width_mult",
        "nan",
    ),
    "inf range high": (
        "search",
        "cot_weight = { low = 0.1, high = inf }",
        "search.cot_weight",
        "inf",
    ),
    "nan in choices": ("search", "width_mult = [0.5, 1.0, nan]", "search.width_mult", "nan"),
    "-inf fixed value": ("search", "cot_weight = -inf", "search.cot_weight", "finite"),
    "nan step": (
        "search",
        "cot_weight = { low = 0.1, high = 1.0, step = nan }",
        "search.cot_weight.step",
        "finite",
    ),
    "nan lr": ("train", "lr = nan", "train.lr", "finite"),
    "inf budget": ("constraints", "max_params = inf", "constraints.max_params", "finite"),
    "nan val_fraction": ("data", "val_fraction = nan", "data.val_fraction", "finite"),
    "nan pruner margin": ("pruner", "margin = nan", "pruner.margin", "finite"),
    "nan latency time": (
        "objectives",
        "latency_min_run_s = nan",
        "objectives.latency_min_run_s",
        "finite",
    ),
    # [data]
    "val_fraction 0": ("data", "val_fraction = 0.0", "data.val_fraction", ">= 0.001"),
    "val_fraction 1": ("data", "val_fraction = 1.0", "data.val_fraction", "<= 0.9"),
    "split_seed negative": ("data", "split_seed = -1", "data.split_seed", ">= 0"),
    "train_limit 1": ("data", "train_limit = 1", "data.train_limit", ">= 2"),
    "train_limit below a batch": (
        "data",
        "train_limit = 32",
        "data.train_limit",
        "batch_size (64)",
    ),
    "eval_limit 0": ("data", "eval_limit = 0", "data.eval_limit", ">= 1"),
    "image_size tiny": ("data", "image_size = 4", "data.image_size", ">= 8"),
    "image_size huge": ("data", "image_size = 100000", "data.image_size", "<= 1024"),
    "root not a string": ("data", "root = 3", "data.root", "must be a string"),
    # [model]
    "drop_rate 1": ("model", "drop_rate = 1.0", "model.drop_rate", "<= 0.99"),
    "default width 8": ("model", "default_width_mult = 8.0", "model.default_width_mult", "<= 4.0"),
    "combine unknown": ("model", 'combine = "vote"', "model.combine", "must be one of"),
    # [train]
    "epochs huge": ("train", "epochs = 1000000", "train.epochs", "<= 10000"),
    "batch_size 1": ("train", "batch_size = 1", "train.batch_size", ">= 2"),
    "lr 0": ("train", "lr = 0.0", "train.lr", ">= 1e-08"),
    "lr 100": ("train", "lr = 100.0", "train.lr", "<= 10.0"),
    "min_lr negative": ("train", "min_lr = -0.1", "train.min_lr", ">= 0.0"),
    "momentum 1": ("train", "momentum = 1.0", "train.momentum", "<= 0.999"),
    "weight_decay 2": ("train", "weight_decay = 2.0", "train.weight_decay", "<= 1.0"),
    "warmup past the end": ("train", "warmup_epochs = 3.0", "train.warmup_epochs", "epochs (2)"),
    "label_smoothing 1": ("train", "label_smoothing = 1.0", "train.label_smoothing", "<= 0.99"),
    "mixup negative": ("train", "mixup_alpha = -1.0", "train.mixup_alpha", ">= 0.0"),
    "cot_temperature 0": ("train", "cot_temperature = 0.0", "train.cot_temperature", ">= 0.001"),
    "max_steps 0": ("train", "max_steps_per_epoch = 0", "train.max_steps_per_epoch", ">= 1"),
    "amp not a flag": ("train", "amp = 1", "train.amp", "true or false"),
    "execution unknown": ("train", 'execution = "turbo"', "train.execution", "must be one of"),
    "crop_padding huge": (
        "train.augment",
        "crop_padding = 100",
        "train.augment.crop_padding",
        "<= 64",
    ),
    "random_erasing 2": (
        "train.augment",
        "random_erasing = 2.0",
        "train.augment.random_erasing",
        "<= 1.0",
    ),
    # [search]
    "K 65": ("search", "split_factor = [1, 65]", "search.split_factor", "[1, 64]"),
    "width 64": ("search", "width_mult = { low = 0.5, high = 64.0 }", "search.width_mult", "4.0"),
    "width list without the default": (
        "search",
        "width_mult = [0.5, 0.75]",
        "search.width_mult",
        "default_width_mult",
    ),
    "cot_weight negative": ("search", "cot_weight = -1.0", "search.cot_weight", "[0.0, 100.0]"),
    "cot_warmup fractional step": (
        "search",
        "cot_warmup_epochs = { low = 0, high = 4, step = 0.5 }",
        "search.cot_warmup_epochs.step",
        "integer",
    ),
    "searched lr above 10": ("search", "lr = { low = 0.1, high = 20.0 }", "search.lr", "10.0"),
    "searched weight decay negative": (
        "search",
        "weight_decay = -0.1",
        "search.weight_decay",
        "0.0",
    ),
    "divide_weight_decay as numbers": (
        "search",
        "divide_weight_decay = [1, 0]",
        "search.divide_weight_decay",
        "not allowed",
    ),
    # [objectives]
    "latency batch 0": (
        "objectives",
        "latency_batch_size = 0",
        "objectives.latency_batch_size",
        ">= 1",
    ),
    "latency threads 0": (
        "objectives",
        "latency_threads = 0",
        "objectives.latency_threads",
        ">= 1",
    ),
    "latency threads 100000": (
        "objectives",
        "latency_threads = 100000",
        "objectives.latency_threads",
        "<= 1024",
    ),
    "latency run too short": (
        "objectives",
        "latency_min_run_s = 0.001",
        "objectives.latency_min_run_s",
        ">= 0.01",
    ),
    "latency run an hour": (
        "objectives",
        "latency_min_run_s = 3600.0",
        "objectives.latency_min_run_s",
        "<= 60.0",
    ),
    "latency warm-up an hour": (
        "objectives",
        "latency_warmup_s = 3600.0",
        "objectives.latency_warmup_s",
        "<= 60.0",
    ),
    # [constraints]: every budget > 0
    "max_params 0": ("constraints", "max_params = 0", "constraints.max_params", "> 0.0"),
    "max_flops negative": ("constraints", "max_flops = -5", "constraints.max_flops", "> 0.0"),
    "max_macs 0": ("constraints", "max_macs = 0", "constraints.max_macs", "> 0.0"),
    "params ratio 0": (
        "constraints",
        "max_params_ratio = 0.0",
        "constraints.max_params_ratio",
        "> 0.0",
    ),
    "flops ratio 0": (
        "constraints",
        "max_flops_ratio = 0.0",
        "constraints.max_flops_ratio",
        "> 0.0",
    ),
    "macs ratio negative": (
        "constraints",
        "max_macs_ratio = -1.0",
        "constraints.max_macs_ratio",
        "> 0.0",
    ),
    # [sampler]
    "seed -1": ("sampler", "seed = -1", "sampler.seed", ">= 0"),
    "seed 2**40": ("sampler", "seed = 1099511627776", "sampler.seed", "<= 2147483647"),
    "startup trials negative": (
        "sampler",
        "n_startup_trials = -1",
        "sampler.n_startup_trials",
        ">= 0",
    ),
    "population 1": ("sampler", "population_size = 1", "sampler.population_size", ">= 2"),
    # [pruner]
    "pruner warm-up negative": ("pruner", "warmup_epochs = -1", "pruner.warmup_epochs", ">= 0"),
    "pruner margin 2": ("pruner", "margin = 2.0", "pruner.margin", "<= 1.0"),
    "pruner dominators 0": ("pruner", "min_dominators = 0", "pruner.min_dominators", ">= 1"),
    # a range whose step Optuna would quietly change
    "step wider than the range": (
        "search",
        "cot_weight = { low = 0.0, high = 1.0, step = 5.0 }",
        "search.cot_weight.step",
        "wider than the range",
    ),
    "float high off the step grid": (
        "search",
        "cot_weight = { low = 0.1, high = 1.0, step = 0.2 }",
        "search.cot_weight.step",
        "1.0 would never be tried",
    ),
    "integer high off the step grid": (
        "search",
        "cot_warmup_epochs = { low = 0, high = 3, step = 2 }",
        "search.cot_warmup_epochs.step",
        "multiple of step",
    ),
    "width step wider than the range": (
        "search",
        "width_mult = { low = 0.5, high = 1.0, step = 0.75 }",
        "search.width_mult.step",
        "wider",
    ),
    "log range of K": (
        "search",
        "split_factor = { low = 1, high = 4, log = true }",
        "search.split_factor",
        "'log' does not apply",
    ),
    # pairs of values that only mean something in one order
    "min_lr above lr": ("train", "min_lr = 0.1", "train.min_lr", "must not exceed"),
    "min_lr above the lowest searched lr": (
        "search",
        "lr = { low = 1e-5, high = 0.1, log = true }",
        "train.min_lr",
        "search.lr",
    ),
    "co-training warm-up longer than training": (
        "search",
        "cot_warmup_epochs = [0, 3]",
        "search.cot_warmup_epochs",
        "never reach its cot_weight",
    ),
    "baseline width outside the width range": (
        "search",
        "width_mult = { low = 0.25, high = 0.5 }",
        "search.width_mult",
        "default_width_mult",
    ),
    "baseline width off the width grid": (
        "search",
        "width_mult = { low = 0.3, high = 1.2, step = 0.3 }",
        "search.width_mult",
        "grid",
    ),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_each_rule_names_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    section, line, key, words = RULES[case]
    path = tmp_path / "space.toml"
    path.write_text(_edit(section, line))
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert f"[{key}]" in message, message
    assert words in message, message
    assert message.startswith(str(path)), message
    assert "\n" not in message


def test_the_edited_base_is_valid_so_each_case_fails_for_its_own_rule(tmp_path: Path) -> None:
    # The same edits with legal values load: the helper does not break the file by itself.
    ok = {
        "data": "train_limit = 64",
        "train": "warmup_epochs = 2.0",
        "train.augment": "crop_padding = 64",
        "constraints": "max_params = 1",
        "sampler": "seed = 2147483647",
        "objectives": "latency_threads = 1024",
        "search": "width_mult = { low = 0.5, high = 4.0 }",
    }
    for section, line in ok.items():
        load_space(_write(tmp_path, _edit(section, line)))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_nan_in_a_model_option_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('name = "convnet_s"', 'name = "resnet110"\n[model.options]\navg_down = nan')
    with pytest.raises(SearchSpaceError, match=r"\[model.options.avg_down\] is nan"):
        load_space(_write(tmp_path, text))


def test_keys_and_values_from_the_file_stay_one_short_line(tmp_path: Path) -> None:
    text = BASE + '\n[constraints]\n"max\\nparams" = 1\n'
    with pytest.raises(SearchSpaceError) as info:
        load_space(_write(tmp_path, text))
    assert "\n" not in str(info.value) and "constraints.'max\\nparams'" in str(info.value)
    with pytest.raises(SearchSpaceError) as info:
        load_space(_write(tmp_path, _edit("model", f'name = "{"x" * 5000}"')))
    assert "[model.name]" in str(info.value) and len(str(info.value)) < 1000


def test_unreadable_and_deeply_nested_files_are_space_errors(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="nested too deeply"):
        parse_space("a = " + "[" * 5000 + "]" * 5000)
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(SearchSpaceError, match="is a folder"):
        load_space(folder)
    if os.geteuid() != 0:  # root reads any file
        locked = _write(tmp_path, BASE)
        locked.chmod(0)
        with pytest.raises(SearchSpaceError, match="cannot read search space file"):
            load_space(locked)


# -- the machine: data set and device ------------------------------------------------------------


def _space(tmp_path: Path, *edits: tuple[str, str]) -> SearchSpace:
    text = BASE
    for section, line in edits:
        text = _edit(section, line, text)
    return load_space(_write(tmp_path, text))


def test_missing_data_names_the_key_and_the_knob_that_exists(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train").mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = {
        "a root that does not exist": (
            ("data", 'dataset = "cifar10"'),
            ("data", f'root = "{tmp_path / "nowhere"}"'),
        ),
        "cifar without a root": (("data", 'dataset = "cifar100"'),),
        "cifar folder empty": (("data", 'dataset = "cifar10"'), ("data", f'root = "{empty}"')),
        "svhn folder empty": (("data", 'dataset = "svhn"'), ("data", f'root = "{empty}"')),
        "image folder without classes": (
            ("data", 'dataset = "imagefolder"'),
            ("data", f'root = "{empty}"'),
        ),
        "fashion-mnist root without idx files": (
            ("data", 'dataset = "fashion_mnist"'),
            ("data", f'root = "{empty}"'),
        ),
        "a root that is a file": (
            ("data", 'dataset = "svhn"'),
            ("data", f'root = "{a_file}"'),
        ),
    }
    for case, edits in cases.items():
        space = _space(tmp_path, *edits)
        with pytest.raises(DataError) as info:
            space.check_runtime()
        message = str(info.value)
        assert "[data]" in message and str(space.source) in message, (case, message)
        assert "--data-root" not in message.replace("automl train: --data-root", ""), message
        assert "\n" not in message
    # The data the tests use are here: the check passes without reading them.
    _space(tmp_path).check_runtime()
    _space(tmp_path, ("data", 'dataset = "fashion_mnist"')).check_runtime()


def test_the_device_and_the_latency_mode_are_checked(tmp_path: Path) -> None:
    streams = _space(tmp_path, ("objectives", 'latency_mode = "streams"'))
    with pytest.raises(ConfigError, match=r"\[objectives.latency_mode\] 'streams' needs a CUDA"):
        streams.check_runtime("cpu")
    devices = _space(tmp_path, ("objectives", 'latency_mode = "devices"'))
    with pytest.raises(ConfigError, match=r"\[objectives.latency_mode\] 'devices' needs two"):
        devices.check_runtime("cpu")
    _space(tmp_path, ("objectives", 'latency_mode = "threads"')).check_runtime("cpu")
    many = _space(tmp_path, ("objectives", "latency_threads = 1024"))
    if (os.cpu_count() or 1) < 1024:
        with pytest.raises(ConfigError, match=r"\[objectives.latency_threads\] is 1024"):
            many.check_runtime("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is available here"):
            _space(tmp_path).check_runtime("cuda")
    else:  # on a GPU host the same spaces pass where they can run
        streams.check_runtime("cuda")
        if torch.cuda.device_count() >= 2:
            devices.check_runtime("cuda")
        else:
            with pytest.raises(ConfigError, match="'devices' needs two"):
                devices.check_runtime("cuda")
        with pytest.raises(ConfigError, match="'threads' needs the CPU"):
            _space(tmp_path, ("objectives", 'latency_mode = "threads"')).check_runtime("cuda")


def test_a_space_that_cannot_run_here_stores_nothing(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    missing = _space(
        tmp_path, ("data", 'dataset = "cifar10"'), ("data", f'root = "{tmp_path / "no"}"')
    )
    with pytest.raises(DataError):
        automl.create_study(missing, storage=storage_url, study_name=study_name)
    streams = _space(tmp_path, ("objectives", 'latency_mode = "streams"'))
    with pytest.raises(ConfigError):
        automl.create_study(streams, storage=storage_url, study_name=study_name, device="cpu")
    if storage_url.startswith("sqlite"):
        assert not (tmp_path / "studies.db").exists()
    else:
        assert study_name not in optuna.get_all_study_names(storage_url)
    # For workers elsewhere the data check can be left to them.
    automl.create_study(missing, storage=storage_url, study_name=study_name, check_data=False)
    assert study_name in optuna.get_all_study_names(storage_url)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AUTOML_STORAGE"}
    return subprocess.run(
        [sys.executable, "-m", "automl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_search_refuses_missing_data_and_devices_before_creating_the_database(
    tmp_path: Path,
) -> None:
    no_data = _write(
        tmp_path,
        _edit("data", f'root = "{tmp_path / "no"}"', _edit("data", 'dataset = "svhn"')),
    )
    streams = tmp_path / "streams.toml"
    streams.write_text(_edit("objectives", 'latency_mode = "streams"'))
    # (arguments, what the one line must say); each process starts torch, so a few cases only.
    cases = [
        (("--space", str(no_data), "--enqueue-only"), "set [data] root in the space file"),
        (("--space", str(streams), "--device", "cpu"), "[objectives.latency_mode]"),
    ]
    if not torch.cuda.is_available():
        cases.append((("--space", str(streams), "--device", "cuda"), "no CUDA GPU"))
    for args, words in cases:
        db = tmp_path / "x.db"
        out = _cli("search", *args, "--n-trials", "1", "--storage", f"sqlite:///{db}", cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("automl: error: "), (args, out.stderr)
        assert words in lines[0], (args, lines[0])
        assert not db.exists(), args


# -- spaces stored by older versions ---------------------------------------------------------------


def test_a_stored_space_with_nan_says_what_is_wrong(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, BASE)
    raw = load_space(path).to_dict()
    raw["search"]["width_mult"]["low"] = math.nan  # what an older automl let through
    older = optuna.create_study(
        storage=storage_url, study_name=study_name, directions=["maximize", "minimize"]
    )
    older.set_user_attr(StudyAttr.SPACE, raw)
    for attempt in (
        lambda: automl.create_study(path, storage=storage_url, study_name=study_name),
        lambda: automl.load_study(study_name, storage=storage_url),
    ):
        with pytest.raises(SearchSpaceError) as info:
            attempt()
        message = str(info.value)
        assert "stored in the study" in message and "no longer valid" in message, message
        assert "[search.width_mult]" in message and "nan" in message, message
        assert "start a new study" in message


def test_resuming_with_another_space_names_what_differs(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    first = tmp_path / "a.toml"
    first.write_text(BASE)
    automl.create_study(first, storage=storage_url, study_name=study_name)
    second = tmp_path / "b.toml"
    second.write_text(_edit("data", "val_fraction = 0.2"))
    with pytest.raises(StorageError) as info:
        automl.create_study(second, storage=storage_url, study_name=study_name)
    assert "data.val_fraction: 0.15 vs 0.2" in str(info.value)


def test_data_files_present_but_damaged_pass_the_check_and_fail_the_load_clearly(
    tmp_path: Path,
) -> None:
    from automl.data.datasets import check_available, load_dataset

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(b"truncated")
    check_available("cifar10", tmp_path)  # presence only: cheap before a study is stored
    with pytest.raises(DataError, match="fails torchvision's integrity check"):
        load_dataset("cifar10", tmp_path)


def test_budgets_no_network_meets_are_refused_before_anything_is_stored(
    storage_url: str, study_name: str, tmp_path: Path
) -> None:
    # max_params = 1 excludes every network: the study would run with an empty front.
    none_fit = _space(tmp_path, ("constraints", "max_params = 1"))
    with pytest.raises(ConfigError, match=r"\[constraints\] no network of the space meets") as e:
        automl.create_study(none_fit, storage=storage_url, study_name=study_name)
    assert "params <= 1 (smallest: " in str(e.value) and "\n" not in str(e.value)
    # A ratio below 1 excludes the baseline, which the narrowest K = 1 network still meets.
    macs = _space(tmp_path, ("constraints", "max_macs_ratio = 0.1"))
    with pytest.raises(ConfigError, match=r"MACs ratio <= 0.1 \(smallest: 0\.\d+\)"):
        automl.create_study(macs, storage=storage_url, study_name=study_name)
    if storage_url.startswith("sqlite"):
        assert not (tmp_path / "studies.db").exists()
    else:
        assert study_name not in optuna.get_all_study_names(storage_url)
    narrower = _space(tmp_path, ("constraints", "max_params_ratio = 0.5"))
    automl.create_study(narrower, storage=storage_url, study_name=study_name)
    assert study_name in optuna.get_all_study_names(storage_url)


def test_a_stepped_range_samples_only_what_the_file_says(tmp_path: Path) -> None:
    # Every value Optuna draws from a range that passed the rules is on the file's grid, with no
    # warning that Optuna moved a bound.
    space = _space(
        tmp_path,
        ("search", "cot_weight = { low = 0.1, high = 0.9, step = 0.2 }"),
        ("search", "split_factor = [1, 2, 4]"),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(40):
            params = space.suggest(study.ask())
            if params.split_factor > 1:
                seen.add(round(params.cot_weight, 9))
    assert seen == {0.1, 0.3, 0.5, 0.7, 0.9}


def test_a_range_of_k_keeps_its_step(tmp_path: Path) -> None:
    space = _space(tmp_path, ("search", "split_factor = { low = 1, high = 7, step = 2 }"))
    assert space.search.split_factor.choices == (1, 3, 5, 7)
