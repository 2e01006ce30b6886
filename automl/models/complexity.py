"""Parameters, multiply-accumulates (MACs) and FLOPs, counted by PyTorch's own flop counter.

Naming, once and for all: a multiply-accumulate (MAC) is one multiplication plus one addition,
i.e. 2 FLOPs. The paper's "GFLOPs" are GMACs. ``count_macs`` returns MACs, ``count_flops`` returns
FLOPs (= 2 x MACs); reports should say which one they show.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_flops_and_macs", "count_macs", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image of ``input_shape`` (C, H, W), in eval mode.

    Counted by ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs); the paper's GFLOPs are
    multiply-adds, i.e. half of this number: use ``count_macs`` for those.

    Works for models on the ``meta`` device too (no memory, no compute), which is how the paper's
    big ImageNet networks are sized in the tests.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros((1, *input_shape), device=device)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(
    model: nn.Module, input_shape: tuple[int, ...], *, include_norm: bool = False
) -> int:
    """Multiply-accumulates of one forward pass on one image: the unit of the paper's "GFLOPs".

    PyTorch's counter counts convolutions and matrix products only. The paper's counter (the
    ``thop`` convention) also charges 2 operations per BatchNorm output element; with
    ``include_norm=True`` they are added, which is what reproduces the paper's tables at K > 1
    (a divided net has more, narrower BatchNorm outputs: e.g. ResNet-164 0.279 vs the paper's
    0.29 GMACs at K=2 without them, 0.288 with them).
    """
    flops, norm_ops = _count(model, input_shape, include_norm)
    return flops // 2 + norm_ops


def count_flops_and_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(count_flops(...), count_macs(..., include_norm=True))`` from one counted forward pass:
    the counter is slow on deep networks (seconds for ResNet-110 on a CPU), so a trial counts once.
    """
    flops, norm_ops = _count(model, input_shape, True)
    return flops, flops // 2 + norm_ops


def _count(model: nn.Module, input_shape: tuple[int, ...], include_norm: bool) -> tuple[int, int]:
    """(FLOPs, BatchNorm output ops) of one forward pass; the latter 0 unless ``include_norm``."""
    norm_ops = 0

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        nonlocal norm_ops
        norm_ops += 2 * out.numel()

    handles = []
    if include_norm:
        handles = [
            m.register_forward_hook(hook)
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
    try:
        flops = count_flops(model, input_shape)
    finally:
        for h in handles:
            h.remove()
    return flops, norm_ops
