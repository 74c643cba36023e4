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
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from housing_assets_testkit import REPO_ROOT, wait_for
from housing_assets_testkit.stack import (
    SECRET_FILES,
    SERVICES,
    Stack,
    compose_command,
    docker_engine_answers,
    docker_ps,
    run_container,
    running_stack,
    stack_environment,
)

pytestmark = pytest.mark.deployment

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

    def finish(self) -> None:
        """Stop the loop; every prediction it sent must have been answered (200)."""
        self.stop.set()
        self.join()
        assert set(self.statuses) == {200}, self.statuses


@pytest.fixture
def stack_env(tmp_path, housing_tgz) -> dict[str, str]:
    """The user's environment for the stack (housing_assets_testkit.stack), with quick
    retraining and few finished run containers kept (the test sees the launcher remove the
    older ones)."""
    if compose_command() is None or not docker_engine_answers():
        message = "no Docker engine or compose here (.ci/run installs and starts them)"
        if os.environ.get("HOUSING_REQUIRE_DOCKER"):
            pytest.fail(message)
        pytest.skip(message)
    return stack_environment(
        tmp_path,
        housing_tgz,
        HOUSING_RETRAIN_CONFIG="/opt/dagster/app/configs/smoke.yaml",
        HOUSING_SENSOR_INTERVAL_S="5",
        HOUSING_SERVE_POLL_S="3",
        HOUSING_KEEP_RUN_CONTAINERS="2",
    )


# The test's one change to the shipped stack: the data volume is a tmpfs of bounded size, so
# that filling it (a fault below) does not fill the host's disk. A tmpfs volume starts empty:
# the image's landing folder is made after `up`.
DATA_VOLUME_MB = 768
SMALL_DATA_VOLUME = {
    "volumes": {
        "data": {
            "driver": "local",
            "driver_opts": {
                "type": "tmpfs",
                "device": "tmpfs",
                "o": f"size={DATA_VOLUME_MB}m,uid=1000,gid=1000,mode=0755",
            },
        }
    }
}


def test_compose_stack_trains_serves_and_retrains(stack_env, raw_frame, tmp_path):
    small_volume = tmp_path / "docker-compose.small-data-volume.yaml"
    small_volume.write_text(yaml.safe_dump(SMALL_DATA_VOLUME))
    with running_stack(stack_env, [small_volume]) as stack:
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
    stack.exec("code", "mkdir -p /opt/dagster/data/landing")  # the image's, on a normal volume

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
    loop.finish()
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

    # 6. The MLflow server down for 30 s while the next batch's retrain registers its model:
    # the model server keeps answering from memory, the registration's MLflow calls retry with
    # the client's backoff, exactly one version is made, and it is served once MLflow is back.
    loop = RequestLoop(stack)
    loop.start()
    start = time.monotonic()
    land(stack, "batch-003.csv", batch_csv(raw_frame, 3))
    retrain = wait_for(
        lambda: running_container("retrain_job"), 300, "the batch's retrain", poll_s=0.5
    )
    wait_for(
        lambda: "registered_model - STEP_START" in docker_logs(retrain, lines=40),
        600,
        "the retrain to reach registered_model",
        poll_s=0.5,
    )
    subprocess.run(["docker", "stop", stack.container("mlflow")], check=True, timeout=120)
    time.sleep(30)
    subprocess.run(["docker", "start", stack.container("mlflow")], check=True, timeout=120)
    wait_for(lambda: loop.versions.get("3"), 900, "version 3 to be served", poll_s=1)
    timings["landing_to_served_through_mlflow_outage_s"] = time.monotonic() - start
    loop.finish()
    status, body = mlflow_api(
        "model-versions/search?filter=" + urllib.parse.quote("name='housing_price_model'")
    )
    versions = sorted(int(v["version"]) for v in body.get("model_versions", []))
    assert status == 200 and versions == [1, 2, 3], (status, versions)  # no retried duplicate
    image = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", "housing-assets:latest"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    timings["image_mb"] = round(int(image) / 1e6)

    # 7. The data volume full while an asset is written: the run fails naming the file and the
    # free space, the model server keeps answering, no half-written version is left; with the
    # space back, the next batch is retrained (reading the previous versions) and served.
    loop = RequestLoop(stack)
    loop.start()
    data = "/opt/dagster/data"
    stack.exec(
        "code",
        f"dd if=/dev/zero of={data}/.filler bs=1M 2>/dev/null; "
        f"dd if=/dev/zero of={data}/.filler-rest bs=4k 2>/dev/null; df -k {data}",
    )
    full = client.submit_job_execution("housing_smoke_job")
    final = wait_for(
        lambda: (s := client.get_run_status(full).value) in ("SUCCESS", "FAILURE") and s,
        600,
        "the run on a full disk to end",
        poll_s=2,
    )
    messages = run_messages(stack, ui_auth, full)
    assert final == "FAILURE", messages[-5:]
    assert any(
        "No space left on device" in m
        and "bytes free there" in m
        and "previous version is kept" in m
        for m in messages
    ), messages[-5:]
    stack.exec("code", f"rm -f {data}/.filler {data}/.filler-rest")
    half_written = stack.exec("code", f"find {data}/assets -name '.*' -type f")
    assert half_written.strip() == "", half_written
    start = time.monotonic()
    land(stack, "batch-004.csv", batch_csv(raw_frame, 4))
    wait_for(lambda: loop.versions.get("4"), 900, "version 4 to be served", poll_s=1)
    timings["landing_to_served_after_disk_full_s"] = time.monotonic() - start
    loop.finish()

    # The run launcher kept the newest finished run containers (HOUSING_KEEP_RUN_CONTAINERS)
    # and removed the older ones, the first run's among them.
    finished = docker_ps("status=exited", f"label=housing/run-of={stack.env['HOUSING_STACK']}-code")
    assert 1 <= len(finished) <= 2, finished
    assert run_container(run_id) is None

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


def running_container(job: str) -> str | None:
    """The running container of a run of ``job``, if any."""
    found = docker_ps(f"label=dagster/job_name={job}", "status=running")
    return found[0] if found else None


def run_messages(stack: Stack, auth, run_id: str) -> list[str]:
    """The messages of the run's event log, through the webserver's GraphQL API; a failed
    step's message carries its error and the error's causes."""
    query = (
        "query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection "
        "{ events { ... on MessageEvent { message } ... on ExecutionStepFailureEvent "
        "{ error { message causes { message } } } } } } }"
    )
    events = stack.graphql(auth, query, {"runId": run_id})["logsForRun"]["events"]
    messages = []
    for event in events:
        error = event.get("error") or {}
        causes = [c["message"] for c in error.get("causes") or []]
        messages.append(
            " ".join(filter(None, [event.get("message"), error.get("message"), *causes]))
        )
    return [m for m in messages if m]


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
