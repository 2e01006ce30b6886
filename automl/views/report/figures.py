"""The report's interactive figures (plotly), drawn for this problem: accuracy against latency
coloured by the division factor K with the baseline marked and the front joined, the hypervolume
against compute with its reference point in words, and the learning curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.views.colours import k_colour
from automl.views.report.data import ACCURACY_LABEL, ReportData, fmt_acc, fmt_latency, fmt_millions

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from automl.search.records import ParetoRecord

__all__ = ["curves_figure", "front_figure", "hypervolume_figure"]


def _hover(r: ParetoRecord) -> str:
    params = " ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in sorted(r.params.items())
    )
    return (
        f"trial {r.number}, K={r.split_factor}<br>accuracy {fmt_acc(r.accuracy)}, "
        f"latency {fmt_latency(r.latency_ms)}<br>{fmt_millions(r.n_params, 'M params')}, "
        f"{fmt_millions(r.flops, 'MFLOPs')}<br>{params}"
    )


def front_figure(data: ReportData) -> go.Figure:
    """Every completed trial, coloured by K; the front as a step line; the baseline a star."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k in sorted({r.split_factor for r in data.completed}):
        pts = [r for r in data.completed if r.split_factor == k]
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in pts],
                y=[100 * r.accuracy for r in pts],
                mode="markers",
                name=f"K = {k}",
                marker={"color": k_colour(k), "size": 9, "line": {"width": 0.5}},
                hovertext=[_hover(r) for r in pts],
                hoverinfo="text",
            )
        )
    if data.front:
        # Fastest first, accuracy rising: each point holds its accuracy until the next latency.
        fig.add_trace(
            go.Scatter(
                x=[r.latency_ms for r in data.front],
                y=[100 * r.accuracy for r in data.front],
                mode="lines+markers",
                line={"shape": "hv", "color": "black", "width": 1.5},
                # A ring around each front point: a front of one point is still visible.
                marker={"symbol": "circle-open", "size": 15, "color": "black"},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if data.baseline is not None:
        b = data.baseline
        fig.add_trace(
            go.Scatter(
                x=[b.latency_ms],
                y=[100 * b.accuracy],
                mode="markers+text",
                marker={"symbol": "star", "size": 18, "color": k_colour(1), "line": {"width": 1}},
                text=[f"baseline K=1 (#{b.number})"],
                textposition="top center",
                name="baseline (K = 1, default width)",
                hovertext=[_hover(b)],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=f"{data.study_name}: validation accuracy against latency",
        xaxis_title=data.latency_label,
        yaxis_title=ACCURACY_LABEL,
        legend_title="division factor",
        template="plotly_white",
    )
    return fig


def hypervolume_figure(data: ReportData) -> go.Figure:
    """The front's hypervolume after each ended trial, against the training minutes spent."""
    import plotly.graph_objects as go

    pts = data.history
    fig = go.Figure(
        go.Scatter(
            x=[p.seconds / 60 for p in pts],
            y=[p.hypervolume for p in pts],
            mode="lines+markers",
            line={"shape": "hv"},
            name="hypervolume",
            hovertext=[
                f"{p.trials_ended} trials ended, {p.epochs} epochs, "
                f"{p.seconds / 60:.1f} min trained: {p.hypervolume:.4g}"
                for p in pts
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title={"text": f"Hypervolume against compute<br><sup>{data.reference_words}</sup>"},
        xaxis_title="training minutes, all trials (pruned and failed included)",
        yaxis_title="hypervolume (accuracy fraction × ms), higher is better ↑",
        template="plotly_white",
        showlegend=False,
    )
    return fig


def curves_figure(data: ReportData) -> go.Figure:
    """Validation accuracy per epoch of every trial that recorded one, coloured by K."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown: set[int] = set()
    for c in sorted(data.curves, key=lambda c: (c.split_factor, c.number)):
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(c.accuracies) + 1)),
                y=[None if a is None else 100 * a for a in c.accuracies],
                mode="lines+markers",
                name=f"#{c.number} K={c.split_factor} ({c.state})",
                legendgroup=f"K={c.split_factor}",
                legendgrouptitle_text=(
                    f"K = {c.split_factor}" if c.split_factor not in shown else None
                ),
                line={"color": k_colour(c.split_factor), "width": 1.2},
                marker={"size": 4},
            )
        )
        shown.add(c.split_factor)
    fig.update_layout(
        title="Learning curves: validation accuracy after each epoch",
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis_title=ACCURACY_LABEL,
        template="plotly_white",
    )
    return fig
