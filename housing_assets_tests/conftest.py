"""Shared fixtures: the real dataset served over a local HTTP server, synthetic data, and an
isolated environment (temporary Dagster home, data folder and MLflow store) per test."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from housing_assets_testkit import (
    find_dataset,
    free_port,
    fresh_project_env,
    make_synthetic_housing,
    register_constant_model,
)


@pytest.fixture(scope="session")
def housing_tgz() -> Path:
    dataset = find_dataset()
    if dataset is None:
        raise FileNotFoundError(
            "the real dataset was not found: set HOUSING_TEST_DATA to housing.tgz "
            "(it lives in ../shared/data/ beside the repository)"
        )
    return dataset


@pytest.fixture(scope="session")
def http_server(tmp_path_factory, housing_tgz):
    """A real HTTP server on 127.0.0.1 serving a copy of the real dataset as ``/housing.tgz``;
    yields its base URL."""
    root = tmp_path_factory.mktemp("http_root")
    shutil.copy(housing_tgz, root / "housing.tgz")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture(scope="session")
def raw_frame(housing_tgz) -> pd.DataFrame:
    from housing_assets.ml.parsing import parse_payload

    return parse_payload(housing_tgz.read_bytes(), housing_tgz.name)


@pytest.fixture
def synthetic_housing() -> pd.DataFrame:
    return make_synthetic_housing()


@pytest.fixture
def isolated_env(tmp_path, monkeypatch, http_server):
    """Environment variables for a fresh project: Dagster home, data folder, MLflow store and
    the real dataset over HTTP. W&B runs offline into the data folder."""
    env = fresh_project_env(tmp_path, f"{http_server}/housing.tgz")
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",  # mlflow.set_registry_uri() exports it, e.g. in an earlier test
        "HOUSING_GCS_BUCKET",
        "HOUSING_LANDING_URL",
        "STORAGE_EMULATOR_HOST",
        "WANDB_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def gcs_server():
    """A real GCS server (gcp-storage-emulator, in memory) on 127.0.0.1; yields its endpoint."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_server, monkeypatch, request) -> str:
    """A fresh bucket on the local GCS server, with STORAGE_EMULATOR_HOST pointing at it."""
    from housing_assets.io.gcs import storage_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    name = f"test-{request.node.name.lower().replace('_', '-')[:40]}-{free_port()}"
    storage_client().create_bucket(name)
    return name


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A real MLflow sqlite registry with three versions of a tiny model; v3 is champion and
    records v2 as the champion before it."""
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("HOUSING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from housing_assets import settings

    uri = settings.mlflow_tracking_uri()
    (tmp_path / "data" / "mlflow").mkdir(parents=True)
    # mlflow.set_*_uri export these variables; set through monkeypatch, they end with the test.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    X = pd.DataFrame({"x": [1.0, 2.0]})
    for value in (100.0, 200.0, 300.0):
        register_constant_model(value, X, experiment_id=exp)
    client = MlflowClient(uri, uri)
    from housing_assets.io.integrity import record_model_digest

    for version in ("1", "2", "3"):  # as registration records them
        record_model_digest(client, "housing_price_model", version)
    client.set_registered_model_alias("housing_price_model", "champion", "3")
    client.set_model_version_tag("housing_price_model", "3", "previous_champion", "2")
    yield client, X
    # MLflow keeps the URIs in module globals too: unset them, so that no later test in this
    # process reads this test's store (the variables are restored by monkeypatch).
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    registry_utils._registry_uri = None
    tracking_utils._tracking_uri = None
