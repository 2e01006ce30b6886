"""``automl export``: a chosen trial as a bundle, its program checked against PyTorch.

The program's probabilities must equal those of the PyTorch model on real test images within
``atol`` (1e-4 by default), checked before the bundle is sealed by its manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from automl.device import resolve_device
from automl.export.bundle import prepare_out_dir, write_json, write_manifest
from automl.export.errors import BundleError
from automl.export.forms import (
    Form,
    ProbabilityHead,
    build_form,
    parse_form,
    resolve_members,
    select_members,
)
from automl.export.preprocess import Preprocessing, class_names, preprocessing_for
from automl.export.programs import PROGRAM_FILE, Format, load_program, parse_format, write_program
from automl.export.runtime_latency import LatencySettings, bundle_latency
from automl.export.source import load_trial, trial_metrics
from automl.models import DividedNet
from automl.store.attrs import TrialAttr
from automl.training import evaluate

__all__ = ["DEFAULT_ATOL", "LatencySettings", "export_trial", "write_bundle"]

DEFAULT_ATOL = 1e-4
CHECK_IMAGES = 64


def _first_images(split: Any, n: int) -> torch.Tensor:
    """The first ``n`` images of a split, normalised as in evaluation (no augmentation)."""
    gen = torch.Generator().manual_seed(0)
    for views, _ in split.batches(
        n,
        views=1,
        augment=None,
        gen=gen,
        shuffle=False,
        drop_last=False,
        device=torch.device("cpu"),
    ):
        return views[0].float().contiguous()
    raise BundleError("the test split is empty; cannot check the exported program on real images")


def check_equivalence(
    head: ProbabilityHead, fmt: Format, program: Path, x: torch.Tensor, atol: float
) -> dict[str, Any]:
    """Max |program - PyTorch| of the probabilities on ``x``; raises beyond ``atol``."""
    with torch.inference_mode():
        ref = head(x)
    got = load_program(fmt, program)(x).detach().cpu().float()
    diff = float((got - ref).abs().max())
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    if not diff <= atol:
        raise BundleError(
            f"the {fmt.value} program differs from the PyTorch model by {diff:.3g} > atol {atol:g} "
            f"on {len(x)} test images; try another --format or --form divided"
        )
    return {
        "atol": atol,
        "max_abs_diff": diff,
        "argmax_agreement": agree,
        "images": len(x),
        "output": "probabilities",
    }


def write_bundle(
    out: str | Path,
    divided: DividedNet,
    *,
    fmt: Format | str,
    form: Form | str,
    members: list[int],
    trained_split_factor: int,
    preprocessing: Preprocessing,
    classes: list[str],
    metrics: dict[str, Any],
    check_input: torch.Tensor,
    check_source: str,
    source: dict[str, Any] | None = None,
    atol: float = DEFAULT_ATOL,
    latency: LatencySettings | None = None,
) -> dict[str, Any]:
    """Write ``divided`` (the shipped members) as a bundle at ``out``; return its manifest."""
    fmt, form = parse_format(fmt), parse_form(form)
    if latency is not None and latency.enabled:
        resolve_device(latency.device)  # before anything is written
    path = Path(out).expanduser()
    prepare_out_dir(path)
    model = build_form(divided, form, list(range(divided.split_factor)))
    head = ProbabilityHead(model).eval()
    state = {k: v.detach().cpu().contiguous() for k, v in divided.state_dict().items()}
    try:
        torch.save(state, path / "weights.pt")
        spec = {
            "model_config": divided.model_config,
            "combine": str(divided.combine),
            "form": form.value,
            "members": members,
            "trained_split_factor": trained_split_factor,
            "input": "normalised float32 (B, C, H, W), see preprocessing.json",
            "output": "class probabilities (B, classes)",
        }
        write_json(path / "model.json", spec)
        write_json(path / "preprocessing.json", preprocessing.to_dict())
        write_json(path / "classes.json", classes)
        program = path / PROGRAM_FILE[fmt]
        write_program(head, check_input[: min(len(check_input), 8)], fmt, program)
        check = check_equivalence(head, fmt, program, check_input, atol)
        check["source"] = check_source
        write_json(path / "metrics.json", {**metrics, "export_check": check})
        extra: dict[str, Any] = {
            "form": form.value,
            "members": members,
            "source": source or {},
            "export_check": check,
        }
        if latency is not None and latency.enabled:
            extra["latency"] = bundle_latency(
                head, fmt, program, preprocessing, latency, device=latency.device
            )
        return write_manifest(path, fmt, extra)
    except OSError as e:
        raise BundleError(f"--out {path}: cannot write the bundle ({e.strerror or e})") from e


def export_trial(
    storage: str | None,
    study: str,
    trial: int | str,
    out: str | Path,
    *,
    fmt: Format | str = Format.TORCHSCRIPT,
    form: Form | str = Form.FUSED,
    members: int | None = None,
    max_latency_ms: float | None = None,
    allow_noisy: bool = False,
    artifact_dir: str | Path | None = None,
    atol: float = DEFAULT_ATOL,
    latency: LatencySettings | None = None,
) -> dict[str, Any]:
    """Export trial ``trial`` (a number or ``"best"``: noisy latencies left out unless
    ``allow_noisy``) of ``study`` as a bundle at ``out``."""
    fmt, form = parse_format(fmt), parse_form(form)
    tm = load_trial(
        storage,
        study,
        trial,
        max_latency_ms=max_latency_ms,
        allow_noisy=allow_noisy,
        artifact_dir=artifact_dir,
    )
    k = tm.model.split_factor
    accs = list(tm.trial.user_attrs.get(TrialAttr.MEMBER_ACCURACIES, []))
    indices = resolve_members(members, k, accs)
    divided = select_members(tm.model.cpu().eval(), indices)
    section = tm.study.space.data
    data = section.load()
    metrics = trial_metrics(tm.trial)
    if len(indices) < k:
        # The shipped subset's own accuracies: the stored operating point (validation) and the
        # test split, measured now.
        points = [
            p
            for p in metrics.get(TrialAttr.SUBSET_POINTS) or []
            if p.get("members") == len(indices)
        ]
        test = evaluate(divided, data.test)
        metrics["subset"] = {
            "members": indices,
            "val_accuracy": points[0]["accuracy"]
            if points
            else evaluate(divided, data.val).accuracy,
            "latency_ms": points[0]["latency_ms"] if points else None,
            "test_accuracy": test.accuracy,
        }
    cfg = divided.model_config
    return write_bundle(
        out,
        divided,
        fmt=fmt,
        form=form,
        members=indices,
        trained_split_factor=k,
        preprocessing=preprocessing_for(section, int(cfg["in_chans"])),
        classes=class_names(section, int(cfg["num_classes"])),
        metrics=metrics,
        check_input=_first_images(data.test, CHECK_IMAGES),
        check_source=f"first {CHECK_IMAGES} images of the {section.dataset} test split",
        source={"study": tm.study.study_name, "trial": tm.trial.number},
        atol=atol,
        latency=latency,
    )
