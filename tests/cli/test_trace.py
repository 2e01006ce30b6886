"""``automl trace``: a profiled trial's traces laid out as a TensorBoard run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import automl
from automl.cli import main
from tests.helpers import write_space
from tests.study_builders import finish_trial

# torch-tb-profiler's own rule for trace files in a run folder (torch_tb_profiler/consts.py):
# worker name, an optional numeric span, the suffix. Its NODE_PROCESS_PATTERN splits the worker
# name "<host>_<pid>".
PLUGIN_WORKER_PATTERN = re.compile(r"^(.*?)(\.\d+)?\.pt\.trace\.json(?:\.gz)?$")
PLUGIN_NODE_PROCESS_PATTERN = re.compile(r"^(.*)_(\d+)")


def test_a_profiled_trial_becomes_a_tensorboard_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = automl.create_study(write_space(tmp_path, name="prof", epochs=1, steps=6), url)
    study.optimize(n_trials=1, profile=True)
    plain = finish_trial(study, 0.5, 1.0)  # a trial run without --profile

    out = tmp_path / "tb"
    args = ["trace", "--storage", url, "--study", "prof", "--trial", "0", "--out", str(out)]
    assert main(args) == 0
    files = sorted(out.rglob("*"))
    run = out / "prof-trial0"
    traces = [f for f in files if f.is_file()]
    assert len(traces) == 1 and traces[0].parent == run, files
    m = PLUGIN_WORKER_PATTERN.match(traces[0].name)
    assert m is not None, traces[0].name
    node = PLUGIN_NODE_PROCESS_PATTERN.match(m.group(1))
    assert node is not None and node.group(2).isdigit(), m.group(1)  # host and pid
    events = json.loads(traces[0].read_text())["traceEvents"]
    assert any("ProfilerStep" in str(e.get("name", "")) for e in events)
    assert f"tensorboard --logdir {out}" in capsys.readouterr().out

    def error(*args: str) -> str:
        capsys.readouterr()
        assert main(["trace", "--storage", url, *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    assert "has no profiler trace" in error("--study", "prof", "--trial", str(plain))
    assert "--profile" in error("--study", "prof", "--trial", str(plain))
    assert "has no trial 7; its trials are 0..1" in error("--study", "prof", "--trial", "7")
    assert "nope" in error("--study", "nope", "--trial", "0")
    assert not (tmp_path / "x").exists()  # no empty folder left by a failed command
