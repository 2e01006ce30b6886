"""Shake-Shake regularised ResNet (Gastaldi) for CIFAR, written for M members.

Each block has two residual branches (ReLU-3x3-BN-ReLU-3x3-BN) mixed as a*b1 + (1-a)*b2 with a
drawn uniformly per image in the forward pass and an independent b per image in the backward pass
("shake-shake-image"); 0.5/0.5 in eval. A downsampling shortcut is two 1x1 convolutions on
average-pooled inputs, the second shifted by one pixel, concatenated, then BatchNorm.

Division: the stage widths (96, 192, 384 for 2x96d) are divided by sqrt(K) (rounded to a
multiple of 4); the 16-channel stem is kept, as in the Wide ResNet rule.

Random draws: with ``shake=True`` (the default, the paper's setting) the divided and the fused
forms draw the coefficients in a different order, so their training steps agree in distribution,
not sample by sample; ``shake=False`` uses 0.5 everywhere (a deterministic check, or an ablation).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import (
    MConv2d,
    MLinear,
    MStemConv2d,
    init_conv_bn,
    mbatchnorm,
    mcat,
    member_random,
    pool_classify,
)
from automl.models._registry import ModelSpec, register
from automl.models.division import divide_width

__all__ = ["ShakeShakeNet"]


def _branch(in_ch: int, out_ch: int, stride: int, members: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(),
        MConv2d(in_ch, out_ch, 3, stride=stride, members=members),
        mbatchnorm(out_ch, members),
        nn.ReLU(),
        MConv2d(out_ch, out_ch, 3, members=members),
        mbatchnorm(out_ch, members),
    )


class ShakeShortcut(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, *, members: int) -> None:
        super().__init__()
        self.members = members
        self.stride = stride
        self.conv1 = MConv2d(in_ch, out_ch // 2, 1, members=members)
        self.conv2 = MConv2d(in_ch, out_ch - out_ch // 2, 1, members=members)
        self.bn = mbatchnorm(out_ch, members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        a = F.avg_pool2d(x, 1, self.stride)
        b = F.avg_pool2d(F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)), 1, self.stride)
        return self.bn(mcat([self.conv1(a), self.conv2(b)], self.members))


class ShakeBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, *, members: int, shake: bool) -> None:
        super().__init__()
        self.members = members
        self.shake = shake
        self.branch1 = _branch(in_ch, out_ch, stride, members)
        self.branch2 = _branch(in_ch, out_ch, stride, members)
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else ShakeShortcut(in_ch, out_ch, stride, members=members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1, b2 = self.branch1(x), self.branch2(x)
        if self.training and self.shake:
            alpha = member_random(b1, self.members, "uniform")
            beta = member_random(b1, self.members, "uniform")
            # Forward value alpha*b1 + (1-alpha)*b2, gradient as if beta had been used.
            mixed = beta * b1 + (1 - beta) * b2 + ((alpha - beta) * (b1 - b2)).detach()
        else:
            mixed = 0.5 * (b1 + b2)
        return mixed + self.shortcut(x)


class ShakeShakeNet(nn.Module):
    def __init__(
        self,
        *,
        depth: int,
        widths: tuple[int, int, int],
        num_classes: int,
        in_chans: int,
        members: int = 1,
        stem_width: int = 16,
        drop_rate: float = 0.0,
        shake: bool = True,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"Shake-Shake depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.members = members
        self.stem_conv = MStemConv2d(in_chans, stem_width, 3, members=members)
        self.stem_bn = mbatchnorm(stem_width, members)
        blocks: list[nn.Module] = []
        in_ch = stem_width
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(ShakeBlock(in_ch, width, stride, members=members, shake=shake))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.drop_rate = drop_rate
        self.num_features = in_ch
        self.fc = MLinear(in_ch, num_classes, members=members)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem_bn(self.stem_conv(x)))
        return pool_classify(F.relu(out), self.fc, self.drop_rate, self.training)


def _shake_shake(
    depth: int,
    base: int,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    shake: bool = True,
) -> nn.Module:
    w = divide_width(base, split_factor, width_mult, multiple=4)
    return ShakeShakeNet(
        depth=depth,
        widths=(w, 2 * w, 4 * w),
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
        shake=shake,
    )


register(
    ModelSpec(
        name="shake_shake26_2x96d",
        family="shake_shake",
        builder=partial(_shake_shake, 26, 96),
        image_size=32,
        description="Shake-Shake 26 2x96d (CIFAR, shake-shake-image); stage widths 96/192/384 "
        "divided by sqrt(K) (68/136/272 at K=2, 48/96/192 at K=4), stem 16 kept",
        options=("shake",),
        deterministic={"shake": False},
    )
)
