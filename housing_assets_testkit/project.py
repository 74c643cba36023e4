"""The project's layout and asset names, the real dataset, and a fresh project's environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The checkout this package is installed from (editable): the repository root.
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
# The assets whose ML call is timed as `compute_s` metadata (the others only move data); the
# bare benchmark script times the same calls as its steps.
ML_ASSETS = [
    "imputed_housing",
    "geo_features",
    "model_comparison",
    "tuned_params",
    "registered_model",
]


def find_dataset() -> Path | None:
    """``HOUSING_TEST_DATA``, else ``shared/data/housing.tgz`` beside the repository, if there."""
    candidates = [os.environ.get("HOUSING_TEST_DATA", "")]
    candidates += [str(p / "shared" / "data" / "housing.tgz") for p in REPO_ROOT.parents]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def default_source() -> str | None:
    """Where the benchmarks read the data: ``HOUSING_SOURCE_URL``, else the dataset beside the
    repository (None: the project's own default, the download)."""
    dataset = find_dataset()
    return os.environ.get("HOUSING_SOURCE_URL") or (str(dataset) if dataset else None)


def fresh_project_env(tmp: str | Path, source: str, **extra: str) -> dict[str, str]:
    """Variables for a fresh project under ``tmp``: its own Dagster home (the repo's
    dagster.yaml), data folder (so its own MLflow store and landing zone), W&B offline."""
    home = Path(tmp, "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "HOUSING_DATA_DIR": str(Path(tmp, "data")),
        "HOUSING_SOURCE_URL": source,
        "WANDB_MODE": "offline",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


def fresh_process_env(tmp: str | Path, source: str, **extra: str) -> dict[str, str]:
    """This process's environment plus a fresh project under ``tmp`` (for a child process)."""
    return {**os.environ, **fresh_project_env(tmp, source, **extra)}


def launch_runs_at_once(env: dict) -> None:
    """Make the project under ``env`` launch a submitted run at once (Dagster's default run
    coordinator) instead of queueing it for the daemon, the instance file otherwise as shipped."""
    import yaml

    instance_file = Path(env["DAGSTER_HOME"], "dagster.yaml")
    config = yaml.safe_load(instance_file.read_text())
    config["run_coordinator"] = {
        "module": "dagster._core.run_coordinator",
        "class": "DefaultRunCoordinator",
    }
    instance_file.write_text(yaml.safe_dump(config))
