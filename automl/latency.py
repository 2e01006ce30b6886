"""Inference latency that can be trusted: one protocol for every trial.

Protocol: a fixed thread count, warm-up by time, synchronisation after every timed block on CUDA,
blocks of several calls sized so that timer resolution does not matter, enough blocks for a stable
median, and the spread as the inter-quartile range. Inputs are made once; nothing but the forward
pass is timed (the original code timed data loading with no warm-up).

Execution modes of a K-member ensemble:
- ``sequential``: the members one after another.
- ``fused``: the members merged into one network with grouped convolutions.
- ``threads``: CPU only, the members in parallel Python threads, the cores split among them.
- ``streams``: CUDA only, one stream per member.
- ``devices``: members spread over several GPUs (input copied once to each, outputs gathered).
- ``auto``: every mode the device supports is measured and the fastest is kept.
"""

from __future__ import annotations

import copy
import math
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from automl.device import describe_device, resolve_device
from automl.errors import ConfigError
from automl.models.ensemble import DividedNet, Ensemble, FusedNet
from automl.models.fusion import fuse, unfuse

__all__ = [
    "ExecutionMode",
    "LatencyRecord",
    "measure",
    "supported_modes",
    "time_callables",
]


class ExecutionMode(StrEnum):
    AUTO = "auto"
    SEQUENTIAL = "sequential"
    FUSED = "fused"
    THREADS = "threads"
    STREAMS = "streams"
    DEVICES = "devices"


@dataclass(frozen=True)
class LatencyRecord:
    median_ms: float
    iqr_ms: float
    mode: str
    device: str
    batch_size: int
    threads: int
    repeats: int
    calls_per_repeat: int
    modes: dict[str, float] = field(default_factory=dict)
    channels_last: bool = True

    @property
    def cv(self) -> float:
        """A robust coefficient of variation: IQR / 1.349 / median."""
        return self.iqr_ms / 1.349 / self.median_ms if self.median_ms > 0 else float("nan")


def supported_modes(device: torch.device, split_factor: int) -> list[ExecutionMode]:
    modes = [ExecutionMode.SEQUENTIAL, ExecutionMode.FUSED]
    if split_factor > 1:
        if device.type == "cpu" and torch.get_num_threads() >= 2:
            modes.append(ExecutionMode.THREADS)
        if device.type == "cuda":
            modes.append(ExecutionMode.STREAMS)
            if torch.cuda.device_count() >= 2:
                modes.append(ExecutionMode.DEVICES)
    return modes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callables(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup_s: float = 0.3,
    min_run_s: float = 1.0,
    min_repeats: int = 15,
    rounds: int = 5,
    block_s: float = 0.02,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per call of each timed block of each callable, and the calls per block.

    The callables are timed in interleaved rounds, so that a burst of load from elsewhere on a
    shared machine hits every candidate alike instead of deciding which one looks fastest.
    """
    calls: dict[str, int] = {}
    for name, fn in fns.items():
        t_end = time.perf_counter() + warmup_s
        n_warm = 0
        while n_warm < 3 or time.perf_counter() < t_end:
            fn()
            n_warm += 1
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        one = max(time.perf_counter() - t0, 1e-6)
        calls[name] = max(1, min(1000, int(block_s / one)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    per_round_s = min_run_s / rounds
    per_round_n = -(-min_repeats // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            n = 0
            while n < per_round_n or time.perf_counter() - start < per_round_s:
                t0 = time.perf_counter()
                for _ in range(calls[name]):
                    fn()
                _sync(device)
                samples[name].append((time.perf_counter() - t0) / calls[name])
                n += 1
    return samples, calls


class _ThreadedMembers:
    """Runs the members of a divided net concurrently, each thread with its share of the cores."""

    def __init__(self, model: DividedNet, threads: int) -> None:
        self.model = model
        k = model.split_factor
        per = max(1, threads // k)
        self._local = threading.local()

        def init() -> None:
            torch.set_num_threads(per)

        self.pool = ThreadPoolExecutor(max_workers=k, initializer=init)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        def run(m: torch.nn.Module) -> torch.Tensor:
            with torch.inference_mode():
                return m(x)[0]

        futures = [self.pool.submit(run, m) for m in self.model.members]
        return torch.stack([f.result() for f in futures], 0)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class _StreamMembers:
    def __init__(self, model: DividedNet, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.streams = [torch.cuda.Stream(device) for _ in model.members]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        current = torch.cuda.current_stream(self.device)
        outs = []
        for member, stream in zip(self.model.members, self.streams, strict=True):
            stream.wait_stream(current)
            with torch.cuda.stream(stream):
                outs.append(member(x)[0])
        for stream in self.streams:
            current.wait_stream(stream)
        return torch.stack(outs, 0)


def _prepare(
    model: Ensemble,
    mode: ExecutionMode,
    device: torch.device,
    threads: int,
    memory_format: torch.memory_format = torch.channels_last,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[], None]]:
    """A forward function for ``mode`` and a clean-up function."""
    divided = model if isinstance(model, DividedNet) else unfuse(model)  # type: ignore[arg-type]
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    if mode is ExecutionMode.FUSED:
        fused = model if isinstance(model, FusedNet) else fuse(divided.to(device))
        fused.to(device, memory_format=memory_format).eval()  # type: ignore[call-overload]
        return fused, nothing
    divided.to(device).eval()
    if mode is ExecutionMode.SEQUENTIAL:
        return divided, nothing
    if mode is ExecutionMode.THREADS:
        runner = _ThreadedMembers(divided, threads)
        return runner, runner.close
    if mode is ExecutionMode.STREAMS:
        return _StreamMembers(divided, device), nothing
    if mode is ExecutionMode.DEVICES:
        # A copy: the other modes, timed in the same rounds, keep the members on ``device``.
        n = torch.cuda.device_count()
        placed = copy.deepcopy(divided).place([torch.device("cuda", i) for i in range(n)])
        return placed, nothing
    raise ConfigError(f"unsupported execution mode {mode}")


def measure(
    model: Ensemble,
    sample_input: torch.Tensor,
    *,
    mode: ExecutionMode | str = ExecutionMode.AUTO,
    device: str | torch.device | None = None,
    threads: int | None = None,
    warmup_s: float = 0.3,
    min_run_s: float = 1.0,
) -> LatencyRecord:
    """Median latency (ms per batch) of ``model`` on ``sample_input`` (B, C, H, W).

    With ``mode="auto"`` every supported mode is measured and the fastest is reported; the record
    keeps each mode's median in ``modes``.
    """
    try:
        wanted = ExecutionMode(mode)
    except ValueError as e:
        choices = ", ".join(m.value for m in ExecutionMode)
        raise ConfigError(f"latency mode must be one of {choices}, got {mode!r}") from e
    dev = resolve_device(device)
    if sample_input.dim() != 4:
        raise ConfigError(f"sample_input must be (B, C, H, W), got {tuple(sample_input.shape)}")
    available = supported_modes(dev, model.split_factor)
    if wanted is ExecutionMode.AUTO:
        candidates = available
    elif wanted in available:
        candidates = [wanted]
    elif model.split_factor == 1:
        # One member: threads, streams and devices have nothing to run side by side, and every
        # mode is the member alone. A space that fixes such a mode still times its baseline.
        candidates = [ExecutionMode.SEQUENTIAL]
    else:
        raise ConfigError(
            f"latency mode {wanted.value!r} is not available on {dev} with K={model.split_factor}; "
            f"available: {', '.join(m.value for m in available)}"
        )
    previous_threads = torch.get_num_threads()
    n_threads = threads or previous_threads
    torch.set_num_threads(n_threads)
    # cuDNN is fastest in channels_last; oneDNN's CPU kernels are faster in either layout
    # depending on the CPU and the shapes (BENCHMARKS.md (a')), so the CPU times both.
    layouts = [True] if dev.type == "cuda" else [True, False]
    was_training = model.training
    results: dict[tuple[str, bool], tuple[float, float, int, int]] = {}
    cleanups: list[Callable[[], None]] = []
    try:
        fns: dict[str, Callable[[], object]] = {}
        names: dict[str, tuple[str, bool]] = {}
        for cl in layouts:
            fmt = torch.channels_last if cl else torch.contiguous_format
            # The modes run on a private copy, so the caller's model is left as it was.
            x = sample_input.to(dev).contiguous(memory_format=fmt)
            copied = copy.deepcopy(model).to(dev, memory_format=fmt)  # type: ignore[call-overload]
            for m in candidates:
                fn, cleanup = _prepare(copied, m, dev, n_threads, fmt)
                cleanups.append(cleanup)

                def call(
                    fn: Callable[[torch.Tensor], torch.Tensor] = fn, x: torch.Tensor = x
                ) -> object:
                    return fn(x)

                name = m.value if cl else f"{m.value} (contiguous)"
                fns[name] = call
                names[name] = (m.value, cl)
        with torch.inference_mode():
            samples, calls = time_callables(fns, dev, warmup_s=warmup_s, min_run_s=min_run_s)
        for name, values in samples.items():
            q = statistics.quantiles(values, n=4)
            results[names[name]] = (
                statistics.median(values) * 1e3,
                (q[2] - q[0]) * 1e3,
                len(values),
                calls[name],
            )
    finally:
        for cleanup in cleanups:
            cleanup()
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    best = min(results, key=lambda k: results[k][0])
    med, iqr, reps, per_block = results[best]
    # Each mode is reported in its faster layout.
    modes: dict[str, float] = {}
    for (name, _), r in results.items():
        modes[name] = min(r[0], modes.get(name, math.inf))
    return LatencyRecord(
        median_ms=med,
        iqr_ms=iqr,
        mode=best[0],
        device=describe_device(dev),
        batch_size=int(sample_input.shape[0]),
        threads=n_threads,
        repeats=reps,
        calls_per_repeat=per_block,
        modes=modes,
        channels_last=best[1],
    )
