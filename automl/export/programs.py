"""The runtimes a bundle targets: write the program file, load it back as a callable.

Every program takes a normalised batch (B, C, H, W) float32, any B, and returns class
probabilities (B, classes) (``ProbabilityHead``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from automl.errors import ConfigError
from automl.export.errors import BundleError
from automl.export.forms import ProbabilityHead

__all__ = ["PROGRAM_FILE", "Format", "load_program", "parse_format", "write_program"]

Runner = Callable[[torch.Tensor], torch.Tensor]


class Format(StrEnum):
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported-program"
    ONNX = "onnx"


PROGRAM_FILE: dict[Format, str] = {
    Format.TORCHSCRIPT: "model.ts",
    Format.EXPORTED_PROGRAM: "model.pt2",
    Format.ONNX: "model.onnx",
}

ONNX_INPUT = "images"
ONNX_OUTPUT = "probabilities"


def parse_format(fmt: Format | str) -> Format:
    try:
        return Format(fmt)
    except ValueError:
        allowed = ", ".join(f.value for f in Format)
        raise ConfigError(f"--format must be one of {allowed}, got {fmt!r}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress, log graph passes and warn about tracing; none of it concerns
    a user here (a failure still raises)."""
    loggers = [
        logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")
    ]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=65536)


def write_program(head: ProbabilityHead, example: torch.Tensor, fmt: Format, path: Path) -> None:
    """Write ``head`` as a ``fmt`` program at ``path``; ``example`` is a real batch, B >= 2
    (export specialises sizes 0 and 1, so a batch of one would fix the batch size)."""
    if example.shape[0] < 2:
        example = torch.cat([example, example])
    head = head.eval()
    try:
        with _quiet(), torch.no_grad():
            if fmt is Format.TORCHSCRIPT:
                torch.jit.save(torch.jit.trace(head, example, check_trace=False), str(path))
            elif fmt is Format.EXPORTED_PROGRAM:
                ep = torch.export.export(head, (example,), dynamic_shapes=({0: _batch_dim()},))
                torch.export.save(ep, str(path))
            else:
                _write_onnx(head, example, path)
    except ImportError as e:
        raise BundleError(
            f"format {fmt.value} needs {e.name}; install it with \"pip install -e '.[export]'\" "
            "in the automl checkout"
        ) from e


def _write_onnx(head: ProbabilityHead, example: torch.Tensor, path: Path) -> None:
    import onnx

    torch.onnx.export(
        head,
        (example,),
        str(path),
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_shapes=({0: _batch_dim()},),
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise BundleError(f"onnx.checker rejected the exported model: {first}") from e


def onnx_providers(device: str = "cpu") -> list[str]:
    """ONNX Runtime providers: CUDA only when asked for and present, the CPU always."""
    import onnxruntime as ort

    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_program(
    fmt: Format, path: Path, device: str = "cpu", threads: int | None = None
) -> Runner:
    """A callable running the program at ``path`` in its own runtime (tensor in, tensor out).

    Call only after the bundle's checksums were verified (``read_bundle`` does): TorchScript and
    ONNX archives hold no Python pickles, but ``torch.export.load`` may fall back to unpickling.
    """
    try:
        if fmt is Format.TORCHSCRIPT:
            with _quiet():  # torch.jit.load warns that TorchScript is deprecated
                ts = torch.jit.load(str(path), map_location=device).eval()
            return lambda x: ts(x.to(device))
        if fmt is Format.EXPORTED_PROGRAM:
            with _quiet():
                gm = torch.export.load(str(path)).module().to(device)
            return lambda x: gm(x.to(device))
        return _onnx_runner(path, device, threads)
    except ImportError as e:
        raise BundleError(
            f"running {fmt.value} needs {e.name}; install it with \"pip install -e '.[export]'\" "
            "in the automl checkout"
        ) from e
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise BundleError(f"{path}: cannot load the {fmt.value} program: {first}") from e


def _onnx_runner(path: Path, device: str, threads: int | None) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=onnx_providers(device))

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(sess.run([ONNX_OUTPUT], {ONNX_INPUT: arr})[0])

    return run
