"""Reports of a study: the Pareto table (text and files) and ``write_report``, which writes the
whole report (``automl report``) from one read of the study (``automl.views.report.data``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from automl.search.front import NOISY_SPREAD_RATIO, ConfigPoint, is_noisy
from automl.search.progress import ComputePoint, reference_point
from automl.search.records import ParetoRecord
from automl.search.study import AutoMLStudy

__all__ = [
    "COMPLEXITY_LEGEND",
    "TRIALS_CSV_COLUMNS",
    "format_front",
    "reference_point",
    "write_report",
]

# Both counts are printed, each said explicitly: the paper's "GFLOPs" are multiply-accumulates,
# and a reader comparing with its tables must not be off by 2x.
COMPLEXITY_LEGEND = (
    "MACs (paper's GFLOPs): multiply-adds plus 2 ops per BatchNorm output; "
    "FLOPs = 2 x MACs of convolutions and matrix products (PyTorch's counter); M = 10^6"
)


# trials.csv's columns (``TrialRow.csv_record``), for a study with no trial yet.
TRIALS_CSV_COLUMNS = [
    "number",
    "state",
    "K",
    "width_mult",
    "co_training",
    "network",
    "epochs",
    "rung",
    "rungs",
    "rung_epochs",
    "val_accuracy",
    "val_accuracy_min",
    "val_accuracy_max",
    "test_accuracy",
    "latency_ms",
    "latency_iqr_ms",
    "latency_noisy",
    "n_params",
    "macs",
    "why_stopped",
    "reused_from",
    "final_phase",
]


def format_front(front: Sequence[ParetoRecord]) -> str:
    """The Pareto front as an aligned text table, fastest first; a noisy latency said in the
    last column."""
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
        "note",
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
                # Said on every view: a point the machine's noise may have placed.
                "NOISY latency" if is_noisy(r.latency_ms, r.latency_iqr_ms) else "",
            )
        )
    if not rows:
        return "(no completed trial yet: the Pareto front is empty)"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.append(COMPLEXITY_LEGEND)
    if any(row[-1] for row in rows):
        lines.append(
            f"NOISY latency: its IQR is over {NOISY_SPREAD_RATIO:.0%} of its median; not picked "
            "by `automl export --trial best` unless --allow-noisy"
        )
    return "\n".join(lines)


def _table_rows(front: list[ConfigPoint]) -> list[dict[str, object]]:
    rows = []
    for p in front:
        r = p.record
        d = asdict(r)
        params = d.pop("params")
        d.update({f"param_{k}": v for k, v in params.items()})
        d["member_accuracies"] = " ".join(f"{a:.4f}" for a in r.member_accuracies)
        # How sure: the runs merged into the point, their accuracy range, the noise flag.
        d["trials"] = " ".join(str(n) for n in p.trials)
        d["stands_for"] = " ".join(str(n) for n in p.absorbed)
        d["accuracy_min"], d["accuracy_max"] = min(p.accuracies), max(p.accuracies)
        d["latency_noisy"] = p.noisy
        rows.append(d)
    return rows


def write_report(
    study: AutoMLStudy,
    out: str | Path,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    max_latency_ms: float | None = None,
) -> list[Path]:
    """Write the report of ``study`` under ``out``; returns the paths written.

    ``index.html`` is the report: one self-contained page (plotly inlined, opens offline) with
    the answer to "does dividing pay here" (a headline and one line per K), the model to ship
    (under ``max_latency_ms``, else at the knee of the front) with its ``automl export``
    command, the Pareto table (the baseline in it), every trial against latency, the hypervolume
    against compute, the learning curves and every trial in a sortable table. Beside it:
    pareto.{csv,md,html}, trials.csv (every trial, the table's columns), hypervolume_compute.csv,
    each figure as its own HTML page (pareto_front.html, hypervolume.html, learning_curves.html,
    sharing a local plotly.min.js) and as a PNG for papers and slides (pareto_front.png,
    hypervolume_compute.png, learning_curves.png).

    With ``device`` (and ``batch_size``) the front and the table use the latencies timed on that
    target (``AutoMLStudy.pareto_front(device=...)``); the hypervolume history stays that of the
    search, on the workers' own devices.
    """
    from automl.views.report.data import collect
    from automl.views.report.figures import curves_figure, front_figure, hypervolume_figure
    from automl.views.report.page import index_page, pareto_page, pick_words
    from automl.views.report.png import curves_png, front_png

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(study, device=device, batch_size=batch_size, max_latency_ms=max_latency_ms)
    front = data.front
    written: list[Path] = []

    rows = _table_rows(data.front_points)
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
    table = format_front(front)
    if data.baseline is not None and not data.on_front(data.baseline):
        # The baseline stays in view when the front dominates it: it is what K > 1 must beat.
        table += "\n\nbaseline (K = 1 at the default width), dominated:\n" + format_front(
            [data.baseline]
        )
    verdict = "\n".join(f"- {v}" for v in data.verdicts)
    pick = "\n".join(pick_words(data))
    path.write_text(
        f"# Pareto front of study `{data.study_name}`\n\n{data.headline}\n\n{verdict}\n\n"
        f"```\n{table}\n```\n\n## Which model to ship\n\n```\n{pick}\n```\n"
    )
    written.append(path)

    path = out_dir / "pareto.html"
    path.write_text(pareto_page(data, COMPLEXITY_LEGEND))
    written.append(path)

    path = out_dir / "trials.csv"
    records = [r.csv_record() for r in data.rows]
    with path.open("w", newline="") as f:
        # The columns of a row that has them all: a study with no trial still gets its header.
        fields = list(records[0]) if records else TRIALS_CSV_COLUMNS
        tw = csv.DictWriter(f, fieldnames=fields)
        tw.writeheader()
        tw.writerows(records)
    written.append(path)

    figures = []
    # Stopped trials alone still make a plot: what happened to them is what a reader asks.
    plotted = bool(data.points) or any(r.stopped for r in data.rows if data.stopped_shown)
    if plotted:
        figures.append(
            ("Accuracy against latency, every trial", "pareto_front", front_figure(data))
        )
    if data.completed:
        path = out_dir / "hypervolume_compute.csv"
        with path.open("w", newline="") as f:
            hw = csv.writer(f)
            hw.writerow(["trials_ended", "epochs", "train_seconds", "hypervolume"])
            for pt in data.history:
                hw.writerow([pt.trials_ended, pt.epochs, round(pt.seconds, 2), pt.hypervolume])
        written.append(path)
        figures.append(("Hypervolume against compute", "hypervolume", hypervolume_figure(data)))
    if data.curves:
        figures.append(("Learning curves", "learning_curves", curves_figure(data)))
    for _, name, fig in figures:
        path = out_dir / f"{name}.html"
        # "directory": the pages load plotly.min.js written beside them, never a CDN.
        fig.write_html(str(path), include_plotlyjs="directory")
        written.append(path)
    if figures:
        written.append(out_dir / "plotly.min.js")
    pngs = []
    if plotted:
        pngs.append(("pareto_front.png", front_png))
    if data.curves:
        pngs.append(("learning_curves.png", curves_png))
    for name, draw in pngs:
        path = out_dir / name
        draw(data, path)
        written.append(path)
    if data.completed:
        path = out_dir / "hypervolume_compute.png"
        _plot_by_compute(data.history, list(data.reference), path)
        written.append(path)

    path = out_dir / "index.html"
    others = [p.name for p in written]
    path.write_text(index_page(data, figures, others, COMPLEXITY_LEGEND))
    written.insert(0, path)
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
