"""Reports of a study: the Pareto table (text and files), the Pareto plot and the hypervolume
history."""

from __future__ import annotations

import csv
import html
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from automl.search_progress import ComputePoint, hypervolume_by_compute, trial_stages
from automl.study import METRIC_NAMES, AutoMLStudy, ParetoRecord

__all__ = ["COMPLEXITY_LEGEND", "format_front", "reference_point", "write_report"]

# Both counts are printed, each said explicitly: the paper's "GFLOPs" are multiply-accumulates,
# and a reader comparing with its tables must not be off by 2x.
COMPLEXITY_LEGEND = (
    "MACs (paper's GFLOPs): multiply-adds plus 2 ops per BatchNorm output; "
    "FLOPs = 2 x MACs of convolutions and matrix products (PyTorch's counter); M = 10^6"
)


def reference_point(study: optuna.Study) -> list[float]:
    """Hypervolume reference: accuracy 0 and 1.1 x the slowest completed trial's latency."""
    lat = [t.values[1] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return [0.0, 1.1 * max(lat) if lat else 1.0]


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
        "MMACs",
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
                f"{r.macs / 1e6:.2f}" if r.macs is not None else "-",
                f"{r.flops / 1e6:.2f}" if r.flops is not None else "-",
            )
        )
    if not rows:
        return "(no completed trial yet: the Pareto front is empty)"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(COMPLEXITY_LEGEND)
    return "\n".join(lines)


def _table_rows(front: list[ParetoRecord]) -> list[dict[str, object]]:
    rows = []
    for r in front:
        d = asdict(r)
        params = d.pop("params")
        d.update({f"param_{k}": v for k, v in params.items()})
        d["member_accuracies"] = " ".join(f"{a:.4f}" for a in r.member_accuracies)
        rows.append(d)
    return rows


def _save(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax.get_figure()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_report(study: AutoMLStudy, out: str | Path) -> list[Path]:
    """Write pareto.csv, pareto.md, pareto.html, pareto_front.{html,png},
    hypervolume.{html,png}, trials.csv (each trial's epochs, rung and why it stopped) and
    hypervolume_compute.{csv,png} (against epochs and seconds trained) under ``out``; returns the
    paths written."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ost = study.optuna_study
    front = study.pareto_front()
    written: list[Path] = []

    rows = _table_rows(front)
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k.startswith("param_"), k))
    first = ["number", "accuracy", "test_accuracy", "latency_ms", "latency_iqr_ms", "latency_mode"]
    keys = first + [k for k in keys if k not in first]
    path = out_dir / "pareto.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    written.append(path)

    path = out_dir / "pareto.md"
    path.write_text(
        f"# Pareto front of study `{ost.study_name}`\n\n```\n{format_front(front)}\n```\n"
    )
    written.append(path)

    cells = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(k, '')))}</td>" for k in keys) + "</tr>"
        for row in rows
    )
    path = out_dir / "pareto.html"
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(ost.study_name)}</title>"
        f"<h1>Pareto front of {html.escape(ost.study_name)}</h1>"
        f"<table border=1 cellspacing=0 cellpadding=4><tr>{cells}</tr>{body}</table>"
        f"<p>{html.escape(COMPLEXITY_LEGEND)}</p>"
    )
    written.append(path)

    all_trials = ost.get_trials(deepcopy=False)
    path = out_dir / "trials.csv"
    with path.open("w", newline="") as f:
        tw = csv.writer(f)
        tw.writerow(["number", "state", "epochs", "rung", "why_stopped"])
        for st in trial_stages(all_trials):
            tw.writerow(
                [st.number, st.state, st.epochs, "" if st.rung is None else st.rung, st.why]
            )
    written.append(path)

    completed = ost.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return written
    ref = reference_point(ost)
    by_compute = hypervolume_by_compute(all_trials, ref)
    path = out_dir / "hypervolume_compute.csv"
    with path.open("w", newline="") as f:
        hw = csv.writer(f)
        hw.writerow(["trials_ended", "epochs", "train_seconds", "hypervolume"])
        for pt in by_compute:
            hw.writerow([pt.trials_ended, pt.epochs, round(pt.seconds, 2), pt.hypervolume])
    written.append(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_pareto_front(ost, target_names=METRIC_NAMES)
        path = out_dir / "pareto_front.html"
        fig.write_html(str(path), include_plotlyjs="cdn")
        written.append(path)
        fig = optuna.visualization.plot_hypervolume_history(ost, reference_point=ref)
        path = out_dir / "hypervolume.html"
        fig.write_html(str(path), include_plotlyjs="cdn")
        written.append(path)

        import matplotlib

        matplotlib.use("Agg")

        ax = optuna.visualization.matplotlib.plot_pareto_front(ost, target_names=METRIC_NAMES)
        path = out_dir / "pareto_front.png"
        _save(ax, path)
        written.append(path)
        ax = optuna.visualization.matplotlib.plot_hypervolume_history(ost, reference_point=ref)
        path = out_dir / "hypervolume.png"
        _save(ax, path)
        written.append(path)
    path = out_dir / "hypervolume_compute.png"
    _plot_by_compute(by_compute, ref, path)
    written.append(path)
    return written


def _plot_by_compute(points: list[ComputePoint], ref: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    hv = [p.hypervolume for p in points]
    for ax, x, label in (
        (axes[0], [p.epochs for p in points], "epochs trained (all trials)"),
        (axes[1], [p.seconds / 60 for p in points], "training minutes (all trials)"),
    ):
        ax.step(x, hv, where="post", marker="o", markersize=3)
        ax.set_xlabel(label)
        ax.set_ylabel("hypervolume (accuracy x ms)")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Front's hypervolume against compute; reference: accuracy {ref[0]:g}, "
        f"latency {ref[1]:.3g} ms",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
