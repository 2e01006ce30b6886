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

Paired measurement: a shared machine has slow and fast phases lasting seconds, so any absolute
time drifts between trials. With a ``Reference`` (a fixed network, the study's baseline, whose
median on this host and device was settled once), each block of the candidate is timed next to a
block of the reference on each side, the latency kept is the median ratio times the settled
median, and the drift cancels in the ratio.
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
    "Reference",
    "measure",
    "settle_reference",
    "supported_modes",
    "time_callables",
    "time_paired",
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
    # Paired measurement only: the candidate's median time over the reference's in the same
    # rounds, the reference's settled median (``median_ms`` is their product), and this
    # measurement's own absolute median.
    ratio: float | None = None
    reference_ms: float | None = None
    raw_median_ms: float | None = None

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
    block_s: float | None = None,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per call of each timed block of each callable, and the calls per block.

    The callables are timed in interleaved rounds, so that a burst of load from elsewhere on a
    shared machine hits every candidate alike instead of deciding which one looks fastest.
    Blocks last ``block_s``, by default ``min_run_s`` over ``min_repeats`` (2 to 20 ms): a short
    budget gets shorter blocks instead of a floor of ``min_repeats`` 20 ms blocks.
    """
    calls = _calibrate(fns, device, warmup_s, block_s or _block_s(min_run_s, min_repeats, 0.02))
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


@dataclass(frozen=True)
class Reference:
    """The yardstick of paired measurements: a fixed network timed next to every candidate, and
    its median (ms per batch) settled once on this host and device by ``settle_reference``."""

    model: Ensemble
    median_ms: float


REFERENCE_NAME = "reference"
# The shortest timed block: far above the timer's resolution and a call's dispatch cost.
MIN_BLOCK_S = 0.002


def _block_s(run_s: float, blocks: int, longest: float) -> float:
    """Blocks of at most ``longest`` seconds such that ``blocks`` of them fit in ``run_s``: the
    minimum count of blocks then costs the run asked for, not more."""
    return min(longest, max(MIN_BLOCK_S, run_s / blocks))


def _calibrate(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup_s: float, block_s: float
) -> dict[str, int]:
    """Warm each callable up and size its timed block so that timer resolution does not matter.

    The time of one call is the median of the warm-up calls (the first, which pays for lazy set-up,
    left out): a single timed call that the scheduler happened to preempt would make that
    callable's blocks several times shorter than the others', and on a loaded machine a long block
    absorbs preemptions that a short one escapes, which biases every paired ratio
    (BENCHMARKS.md (c'')).
    """
    calls: dict[str, int] = {}
    for name, fn in fns.items():
        t_end = time.perf_counter() + warmup_s
        times: list[float] = []
        while len(times) < 6 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        one = max(statistics.median(times[1:]), 1e-6)
        calls[name] = max(1, min(1000, int(block_s / one)))
    return calls


def _time_block(fn: Callable[[], object], n: int, device: torch.device) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def time_paired(
    fns: dict[str, Callable[[], object]],
    reference: Callable[[], object],
    device: torch.device,
    *,
    warmup_s: float = 0.3,
    run_s: float = 1.0,
    min_rounds: int = 15,
    block_s: float | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Ratios of each callable's time per call to the reference's (two per round), each
    callable's seconds per call, and the calls per block.

    Every round alternates blocks of the reference with blocks of the callables (reference,
    first callable, reference, second callable, ..., reference); a callable's block gives one
    ratio to the reference block before it and one to the block after it, so that a change of
    machine speed moves the two apart equally and leaves their median where it was. Rounds go
    on until ``run_s`` has passed and at least ``min_rounds`` are done. Blocks last ``block_s``,
    by default at most 10 ms and short enough that ``min_rounds`` rounds fit in ``run_s``.
    """
    if block_s is None:
        block_s = _block_s(run_s, min_rounds * (1 + 2 * len(fns)), 0.01)
    calls = _calibrate({REFERENCE_NAME: reference, **fns}, device, warmup_s, block_s)
    ratios: dict[str, list[float]] = {name: [] for name in fns}
    seconds: dict[str, list[float]] = {name: [] for name in [REFERENCE_NAME, *fns]}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - start < run_s:
        before = _time_block(reference, calls[REFERENCE_NAME], device)
        seconds[REFERENCE_NAME].append(before)
        for name, fn in fns.items():
            t = _time_block(fn, calls[name], device)
            after = _time_block(reference, calls[REFERENCE_NAME], device)
            # One ratio to each neighbour, not one to their mean: on a loaded machine a block is
            # either preempted or not, and a mean of two reference blocks is hit twice as often as
            # the block between them, which pulls a median of ratios to the mean below 1 (0.3 for
            # a callable timed against itself). The two one-sided ratios are each symmetric, and
            # a drift of speed moves them apart equally, so their pooled median stays put.
            ratios[name] += [t / before, t / after]
            seconds[name].append(t)
            seconds[REFERENCE_NAME].append(after)
            before = after
        rounds += 1
    return ratios, seconds, calls


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
    reference: Reference | None = None,
) -> LatencyRecord:
    """Median latency (ms per batch) of ``model`` on ``sample_input`` (B, C, H, W).

    With ``mode="auto"`` every supported mode is measured and the fastest is reported; the record
    keeps each mode's median in ``modes``. With a ``reference`` the measurement is paired (see
    the module's docstring) and takes the same time as an unpaired one: ``min_run_s`` per mode
    and layout timed.
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
            if reference is None:
                samples, calls = time_callables(fns, dev, warmup_s=warmup_s, min_run_s=min_run_s)
                scale = 1e3
            else:
                ref_fn = _reference_callable(reference.model, sample_input, dev)
                samples, seconds, calls = time_paired(
                    fns, ref_fn, dev, warmup_s=warmup_s, run_s=min_run_s * len(fns)
                )
                scale = reference.median_ms
                raw = {n: statistics.median(v) * 1e3 for n, v in seconds.items()}
        for name, values in samples.items():
            q = statistics.quantiles(values, n=4)
            results[names[name]] = (
                statistics.median(values) * scale,
                (q[2] - q[0]) * scale,
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
    ratio = reference_ms = raw_median_ms = None
    if reference is not None:
        ratio = med / reference.median_ms
        reference_ms = reference.median_ms
        raw_median_ms = raw[best[0] if best[1] else f"{best[0]} (contiguous)"]
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
        ratio=ratio,
        reference_ms=reference_ms,
        raw_median_ms=raw_median_ms,
    )


def _reference_callable(
    model: Ensemble, sample_input: torch.Tensor, device: torch.device
) -> Callable[[], object]:
    """The reference as it is always timed: a private copy, its members one after another, in
    channels_last. It is a yardstick, so it only has to be timed the same way every time."""
    ref = copy.deepcopy(model).to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    x = sample_input.to(device).contiguous(memory_format=torch.channels_last)

    def call() -> object:
        return ref(x)

    return call


def settle_reference(
    model: Ensemble,
    sample_input: torch.Tensor,
    *,
    device: str | torch.device | None = None,
    threads: int | None = None,
    warmup_s: float = 0.3,
    run_s: float = 3.0,
    chunks: int = 5,
) -> Reference:
    """Time the reference alone, for longer than a trial's measurement, once per host, device,
    batch size and thread count: the scale every paired measurement there is multiplied by.

    The run is cut in ``chunks`` and the lowest chunk median is kept: a burst of load from
    elsewhere (another worker still starting, say) only ever slows a chunk down, and a scale
    settled in such a burst would inflate every latency of the study on this host.
    """
    dev = resolve_device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    medians = []
    try:
        fn = _reference_callable(model, sample_input, dev)
        with torch.inference_mode():
            for i in range(chunks):
                samples, _ = time_callables(
                    {REFERENCE_NAME: fn},
                    dev,
                    warmup_s=warmup_s if i == 0 else 0.0,
                    min_run_s=run_s / chunks,
                    min_repeats=5,
                    rounds=1,
                )
                medians.append(statistics.median(samples[REFERENCE_NAME]))
    finally:
        torch.set_num_threads(previous_threads)
    return Reference(model=model, median_ms=min(medians) * 1e3)
