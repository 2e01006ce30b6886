"""Workers that share a host: the cores split by live slots, measurements apart, training paused
for a CPU measurement."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch

from automl.errors import ConfigError
from automl.measure.host_share import HostShare, parse_cpu_share, wait_for_quiet_cpu
from automl.search.timing import LatencyTimer, ModelInput
from automl.space import load_space
from tests.helpers import REPO

WAIT_S = 30.0


@pytest.fixture
def shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HostShare, HostShare]]:
    # Uncapped: the share alone decides the threads (the test suite caps its subprocesses).
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0)
    a = HostShare(root=tmp_path).join()
    b = HostShare(root=tmp_path).join()
    yield a, b
    b.leave()
    a.leave()
    os.sched_setaffinity(0, affinity)
    torch.set_num_threads(threads)


def test_each_worker_takes_its_own_slot_and_sees_the_others(
    shares: tuple[HostShare, HostShare],
) -> None:
    a, b = shares
    assert (a.slot, b.slot) == (0, 1)
    assert a.live_slots() == b.live_slots() == [0, 1]


def test_a_slot_frees_itself_when_its_worker_is_gone(tmp_path: Path) -> None:
    a = HostShare(root=tmp_path).join()
    # Another process holds slot 1 and dies without leaving: its lock dies with it.
    code = (
        "import sys; from pathlib import Path; from automl.measure.host_share import HostShare; "
        f"s = HostShare(root=Path({str(tmp_path)!r})).join(); print(s.slot, s.live_slots())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split(maxsplit=1) == ["1", "[0, 1]\n"]
    assert a.live_slots() == [0]
    a.leave()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 or more cores to split")
def test_the_cores_are_split_between_live_workers(shares: tuple[HostShare, HostShare]) -> None:
    a, b = shares
    cores_a, cores_b = a.my_cores(), b.my_cores()
    assert cores_a and cores_b
    assert not set(cores_a) & set(cores_b)
    assert sorted(cores_a + cores_b) == a.cores
    applied = a.apply()
    assert applied == cores_a
    assert sorted(os.sched_getaffinity(0)) == cores_a
    assert torch.get_num_threads() == len(cores_a)
    b.leave()
    # Alone again: the next trial takes every core.
    assert a.my_cores() == a.cores


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 or more cores to split")
def test_an_explicit_thread_count_caps_the_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads, affinity = torch.get_num_threads(), os.sched_getaffinity(0)
    alone = HostShare(root=tmp_path).join()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert alone.apply() == alone.cores  # every core is this worker's to run on...
        assert torch.get_num_threads() == 1  # ...with the one thread it was given
        with alone.measuring(cpu=True) as granted:
            assert granted == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        alone.apply()
        assert torch.get_num_threads() == len(alone.cores)
    finally:
        alone.leave()
        os.sched_setaffinity(0, affinity)
        torch.set_num_threads(threads)


def test_a_fixed_share_and_off(tmp_path: Path) -> None:
    fixed = HostShare(workers=len(os.sched_getaffinity(0)), root=tmp_path).join()
    assert len(fixed.my_cores()) == 1
    fixed.leave()
    off = HostShare(workers=0, root=tmp_path).join()
    assert off.my_cores() == off.cores
    off.leave()


def test_cpu_share_values() -> None:
    assert parse_cpu_share("auto") is None
    assert parse_cpu_share("off") == 0
    assert parse_cpu_share("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match="--cpu-share must be"):
            parse_cpu_share(bad)


def test_a_bad_cpu_share_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "automl", "worker", "--study", "s", "--cpu-share", "many"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "argument --cpu-share: must be 'auto', 'off' or a number" in out.stderr


def _in_thread(fn: object) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        fn()  # type: ignore[operator]
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def test_a_cpu_measurement_waits_for_the_others_step_and_pauses_their_training(
    shares: tuple[HostShare, HostShare],
) -> None:
    trainer, measurer = shares
    trainer.begin_training()
    entered, release = threading.Event(), threading.Event()

    def measure() -> None:
        with measurer.measuring(cpu=True) as threads:
            assert threads == len(measurer.cores)
            entered.set()
            release.wait(WAIT_S)

    _, measured = _in_thread(measure)
    # The trainer is inside a step: the measurement cannot start.
    assert not entered.wait(0.3)
    # At its step boundary the trainer lets it run, and waits until it is over.
    _, stepped = _in_thread(trainer.step)
    assert entered.wait(WAIT_S)
    assert not stepped.wait(0.3)
    release.set()
    assert measured.wait(WAIT_S)
    assert stepped.wait(WAIT_S)
    trainer.end_training()


def test_measurements_never_overlap_but_a_gpu_one_does_not_pause_training(
    shares: tuple[HostShare, HostShare],
) -> None:
    a, b = shares
    a.begin_training()
    # Timing on a GPU does not need the CPU quiet: it starts while `a` trains.
    inside_b, release_b = threading.Event(), threading.Event()

    def gpu_measure() -> None:
        with b.measuring(cpu=False):
            inside_b.set()
            release_b.wait(WAIT_S)

    _, b_done = _in_thread(gpu_measure)
    assert inside_b.wait(WAIT_S)
    # But a second measurement on the host waits for it, whatever its device.
    a.end_training()
    inside_a = threading.Event()

    def other_measure() -> None:
        with a.measuring(cpu=False):
            inside_a.set()

    _, a_done = _in_thread(other_measure)
    assert not inside_a.wait(0.3)
    release_b.set()
    assert b_done.wait(WAIT_S)
    assert a_done.wait(WAIT_S)
    assert inside_a.is_set()


def test_a_worker_stopped_inside_a_step_holds_a_measurement_back_only_so_long(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    stuck = HostShare(root=tmp_path).join()
    measurer = HostShare(root=tmp_path, pause_timeout_s=0.2).join()
    stuck.begin_training()  # and never steps again
    with measurer.measuring(cpu=True) as threads:
        assert threads == len(measurer.cores)
    assert "did not pause its training within 0 s" in caplog.text
    stuck.leave()
    measurer.leave()


def test_busy_cpus_are_seen_before_a_reference_is_settled() -> None:
    n = os.cpu_count() or 1
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        time.sleep(0.5)
        # Every core spinning: the wait gives up (at once here) and reports them busy.
        assert wait_for_quiet_cpu(max_wait_s=0.01, window_s=0.3) > 0.5
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert wait_for_quiet_cpu(max_wait_s=0) == 0.0


def test_the_wait_for_idle_cpus_is_shown_with_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOML_QUIET_WAIT_S", "0")
    space = load_space(REPO / "search_spaces" / "smoke.toml")
    share = HostShare(root=tmp_path).join()
    timer = LatencyTimer(space, host_share=share)
    phases: list[str] = []
    timer.on_phase = phases.append
    study = optuna.create_study(directions=["maximize", "minimize"])
    ref = timer.reference(
        study, ModelInput(10, 1, 8), torch.device("cpu"), torch.randn(1, 1, 8, 8), 1
    )
    assert ref.median_ms > 0
    assert phases == [
        "waiting up to 0 s for idle CPUs to settle the study's latency reference (once per host)",
        "settling the latency reference",
    ]
