"""The report's interactive figures (plotly), drawn for this problem: accuracy against latency
with every trial (``automl.views.plots``), the hypervolume against compute with its reference point
in words, and the learning curves, one shade of K's colour per trial."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from automl.views.colours import k_shade
from automl.views.plots import Labels, accuracy_latency_figure
from automl.views.report.data import ACCURACY_LABEL, ReportData

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["curves_figure", "front_figure", "hypervolume_figure"]


def front_figure(data: ReportData) -> go.Figure:
    """Every trial, finished and stopped, coloured by K; the denoised front; the baseline
    (``automl.views.plots``)."""
    base = data.baseline.number if data.baseline is not None else None
    fig = accuracy_latency_figure(
        data.rows,
        data.points,
        data.front_points,
        base,
        Labels(
            f"{data.study_name}: validation accuracy against latency, every trial "
            "(bars: latency IQR, accuracy range of repeats)",
            data.latency_label,
            ACCURACY_LABEL,
        ),
        stopped=data.stopped_shown,
    )
    fig.update_layout(template="plotly_white")
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
    ordered = sorted(data.curves, key=lambda c: (c.split_factor, c.number))
    per_k = Counter(c.split_factor for c in ordered)
    index: Counter[int] = Counter()
    for c in ordered:
        # A shade of K's colour per trial: twenty curves of one K stay apart.
        colour = k_shade(c.split_factor, index[c.split_factor], per_k[c.split_factor])
        index[c.split_factor] += 1
        fig.add_trace(
            go.Scatter(
                x=list(range(1, len(c.accuracies) + 1)),
                y=list(c.accuracies),
                mode="lines+markers",
                name=f"#{c.number} K={c.split_factor} ({c.state})",
                legendgroup=f"K={c.split_factor}",
                legendgrouptitle_text=(
                    f"K = {c.split_factor}" if c.split_factor not in shown else None
                ),
                line={
                    "color": colour,
                    "width": 1.2,
                    "dash": "solid" if c.state == "complete" else "dot",
                },
                marker={"size": 4},
            )
        )
        shown.add(c.split_factor)
    fig.update_layout(
        title="Learning curves: validation accuracy after each epoch (dotted: stopped early)",
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis_title=ACCURACY_LABEL,
        template="plotly_white",
    )
    return fig
