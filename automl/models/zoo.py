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
from automl.models.resnet import ResNet, Stem
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
    se_reduction: int = 0,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    zero_init_last_bn: bool = True,
    avg_down: bool = True,
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
        avg_down=avg_down,
        zero_init_last_bn=zero_init_last_bn,
        se_reduction=se_reduction,
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
    zero_init_last_bn: bool = True,
    avg_down: bool = True,
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
        avg_down=avg_down,
        zero_init_last_bn=zero_init_last_bn,
    )


def _imagenet_resnet(
    layers: tuple[int, int, int, int],
    widen: int = 1,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    zero_init_last_bn: bool = True,
    avg_down: bool = True,
    deep_stem: bool = True,
) -> nn.Module:
    # ResNet-50/101 and the wide WRN-50-k: base width 64 -> 44/32/24 for K = 2/4/8; the 3x3
    # convolutions of the bottlenecks are ``widen`` times wider, the outputs stay 4 x base.
    base = divide_width(64, split_factor, width_mult, multiple=4)
    stages = [
        (n, base * widen * 2**i, base * 4 * 2**i, 1 if i == 0 else 2) for i, n in enumerate(layers)
    ]
    return ResNet(
        stem_width=base,
        stages=stages,
        bottleneck=True,
        num_classes=num_classes,
        in_chans=in_chans,
        members=members,
        drop_rate=drop_rate,
        stem=Stem.DEEP if deep_stem else Stem.IMAGENET,
        avg_down=avg_down,
        zero_init_last_bn=zero_init_last_bn,
    )


def _imagenet_resnext(
    layers: tuple[int, int, int, int],
    cardinality: int,
    group_width: int,
    se_reduction: int = 0,
    *,
    members: int,
    split_factor: int,
    width_mult: float,
    num_classes: int,
    in_chans: int,
    drop_rate: float,
    zero_init_last_bn: bool = True,
    avg_down: bool = True,
    deep_stem: bool = True,
) -> nn.Module:
    # The paper's ResNeXt rule: cardinality / K, width per group and block outputs kept.
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
        stem=Stem.DEEP if deep_stem else Stem.IMAGENET,
        avg_down=avg_down,
        zero_init_last_bn=zero_init_last_bn,
        se_reduction=se_reduction,
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

_RESNET_OPTS = ("zero_init_last_bn", "avg_down")
_IMAGENET_OPTS = (*_RESNET_OPTS, "deep_stem")

for _name, _builder, _desc, _size in (
    (
        "resnet110",
        partial(_cifar_resnet, 110, True),
        "ResNet-110 (CIFAR) as the paper's authors build it: bottleneck blocks, 12 per stage "
        "(1.17M parameters at K=1); He's basic-block ResNet-110 is resnet110_basic",
        {1: (1.17, 0.17), 2: (1.33, 0.20), 4: (1.21, 0.18)},
    ),
    (
        "resnet110_basic",
        partial(_cifar_resnet, 110, False),
        "ResNet-110 of He et al. (CIFAR): basic blocks, 18 per stage, 1.7M parameters; "
        "not the paper's ResNet-110 (that is resnet110)",
        None,
    ),
    (
        "resnet164",
        partial(_cifar_resnet, 164, True),
        "ResNet-164 (CIFAR, bottleneck blocks, 18 per stage)",
        {1: (1.73, 0.25), 2: (1.96, 0.29), 4: (1.78, 0.26)},
    ),
    (
        "se_resnet110",
        partial(_cifar_resnet, 110, True, 16),
        "SE-ResNet-110 (CIFAR): the paper's bottleneck ResNet-110 with squeeze-excitation "
        "(reduction 16) on every block",
        None,
    ),
    (
        "se_resnet164",
        partial(_cifar_resnet, 164, True, 16),
        "SE-ResNet-164 (CIFAR): ResNet-164 with squeeze-excitation (reduction 16)",
        None,
    ),
):
    register(
        ModelSpec(
            name=_name,
            family="cifar_se_resnet" if _name.startswith("se_") else "cifar_resnet",
            builder=_builder,
            image_size=32,
            description=_desc,
            paper_size=_size,
            options=_RESNET_OPTS,
            split_factors=(1, 2, 4, 8) if _name != "resnet110_basic" else (1, 2, 4),
        )
    )

register(
    ModelSpec(
        name="resnext29_8x64d",
        family="cifar_resnext",
        builder=partial(_cifar_resnext, 8, 64),
        image_size=32,
        description="ResNeXt-29 8x64d (CIFAR); division keeps the block outputs, so the total "
        "grows slightly with K, as in the paper's table",
        paper_size={1: (34.5, 5.41), 2: (35.4, 5.50), 4: (36.9, 5.67)},
        options=_RESNET_OPTS,
    )
)

_DEEP = "deep stem (three 3x3 convolutions w-w-2w, w = 64 undivided), avg-pool shortcuts"
for _name, _builder, _desc, _size, _ks in (
    (
        "resnet50",
        partial(_imagenet_resnet, (3, 4, 6, 3)),
        f"ResNet-50 (ImageNet), the authors' form: {_DEEP}; deep_stem=False gives He's 7x7 stem",
        {1: (25.7, 5.5)},
        (1, 2, 4),
    ),
    (
        "resnet101",
        partial(_imagenet_resnet, (3, 4, 23, 3)),
        f"ResNet-101 (ImageNet), the authors' form: {_DEEP}",
        {1: (44.8, 9.2)},
        (1, 2, 4),
    ),
    (
        "wrn50_2",
        partial(_imagenet_resnet, (3, 4, 6, 3), 2),
        f"Wide ResNet-50-2 (ImageNet): bottleneck 3x3 convolutions twice as wide; {_DEEP}",
        None,
        (1, 2, 4),
    ),
    (
        "wrn50_3",
        partial(_imagenet_resnet, (3, 4, 6, 3), 3),
        f"Wide ResNet-50-3 (ImageNet): bottleneck 3x3 convolutions three times as wide; {_DEEP}",
        None,
        (1, 2, 4),
    ),
):
    register(
        ModelSpec(
            name=_name,
            family="imagenet_wide_resnet" if _name.startswith("wrn") else "imagenet_resnet",
            builder=_builder,
            image_size=224,
            description=_desc,
            paper_size=_size,
            options=_IMAGENET_OPTS,
            split_factors=_ks,
        )
    )

_GROWTH = (
    "the paper's ResNeXt rule divides the cardinality by K and keeps the width per group and "
    "the block outputs, so the total grows with K (not kept within 10%)"
)
for _name, _builder, _desc, _ks in (
    (
        "resnext50_32x4d",
        partial(_imagenet_resnext, (3, 4, 6, 3), 32, 4),
        f"ResNeXt-50 32x4d (ImageNet, deep stem); {_GROWTH}: +20% at K=2, +58% at K=4",
        (1, 2, 4),
    ),
    (
        "resnext101_64x4d",
        partial(_imagenet_resnext, (3, 4, 23, 3), 64, 4),
        f"ResNeXt-101 64x4d (ImageNet, deep stem); {_GROWTH}",
        (1, 2, 4),
    ),
    (
        "se_resnext101_64x4d",
        partial(_imagenet_resnext, (3, 4, 23, 3), 64, 4, 16),
        f"SE-ResNeXt-101 64x4d (ImageNet, deep stem, SE reduction 16); {_GROWTH}",
        (1, 2, 4),
    ),
):
    register(
        ModelSpec(
            name=_name,
            family="imagenet_se_resnext" if _name.startswith("se_") else "imagenet_resnext",
            builder=_builder,
            image_size=224,
            description=_desc,
            options=_IMAGENET_OPTS,
            split_factors=_ks,
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
