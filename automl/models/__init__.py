"""Divided networks: a registry of families, the K-member ensemble and its fused form.

What this package guarantees: every registered family divides by the paper's rule for it
(``division``) into an ensemble of K members (``DividedNet``) that ``fuse`` turns into one
grouped-convolution network computing the same function; sizes are counted the paper's way
(``complexity``). ``create_model(name, ...)``, ``list_models()``, ``get_spec(name)``.
"""

from __future__ import annotations

from automl.models import densenet as _densenet  # noqa: F401  (registers the family)
from automl.models import efficientnet as _efficientnet  # noqa: F401  (registers the family)
from automl.models import pyramidnet as _pyramidnet  # noqa: F401  (registers the family)
from automl.models import shake_shake as _shake_shake  # noqa: F401  (registers the family)
from automl.models import zoo as _zoo  # noqa: F401  (registers the families)
from automl.models._registry import ModelSpec, get_spec, list_models
from automl.models.division import (
    divide_cardinality,
    divide_dropout,
    divide_widen_factor,
    divide_width,
    divided_weight_decay,
)
from automl.models.ensemble import Combine, DividedNet, Ensemble, FusedNet, combine_logits
from automl.models.factory import create_model, model_from_config
from automl.models.fusion import fuse, unfuse

__all__ = [
    "Combine",
    "DividedNet",
    "Ensemble",
    "FusedNet",
    "ModelSpec",
    "combine_logits",
    "create_model",
    "divide_cardinality",
    "divide_dropout",
    "divide_widen_factor",
    "divide_width",
    "divided_weight_decay",
    "fuse",
    "get_spec",
    "list_models",
    "model_from_config",
    "unfuse",
]
