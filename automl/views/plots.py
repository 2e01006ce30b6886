"""Accuracy against latency with every trial on it, one figure for the report and the dashboard.

- finished configurations: filled markers coloured by K, error bars for the latency IQR (and the
  accuracy range of repeated seeds where there are repeats);
- trials stopped early (or paused): hollow markers of their K's colour at their last validation
  accuracy, the epochs they had in the hover text: the divided networks a scheduler stopped are
  seen, not hidden;
- a latency whose IQR is over a quarter of its median: crossed out in red, on every view;
- the denoised front as a step line, the undivided baseline as a star.

Traces are added in a fixed order (K ascending, then stopped, noisy, front, baseline), so the
legend reads the same on every draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automl.search.front import NOISY_SPREAD_RATIO, ConfigPoint
from automl.views.colours import k_colour
from automl.views.trials_table import TrialRow

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Labels", "accuracy_latency_figure", "point_hover", "row_hover"]

NOISY_COLOUR = "#d62728"


@dataclass(frozen=True)
class Labels:
    title: str
    x: str
    y: str


def _width(r: TrialRow) -> str:
    return "-" if r.width is None else f"{r.width:.3g}"


def row_hover(r: TrialRow) -> str:
    lines = [
        f"trial {r.number}, K = {r.split_factor}, width {_width(r)} ({r.state})",
        (
            f"accuracy {r.accuracy:.4f} after {r.epochs} epoch(s)"
            if r.accuracy is not None
            else "no accuracy recorded"
        ),
    ]
    if r.latency_ms is not None:
        iqr = "-" if r.latency_iqr_ms is None else f"{r.latency_iqr_ms:.3g}"
        lines.append(f"latency {r.latency_ms:.3g} ms (IQR {iqr} ms)")
    if r.noisy:
        lines.append(f"NOISY latency: IQR {100 * r.spread_ratio:.0f}% of the median")
    if r.settings:
        lines.append(r.settings)
    if r.why:
        lines.append(r.why[:120])
    return "<br>".join(lines)


def point_hover(p: ConfigPoint, row: TrialRow | None) -> str:
    n = len(p.trials)
    lines = [
        f"trial {p.number}, K = {p.split_factor}"
        + (f", width {_width(row)}" if row is not None else "")
        + (f" (+ {n - 1} repeat(s): {', '.join(f'#{t}' for t in p.trials[1:])})" if n > 1 else ""),
        f"accuracy {p.accuracy:.4f}"
        + (
            f" (range {min(p.accuracies):.4f}-{max(p.accuracies):.4f})"
            if n > 1 or len(p.accuracies) > 1
            else ""
        ),
        f"latency {p.latency_ms:.3g} ms (IQR {p.latency_iqr_ms:.3g} ms)",
    ]
    if p.noisy:
        lines.append(f"NOISY latency: IQR {100 * (p.spread_ratio or 0):.0f}% of the median")
    if p.reused:
        lines.append("reused by " + ", ".join(f"#{t}" for t in p.reused))
    if p.absorbed:
        lines.append("stands for " + ", ".join(f"#{t}" for t in p.absorbed) + " (inside spread)")
    if row is not None and row.settings:
        lines.append(row.settings)
    return "<br>".join(lines)


def _error_bar(
    half_widths: list[float], colour: str, minus: list[float] | None = None
) -> dict[str, Any]:
    """Plotly's error-bar settings, shared by every marker trace of the figure."""
    bar: dict[str, Any] = {"type": "data", "array": half_widths, "color": colour}
    if minus is not None:
        bar |= {"symmetric": False, "arrayminus": minus}
    return bar | {"thickness": 1, "width": 3}


def _finished_trace(k: int, mine: list[ConfigPoint], by_number: dict[int, TrialRow]) -> Any:
    """K's configurations trained to the end: latency spread and seeds' accuracy range."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[p.latency_ms for p in mine],
        y=[p.accuracy for p in mine],
        mode="markers",
        name=f"K = {k} finished",
        legendgroup=f"K{k}",
        marker={"color": k_colour(k), "size": 10, "line": {"width": 1, "color": "#333"}},
        error_x=_error_bar([p.latency_iqr_ms / 2 for p in mine], k_colour(k)),
        error_y=_error_bar(
            [max(p.accuracies) - p.accuracy for p in mine],
            k_colour(k),
            minus=[p.accuracy - min(p.accuracies) for p in mine],
        ),
        text=[point_hover(p, by_number.get(p.number)) for p in mine],
        hovertemplate="%{text}<extra></extra>",
    )


def _stopped_trace(k: int, halted: list[TrialRow]) -> Any:
    """K's trials stopped at a rung, hollow, at their last accuracy."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[r.latency_ms for r in halted],
        y=[r.accuracy for r in halted],
        mode="markers",
        name=f"K = {k} stopped early (hollow: last accuracy)",
        legendgroup=f"K{k}",
        marker={"color": k_colour(k), "symbol": "circle-open", "size": 9, "line": {"width": 2}},
        error_x=_error_bar([(r.latency_iqr_ms or 0.0) / 2 for r in halted], k_colour(k)),
        text=[row_hover(r) for r in halted],
        hovertemplate="%{text}<extra></extra>",
    )


def _marked_traces(
    rows: Sequence[TrialRow], points: Sequence[ConfigPoint], stopped: bool
) -> list[Any]:
    """The marks over the points: trials over a budget, and latencies too noisy to rank."""
    import plotly.graph_objects as go

    traces = []
    over = [r for r in rows if r.finished and r.over_budget and r.latency_ms is not None]
    if over:
        traces.append(
            go.Scatter(
                x=[r.latency_ms for r in over],
                y=[r.accuracy for r in over],
                mode="markers",
                name="over a budget",
                marker={"color": "#bbbbbb", "symbol": "x", "size": 8},
                text=[row_hover(r) for r in over],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    noisy_points = [p for p in points if p.noisy]
    noisy_rows = [r for r in rows if stopped and r.stopped and r.noisy and r.latency_ms is not None]
    if noisy_points or noisy_rows:
        traces.append(
            go.Scatter(
                x=[p.latency_ms for p in noisy_points] + [r.latency_ms for r in noisy_rows],
                y=[p.accuracy for p in noisy_points] + [r.accuracy for r in noisy_rows],
                mode="markers",
                name=f"noisy latency (IQR > {NOISY_SPREAD_RATIO:.0%} of median)",
                marker={"color": NOISY_COLOUR, "symbol": "x-thin-open", "size": 16,
                        "line": {"width": 2, "color": NOISY_COLOUR}},
                hoverinfo="skip",
            )
        )  # fmt: skip
    return traces


def accuracy_latency_figure(
    rows: Sequence[TrialRow],
    points: Sequence[ConfigPoint],
    front: Sequence[ConfigPoint],
    baseline: int | None,
    labels: Labels,
    *,
    stopped: bool = True,
) -> go.Figure:
    """The figure (module text); ``baseline`` is the baseline's trial number, ``stopped=False``
    leaves the stopped trials out (their latency is not known on another target)."""
    import plotly.graph_objects as go

    by_number = {r.number: r for r in rows}
    fig = go.Figure()
    ks = sorted({p.split_factor for p in points} | {r.split_factor for r in rows if r.stopped})
    for k in ks:
        mine = [p for p in points if p.split_factor == k]
        if mine:
            fig.add_trace(_finished_trace(k, mine, by_number))
        halted = [r for r in rows if stopped and r.stopped and r.split_factor == k and r.latency_ms]
        if halted:
            fig.add_trace(_stopped_trace(k, halted))
    for trace in _marked_traces(rows, points, stopped):
        fig.add_trace(trace)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p.latency_ms for p in front],
                y=[p.accuracy for p in front],
                mode="lines+markers",
                line={"shape": "hv", "color": "black", "width": 1.5},
                # A ring around each front point: a front of one point is still visible.
                marker={"symbol": "circle-open", "size": 16, "color": "black"},
                name="Pareto front (configurations, denoised)",
                hoverinfo="skip",
            )
        )
    base = next((p for p in points if baseline is not None and baseline in p.trials), None)
    if base is not None:
        fig.add_trace(
            go.Scatter(
                x=[base.latency_ms],
                y=[base.accuracy],
                mode="markers+text",
                marker={"symbol": "star", "size": 18, "color": k_colour(1), "line": {"width": 1}},
                text=[f"baseline K=1 (#{base.number})"],
                textposition="top center",
                name="baseline (K = 1, default width)",
                hovertext=[point_hover(base, by_number.get(base.number))],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title={"text": labels.title},
        xaxis={"title": {"text": labels.x}},
        yaxis={"title": {"text": labels.y}},
        legend_title="division factor",
    )
    return fig
