"""The forms a trained ensemble can be served in, and the probability head every program ends in.

- ``divided``: the K (or m) member modules, run one after another.
- ``fused``: the same members merged into one grouped-convolution network (``automl.fuse``).
- ``members=m``: only the first m members, ordered by validation accuracy (best first), in either
  form. A co-trained ensemble answers with fewer members at a lower latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl.errors import ConfigError
from automl.export.preprocess import Preprocessing
from automl.models import Combine, DividedNet, Ensemble, fuse
from automl.models.members import member_order, select_members

__all__ = ["Form", "LoadedModel", "ProbabilityHead", "build_form", "resolve_members"]


class Form(StrEnum):
    DIVIDED = "divided"
    FUSED = "fused"


def parse_form(form: Form | str) -> Form:
    try:
        return Form(form)
    except ValueError:
        raise ConfigError(f"form must be one of divided, fused, got {form!r}") from None


def resolve_members(members: int | None, k: int, member_accuracies: Sequence[float]) -> list[int]:
    """Indices of the first ``members`` members by validation accuracy (all K when None)."""
    if members is None:
        return list(range(k))
    if isinstance(members, bool) or not 1 <= members <= k:
        raise ConfigError(f"--members must be in 1..{k} for this K={k} trial, got {members}")
    if members == k:
        return list(range(k))
    return sorted(member_order(member_accuracies, k)[:members])


def build_form(model: DividedNet, form: Form | str, indices: Sequence[int]) -> Ensemble:
    """``model`` restricted to ``indices`` in ``form``, on the CPU, in eval mode."""
    picked = select_members(model.cpu().eval(), indices)
    out: Ensemble = fuse(picked) if parse_form(form) is Form.FUSED else picked
    return out.eval()


class ProbabilityHead(nn.Module):
    """Input (B, C, H, W), normalised -> class probabilities (B, classes) by the combine rule.

    ``mean_logits``: softmax of the mean logits; ``mean_probs``: mean of the members' softmax;
    ``geometric``: the normalised geometric mean of the members' probabilities.
    """

    def __init__(self, model: Ensemble) -> None:
        super().__init__()
        self.model = model
        self.combine = str(model.combine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)  # (K, B, classes)
        if self.combine == Combine.MEAN_PROBS:
            return logits.softmax(-1).mean(0)
        if self.combine == Combine.GEOMETRIC:
            return F.log_softmax(logits, -1).mean(0).softmax(-1)
        return logits.mean(0).softmax(-1)


@dataclass
class LoadedModel:
    """A trained ensemble ready for inference, with what it needs to be fed and read."""

    model: Ensemble
    preprocessing: Preprocessing
    class_names: list[str]
    form: Form
    members: list[int]
    model_config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def head(self) -> ProbabilityHead:
        return ProbabilityHead(self.model).eval()

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, classes) for a normalised batch."""
        return self.head(x)
