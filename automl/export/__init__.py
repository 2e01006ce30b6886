"""From the front to production: load, export and run a chosen model.

- ``load_model(storage, study, trial)``: the trained ensemble of a trial, in the form asked for,
  with its preprocessing and class names; ``load_model(path)``: the same from an exported bundle
  (checksums verified, nothing unpickled).
- ``export_trial(...)``: a self-describing bundle (TorchScript, torch.export or ONNX program,
  weights, config, preprocessing, class names, metrics, latency, manifest with sha256 sums).

What this package guarantees: a bundle's program answers as the PyTorch model does (max absolute
difference of probabilities <= 1e-4 on the first test images, or the export fails), a bundle whose
files do not match its manifest is refused, and nothing is unpickled when a bundle is read.
"""

from __future__ import annotations

from pathlib import Path

from automl.export.bundle import ReadBundle, read_bundle
from automl.export.errors import BundleError, ImageError, TrialSelectionError
from automl.export.exporter import DEFAULT_ATOL, LatencySettings, export_trial, write_bundle
from automl.export.forms import Form, LoadedModel, ProbabilityHead
from automl.export.preprocess import Preprocessing
from automl.export.programs import Format
from automl.export.source import load_trial, select_trial, to_loaded

__all__ = [
    "DEFAULT_ATOL",
    "BundleError",
    "Form",
    "Format",
    "ImageError",
    "LatencySettings",
    "LoadedModel",
    "Preprocessing",
    "ProbabilityHead",
    "ReadBundle",
    "TrialSelectionError",
    "export_trial",
    "load_model",
    "load_trial",
    "read_bundle",
    "select_trial",
    "write_bundle",
]


def load_model(
    storage_or_path: str | Path,
    study: str | None = None,
    trial: int | str | None = None,
    *,
    form: Form | str = Form.DIVIDED,
    members: int | None = None,
    max_latency_ms: float | None = None,
    artifact_dir: str | Path | None = None,
) -> LoadedModel:
    """A trained ensemble in eval mode, with its preprocessing and class names.

    ``load_model(storage, study, trial)`` reads trial ``trial`` (a number or ``"best"``, the most
    accurate trial of the Pareto front within ``max_latency_ms``) of ``study``; ``form`` is
    ``divided`` or ``fused``, ``members=m`` keeps the m members of best validation accuracy.
    ``load_model(path)`` reads an exported bundle as it was exported (``form``/``members`` are
    fixed at export time).
    """
    if study is None and trial is None:
        return read_bundle(storage_or_path).loaded
    if study is None or trial is None:
        raise TrialSelectionError(
            "load_model needs a bundle path alone, or storage, study and trial together"
        )
    tm = load_trial(
        str(storage_or_path), study, trial, max_latency_ms=max_latency_ms, artifact_dir=artifact_dir
    )
    return to_loaded(tm, form, members)
