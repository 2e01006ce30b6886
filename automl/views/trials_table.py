"""Every trial of a study as one row: the all-trials table of the report (sortable HTML),
``trials.csv`` and ``automl status --all`` print the same columns from the same rows.

A trial that stopped early shows its last validation accuracy and the epochs it had: it is not
comparable with a finished trial's accuracy, which the ``state`` and ``epochs`` columns say next to
it. Its latency was measured before training, so it is as good as a finished trial's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from automl.search.front import configuration_key, is_noisy
from automl.search.scheduler import RungScheduler, early_stopper
from automl.store.attrs import TrialAttr

if TYPE_CHECKING:
    from automl.space import SearchSpace

__all__ = [
    "COLUMNS",
    "TrialRow",
    "format_rows",
    "trial_rows",
]

# Parameters shown in their own columns; the other parameters are the co-training settings.
_OWN_COLUMNS = ("split_factor", "width_mult")


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, stopped (early), paused, failed, running, waiting
    split_factor: int
    width: float | None
    settings: str  # co-training and other training parameters, "name=value" joined by spaces
    network: str | None
    epochs: int  # epochs trained (recorded)
    rung: int | None  # the highest rung reached, 1-based
    rungs: int  # how many rungs the scheduler has (0: none)
    rung_epochs: int | None  # the epochs at that rung
    accuracy: float | None  # final (complete) or last recorded validation accuracy
    accuracy_low: float | None  # lowest and highest of repeated seeds, where repeated
    accuracy_high: float | None
    test_accuracy: float | None
    latency_ms: float | None
    latency_iqr_ms: float | None
    n_params: int | None
    macs: int | None
    why: str  # why it stopped early, paused or failed; where it came from when reused
    reused_from: int | None
    final_phase: str  # the final phase of a paused-then-promoted trial, in words
    configuration: str
    over_budget: bool = False  # a size or latency budget of [constraints] is exceeded

    @property
    def noisy(self) -> bool:
        return is_noisy(self.latency_ms, self.latency_iqr_ms)

    @property
    def finished(self) -> bool:
        return self.state == "complete"

    @property
    def stopped(self) -> bool:
        """Ended before its full budget, with a last accuracy to show."""
        return self.state in ("stopped", "paused") and self.accuracy is not None

    @property
    def rung_text(self) -> str:
        if self.rung is None:
            return "-"
        return f"{self.rung} of {self.rungs} (epoch {self.rung_epochs})"

    def cells(self) -> dict[str, str]:
        """The row as text, keyed by the names of ``COLUMNS``."""

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        acc = num(self.accuracy, ".4f")
        if self.accuracy_low is not None and self.accuracy_high is not None:
            acc += f" [{self.accuracy_low:.4f}, {self.accuracy_high:.4f}]"
        noisy = f" NOISY ({100 * self.spread_ratio:.0f}%)" if self.noisy else ""
        return {
            "trial": f"#{self.number}",
            "K": str(self.split_factor),
            "width": num(self.width, ".3g"),
            "co-training": self.settings or "-",
            "state": self.state,
            "epochs": str(self.epochs),
            "rung": self.rung_text,
            "val accuracy": acc,
            "test accuracy": num(self.test_accuracy, ".4f"),
            "latency ms": num(self.latency_ms, ".3g"),
            "IQR ms": num(self.latency_iqr_ms, ".3g") + noisy,
            "params": "-" if self.n_params is None else f"{self.n_params:,}",
            "MMACs": "-" if self.macs is None else f"{self.macs / 1e6:.3g}",
            "why": "; ".join(w for w in (self.why, self.final_phase) if w),
        }

    @property
    def spread_ratio(self) -> float:
        if self.latency_ms is None or self.latency_iqr_ms is None or not self.latency_ms > 0:
            return 0.0
        return self.latency_iqr_ms / self.latency_ms

    def csv_record(self) -> dict[str, Any]:
        """The row for ``trials.csv``: numbers unrounded, accuracy as a fraction."""
        return {
            "number": self.number,
            "state": self.state,
            "K": self.split_factor,
            "width_mult": self.width,
            "co_training": self.settings,
            "network": self.network,
            "epochs": self.epochs,
            "rung": self.rung,
            "rungs": self.rungs or None,
            "rung_epochs": self.rung_epochs,
            "val_accuracy": self.accuracy,
            "val_accuracy_min": self.accuracy_low,
            "val_accuracy_max": self.accuracy_high,
            "test_accuracy": self.test_accuracy,
            "latency_ms": self.latency_ms,
            "latency_iqr_ms": self.latency_iqr_ms,
            "latency_noisy": self.noisy,
            "n_params": self.n_params,
            "macs": self.macs,
            "why_stopped": self.why,
            "reused_from": self.reused_from,
            "final_phase": self.final_phase,
        }


COLUMNS = (
    "trial",
    "K",
    "width",
    "co-training",
    "state",
    "epochs",
    "rung",
    "val accuracy",
    "test accuracy",
    "latency ms",
    "IQR ms",
    "params",
    "MMACs",
    "why",
)


def _state(t: FrozenTrial) -> str:
    if t.state is TrialState.PRUNED:
        return "paused" if t.user_attrs.get(TrialAttr.PAUSED) else "stopped"
    if t.state is TrialState.FAIL:
        return "failed"
    return t.state.name.lower()


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(float(v)) else None


def _settings(params: dict[str, Any]) -> str:
    parts = []
    for k in sorted(params):
        if k in _OWN_COLUMNS:
            continue
        v = params[k]
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def final_phase_words(u: dict[str, Any]) -> str:
    """What the final phase did to a trial: epochs and validation accuracy before and after."""
    found = u.get(TrialAttr.FINAL_PHASE)
    if not isinstance(found, dict):
        return ""
    before_e, before_a = found.get("epochs_before"), found.get("accuracy_before")
    curve = u.get(TrialAttr.CURVE)
    after_e = len(curve) if isinstance(curve, list) else None
    after_a = next((v for v in reversed(curve) if v is not None), None) if curve else None

    def acc(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, int | float) else "?"

    if "retrains" in found:
        how = "trained again"
        if found.get("from_weights"):
            how = "restarted from its weights"
        elif "weights_error" in found:
            how = "trained again from scratch (its weights could not be read)"
        return (
            f"final phase: trial {found['retrains']}'s configuration ({before_e} epochs, val "
            f"accuracy {acc(before_a)}) {how} for {found.get('epochs_planned')} epochs, "
            f"reached epoch {after_e} (val accuracy {acc(after_a)})"
        )
    return (
        f"final phase: resumed at epoch {before_e} (val accuracy {acc(before_a)}), "
        f"trained to epoch {after_e} (val accuracy {acc(after_a)})"
    )


def trial_rows(trials: Sequence[FrozenTrial], space: SearchSpace) -> list[TrialRow]:
    """Every trial of the study, in trial order."""
    stopper = early_stopper(space)
    rung_epochs = stopper.rungs if isinstance(stopper, RungScheduler) else []
    rows = []
    for t in trials:
        u = t.user_attrs
        curve = u.get(TrialAttr.CURVE)
        recorded = [float(v) for v in curve if v is not None] if isinstance(curve, list) else []
        if t.state is TrialState.COMPLETE and t.values is not None:
            accuracy: float | None = float(t.values[0])
            latency = _float(t.values[1])
        else:
            accuracy = recorded[-1] if recorded else None
            latency = _float(u.get(TrialAttr.LATENCY_MS))
        repeats = u.get(TrialAttr.REPEAT_ACCURACIES)
        low = high = None
        if isinstance(repeats, list) and len(repeats) > 1:
            low, high = float(min(repeats)), float(max(repeats))
        rung_at = u.get(TrialAttr.RUNG)
        rung = None
        if isinstance(rung_at, int):
            # The stored rung is its epoch count; its place among the rungs is what reasons say.
            rung = rung_epochs.index(rung_at) + 1 if rung_at in rung_epochs else None
        why = ""
        if t.state is TrialState.PRUNED:
            why = str(u.get(TrialAttr.PRUNED_REASON, "stopped (no reason stored)"))
        elif t.state is TrialState.FAIL:
            why = str(u.get(TrialAttr.FAIL_REASON, "failed (no reason stored)"))
        reused = u.get(TrialAttr.REUSED_FROM)
        if isinstance(reused, int):
            why = "; ".join(w for w in (why, f"outcome reused from trial #{reused}") if w)
        width = t.params.get("width_mult")
        rows.append(
            TrialRow(
                number=t.number,
                state=_state(t),
                split_factor=int(t.params.get("split_factor", 1)),
                width=_float(width) if width is not None else None,
                settings=_settings(t.params),
                network=str(u[TrialAttr.NETWORK]) if u.get(TrialAttr.NETWORK) else None,
                epochs=len(recorded),
                rung=rung,
                rungs=len(rung_epochs),
                rung_epochs=rung_at if isinstance(rung_at, int) else None,
                accuracy=accuracy,
                accuracy_low=low,
                accuracy_high=high,
                test_accuracy=_float(u.get(TrialAttr.TEST_ACCURACY)),
                latency_ms=latency,
                latency_iqr_ms=_float(u.get(TrialAttr.LATENCY_IQR_MS)),
                n_params=u.get(TrialAttr.N_PARAMS),
                macs=u.get(TrialAttr.MACS),
                why=why,
                reused_from=reused if isinstance(reused, int) else None,
                final_phase=final_phase_words(u),
                configuration=configuration_key(t),
                over_budget=any(v > 0.0 for v in t.constraints.values()),
            )
        )
    return rows


def format_rows(rows: Sequence[TrialRow]) -> str:
    """The rows as an aligned text table (``automl status --all``)."""
    if not rows:
        return "(no trial yet)"
    cells = [r.cells() for r in rows]
    widths = {c: max(len(c), *(len(row[c]) for row in cells)) for c in COLUMNS}
    # The reason is free text: last and not padded.
    aligned = [c for c in COLUMNS if c != "why"]
    lines = ["  ".join(c.rjust(widths[c]) for c in aligned) + "  why"]
    for row in cells:
        line = "  ".join(row[c].rjust(widths[c]) for c in aligned) + "  " + row["why"]
        lines.append(line.rstrip())
    return "\n".join(lines)
