"""Shared fixtures: the real dataset served over a local HTTP server, synthetic data, and an
isolated environment (temporary Dagster home, data folder and MLflow store) per test."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from housing_assets.ml.schema import OCEAN_CATEGORIES, RAW_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTRACT_ASSETS = [
    "raw_housing",
    "imputed_housing",
    "geo_features",
    "train_test_split",
    "model_comparison",
    "tuned_params",
    "registered_model",
]


def _find_dataset() -> Path:
    candidates = [os.environ.get("HOUSING_TEST_DATA", "")]
    candidates += [str(p / "shared" / "data" / "housing.tgz") for p in REPO_ROOT.parents]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(
        "the real dataset was not found: set HOUSING_TEST_DATA to housing.tgz "
        "(it lives in ../shared/data/ beside the repository)"
    )


@pytest.fixture(scope="session")
def housing_tgz() -> Path:
    return _find_dataset()


@pytest.fixture(scope="session")
def http_root(tmp_path_factory, housing_tgz) -> Path:
    root = tmp_path_factory.mktemp("http_root")
    shutil.copy(housing_tgz, root / "housing.tgz")
    return root


@pytest.fixture(scope="session")
def http_server(http_root):
    """A real HTTP server on 127.0.0.1 serving ``http_root``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(http_root))
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
    from housing_assets.ml.source import parse_payload

    return parse_payload(housing_tgz.read_bytes(), housing_tgz.name)


def make_synthetic_housing(n: int = 600, seed: int = 0, missing: int = 20) -> pd.DataFrame:
    """Rows in the raw schema with a known structure: price rises with income and falls inland."""
    rng = np.random.default_rng(seed)
    households = rng.uniform(100, 1500, n).round()
    rooms = households * rng.uniform(3, 7, n)
    income = rng.uniform(0.5, 12, n)
    longitude = rng.uniform(-124, -115, n)
    latitude = rng.uniform(33, 41, n)
    inland = longitude > -119.5
    price = 40_000 + 35_000 * income - 60_000 * inland + rng.normal(0, 8_000, n)
    frame = pd.DataFrame(
        {
            "longitude": longitude,
            "latitude": latitude,
            "housing_median_age": rng.uniform(1, 52, n).round(),
            "total_rooms": rooms.round(),
            "total_bedrooms": (rooms * 0.2 + rng.normal(0, 5, n)).round(),
            "population": (households * rng.uniform(2, 4, n)).round(),
            "households": households,
            "median_income": income,
            "median_house_value": np.clip(price, 15_000, 500_001),
            "ocean_proximity": np.where(
                inland, "INLAND", rng.choice(OCEAN_CATEGORIES[:1] + OCEAN_CATEGORIES[2:4], n)
            ),
        }
    )[RAW_COLUMNS]
    frame.loc[rng.choice(n, size=min(missing, n // 10), replace=False), "total_bedrooms"] = np.nan
    return frame


@pytest.fixture
def synthetic_housing() -> pd.DataFrame:
    return make_synthetic_housing()


@pytest.fixture
def isolated_env(tmp_path, monkeypatch, http_server):
    """Environment variables for a fresh project: Dagster home, data folder, MLflow store and
    the real dataset over HTTP. W&B runs offline into the data folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "HOUSING_DATA_DIR": str(tmp_path / "data"),
        "HOUSING_SOURCE_URL": f"{http_server}/housing.tgz",
        "WANDB_MODE": "offline",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    for name in (
        "MLFLOW_TRACKING_URI",
        "HOUSING_GCS_BUCKET",
        "HOUSING_LANDING_URL",
        "STORAGE_EMULATOR_HOST",
        "WANDB_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    from housing_assets.gcs import storage_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server)
    name = f"test-{request.node.name.lower().replace('_', '-')[:40]}-{free_port()}"
    storage_client().create_bucket(name)
    return name


def materialize_cli(selection: str, env: dict, config: str = "configs/smoke.yaml"):
    """`dagster asset materialize` in a new process, as a user runs it (smoke config)."""
    import subprocess
    import sys

    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "asset",
            "materialize",
            "-m",
            "housing_assets.definitions",
            "--select",
            selection,
            "-c",
            str(REPO_ROOT / config),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
