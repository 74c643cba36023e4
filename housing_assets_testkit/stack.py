"""The compose stack as a user drives it, for the deployment test and the stack benchmark:
the README's secret files, `docker compose` (v2 plugin or docker-compose 1.29) with the
dataset mounted read-only, the services' health, commands inside their containers, and the
run containers the daemon launches. No pytest here."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from housing_assets_testkit.processes import free_port
from housing_assets_testkit.project import REPO_ROOT

COMPOSE_FILES = ["docker-compose.yaml", "deploy/docker-compose.local-dataset.yaml"]
SERVICES = ["postgres", "mlflow", "code", "webserver", "daemon", "model"]
# The README's secret files, and the services that get each (docker-compose.yaml).
SECRET_FILES = {
    "dagster_db_password": {"postgres", "code", "webserver", "daemon"},
    "mlflow_db_password": {"postgres", "mlflow"},
    "optuna_db_password": {"postgres", "code"},
    "mlflow_admin_password": {"mlflow"},
    "mlflow_pipeline_password": {"code"},
    "mlflow_reader_password": {"model"},
    "mlflow_secret_key": {"mlflow"},
    "ui_password": {"webserver"},
}


def compose_command() -> list[str] | None:
    """`docker compose` (v2) where the plugin exists, else `docker-compose` (1.29), else None."""
    if shutil.which("docker") is None:
        return None
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def docker_engine_answers() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


class Stack:
    """The compose project under test, and the commands a user types against it."""

    def __init__(
        self, compose: list[str], env: dict[str, str], project: str, extra_files: list[str]
    ):
        self.base = [*compose, "-p", project]
        for file in [*COMPOSE_FILES, *extra_files]:
            self.base += ["-f", file]
        self.env = env
        self.ports = {k: int(env[k]) for k in ("DAGSTER_PORT", "MLFLOW_PORT", "MODEL_PORT")}

    def run(self, *args: str, timeout: float = 900, check: bool = True, **kwargs):
        result = subprocess.run(
            [*self.base, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.strip()

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).stdout.split()

    def health(self) -> dict[str, str]:
        states = {}
        for service in SERVICES:
            cid = self.container(service)
            if not cid:
                states[service] = "missing"
                continue
            inspect = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "--format",
                    "{{.State.Status}} {{.State.Health.Status}}",
                    cid,
                ],
                capture_output=True,
                text=True,
            ).stdout.split()
            running, health = (inspect + ["?", "?"])[:2]
            states[service] = health if running == "running" else running
        return states

    def exec(
        self, service: str, command: str, stdin: bytes | None = None, check: bool = True
    ) -> str:
        """A shell command inside the service's container (as the image's user); its output,
        or with check=False its output and errors, whatever its exit status."""
        result = subprocess.run(
            ["docker", "exec", "-i", self.container(service), "sh", "-c", command],
            input=stdin,
            capture_output=True,
            timeout=60,
        )
        if not check:
            return (result.stdout + result.stderr).decode()
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout.decode()

    def secret(self, name: str) -> str:
        """A secret as the user wrote it into the secrets folder."""
        return (Path(self.env["HOUSING_SECRETS_DIR"]) / name).read_text().strip()

    def logs(self, services: list[str], lines: int = 60) -> str:
        return self.run("logs", "--no-color", "--tail", str(lines), *services, check=False).stdout

    def url(self, port_name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    def graphql(self, auth, query: str, variables: dict) -> dict:
        """The data of a query to the webserver's GraphQL API, as the UI's user ``auth``."""
        import requests

        response = requests.post(
            self.url("DAGSTER_PORT", "/graphql"),
            json={"query": query, "variables": variables},
            auth=auth,
            timeout=60,
        )
        response.raise_for_status()
        return response.json()["data"]


def stack_environment(folder_root: Path, dataset: Path, **overrides: str) -> dict[str, str]:
    """The user's environment for the stack: the README's secret files (in ``folder_root``),
    the dataset's path, a (stand-in) GCP key file and W&B key, free host ports; then
    ``overrides``."""
    key = folder_root / "gcp-key.json"
    key.write_text(json.dumps({"type": "service_account", "project_id": "housing-test"}))
    key.chmod(0o644)
    wandb_key = folder_root / "wandb-key"
    wandb_key.write_text(secrets.token_hex(20))  # W&B stays offline (WANDB_MODE)
    wandb_key.chmod(0o644)
    folder = folder_root / "secrets"
    folder.mkdir(mode=0o700)
    for name in SECRET_FILES:  # as the README's command: openssl rand -hex 16, chmod 644
        (folder / name).write_text(secrets.token_hex(16) + "\n")
        (folder / name).chmod(0o644)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOUSING_", "MLFLOW_", "GOOGLE_", "WANDB_", "STORAGE_EMULATOR"))
    }
    return {
        **env,
        "HOUSING_SECRETS_DIR": str(folder),
        "WANDB_API_KEY_FILE": str(wandb_key),
        # The README's: the Docker socket's group, for the services that launch run containers.
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "HOUSING_DATASET": str(dataset),
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "DAGSTER_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "MODEL_PORT": str(free_port()),
        **overrides,
    }


@contextlib.contextmanager
def running_stack(
    env: dict[str, str], extra_files: list[Path] = (), project: str | None = None
) -> Iterator[Stack]:
    """The compose project (the shipped files plus ``extra_files``); on failure the last logs
    of the services that are not healthy (or of all), and `down -v` in every case."""
    project = project or f"housing-test-{os.getpid()}"
    stack = Stack(
        compose_command() or [],
        {**env, "HOUSING_STACK": project},
        project,
        [str(f) for f in extra_files],
    )
    try:
        yield stack
    except BaseException:
        states = stack.health()
        failing = [s for s, h in states.items() if h != "healthy"] or SERVICES
        print(f"service states: {states}\nlast logs of {failing}:\n{stack.logs(failing)}")
        raise
    finally:
        # The run containers the daemon launched first (compose does not know them, and they
        # hold the volumes), then the stack.
        runs = docker_ps(f"label=housing/run-of={project}-code")
        if runs:
            subprocess.run(["docker", "rm", "-f", *runs], capture_output=True)
        stack.run(
            "--profile", "workers", "down", "-v", "--remove-orphans", check=False, timeout=300
        )


def docker_ps(*filters: str) -> list[str]:
    """Ids of the host's containers, running or not, that match every filter
    (``docker ps -a --filter``: ``label=k=v``, ``status=exited``...)."""
    command = ["docker", "ps", "-aq"]
    for condition in filters:
        command += ["--filter", condition]
    return subprocess.run(command, capture_output=True, text=True).stdout.split()


def run_container(run_id: str) -> str | None:
    """The container the daemon launched for the run (dagster-docker labels it)."""
    found = docker_ps(f"label=dagster/run_id={run_id}")
    return found[0] if found else None
