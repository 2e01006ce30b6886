from __future__ import annotations

import math

import pytest
import torch

from automl.errors import ModelError
from automl.models import (
    create_model,
    divide_widen_factor,
    divide_width,
    divided_weight_decay,
    get_spec,
    list_models,
)


def _tiny_input(name: str, batch: int = 2) -> torch.Tensor:
    size = 28 if get_spec(name).family == "convnet" else 32
    return torch.randn(batch, 3, size, size)


# Every model at K = 2 (members > 1 and the K-view path); K = 1 and 4 for one model per CIFAR
# family: each member of a divided net is the family's members=1 network, so K = 2 runs the same
# code as K = 1 and 4, and the sizes at every K are checked on the meta device (test_paper_sizes.py).
FORWARD_CASES = [(n, 2) for n in list_models()] + [
    (n, k) for n in ("convnet_s", "wrn16_4", "resnet110") for k in (1, 4)
]


@pytest.mark.parametrize(("name", "k"), FORWARD_CASES)
def test_forward_every_registered_model(name: str, k: int) -> None:
    # Narrow widths keep the whole registry fast on CPU; the division code path is the same.
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, split_factor=k, width_mult=0.25)
    assert model.split_factor == k
    x = _tiny_input(name)
    out = model(x)
    assert out.shape == (k, 2, 7)
    assert torch.isfinite(out).all()
    views = torch.randn(k, *x.shape)
    out_views = model(views)
    assert out_views.shape == (k, 2, 7)
    assert torch.isfinite(out_views).all()


def test_members_are_independent_networks() -> None:
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=3)
    ids = {id(p) for m in model.members for p in m.parameters()}
    n_params = sum(1 for m in model.members for _ in m.parameters())
    assert len(ids) == n_params  # no shared tensors: each member has its own BN and classifier
    bns = [m for m in model.members[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns


def test_member_i_sees_view_i() -> None:
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=2).eval()
    views = torch.randn(2, 4, 1, 28, 28)
    out = model(views)
    for i, member in enumerate(model.members):
        torch.testing.assert_close(out[i], member(views[i])[0])


def test_wrn28_10_parameter_parity_with_the_paper() -> None:
    paper = get_spec("wrn28_10").paper_params_m
    assert paper == {1: 36.5, 2: 35.8, 4: 36.7}
    for k, millions in paper.items():
        model = create_model("wrn28_10", num_classes=100, split_factor=k)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(n - millions) / millions < 0.025, (k, n)


def test_wrn28_10_divided_stage_widths() -> None:
    for k, widths in {1: (160, 320, 640), 2: (112, 224, 448), 4: (80, 160, 320)}.items():
        member = create_model("wrn28_10", num_classes=100, split_factor=k).members[0]
        convs = [
            m
            for m in member.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
        ]
        assert {c.out_channels for c in convs} == {16, *widths}


def test_division_tables_of_the_paper() -> None:
    assert [divide_width(16, k, multiple=2) for k in (1, 2, 4, 8, 16)] == [16, 12, 8, 6, 4]
    assert [divide_width(64, k, multiple=4) for k in (1, 2, 4, 8)] == [64, 44, 32, 24]
    assert [divide_widen_factor(10, k) for k in (1, 2, 4)] == [10, 7, 5]
    assert divided_weight_decay(1.0, 1) == pytest.approx(1.0)
    assert divided_weight_decay(1.0, 2) == pytest.approx(0.607, abs=1e-3)
    assert divided_weight_decay(1.0, 4) == pytest.approx(0.472, abs=1e-3)


def test_resnext_divides_cardinality() -> None:
    m1 = create_model("resnext29_8x64d", num_classes=10, split_factor=1).members[0]
    m2 = create_model("resnext29_8x64d", num_classes=10, split_factor=2).members[0]
    g1 = max(c.groups for c in m1.modules() if isinstance(c, torch.nn.Conv2d))
    g2 = max(c.groups for c in m2.modules() if isinstance(c, torch.nn.Conv2d))
    assert (g1, g2) == (8, 4)


def test_dropout_is_divided_by_k() -> None:
    model = create_model("convnet_s", num_classes=10, split_factor=4, drop_rate=0.4)
    assert model.members[0].drop_rate == pytest.approx(0.1)


def test_width_mult_scales_continuously() -> None:
    sizes = [
        sum(p.numel() for p in create_model("convnet_m", num_classes=10, width_mult=w).parameters())
        for w in (0.5, 1.0, 1.5)
    ]
    assert sizes[0] < sizes[1] < sizes[2]


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(ModelError, match="unknown model 'wrn99'.*wrn28_10"):
        create_model("wrn99", num_classes=10)


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True])
def test_bad_split_factor(k: object) -> None:
    with pytest.raises(ModelError, match="split_factor"):
        create_model("convnet_s", num_classes=10, split_factor=k)  # type: ignore[arg-type]


@pytest.mark.parametrize("w", [0, -0.5, math.nan, math.inf])
def test_bad_width_mult(w: float) -> None:
    with pytest.raises(ModelError, match="width_mult"):
        create_model("convnet_s", num_classes=10, width_mult=w)


def test_cardinality_must_be_divisible() -> None:
    with pytest.raises(ModelError, match="does not divide the cardinality 8"):
        create_model("resnext29_8x64d", num_classes=10, split_factor=3)


@pytest.mark.parametrize("name", ["convnet_s", "efficientnet_b0"])
def test_he_initialisation_on_real_tensors_and_none_on_the_meta_device(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=3, split_factor=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    conv = max(convs, key=lambda m: m.weight.numel())
    # He (fan_out) initialisation: std sqrt(2 / fan_out), not PyTorch's default uniform.
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
    # On the meta device (counting a space's networks) the same shapes, with no values to set.
    with torch.device("meta"):
        meta = create_model(name, num_classes=10, in_chans=3, split_factor=2)
    assert all(p.is_meta for p in meta.parameters())
    assert [p.shape for p in meta.parameters()] == [p.shape for p in model.parameters()]
