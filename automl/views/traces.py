"""A trial's profiler traces laid out as a TensorBoard run.

``automl search/worker --profile`` uploads each trace that ``torch.profiler``'s TensorBoard
handler wrote as an Optuna artifact, which the artifact store keeps under a UUID: TensorBoard's
``torch-tb-profiler`` plugin finds nothing there. It looks for files named
``<worker>[.<span>].pt.trace.json`` in run folders under ``--logdir`` (its ``WORKER_PATTERN``;
a worker named ``<host>_<pid>`` shows as that host and process), so each trace is copied to
``OUT/<study>-trial<N>/`` under the name the profiler gave it.
"""

from __future__ import annotations

import re
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from automl.errors import ConfigError, StorageError
from automl.search.study import AutoMLStudy
from automl.store.names import study_dir_name

__all__ = ["TRACE_SUFFIX", "lay_out_traces", "run_dir_name"]

# torch.profiler.tensorboard_trace_handler names a trace <host>_<pid>.<time ns>.pt.trace.json.
TRACE_SUFFIX = ".pt.trace.json"
# A stored file name is written as is only when it cannot leave the run folder or confuse a shell.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_dir_name(study_name: str, number: int) -> str:
    """The run's folder: the study's name as a safe folder name, and the trial."""
    return f"{study_dir_name(study_name)}-trial{number}"


def lay_out_traces(study: AutoMLStudy, number: int, out: Path) -> list[Path]:
    """Copy the profiler traces of trial ``number`` into ``out/<study>-trial<N>/``; returns the
    files written. Errors name what is missing and how to get it."""
    trials = study.trials()
    if not 0 <= number < len(trials):
        span = f"0..{len(trials) - 1}" if trials else "none yet"
        raise ConfigError(
            f"study {study.study_name!r} has no trial {number}; its trials are {span} "
            "(automl status lists them)"
        )
    trial = trials[number]
    metas = [
        m
        for m in get_all_artifact_meta(trial, storage=study.storage)
        if m.filename.endswith(TRACE_SUFFIX)
    ]
    if not metas:
        raise ConfigError(
            f"trial {number} of study {study.study_name!r} has no profiler trace; traces are "
            "stored only by 'automl search --profile' or 'automl worker --profile' (state of "
            f"trial {number}: {trial.state.name.lower()})"
        )
    store = FileSystemArtifactStore(str(study.artifact_dir))
    run_dir = out / run_dir_name(study.study_name, number)
    run_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, meta in enumerate(metas):
        # The profiler's own name (worker and span) unless it is unusable as a file name.
        name = Path(meta.filename).name
        if _UNSAFE.search(name) or name == TRACE_SUFFIX:
            name = f"trial{number}_{i}{TRACE_SUFFIX}"
        path = run_dir / name
        try:
            download_artifact(
                artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path)
            )
        except FileNotFoundError:
            raise StorageError(
                f"the trace {meta.filename!r} of trial {number} is not in the artifact folder "
                f"{study.artifact_dir}; pass --artifacts with the folder the workers wrote to"
            ) from None
        written.append(path)
    return written
