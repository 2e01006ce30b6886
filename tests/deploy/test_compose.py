"""The compose stack for real: PostgreSQL, the init job, the read-only dashboard and CPU workers.

One test walks the life of a pool on the images that ``scripts/docker_images.sh`` builds offline
(``make test`` builds them before pytest; built here too when missing, which takes minutes):

- ``up`` with 2 workers on a digits space; init enqueues ``N_TRIALS`` trials;
- mid-trial (two epochs done), ``docker kill`` the worker running it (frozen first with ``docker
  pause`` and the trial read again, so that the kill provably lands before the trial's end): the
  trial goes stale after the grace period and another worker retries it, resuming from its epoch
  checkpoint;
- scale to 3 workers and back to 1 while trials run;
- ``down`` (volumes kept) with trials left, then ``up`` again: the study resumes and ends with
  exactly ``N_TRIALS`` trials, none lost or run twice;
- the dashboard is published on 127.0.0.1 only and refuses writes.

It cleans up everything it started: the compose project with its volumes and network, and the
Docker daemon when it started one. It skips (one line) only where no daemon can run at all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

import automl
from automl.search.dedup import NOT_TRAINED
from automl.search.retries import trial_key
from automl.store.attrs import TrialAttr
from tests.helpers import REPO

pytestmark = pytest.mark.xdist_group("docker")

DOCKER = REPO / "docker"
WORKER_IMAGE = "automl-worker:latest"
POSTGRES_IMAGE = "automl-postgres:15"
STUDY = "compose-test"
N_TRIALS = 5
EPOCHS = 4
HEARTBEAT_S = 1
GRACE_S = 5

# A digits space whose trials last several epochs, so that a worker can be killed mid-trial.
SPACE = f"""
[study]
name = "{STUDY}"

[data]
dataset = "digits"
val_fraction = 0.15

[model]
name = "convnet_s"
# The K = 1 baseline at the searched widths: at 1.0 its epochs take ten times longer here.
default_width_mult = 0.25

[train]
epochs = {EPOCHS}
# 48 steps an epoch: on a fast CPU, epochs of 12 steps passed between two looks at the study.
batch_size = 32
lr = 0.05

[search]
split_factor = [1, 2]
width_mult = {{ low = 0.25, high = 0.5 }}
# The widths build 3 networks: a searched learning rate keeps the configurations apart, so that
# the trials train instead of taking each other's outcomes and the pool has work to kill.
lr = {{ low = 0.03, high = 0.08, log = true }}

[objectives]
latency_batch_size = 1
latency_mode = "sequential"
latency_min_run_s = 0.1
latency_warmup_s = 0.05
# No settled reference network to time beside each trial: seconds saved per worker.
latency_paired = false

[sampler]
name = "random"
seed = 0
"""


def _run(argv: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def docker_daemon() -> Iterator[None]:
    """A Docker daemon and the stack's images; the daemon is stopped after if started here."""
    if shutil.which("docker") is None and shutil.which("dockerd") is None and os.getuid() != 0:
        pytest.skip("docker cannot run here: no docker command and not root to install it")
    out = _run(["bash", str(REPO / "scripts" / "dockerd.sh"), "start"], timeout=180)
    if out.returncode != 0:
        pytest.skip(f"docker cannot run here: {out.stderr.strip().splitlines()[-1]}")
    started = out.stdout.strip() == "started"
    try:
        missing = [
            image
            for image in (WORKER_IMAGE, POSTGRES_IMAGE)
            if _run(["docker", "image", "inspect", image]).returncode != 0
        ]
        if missing:
            # make test builds them before pytest; a bare pytest run builds them here (minutes).
            built = _run(["bash", str(REPO / "scripts" / "docker_images.sh")], timeout=1800)
            assert built.returncode == 0, built.stderr[-3000:]
        yield
    finally:
        if started:
            _run(["bash", str(REPO / "scripts" / "dockerd.sh"), "stop"], timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    project: str
    files: list[Path]
    env: dict[str, str]
    storage_url: str
    dashboard_port: int

    def compose(self, *args: str, timeout: float = 300) -> str:
        argv = ["docker-compose", "-p", self.project]
        for f in self.files:
            argv += ["-f", str(f)]
        out = _run([*argv, *args], timeout=timeout, env=self.env)
        assert out.returncode == 0, f"docker-compose {' '.join(args)}: {out.stderr[-3000:]}"
        return out.stdout

    def containers(self, service: str) -> list[str]:
        """Ids of the service's running containers."""
        out = _run(
            [
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
            ]
        )
        return out.stdout.split()

    def logs(self) -> str:
        argv = ["docker-compose", "-p", self.project]
        for f in self.files:
            argv += ["-f", str(f)]
        return _run([*argv, "logs", "--no-color", "--tail", "40"], env=self.env).stdout[-6000:]

    def trials(self) -> list[FrozenTrial]:
        # A fresh unpooled storage each time: the server goes away between `down` and `up`.
        try:
            storage = optuna.storages.RDBStorage(
                self.storage_url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool}
            )
            return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
        except (sqlalchemy.exc.OperationalError, KeyError):
            return []  # the server is starting, or init has not stored the study yet

    def wait(self, what: str, ok: Callable[[list[FrozenTrial]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok(self.trials()):
                return
            time.sleep(0.25)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")


@pytest.fixture()
def stack(docker_daemon: None, tmp_path: Path) -> Iterator[Stack]:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    (data / "space.toml").write_text(SPACE)
    (data / "space.toml").chmod(0o644)
    pg_port, dashboard_port = _free_port(), _free_port()
    # Characters that would break a URL: the stack passes the password in PGPASSWORD only.
    password = secrets.token_urlsafe(12) + "@:/?"
    # Test-only additions: the database published on loopback so that this test reads the study,
    # and no wait for quiet CPUs before a latency reference (the machine is never quiet here).
    override = tmp_path / "compose.test.yaml"
    override.write_text(
        json.dumps(
            {
                "services": {
                    "postgres": {"ports": [f"127.0.0.1:{pg_port}:5432"]},
                    "worker": {"environment": {"AUTOML_QUIET_WAIT_S": "0"}},
                }
            }
        )
    )
    env_file = tmp_path / "empty.env"  # never a developer's docker/.env
    env_file.write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "POSTGRES_USER": "automl",
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": "automl",
        "AUTOML_STUDY": STUDY,
        "AUTOML_SPACE": "/data/space.toml",
        "AUTOML_N_TRIALS": str(N_TRIALS),
        "AUTOML_DATA_DIR": str(data),
        "AUTOML_DEVICE": "cpu",
        "AUTOML_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        "AUTOML_GRACE_PERIOD": str(GRACE_S),
        "AUTOML_POSTGRES_IMAGE": POSTGRES_IMAGE,
        "AUTOML_WORKER_IMAGE": WORKER_IMAGE,
        "AUTOML_DASHBOARD_PORT": str(dashboard_port),
    }
    project = f"automltest{os.getpid()}"
    s = Stack(
        project=project,
        files=[DOCKER / "compose.yaml", override],
        env=env,
        storage_url=(
            f"postgresql+psycopg2://automl:{urllib.parse.quote(password, safe='')}"
            f"@127.0.0.1:{pg_port}/automl"
        ),
        dashboard_port=dashboard_port,
    )
    s.env["COMPOSE_FILE"] = ""
    try:
        yield s
    finally:
        argv = [
            "docker-compose",
            "-p",
            project,
            "-f",
            str(DOCKER / "compose.yaml"),
            "-f",
            str(override),
        ]
        _run([*argv, "down", "-v", "--remove-orphans", "-t", "5"], timeout=180, env=env)
        leftovers = _run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"]
        ).stdout.split()
        if leftovers:
            _run(["docker", "rm", "-f", *leftovers])


def _not_trained(t: FrozenTrial) -> bool:
    """A trial that found its configuration training on the other worker: it trained nothing
    and a new trial took its place (``automl.search.dedup``)."""
    reason = str(t.user_attrs.get(TrialAttr.FAIL_REASON) or "")
    return t.state is TrialState.FAIL and reason.startswith(NOT_TRAINED)


def _finished(trials: list[FrozenTrial]) -> int:
    """Trials that ended for good (a FAIL that was retried, or that gave its place to a new trial,
    does not count)."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(
        1
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state is TrialState.FAIL and t.number not in retried and not _not_trained(t))
    )


def _mid_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """A running first attempt with two epochs on its curve (written after each epoch's
    checkpoint, so that of epoch 1 is on disk) and more to go."""
    for t in trials:
        if (
            t.state is TrialState.RUNNING
            and "failed_trial" not in t.system_attrs
            and 2 <= len(t.user_attrs.get(TrialAttr.CURVE, [])) < EPOCHS
            and t.user_attrs.get(TrialAttr.HOST)
        ):
            return t
    return None


def _kill_mid_trial(stack: Stack, tries: int = 3) -> tuple[FrozenTrial, str, int]:
    """``docker kill`` the worker of a trial with epochs left, and remove it as a lost host.

    A short trial can finish in the instant between reading its curve and the kill, so the
    worker is frozen first (``docker pause``) and the trial read again: only a trial still
    RUNNING with epochs left while its worker cannot write is killed mid-training. Otherwise the
    worker goes on, a trial is added so that work remains, and another trial is picked. Returns
    the trial, its host and the trials added.
    """
    victim: list[FrozenTrial] = []

    def found(trials: list[FrozenTrial]) -> bool:
        t = _mid_trial(trials)
        if t is not None:
            victim.append(t)
        return t is not None

    for added in range(tries):
        stack.wait("a trial in its third epoch", found, timeout=300)
        target = victim[-1]
        host = str(target.user_attrs[TrialAttr.HOST])
        [container] = [c for c in stack.containers("worker") if c.startswith(host)]
        assert _run(["docker", "pause", container]).returncode == 0
        [now] = [t for t in stack.trials() if t.number == target.number]
        if now.state is TrialState.RUNNING and len(now.user_attrs[TrialAttr.CURVE]) < EPOCHS:
            # SIGKILL reaches a paused container (the daemon thaws it after sending).
            assert _run(["docker", "kill", container]).returncode == 0
            # A deliberate stop: restart: on-failure does not bring the container back.
            time.sleep(1)
            assert container not in stack.containers("worker")
            # Gone for good, as a lost host: the scale-up makes new workers, not this one.
            assert _run(["docker", "rm", container]).returncode == 0
            return target, host, added
        assert _run(["docker", "unpause", container]).returncode == 0
        automl.load_study(STUDY, stack.storage_url).add_trials(1)
    pytest.fail(f"every trial picked had ended before its worker was frozen ({tries} tries)")


def _http(port: int, method: str, path: str) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"{}" if method != "GET" else None
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


# Several minutes on a busy 2-core machine (README gives the times); each wait has its own bound.
@pytest.mark.timeout(1500)
def test_pool_survives_a_killed_worker_scaling_and_a_restart(stack: Stack) -> None:
    t0 = time.monotonic()
    stack.compose("up", "-d", "--scale", "worker=2", timeout=600)
    assert len(stack.containers("worker")) == 2

    # 1. Kill the worker of a trial in the middle of its training.
    killed, host, added = _kill_mid_trial(stack)

    # 2. Scale up and down while trials run: the extra workers take trials. At scale-down SIGTERM
    #    ends their trials at an epoch boundary, re-enqueued from their checkpoints; a worker that
    #    reaches none within 20 s (still timing latency) is killed and its trial goes stale, then
    #    is retried. Either way no trial is lost, which the end of the test checks.
    stack.compose("up", "-d", "--no-deps", "--scale", "worker=3", "worker")
    assert len(stack.containers("worker")) == 3
    stack.wait(
        "three trials running at once",
        lambda ts: (
            sum(t.state is TrialState.RUNNING for t in ts) >= 3 or _finished(ts) >= N_TRIALS - 3
        ),
        timeout=120,
    )
    stack.compose("up", "-d", "--no-deps", "-t", "20", "--scale", "worker=1", "worker")
    # At most one is left: the last one may already have found nothing waiting or running at
    # that instant (the stopped workers' trials between their end and their retry) and left;
    # the restart below runs what waits, and the end checks that no trial was lost.
    assert len(stack.containers("worker")) <= 1

    # 3. down (volumes kept) with trials left, then up: the study resumes.
    before_down = _finished(stack.trials())
    asked = N_TRIALS + added
    if before_down >= asked:
        # Outcomes reused from the same configuration can end the study before this step: two
        # trials more, so that the restart has work to resume.
        automl.load_study(STUDY, stack.storage_url).add_trials(2)
        asked += 2
    assert before_down < asked
    stack.compose("down", "-t", "20")
    assert not stack.containers("postgres")
    stack.compose("up", "-d", "--scale", "worker=2", timeout=600)

    # 4. The dashboard: loopback only, and read-only.
    [dash] = stack.containers("dashboard")
    bindings = json.loads(
        _run(["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}}", dash]).stdout
    )
    assert {b["HostIp"] for bs in bindings.values() for b in bs} == {"127.0.0.1"}, bindings
    deadline = time.monotonic() + 120
    while _http_safe(stack.dashboard_port, "GET", "/api/studies") != 200:
        assert time.monotonic() < deadline, f"dashboard never answered\n{stack.logs()}"
        time.sleep(0.5)
    assert _http(stack.dashboard_port, "POST", "/api/studies") == 403
    assert _http(stack.dashboard_port, "DELETE", "/api/studies/1") == 403

    stack.wait(f"{asked} trials to end", lambda ts: _finished(ts) >= asked, timeout=600)
    # The workers leave once no trial is waiting or running.
    deadline = time.monotonic() + 120
    while stack.containers("worker"):
        assert time.monotonic() < deadline, f"workers did not exit\n{stack.logs()}"
        time.sleep(1)

    # Exactly the trials asked for: every original trial ended once, its retries (if any) failed
    # before the one that ended; nothing left running or waiting; no attempt claimed twice.
    trials = stack.trials()
    by_key: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if not _not_trained(t):
            by_key[trial_key(t)].append(t)
    assert len(by_key) == asked, sorted(by_key)
    assert _finished(trials) == asked
    for key, attempts in by_key.items():
        # What each attempt ended as and why, with the workers' logs, for a failure to explain.
        story = "\n".join(
            f"trial {a.number}: {a.state.name} {a.user_attrs.get(TrialAttr.FAIL_REASON, '')!r} "
            f"{ {k: v for k, v in a.system_attrs.items() if 'retry' in k or 'failed' in k} }"
            for a in attempts
        )
        assert [a.state for a in attempts[:-1]] == [TrialState.FAIL] * (len(attempts) - 1), story
        assert attempts[-1].state in (TrialState.COMPLETE, TrialState.PRUNED), (
            f"trial {key} did not end:\n{story}\n{_all_logs(stack)[-8000:]}"
        )
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The same parameters for every attempt of a trial: a retry continues, it does not resample.
    for attempts in by_key.values():
        assert len({json.dumps(a.params, sort_keys=True) for a in attempts}) == 1
    # The killed trial went stale after the grace period; the attempt that ended it resumed from
    # an epoch checkpoint, on another worker.
    killed_attempts = by_key[killed.number]
    assert killed_attempts[0].number == killed.number and len(killed_attempts) >= 2
    assert killed_attempts[0].state is TrialState.FAIL
    last = killed_attempts[-1]
    # Resumed from its checkpoint, or, where its configuration ended meanwhile in another trial,
    # that outcome taken without training (automl.search.dedup).
    resumed = int(last.user_attrs.get(TrialAttr.RESUMED_FROM_EPOCH, 0)) >= 1
    assert resumed or TrialAttr.REUSED_FROM in last.user_attrs, last.user_attrs
    assert last.user_attrs[TrialAttr.HOST] != host
    # No container logged the password (it reaches libpq in PGPASSWORD, never in a URL).
    logs = _all_logs(stack)
    assert "postgres" in logs
    assert stack.env["POSTGRES_PASSWORD"] not in logs
    print(f"compose test: {time.monotonic() - t0:.0f} s, {len(trials)} trial rows")


def _all_logs(stack: Stack) -> str:
    """Every container's whole log, stdout and stderr."""
    argv = ["docker-compose", "-p", stack.project]
    for f in stack.files:
        argv += ["-f", str(f)]
    logs = _run([*argv, "logs", "--no-color"], env=stack.env)
    assert logs.returncode == 0, logs.stderr[-2000:]
    return logs.stdout + logs.stderr


def _http_safe(port: int, method: str, path: str) -> int | None:
    try:
        return _http(port, method, path)
    except (OSError, urllib.error.URLError):
        return None
