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
    assert set(services) == {"postgres", "mlflow", "code", "webserver", "daemon", "model"}
    for name in ("code", "webserver", "daemon", "mlflow", "model"):
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"] == "housing-assets:latest"
        assert "healthcheck" in services[name]
    assert "healthcheck" in services["postgres"]
    for name, service in services.items():  # published on loopback unless the user opts in
        for port in service.get("ports", []):
            assert port.startswith("${HOUSING_BIND:-127.0.0.1}:"), (name, port)
    assert "PASSWORD: ${POSTGRES_PASSWORD:?" in (REPO_ROOT / "docker-compose.yaml").read_text()
    assert services["model"]["command"].startswith("housing-serve ")
    assert services["model"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "dagster-webserver" in services["webserver"]["command"]
    assert "dagster-daemon run" in services["daemon"]["command"]
    env = services["daemon"]["environment"]
    for variable in (
        "HOUSING_GCS_BUCKET",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "STORAGE_EMULATOR_HOST",
        "MLFLOW_TRACKING_URI",
    ):
        assert variable in env
    instance = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    assert "postgres" in instance["storage"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_validates():
    command = ["docker-compose", "-f", "docker-compose.yaml", "config", "-q"]
    secrets = ("POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    refused = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD" in refused.stderr
    env.update(dict.fromkeys(secrets, "from-the-users-env"))
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_dockerfile_lints_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "Dockerfile"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
