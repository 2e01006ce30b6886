"""Every registered family, at a small width and untrained: export in every format, reload, equal.

Fast by construction: width_mult 0.25, K=2, a 16x16 input for every family (all end in global
average pooling, so the size only changes the cost), no training, and the deep families at their
shallowest depth (one block per stage): every layer kind of the family is exported, in the
family's own block structure, without the hundreds of repeats that make torch.export and ONNX
take a minute per model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

import automl
from automl.export import Format, Preprocessing, ProbabilityHead, read_bundle, write_bundle
from automl.export.programs import load_program
from automl.models import _registry
from automl.models._registry import all_specs

pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")

SIZE = 16


def _shallowest_per_family() -> list[tuple[str, str]]:
    """(family, the registered model of that family with the fewest modules)."""
    best: dict[str, tuple[int, str]] = {}
    for name, spec in sorted(all_specs().items()):
        m = automl.create_model(name, num_classes=2, in_chans=3, width_mult=0.1)
        n = sum(1 for _ in m.modules())
        if spec.family not in best or n < best[spec.family][0]:
            best[spec.family] = (n, name)
    return sorted((family, name) for family, (_, name) in best.items())


# The depth argument (the builder's first) of each deep family at one block per stage: its rule
# (6n + 2 basic, 9n + 2 bottleneck, 6n + 4 DenseNet-BC, a block count per ImageNet stage) at n = 1.
SHALLOW_DEPTH: dict[str, object] = {
    "cifar_resnet": 8,
    "cifar_se_resnet": 11,
    "densenet": 10,
    "pyramidnet": 11,
    "shake_shake": 8,
    "imagenet_resnet": (1, 1, 1, 1),
    "imagenet_wide_resnet": (1, 1, 1, 1),
    "imagenet_resnext": (1, 1, 1, 1),
    "imagenet_se_resnext": (1, 1, 1, 1),
}
CASES = [
    pytest.param(family, name, fmt, id=f"{family}-{name}-{fmt.value}")
    for family, name in _shallowest_per_family()
    for fmt in Format
]


@pytest.fixture
def shallow(monkeypatch: pytest.MonkeyPatch) -> object:
    """Registers, for this test only, each deep family's model at its shallowest depth."""
    for family, depth in SHALLOW_DEPTH.items():
        for name, spec in all_specs().items():
            if spec.family == family and isinstance(spec.builder, partial):
                b = spec.builder
                builder = partial(b.func, depth, *b.args[1:], **b.keywords)
                monkeypatch.setitem(_registry._REGISTRY, name, replace(spec, builder=builder))
    return None


def test_every_deep_family_has_a_shallow_depth() -> None:
    # EfficientNet-B0 (230 modules) exports in seconds as it is.
    deep = {f for f, name in _shallowest_per_family() if sum(1 for _ in _modules(name)) > 250}
    assert deep <= set(SHALLOW_DEPTH), deep - set(SHALLOW_DEPTH)


def _modules(name: str) -> Iterator[torch.nn.Module]:
    return automl.create_model(name, num_classes=2, in_chans=3, width_mult=0.1).modules()


@pytest.mark.parametrize(("family", "name", "fmt"), CASES)
@pytest.mark.usefixtures("shallow")
def test_family_exports_and_reloads(tmp_path: Path, family: str, name: str, fmt: Format) -> None:
    torch.manual_seed(0)
    model = automl.create_model(name, num_classes=5, in_chans=3, split_factor=2, width_mult=0.25)
    # Random BatchNorm statistics, so the check is not trivially passed by identity-like layers.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            assert m.running_var is not None
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    pre = Preprocessing("synthetic", 3, SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.randn(4, 3, SIZE, SIZE)
    manifest = write_bundle(
        tmp_path / "b",
        model,
        fmt=fmt,
        form="fused",
        members=[0, 1],
        trained_split_factor=2,
        preprocessing=pre,
        classes=[f"c{i}" for i in range(5)],
        metrics={},
        check_input=x,
        check_source="random",
    )
    assert manifest["export_check"]["max_abs_diff"] <= 1e-4
    rb = read_bundle(tmp_path / "b")
    y = torch.randn(3, 3, SIZE, SIZE)  # another batch size than the export's
    with torch.inference_mode():
        ref = ProbabilityHead(model).eval()(y)
        reloaded = rb.loaded.predict_proba(y)
        program = load_program(rb.format, rb.program_path)(y)
    torch.testing.assert_close(reloaded, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(program.float(), ref, atol=1e-4, rtol=0)
