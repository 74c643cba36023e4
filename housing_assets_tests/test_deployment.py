"""The shipped deployment, driven like a user: the README's secret files, `docker compose up
--build` with the dataset mounted read-only, three tuning-worker containers, a run submitted
through the webserver's GraphQL API (behind its password) in a container of its own that
survives a restart of the code service while its study spreads over the workers, a run whose
container is killed failed by run monitoring, predictions over HTTP, a batch landing in the stack's data volume
retrained and served without a restart, a malformed batch quarantined, the registry read through
MLflow's REST API, least privilege checked (who holds which secret, MLflow accounts, PostgreSQL
roles, volumes), `docker compose down -v`.

Needs a Docker engine and compose (v2 plugin or docker-compose 1.29). `.ci/run` provides both
(and local stand-ins for the public base images where no registry is reachable) and sets
HOUSING_REQUIRE_DOCKER=1, which turns a missing engine into a failure instead of a skip.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from housing_assets_testkit import REPO_ROOT, free_port, wait_for

pytestmark = pytest.mark.deployment

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
MLFLOW_ACCOUNTS = {
    "admin": "mlflow_admin_password",
    "pipeline": "mlflow_pipeline_password",
    "model-reader": "mlflow_reader_password",
}
ROW = {
    "longitude": -122.23,
    "latitude": 37.88,
    "housing_median_age": 41,
    "total_rooms": 880,
    "total_bedrooms": None,
    "population": 322,
    "households": 126,
    "median_income": 8.3252,
    "ocean_proximity": "NEAR BAY",
}
ARTIFACTS = REPO_ROOT / "test-artifacts"
# The first run: the quick configuration, its search open to the tuning-worker containers.
N_TUNING_WORKERS = 3
FIRST_RUN_CONFIG = yaml.safe_load((REPO_ROOT / "housing_assets/defs/smoke.yaml").read_text())
FIRST_RUN_CONFIG["ops"]["tuned_params"]["config"].update(n_trials=12, open_to_workers=True)


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

    def __init__(self, compose: list[str], env: dict[str, str], project: str):
        self.base = [*compose, "-p", project]
        for file in COMPOSE_FILES:
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


def predict(stack: Stack, rows: list[dict], **params) -> tuple[int, dict, str | None]:
    payload = {"dataframe_records": rows, **({"params": params} if params else {})}
    request = urllib.request.Request(
        stack.url("MODEL_PORT", "/invocations"),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers["x-model-version"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), exc.headers.get("x-model-version")


def batch_csv(raw_frame, seed: int, n: int = 150) -> bytes:
    """New, plausible rows: real rows with a small jitter (so they are not duplicates)."""
    rng = np.random.default_rng(seed)
    rows = raw_frame.dropna().sample(n, random_state=seed).reset_index(drop=True)
    rows["median_income"] = (rows["median_income"] * rng.uniform(0.98, 1.02, n)).round(4)
    return rows.to_csv(index=False).encode()


def land(stack: Stack, name: str, data: bytes) -> None:
    """Drop a batch into the landing folder in the stack's data volume (mounted in the code
    service alone): write, then rename."""
    folder = "/opt/dagster/data/landing"
    stack.exec(
        "code",
        f"cat > {folder}/.{name}.partial && mv {folder}/.{name}.partial {folder}/{name}",
        stdin=data,
    )


class RequestLoop(threading.Thread):
    """Predictions in a bounded loop while a new version is swapped in: counts what it gets."""

    def __init__(self, stack: Stack, max_requests: int = 20_000, max_seconds: float = 900):
        super().__init__(daemon=True)
        self.stack, self.max_requests, self.max_seconds = stack, max_requests, max_seconds
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, _, version = predict(self.stack, [ROW])
            except OSError:
                status, version = 0, None  # connection refused or reset
            self.statuses[status] += 1
            self.versions[str(version)] += 1
            time.sleep(0.05)


@pytest.fixture
def stack_env(tmp_path, housing_tgz) -> dict[str, str]:
    """The user's environment for the stack: the README's secret files (in a folder of the test's
    own), the dataset's path, a (stand-in) GCP key file and W&B key, quick retraining, free host
    ports."""
    if compose_command() is None or not docker_engine_answers():
        message = "no Docker engine or compose here (.ci/run installs and starts them)"
        if os.environ.get("HOUSING_REQUIRE_DOCKER"):
            pytest.fail(message)
        pytest.skip(message)
    key = tmp_path / "gcp-key.json"
    key.write_text(json.dumps({"type": "service_account", "project_id": "housing-test"}))
    key.chmod(0o644)
    wandb_key = tmp_path / "wandb-key"
    wandb_key.write_text(secrets.token_hex(20))  # W&B stays offline (WANDB_MODE)
    wandb_key.chmod(0o644)
    folder = tmp_path / "secrets"
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
        "HOUSING_DATASET": str(housing_tgz),
        "HOUSING_RETRAIN_CONFIG": "/opt/dagster/app/configs/smoke.yaml",
        "HOUSING_SENSOR_INTERVAL_S": "5",
        "HOUSING_SERVE_POLL_S": "3",
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "DAGSTER_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "MODEL_PORT": str(free_port()),
    }


@contextlib.contextmanager
def running_stack(env: dict[str, str]) -> Iterator[Stack]:
    """The compose project; on failure the last logs of the services that are not healthy (or
    of all), and `down -v` in every case."""
    project = f"housing-test-{os.getpid()}"
    stack = Stack(compose_command() or [], {**env, "HOUSING_STACK": project}, project)
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
        runs = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=housing/run-of={project}-code"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if runs:
            subprocess.run(["docker", "rm", "-f", *runs], capture_output=True)
        stack.run(
            "--profile", "workers", "down", "-v", "--remove-orphans", check=False, timeout=300
        )


def test_compose_stack_trains_serves_and_retrains(stack_env, raw_frame):
    with running_stack(stack_env) as stack:
        timings = drive_the_stack(stack, raw_frame)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "deployment.json").write_text(json.dumps(timings, indent=2))
    print(json.dumps(timings, indent=2))


def drive_the_stack(stack: Stack, raw_frame) -> dict[str, float]:
    from dagster_graphql import DagsterGraphQLClient

    timings: dict[str, float] = {}
    start = time.monotonic()
    stack.run("build", timeout=1800)
    timings["build_s"] = time.monotonic() - start

    # The README's command (the build is cached now); every service healthy: compose itself
    # waits for the health of each service's dependencies.
    start = time.monotonic()
    stack.run("up", "-d", "--build", timeout=900)
    states = wait_for(
        lambda: (s := stack.health()) and all(h == "healthy" for h in s.values()) and s,
        300,
        "every service to be healthy",
        poll_s=2,
    )
    timings["up_to_healthy_s"] = time.monotonic() - start
    assert set(states) == set(SERVICES)

    # The image runs as a non-root user; the GCP key file arrived (read-only) where the
    # variable points; the model service waits for a champion with 503s, not restarts.
    assert stack.exec("code", "id -u").strip() == "1000"
    # The code service is Dagster's code server; it describes each run's container (its own
    # variables, volumes and secret files; deploy/run_container_context.py).
    processes = stack.exec("code", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    assert "dagster api grpc" in processes
    key_in_container = stack.exec("code", 'cat "$GOOGLE_APPLICATION_CREDENTIALS"')
    assert json.loads(key_in_container)["project_id"] == "housing-test"
    status, body, _ = predict(stack, [ROW])
    assert status == 503 and "champion" in body["message"], body
    with urllib.request.urlopen(stack.url("MODEL_PORT", "/status"), timeout=10) as response:
        assert json.loads(response.read())["state"] == "waiting for the alias"
    check_least_privilege(stack)

    # Tuning workers, as the README scales them: containers of their own that join the studies
    # runs open to them.
    stack.run(
        "--profile", "workers", "up", "-d", "--scale", f"tuning-worker={N_TUNING_WORKERS}",
        "tuning-worker", timeout=300,
    )  # fmt: skip
    workers = stack.containers("tuning-worker")
    assert len(workers) == N_TUNING_WORKERS

    # 1. A run through the webserver's GraphQL API, with the real client (quick configuration,
    # its search open to the workers), as the UI's user; without the password, or by a GET,
    # nothing is launched. The daemon starts it in a container of its own; the code service
    # restarted under it (what every deploy of new code does) leaves it running.
    ui_auth = requests.auth.HTTPBasicAuth("operator", stack.secret("ui_password"))
    client = DagsterGraphQLClient(
        "127.0.0.1", port_number=stack.ports["DAGSTER_PORT"], auth=ui_auth
    )
    check_ui_guard(stack, ui_auth)
    start = time.monotonic()
    run_id = client.submit_job_execution("housing_smoke_job", run_config=FIRST_RUN_CONFIG)
    container = wait_for(lambda: run_container(run_id), 120, "the run's container", poll_s=1)
    timings["submitted_to_container_s"] = time.monotonic() - start
    wait_for(
        lambda: client.get_run_status(run_id).value == "STARTED", 120, "the run to start", poll_s=1
    )
    subprocess.run(["docker", "restart", stack.container("code")], check=True, timeout=120)
    final = wait_for(
        lambda: (
            (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s
        ),
        1200,
        "the GraphQL-submitted run",
        poll_s=3,
    )
    timings["first_run_s"] = time.monotonic() - start
    assert final == "SUCCESS", docker_logs(container)
    assert container_state(container)["ExitCode"] == 0
    labels = json.loads(docker_inspect(container, "{{json .Config.Labels}}"))
    assert labels["housing/run-of"] == f"{stack.env['HOUSING_STACK']}-code", labels
    timings.update(check_study_spread_over_workers(stack, workers))
    stack.run("--profile", "workers", "stop", "tuning-worker", timeout=120)

    # 2. The model service picks up the first champion by itself (no restart).
    status, body, version = wait_for(
        lambda: (r := predict(stack, [ROW])) and r[0] == 200 and r,
        60,
        "version 1 to be served",
        poll_s=2,
    )
    assert version == "1" and 15_000 < body["predictions"][0] < 1_000_000, body
    status, body, _ = predict(stack, [ROW], interval=0.9)  # with MLflow's inference params
    (served,) = body["predictions"]
    assert status == 200 and served["lower"] < served["prediction"] < served["upper"], body
    restarts = subprocess.run(
        ["docker", "inspect", "--format", "{{.RestartCount}}", stack.container("model")],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert restarts == "0"

    # 3. A valid batch lands: the daemon's sensor retrains, the new version is served without a
    # restart, and no prediction fails during the swap.
    loop = RequestLoop(stack)
    loop.start()
    start = time.monotonic()
    land(stack, "batch-001.csv", batch_csv(raw_frame, 1))
    wait_for(lambda: loop.versions.get("2"), 900, "version 2 to be served", poll_s=1)
    timings["landing_to_served_s"] = time.monotonic() - start
    loop.stop.set()
    loop.join()
    assert set(loop.statuses) == {200}, loop.statuses
    assert stack.exec("code", "ls /opt/dagster/data/landing/accepted").split() == ["batch-001.csv"]

    # PostgreSQL restarted: the next submission through the webserver still succeeds (its
    # pooled connections are tested at checkout). That run's container then dies (killed, as
    # the kernel's OOM killer would): run monitoring fails it, naming the container's state,
    # within its poll interval, and the queue moves on (the batches below).
    subprocess.run(["docker", "restart", stack.container("postgres")], check=True, timeout=120)
    wait_for(lambda: stack.health()["postgres"] == "healthy", 120, "PostgreSQL", poll_s=1)
    doomed = client.submit_job_execution("housing_smoke_job")
    container = wait_for(lambda: run_container(doomed), 120, "the run's container", poll_s=1)
    wait_for(
        lambda: client.get_run_status(doomed).value == "STARTED", 120, "the run to start", poll_s=1
    )
    subprocess.run(["docker", "kill", container], check=True, timeout=60)
    killed = time.monotonic()
    wait_for(
        lambda: client.get_run_status(doomed).value == "FAILURE",
        60,
        "run monitoring to fail the killed run",
        poll_s=1,
    )
    timings["killed_to_failed_s"] = time.monotonic() - killed
    messages = run_messages(stack, ui_auth, doomed)
    assert any("Container status is exited" in m and '"ExitCode": 137' in m for m in messages), (
        messages[-5:]
    )

    # 4. A malformed batch: quarantined with its reason, no run, version 2 keeps serving.
    bad = batch_csv(raw_frame, 2).decode().splitlines()
    columns = bad[0].split(",")
    cells = bad[4].split(",")
    cells[columns.index("median_income")] = "about 4k"
    bad[4] = ",".join(cells)
    land(stack, "batch-002.csv", ("\n".join(bad) + "\n").encode())
    reason_file = "/opt/dagster/data/landing/quarantine/batch-002.csv.reason.txt"
    reason = wait_for(
        lambda: stack.exec("code", f"cat {reason_file} 2>/dev/null || true"),
        120,
        "the malformed batch to be quarantined",
        poll_s=2,
    )
    assert "batch-002.csv: column 'median_income' must be numeric" in reason
    assert predict(stack, [ROW])[2] == "2"

    # 5. The registry through MLflow's REST API, which asks who is calling: anonymous callers
    # can neither read nor move the champion, and the model server's read-only account can read
    # but neither move an alias nor register a version (models are pickles: a registered model
    # runs code). The model server keeps serving.
    def mlflow_api(path: str, user: str | None = "model-reader", data: dict | None = None):
        request = urllib.request.Request(
            stack.url("MLFLOW_PORT", f"/api/2.0/mlflow/{path}"),
            data=json.dumps(data).encode() if data else None,
            headers={"Content-Type": "application/json"},
            method="POST" if data else "GET",
        )
        if user:
            token = f"{user}:{stack.secret(MLFLOW_ACCOUNTS[user])}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    status, body = mlflow_api("registered-models/get?name=housing_price_model")
    assert status == 200, body
    aliases = {a["alias"]: a["version"] for a in body["registered_model"]["aliases"]}
    assert aliases["champion"] == "2" and aliases["challenger"] == "2", aliases
    status, body = mlflow_api("model-versions/get?name=housing_price_model&version=2")
    tags = {t["key"]: t["value"] for t in body["model_version"]["tags"]}
    assert tags["promotion_decision"].startswith("promoted") and tags["previous_champion"] == "1"
    assert mlflow_api("registered-models/get?name=housing_price_model", user=None)[0] == 401
    move = {"name": "housing_price_model", "alias": "champion", "version": "1"}
    assert mlflow_api("registered-models/alias", user=None, data=move)[0] == 401
    assert mlflow_api("registered-models/alias", data=move)[0] == 403
    # Artifacts go through the server's proxy (only the MLflow service mounts the store).
    status, body = mlflow_api("model-versions/get-download-uri?name=housing_price_model&version=2")
    assert body["artifact_uri"].startswith("mlflow-artifacts:/"), body
    register = {"name": "housing_price_model", "source": body["artifact_uri"]}
    assert mlflow_api("model-versions/create", data=register)[0] == 403
    status, body = mlflow_api("registered-models/get?name=housing_price_model")
    assert {a["alias"]: a["version"] for a in body["registered_model"]["aliases"]} == aliases
    assert predict(stack, [ROW])[:1] == (200,) and predict(stack, [ROW])[2] == "2"
    with urllib.request.urlopen(stack.url("MLFLOW_PORT", "/health"), timeout=10) as response:
        assert response.status == 200  # the health check needs no credentials

    timings["requests_during_swap"] = sum(loop.statuses.values())

    # 6. The MLflow server down for 30 s as the next batch lands: the model server keeps
    # answering from memory, the retrain's MLflow calls retry with backoff, and version 3 is
    # served once MLflow is back.
    loop = RequestLoop(stack)
    loop.start()
    start = time.monotonic()
    land(stack, "batch-003.csv", batch_csv(raw_frame, 3))
    subprocess.run(["docker", "stop", stack.container("mlflow")], check=True, timeout=120)
    time.sleep(30)
    subprocess.run(["docker", "start", stack.container("mlflow")], check=True, timeout=120)
    wait_for(lambda: loop.versions.get("3"), 900, "version 3 to be served", poll_s=1)
    timings["landing_to_served_through_mlflow_outage_s"] = time.monotonic() - start
    loop.stop.set()
    loop.join()
    assert set(loop.statuses) == {200}, loop.statuses
    image = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", "housing-assets:latest"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    timings["image_mb"] = round(int(image) / 1e6)

    # Without a key file on the host compose mounts /dev/null: the entry point must unset the
    # variable rather than hand google-auth an empty key file.
    no_key = subprocess.run(
        [
            *("docker", "run", "--rm", "-e", "GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/k.json"),
            *("-v", "/dev/null:/run/secrets/k.json:ro", "housing-assets:latest"),
            *("sh", "-c", 'echo "${GOOGLE_APPLICATION_CREDENTIALS:-unset}"'),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_key.stdout.strip() == "unset", no_key.stderr
    return timings


def docker_inspect(container: str, template: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", template, container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def container_state(container: str) -> dict:
    return json.loads(docker_inspect(container, "{{json .State}}"))


def docker_logs(container: str, lines: int = 80) -> str:
    result = subprocess.run(
        ["docker", "logs", "--tail", str(lines), container], capture_output=True, text=True
    )
    return result.stdout + result.stderr


def run_container(run_id: str) -> str | None:
    """The container the daemon launched for the run (dagster-docker labels it)."""
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=dagster/run_id={run_id}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return found[0] if found else None


def run_messages(stack: Stack, auth, run_id: str) -> list[str]:
    """The messages of the run's event log, through the webserver's GraphQL API."""
    query = (
        "query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection "
        "{ events { ... on MessageEvent { message } } } } }"
    )
    response = requests.post(
        stack.url("DAGSTER_PORT", "/graphql"),
        json={"query": query, "variables": {"runId": run_id}},
        auth=auth,
        timeout=30,
    )
    response.raise_for_status()
    events = response.json()["data"]["logsForRun"]["events"]
    return [e["message"] for e in events if e.get("message")]


def check_study_spread_over_workers(stack: Stack, workers: list[str]) -> dict[str, float]:
    """Every tuning-worker container finished trials of the run's study (each trial records
    its process as host:pid, and a container's host name is its short id)."""
    sql = (
        "select a.value_json, t.state, extract(epoch from t.datetime_complete - "
        "t.datetime_start) from trial_user_attributes a join trials t using (trial_id) "
        "where a.key = 'worker'"
    )
    rows = stack.exec(
        "postgres",
        f"PGPASSWORD=$(cat /run/secrets/optuna_db_password) psql -h postgres -U optuna -d optuna "
        f'-At -F "|" -c "{sql}"',
    ).split()
    finished = Counter()
    for row in rows:
        worker, state, _ = row.split("|")
        if state in ("COMPLETE", "PRUNED"):
            finished[json.loads(worker).split(":")[0]] += 1
    for container in workers:
        assert finished[container[:12]] >= 1, (container[:12], finished)
    return {"trials_by_worker_containers": sum(finished[c[:12]] for c in workers)}


def check_least_privilege(stack: Stack) -> None:
    """Each service holds only its own secret files; the webserver and daemon hold no MLflow,
    W&B or GCP credential; only the MLflow server mounts its store; each PostgreSQL role reaches
    its own database alone, and the superuser has no password."""
    for service in SERVICES:
        held = set(stack.exec(service, "ls /run/secrets 2>/dev/null || true").split())
        expected = {name for name, users in SECRET_FILES.items() if service in users}
        if service == "code":
            expected |= {"gcp_key", "wandb_api_key", "alert_webhook_url"}
        assert held == expected, (service, held)
    wandb_key = Path(stack.env["WANDB_API_KEY_FILE"]).read_text().strip()
    credentials = [stack.secret(f) for f in MLFLOW_ACCOUNTS.values()] + [wandb_key]
    for service in ("webserver", "daemon"):
        env = stack.exec(service, "env")
        for variable in ("MLFLOW_TRACKING", "WANDB_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
            assert variable not in env, (service, variable)
        process_env = stack.exec(service, "tr '\\0' '\\n' < /proc/1/environ")
        assert "DAGSTER_POSTGRES_PASSWORD=" in process_env  # the entry point's export
        assert not any(c in process_env for c in credentials), service
    # The code service's W&B key and MLflow password arrive as files, which the entry point
    # reads for the service's own process.
    assert wandb_key in stack.exec("code", "tr '\\0' '\\n' < /proc/1/environ")
    for variable in ("MLFLOW_TRACKING_PASSWORD=", "WANDB_API_KEY="):
        assert variable not in stack.exec("code", "env")
    # The Docker socket (root on the host) only where run containers are launched or stopped.
    for service in SERVICES:
        has_socket = stack.exec(service, "test -S /var/run/docker.sock && echo yes || true")
        has_socket = has_socket.strip() == "yes"
        assert has_socket == (service in ("daemon", "webserver")), service
    # The artifact store and MLflow's accounts: on the MLflow server's volume alone.
    for service in ("code", "webserver", "daemon", "model"):
        assert " /opt/mlflow " not in stack.exec(service, "cat /proc/mounts"), service
    assert "auth.db" in stack.exec("mlflow", "ls /opt/mlflow")
    assert " /opt/dagster/data " not in stack.exec("webserver", "cat /proc/mounts")
    # PostgreSQL: each role connects to its own database only; the superuser has no password.
    # (over the compose network, as the services connect: the image trusts loopback)
    psql = "PGPASSWORD=$(cat /run/secrets/{0}_db_password) psql -h postgres -U {0} -d {1} -c ''"
    for role in ("dagster", "mlflow", "optuna"):
        assert stack.exec("postgres", psql.format(role, role), check=False).strip() == ""
        other = "optuna" if role == "dagster" else "dagster"
        refused = stack.exec("postgres", psql.format(role, other), check=False)
        assert "permission denied for database" in refused, (role, refused)
    superuser = stack.exec(
        "postgres",
        "PGPASSWORD=dropped-by-init-databases-sql psql -h postgres -U postgres -d postgres -c ''",
        check=False,
    )
    assert "password authentication failed" in superuser, superuser


def check_ui_guard(stack: Stack, auth: requests.auth.HTTPBasicAuth) -> None:
    """The webserver answers GraphQL only to the UI's user, by JSON POST, under an allowed
    host name; a GET that carries a mutation launches nothing."""
    graphql = stack.url("DAGSTER_PORT", "/graphql")
    count = {"query": "{ runsOrError { ... on Runs { count } } }"}

    def runs() -> int:
        response = requests.post(graphql, json=count, auth=auth, timeout=30)
        response.raise_for_status()
        return response.json()["data"]["runsOrError"]["count"]

    assert requests.post(graphql, json=count, timeout=30).status_code == 401
    wrong = requests.auth.HTTPBasicAuth("operator", "not-" + stack.secret("ui_password"))
    assert requests.post(graphql, json=count, auth=wrong, timeout=30).status_code == 401
    foreign = {"Host": "attacker.example"}
    response = requests.post(graphql, json=count, auth=auth, headers=foreign, timeout=30)
    assert response.status_code == 421, response.status_code  # Misdirected Request
    before = runs()
    launch = (
        "mutation { launchRun(executionParams: {selector: {repositoryLocationName: "
        '"housing_assets", repositoryName: "__repository__", jobName: "housing_smoke_job"}}) '
        "{ __typename } }"
    )
    response = requests.get(graphql, params={"query": launch}, auth=auth, timeout=30)
    assert 400 <= response.status_code < 500, response.status_code
    time.sleep(2)
    assert runs() == before
