"""Named configurations of every family, with the paper's division rules applied."""

from __future__ import annotations

from functools import partial

from torch import nn

from automl.models._registry import ModelSpec, register
from automl.models.convnet import ConvNet
from automl.models.division import (
    divide_cardinality,
    divide_widen_factor,
    divide_width,
)
from automl.models.resnet import ResNet
from automl.models.wide_resnet import WideResNet


def _wrn(
    depth: int,
    widen: float,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    # The stem stays at 16 channels; the widen factor is scaled, then divided by the WRN rule.
    k = divide_widen_factor(widen * width_mult, split_factor)
    widths = (16 * k, 32 * k, 64 * k)
    return WideResNet(
        depth=depth,
        widths=widths,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
    )


def _cifar_resnet(
    depth: int,
    bottleneck: bool,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    per_stage = (depth - 2) // (9 if bottleneck else 6)
    base = divide_width(16, split_factor, width_mult, multiple=2)
    expansion = 4 if bottleneck else 1
    stages = [
        (per_stage, base * m, base * m * expansion, 1 if i == 0 else 2)
        for i, m in enumerate((1, 2, 4))
    ]
    return ResNet(
        stem_width=base,
        stages=stages,
        bottleneck=bottleneck,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
    )


def _cifar_resnext(
    cardinality: int,
    group_width: int,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    # ResNeXt-29: three stages of three bottlenecks, outputs 256/512/1024, stem 64.
    card = divide_cardinality(cardinality, split_factor)
    d = max(1, round(group_width * width_mult))
    outs = [divide_width(o, 1, width_mult, multiple=8) for o in (256, 512, 1024)]
    stages = [(3, card * d * 2**i, outs[i], 1 if i == 0 else 2) for i in range(3)]
    return ResNet(
        stem_width=64,
        stages=stages,
        bottleneck=True,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        groups=card,
        drop_rate=drop_rate,
    )


def _imagenet_resnet(
    layers: tuple[int, int, int, int],
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    base = divide_width(64, split_factor, width_mult, multiple=4)
    stages = [(n, base * 2**i, base * 4 * 2**i, 1 if i == 0 else 2) for i, n in enumerate(layers)]
    return ResNet(
        stem_width=base,
        stages=stages,
        bottleneck=True,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
        imagenet_stem=True,
    )


def _imagenet_resnext(
    layers: tuple[int, int, int, int],
    cardinality: int,
    group_width: int,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    card = divide_cardinality(cardinality, split_factor)
    d = max(1, round(group_width * width_mult))
    outs = [divide_width(256 * 2**i, 1, width_mult, multiple=8) for i in range(4)]
    stages = [(n, card * d * 2**i, outs[i], 1 if i == 0 else 2) for i, n in enumerate(layers)]
    return ResNet(
        stem_width=64,
        stages=stages,
        bottleneck=True,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        groups=card,
        drop_rate=drop_rate,
        imagenet_stem=True,
    )


def _convnet(
    base: int,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
) -> nn.Module:
    width = divide_width(base, split_factor, width_mult, multiple=4)
    return ConvNet(
        width=width,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
    )


for _depth, _widen in ((16, 4), (16, 8), (28, 10), (40, 10)):
    register(
        ModelSpec(
            name=f"wrn{_depth}_{_widen}",
            family="wide_resnet",
            builder=partial(_wrn, _depth, _widen),
            image_size=32,
            description=f"Wide ResNet-{_depth}-{_widen} (CIFAR)",
            paper_params_m={1: 36.5, 2: 35.8, 4: 36.7} if (_depth, _widen) == (28, 10) else None,
        )
    )

register(
    ModelSpec(
        name="resnet110",
        family="cifar_resnet",
        builder=partial(_cifar_resnet, 110, False),
        image_size=32,
        description="ResNet-110 (CIFAR, basic blocks)",
    )
)
register(
    ModelSpec(
        name="resnet164",
        family="cifar_resnet",
        builder=partial(_cifar_resnet, 164, True),
        image_size=32,
        description="ResNet-164 (CIFAR, bottleneck blocks)",
    )
)
register(
    ModelSpec(
        name="resnext29_8x64d",
        family="cifar_resnext",
        builder=partial(_cifar_resnext, 8, 64),
        image_size=32,
        description="ResNeXt-29 8x64d (CIFAR)",
    )
)
register(
    ModelSpec(
        name="resnet50",
        family="imagenet_resnet",
        builder=partial(_imagenet_resnet, (3, 4, 6, 3)),
        image_size=224,
        description="ResNet-50 (ImageNet)",
    )
)
register(
    ModelSpec(
        name="resnet101",
        family="imagenet_resnet",
        builder=partial(_imagenet_resnet, (3, 4, 23, 3)),
        image_size=224,
        description="ResNet-101 (ImageNet)",
    )
)
register(
    ModelSpec(
        name="resnext50_32x4d",
        family="imagenet_resnext",
        builder=partial(_imagenet_resnext, (3, 4, 6, 3), 32, 4),
        image_size=224,
        description="ResNeXt-50 32x4d (ImageNet)",
    )
)
register(
    ModelSpec(
        name="convnet_s",
        family="convnet",
        builder=partial(_convnet, 16),
        image_size=28,
        description="small residual convnet, base width 16 (fast CPU searches on 28x28 images)",
    )
)
register(
    ModelSpec(
        name="convnet_m",
        family="convnet",
        builder=partial(_convnet, 32),
        image_size=28,
        description="small residual convnet, base width 32 (fast CPU searches on 28x28 images)",
    )
)
