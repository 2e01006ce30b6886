"""Shared pieces of the benchmarks: the models compared and a robust step timer."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from automl.models import DividedNet, create_model
from automl.training.losses import ensemble_loss

# A small residual CIFAR-like net: convnet_m at width x2 is 1.27M parameters undivided, and its
# K = 4 division is 4 members of half the width (the comparison the latency issue describes).
MODEL = "convnet_m"
WIDTH = 2.0
SHAPE = (3, 32, 32)


def cpu_model() -> str:
    """The CPU's model name and the kernels torch and oneDNN take on it (they differ per ISA)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        name = models[0] if models else name
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability()
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{name} ({isa}{f', ONEDNN_MAX_CPU_ISA={limit}' if limit else ''})"


def machine() -> str:
    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_model()}, {threads} torch threads, {gpu}, torch {torch.__version__}"


def model_for(k: int, name: str = MODEL, width: float = WIDTH, num_classes: int = 10) -> DividedNet:
    torch.manual_seed(0)
    return create_model(
        name, num_classes=num_classes, in_chans=SHAPE[0], split_factor=k, width_mult=width
    )


def params_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def train_step_fn(
    model: torch.nn.Module,
    k: int,
    batch: int,
    device: torch.device,
    *,
    shape: tuple[int, int, int] = SHAPE,
    channels_last: bool = True,
) -> Callable[[], None]:
    """One co-training step (forward, CE + JS, backward, SGD) on K fresh views."""
    if channels_last:
        model.to(memory_format=torch.channels_last)  # as fit() and measure() run it
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    views = torch.randn(k, batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    model.train()

    def step() -> None:
        logits = model(views)
        loss = ensemble_loss(logits, y, cot_weight=0.5 if k > 1 else 0.0).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def median_time(
    fn: Callable[[], None], device: torch.device, *, warmup: int = 3, repeats: int = 15
) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
