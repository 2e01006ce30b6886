"""One worker: one device, one study, trials until the study has none waiting or it is stopped.

- SIGTERM / SIGINT: the running trial stops at its next epoch boundary (its checkpoint is already
  written), is failed and re-enqueued so that any worker resumes it, and the process exits 0. A
  second signal stops at once (the trial is still re-enqueued, from its last checkpoint); a
  third exits without cleaning up (the trial goes stale and is retried after the grace period).
- A trial retried after a crash resumes from its last epoch checkpoint (``automl.search.trial``).
- Out-of-memory and non-finite losses fail that trial only (``automl.search.runner``).
- A lost database connection is retried with back-off (``automl.store.retry``).
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch

from automl.device import describe_device, resolve_device
from automl.errors import DatabaseUnreachableError
from automl.measure.host_share import HostShare
from automl.search.runner import RunStats
from automl.search.study import AutoMLStudy, load_study, process_seed_offset
from automl.store.storage import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_RETRY,
    StorageSettings,
    default_storage_url,
    is_sqlite,
    redact,
)

__all__ = ["WorkerOptions", "install_stop_handlers", "run_worker"]

log = logging.getLogger("automl.search.worker")


@dataclass(frozen=True)
class WorkerOptions:
    study: str
    storage: str | None = None
    device: str = "auto"
    n_trials: int | None = None
    artifact_dir: str | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    max_retry: int | None = DEFAULT_MAX_RETRY
    progress: bool = True
    profile: bool = False
    connect_timeout_s: float = 600.0
    # Workers the host's cores are split among: None counts those alive, 0 does not split.
    cpu_share: int | None = None


def _pin_device(spec: str) -> torch.device:
    # In a container with one GPU per replica, CUDA_VISIBLE_DEVICES already narrows it to cuda:0.
    dev = resolve_device(spec)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def _interrupt_main_soon() -> None:
    time.sleep(0.05)
    _thread.interrupt_main(signal.SIGINT)


def install_stop_handlers(stop: threading.Event) -> Callable[[], int | None]:
    """SIGTERM and SIGINT stop ``stop``'s owner gracefully; returns a function that tells which
    signal arrived (``None`` if none).

    The first signal sets ``stop``: the running trial ends at its next epoch boundary and is
    re-enqueued. The second raises ``KeyboardInterrupt`` at once: the trial is still failed and
    re-enqueued (its last epoch checkpoint resumes), the epoch in progress is lost. The third
    exits without a word, for a process stuck where Python code does not run.
    """
    received: list[int] = []
    # A second signal's KeyboardInterrupt raised while the main thread runs a finaliser (a
    # weakref callback of SQLAlchemy's, a __del__) is printed as "Exception ignored" and lost:
    # the run would go on to its next epoch boundary. The unraisable hook sees it and delivers it
    # again to the main thread (through the SIGINT handler, flagged so that it does not count as
    # a third signal).
    redeliver: list[str] = []
    previous_hook = sys.unraisablehook

    def unraisable(u: Any) -> None:
        if u.exc_type is KeyboardInterrupt and len(received) == 2:
            redeliver.append(str(u.exc_value))
            # From another thread, a moment later: the main thread takes it at a bytecode of its
            # own once the finaliser has returned (delivered from here, or while a
            # threading.Thread start waits, it would run inside the finaliser again). Should it
            # land in a finaliser again, this hook sends it once more.
            _thread.start_new_thread(_interrupt_main_soon, ())
            return
        previous_hook(u)

    def handler(signum: int, frame: FrameType | None) -> None:
        if redeliver:
            raise KeyboardInterrupt(redeliver.pop())
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) >= 3:
            os._exit(128 + signum)
        if len(received) == 2:
            log.warning("second %s: stopping now; the trial resumes from its last epoch", name)
            raise KeyboardInterrupt(name)
        log.warning(
            "%s received: finishing the current epoch, then leaving the trial to be retried "
            "(send it again to stop at once)",
            name,
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = unraisable
    return lambda: received[0] if received else None


def _warn_about_storage(url: str) -> None:
    if is_sqlite(url):
        log.warning(
            "%s is an SQLite file: it takes one process at a time; to run several workers, "
            "store the study in PostgreSQL (--storage postgresql://...)",
            redact(url),
        )


def _join_study(opts: WorkerOptions, url: str, stop: threading.Event) -> AutoMLStudy | None:
    """Load the study, waiting for a database that is still starting (a compose stack);
    ``None`` when stopped while waiting."""
    settings = StorageSettings(
        heartbeat_interval=opts.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL,
        grace_period=opts.grace_period,
        max_retry=opts.max_retry,
    )
    deadline = time.monotonic() + opts.connect_timeout_s
    delay = 1.0
    while True:
        try:
            return load_study(
                opts.study,
                url,
                artifact_dir=opts.artifact_dir,
                settings=settings,
                sampler_seed_offset=process_seed_offset(),
            )
        except DatabaseUnreachableError as e:
            if time.monotonic() + delay > deadline or stop.is_set():
                raise
            log.warning("%s; retrying in %.0fs", e, delay)
            # A stop during the wait ends it at once, not after up to 30 s.
            if stop.wait(delay):
                return None
            delay = min(delay * 2, 30.0)


def run_worker(opts: WorkerOptions, stop_event: threading.Event | None = None) -> RunStats:
    """Join the study and run its trials here; returns the counts of what ran."""
    url = default_storage_url() if opts.storage is None else opts.storage
    _warn_about_storage(url)
    stop = stop_event or threading.Event()
    if threading.current_thread() is threading.main_thread():
        install_stop_handlers(stop)
    dev = _pin_device(opts.device)
    study = _join_study(opts, url, stop)
    if study is None:
        log.info("worker stopped while waiting for the database; no trial ran")
        return RunStats()
    log.info(
        "worker %s pid %d on %s joined study %r (%s waiting trials)",
        socket.gethostname(),
        os.getpid(),
        describe_device(dev),
        study.study_name,
        study.waiting_trials(),
    )
    with HostShare(opts.cpu_share) as share:
        stats = study.optimize(
            device=str(dev),
            progress=opts.progress,
            stop_event=stop,
            max_trials_here=opts.n_trials,
            profile=opts.profile,
            db_timeout_s=opts.connect_timeout_s,
            host_share=share,
        )
    log.info(
        "worker done: %d complete, %d pruned, %d failed, %d stopped and left for retry",
        stats.completed,
        stats.pruned,
        stats.failed,
        stats.stopped,
    )
    return stats
