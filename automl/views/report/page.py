"""The report's HTML: ``index.html``, one self-contained page with plotly's library inlined once,
so that it opens offline (no CDN) and can be mailed or archived as a single file. It answers, top
to bottom: does dividing pay here (a headline and one line per K), which model to ship (the pick
and its export command), how sure we are (spreads, noisy latencies marked, repeats merged), then
the front, the figures and every trial in a sortable table."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from automl.search.front import NOISY_SPREAD_RATIO, ConfigPoint
from automl.views.report.data import ReportData, fmt_acc, fmt_latency, fmt_millions
from automl.views.trials_table import COLUMNS

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from automl.search.records import ParetoRecord

__all__ = [
    "TABLE_HEADER",
    "answer_lines",
    "index_page",
    "pareto_page",
    "pick_words",
    "table_rows",
]

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
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " ▲"; }
table.sortable th[aria-sort=descending]::after { content: " ▼"; }
tr.baseline { background: #fff6d5; font-weight: 600; }
tr.noisy td { color: #b00020; }
td.why { text-align: left; font-size: 0.85em; max-width: 28em; }
p.note { color: #555; font-size: 0.9em; }
div.verdict { border-left: 4px solid #1f77b4; padding: 0.2em 1em; background: #f5f9fd; }
div.pick { border: 2px solid #2ca02c; padding: 0.5em 1em; background: #f3fbf3; }
div.pick code { background: #fff; padding: 2px 4px; display: inline-block; }
.warning { color: #b00020; }
"""

# Click a header to sort by it (again: the other way); numbers as numbers, "-" last.
_SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute('data-sort');
        if (v === null) { v = cell.textContent; }
        var n = parseFloat(v.replace(/^#/, '').replace(/,/g, ''));
        return isNaN(n) ? v : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var missing = (x === '-') - (y === '-');
        if (missing) { return missing; }
        if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }
        return typeof x === 'number' ? -1 : 1;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _cot(r: ParetoRecord) -> str:
    p = r.params
    if r.split_factor == 1 or "cot_weight" not in p:
        return "-"
    kind = f" {p['cot_kind']}" if "cot_kind" in p else ""
    return f"{float(p['cot_weight']):.3g}{kind}"


def _point_of(data: ReportData, number: int) -> ConfigPoint | None:
    return next((p for p in data.points if number in p.trials), None)


def table_rows(data: ReportData) -> list[tuple[str, ...]]:
    """The front, fastest first, and the baseline: marked where it is on the front, appended
    after it where it is not (the question is always "compared with K = 1?"). A configuration
    trained several times is one row, its accuracy the mean with the range; a noisy latency is
    said in the first column."""
    records = list(data.front)
    if data.baseline is not None and not data.on_front(data.baseline):
        records.append(data.baseline)
    rows: list[tuple[str, ...]] = []
    for r in records:
        point = _point_of(data, r.number)
        mark = "front"
        if data.baseline is not None and r.number == data.baseline.number:
            on = "on the front" if data.on_front(r) else "dominated"
            mark = f"baseline (K=1), {on}"
        if point is not None and len(point.trials) > 1:
            mark += f", {len(point.trials)} runs"
        if point is not None and point.absorbed:
            mark += ", stands for " + " ".join(f"#{n}" for n in point.absorbed)
        if point is not None and point.noisy:
            mark += f", NOISY latency ({100 * (point.spread_ratio or 0):.0f}% IQR)"
        width = r.params.get("width_mult")
        acc = fmt_acc(r.accuracy)
        if point is not None and len(point.accuracies) > 1:
            acc += f" [{min(point.accuracies):.4f}, {max(point.accuracies):.4f}]"
        rows.append(
            (
                mark,
                f"#{r.number}",
                str(r.split_factor),
                f"{float(width):.3g}" if width is not None else "-",
                _cot(r),
                acc,
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
        classes = []
        if row[0].startswith("baseline"):
            classes.append("baseline")
        if "NOISY" in row[0]:
            classes.append("noisy")
        cls = f" class='{' '.join(classes)}'" if classes else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    if not body:
        return "<p>No completed trial yet: the Pareto front is empty.</p>"
    return f"<table id='front-table'><tr>{head}</tr>{''.join(body)}</table>"


def _all_trials_table(data: ReportData) -> str:
    """Every trial, sortable by any column (a click on its header)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for r in data.rows:
        cells = r.cells()
        # Sort keys where the text is not the value: the trial number, accuracy with a range.
        keys = {
            "trial": str(r.number),
            "val accuracy": "-" if r.accuracy is None else f"{r.accuracy:.5g}",
            "rung": "-" if r.rung is None else str(r.rung),
            "IQR ms": "-" if r.latency_iqr_ms is None else f"{r.latency_iqr_ms:.5g}",
        }
        tds = []
        for c in COLUMNS:
            sort = f" data-sort='{html.escape(keys[c])}'" if c in keys else ""
            cls = " class='why'" if c == "why" else ""
            tds.append(f"<td{sort}{cls}>{html.escape(cells[c])}</td>")
        classes = [r.state] + (["noisy"] if r.noisy else [])
        body.append(f"<tr class='{' '.join(classes)}'>{''.join(tds)}</tr>")
    return (
        f"<table id='trials' class='sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _legend(data: ReportData, complexity: str) -> str:
    return (
        f"<p class='note'>Accuracy on the validation split, as a fraction (the test split is "
        f"never used for selection). Latency: median over repeated runs at batch "
        f"{data.batch_size} on {html.escape(data.device)}, IQR its inter-quartile range; a "
        f"latency whose IQR is over {NOISY_SPREAD_RATIO:.0%} of its median is NOISY: the machine "
        f"was too busy to rank on it. One row per configuration (network and training "
        f"settings): repeated runs are merged (mean accuracy, its range in brackets), and a point "
        f"whose latency and accuracy differences from its neighbour are inside their measured "
        f"spread is left to that neighbour. params in millions. {html.escape(complexity)}</p>"
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


def answer_lines(data: ReportData) -> list[str]:
    """The closing answer of ``automl search`` and ``automl status``: whether dividing pays here
    (the headline and one verdict per K), then the model to ship."""
    return [
        f"Does dividing pay here? {data.headline}",
        *(f"  {line}" for line in data.verdicts),
        "Which model to ship:",
        *(f"  {line}" for line in pick_words(data)),
    ]


def pick_words(data: ReportData) -> list[str]:
    """The recommended pick in lines of text: what, why, the warnings, the command."""
    chosen = data.pick
    p = chosen.point
    if p is None:
        lines = [f"No model to recommend: {chosen.reason}."]
        lines += [f"warning: {w}" for w in chosen.warnings]
        noisy = data.noisy_pick.point if data.noisy_pick is not None else None
        if noisy is not None:
            lines += [
                f"With noisy latencies allowed it would be trial #{noisy.number}: K = "
                f"{noisy.split_factor}, validation accuracy {noisy.accuracy:.4f}, latency "
                f"{noisy.latency_ms:.3g} ms (IQR {noisy.latency_iqr_ms:.3g} ms); re-measure "
                "it on a quiet machine (automl remeasure) before trusting its latency.",
                f"Ship it anyway with: {data.ship_command}",
            ]
        return lines
    row = next((r for r in data.rows if r.number == p.number), None)
    width = "" if row is None or row.width is None else f", width {row.width:.3g}"
    why = (
        f"the most accurate within the {chosen.budget_ms:g} ms budget"
        if chosen.budget_ms is not None
        else "the knee of the front (most accuracy per ms; pass --max-latency-ms for a budget)"
    )
    runs = f", mean of {len(p.trials)} runs" if len(p.trials) > 1 else ""
    return [
        f"Ship trial #{p.number}: K = {p.split_factor}{width}, validation accuracy "
        f"{p.accuracy:.4f}{runs}, latency {p.latency_ms:.3g} ms (IQR {p.latency_iqr_ms:.3g} ms); "
        f"{why}.",
        *(f"warning: {w}" for w in chosen.warnings),
        f"Ship it with: {data.ship_command}",
    ]


def _pick_box(data: ReportData) -> str:
    lines = pick_words(data)
    parts = []
    for line in lines:
        if line.startswith(("Ship it with: ", "Ship it anyway with: ")):
            head, cmd = line.split(": ", 1)
            parts.append(f"<p>{html.escape(head)}:<br><code>{html.escape(cmd)}</code></p>")
        elif line.startswith("warning: "):
            parts.append(f"<p class='warning'>{html.escape(line)}</p>")
        else:
            parts.append(f"<p>{html.escape(line)}</p>")
    return f"<div class='pick' id='pick'><h2>Which model to ship</h2>{''.join(parts)}</div>"


def summary(data: ReportData) -> str:
    """How many trials, in which state, how many configurations and front points."""
    states = Counter(r.state for r in data.rows)
    order = ("complete", "stopped", "paused", "failed", "running", "waiting")
    counts = ", ".join(f"{states[s]} {s}" for s in order if states[s])
    noisy = sum(1 for r in data.rows if r.noisy)
    return (
        f"{len(data.rows)} trials ({counts or 'none yet'}); {len(data.points)} finished "
        f"configurations, {len(data.front_points)} on the Pareto front"
        + (f"; {noisy} with a NOISY latency" if noisy else "")
        + "."
    )


def baseline_words(data: ReportData) -> str:
    """The baseline in one sentence, whatever happened to it."""
    if data.baseline is not None:
        b = data.baseline
        return (
            f"Baseline (K = 1 at the default width): trial #{b.number}, "
            f"{fmt_acc(b.accuracy)} at {fmt_latency(b.latency_ms)}."
        )
    row = data.baseline_row
    if row is None:
        return "The baseline (K = 1 at the default width) has not started yet."
    if row.state in ("running", "waiting"):
        return f"The baseline (K = 1 at the default width), trial #{row.number}, is {row.state}."
    why = f": {row.why}" if row.why else ""
    return f"The baseline (K = 1 at the default width), trial #{row.number}, {row.state}{why}."


def index_page(
    data: ReportData,
    figures: Sequence[tuple[str, str, go.Figure]],
    files: Sequence[str],
    complexity: str,
) -> str:
    """index.html: the verdict, the pick, the front table, every figure (heading, id, figure),
    every trial and links to the other files."""
    from plotly.offline import get_plotlyjs

    title = html.escape(f"Study {data.study_name}")
    sections = "".join(
        f"<h2>{html.escape(heading)}</h2>{_figure_div(fig, div_id)}"
        for heading, div_id, fig in figures
    )
    verdicts = "".join(f"<li>{html.escape(v)}</li>" for v in data.verdicts)
    links = "".join(f"<li><a href='{html.escape(f)}'>{html.escape(f)}</a></li>" for f in files)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{title}</h1>"
        f"<p id='summary'>{html.escape(summary(data))} {html.escape(baseline_words(data))}</p>"
        f"<div class='verdict' id='verdict'><h2>Does dividing pay here?</h2>"
        f"<p><strong>{html.escape(data.headline)}</strong></p><ul>{verdicts}</ul></div>"
        f"{_pick_box(data)}"
        f"<h2>Pareto front</h2>{_table(data)}{_legend(data, complexity)}"
        f"{sections}"
        f"<h2>All trials</h2><p class='note'>Click a column's header to sort by it. A trial "
        f"stopped early shows its last validation accuracy after the epochs it had.</p>"
        f"{_all_trials_table(data)}"
        f"<h2>Files</h2><ul>{links}</ul>"
        f"<script type='text/javascript'>{_SORT_SCRIPT}</script></body></html>"
    )
