"""Accuracy of the ensemble and of each member on a split."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from automl.data.splits import Split
from automl.models.ensemble import Ensemble, combine_logits

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    member_accuracies: list[float]
    n: int


@torch.inference_mode()
def evaluate(
    model: Ensemble, split: Split, *, batch_size: int = 512, device: torch.device | None = None
) -> EvalResult:
    """Ensemble accuracy (the model's combine rule) and every member's accuracy."""
    dev = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    member_correct: torch.Tensor | None = None
    n = 0
    gen = torch.Generator().manual_seed(0)
    try:
        for views, y in split.batches(
            batch_size, views=1, augment=None, gen=gen, shuffle=False, drop_last=False, device=dev
        ):
            logits = model(views[0])  # (K, B, C)
            y = y.to(logits.device)
            correct += int((combine_logits(logits, model.combine).argmax(-1) == y).sum())
            per = (logits.argmax(-1) == y[None]).sum(1).cpu()
            member_correct = per if member_correct is None else member_correct + per
            n += int(y.numel())
    finally:
        model.train(was_training)
    if n == 0 or member_correct is None:
        return EvalResult(0.0, [], 0)
    return EvalResult(correct / n, [float(c) / n for c in member_correct], n)
