"""The gRPC storage proxy (``automl grpc-proxy``) and the client its workers use.

The proxy is Optuna's (``run_grpc_proxy_server``'s service, over Optuna's cached storage as its
documentation asks), with four calls of automl's beside it, for what Optuna's API cannot say
cheaply or at all:

- ``Heartbeat``: Optuna's heartbeats live in a table only its RDB storage writes, and
  ``GrpcStorageProxy`` has none, so a worker behind the proxy that is killed outright would leave
  its trial RUNNING for good. The proxy writes its workers' heartbeats into that very table, so
  they are timed by the database's clock and every worker, direct or proxied, finds the trials
  of dead workers stale by Optuna's own rule.
- ``Stale``: the ids of the stale trials, for the grace period of the worker that asks.
- ``Workers``: the process tag of each running trial (``automl.store.liveness``).
- ``ClaimFirst``: the claim of the first free trial of a tier (``automl.store.claim``), done by
  the proxy as the direct workers do it; otherwise a proxied worker could only read every
  unfinished trial of the study to find one.

``HeartbeatProxy`` is the client: a ``BaseHeartbeat`` like the RDB storage, so the heartbeat
thread, the claim, the retry of stale trials and ``max_retry`` work through it unchanged. A plain
Optuna proxy has none of these calls: the client refuses it when it opens.

The server keeps Optuna's and gRPC's limits: 10 threads serve the calls (the others queue), and
a request may hold at most 4 MB.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import GrpcStorageProxy, RDBStorage, get_storage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial

from automl._version import __version__
from automl.store.claim import Tier, WaitingQueue
from automl.store.heartbeats import stale_trial_ids
from automl.store.liveness import worker_tags

if TYPE_CHECKING:
    # grpcio is an optional dependency (the "grpc" extra): imported where a call needs it.
    import grpc

__all__ = ["HeartbeatProxy", "NotAutomlProxyError", "start_proxy_server"]

_SERVICE = "automl.ProxyService"


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _loads(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    assert isinstance(message, dict)  # both ends are this module
    return message


class _Calls:
    """automl's calls, answered from the database the proxy serves."""

    def __init__(self, rdb: RDBStorage, cached: _CachedStorage) -> None:
        self.rdb = rdb
        self.cached = cached

    def version(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        return {"version": __version__}

    def heartbeat(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        self.rdb.record_heartbeat(int(request["trial_id"]))
        return {}

    def stale(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        return {"ids": stale_trial_ids(self.rdb, request["study_id"], request["grace_s"])}

    def workers(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        # JSON keys are strings; the client turns them back into ids.
        return {"tags": {str(k): v for k, v in worker_tags(self.rdb, request["study_id"]).items()}}

    def claim_first(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        study_id = int(request["study_id"])
        tier = Tier(request["has"], tuple(request["lacks"]))
        trial_id = WaitingQueue(self.rdb, study_id).claim_first(tier, wait=request["wait"])
        if trial_id is not None and trial_id not in self.cached._trial_id_to_study_id_and_number:
            # Optuna's cache takes a parameter only for a trial it knows; one made since it last
            # read (by a direct worker, or before the proxy started) is read now.
            self.cached.get_all_trials(study_id, deepcopy=False)
        return {"trial_id": trial_id}


def start_proxy_server(rdb: RDBStorage, host: str, port: int) -> grpc.Server:
    """Optuna's gRPC storage proxy for ``rdb`` with automl's calls beside it, started."""
    import grpc
    from optuna.storages._grpc.server import make_server

    cached = get_storage(rdb)
    assert isinstance(cached, _CachedStorage)  # what Optuna wraps an RDB storage in
    calls = _Calls(rdb, cached)
    server = make_server(cached, host, port)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_loads, response_serializer=_dumps
        )
        for name, fn in (
            ("Version", calls.version),
            ("Heartbeat", calls.heartbeat),
            ("Stale", calls.stale),
            ("Workers", calls.workers),
            ("ClaimFirst", calls.claim_first),
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.start()
    return server


class NotAutomlProxyError(Exception):
    """The server answers Optuna's calls but not automl's: a plain Optuna proxy."""


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

    def _call(self, name: str, **request: Any) -> dict[str, Any]:
        call = self._channel.unary_unary(
            f"/{_SERVICE}/{name}", request_serializer=_dumps, response_deserializer=_loads
        )
        answer = call(request)
        assert isinstance(answer, dict)
        return answer

    def check_server(self) -> str:
        """The proxy's automl version; ``NotAutomlProxyError`` for a plain Optuna proxy."""
        import grpc

        try:
            return str(self._call("Version")["version"])
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotAutomlProxyError(str(e.details())) from e
            raise

    def record_heartbeat(self, trial_id: int) -> None:
        self._call("Heartbeat", trial_id=trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return [
            int(i) for i in self._call("Stale", study_id=study_id, grace_s=self.grace_period)["ids"]
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry

    def worker_tags(self, study_id: int) -> dict[int, object]:
        """``automl.store.liveness.worker_tags``, answered by the proxy."""
        return {int(k): v for k, v in self._call("Workers", study_id=study_id)["tags"].items()}

    def claim_first(self, study_id: int, tier: Tier, wait: bool) -> int | None:
        """``WaitingQueue.claim_first``, done by the proxy."""
        got = self._call("ClaimFirst", study_id=study_id, has=tier.has, lacks=tier.lacks, wait=wait)
        trial_id = got["trial_id"]
        return None if trial_id is None else int(trial_id)
