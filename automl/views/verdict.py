"""Does dividing pay here? One line per division factor K, and one headline, computed from the
configurations of the study (``automl.search.front``) and how far its other trials went.

A K whose finished configurations are all dominated (or left to a neighbour inside the measured
spread) is "dominated by K = ... at every latency it reached"; a K with points on the denoised
front names the latency range where it is the trade-off to take. A K with no finished trial says
so, with how far its stopped trials went: their accuracy after fewer epochs is not comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

from automl.search.front import ConfigPoint
from automl.views.trials_table import TrialRow

__all__ = ["headline", "k_verdicts"]


def _dominators(p: ConfigPoint, front: Sequence[ConfigPoint]) -> list[ConfigPoint]:
    """The front points that dominate ``p``."""
    return [
        q
        for q in front
        if q.accuracy >= p.accuracy
        and q.latency_ms <= p.latency_ms
        and (q.accuracy > p.accuracy or q.latency_ms < p.latency_ms)
    ]


def _absorbers(p: ConfigPoint, front: Sequence[ConfigPoint]) -> list[ConfigPoint]:
    """The front points that stand for ``p`` under the denoise rule."""
    return [q for q in front if p.number in q.absorbed]


def _ks(ks: set[int]) -> str:
    return " and ".join(f"K = {k}" for k in sorted(ks))


def _stopped_words(rows: Sequence[TrialRow]) -> str:
    stopped = [r for r in rows if r.stopped]
    failed = sum(1 for r in rows if r.state == "failed")
    running = sum(1 for r in rows if r.state in ("running", "waiting"))
    parts = []
    if stopped:
        best = max(stopped, key=lambda r: (r.accuracy or 0.0, -r.epochs))
        most = max(r.epochs for r in stopped)
        parts.append(
            f"{len(stopped)} stopped early after at most {most} epoch(s) (best {best.accuracy:.4f} "
            f"after {best.epochs}, #{best.number})"
        )
    if failed:
        parts.append(f"{failed} failed")
    if running:
        parts.append(f"{running} running or waiting")
    return ", ".join(parts)


def k_verdicts(
    rows: Sequence[TrialRow], points: Sequence[ConfigPoint], front: Sequence[ConfigPoint]
) -> list[str]:
    """One line per K of the study, smallest K first."""
    lines = []
    for k in sorted({r.split_factor for r in rows}):
        mine = [p for p in points if p.split_factor == k]
        k_rows = [r for r in rows if r.split_factor == k]
        others = _stopped_words([r for r in k_rows if not r.finished])
        if not mine:
            lines.append(
                f"K = {k}: no trial finished"
                + (f"; {others}" if others else "")
                + ": whether it pays is not known yet"
            )
            continue
        best = max(mine, key=lambda p: (p.accuracy, -p.latency_ms))
        best_words = f"best {best.accuracy:.4f} at {best.latency_ms:.3g} ms (#{best.number})"
        on = [p for p in front if p.split_factor == k]
        if on:
            lo, hi = min(p.latency_ms for p in on), max(p.latency_ms for p in on)
            where = f"at {lo:.3g} ms" if lo == hi else f"from {lo:.3g} to {hi:.3g} ms"
            noisy = sum(1 for p in on if p.noisy)
            text = (
                f"K = {k}: on the front {where} ({len(on)} of {len(front)} front points"
                + (f", {noisy} with a NOISY latency" if noisy else "")
                + f"); {best_words}"
            )
        else:
            by = {q.split_factor for p in mine for q in _dominators(p, front)}
            # Points not beaten outright but inside a front point's spread: said as such.
            near = {
                q.split_factor
                for p in mine
                if not _dominators(p, front)
                for q in _absorbers(p, front)
            }
            if not near:
                how = f"dominated by {_ks(by)} at every latency it reached"
            elif not by:
                how = f"inside the measured spread of {_ks(near)}: not a separate trade-off"
            else:
                how = (
                    f"dominated by {_ks(by)}, or inside the measured spread of {_ks(near)}, at "
                    "every latency it reached"
                )
            text = f"K = {k}: {best_words}, {how}"
        lines.append(text + (f"; {others}" if others else ""))
    return lines


def headline(
    rows: Sequence[TrialRow], points: Sequence[ConfigPoint], front: Sequence[ConfigPoint]
) -> str:
    """The answer to "does dividing pay here?" in one sentence."""
    divided_rows = [r for r in rows if r.split_factor > 1]
    if not divided_rows:
        return "Dividing was not tried: the study has no trial with K > 1."
    divided_on = [p for p in front if p.split_factor > 1]
    if divided_on:
        lo = min(p.latency_ms for p in divided_on)
        hi = max(p.latency_ms for p in divided_on)
        span = f"at {lo:.3g} ms" if lo == hi else f"between {lo:.3g} and {hi:.3g} ms"
        ks = _ks({p.split_factor for p in divided_on})
        if all(p.noisy for p in divided_on):
            # Only a latency the machine's noise may have placed says so: not an answer yet.
            return (
                f"Dividing seems to pay {span} ({ks} on the front there), but every such "
                "latency is NOISY: re-measure on a quiet machine before believing it."
            )
        return f"Dividing pays here {span}: {ks} is on the front there."
    finished = [p for p in points if p.split_factor > 1]
    if not finished:
        stopped = sum(1 for r in divided_rows if r.stopped)
        return (
            "Not known yet: no network with K > 1 finished training"
            + (f" ({stopped} stopped early)" if stopped else "")
            + "."
        )
    if not any(p.split_factor == 1 for p in points):
        return "Not known yet: no undivided network (K = 1) finished to compare with."
    return (
        "Not in this study: every finished network with K > 1 is dominated by an undivided "
        "one (or inside its measured spread)."
    )
