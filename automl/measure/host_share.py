"""Workers that share a host do not disturb each other.

- The cores are split: each worker on a host holds a slot (an exclusively locked file in a
  host-wide folder, so a crashed worker's slot frees itself), and before every trial it pins its
  threads to its share of the cores and sets torch's thread count to match. Without the split,
  every process runs an OpenMP pool as wide as the machine on the same cores, and each waits for
  threads the others have descheduled. ``$OMP_NUM_THREADS``, where set, bounds the share.
- A latency measurement never overlaps another: measurements hold a host-wide lock. A CPU
  measurement also pauses the other workers' training at their next step (a gate they pass
  between steps) and takes every core, so that its time is the machine's, not the machine's minus
  a neighbour's training.

- The reference time of paired measurement (automl.measure.latency) is settled once per host, after
  the CPUs have gone idle, and kept in the folder (``references.json``): every study and worker of
  the host multiplies its ratios by one scale.

The folder is ``$AUTOML_HOST_DIR`` or ``<tmp>/automl-host-<uid>``: workers in containers share
it only through a mounted volume (docker/compose.yaml mounts one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import torch

from automl.errors import ConfigError

__all__ = ["HostShare", "host_dir", "parse_cpu_share", "thread_cap", "wait_for_quiet_cpu"]

log = logging.getLogger(__name__)

# The reference times settled on this host (automl.search.trial), by reference, device and threads.
REFERENCES = "references.json"
# More slots than any host has workers; the lowest free one is taken.
MAX_SLOTS = 256


def host_dir() -> Path:
    explicit = os.environ.get("AUTOML_HOST_DIR")
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"automl-host-{os.getuid()}"


def parse_cpu_share(text: str) -> int | None:
    """``auto`` (``None``: split by the workers alive on the host), ``off`` (0: no split) or a
    number of workers to split the cores among."""
    value = text.strip().lower()
    if value == "auto":
        return None
    if value == "off":
        return 0
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 1:
        raise ConfigError(
            f"--cpu-share must be 'auto', 'off' or a number of workers >= 1, got {text!r}"
        )
    return n


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def quiet_wait_s() -> float:
    """How long a worker waits for quiet CPUs before settling: ``$AUTOML_QUIET_WAIT_S``, 60 s."""
    try:
        return max(0.0, float(os.environ.get("AUTOML_QUIET_WAIT_S", "60")))
    except ValueError:
        return 60.0


def wait_for_quiet_cpu(
    max_wait_s: float | None = None, busy_below: float = 0.15, window_s: float = 0.5
) -> float:
    """Wait (up to ``max_wait_s``) until the machine's CPUs are busy less than ``busy_below`` of
    the time over a ``window_s`` window while this process sleeps: before a reference time is
    settled, so that a process starting beside it (another worker importing torch) does not
    inflate the scale of every latency of the study on this host. Returns the busy fraction seen
    last (0 where /proc/stat cannot be read)."""
    wait_s = quiet_wait_s() if max_wait_s is None else max_wait_s
    if wait_s <= 0:
        return 0.0
    deadline = time.monotonic() + wait_s
    busy = 0.0
    while True:
        first = _cpu_times()
        time.sleep(window_s)
        second = _cpu_times()
        if first is None or second is None or second[1] <= first[1]:
            return 0.0
        busy = (second[0] - first[0]) / (second[1] - first[1])
        if busy < busy_below or time.monotonic() >= deadline:
            if busy >= busy_below:
                log.warning(
                    "the CPUs stayed %.0f%% busy for %.0f s; settling the latency reference "
                    "anyway: latencies on this host may read high",
                    100 * busy,
                    wait_s,
                )
            return busy


def _lock_within(f: IO[bytes], timeout_s: float) -> bool:
    """An exclusive lock on ``f`` if it comes within ``timeout_s`` (flock itself has no timeout):
    a worker stopped (SIGSTOP, a debugger) inside a step must not hold every other worker's
    measurements for ever."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def _own_cores() -> list[int]:
    # macOS has no CPU affinity: the split then sets thread counts only.
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def thread_cap() -> int | None:
    """The thread count the process was explicitly given (``$OMP_NUM_THREADS``), or ``None``.

    A worker's share of the cores never raises its pool above it: a pool run with one thread per
    worker (containers, a test suite, a user who counted) would otherwise grow to the machine's
    width before its first trial, and OpenMP threads beside other busy processes spin-wait for
    each other (a step of a small network then takes ten times longer).
    """
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def _set_affinity(cores: list[int]) -> None:
    """Pin every thread of this process (OpenMP's pool included) to ``cores``."""
    if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"):
        return
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cores)


class HostShare:
    """This worker's place among the workers of its host; see the module's docstring.

    ``workers``: ``None`` counts the live slots before every trial, 0 turns the split off, N
    splits the cores in N parts whatever runs.
    """

    def __init__(
        self, workers: int | None = None, root: Path | None = None, pause_timeout_s: float = 120.0
    ) -> None:
        self.root = root or host_dir()
        # How long a CPU measurement waits for the others' steps in progress to end.
        self.pause_timeout_s = pause_timeout_s
        self.workers = workers
        self.cores = _own_cores()
        self.threads = torch.get_num_threads()
        self.slot = -1
        self._slot_file: IO[bytes] | None = None
        self._measure: IO[bytes] | None = None
        self._gate: IO[bytes] | None = None
        self._quiet: IO[bytes] | None = None
        self._training = False

    # -- slots ------------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.root / name

    def _open(self, name: str) -> IO[bytes]:
        # Held open for the worker's life: a lock lives as long as its open file.
        return open(self._path(name), "a+b")

    def join(self) -> HostShare:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create the host folder {self.root} that workers on one host share: {e}; "
                "set AUTOML_HOST_DIR to a writable folder"
            ) from e
        for i in range(MAX_SLOTS):
            f = self._open(f"slot-{i}")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self.slot, self._slot_file = i, f
            break
        self._measure = self._open("measure.lock")
        self._gate = self._open("gate.lock")
        self._quiet = self._open("quiet.lock")
        return self

    def leave(self) -> None:
        self.end_training()
        for f in (self._slot_file, self._measure, self._gate, self._quiet):
            if f is not None:
                f.close()
        self._slot_file = self._measure = self._gate = self._quiet = None
        _set_affinity(self.cores)
        torch.set_num_threads(self.threads)

    def __enter__(self) -> HostShare:
        return self.join()

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def live_slots(self) -> list[int]:
        """The slots held by live workers on this host, this one's included."""
        live = []
        for i in range(MAX_SLOTS):
            path = self._path(f"slot-{i}")
            if i == self.slot:
                live.append(i)
                continue
            if not path.exists():
                continue
            with open(path, "a+b") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.append(i)
                else:
                    fcntl.flock(f, fcntl.LOCK_UN)
        return live

    def my_cores(self) -> list[int]:
        """This worker's share of the cores: its rank among the live slots picks a slice."""
        if self.workers == 0 or self.slot < 0:
            return self.cores
        if self.workers is None:
            live = self.live_slots()
            n, rank = len(live), live.index(self.slot)
        else:
            n, rank = self.workers, self.slot % self.workers
        n = max(1, min(n, len(self.cores)))
        rank %= n
        lo, hi = rank * len(self.cores) // n, (rank + 1) * len(self.cores) // n
        return self.cores[lo:hi]

    def apply(self) -> list[int]:
        """Pin this process to its share and size torch's pool to it; called before each trial
        (a worker that joined or left changes the shares)."""
        if self.workers == 0:
            return self.cores
        cores = self.my_cores()
        _set_affinity(cores)
        cap = thread_cap()
        torch.set_num_threads(len(cores) if cap is None else min(len(cores), cap))
        return cores

    # -- the reference times settled on this host -----------------------------------------------
    def settled(self, key: str) -> float | None:
        """The reference time settled on this host under ``key`` by any study, if any: studies
        of one host share a scale, so their latencies compare across runs."""
        try:
            value = json.loads(self._path(REFERENCES).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            return None
        return float(value) if isinstance(value, int | float) and value > 0 else None

    def settle(self, key: str, ms: float) -> None:
        """Record a settled reference time (called under the measurement lock)."""
        path = self._path(REFERENCES)
        try:
            table = json.loads(path.read_text())
            if not isinstance(table, dict):
                table = {}
        except (OSError, ValueError):
            table = {}
        table[key] = ms
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError as e:
            log.warning("cannot record the settled reference time in %s: %s", path, e)

    # -- measurements and the training that pauses for them -------------------------------------
    @contextlib.contextmanager
    def measuring(self, cpu: bool) -> Iterator[int]:
        """Hold the host's measurement lock; for a CPU measurement also wait until the other
        workers have paused their training, and take every core. Yields the thread count the
        measurement may use."""
        if self._measure is None or self._gate is None or self._quiet is None:
            yield torch.get_num_threads()
            return
        was_training = self._training
        self.end_training()
        fcntl.flock(self._measure, fcntl.LOCK_EX)
        try:
            if not cpu:
                yield torch.get_num_threads()
                return
            own = _own_cores()
            threads = torch.get_num_threads()
            # The gate stops the others at their next step; the quiet lock is free once every
            # step in progress has ended.
            fcntl.flock(self._gate, fcntl.LOCK_EX)
            quiet = _lock_within(self._quiet, self.pause_timeout_s)
            if not quiet:
                log.warning(
                    "another worker on this host did not pause its training within %.0f s "
                    "(stopped or stuck between two steps); timing latency beside it",
                    self.pause_timeout_s,
                )
            try:
                _set_affinity(self.cores)
                # The thread count the process was given bounds its measurements too; a space
                # that wants another sets [objectives] latency_threads.
                cap = thread_cap()
                yield len(self.cores) if cap is None else min(len(self.cores), cap)
            finally:
                _set_affinity(own)
                torch.set_num_threads(threads)
                if quiet:
                    fcntl.flock(self._quiet, fcntl.LOCK_UN)
                fcntl.flock(self._gate, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._measure, fcntl.LOCK_UN)
            if was_training:
                self.begin_training()

    def begin_training(self) -> None:
        """Training holds the quiet lock shared; a CPU measurement elsewhere waits for it."""
        if self._quiet is None or self._gate is None or self._training:
            return
        self._pass_gate()
        self._training = True

    def _pass_gate(self) -> None:
        assert self._gate is not None and self._quiet is not None
        # Through the gate first: while a measurement holds it, this waits, and the measurement
        # does not wait for a worker that keeps taking the quiet lock again.
        fcntl.flock(self._gate, fcntl.LOCK_SH)
        fcntl.flock(self._quiet, fcntl.LOCK_SH)
        fcntl.flock(self._gate, fcntl.LOCK_UN)

    def step(self, _step: int = 0) -> None:
        """Between two training steps: let a waiting measurement run."""
        if not self._training or self._quiet is None:
            return
        fcntl.flock(self._quiet, fcntl.LOCK_UN)
        self._pass_gate()

    def end_training(self) -> None:
        if self._training and self._quiet is not None:
            fcntl.flock(self._quiet, fcntl.LOCK_UN)
        self._training = False
