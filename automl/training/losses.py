"""Co-training losses on per-member logits (K, B, C)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F

from automl.errors import ConfigError

__all__ = ["CotKind", "LossParts", "co_training_loss", "cot_weight_at", "ensemble_loss"]

COT_WEIGHT_FLOOR = 0.005


class CotKind(StrEnum):
    JS = "js"
    KL = "kl"


def co_training_loss(
    logits: torch.Tensor, kind: CotKind | str = CotKind.JS, temperature: float = 1.0
) -> torch.Tensor:
    """The co-training term, averaged over the batch; 0 for a single member.

    ``js``: Jensen-Shannon divergence among the K distributions, H(mean_i p_i) - mean_i H(p_i);
    gradients flow into every member. ``kl``: sum over ordered pairs (i, j), i != j, of
    KL(p_j || p_i) with p_j detached (a target), divided by K - 1. With a temperature T the
    distributions are softmax(z / T) and the term is scaled by T^2 so that its gradient keeps its
    size as T changes.
    """
    if logits.dim() != 3:
        raise ConfigError(f"co_training_loss expects logits (K, B, C), got {tuple(logits.shape)}")
    try:
        kind = CotKind(kind)
    except ValueError as e:
        raise ConfigError(f"co-training loss kind must be 'js' or 'kl', got {kind!r}") from e
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    k = logits.shape[0]
    if k == 1:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float() / temperature, dim=-1)  # (K, B, C)
    p = logp.exp()
    if kind is CotKind.JS:
        p_mean = p.mean(0)
        h_mean = -(p_mean * p_mean.clamp_min(1e-12).log()).sum(-1)  # (B,)
        h_each = -(p * logp).sum(-1).mean(0)  # (B,)
        loss = (h_mean - h_each).mean()
    else:
        target_p = p.detach()
        target_logp = logp.detach()
        total = logits.new_zeros((), dtype=torch.float32)
        for i in range(k):
            for j in range(k):
                if i != j:
                    kl = (target_p[j] * (target_logp[j] - logp[i])).sum(-1)
                    total = total + kl.mean()
        loss = total / (k - 1)
    return loss * temperature**2


def cot_weight_at(
    epoch: int, weight: float, warmup_epochs: int, *, floor_after_warmup: bool = False
) -> float:
    """Linear warm-up of the co-training weight: weight * epoch / E, at least the paper's floor.

    As in the authors' code, the floor (0.005) only applies during the warm-up (so that the term is
    never exactly off in the first epoch); afterwards the weight is ``weight`` as given, even a
    weight below the floor. ``floor_after_warmup=True`` restores this module's earlier behaviour,
    which also raised a weight below 0.005 to the floor after the warm-up.
    """
    if weight <= 0:
        return 0.0
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return max(weight, COT_WEIGHT_FLOOR) if floor_after_warmup else weight
    return max(weight * epoch / warmup_epochs, COT_WEIGHT_FLOOR)


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor
    cot: torch.Tensor


def ensemble_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    cot_weight: float,
    cot_kind: CotKind | str = CotKind.JS,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    mix_targets: torch.Tensor | None = None,
    mix_lambda: float = 1.0,
) -> LossParts:
    """Sum of the members' cross-entropies plus ``cot_weight`` x the co-training term.

    With mixup, each member's cross-entropy is lambda * CE(y) + (1 - lambda) * CE(y[perm]).
    """
    k, b, c = logits.shape
    flat = logits.reshape(k * b, c).float()
    y = targets.repeat(k)
    ce = F.cross_entropy(flat, y, label_smoothing=label_smoothing) * k
    if mix_targets is not None and mix_lambda < 1.0:
        ce_b = F.cross_entropy(flat, mix_targets.repeat(k), label_smoothing=label_smoothing) * k
        ce = mix_lambda * ce + (1.0 - mix_lambda) * ce_b
    cot = co_training_loss(logits, cot_kind, temperature) if cot_weight > 0 else ce.new_zeros(())
    return LossParts(total=ce + cot_weight * cot, ce=ce, cot=cot)
