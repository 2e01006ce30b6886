"""Paired latency: the ratio to a reference timed in the same rounds, scaled by its settled time."""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from automl.measure.latency import Reference, _calibrate, measure, settle_reference, time_paired
from automl.models import create_model
from automl.models.ensemble import Ensemble


def _net(k: int, width: float) -> Ensemble:
    torch.manual_seed(0)
    return create_model("convnet_s", num_classes=10, in_chans=1, split_factor=k, width_mult=width)


def test_time_paired_ratio_of_a_callable_to_itself_is_one() -> None:
    x = torch.randn(4, 1, 8, 8)
    net = _net(1, 1.0).eval()

    def call() -> object:
        return net(x)

    # One thread and 10 ms blocks: the suite's other worker loads the cores, and two threads
    # that wait on each other turn its preemptions into whole-block outliers (see
    # bench/paired_under_load.py); the ratio's bookkeeping is what this test checks.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            ratios, seconds, calls = time_paired(
                {"same": call},
                call,
                torch.device("cpu"),
                warmup_s=0.02,
                run_s=0.3,
                min_rounds=9,
                block_s=0.01,
            )
    finally:
        torch.set_num_threads(threads)
    rounds = len(seconds["same"])
    assert rounds >= 9
    # Each round: a reference block on each side of the callable's, one ratio to each.
    assert len(seconds["reference"]) == 2 * rounds
    assert len(ratios["same"]) == 2 * rounds
    assert calls["same"] >= 1
    # The same work over itself: any deviation is noise, which the median leaves small.
    assert statistics.median(ratios["same"]) == pytest.approx(1.0, rel=0.5)


def test_calls_per_block_ignore_one_preempted_call() -> None:
    """A block's size comes from the median warm-up call, so one slow call (a preemption) does not
    shrink that callable's blocks: unequal blocks bias paired ratios on a loaded machine."""
    n = 0

    def call() -> object:
        nonlocal n
        n += 1
        # One call of the warm-up is 20x slower, as a preempted call would be.
        time.sleep(0.02 if n == 4 else 0.001)
        return None

    calls = _calibrate({"c": call}, torch.device("cpu"), warmup_s=0.0, block_s=0.01)
    # 10 ms over a call of 1 ms (more on a loaded machine, whose sleeps overshoot); sized from the
    # slow call alone, as before, a block would be a single call.
    assert 3 <= calls["c"] <= 10


def test_paired_record_is_ratio_times_the_settled_reference() -> None:
    x = torch.randn(1, 1, 8, 8)
    ref = settle_reference(_net(1, 1.0), x, warmup_s=0.01, run_s=0.05)
    assert ref.median_ms > 0
    rec = measure(_net(2, 1.0), x, mode="sequential", warmup_s=0.01, min_run_s=0.05, reference=ref)
    assert rec.ratio is not None and rec.ratio > 0
    assert rec.reference_ms == ref.median_ms
    assert rec.median_ms == pytest.approx(rec.ratio * ref.median_ms)
    assert rec.raw_median_ms is not None and rec.raw_median_ms > 0
    assert rec.iqr_ms >= 0


def test_the_settled_time_is_the_scale_whatever_the_machine_does_now() -> None:
    """A reference settled as twice as slow doubles every paired latency: the ratio is what the
    measurement contributes, the scale comes from the settled time alone."""
    x = torch.randn(1, 1, 8, 8)
    model = _net(1, 1.0)
    slow = Reference(model=model, median_ms=10.0)
    fast = Reference(model=model, median_ms=5.0)
    a = measure(_net(1, 0.5), x, mode="sequential", warmup_s=0.01, min_run_s=0.05, reference=slow)
    b = measure(_net(1, 0.5), x, mode="sequential", warmup_s=0.01, min_run_s=0.05, reference=fast)
    assert a.median_ms == pytest.approx(a.ratio * 10.0)  # type: ignore[operator]
    assert b.median_ms == pytest.approx(b.ratio * 5.0)  # type: ignore[operator]


def test_a_bigger_network_has_a_bigger_ratio() -> None:
    # Images large enough that the convolutions, not the per-layer overhead, take the time.
    x = torch.randn(16, 1, 32, 32)
    ref = settle_reference(_net(1, 1.0), x, warmup_s=0.02, run_s=0.1)
    small = measure(_net(1, 0.25), x, mode="sequential", min_run_s=0.2, reference=ref)
    big = measure(_net(1, 4.0), x, mode="sequential", min_run_s=0.2, reference=ref)
    assert big.ratio is not None and small.ratio is not None
    # 4x the width is ~16x the convolution work of 1/4: far beyond any noise of the machine.
    assert big.ratio > 2 * small.ratio


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present")
def test_paired_measurement_on_cuda() -> None:
    x = torch.randn(8, 1, 32, 32)
    ref = settle_reference(_net(1, 1.0), x, device="cuda", warmup_s=0.05, run_s=0.2)
    rec = measure(_net(2, 1.0), x, device="cuda", min_run_s=0.2, reference=ref)
    assert rec.ratio is not None and rec.ratio > 0
    assert rec.device.startswith("cuda")
    assert rec.median_ms == pytest.approx(rec.ratio * ref.median_ms)
