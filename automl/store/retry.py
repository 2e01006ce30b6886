"""Database calls retried with back-off: a restarting database costs a pause, not a study."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
from sqlalchemy import exc as sa_exc

__all__ = ["DEFAULT_TIMEOUT_S", "TRANSIENT_DB_ERRORS", "db_retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    optuna.exceptions.StorageInternalError,
)

# How long a lost connection is waited out when the caller does not say (never reassigned:
# a worker passes its own timeout down to every call).
DEFAULT_TIMEOUT_S = 600.0


def db_retry(
    fn: Callable[[], T],
    *,
    what: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    first_delay_s: float = 0.5,
    max_delay_s: float = 15.0,
    stop_event: threading.Event | None = None,
) -> T:
    """Call ``fn``; on a lost connection wait (0.5 s, doubling up to 15 s) and call it again,
    for up to ``timeout_s`` seconds, then re-raise. Once ``stop_event`` is set (the worker was
    asked to stop) the error is re-raised at once instead of waiting out the back-off."""
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    while True:
        try:
            return fn()
        except TRANSIENT_DB_ERRORS as e:
            stopping = stop_event is not None and stop_event.is_set()
            if stopping or time.monotonic() + delay > deadline:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning(
                "database unavailable while trying to %s (%s); retrying in %.1fs",
                what,
                first,
                delay,
            )
            if stop_event is not None:
                if stop_event.wait(delay):
                    raise
            else:
                time.sleep(delay)
            delay = min(delay * 2, max_delay_s)
