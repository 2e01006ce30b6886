"""Batched, seeded image augmentation for tensors held in memory.

Small data sets live in memory as uint8 tensors; augmenting a whole batch with tensor ops is far
cheaper on CPU than a per-image Python pipeline, so that loading is never the bottleneck. Every
random draw comes from an explicit ``torch.Generator``: the same seed gives the same views, which is
what makes a resumed run continue the same trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "AugmentOrder", "augment_batch", "mixup"]


class AugmentOrder(StrEnum):
    """The order of the augmentations of one view.

    ``paper`` (the default): the authors' order, crop, flip, AutoAugment, normalise, erasing; the
    crop pads with black (0) and AutoAugment sees the cropped, flipped image.
    ``normalise_first``: this module's earlier order, AutoAugment, normalise, crop, flip, erasing;
    normalising before the crop pads with the dataset mean instead of black.
    """

    PAPER = "paper"
    NORMALISE_FIRST = "normalise_first"


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations make each member's view. Each is drawn independently per member."""

    crop_padding: int = 0
    hflip: bool = False
    random_erasing: float = 0.0
    autoaugment: bool = False
    order: AugmentOrder | str = AugmentOrder.PAPER

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "order", AugmentOrder(self.order))
        except ValueError as e:
            choices = ", ".join(o.value for o in AugmentOrder)
            raise ValueError(f"order must be one of {choices}, got {self.order!r}") from e
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing must be in [0, 1], got {self.random_erasing}")


def _random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (torch.arange(h)[None, :] + oy[:, None]).to(x.device)  # (B, H)
    cols = (torch.arange(w)[None, :] + ox[:, None]).to(x.device)  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing over (batch, row, col) with channels kept as a slice: (B, H, W, C).
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _random_erasing(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Erase one rectangle (area 2-33%, aspect 0.3-3.3) per image with probability p, fill 0."""
    b, _, h, w = x.shape
    area = torch.empty(b).uniform_(0.02, 0.33, generator=gen) * h * w
    log_r = torch.empty(b).uniform_(math.log(0.3), math.log(1 / 0.3), generator=gen)
    ratio = log_r.exp()
    eh = (area * ratio).sqrt().round().clamp(1, h).long()
    ew = (area / ratio).sqrt().round().clamp(1, w).long()
    y0 = (torch.rand(b, generator=gen) * (h - eh + 1)).floor().long()
    x0 = (torch.rand(b, generator=gen) * (w - ew + 1)).floor().long()
    apply = torch.rand(b, generator=gen) < p
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
    mask = (in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None]).to(x.device)
    return x.masked_fill(mask[:, None], 0.0)


def _autoaugment(x_uint8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    # v2 draws from the global RNG: seed it from our generator so the views stay reproducible.
    state = torch.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    try:
        out = torch.stack([policy(img) for img in x_uint8])
    finally:
        torch.set_rng_state(state)
    return out


def augment_batch(
    x_uint8: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """One augmented, normalised view (B, C, H, W) float32 of a uint8 batch, in ``cfg.order``."""
    if cfg.order == AugmentOrder.PAPER:
        x = x_uint8
        if cfg.crop_padding > 0:
            x = _random_crop(x, cfg.crop_padding, gen)  # pads with 0 (black), as torchvision does
        if cfg.hflip:
            x = _hflip(x, gen)
        if cfg.autoaugment:
            x = _autoaugment(x, gen)
        xf = x.float().div_(255.0)
        xf = (xf - mean.to(xf.device)[None, :, None, None]) / std.to(xf.device)[None, :, None, None]
        if cfg.random_erasing > 0:
            xf = _random_erasing(xf, cfg.random_erasing, gen)
        return xf
    x = x_uint8
    if cfg.autoaugment:
        x = _autoaugment(x, gen)
    xf = x.float().div_(255.0)
    xf = (xf - mean.to(xf.device)[None, :, None, None]) / std.to(xf.device)[None, :, None, None]
    if cfg.crop_padding > 0:
        xf = _random_crop(xf, cfg.crop_padding, gen)
    if cfg.hflip:
        xf = _hflip(xf, gen)
    if cfg.random_erasing > 0:
        xf = _random_erasing(xf, cfg.random_erasing, gen)
    return xf


def mixup(
    views: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup drawn once per batch and shared by all members: returns (mixed, permutation, lambda).

    ``views`` is (K, B, C, H, W); the same pairing and the same lambda apply to every view, as in
    the paper, so that members still see the same (mixed) images.
    """
    lam = _beta_sample(alpha, gen) if alpha > 0 else 1.0
    perm = torch.randperm(views.shape[1], generator=gen).to(views.device)
    mixed = lam * views + (1.0 - lam) * views[:, perm]
    return mixed, perm, lam


def _beta_sample(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from two seeded gamma draws (Marsaglia-Tsang with a generator)."""

    def gamma(a: float) -> float:
        boost = 1.0
        if a < 1.0:
            boost = float(torch.rand(1, generator=gen).item()) ** (1.0 / a)
            a += 1.0
        d = a - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            z = float(torch.randn(1, generator=gen).item())
            v = (1.0 + c * z) ** 3
            if v <= 0:
                continue
            u = float(torch.rand(1, generator=gen).item())
            if math.log(u) < 0.5 * z * z + d - d * v + d * math.log(v):
                return d * v * boost

    g1, g2 = gamma(alpha), gamma(alpha)
    return g1 / (g1 + g2)
