"""The deployment files, validated without a Docker engine: structure, references, commands."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import kubernetes_validate
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
        *(DOCKER / "k8s").glob("*.yaml"),
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
    # The dependencies with the grpc extra (for `automl grpc-proxy`), then the package itself.
    assert any("['optional-dependencies']['grpc']" in ln for ln in lines)
    assert any("pip wheel" in ln and "--no-deps" in ln for ln in lines)


def _k8s(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "k8s" / name).read_text())


K8S_FILES = sorted(p.name for p in (DOCKER / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("name", K8S_FILES)
def test_kubernetes_manifests_validate_against_the_schemas(name: str) -> None:
    """Strict validation (unknown fields rejected) against the Kubernetes OpenAPI schemas."""
    for doc in yaml.safe_load_all((DOCKER / "k8s" / name).read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [(("spec", "completions"), "eight"), (("spec", "template", "spec", "restartPolicy"), 3)],
)
def test_the_kubernetes_validator_rejects_a_broken_job(
    path: tuple[str, ...], value: object
) -> None:
    job = _k8s("worker-job.yaml")
    node = job
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.30", strict=True)


def test_kubernetes_jobs_keep_the_compose_contract() -> None:
    """The same image, arguments and environment as compose.yaml (with compose.gpu.yaml): what
    the compose test shows of a worker holds for the Job's pods."""
    services = _compose()["services"]
    gpu_worker = _compose("compose.gpu.yaml")["services"]["worker"]
    config = _k8s("config.yaml")
    assert config["kind"] == "ConfigMap"
    secret = _k8s("secret.example.yaml")
    assert secret["kind"] == "Secret" and set(secret["stringData"]) == {"password"}

    job = _k8s("worker-job.yaml")
    assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
    pod = job["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The image's entrypoint runs the worker, as compose's worker service.
    assert container["image"] == _substitute(services["worker"]["image"])
    assert "command" not in container
    assert [a.split("=")[0] for a in container["args"] if a.startswith("--")] == [
        a for a in gpu_worker["command"] if str(a).startswith("--")
    ]
    _parses(["worker", "--study", config["data"]["AUTOML_STUDY"], *container["args"]])

    def env_of(c: dict[str, Any]) -> set[str]:
        names = {e["name"] for e in c.get("env", [])}
        for ref in c.get("envFrom", []):
            assert ref["configMapRef"]["name"] == config["metadata"]["name"]
            names |= set(config["data"])
        return names

    compose_env = set(services["init"]["environment"])
    assert env_of(container) == compose_env
    env = {e["name"]: e for e in container["env"]}
    # The password comes from the Secret as PGPASSWORD; the URL itself holds no credentials.
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    storage = config["data"]["AUTOML_STORAGE"]
    assert "@" not in storage and redact(storage) == storage
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]} and claims

    init = _k8s("init-job.yaml")
    [init_c] = init["spec"]["template"]["spec"]["containers"]
    assert init_c["command"] == services["init"]["entrypoint"]
    assert env_of(init_c) == compose_env
    _parses([str(a) for a in init_c["args"]])
    assert "--enqueue-only" in init_c["args"]


@pytest.mark.parametrize("argv", [["worker", "--study", "s", "--bogus"], ["dashboard", "--nope"]])
def test_the_validator_rejects_unknown_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parses(argv)


def test_shell_healthcheck_is_well_formed() -> None:
    test = _compose()["services"]["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    assert shlex.split(test[1].replace("$$", "$"))[0] == "pg_isready"
