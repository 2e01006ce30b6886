"""Every corner of every CPU search space trains, evaluates and is timed without crashing, under
oneDNN's AVX2 kernels (what AMD EPYC and other CPUs without AVX-512 run) and the native ones.

Each run is a subprocess, so a segfault, an abort or a hang fails the test instead of pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_SPACES = ["search_spaces/smoke.toml", "search_spaces/fashion_mnist_cpu.toml"]


def test_cpu_spaces_are_the_ones_checked() -> None:
    # A new CPU space must join the corner check: CPU spaces are named for it.
    named = sorted(
        f"search_spaces/{p.name}"
        for p in (ROOT / "search_spaces").glob("*.toml")
        if "cpu" in p.stem or "smoke" in p.stem
    )
    assert named == sorted(CPU_SPACES)


@pytest.mark.parametrize("isa", ["AVX2", "native"])
def test_every_cpu_space_corner_survives(isa: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests/training/cpu_corners.py"), *CPU_SPACES],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=480,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode()
        pytest.fail(f"hung under ISA {isa}; last corner:\n{out[-2000:]}")
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"exit {proc.returncode} under ISA {isa}:\n{tail}"
    assert "all corners ok" in proc.stdout
