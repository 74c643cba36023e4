"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The real dataset beside the repository (../shared/data/housing.tgz), if it is there.
DATASET: Path | None = next(
    (
        p / "shared" / "data" / "housing.tgz"
        for p in REPO.parents
        if (p / "shared" / "data" / "housing.tgz").is_file()
    ),
    None,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_project_env(tmp: str | Path, source: str, **extra: str) -> dict[str, str]:
    """Environment for a run in a fresh Dagster home and data folder under ``tmp``."""
    home = Path(tmp, "home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HOUSING_DATA_DIR": str(Path(tmp, "data")),
        "HOUSING_SOURCE_URL": source,
        "WANDB_MODE": "offline",
        **extra,
    }
