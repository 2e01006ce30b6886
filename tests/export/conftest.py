"""One real study on scikit-learn's digits, trained once per test session: trial 0 is the K=1
baseline, trial 1 a K=2 ensemble. Small limits keep it to seconds of training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import automl

SPACE = """
[study]
name = "export"

[data]
dataset = "digits"
val_fraction = 0.15
train_limit = 512
eval_limit = 128

[model]
name = "convnet_s"
# The baseline's width, inside the searched range: narrow networks train in seconds.
default_width_mult = 0.5

[train]
epochs = 1
batch_size = 64
lr = 0.05
max_steps_per_epoch = 6

[search]
split_factor = [1, 2]
width_mult = { low = 0.5, high = 0.6 }
cot_weight = { low = 0.1, high = 1.0 }

[objectives]
latency_batch_size = 1
latency_mode = "sequential"
latency_min_run_s = 0.05
latency_warmup_s = 0.02

[sampler]
name = "random"
seed = 3

[pruner]
enabled = false
"""


@dataclass(frozen=True)
class Trained:
    url: str
    study: str
    root: Path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("export-study")
    space = root / "export.toml"
    space.write_text(SPACE)
    url = f"sqlite:///{root / 's.db'}"
    study = automl.create_study(space, storage=url)
    study.optimize(n_trials=2)
    ks = [t.params.get("split_factor") for t in study.trials()]
    assert ks == [1, 2], f"the fixture expects trial 0 with K=1 and trial 1 with K=2, got {ks}"
    return Trained(url, "export", root)


@pytest.fixture(scope="session")
def digit_pngs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """The first 12 digits test images as 8x8 grey PNG files, and the same images normalised as
    the data module normalises them (what the model was trained on)."""
    from PIL import Image

    from automl.data import load_dataset

    data = load_dataset("digits", val_fraction=0.15)
    x = data.test.x[:12]  # type: ignore[attr-defined]  # TensorSplit: uint8 (N, 1, 8, 8)
    folder = tmp_path_factory.mktemp("pngs")
    for i, img in enumerate(x):
        Image.fromarray(img[0].numpy().astype(np.uint8), mode="L").save(folder / f"d{i:02d}.png")
    mean, std = data.test.mean, data.test.std  # type: ignore[attr-defined]
    normalised = (x.float() / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    return folder, normalised
