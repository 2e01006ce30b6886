"""A torch.profiler trace of a few training steps, in TensorBoard's format (``--profile``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

__all__ = ["profiler", "profiling"]


def profiler(trace_dir: Path, device: torch.device) -> torch.profiler.profile:
    """A torch.profiler trace of a few training steps, in TensorBoard's format."""
    # Kineto writes to the C-level stderr, through any progress bar: on the CPU its lines are
    # noise (profiler_start/stop, and "gpuGetDeviceCount failed", which only says there is no
    # GPU), so all are off; on a GPU its errors are kept (a CUPTI failure means no GPU events).
    # Kineto reads this when the first profiler starts; a value the user set wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6" if device.type == "cpu" else "4")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=1, warmup=1, active=3, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(str(trace_dir)),
        record_shapes=True,
    )


@contextlib.contextmanager
def profiling(
    enabled: bool, device: torch.device, keep: Callable[[Path], None]
) -> Iterator[Callable[[int], None] | None]:
    """With ``enabled``, a step hook that drives a profiler; once the profiler has stopped and
    written its trace, each trace file is handed to ``keep``. Otherwise no hook."""
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        with profiler(Path(tmp), device) as prof:
            yield lambda step: prof.step()
        for f in sorted(Path(tmp).rglob("*.json")):
            keep(f)
