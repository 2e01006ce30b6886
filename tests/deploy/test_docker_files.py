"""The deployment files, validated without a Docker engine: structure, references, commands."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import pytest
import yaml

from automl.cli import _build_parser
from automl.store.storage import redact
from tests.helpers import REPO

DOCKER = REPO / "docker"


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


def _substitute(value: str) -> str:
    """Replace ${VAR:-default} / ${VAR:?msg} / ${VAR} with the default or a placeholder."""

    def repl(m: re.Match[str]) -> str:
        name, op, rest = m.group(1), m.group(2), m.group(3)
        return rest if op == ":-" else f"<{name}>"

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", repl, value)


def _parses(argv: list[str]) -> None:
    """The argv is accepted by our CLI parser (exits non-zero otherwise)."""
    _build_parser().parse_args([_substitute(a) for a in argv])


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_compose_structure() -> None:
    c = _compose()
    services = c["services"]
    assert {"postgres", "init", "worker", "dashboard", "grpc-proxy"} <= set(services)
    pg = services["postgres"]
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert (
        "${POSTGRES_PASSWORD:?" in pg["environment"]["POSTGRES_PASSWORD"]
    )  # required, never a literal
    assert pg["image"].startswith("${AUTOML_POSTGRES_IMAGE:-")  # a variable, the public default
    worker = services["worker"]
    # CPU by default; compose.gpu.yaml adds one GPU per replica.
    assert "deploy" not in worker
    gpu_worker = _compose("compose.gpu.yaml")["services"]["worker"]
    gpu = gpu_worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["count"] == 1 and "gpu" in gpu["capabilities"]
    assert gpu_worker["command"][:2] == ["--device", "cuda:0"]
    _parses(["worker", "--study", "x", *[str(a) for a in gpu_worker["command"]]])
    assert worker["restart"] in ("on-failure", "unless-stopped", "always")
    assert worker["stop_grace_period"]
    assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Published on loopback only.
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert services["grpc-proxy"]["profiles"] == ["grpc"]


def test_named_volumes_are_declared_and_build_context_exists() -> None:
    c = _compose()
    declared = set(c["volumes"])
    for svc in c["services"].values():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith((".", "/", "$")):
                assert src in declared, src
    build = c["services"]["init"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (
        DOCKER / "Dockerfile"
    ).resolve()


def test_every_command_in_compose_is_a_real_automl_command() -> None:
    services = _compose()["services"]
    for name in ("init", "dashboard", "grpc-proxy"):
        svc = services[name]
        assert svc["entrypoint"] == ["automl"]
        _parses([str(a) for a in svc["command"]])
    # The worker runs the image's entrypoint, `python -m workers`, i.e. `automl worker ...`.
    _parses(["worker", "--study", "x", *[str(a) for a in services["worker"]["command"]]])


def test_every_variable_is_documented_in_env_example() -> None:
    text = (DOCKER / "compose.yaml").read_text()
    example = (DOCKER / ".env.example").read_text()
    documented = {
        line.split("=")[0]
        for line in example.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert _env_names(text) <= documented
    readme = (REPO / "README.md").read_text()
    for var in ("AUTOML_STORAGE", "AUTOML_STUDY", "AUTOML_ARTIFACTS", "POSTGRES_PASSWORD"):
        assert var in readme, var


def test_no_credentials_are_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "docker/.env"], cwd=REPO, capture_output=True, text=True
    )
    assert ignored.returncode == 0, "docker/.env must be git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert "docker/.env" not in tracked and ".env" not in tracked
    for path in (
        DOCKER / "compose.yaml",
        DOCKER / "Dockerfile",
        DOCKER / "k8s" / "worker-job.yaml",
    ):
        assert not re.search(r"postgres(ql)?(\+psycopg2)?://[^$\s]*:[^$@\s]+@", path.read_text()), (
            path
        )


def test_dockerfile_references_exist() -> None:
    lines = (DOCKER / "Dockerfile").read_text().splitlines()
    # COPY --from=<stage> copies from an earlier stage, not from the repository.
    copies = [ln.split()[1:-1] for ln in lines if ln.startswith("COPY") and "--from=" not in ln]
    for sources in copies:
        for src in sources:
            assert (REPO / src).exists(), src
    entry = next(ln for ln in lines if ln.startswith("ENTRYPOINT"))
    assert entry == 'ENTRYPOINT ["python", "-m", "workers"]'
    assert (REPO / "workers" / "__main__.py").is_file()
    assert any(ln.startswith("USER ") and "root" not in ln for ln in lines)
    assert any('"torch==2.14.1"' in ln for ln in lines)
    assert any('".[grpc]"' in ln for ln in lines)


def test_kubernetes_indexed_job() -> None:
    job = yaml.safe_load((DOCKER / "k8s" / "worker-job.yaml").read_text())
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    pod = job["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    # The password comes from a Secret as PGPASSWORD; the URL itself holds no credentials.
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "automl-db"
    storage = env["AUTOML_STORAGE"]["value"]
    assert "@" not in storage and redact(storage) == storage
    _parses(["worker", "--study", env["AUTOML_STUDY"]["value"], *container["args"]])
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]} and claims


@pytest.mark.parametrize("argv", [["worker", "--study", "s", "--bogus"], ["dashboard", "--nope"]])
def test_the_validator_rejects_unknown_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parses(argv)


def test_shell_healthcheck_is_well_formed() -> None:
    test = _compose()["services"]["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert shlex.split(test[1].replace("$$", "$"))[0] == "pg_isready"
