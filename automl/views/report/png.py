"""The report's figures for papers and slides (matplotlib PNGs), the same content as the HTML
ones: the front coloured by K with the baseline marked and joined as a step line, the hypervolume
against compute with its reference point, and the learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.views.colours import k_colour
from automl.views.report.data import ACCURACY_LABEL, ReportData

__all__ = ["curves_png", "front_png", "hypervolume_png"]

DPI = 150


def _pyplot() -> Any:
    import matplotlib

    # No display on workers and servers: draw to files only.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def front_png(data: ReportData, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for k in sorted({r.split_factor for r in data.completed}):
        pts = [r for r in data.completed if r.split_factor == k]
        ax.scatter(
            [r.latency_ms for r in pts],
            [100 * r.accuracy for r in pts],
            color=k_colour(k),
            s=28,
            edgecolors="black",
            linewidths=0.4,
            label=f"K = {k}",
            zorder=3,
        )
    if data.front:
        ax.step(
            [r.latency_ms for r in data.front],
            [100 * r.accuracy for r in data.front],
            where="post",
            color="black",
            linewidth=1.2,
            label="Pareto front",
            zorder=2,
        )
        # A ring around each front point: a front of one point is still visible.
        ax.scatter(
            [r.latency_ms for r in data.front],
            [100 * r.accuracy for r in data.front],
            s=110,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            zorder=2,
        )
    if data.baseline is not None:
        b = data.baseline
        ax.scatter(
            [b.latency_ms],
            [100 * b.accuracy],
            marker="*",
            s=260,
            color=k_colour(1),
            edgecolors="black",
            linewidths=0.8,
            label="baseline (K = 1, default width)",
            zorder=4,
        )
        ax.annotate(
            f"baseline #{b.number}",
            (b.latency_ms, 100 * b.accuracy),
            textcoords="offset points",
            xytext=(6, 8),
            fontsize=8,
        )
    ax.set_xlabel(data.latency_label)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title(f"{data.study_name}: validation accuracy against latency", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="division factor", title_fontsize=8)
    _save(fig, path)


def hypervolume_png(data: ReportData, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.step(
        [p.seconds / 60 for p in data.history],
        [p.hypervolume for p in data.history],
        where="post",
        marker="o",
        markersize=3,
    )
    ax.set_xlabel("training minutes, all trials (pruned and failed included)")
    ax.set_ylabel("hypervolume (accuracy fraction × ms), higher is better ↑")
    # The reference point in the title: a hypervolume means nothing without its corner.
    ax.set_title(
        f"Hypervolume against compute\nreference: accuracy {data.reference[0]:g}, latency "
        f"{data.reference[1]:.3g} ms (1.1 × slowest completed trial)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    _save(fig, path)


def curves_png(data: ReportData, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labelled: set[int] = set()
    for c in sorted(data.curves, key=lambda c: (c.split_factor, c.number)):
        epochs = [e + 1 for e, a in enumerate(c.accuracies) if a is not None]
        accs = [100 * a for a in c.accuracies if a is not None]
        ax.plot(
            epochs,
            accs,
            color=k_colour(c.split_factor),
            marker="o",
            markersize=2.5,
            linewidth=1,
            alpha=0.8,
            label=f"K = {c.split_factor}" if c.split_factor not in labelled else None,
        )
        labelled.add(c.split_factor)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title("Learning curves: validation accuracy after each epoch", fontsize=10)
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8)
    _save(fig, path)
