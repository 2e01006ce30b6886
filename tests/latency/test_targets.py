"""Latency per target: what a trial stores, the front for another device without retraining."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.measure.host_share import HostShare
from automl.measure.targets import latencies_for
from automl.search.front import network_front
from automl.search.remeasure import remeasure
from automl.search.study import ParetoRecord
from automl.store.attrs import StudyAttr, TrialAttr
from tests.helpers import REPO, write_space

# One xdist process runs this module: its expensive fixtures are built once, not once per process.
pytestmark = pytest.mark.xdist_group("latency-targets")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> automl.AutoMLStudy:
    # One study for the module: the tests below read it, and re-measure under their own names.
    tmp_path = tmp_path_factory.mktemp("targets")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = automl.create_study(
        write_space(tmp_path, epochs=1, steps=2), storage=url, artifact_dir=tmp_path / "art"
    )
    with HostShare(root=tmp_path / "host") as share:
        study.optimize(n_trials=4, device="cpu", host_share=share)
    return study


def test_a_trial_stores_a_paired_latency_and_its_target(trained: automl.AutoMLStudy) -> None:
    done = [t for t in trained.trials() if t.values]
    assert len(done) == 4
    refs = {t.user_attrs[TrialAttr.LATENCY_REFERENCE_MS] for t in done}
    # One settled reference for the host: every trial's latency is on the same scale.
    assert len(refs) == 1
    attrs = trained.optuna_study.user_attrs
    settled = [v for k, v in attrs.items() if k.startswith(StudyAttr.LATENCY_REFERENCE_PREFIX)]
    assert settled == [refs.pop()]
    assert attrs[StudyAttr.MODEL_INPUT] == [10, 1, 8]
    for t in done:
        u = t.user_attrs
        assert u[TrialAttr.LATENCY_TARGET] == "cpu@b1"
        assert u[TrialAttr.LATENCY_MS] == pytest.approx(
            u[TrialAttr.LATENCY_RATIO] * u[TrialAttr.LATENCY_REFERENCE_MS]
        )
        assert t.values[1] == u[TrialAttr.LATENCY_MS]
        assert u[TrialAttr.LATENCY_RAW_MS] > 0


def test_the_front_on_another_target_comes_from_its_numbers(trained: automl.AutoMLStudy) -> None:
    result = remeasure(trained, "cpu", batch_size=16, name="edge-box", min_run_s=0.05)
    assert result.key == "edge-box@b16"
    assert (result.measured, result.skipped) == (4, 0)
    again = remeasure(trained, "cpu", batch_size=16, name="edge-box", min_run_s=0.05)
    assert (again.measured, again.skipped) == (0, 4)
    forced = remeasure(trained, "cpu", batch_size=16, name="edge-box", min_run_s=0.05, force=True)
    assert (forced.measured, forced.skipped) == (4, 0)

    measured = latencies_for(trained.optuna_study, "edge-box@b16")
    assert set(measured) == {t.number for t in trained.trials() if t.values}
    front = trained.pareto_front(device="edge-box", batch_size=16)
    assert front
    for r in front:
        lat = measured[r.number]
        assert r.latency_ms == lat.median_ms
        assert lat.batch_size == 16
        # A batch of 16 is not the trial's batch of 1: the numbers are the re-measured ones.
        own = trained.optuna_study.trials[r.number].values[1]
        assert r.latency_ms != own
    # The front is exactly the configuration front under the new numbers (their spread too).
    every = [ParetoRecord.from_trial(t) for t in trained.trials() if t.values]
    remeasured = [
        dataclasses.replace(
            r, latency_ms=measured[r.number].median_ms, latency_iqr_ms=measured[r.number].iqr_ms
        )
        for r in every
    ]
    expected = network_front(trained.trials(), remeasured)
    assert [r.number for r in front] == [p.number for p in expected]
    # Each point left out is dominated under the new numbers or inside a neighbour's spread.
    on = {r.number for r in front}
    for r in remeasured:
        if r.number not in on:
            absorbed = any(r.number in p.absorbed for p in expected)
            dominated = any(
                o.accuracy >= r.accuracy
                and o.latency_ms <= r.latency_ms
                and (o.accuracy, o.latency_ms) != (r.accuracy, r.latency_ms)
                for o in remeasured
            )
            assert absorbed or dominated, r.number
    # The worker's own target still gives the trained front.
    own_front = trained.pareto_front(device="cpu")
    assert [r.number for r in own_front] == [r.number for r in trained.pareto_front()]


def test_an_unknown_target_names_the_stored_ones(trained: automl.AutoMLStudy) -> None:
    with pytest.raises(
        ConfigError, match=r"\(stored: .*cpu@b1.*\); measure it there with `automl remeasure"
    ):
        trained.pareto_front(device="cuda:NVIDIA H200")
    with pytest.raises(ConfigError, match="subset points are timed on the workers' device"):
        trained.pareto_front(include_subsets=True, device="cpu")


def test_remeasure_cli(
    trained: automl.AutoMLStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--storage", trained.storage_url, "--study", trained.study_name]
    # The measuring command as users run it, in its own process; the commands that read what it
    # stored run in this one (the same parser and exit codes, without a torch import each).
    out = _automl(
        "remeasure",
        *common,
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--min-run",
        "0.05",
        "--no-progress",
        host_dir=tmp_path / "host",
    )
    assert out.returncode == 0, out.stderr
    assert "timed 4 architectures on cpu@b4 (0 already measured there)" in out.stdout
    assert "Pareto front on cpu@b4" in out.stdout
    code, stdout, stderr = _cli(capsys, "status", *common, "--device", "cpu", "--batch-size", "4")
    assert code == 0, stderr
    shown = stdout.split("Pareto front on cpu at batch 4:")[1]
    front = trained.pareto_front(device="cpu", batch_size=4)
    for r in front:
        assert f"{r.latency_ms:.3f}" in shown
    rep = ["report", *common, "--out", str(tmp_path / "rep"), "--device", "cpu"]
    code, _, stderr = _cli(capsys, *rep, "--batch-size", "4")
    assert code == 0, stderr
    assert "at batch 4" in (tmp_path / "rep" / "index.html").read_text()
    code, _, stderr = _cli(capsys, "status", *common, "--device", "nowhere")
    assert code == 2
    assert "no latency of study" in stderr and "automl remeasure" in stderr
    none = ["report", *common, "--out", str(tmp_path / "none"), "--device", "nowhere"]
    assert _cli(capsys, *none)[0] == 2
    assert not (tmp_path / "none").exists()
    code, _, stderr = _cli(capsys, "remeasure", *common, "--name", "a@b")
    assert code == 2
    assert "--name must be a plain label" in stderr


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _automl(*args: str, host_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOML_HOST_DIR": str(host_dir)} if host_dir else None
    return subprocess.run(
        [sys.executable, "-m", "automl", *args], cwd=REPO, capture_output=True, text=True, env=env
    )


def test_latency_device_is_checked(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    text = space.read_text().replace(
        "latency_batch_size = 1", 'latency_batch_size = 1\nlatency_device = "gpu"'
    )
    space.write_text(text)
    with pytest.raises(ConfigError, match="latency_device must be 'cpu', 'cuda' or 'cuda:N'"):
        automl.load_space(space)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present")
def test_a_gpu_worker_trains_on_the_gpu_and_times_on_the_cpu(tmp_path: Path) -> None:
    space = write_space(tmp_path, epochs=1, steps=2)
    space.write_text(
        space.read_text().replace(
            "latency_batch_size = 1", 'latency_batch_size = 1\nlatency_device = "cpu"'
        )
    )
    study = automl.create_study(
        space, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", artifact_dir=tmp_path / "art"
    )
    with HostShare(root=tmp_path / "host") as share:
        study.optimize(n_trials=2, device="cuda", host_share=share)
    done = [t for t in study.trials() if t.values]
    assert done
    for t in done:
        assert str(t.user_attrs[TrialAttr.DEVICE]).startswith("cuda")
        assert str(t.user_attrs[TrialAttr.LATENCY_DEVICE]).startswith("cpu")
        assert t.user_attrs[TrialAttr.LATENCY_TARGET] == "cpu@b1"
    assert study.pareto_front(device="cpu")
