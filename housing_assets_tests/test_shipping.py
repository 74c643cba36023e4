"""Static checks of the shipping files (test_deployment.py runs them under a real engine)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from housing_assets_testkit import REPO_ROOT


def test_compose_runs_the_services_on_one_image():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        *("postgres", "mlflow", "mlflow-users", "code", "webserver", "daemon", "model"),
        "tuning-worker",
    }
    image = "${HOUSING_IMAGE:-housing-assets:latest}"
    for name in ("code", "webserver", "daemon", "mlflow", "mlflow-users", "model", "tuning-worker"):
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"] == image
        # a one-shot step, and workers that only poll (restart: unless-stopped)
        assert name in ("mlflow-users", "tuning-worker") or "healthcheck" in services[name]
    # Each run is a container of the same image, launched by the daemon.
    assert services["code"]["environment"]["DAGSTER_CONTAINER_IMAGE"] == image
    assert services["tuning-worker"]["profiles"] == ["workers"]  # off unless asked for
    assert "healthcheck" in services["postgres"]
    for name, service in services.items():  # published on loopback unless the user opts in
        for port in service.get("ports", []):
            assert port.startswith("${HOUSING_BIND:-127.0.0.1}:"), (name, port)
    assert services["model"]["command"].startswith("housing-serve ")
    assert services["model"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["webserver"]["command"].startswith("housing-webserver ")
    assert "dagster-daemon run" in services["daemon"]["command"]
    instance = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    assert "postgres" in instance["storage"]


def test_compose_services_get_only_their_own_secrets():
    """Least privilege: secrets as files, each to the services that use it; MLflow accounts
    per role; the MLflow store on the MLflow server's volume alone."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    held = {name: set(service.get("secrets", [])) for name, service in services.items()}
    assert held == {
        "postgres": {"dagster_db_password", "mlflow_db_password", "optuna_db_password"},
        "mlflow": {"mlflow_db_password", "mlflow_admin_password", "mlflow_secret_key"},
        "mlflow-users": {
            "mlflow_admin_password",
            "mlflow_pipeline_password",
            "mlflow_reader_password",
        },
        "code": {
            "dagster_db_password",
            "optuna_db_password",
            "mlflow_pipeline_password",
            "gcp_key",
            "wandb_api_key",
            "alert_webhook_url",
        },
        "tuning-worker": {"optuna_db_password", "gcp_key"},
        "webserver": {"dagster_db_password", "ui_password"},
        "daemon": {"dagster_db_password"},
        "model": {"mlflow_reader_password"},
    }
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"}, name
    env = {name: service.get("environment", {}) for name, service in services.items()}
    assert env["code"]["MLFLOW_TRACKING_USERNAME"] == "pipeline"
    assert env["model"]["MLFLOW_TRACKING_USERNAME"] == "model-reader"
    assert env["mlflow-users"]["MLFLOW_TRACKING_USERNAME"] == "admin"
    for name in ("webserver", "daemon"):  # they only ask the code server, over gRPC
        assert not any(k.startswith(("MLFLOW_", "WANDB_", "GOOGLE_")) for k in env[name]), name
    for name, variables in env.items():  # passwords arrive as files, never as values
        for key, value in variables.items():
            assert not key.endswith(("PASSWORD", "SECRET_KEY")) or key == "POSTGRES_PASSWORD"
            assert "${" not in str(value) or "PASSWORD" not in str(value), (name, key)
    mounts = {name: [v.split(":")[0] for v in s.get("volumes", [])] for name, s in services.items()}
    assert [name for name, volumes in mounts.items() if "mlflow" in volumes] == ["mlflow"]
    assert [name for name, volumes in mounts.items() if "data" in volumes] == [
        "code",
        "tuning-worker",
    ]
    assert "data:/opt/dagster/data:ro" in services["tuning-worker"]["volumes"]  # reads only
    # The Docker socket (root on the host) where run containers are launched and stopped only.
    sockets = [n for n, volumes in mounts.items() if "/var/run/docker.sock" in volumes]
    assert sorted(sockets) == ["daemon", "webserver"]
    assert "/opt/mlflow/" in (REPO_ROOT / "deploy" / "mlflow-auth.ini").read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_validates(tmp_path):
    command = ["docker-compose", "-f", "docker-compose.yaml", "config", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOUSING_", "GOOGLE_"))}
    env["HOUSING_SECRETS_DIR"] = str(tmp_path)
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    gcs = [*command[:3], "-f", "deploy/docker-compose.gcs.yaml", *command[3:]]
    result = subprocess.run(gcs, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_creates_every_secret_the_stack_reads():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    files = {n for n, s in compose["secrets"].items() if "HOUSING_SECRETS_DIR" in s["file"]}
    readme = (REPO_ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "openssl rand" in line)
    assert set(command.split(" in ", 1)[1].split(";", 1)[0].split()) == files
    assert "secrets/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_dockerfile_lints_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
