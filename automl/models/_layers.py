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
        self.subsample_first = kernel_size == 1 and stride > 1 and pad == 0 and in_ch // groups < 8

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


def pool_classify(
    features: torch.Tensor, fc: nn.Module, drop_rate: float, training: bool
) -> torch.Tensor:
    """The head the families share: global average pool, dropout when set, the classifiers."""
    out = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)
    if drop_rate > 0:
        out = F.dropout(out, drop_rate, training)
    return fc(out)


def is_meta(module: nn.Module) -> bool:
    """Whether ``module``'s parameters live on the meta device (shapes without values)."""
    return any(p.is_meta for p in module.parameters())


def init_conv_bn(module: nn.Module) -> None:
    """He initialisation for convolutions, unit BatchNorm, as in the ResNet papers.

    Nothing to do for a model built on the meta device (to count its shapes): its tensors hold no
    values, and PyTorch decomposes ``normal_`` on meta tensors in Python, which made counting a
    space's networks take seconds.
    """
    if is_meta(module):
        return
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def member_blocks(x: torch.Tensor, members: int) -> torch.Tensor:
    """View (B, M * C, H, W) as (B, M, C, H, W): member i's channels are block i."""
    b, mc, h, w = x.shape
    return x.view(b, members, mc // members, h, w)


def mcat(tensors: list[torch.Tensor], members: int) -> torch.Tensor:
    """Concatenate feature maps channel-wise *per member* (DenseNet, Shake-Shake shortcuts).

    A plain ``torch.cat`` on the fused form would interleave the members' blocks; this keeps
    member i's channels of every input together in block i, which is what the divided form has.
    """
    if members == 1:
        return torch.cat(tensors, 1)
    parts = [member_blocks(t, members) for t in tensors]
    out = torch.cat(parts, 2)
    return out.reshape(out.shape[0], -1, out.shape[3], out.shape[4])


def mpad_channels(x: torch.Tensor, extra: int, members: int) -> torch.Tensor:
    """Append ``extra`` zero channels to every member's block (PyramidNet's shortcut)."""
    if extra == 0:
        return x
    blocks = member_blocks(x, members)
    pad = blocks.new_zeros(blocks.shape[0], members, extra, blocks.shape[3], blocks.shape[4])
    out = torch.cat([blocks, pad], 2)
    return out.reshape(out.shape[0], -1, out.shape[3], out.shape[4])


def member_random(x: torch.Tensor, members: int, kind: str) -> torch.Tensor:
    """One random number per (sample, member), broadcast over that member's channels.

    ``kind`` is "uniform" (U[0, 1)). Shape (B, M * C, 1, 1) for an input (B, M * C, H, W). The
    divided and fused forms draw these numbers in a different order, so training with random
    draws on is only equal in distribution, not sample by sample (see ModelSpec.deterministic).
    """
    b, mc = x.shape[0], x.shape[1]
    if kind != "uniform":
        raise ValueError(f"unknown kind {kind!r}")
    r = torch.rand(b, members, 1, device=x.device, dtype=x.dtype)
    return r.expand(b, members, mc // members).reshape(b, mc, 1, 1)


class MSqueezeExcite(nn.Module):
    """Squeeze-and-excitation of M members: pool, 1x1 reduce, activation, 1x1 expand, sigmoid."""

    def __init__(
        self,
        channels: int,
        squeeze: int,
        *,
        members: int = 1,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.reduce = MConv2d(channels, squeeze, 1, members=members, bias=True)
        self.act = activation()
        self.expand = MConv2d(squeeze, channels, 1, members=members, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


def drop_path(x: torch.Tensor, p: float, members: int, training: bool) -> torch.Tensor:
    """Stochastic depth per (sample, member): drop the whole residual branch with probability p."""
    if p <= 0.0 or not training:
        return x
    keep = (member_random(x, members, "uniform") >= p).to(x.dtype)
    return x * keep / (1.0 - p)
