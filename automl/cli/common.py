"""Options and printing shared by the subcommands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from automl.study import ParetoRecord


def add_storage_args(p: argparse.ArgumentParser, *, study_required: bool = False) -> None:
    p.add_argument(
        "--storage",
        default=None,
        help="database URL (default: $AUTOML_STORAGE, else sqlite:///automl.db); "
        "postgresql://user@host:5432/db for many workers",
    )
    p.add_argument(
        "--study",
        default=os.environ.get("AUTOML_STUDY"),
        required=study_required and not os.environ.get("AUTOML_STUDY"),
        help="study name (default: $AUTOML_STUDY, or the space's name)",
    )
    p.add_argument(
        "--artifacts",
        default=os.environ.get("AUTOML_ARTIFACTS"),
        help="artifact folder for weights, curves and checkpoints (default: stored in the study)",
    )


def resolve_study_name(storage: str | None, name: str | None) -> str:
    """The study asked for, or the only study in the storage."""
    if name is not None:
        return name
    import optuna

    from automl.errors import StorageError
    from automl.storage import default_storage_url, open_storage

    rdb = open_storage(storage or default_storage_url())
    names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
    if len(names) != 1:
        raise StorageError(
            f"pass --study NAME; this storage holds {len(names)} studies: "
            f"{', '.join(names) or 'none'}"
        )
    return names[0]


def format_front(front: Sequence[ParetoRecord]) -> str:
    """The Pareto front as an aligned text table, fastest first."""
    header = (
        "#",
        "K",
        "width",
        "cot_w",
        "val_acc",
        "test_acc",
        "latency_ms",
        "iqr_ms",
        "mode",
        "params",
        "MFLOPs",
    )
    rows = []
    for r in front:
        p = r.params
        rows.append(
            (
                str(r.number),
                str(r.split_factor),
                f"{p.get('width_mult', float('nan')):.3f}" if "width_mult" in p else "-",
                f"{p['cot_weight']:.3f}" if "cot_weight" in p else "-",
                f"{r.accuracy:.4f}",
                f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "-",
                f"{r.latency_ms:.3f}",
                f"{r.latency_iqr_ms:.3f}" if r.latency_iqr_ms is not None else "-",
                r.latency_mode or "-",
                f"{r.n_params:,}" if r.n_params is not None else "-",
                f"{r.flops / 1e6:.2f}" if r.flops is not None else "-",
            )
        )
    if not rows:
        return "(no completed trial yet: the Pareto front is empty)"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
