"""The K-member ensemble: K small networks, each with its own BatchNorm and classifier."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl.errors import ConfigError

__all__ = ["Combine", "DividedNet", "Ensemble", "FusedNet", "combine_logits"]


class Combine(StrEnum):
    """How the members' outputs become one prediction."""

    MEAN_LOGITS = "mean_logits"
    MEAN_PROBS = "mean_probs"
    GEOMETRIC = "geometric"


def combine_logits(logits: torch.Tensor, how: Combine | str = Combine.MEAN_LOGITS) -> torch.Tensor:
    """Combine per-member logits (K, B, C) into scores (B, C) whose argmax is the prediction.

    ``mean_logits`` averages logits (the paper's default); ``mean_probs`` returns the mean of the
    softmax probabilities; ``geometric`` returns the mean log-probability, i.e. the log of the
    unnormalised geometric mean of the probabilities.
    """
    try:
        how = Combine(how)
    except ValueError as e:
        choices = ", ".join(c.value for c in Combine)
        raise ConfigError(f"combine must be one of {choices}, got {how!r}") from e
    if logits.dim() != 3:
        raise ConfigError(
            f"expected per-member logits of shape (K, B, C), got {tuple(logits.shape)}"
        )
    if how is Combine.MEAN_LOGITS:
        return logits.mean(0)
    if how is Combine.MEAN_PROBS:
        return logits.softmax(-1).mean(0)
    return F.log_softmax(logits, -1).mean(0)


class Ensemble(nn.Module):
    """Common interface of the divided (K modules) and fused (one grouped module) forms.

    ``forward`` takes one shared batch (B, C, H, W) or K views (K, B, C, H, W) and returns the
    per-member logits (K, B, num_classes).
    """

    split_factor: int
    model_config: dict[str, Any]

    def __init__(self, split_factor: int, model_config: dict[str, Any], combine: Combine) -> None:
        super().__init__()
        self.split_factor = split_factor
        self.model_config = dict(model_config)
        self.combine = Combine(combine)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() == 5 and x.shape[0] != self.split_factor:
            raise ConfigError(
                f"got {x.shape[0]} views for an ensemble of K={self.split_factor} members; "
                "pass one shared batch (B, C, H, W) or exactly K views (K, B, C, H, W)"
            )
        if x.dim() not in (4, 5):
            raise ConfigError(
                f"expected input (B, C, H, W) or (K, B, C, H, W), got shape {tuple(x.shape)}"
            )

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Combined scores (B, C) for a shared batch."""
        return combine_logits(self(x), self.combine)


class DividedNet(Ensemble):
    """K independent member networks in a ``ModuleList``; members may live on different devices."""

    def __init__(
        self,
        members: Sequence[nn.Module],
        model_config: dict[str, Any],
        combine: Combine = Combine.MEAN_LOGITS,
    ) -> None:
        super().__init__(len(members), model_config, combine)
        self.members = nn.ModuleList(members)

    def place(self, devices: Sequence[torch.device | str]) -> DividedNet:
        """Put member i on ``devices[i % len(devices)]`` (the paper's one-member-per-GPU layout)."""
        if not devices:
            raise ConfigError("place() needs at least one device")
        for i, member in enumerate(self.members):
            member.to(torch.device(devices[i % len(devices)]))
        return self

    def member_devices(self) -> list[torch.device]:
        return [next(m.parameters()).device for m in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        devices = self.member_devices()
        out_device = devices[0]
        outs = []
        for i, (member, dev) in enumerate(zip(self.members, devices, strict=True)):
            xi = x[i] if x.dim() == 5 else x
            y = member(xi.to(dev, non_blocking=True))
            outs.append(y[0].to(out_device, non_blocking=True))
        return torch.stack(outs, 0)


class FusedNet(Ensemble):
    """The same K members merged into one network with grouped convolutions.

    Computes exactly the function of the divided form (see ``automl.models.fusion``); one kernel
    launch per layer instead of K.
    """

    def __init__(
        self, net: nn.Module, model_config: dict[str, Any], combine: Combine = Combine.MEAN_LOGITS
    ) -> None:
        super().__init__(int(getattr(net, "members", 1)), model_config, combine)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if x.dim() == 5:
            k, b, c, h, w = x.shape
            # Member i owns channel block i, so views are stacked along the channel axis.
            x = x.transpose(0, 1).reshape(b, k * c, h, w)
        out: torch.Tensor = self.net(x)
        return out
