"""Layers that hold the weights of M ensemble members side by side.

Every family is written once in terms of these layers with a ``members`` count M. With M = 1 the
network is an ordinary single network (one member of a divided ensemble); with M = K the same code
builds the *fused* form, where member i owns the contiguous channel block i of every layer and the
members never exchange information (grouped convolutions with one group block per member,
per-channel BatchNorm, a block-diagonal classifier). Because member i's slice of every parameter is
exactly member i's own parameter, converting between the two forms is slicing and concatenation
along dimension 0 (see ``automl.models.fusion``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MConv2d(nn.Conv2d):
    """A convolution of M members, each mapping ``in_ch`` to ``out_ch`` in ``groups`` groups."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        *,
        members: int = 1,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        pad = kernel_size // 2 if padding is None else padding
        super().__init__(
            members * in_ch,
            members * out_ch,
            kernel_size,
            stride=stride,
            padding=pad,
            groups=members * groups,
            bias=bias,
        )
        self.members = members
        # A strided 1x1 convolution reads only every stride-th pixel, so it equals a stride-1 1x1
        # convolution of the subsampled input. On the CPU that form is taken because oneDNN's AVX2
        # weight-gradient kernel for strided 1x1 convolutions in channels_last corrupts the heap
        # with fewer than 8 input channels (seen with one group; grouped ones take the same path
        # to be safe, it costs nothing measurable): tests/models/test_onednn_defect.py.
        self.subsample_first = (
            kernel_size == 1 and stride > 1 and pad == 0 and in_ch // groups < 8
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subsample_first and x.device.type == "cpu":
            s = self.stride
            return F.conv2d(
                x[:, :, :: s[0], :: s[1]], self.weight, self.bias, 1, 0, self.dilation, self.groups
            )
        return super().forward(x)


class MStemConv2d(nn.Conv2d):
    """The first convolution: takes either one shared batch or M stacked views.

    With a shared input (B, C, H, W) it runs as one dense convolution with M * out_ch outputs, which
    is the concatenation of the members' stems. With M views stacked on the channel axis
    (B, M * C, H, W) it runs with M groups, so member i only sees view i. The weight is the same
    tensor in both cases.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        *,
        members: int = 1,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = False,
    ) -> None:
        pad = kernel_size // 2 if padding is None else padding
        super().__init__(
            in_ch, members * out_ch, kernel_size, stride=stride, padding=pad, bias=bias
        )
        self.members = members
        self.in_ch = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = 1 if x.shape[1] == self.in_ch else self.members
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, groups)


def mbatchnorm(channels: int, members: int = 1) -> nn.BatchNorm2d:
    """BatchNorm over M members: per-channel statistics keep the members independent."""
    return nn.BatchNorm2d(members * channels)


class MLinear(nn.Module):
    """M independent classifiers, input (B, M * F), output (M, B, num_classes)."""

    def __init__(self, in_features: int, out_features: int, *, members: int = 1) -> None:
        super().__init__()
        self.members = members
        self.in_features = in_features
        self.out_features = out_features
        # Stored as (M * out, in) so that member i's rows are the rows of its own nn.Linear.
        self.weight = nn.Parameter(torch.empty(members * out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members * out_features))
        bound = 1.0 / in_features**0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, o = self.members, self.out_features
        feats = x.reshape(x.shape[0], m, self.in_features)
        w = self.weight.view(m, o, self.in_features)
        out = torch.einsum("bmf,mof->mbo", feats, w)
        return out + self.bias.view(m, 1, o)


def init_conv_bn(module: nn.Module) -> None:
    """He initialisation for convolutions, unit BatchNorm, as in the ResNet papers."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
