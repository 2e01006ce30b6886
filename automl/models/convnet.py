"""A small residual convnet for fast CPU searches on small grey images (digits, Fashion-MNIST).

Three residual stages, each halving the resolution (28 -> 14 -> 7 -> 4), with widths c, 2c, 4c.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from automl.models._layers import MLinear, MStemConv2d, init_conv_bn, mbatchnorm, pool_classify
from automl.models.resnet import BasicBlock

__all__ = ["ConvNet"]


class ConvNet(nn.Module):
    def __init__(
        self,
        *,
        width: int,
        num_classes: int,
        in_chans: int,
        members: int = 1,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.members = members
        self.stem_conv = MStemConv2d(in_chans, width, 3, members=members)
        self.stem_bn = mbatchnorm(width, members)
        self.blocks = nn.Sequential(
            BasicBlock(width, width, 2, members=members),
            BasicBlock(width, 2 * width, 2, members=members),
            BasicBlock(2 * width, 4 * width, 2, members=members),
        )
        self.drop_rate = drop_rate
        self.num_features = 4 * width
        self.fc = MLinear(4 * width, num_classes, members=members)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.stem_bn(self.stem_conv(x)))
        out = self.blocks(out)
        return pool_classify(out, self.fc, self.drop_rate, self.training)
