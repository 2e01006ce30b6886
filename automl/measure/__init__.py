"""Latency measured so that candidates can be ranked on it, and the hosts it is measured on.

What this package guarantees: one protocol for every timing (``latency``: a fixed thread count,
warm-up by time, CUDA synchronisation, blocks sized for timer resolution, median and spread, and
optionally paired with a reference network so that a machine's drift cancels in the ratio); workers
sharing a host never time at once, and a CPU measurement has every core (``host_share``); a latency
is always labelled with the target it was measured for (``targets``: device and batch size).

- ``measure``, ``settle_reference``, ``LatencyRecord``, ``Reference``, ``ExecutionMode``.
- ``HostShare``: the host's core split and measurement lock.
- ``target_key``, ``latencies_for``, ``store_remeasured``: latency per target.
"""

from __future__ import annotations

from automl.measure.host_share import HostShare
from automl.measure.latency import (
    ExecutionMode,
    LatencyRecord,
    Reference,
    measure,
    settle_reference,
    supported_modes,
)
from automl.measure.targets import latencies_for, store_remeasured, target_key

__all__ = [
    "ExecutionMode",
    "HostShare",
    "LatencyRecord",
    "Reference",
    "latencies_for",
    "measure",
    "settle_reference",
    "store_remeasured",
    "supported_modes",
    "target_key",
]
