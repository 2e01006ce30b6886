"""The study storage under a large worker pool: the worker protocol without training.

N simulated workers (threads of this process; no torch) run the worker's storage protocol against
a real PostgreSQL server that this script starts on a loopback port (its own cluster in a
temporary folder, ``max_connections`` above N, so other users of the machine's server are not
disturbed): claim a WAITING trial with ``automl.search.trial.claim_waiting_trial`` (the worker's
own code), send heartbeats, store the curve after every epoch, then the intermediate values and the
final values. Time is compressed so that the pool's write rate is that of a real pool of
``--real-pool`` GPUs (1024) whatever N is: with heartbeats every 60 s and 20 s epochs on the real
pool, a simulated worker of a pool of N beats every 60 N / 1024 s and ends an epoch every
20 N / 1024 s.

Two ways to the database are compared: direct (one SQLAlchemy engine with N pooled connections,
as N workers with one connection each would hold) and Optuna's gRPC storage proxy (``automl
grpc-proxy``, one process with its own pool; the workers hold gRPC channels only, each its own
client as ``automl worker --storage grpc://...`` opens it). Heartbeats go to Optuna's heartbeat
table either way, through the proxy for the proxied workers (``automl.store.grpc_proxy``), and
the proxy makes their claims.

The direct workers share one study object, so that its cache of the trials is read once, not
once per simulated worker: a real worker reads the study when it joins, on its own host, and
this process has only the CPUs of one.

For each N it prints claims/s, the p50/p99 latency of every storage call, the database's CPU
seconds (its processes' user + system time, from /proc) and checks that exactly the trials asked
for ended COMPLETE, none lost or claimed twice.

    PYTHONPATH=. .venv/bin/python bench/storage_load.py --workers 8 64 256 1024 --mode direct grpc
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from automl.search.trial import claim_waiting_trial
from automl.store.attrs import TrialAttr
from automl.store.storage import StorageSettings, open_storage

T = TypeVar("T")
PG_BIN = Path(os.environ.get("AUTOML_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server(max_connections: int) -> Iterator[tuple[str, int]]:
    """A throw-away PostgreSQL cluster on a loopback port; yields (URL, postmaster pid)."""
    if not (PG_BIN / "initdb").exists():
        raise SystemExit(f"storage_load: no PostgreSQL binaries in {PG_BIN} (set AUTOML_PG_BIN)")
    root = Path(tempfile.mkdtemp(prefix="automl-pgload-"))
    # PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
    as_user: list[str] = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            *as_user, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
            "-c", f"max_connections={max_connections}", "-c", "shared_buffers=256MB",
            "-c", "fsync=on",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
            )
            if ready.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("storage_load: the PostgreSQL server did not start")
        # As root, server.pid is runuser's; the postmaster names itself in its pid file.
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", postmaster
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds of the postmaster and its backends: sampled while they live (a backend's time
    is lost with it), the last sample of each kept."""

    def __init__(self, postmaster: int) -> None:
        self.postmaster = postmaster
        self.seen: dict[int, float] = {}
        self.base: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _pids(self) -> list[int]:
        pids = [self.postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if ppid == self.postmaster:
                    pids.append(int(entry.name))
        return pids

    def sample(self) -> None:
        for pid in self._pids():
            with suppress(OSError):
                self.seen[pid] = _cpu_seconds(pid)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()

    def __enter__(self) -> ServerCpu:
        self.sample()
        self.base = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(v - self.base.get(pid, 0.0) for pid, v in self.seen.items())


@dataclass
class Timings:
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)

    def timed(self, name: str, fn: Callable[[], T]) -> T:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            dt = time.perf_counter() - t
            with self.lock:
                self.calls[name].append(dt)


@dataclass(frozen=True)
class Pace:
    heartbeat_s: float | None
    epoch_s: float
    epochs: int


def _worker(
    storage: BaseStorage,
    study: optuna.Study,
    pace: Pace,
    timings: Timings,
    claimed: list[int],
    deadline: float,
) -> None:
    study_id = storage.get_study_id_from_name(study.study_name)
    # Past the deadline no trial is claimed: the run ends, and its row shows what was left.
    while time.monotonic() < deadline:
        got = timings.timed("claim", lambda: claim_waiting_trial(study, storage))
        if got is None:
            # Same rule as the worker: leave when nothing waits or runs (here nothing is retried).
            left = timings.timed(
                "count",
                lambda: len(
                    storage.get_all_trials(
                        study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
                    )
                ),
            )
            if not left:
                return
            time.sleep(min(1.0, pace.epoch_s))
            continue
        trial_id = got.trial_id
        with timings.lock:
            claimed.append(trial_id)
        curve: list[float] = []
        next_beat = time.monotonic() + (pace.heartbeat_s or float("inf"))
        for epoch in range(pace.epochs):
            end = time.monotonic() + pace.epoch_s
            while (now := time.monotonic()) < end:
                if pace.heartbeat_s is not None and now >= next_beat:
                    assert isinstance(storage, BaseHeartbeat)
                    timings.timed("heartbeat", partial(storage.record_heartbeat, trial_id))
                    # The next one an interval after this one, as the worker's heartbeat thread
                    # waits: a slow write delays the beats, never bunches them.
                    next_beat = time.monotonic() + pace.heartbeat_s
                time.sleep(max(0.0, min(end, next_beat) - time.monotonic()))
            curve.append(0.5 + 0.01 * epoch)
            timings.timed(
                "epoch_attr",
                partial(storage.set_trial_user_attr, trial_id, TrialAttr.CURVE, list(curve)),
            )
        for step, value in enumerate(curve):
            timings.timed(
                "intermediate",
                partial(storage.set_trial_intermediate_value, trial_id, step, value),
            )
        timings.timed(
            "finish",
            partial(
                storage.set_trial_state_values,
                trial_id,
                TrialState.COMPLETE,
                values=[curve[-1], 1.0],
            ),
        )


@dataclass
class Result:
    mode: str
    workers: int
    trials: int
    wall_s: float
    claims_per_s: float
    server_cpu_s: float
    latency_ms: dict[str, tuple[float, float, int]]
    asked: int
    unclaimed: int  # still WAITING when the deadline stopped the claims
    lost: int  # claimed but not COMPLETE at the end
    claimed_twice: int
    note: str


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def run_one(
    url: str,
    postmaster: int,
    mode: str,
    n: int,
    real_pool: int,
    epochs: int,
    proxy_port: int,
    max_seconds: float,
) -> Result:
    scale = n / real_pool
    pace = Pace(heartbeat_s=60 * scale, epoch_s=20 * scale, epochs=epochs)
    beat = StorageSettings(heartbeat_interval=max(1, round(60 * scale)), grace_period=600)
    n_trials = max(2 * n, 64)
    name = f"load-{mode}-{n}-{os.getpid()}"
    setup = RDBStorage(url, heartbeat_interval=60, grace_period=600)
    study = optuna.create_study(study_name=name, storage=setup, directions=["maximize", "minimize"])
    for _ in range(n_trials):
        study.enqueue_trial({})
    proxy: subprocess.Popen[bytes] | None = None
    workers: list[tuple[BaseStorage, optuna.Study]]
    if mode == "direct":
        # One engine, N connections at most: what N single-connection workers hold at the server.
        shared = RDBStorage(
            url,
            engine_kwargs={"pool_size": n, "max_overflow": 0, "pool_timeout": 120},
            heartbeat_interval=beat.heartbeat_interval,
            grace_period=beat.grace_period,
        )
        one = optuna.load_study(study_name=name, storage=shared)
        one.get_trials(deepcopy=False)  # read when the pool joins, not at the first claim
        workers = [(shared, one)] * n
    else:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "automl", "grpc-proxy", "--storage", url, "--port",
             str(proxy_port)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", proxy_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("storage_load: the gRPC proxy did not start") from None
                time.sleep(0.2)
        storages = [open_storage(f"grpc://127.0.0.1:{proxy_port}", beat) for _ in range(n)]
        workers = [(s, optuna.load_study(study_name=name, storage=s)) for s in storages]
    timings = Timings()
    claimed: list[int] = []

    def body(storage: BaseStorage, study: optuna.Study) -> None:
        try:
            _worker(storage, study, pace, timings, claimed, deadline)
        except Exception as e:  # counted and shown: a load test reports its failures
            with timings.lock:
                timings.errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")

    threads = [threading.Thread(target=body, args=w, daemon=True) for w in workers]
    deadline = time.monotonic() + max_seconds
    with ServerCpu(postmaster) as cpu:
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        # Polled, not joined: Ctrl-C reaches the main thread and the server is still shut down.
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    if proxy is not None:
        proxy.terminate()
        proxy.wait(timeout=30)
    trials = optuna.load_study(study_name=name, storage=setup).get_trials(deepcopy=False)
    complete = {t._trial_id for t in trials if t.state is TrialState.COMPLETE}
    waiting = sum(t.state is TrialState.WAITING for t in trials)
    assert len(trials) == n_trials, "the protocol made trials of its own"
    lat = {k: (_pct(v, 0.5), _pct(v, 0.99), len(v)) for k, v in sorted(timings.calls.items())}
    note = "; ".join(sorted(set(timings.errors)))[:300]
    return Result(
        mode,
        n,
        len(complete),
        wall,
        len(claimed) / wall,
        cpu.seconds,
        lat,
        asked=n_trials,
        unclaimed=waiting,
        lost=len(set(claimed) - complete),
        claimed_twice=len(claimed) - len(set(claimed)),
        note=note,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 64, 256, 1024])
    ap.add_argument("--mode", nargs="+", choices=["direct", "grpc"], default=["direct", "grpc"])
    ap.add_argument("--real-pool", type=int, default=1024, help="GPUs of the pool simulated")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of each simulated trial")
    ap.add_argument(
        "--max-seconds", type=float, default=300.0, help="no claim after this long (per run)"
    )
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.workers) or args.epochs < 1 or args.real_pool < 1:
        ap.error("--workers, --epochs and --real-pool must be positive")
    # Every simulated worker holds a socket (a database connection or a gRPC channel), and the
    # proxy one per worker: at N = 1024 past a default soft limit of 1024 descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * max(args.workers) + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "unknown"
    )
    print(f"{cpu}, {os.cpu_count()} CPUs; PostgreSQL from {PG_BIN}", flush=True)
    results = []
    with postgres_server(max(args.workers) + 50) as (url, postmaster):
        for mode in args.mode:
            for n in args.workers:
                r = run_one(
                    url,
                    postmaster,
                    mode,
                    n,
                    args.real_pool,
                    args.epochs,
                    _free_port(),
                    args.max_seconds,
                )
                results.append(r)
                calls = ", ".join(
                    f"{k} {p50:.1f}/{p99:.1f} ms (n={c})"
                    for k, (p50, p99, c) in r.latency_ms.items()
                )
                print(
                    f"{r.mode:6} N={r.workers:5} trials={r.trials:5} wall={r.wall_s:6.1f}s "
                    f"claims/s={r.claims_per_s:6.1f} db_cpu={r.server_cpu_s:6.1f}s "
                    f"asked={r.asked} unclaimed={r.unclaimed} lost={r.lost} "
                    f"claimed_twice={r.claimed_twice} | p50/p99: {calls}"
                    + (f" | errors: {r.note}" if r.note else ""),
                    flush=True,
                )
    # Trials left unclaimed at the deadline are a throughput limit; lost or doubled ones a bug.
    return 0 if all(r.lost == 0 and r.claimed_twice == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
