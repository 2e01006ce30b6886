"""Latency of a bundle in the runtime it targets, with the project's protocol.

The program is timed by ``automl.measure.latency.time_callables`` (warm-up by time, blocks sized for
timer resolution, interleaved rounds, median and IQR) next to the PyTorch eager model it came from,
so that the ratio program / eager is measured side by side on the same machine.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automl.device import describe_device, resolve_device
from automl.export.forms import ProbabilityHead
from automl.export.preprocess import Preprocessing
from automl.export.programs import Format, load_program, onnx_providers
from automl.measure.latency import time_callables

__all__ = ["LatencySettings", "bundle_latency", "time_runtimes"]


@dataclass(frozen=True)
class LatencySettings:
    """How the bundle's latency is measured in its runtime (``automl.measure.latency`` protocol)."""

    batch_size: int = 1
    warmup_s: float = 0.3
    min_run_s: float = 1.0
    threads: int | None = None
    enabled: bool = True
    # "cpu", or "cuda[:i]" where a GPU exists (ONNX Runtime's CUDA provider when it is installed).
    device: str = "cpu"


def time_runtimes(
    runners: dict[str, Any], x: torch.Tensor, device: torch.device, settings: LatencySettings
) -> dict[str, dict[str, float]]:
    """Median and IQR (ms per batch) of every runner on ``x``, timed in interleaved rounds."""
    previous = torch.get_num_threads()
    threads = settings.threads or previous
    torch.set_num_threads(threads)
    try:
        fns: dict[str, Callable[[], object]] = {
            name: functools.partial(fn, x) for name, fn in runners.items()
        }
        with torch.inference_mode():
            samples, calls = time_callables(
                fns, device, warmup_s=settings.warmup_s, min_run_s=settings.min_run_s
            )
    finally:
        torch.set_num_threads(previous)
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        q = statistics.quantiles(values, n=4)
        out[name] = {
            "median_ms": statistics.median(values) * 1e3,
            "iqr_ms": (q[2] - q[0]) * 1e3,
            "repeats": len(values),
            "calls_per_repeat": calls[name],
        }
    return out


def runtime_name(fmt: Format, device: str = "cpu") -> str:
    if fmt is Format.ONNX:
        return "onnxruntime:" + onnx_providers(device)[0]
    return {Format.TORCHSCRIPT: "torchscript", Format.EXPORTED_PROGRAM: "torch.export"}[fmt]


def bundle_latency(
    head: ProbabilityHead,
    fmt: Format,
    program: Path,
    pre: Preprocessing,
    settings: LatencySettings,
    device: str = "cpu",
) -> dict[str, Any]:
    """The program's latency in its runtime and the eager model's, measured side by side."""
    dev = resolve_device(device)  # a clear error for cuda without a GPU
    device = str(dev)
    threads = settings.threads or torch.get_num_threads()
    x = torch.randn(settings.batch_size, pre.in_chans, pre.image_size, pre.image_size)
    eager = head.to(dev).eval()
    runners = {
        "eager": lambda t: eager(t.to(dev)),
        "program": load_program(fmt, program, device, threads),
    }
    times = time_runtimes(runners, x, dev, settings)
    return {
        "protocol": "automl.measure.latency.time_callables",
        "runtime": runtime_name(fmt, device),
        "device": describe_device(dev),
        "batch_size": settings.batch_size,
        "threads": threads,
        "min_run_s": settings.min_run_s,
        "program_ms": times["program"]["median_ms"],
        "program_iqr_ms": times["program"]["iqr_ms"],
        "eager_ms": times["eager"]["median_ms"],
        "eager_iqr_ms": times["eager"]["iqr_ms"],
        "program_over_eager": times["program"]["median_ms"] / times["eager"]["median_ms"],
    }
