"""What optuna-dashboard shows of a study without a click: plots and notes pushed with its own API.

Three study plots (``optuna_dashboard.save_plotly_graph_object``, each under a fixed id so that a
push replaces the previous one): every trial against latency coloured by K (stopped ones hollow,
noisy latencies crossed out, the denoised front joined, the baseline marked; ``automl.views.plots``,
the report's figure) with axes that say which way is better, on which device and batch size;
validation accuracy per epoch of every trial; and the front's hypervolume against compute. The
dashboard lists them in ``PLOT_ORDER`` (``automl.views.dashboard_guard`` fixes the order). One
note per ended trial (``optuna_dashboard.save_note``): its architecture, members' accuracies,
latency per execution mode (noisy said), where a reused outcome came from, and why it was
stopped, paused or failed.

Pushed when ``automl dashboard`` starts and after every trial a worker ends
(``automl.search.runner``). Pushing is a courtesy to the viewer: ``publish_trial_end`` and
``publish_study`` log a warning on any error and never raise, so a trial never fails for it.

A plot is stored as several study attributes written one at a time, so a reader may catch a
half-written one; optuna-dashboard then leaves that card empty (it catches the parse error)
until its next poll, and the next push writes it whole again.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.search.front import configurations, front_of, is_noisy
from automl.search.progress import hypervolume_by_compute, reference_point
from automl.store.attrs import TrialAttr
from automl.views.colours import k_shade
from automl.views.plots import Labels, accuracy_latency_figure
from automl.views.trials_table import final_phase_words, trial_rows

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from automl.space import SearchSpace

__all__ = [
    "CURVES_PLOT_ID",
    "FRONT_PLOT_ID",
    "HYPERVOLUME_PLOT_ID",
    "PLOT_ORDER",
    "curves_figure",
    "front_figure",
    "hypervolume_figure",
    "is_baseline",
    "publish_study",
    "publish_trial_end",
    "push_notes",
    "push_plots",
    "trial_note",
]

log = logging.getLogger(__name__)

FRONT_PLOT_ID = "automl-pareto-front"
CURVES_PLOT_ID = "automl-learning-curves"
HYPERVOLUME_PLOT_ID = "automl-hypervolume-compute"
# The order the dashboard shows them in, whatever order the storage returns their attributes.
PLOT_ORDER = (FRONT_PLOT_ID, CURVES_PLOT_ID, HYPERVOLUME_PLOT_ID)

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# The dashboard draws the figure in its own theme; plotly's default template would add ~8 kB of
# JSON to every push for nothing.
_LAYOUT: dict[str, Any] = {
    "template": "none",
    # Room above the plot for a two-line title below the dashboard's tool bar.
    "margin": {"l": 70, "r": 20, "t": 80, "b": 60},
    "legend": {"orientation": "h", "y": -0.2},
}


def _k(t: FrozenTrial) -> int:
    return int(t.params.get("split_factor", 1))


def _width(t: FrozenTrial, space: SearchSpace) -> float:
    return float(t.params.get("width_mult", space.model.default_width_mult))


def is_baseline(t: FrozenTrial, space: SearchSpace) -> bool:
    """The undivided network at the default width: what ``create_study`` enqueues first."""
    return _k(t) == 1 and math.isclose(_width(t, space), space.model.default_width_mult)


def _devices(trials: Iterable[FrozenTrial]) -> str:
    found = sorted({str(d) for t in trials if (d := t.user_attrs.get(TrialAttr.DEVICE))})
    return " / ".join(found) or "device unknown"


def front_figure(trials: Sequence[FrozenTrial], space: SearchSpace) -> go.Figure:
    """Every trial, accuracy against latency, one colour per K (``automl.views.plots``): finished
    configurations filled with their spread, stopped trials hollow at their last accuracy, noisy
    latencies crossed out, the denoised front joined, the baseline marked, trials over a budget
    greyed out."""
    rows = trial_rows(trials, space)
    points = configurations(trials)
    base = next((t.number for t in trials if t.values is not None and is_baseline(t, space)), None)
    batch = space.objectives.latency_batch_size
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    fig = accuracy_latency_figure(
        rows,
        points,
        front_of(points),
        base,
        Labels(
            "Accuracy vs latency by K, every trial"
            f"<br><sub>{space.model.name}; hollow: stopped early (last accuracy); "
            "bars: latency IQR</sub>",
            f"latency ms, {_devices(done)}, batch {batch} (lower is better)",
            "validation accuracy (higher is better)",
        ),
    )
    fig.update_layout(_LAYOUT)
    return fig


def curves_figure(trials: Sequence[FrozenTrial], space: SearchSpace) -> go.Figure:
    """Validation accuracy per epoch of every trial that recorded one, coloured by K; trials
    that stopped early or failed dashed."""
    import plotly.graph_objects as go

    with_curve = [t for t in trials if t.user_attrs.get(TrialAttr.CURVE)]
    fig = go.Figure()
    shown: set[int] = set()
    per_k = Counter(_k(t) for t in with_curve)
    index: Counter[int] = Counter()
    for t in with_curve:
        curve = t.user_attrs[TrialAttr.CURVE]
        k = _k(t)
        # A shade of K's colour per trial: twenty curves of one K stay apart.
        colour = k_shade(k, index[k], per_k[k])
        index[k] += 1
        points = [(e + 1, v) for e, v in enumerate(curve) if v is not None]
        fig.add_trace(
            go.Scatter(
                x=[e for e, _ in points],
                y=[v for _, v in points],
                mode="lines+markers",
                name=f"K = {k}",
                legendgroup=f"K{k}",
                showlegend=k not in shown,
                line={
                    "color": colour,
                    "dash": "solid" if t.state is TrialState.COMPLETE else "dot",
                },
                marker={"size": 4},
                hovertemplate=(
                    f"trial {t.number} ({t.state.name.lower()}), K = {k}, "
                    f"width {_width(t, space):.3g}<br>epoch %{{x}}: accuracy %{{y:.4f}}"
                    "<extra></extra>"
                ),
            )
        )
        shown.add(k)
    fig.update_layout(
        _LAYOUT,
        title={
            "text": "Validation accuracy per epoch<br><sub>dotted: stopped early or failed</sub>"
        },
        xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis={"title": {"text": "validation accuracy (higher is better)"}},
    )
    return fig


def hypervolume_figure(trials: Sequence[FrozenTrial], reference: Sequence[float]) -> go.Figure:
    """The front's hypervolume after each ended trial, against the epochs trained so far."""
    import plotly.graph_objects as go

    points = hypervolume_by_compute(trials, reference)
    fig = go.Figure(
        go.Scatter(
            x=[p.epochs for p in points],
            y=[p.hypervolume for p in points],
            mode="lines+markers",
            line={"shape": "hv"},
            name="hypervolume",
            customdata=[[p.trials_ended, p.seconds / 60] for p in points],
            hovertemplate=(
                "%{x} epochs, %{customdata[1]:.1f} training minutes, %{customdata[0]} trials "
                "ended<br>hypervolume %{y:.4g}<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        _LAYOUT,
        title={
            "text": "Front's hypervolume against compute<br><sub>area it dominates up to "
            f"accuracy {reference[0]:g}, latency {reference[1]:.3g} ms<br>(1.1 x the slowest "
            "completed trial)</sub>"
        },
        xaxis={"title": {"text": "epochs trained, all trials"}},
        yaxis={"title": {"text": "hypervolume (accuracy x ms, higher is better)"}},
    )
    return fig


def push_plots(study: optuna.Study, space: SearchSpace) -> None:
    """Push the three study plots, replacing those pushed before."""
    from optuna_dashboard import save_plotly_graph_object

    trials = study.get_trials(deepcopy=False)
    figures = {
        FRONT_PLOT_ID: front_figure(trials, space),
        CURVES_PLOT_ID: curves_figure(trials, space),
    }
    if any(t.state is TrialState.COMPLETE for t in trials):
        reference = reference_point(study)
        figures[HYPERVOLUME_PLOT_ID] = hypervolume_figure(trials, reference)
    for plot_id, fig in figures.items():
        save_plotly_graph_object(study, fig, graph_object_id=plot_id)


def _fmt_ms(v: object) -> str:
    return f"{float(v):.3f} ms" if isinstance(v, int | float) else "-"


def trial_note(t: FrozenTrial, space: SearchSpace) -> str:
    """The trial's note (Markdown): what it was, how it did, and why it ended the way it did."""
    u = t.user_attrs
    k = _k(t)
    kind = "undivided baseline" if is_baseline(t, space) else f"{k} co-trained member(s)"
    lines = [
        f"## Trial {t.number}: {space.model.name}, K = {k}, width {_width(t, space):.3g}",
        "",
        f"*{kind}; state {t.state.name.lower()}*",
        "",
    ]
    if t.values is not None:
        lines.append(
            f"- validation accuracy **{t.values[0]:.4f}**, latency **{t.values[1]:.3f} ms** "
            f"({u.get(TrialAttr.DEVICE, 'device unknown')}, batch "
            f"{space.objectives.latency_batch_size})"
        )
    members = u.get(TrialAttr.MEMBER_ACCURACIES)
    if members:
        lines.append("- members' validation accuracy: " + ", ".join(f"{a:.4f}" for a in members))
    modes = u.get(TrialAttr.LATENCY_MODES)
    if isinstance(modes, dict) and modes:
        chosen = u.get(TrialAttr.LATENCY_MODE)
        parts = [
            f"{name} {_fmt_ms(ms)}" + (" (kept)" if name == chosen else "")
            for name, ms in sorted(modes.items(), key=lambda kv: float(kv[1]))
        ]
        lines.append("- latency per execution mode: " + ", ".join(parts))
    if u.get(TrialAttr.LATENCY_IQR_MS) is not None:
        lines.append(f"- latency spread (IQR): {_fmt_ms(u[TrialAttr.LATENCY_IQR_MS])}")
        if is_noisy(u.get(TrialAttr.LATENCY_MS), u.get(TrialAttr.LATENCY_IQR_MS)):
            lines.append(
                "- **NOISY latency**: its IQR is over a quarter of its median; not picked by "
                "`automl export --trial best` unless --allow-noisy"
            )
    if isinstance(u.get(TrialAttr.REUSED_FROM), int):
        lines.append(f"- outcome reused from trial {u[TrialAttr.REUSED_FROM]} (same configuration)")
    phase = final_phase_words(u)
    if phase:
        lines.append(f"- {phase}")
    if u.get(TrialAttr.N_PARAMS) is not None:
        macs = u.get(TrialAttr.MACS)
        extra = f", {macs / 1e6:.2f} MMACs" if isinstance(macs, int | float) else ""
        lines.append(f"- {u[TrialAttr.N_PARAMS]:,} parameters{extra}")
    curve = u.get(TrialAttr.CURVE)
    if isinstance(curve, list) and curve:
        lines.append(
            "- validation accuracy per epoch: "
            + ", ".join("-" if v is None else f"{v:.4f}" for v in curve)
        )
    # By name only: the same values are also stored as a list for optuna-dashboard (their
    # indices are names too, for Optuna).
    budgets = {n: v for n, v in t.constraints.items() if not n.isdigit()}
    if budgets:
        lines.append(
            "- budgets: "
            + ", ".join(
                f"{n} {abs(v):.1%} {'over' if v > 0 else 'under'} its limit"
                for n, v in budgets.items()
            )
        )
    if t.state is TrialState.PRUNED:
        why = u.get(TrialAttr.PRUNED_REASON, "no reason stored")
        said = "Paused" if u.get(TrialAttr.PAUSED) else "Stopped early"
        lines += ["", f"**{said}**: {why}"]
    elif t.state is TrialState.FAIL:
        why = u.get(TrialAttr.FAIL_REASON, "no reason stored")
        lines += ["", f"**Failed**: {why}"]
    return "\n".join(lines) + "\n"


def push_notes(
    study: optuna.Study, space: SearchSpace, trials: Iterable[FrozenTrial] | None = None
) -> int:
    """Write the note of every ended trial (of ``trials``, default all) that has none yet; a note
    someone wrote in the dashboard is never replaced. Returns how many were written."""
    # save_note's own steps (optuna-dashboard 0.21, pinned): its public form takes a live
    # optuna.Trial, whose construction runs the study's sampler hooks on a trial that has ended.
    from optuna_dashboard._note import note_ver_key, save_note_with_version

    storage, study_id = study._storage, study._study_id
    system_attrs = storage.get_study_system_attrs(study_id)
    chosen = study.get_trials(deepcopy=False) if trials is None else trials
    written = 0
    for t in chosen:
        if t.state not in _ENDED or note_ver_key(t._trial_id) in system_attrs:
            continue
        save_note_with_version(storage, study_id, t._trial_id, 1, trial_note(t, space))
        written += 1
    return written


def publish_trial_end(study: optuna.Study, space: SearchSpace, trial_id: int) -> None:
    """The ended trial's note and the study's plots; a failure is a warning, never an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            frozen = study._storage.get_trial(trial_id)
            push_notes(study, space, [frozen])
            push_plots(study, space)
    except Exception as e:
        log.warning(
            "could not push dashboard plots or the note of trial id %s: %s: %s",
            trial_id,
            type(e).__name__,
            str(e).splitlines()[0][:300] if str(e) else "",
        )


def publish_study(study: optuna.Study, space: SearchSpace) -> bool:
    """The study's plots and the notes its ended trials lack; False (with a warning) on failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            push_notes(study, space)
            push_plots(study, space)
    except Exception as e:
        log.warning(
            "could not push dashboard plots of study %r: %s: %s",
            study.study_name,
            type(e).__name__,
            str(e).splitlines()[0][:300] if str(e) else "",
        )
        return False
    return True
