"""What a user sees of a study: the report, the plots and notes in optuna-dashboard, trials in
words, profiler traces laid out for TensorBoard.

What this package guarantees: every view reads the stored study and nothing else (no view trains,
measures or changes a trial), and views agree with each other (one front, one reference point, one
colour per K). Pushing to the dashboard never fails a trial.

- ``report``: ``write_report`` (index.html, PNGs, CSV/Markdown tables), ``format_front``; the
  front is over configurations (``automl.search.front``), noisy latencies marked.
- ``dashboard``: ``publish_trial_end``, ``publish_study`` (plots and notes pushed to
  optuna-dashboard); ``dashboard_guard``: the Host/Origin/read-only guard of ``automl dashboard``.
- ``trials_table``: every trial as one row (the report's table, ``trials.csv``, ``automl status
  --all``); ``verdict``: does dividing pay, one line per K; ``plots``: accuracy against latency
  with every trial, shared by the report and the dashboard.
- ``trial_text``: parameters and durations in words. ``traces``: ``automl trace``'s layout.
"""

from __future__ import annotations

from automl.views.dashboard import publish_study, publish_trial_end
from automl.views.report import format_front, write_report

__all__ = ["format_front", "publish_study", "publish_trial_end", "write_report"]
