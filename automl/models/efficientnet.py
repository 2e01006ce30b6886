"""EfficientNet-B0/B3/B7 (Tan & Le), written for M members.

Own implementation of the published architecture (the same stage table, width/depth coefficients,
squeeze-excitation with 1/4 of the block's input channels, SiLU, stochastic depth rising linearly
to ``drop_path_rate``), so that it has a fused form like every family here: depthwise convolutions
are grouped convolutions with one group per channel per member. At K = 1 its parameter count equals
torchvision's ``efficientnet_b*`` (checked in tests/models/test_paper_sizes.py).

Division: the paper uses hand-written channel tables for K in {1, 2, 4} that it does not print;
here every channel count is ``make_divisible(c * width / sqrt(K), 8)`` (the same rounding
EfficientNet uses for its width coefficient), depth unchanged. This keeps the total within 10% of
K = 1 (measured in the size test) but is not guaranteed to be the authors' exact table.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import (
    MConv2d,
    MLinear,
    MSqueezeExcite,
    MStemConv2d,
    drop_path,
    is_meta,
    mbatchnorm,
    pool_classify,
)
from automl.models._registry import ModelSpec, register

__all__ = ["EfficientNet"]

# (expand ratio, kernel, stride, input channels, output channels, repeats) of EfficientNet-B0.
_B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor``, never more than 10% below ``v`` (EfficientNet's rule)."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if out < 0.9 * v:
        out += divisor
    return out


class MBConv(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        expand: int,
        kernel: int,
        stride: int,
        drop_path_rate: float,
        *,
        members: int,
    ) -> None:
        super().__init__()
        self.members = members
        mid = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [MConv2d(in_ch, mid, 1, members=members), mbatchnorm(mid, members), nn.SiLU()]
        layers += [
            MConv2d(mid, mid, kernel, stride=stride, groups=mid, members=members),
            mbatchnorm(mid, members),
            nn.SiLU(),
            MSqueezeExcite(mid, max(1, in_ch // 4), members=members, activation=nn.SiLU),
            MConv2d(mid, out_ch, 1, members=members),
            mbatchnorm(out_ch, members),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = drop_path(out, self.drop_path_rate, self.members, self.training) + x
        return out


class EfficientNet(nn.Module):
    def __init__(
        self,
        *,
        width: float,
        depth: float,
        num_classes: int,
        in_chans: int,
        members: int = 1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.members = members
        stem = make_divisible(32 * width)
        self.stem_conv = MStemConv2d(in_chans, stem, 3, stride=2, members=members)
        self.stem_bn = mbatchnorm(stem, members)
        total = sum(math.ceil(r * depth) for *_, r in _B0_STAGES)
        blocks: list[nn.Module] = []
        idx = 0
        in_ch = stem
        for expand, kernel, stride, _cin, cout, repeats in _B0_STAGES:
            out_ch = make_divisible(cout * width)
            for i in range(math.ceil(repeats * depth)):
                blocks.append(
                    MBConv(
                        in_ch,
                        out_ch,
                        expand,
                        kernel,
                        stride if i == 0 else 1,
                        drop_path_rate * idx / total,
                        members=members,
                    )
                )
                in_ch = out_ch
                idx += 1
        self.blocks = nn.Sequential(*blocks)
        head = 4 * in_ch
        self.head_conv = MConv2d(in_ch, head, 1, members=members)
        self.head_bn = mbatchnorm(head, members)
        self.drop_rate = drop_rate
        self.num_features = head
        self.fc = MLinear(head, num_classes, members=members)
        for m in () if is_meta(self) else self.modules():  # a meta model holds no values
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.silu(self.stem_bn(self.stem_conv(x)))
        out = self.blocks(out)
        out = F.silu(self.head_bn(self.head_conv(out)))
        return pool_classify(out, self.fc, self.drop_rate, self.training)


def _efficientnet(
    width: float,
    depth: float,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    drop_path_rate: float = 0.2,
) -> nn.Module:
    return EfficientNet(
        width=width * width_mult / math.sqrt(split_factor),
        depth=depth,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


for _name, _w, _d, _size, _p in (
    ("efficientnet_b0", 1.0, 1.0, 224, 0.2),
    ("efficientnet_b3", 1.2, 1.4, 300, 0.3),
    ("efficientnet_b7", 2.0, 3.1, 600, 0.5),
):
    register(
        ModelSpec(
            name=_name,
            family="efficientnet",
            builder=partial(_efficientnet, _w, _d),
            image_size=_size,
            description=f"EfficientNet-{_name[-2:].upper()} (ImageNet, {_size}px, width {_w}, "
            f"depth {_d}; the paper's classifier dropout is {_p}: pass drop_rate); channels "
            "make_divisible(c * width / sqrt(K), 8), not the authors' unpublished tables",
            options=("drop_path_rate",),
            deterministic={"drop_path_rate": 0.0},
        )
    )
