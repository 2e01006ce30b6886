from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from automl.errors import ConfigError
from automl.measure.latency import ExecutionMode, measure, supported_modes
from automl.models import create_model, fuse
from automl.models.ensemble import DividedNet

CPU = torch.device("cpu")
FAST: dict[str, Any] = {"warmup_s": 0.05, "min_run_s": 0.1}


def _model(k: int) -> DividedNet:
    return create_model("convnet_s", num_classes=10, in_chans=1, split_factor=k)


def test_record_fields_and_protocol() -> None:
    r = measure(
        _model(2), torch.randn(4, 1, 28, 28), mode="sequential", device="cpu", threads=1, **FAST
    )
    assert r.median_ms > 0 and r.iqr_ms >= 0
    assert (r.mode, r.batch_size, r.threads) == ("sequential", 4, 1)
    assert r.device.startswith("cpu") and r.repeats >= 15 and r.calls_per_repeat >= 1
    assert set(r.modes) == {"sequential"}


def test_thread_count_is_restored() -> None:
    before = torch.get_num_threads()
    measure(_model(1), torch.randn(1, 1, 28, 28), mode="fused", threads=1, **FAST)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("mode", ["sequential", "fused", "threads"])
def test_each_cpu_mode(mode: str) -> None:
    if mode == "threads" and (os.cpu_count() or 1) < 2:
        pytest.skip("the threads mode needs at least 2 CPUs")
    previous = torch.get_num_threads()
    # The threads mode is offered with 2 or more torch threads (the suite may run with 1).
    torch.set_num_threads(max(2, previous) if mode == "threads" else previous)
    try:
        model = _model(2)
        r = measure(model, torch.randn(2, 1, 28, 28), mode=mode, **FAST)
    finally:
        torch.set_num_threads(previous)
    assert r.mode == mode and r.median_ms > 0
    assert model.training  # measuring leaves the model as it was


@pytest.mark.parametrize("mode", ["threads", "streams", "devices"])
def test_a_fixed_side_by_side_mode_times_the_undivided_baseline_alone(mode: str) -> None:
    # K = 1 has nothing to run side by side: a space fixing such a mode still times trial 0.
    r = measure(_model(1), torch.randn(1, 1, 28, 28), mode=mode, device="cpu", **FAST)
    assert r.mode == "sequential" and set(r.modes) == {"sequential"} and r.median_ms > 0
    with pytest.raises(ConfigError, match="not available"):
        measure(_model(2), torch.randn(1, 1, 28, 28), mode="streams", device="cpu", **FAST)


def test_auto_keeps_the_fastest_mode() -> None:
    r = measure(_model(2), torch.randn(1, 1, 28, 28), mode="auto", **FAST)
    assert set(r.modes) == {m.value for m in supported_modes(CPU, 2)}
    assert r.median_ms == min(r.modes.values()) and r.modes[r.mode] == r.median_ms


def test_fused_input_measures_too() -> None:
    r = measure(fuse(_model(2)), torch.randn(1, 1, 28, 28), mode="sequential", **FAST)
    assert r.mode == "sequential"


def test_modes_unavailable_here_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="latency mode 'streams' is not available on cpu"):
        measure(_model(2), torch.randn(1, 1, 28, 28), mode="streams", **FAST)
    with pytest.raises(ConfigError, match="latency mode must be one of"):
        measure(_model(2), torch.randn(1, 1, 28, 28), mode="warp", **FAST)
    assert ExecutionMode.STREAMS not in supported_modes(CPU, 4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present")
@pytest.mark.parametrize("mode", ["sequential", "fused", "streams"])
def test_cuda_modes(mode: str) -> None:
    r = measure(_model(2), torch.randn(8, 1, 28, 28), mode=mode, device="cuda", **FAST)
    assert r.mode == mode and r.device.startswith("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="the devices mode needs 2 or more GPUs")
def test_devices_mode() -> None:
    r = measure(_model(2), torch.randn(8, 1, 28, 28), mode="devices", device="cuda", **FAST)
    assert r.mode == "devices"
