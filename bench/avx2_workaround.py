"""(a') What the AVX2 workaround costs: training steps of the demo's affected shapes.

oneDNN's AVX2 weight gradient of a strided 1x1 convolution in channels_last with fewer than 8 input
channels corrupts the heap, so ``MConv2d`` runs such a layer on the CPU as a stride-1 convolution of
the subsampled input. Compared side by side, in interleaved rounds:
- the shipped form (channels_last, subsampled 1x1 shortcuts) against the other safe choice,
  training in the default contiguous format, for ``convnet_s`` members of width 4 (K = 2 at width
  0.5, K = 4 at width 0.7: the configurations that crashed) and of width 8 (unaffected);
- for a layer that native oneDNN handles (8 input channels), the subsampled form against the
  native strided kernel, which isolates the cost of the subsampling itself.
    python bench/avx2_workaround.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from _common import machine, median_time, train_step_fn

from automl.models import create_model
from automl.models._layers import MConv2d

SHAPE = (1, 28, 28)  # Fashion-MNIST, as in the demo
BATCH = 64


def convnet_step(k: int, width: float, channels_last: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model("convnet_s", num_classes=10, in_chans=1, split_factor=k, width_mult=width)
    return train_step_fn(
        model, k, BATCH, torch.device("cpu"), shape=SHAPE, channels_last=channels_last
    )


def conv_step(subsample: bool) -> Callable[[], None]:
    conv = MConv2d(8, 16, 1, stride=2).to(memory_format=torch.channels_last)
    conv.subsample_first = subsample
    x = torch.randn(BATCH, 8, 28, 28).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        conv.zero_grad(set_to_none=True)
        conv(x).square().sum().backward()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"# AVX2 workaround, batch {BATCH}, {machine()}")
    configs: dict[str, Callable[[], None]] = {}
    for k, w in ((2, 0.5), (4, 0.7), (1, 0.5)):
        for cl in (True, False):
            configs[f"convnet_s K={k} w={w} {'channels_last' if cl else 'contiguous'}"] = (
                convnet_step(k, w, cl)
            )
    configs["1x1 stride-2 conv, 8 ch, native"] = conv_step(False)
    configs["1x1 stride-2 conv, 8 ch, subsampled"] = conv_step(True)
    times: dict[str, list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for name, fn in configs.items():
            times[name].append(median_time(fn, torch.device("cpu"), warmup=2, repeats=7))
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    for name, ms in med.items():
        print(f"{name:<46} {ms:8.3f} ms")
    for k, w in ((2, 0.5), (4, 0.7), (1, 0.5)):
        cl = med[f"convnet_s K={k} w={w} channels_last"]
        ct = med[f"convnet_s K={k} w={w} contiguous"]
        print(f"K={k} w={w}: contiguous / shipped channels_last = {ct / cl:.2f}")
    sub = med["1x1 stride-2 conv, 8 ch, subsampled"] / med["1x1 stride-2 conv, 8 ch, native"]
    print(f"subsampled / native strided 1x1 (8 channels): {sub:.2f}")


if __name__ == "__main__":
    main()
