"""The worker's entry point for containers: ``python -m workers`` is ``automl worker``.

The worker itself lives in ``automl.search.worker``; this package only keeps the command containers
run.
"""

from __future__ import annotations

from automl.search.worker import WorkerOptions, run_worker

__all__ = ["WorkerOptions", "run_worker"]
