from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from automl.errors import ConfigError
from automl.training import co_training_loss, cot_weight_at, ensemble_loss, lr_at


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.log()).sum(-1)


def test_js_matches_a_direct_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    p = logits.softmax(-1)
    expected = (_entropy(p.mean(0)) - _entropy(p).mean(0)).mean()
    # The same quantity written as the mean KL to the mixture.
    kl_form = (
        torch.stack([(p[i] * (p[i].log() - p.mean(0).log())).sum(-1) for i in range(3)])
        .mean(0)
        .mean()
    )
    got = co_training_loss(logits, "js")
    torch.testing.assert_close(got.double(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(expected, kl_form)


def test_pairwise_kl_matches_a_direct_computation() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 6, dtype=torch.float64)
    p = logits.softmax(-1)
    total = sum(
        (p[j] * (p[j].log() - p[i].log())).sum(-1).mean()
        for i in range(3)
        for j in range(3)
        if i != j
    )
    torch.testing.assert_close(
        co_training_loss(logits, "kl").double(), total / 2, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("kind", ["js", "kl"])
def test_non_negative_and_zero_for_identical_members(kind: str) -> None:
    torch.manual_seed(2)
    for _ in range(20):
        assert co_training_loss(torch.randn(4, 8, 10) * 3, kind).item() >= -1e-7
    same = torch.randn(1, 8, 10).expand(3, 8, 10)
    assert abs(co_training_loss(same, kind).item()) < 1e-6
    assert co_training_loss(torch.randn(1, 8, 10), kind).item() == 0.0  # K = 1: off


@pytest.mark.parametrize("kind", ["js", "kl"])
def test_gradients_reach_every_member(kind: str) -> None:
    logits = torch.randn(3, 8, 10, requires_grad=True)
    co_training_loss(logits, kind).backward()
    assert logits.grad is not None
    for k in range(3):
        assert logits.grad[k].abs().sum() > 0


def test_temperature_scales_by_t_squared_at_the_limit() -> None:
    logits = torch.randn(2, 16, 5)
    assert co_training_loss(logits, "js", temperature=2.0).item() >= 0
    with pytest.raises(ConfigError, match="temperature"):
        co_training_loss(logits, "js", temperature=0)
    with pytest.raises(ConfigError, match="'js' or 'kl'"):
        co_training_loss(logits, "l2")


def test_total_loss_is_summed_cross_entropy_plus_weighted_cot() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 6, 4)
    y = torch.randint(0, 4, (6,))
    parts = ensemble_loss(logits, y, cot_weight=0.7)
    ce = sum(torch.nn.functional.cross_entropy(logits[i], y) for i in range(3))
    torch.testing.assert_close(parts.ce, ce)
    torch.testing.assert_close(parts.total, ce + 0.7 * co_training_loss(logits))


def test_cot_weight_warm_up_with_the_paper_floor() -> None:
    assert cot_weight_at(0, 0.5, 40) == 0.005
    assert cot_weight_at(20, 0.5, 40) == pytest.approx(0.25)
    assert cot_weight_at(40, 0.5, 40) == 0.5
    assert cot_weight_at(100, 0.5, 40) == 0.5
    assert cot_weight_at(3, 0.0, 40) == 0.0
    assert cot_weight_at(0, 0.5, 0) == 0.5


def test_learning_rate_is_a_pure_function_of_the_step() -> None:
    kw: dict[str, Any] = {"total_steps": 100, "base_lr": 0.1, "warmup_steps": 10, "min_lr": 1e-4}
    assert lr_at(0, **kw) == pytest.approx(0.01)
    assert lr_at(9, **kw) == pytest.approx(0.1)
    assert lr_at(10, **kw) == pytest.approx(0.1)
    assert lr_at(55, **kw) == pytest.approx(1e-4 + 0.5 * (0.1 - 1e-4))
    assert lr_at(100, **kw) == pytest.approx(1e-4)
    values = [lr_at(s, **kw) for s in range(10, 100)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert not math.isnan(lr_at(5, total_steps=1, base_lr=0.1, warmup_steps=0, min_lr=0.0))
