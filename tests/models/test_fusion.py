from __future__ import annotations

import pytest
import torch

from automl.models import FusedNet, create_model, fuse, get_spec, list_models, unfuse

# Every family in the registry has a fused form: all of them are written with per-member layers.
# One network per family (the first name in sorted order, usually the smallest), to stay fast.
FAMILIES = sorted({get_spec(n).family: n for n in reversed(list_models())}.values())


def _input(name: str, batch: int) -> torch.Tensor:
    size = 28 if get_spec(name).family == "convnet" else 32
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("k", [2, 4])
def test_fused_outputs_equal_sequential(name: str, k: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, split_factor=k, width_mult=0.25).eval()
    fused = fuse(model)
    assert isinstance(fused, FusedNet) and fused.split_factor == k
    x = _input(name, 3)
    torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
    views = torch.randn(k, *x.shape)
    torch.testing.assert_close(fused(views), model(views), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_fused_training_step_has_the_same_gradients(name: str) -> None:
    # float64: at width 0.25 the deep nets have 2-channel BatchNorms whose float32 rounding
    # (different kernels for grouped and plain convolutions) swamps a gradient comparison.
    # Random branch weights (Shake-Shake) and dropped paths (EfficientNet) are drawn in a different
    # order by the two forms, so they are switched off here (ModelSpec.deterministic).
    torch.manual_seed(1)
    k = 2
    opts = get_spec(name).deterministic
    model = create_model(name, num_classes=5, split_factor=k, width_mult=0.25, **opts)
    model = model.double().train()
    fused = fuse(model).train()
    views = torch.randn(k, 4, *_input(name, 1).shape[1:], dtype=torch.float64)
    y = torch.randint(0, 5, (4,))

    def loss_of(m: torch.nn.Module) -> torch.Tensor:
        logits = m(views)
        return (
            torch.nn.functional.cross_entropy(logits.reshape(-1, 5), y.repeat(k))
            + logits.pow(2).mean()
        )

    loss_of(model).backward()
    loss_of(fused).backward()
    back = unfuse(fused)  # fused gradients split per member by the same slicing as the weights
    fused_grads = dict(fused.net.named_parameters())
    for i, member in enumerate(model.members):
        for pname, p in member.named_parameters():
            g_fused = fused_grads[pname].grad
            assert g_fused is not None and p.grad is not None
            torch.testing.assert_close(g_fused.chunk(k, 0)[i], p.grad, atol=1e-9, rtol=1e-7)
    # BatchNorm running statistics were updated identically too.
    for m_ref, m_back in zip(model.members, back.members, strict=True):
        for (n1, b1), (_, b2) in zip(m_ref.named_buffers(), m_back.named_buffers(), strict=True):
            torch.testing.assert_close(b1, b2, atol=1e-9, rtol=1e-7, msg=n1)


@pytest.mark.parametrize("name", FAMILIES)
def test_weight_conversion_round_trip(name: str) -> None:
    model = create_model(name, num_classes=5, split_factor=4, width_mult=0.25)
    back = unfuse(fuse(model))
    for m1, m2 in zip(model.members, back.members, strict=True):
        s1, s2 = m1.state_dict(), m2.state_dict()
        assert s1.keys() == s2.keys()
        for key in s1:
            assert torch.equal(s1[key], s2[key]), key
