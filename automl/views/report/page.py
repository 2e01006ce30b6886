"""The report's HTML: the Pareto table with rounded numbers and units (the baseline always in it)
and ``index.html``, one self-contained page with plotly's library inlined once, so that it opens
offline (no CDN) and can be mailed or archived as a single file."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from automl.views.report.data import ReportData, fmt_acc, fmt_latency, fmt_millions

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from automl.search.records import ParetoRecord

__all__ = ["TABLE_HEADER", "index_page", "pareto_page", "table_rows"]

TABLE_HEADER = (
    "",
    "trial",
    "K",
    "width",
    "co-training",
    "val accuracy",
    "test accuracy",
    "latency (median)",
    "latency IQR",
    "mode",
    "params",
    "MMACs",
    "MFLOPs",
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
tr.baseline { background: #fff6d5; font-weight: 600; }
p.note { color: #555; font-size: 0.9em; }
"""


def _cot(r: ParetoRecord) -> str:
    p = r.params
    if r.split_factor == 1 or "cot_weight" not in p:
        return "-"
    kind = f" {p['cot_kind']}" if "cot_kind" in p else ""
    return f"{float(p['cot_weight']):.3g}{kind}"


def table_rows(data: ReportData) -> list[tuple[str, ...]]:
    """The front, fastest first, and the baseline: marked where it is on the front, appended
    after it where it is not (the question is always "compared with K = 1?")."""
    records = list(data.front)
    if data.baseline is not None and not data.on_front(data.baseline):
        records.append(data.baseline)
    rows: list[tuple[str, ...]] = []
    for r in records:
        mark = "front"
        if data.baseline is not None and r.number == data.baseline.number:
            on = "on the front" if data.on_front(r) else "dominated"
            mark = f"baseline (K=1), {on}"
        width = r.params.get("width_mult")
        rows.append(
            (
                mark,
                f"#{r.number}",
                str(r.split_factor),
                f"{float(width):.3g}" if width is not None else "-",
                _cot(r),
                fmt_acc(r.accuracy),
                fmt_acc(r.test_accuracy),
                fmt_latency(r.latency_ms),
                fmt_latency(r.latency_iqr_ms),
                r.latency_mode or "-",
                fmt_millions(r.n_params, "M"),
                f"{r.macs / 1e6:.3g}" if r.macs is not None else "-",
                f"{r.flops / 1e6:.3g}" if r.flops is not None else "-",
            )
        )
    return rows


def _table(data: ReportData) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEADER)
    body = []
    for row in table_rows(data):
        cls = " class='baseline'" if row[0].startswith("baseline") else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    if not body:
        return "<p>No completed trial yet: the Pareto front is empty.</p>"
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _legend(data: ReportData, complexity: str) -> str:
    return (
        f"<p class='note'>Accuracy on the validation split (the test split is never used for "
        f"selection). Latency: median over repeated runs at batch {data.batch_size} on "
        f"{html.escape(data.device)}, IQR its inter-quartile range. params in millions. "
        f"{html.escape(complexity)}</p>"
    )


def pareto_page(data: ReportData, complexity: str) -> str:
    """pareto.html: the table alone."""
    title = html.escape(f"Pareto front of {data.study_name}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>{_table(data)}"
        f"{_legend(data, complexity)}</body></html>"
    )


def _figure_div(fig: go.Figure, div_id: str) -> str:
    # The library is inlined once in <head>; each figure carries only its data.
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
    )


def index_page(
    data: ReportData,
    figures: Sequence[tuple[str, str, go.Figure]],
    files: Sequence[str],
    complexity: str,
) -> str:
    """index.html: the table, every figure (heading, id, figure) and links to the other files."""
    from plotly.offline import get_plotlyjs

    title = html.escape(f"Study {data.study_name}")
    sections = "".join(
        f"<h2>{html.escape(heading)}</h2>{_figure_div(fig, div_id)}"
        for heading, div_id, fig in figures
    )
    if data.baseline is None:
        base = "The baseline (K = 1 at the default width) has not completed yet."
    else:
        b = data.baseline
        base = (
            f"Baseline (K = 1 at the default width): trial #{b.number}, "
            f"{fmt_acc(b.accuracy)} at {fmt_latency(b.latency_ms)}."
        )
    links = "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>" for f in files)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{title}</h1>"
        f"<p>{len(data.completed)} completed trials; {len(data.front)} on the Pareto front. "
        f"{html.escape(base)}</p>"
        f"<h2>Pareto front</h2>{_table(data)}{_legend(data, complexity)}"
        f"{sections}<h2>Files</h2><ul>{links}</ul></body></html>"
    )
