from __future__ import annotations

import pytest
import torch

from automl.errors import ConfigError
from automl.models import Combine, combine_logits, create_model


def test_combine_rules() -> None:
    logits = torch.randn(3, 5, 4)
    torch.testing.assert_close(combine_logits(logits, "mean_logits"), logits.mean(0))
    torch.testing.assert_close(combine_logits(logits, "mean_probs"), logits.softmax(-1).mean(0))
    geo = combine_logits(logits, Combine.GEOMETRIC)
    expected = torch.log_softmax(logits, -1).mean(0)
    torch.testing.assert_close(geo, expected)
    with pytest.raises(ConfigError, match="combine must be one of"):
        combine_logits(logits, "median")


def test_predict_uses_the_models_combine_rule() -> None:
    model = create_model(
        "convnet_s", num_classes=10, in_chans=1, split_factor=2, combine="mean_probs"
    ).eval()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(model.predict(x), model(x).softmax(-1).mean(0))


def test_wrong_number_of_views_is_a_clear_error() -> None:
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=2)
    with pytest.raises(ConfigError, match="got 3 views for an ensemble of K=2"):
        model(torch.randn(3, 2, 1, 28, 28))


def test_members_can_be_placed_on_devices() -> None:
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=2).eval()
    devices = ["cpu", "cpu"]
    if torch.cuda.device_count() >= 1:
        devices = ["cpu", "cuda:0"]
    model.place(devices)
    assert [d.type for d in model.member_devices()] == [torch.device(d).type for d in devices]
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 2, 10)
    assert out.device == model.member_devices()[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present")
def test_members_on_a_gpu_match_the_cpu() -> None:
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=2).eval()
    x = torch.randn(2, 1, 28, 28)
    ref = model(x)
    model.place(["cuda:0"])
    torch.testing.assert_close(model(x).cpu(), ref, atol=1e-4, rtol=1e-4)
