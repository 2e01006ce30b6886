"""The bundle on disk: self-describing, checksummed, loaded without unpickling anything.

Layout of ``DIR``:

- ``weights.pt``: the state dict of the shipped members (divided form), plain tensors only, read
  with ``torch.load(weights_only=True)``;
- ``model.json``: the model config (with the trained K), combine rule, form and member indices;
- ``preprocessing.json``, ``classes.json``, ``metrics.json`` (validation/test metrics, the trial's
  latency record and device, the export-time equivalence check);
- the program: ``model.ts`` (TorchScript), ``model.pt2`` (torch.export) or ``model.onnx``;
- ``manifest.json``: format, library versions, runtime latency, and the sha256 of every file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from automl._version import __version__
from automl.errors import AutoMLError
from automl.export.errors import BundleError
from automl.export.forms import LoadedModel, build_form, parse_form
from automl.export.preprocess import Preprocessing
from automl.export.programs import PROGRAM_FILE, Format, parse_format
from automl.models import DividedNet, model_from_config

__all__ = [
    "BUNDLE_VERSION",
    "MANIFEST",
    "ReadBundle",
    "library_versions",
    "read_bundle",
    "sha256",
    "write_json",
    "write_manifest",
]

BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
DATA_FILES = ("weights.pt", "model.json", "preprocessing.json", "classes.json", "metrics.json")
KNOWN_FILES = (*DATA_FILES, *PROGRAM_FILE.values(), MANIFEST)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"automl": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for dist in ("torchvision", "optuna", "numpy", "onnx", "onnxruntime", "onnxscript"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` or clear a previous bundle there; refuse a folder holding other files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        foreign = sorted(p.name for p in out.iterdir() if p.name not in KNOWN_FILES)
        if foreign:
            raise BundleError(
                f"--out {out} holds other files ({', '.join(foreign[:3])}); pass a new or empty "
                "folder, or one holding an earlier bundle"
            )
        for name in KNOWN_FILES:
            (out / name).unlink(missing_ok=True)
        probe = out / MANIFEST
        probe.write_text("{}")
        probe.unlink()
    except OSError as e:
        raise BundleError(
            f"--out {out} is not writable ({e.strerror or e}); pass another folder"
        ) from e


def write_manifest(out: Path, fmt: Format, extra: dict[str, Any]) -> dict[str, Any]:
    files = [*DATA_FILES, PROGRAM_FILE[fmt]]
    manifest: dict[str, Any] = {
        "bundle_version": BUNDLE_VERSION,
        "format": fmt.value,
        "program": PROGRAM_FILE[fmt],
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **extra,
        "files": {
            name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size}
            for name in files
        },
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(
            f"{path}: not readable JSON ({e.__class__.__name__}); re-export the bundle"
        ) from e


def verify(bundle: Path) -> dict[str, Any]:
    """The manifest of ``bundle`` once every file it lists matches its sha256."""
    if not (bundle / MANIFEST).is_file():
        raise BundleError(
            f"{bundle} is not an automl bundle (no {MANIFEST}); pass the --out folder of "
            "'automl export'"
        )
    manifest = _read_json(bundle / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{bundle / MANIFEST} lists no files; re-export the bundle")
    if manifest.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{bundle}: bundle version {manifest.get('bundle_version')!r}, this automl reads "
            f"{BUNDLE_VERSION}; re-export it with this version"
        )
    fmt = parse_format(str(manifest.get("format")))
    needed = {*DATA_FILES, PROGRAM_FILE[fmt]}
    missing = sorted(needed - set(files))
    if missing:
        raise BundleError(
            f"{bundle / MANIFEST} does not cover {', '.join(missing)}; re-export the bundle"
        )
    for name, entry in files.items():
        path = bundle / name
        if Path(name).name != name or not path.is_file():
            raise BundleError(
                f"{bundle}: {name} listed in the manifest is missing; re-export the bundle"
            )
        if sha256(path) != (entry or {}).get("sha256"):
            raise BundleError(
                f"{path}: checksum mismatch with {MANIFEST}, the file was changed or corrupted; "
                "refusing to load it (re-export the bundle)"
            )
    return dict(manifest)


class ReadBundle:
    """A verified bundle: its manifest and the loaded PyTorch model."""

    def __init__(self, path: Path, manifest: dict[str, Any], loaded: LoadedModel) -> None:
        self.path = path
        self.manifest = manifest
        self.loaded = loaded

    @property
    def format(self) -> Format:
        return parse_format(str(self.manifest["format"]))

    @property
    def program_path(self) -> Path:
        return self.path / str(self.manifest["program"])


def _rebuild(bundle: Path, spec: dict[str, Any]) -> DividedNet:
    try:
        state = torch.load(bundle / "weights.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses any pickled object that is not plain data
        raise BundleError(
            f"{bundle / 'weights.pt'}: not a plain state dict ({e.__class__.__name__}); refusing "
            "to unpickle it"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(
            f"{bundle / 'weights.pt'}: expected a dict of tensors; re-export the bundle"
        )
    try:
        full = model_from_config(dict(spec["model_config"]), combine=str(spec["combine"]))
        indices = [int(i) for i in spec["members"]]
        members = [full.members[i] for i in indices]
        model = DividedNet(members, full.model_config, full.combine)
        model.load_state_dict(state)
    except (AutoMLError, KeyError, IndexError, RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise BundleError(f"{bundle}: weights.pt does not fit model.json: {first}") from e
    return model.eval()


def read_bundle(path: str | Path) -> ReadBundle:
    """Verify the checksums of the bundle at ``path`` and load its model (PyTorch, eval mode)."""
    bundle = Path(path).expanduser()
    manifest = verify(bundle)
    spec = _read_json(bundle / "model.json")
    divided = _rebuild(bundle, spec)
    form = parse_form(str(spec.get("form", "divided")))
    model = build_form(divided, form, list(range(divided.split_factor)))
    classes = _read_json(bundle / "classes.json")
    if not isinstance(classes, list):
        raise BundleError(f"{bundle / 'classes.json'}: expected a list of class names")
    loaded = LoadedModel(
        model=model,
        preprocessing=Preprocessing.from_dict(_read_json(bundle / "preprocessing.json")),
        class_names=[str(c) for c in classes],
        form=form,
        members=[int(i) for i in spec["members"]],
        model_config=dict(spec["model_config"]),
        metrics=dict(_read_json(bundle / "metrics.json")),
        source=dict(manifest.get("source", {})),
    )
    return ReadBundle(bundle, manifest, loaded)
