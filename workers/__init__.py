"""The long-running worker: joins a study, pins a device, handles signals, resumes retries."""

from __future__ import annotations

from workers.worker import WorkerOptions, run_worker

__all__ = ["WorkerOptions", "run_worker"]
