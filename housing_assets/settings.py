"""Where things live by default. Every default can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from housing_assets.io.source import DEFAULT_SOURCE_URL


def data_dir() -> Path:
    """The project's data folder: ``HOUSING_DATA_DIR``, else ``./data`` under the working directory."""
    return Path(os.environ.get("HOUSING_DATA_DIR") or Path.cwd() / "data").resolve()


def source_url() -> str:
    return os.environ.get("HOUSING_SOURCE_URL") or DEFAULT_SOURCE_URL


def landing_url() -> str:
    return os.environ.get("HOUSING_LANDING_URL") or str(data_dir() / "landing")


def threads() -> int:
    """Threads for LightGBM, forests, k-NN and joblib: ``HOUSING_THREADS``, else every core this
    process may run on (its CPU affinity, which containers and taskset narrow)."""
    given = os.environ.get("HOUSING_THREADS")
    if given:
        return max(1, int(given))
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def mlflow_tracking_uri() -> str:
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow' / 'mlflow.db'}"
    )


def mlflow_artifact_location() -> str | None:
    """Artifact root for new experiments: ``HOUSING_MLFLOW_ARTIFACTS`` (e.g. ``gs://bucket/mlflow``),
    else a folder beside the embedded store (None lets a remote tracking server decide)."""
    explicit = os.environ.get("HOUSING_MLFLOW_ARTIFACTS")
    if explicit:
        return explicit
    if "MLFLOW_TRACKING_URI" in os.environ:
        return None
    return (data_dir() / "mlflow" / "artifacts").as_uri()


def wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"
