"""Wide ResNet for CIFAR (Zagoruyko & Komodakis): pre-activation blocks, dropout between convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import (
    MConv2d,
    MLinear,
    MStemConv2d,
    init_conv_bn,
    mbatchnorm,
    pool_classify,
)

__all__ = ["WideResNet"]


class WideBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, stride: int, drop_rate: float, *, members: int
    ) -> None:
        super().__init__()
        self.bn1 = mbatchnorm(in_ch, members)
        self.conv1 = MConv2d(in_ch, out_ch, 3, stride=stride, members=members)
        self.bn2 = mbatchnorm(out_ch, members)
        self.conv2 = MConv2d(out_ch, out_ch, 3, members=members)
        self.drop_rate = drop_rate
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = MConv2d(in_ch, out_ch, 1, stride=stride, members=members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # The projection sees the pre-activated input, as in the reference WRN.
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        if self.drop_rate > 0:
            out = F.dropout(out, self.drop_rate, self.training)
        return self.conv2(out) + skip


class WideResNet(nn.Module):
    """WRN-depth-k with stage widths ``widths`` (16k, 32k, 64k undivided), for M members."""

    def __init__(
        self,
        *,
        depth: int,
        widths: tuple[int, int, int],
        num_classes: int,
        in_chans: int,
        members: int = 1,
        drop_rate: float = 0.0,
        stem_width: int = 16,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.members = members
        self.stem_conv = MStemConv2d(in_chans, stem_width, 3, members=members)
        blocks: list[nn.Module] = []
        in_ch = stem_width
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                blocks.append(WideBlock(in_ch, width, stride, drop_rate, members=members))
                in_ch = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = mbatchnorm(in_ch, members)
        self.num_features = in_ch
        self.fc = MLinear(in_ch, num_classes, members=members)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem_conv(x))
        out = F.relu(self.bn(out))
        # Dropout sits inside the blocks in a WRN, not before the classifier.
        return pool_classify(out, self.fc, 0.0, self.training)
