"""Helpers shared by the benchmark scripts: the ones the tests use too (housing_assets_tests.support)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the scripts run as `python benchmarks/<name>.py`

from housing_assets_tests import support  # noqa: E402
from housing_assets_tests.support import (  # noqa: E402, F401
    CONTRACT_ASSETS,
    ML_ASSETS,
    background_server,
    execute_job_cli,
    free_port,
    launch_job_cli,
    launch_runs_at_once,
    wait_for,
    warm_code_server,
)

# The real dataset beside the repository (../shared/data/housing.tgz), if it is there.
DATASET: Path | None = support.find_dataset()
# Where the scripts read the data: HOUSING_SOURCE_URL, else that copy (None: the project's own
# default, the download).
DEFAULT_SOURCE: str | None = os.environ.get("HOUSING_SOURCE_URL") or (
    str(DATASET) if DATASET else None
)


def fresh_project_env(tmp: str | Path, source: str, **extra: str) -> dict[str, str]:
    """This process's environment plus a fresh project (Dagster home, data folder) under ``tmp``."""
    return {**os.environ, **support.fresh_project_env(tmp, source, **extra)}
