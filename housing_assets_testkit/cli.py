"""The dagster CLI on this code location in a new process, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from housing_assets_testkit.project import REPO_ROOT


def materialize_cli(selection: str, env: dict, config: str = "configs/smoke.yaml"):
    """`dagster asset materialize` in a new process, as a user runs it (smoke config)."""
    options = ["--select", selection, "-c", str(REPO_ROOT / config)]
    return _dagster_cli(["asset", "materialize", "-m", "housing_assets.definitions"], options, env)


def execute_job_cli(job: str, env: dict, **run_options):
    """`dagster job execute` of ``job`` in a new process, as `make run` does; ``run_options``
    go to subprocess.run (e.g. check=True)."""
    return _dagster_cli(
        ["job", "execute", "-m", "housing_assets.definitions"], ["-j", job], env, **run_options
    )


def launch_job_cli(job: str, env: dict, workspace: Path, **run_options):
    """`dagster job launch` of ``job`` through the code server of ``workspace``."""
    return _dagster_cli(
        ["job", "launch", "-w", str(workspace)], ["-j", job], env, **{"timeout": 300, **run_options}
    )


def _dagster_cli(command: list[str], options: list[str], env: dict, **run_options):
    """The dagster CLI from the repository root, this process's environment plus ``env``,
    output captured."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *command, *options],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        **{"timeout": 900, **run_options},
    )
