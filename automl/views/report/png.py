"""The report's figures for papers and slides (matplotlib PNGs), the same content as the HTML
ones: every trial against latency coloured by K (stopped ones hollow, noisy latencies crossed out)
with the front and the baseline, and the learning curves. The hypervolume against compute is
``hypervolume_compute.png`` (epochs and minutes side by side), drawn by ``write_report``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from automl.search.front import NOISY_SPREAD_RATIO
from automl.views.colours import k_colour, k_shade
from automl.views.plots import NOISY_COLOUR
from automl.views.report.data import ACCURACY_LABEL, ReportData

__all__ = ["curves_png", "front_png"]

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
    """The same content as the HTML figure: finished configurations filled with their spread as
    error bars, stopped trials hollow, noisy latencies crossed out, the front and the baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    stopped = [r for r in data.rows if data.stopped_shown and r.stopped and r.latency_ms]
    for k in sorted({p.split_factor for p in data.points} | {r.split_factor for r in stopped}):
        mine = [p for p in data.points if p.split_factor == k]
        if mine:
            ax.errorbar(
                [p.latency_ms for p in mine],
                [p.accuracy for p in mine],
                xerr=[p.latency_iqr_ms / 2 for p in mine],
                yerr=[
                    [p.accuracy - min(p.accuracies) for p in mine],
                    [max(p.accuracies) - p.accuracy for p in mine],
                ],
                fmt="o",
                color=k_colour(k),
                markeredgecolor="black",
                markeredgewidth=0.4,
                markersize=6,
                elinewidth=0.8,
                capsize=2,
                label=f"K = {k} finished",
                zorder=3,
            )
        halted = [r for r in stopped if r.split_factor == k]
        if halted:
            ax.scatter(
                [r.latency_ms for r in halted],
                [r.accuracy for r in halted],
                facecolors="none",
                edgecolors=k_colour(k),
                linewidths=1.3,
                s=34,
                label=f"K = {k} stopped early (last accuracy)",
                zorder=3,
            )
    noisy = [(p.latency_ms, p.accuracy) for p in data.points if p.noisy] + [
        (r.latency_ms, r.accuracy) for r in stopped if r.noisy
    ]
    if noisy:
        ax.scatter(
            [x for x, _ in noisy],
            [y for _, y in noisy],
            marker="x",
            color=NOISY_COLOUR,
            s=90,
            linewidths=1.5,
            label=f"noisy latency (IQR > {NOISY_SPREAD_RATIO:.0%} of median)",
            zorder=5,
        )
    front = data.front_points
    if front:
        ax.step(
            [p.latency_ms for p in front],
            [p.accuracy for p in front],
            where="post",
            color="black",
            linewidth=1.2,
            label="Pareto front (configurations, denoised)",
            zorder=2,
        )
        # A ring around each front point: a front of one point is still visible.
        ax.scatter(
            [p.latency_ms for p in front],
            [p.accuracy for p in front],
            s=120,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            zorder=2,
        )
    if data.baseline is not None:
        b = data.baseline
        ax.scatter(
            [b.latency_ms],
            [b.accuracy],
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
            (b.latency_ms, b.accuracy),
            textcoords="offset points",
            xytext=(6, 8),
            fontsize=8,
        )
    ax.set_xlabel(data.latency_label)
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title(f"{data.study_name}: validation accuracy against latency", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="division factor", title_fontsize=7)
    _save(fig, path)


def curves_png(data: ReportData, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labelled: set[int] = set()
    ordered = sorted(data.curves, key=lambda c: (c.split_factor, c.number))
    per_k = Counter(c.split_factor for c in ordered)
    index: Counter[int] = Counter()
    for c in ordered:
        epochs = [e + 1 for e, a in enumerate(c.accuracies) if a is not None]
        accs = [a for a in c.accuracies if a is not None]
        ax.plot(
            epochs,
            accs,
            # A shade of K's colour per trial, dotted when it stopped early.
            color=k_shade(c.split_factor, index[c.split_factor], per_k[c.split_factor]),
            linestyle="-" if c.state == "complete" else ":",
            marker="o",
            markersize=2.5,
            linewidth=1,
            alpha=0.9,
            label=f"K = {c.split_factor}" if c.split_factor not in labelled else None,
        )
        index[c.split_factor] += 1
        labelled.add(c.split_factor)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ACCURACY_LABEL)
    ax.set_title(
        "Learning curves: validation accuracy after each epoch (dotted: stopped early)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8)
    _save(fig, path)
