"""Every search space of the paper's settings loads and its model trains one step at K = 1, 2, 4.

One step: forward and backward of the cross-entropy summed over members, channels_last off, on
2 random images. CIFAR networks run at their native 32x32. The ImageNet networks (224/300 px) run
at 32x32, the smallest resolution their five stride-2 stages accept (down to 1x1 before the
global pool): at full resolution one CPU step of WRN-50-3 would take tens of seconds, and the
resolution does not change which code runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from automl.models import create_model
from automl.space import load_space

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
PAPER_SPACES = [
    "cifar10_wrn28_10.toml",
    "cifar100_wrn40_10.toml",
    "cifar100_resnext29.toml",
    "cifar100_pyramidnet272.toml",
    "imagenet_wrn50_3.toml",
    "imagenet_resnext101_64x4d.toml",
    "imagenet_efficientnet_b3.toml",
]
CLASSES = {"cifar10": 10, "cifar100": 100, "imagefolder": 1000}
STEP_RESOLUTION = 32


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("fname", PAPER_SPACES)
def test_paper_space_trains_one_step(fname: str, k: int) -> None:
    space = load_space(SPACES / fname)
    assert k in space.search.split_factor.choices
    torch.manual_seed(0)
    num_classes = CLASSES[space.data.dataset]
    model = create_model(
        space.model.name,
        num_classes=num_classes,
        split_factor=k,
        drop_rate=space.model.drop_rate,
    ).train()
    x = torch.randn(2, 3, STEP_RESOLUTION, STEP_RESOLUTION)  # contiguous NCHW: channels_last off
    y = torch.randint(0, num_classes, (2,))
    logits = model(x)
    assert logits.shape == (k, 2, num_classes)
    loss = F.cross_entropy(logits.reshape(-1, num_classes), y.repeat(k), reduction="sum") / 2
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(bool(torch.isfinite(g).all()) for g in grads if g is not None)
