"""A client of the gRPC storage proxy (``automl grpc-proxy``) whose workers send heartbeats.

Optuna's heartbeats live in a table only its RDB storage writes, and ``GrpcStorageProxy`` offers
none: a worker behind the proxy that is killed outright would leave its trial RUNNING for good,
since Optuna finds a trial stale only by its heartbeats. This client is a ``BaseHeartbeat`` like
the RDB storage: the heartbeat thread, the claim, the retry of stale trials and ``max_retry``
work through it unchanged, with the heartbeat written as a trial system attribute and judged by
``automl.store.heartbeats.stale_proxied``. A direct worker on the same database judges those
attributes too (``automl.search.retries``).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from automl.store.heartbeats import record_proxied_heartbeat, stale_proxied

__all__ = ["HeartbeatProxy"]


class HeartbeatProxy(GrpcStorageProxy, BaseHeartbeat):
    """``GrpcStorageProxy`` with a heartbeat every ``heartbeat_interval`` seconds; a trial silent
    for ``grace_period`` seconds is stale and handed to ``retry`` (as the RDB storage's
    ``heartbeat_stale_trial_callback``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        heartbeat_interval: int,
        grace_period: int,
        retry: Callable[[optuna.Study, FrozenTrial], None] | None,
    ) -> None:
        super().__init__(host=host, port=port)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._retry = retry

    def record_heartbeat(self, trial_id: int) -> None:
        record_proxied_heartbeat(self, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return stale_proxied(self, running, self.grace_period)

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry
