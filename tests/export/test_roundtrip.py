"""A trial trained through a real study: load it, export it in every format, predict on PNG files.

Tolerance: probabilities of the exported program equal the PyTorch model's within atol 1e-4
(the export-time check); the PyTorch model rebuilt from a bundle equals the study's within 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import automl
from automl.cli import main
from automl.export import Format, export_trial, read_bundle
from automl.export.predict import predict_files
from automl.search.front import network_front
from tests.export.conftest import Trained

pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")

ATOL = 1e-4


def test_load_model_forms_preprocessing_and_classes(trained: Trained) -> None:
    divided = automl.load_model(trained.url, trained.study, 1, form="divided")
    fused = automl.load_model(trained.url, trained.study, 1, form="fused")
    assert type(divided.model).__name__ == "DividedNet" and not divided.model.training
    assert type(fused.model).__name__ == "FusedNet" and not fused.model.training
    assert divided.members == [0, 1]
    assert divided.class_names == [str(i) for i in range(10)]
    pre = divided.preprocessing
    assert (pre.dataset, pre.in_chans, pre.image_size, pre.mean, pre.std) == (
        "digits",
        1,
        8,
        (0.3,),
        (0.35,),
    )
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(fused.predict_proba(x), divided.predict_proba(x), atol=1e-5, rtol=0)
    # The first m members by validation accuracy.
    accs = divided.metrics["member_accuracies"]
    one = automl.load_model(trained.url, trained.study, 1, members=1)
    assert one.members == [max(range(2), key=lambda i: (accs[i], -i))]
    assert one.model.split_factor == 1


def test_validation_accuracy_is_reproduced(trained: Trained) -> None:
    """The rebuilt model scores on the validation split what the trial stored."""
    from automl.data import load_dataset
    from automl.training import evaluate

    study = automl.load_study(trained.study, trained.url)
    loaded = automl.load_model(trained.url, trained.study, 1)
    d = study.space.data
    data = load_dataset(d.dataset, val_fraction=d.val_fraction, eval_limit=d.eval_limit)
    res = evaluate(loaded.model, data.val)
    assert res.accuracy == pytest.approx(study.trials()[1].values[0], abs=1e-9)


@pytest.mark.parametrize("fmt", list(Format))
def test_export_load_predict_round_trip(
    trained: Trained, digit_pngs: tuple[Path, torch.Tensor], tmp_path: Path, fmt: Format
) -> None:
    folder, images = digit_pngs
    out = tmp_path / fmt.value
    manifest = export_trial(trained.url, trained.study, 1, out, fmt=fmt, form="fused")
    check = manifest["export_check"]
    assert check["max_abs_diff"] <= ATOL and check["images"] == 64
    assert set(manifest["files"]) == {
        "weights.pt",
        "model.json",
        "preprocessing.json",
        "classes.json",
        "metrics.json",
        manifest["program"],
    }
    assert manifest["versions"]["torch"] == torch.__version__
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trial"] == 1 and metrics["test_accuracy"] is not None
    assert metrics["device"] and metrics["latency_ms"] > 0

    reference = automl.load_model(trained.url, trained.study, 1, form="fused")
    from_bundle = automl.load_model(out)
    assert from_bundle.class_names == reference.class_names
    assert from_bundle.preprocessing == reference.preprocessing
    expected = reference.predict_proba(images)
    torch.testing.assert_close(from_bundle.predict_proba(images), expected, atol=1e-6, rtol=0)

    for runtime in ("program", "eager"):
        paths, probs, classes = predict_files(out, [folder], runtime=runtime)
        assert [p.name for p in paths] == [f"d{i:02d}.png" for i in range(12)]
        torch.testing.assert_close(probs.float(), expected, atol=ATOL, rtol=0)
        assert classes == [str(i) for i in range(10)]


def test_cli_export_members_and_predict_formats(
    trained: Trained,
    digit_pngs: tuple[Path, torch.Tensor],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, images = digit_pngs
    out = tmp_path / "one"
    args = [
        "export",
        "--storage",
        trained.url,
        "--study",
        trained.study,
        "--trial",
        "1",
        "--out",
        str(out),
        "--format",
        "onnx",
        "--members",
        "1",
        "--latency-s",
        "0.05",
    ]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["members"]) == 1
    lat = manifest["latency"]
    assert lat["runtime"] == "onnxruntime:CPUExecutionProvider"
    assert lat["program_ms"] > 0 and lat["eager_ms"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["subset"]["members"] == manifest["members"]
    capsys.readouterr()

    assert (
        main(["predict", "--model", str(out), str(folder), "--format", "jsonl", "--top-k", "2"])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and all(len(r["top"]) == 2 for r in rows)
    expected = automl.load_model(out).predict_proba(images)
    for row, p in zip(rows, expected, strict=True):
        assert row["top"][0]["class"] == str(int(p.argmax()))
        assert row["top"][0]["probability"] == pytest.approx(float(p.max()), abs=ATOL)

    assert main(["predict", "--model", str(out), str(folder / "d00.png"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "image,rank,class,index,probability" and len(lines) == 4

    assert main(["predict", "--model", str(out), str(folder / "d01.png")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["image", "rank", "class"] and len(table) == 4


def test_best_trial_under_a_latency_budget(trained: Trained, tmp_path: Path) -> None:
    study = automl.load_study(trained.study, trained.url).optuna_study
    # The front `best` picks from: configurations. Noisy latencies allowed here, so that a busy
    # test machine picks the same (leaving them out is tested in tests/cli/test_export_best.py).
    front = [study.trials[p.number] for p in network_front(study.get_trials())]
    slowest = max(front, key=lambda t: t.values[1])
    fastest = min(front, key=lambda t: t.values[1])
    manifest = export_trial(
        trained.url,
        trained.study,
        "best",
        tmp_path / "b",
        max_latency_ms=fastest.values[1],
        allow_noisy=True,
    )
    assert manifest["source"]["trial"] == fastest.number
    best = max(front, key=lambda t: (t.values[0], -t.values[1]))
    manifest = export_trial(
        trained.url,
        trained.study,
        "best",
        tmp_path / "c",
        max_latency_ms=slowest.values[1] + 1,
        allow_noisy=True,
    )
    assert manifest["source"]["trial"] == best.number
    assert read_bundle(tmp_path / "c").loaded.source["trial"] == best.number
