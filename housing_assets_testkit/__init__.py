"""Plain helpers shared by the test suite and the benchmark scripts (no pytest here): the
project's layout and asset names, the real dataset beside the repository, a fresh project
environment, server processes in the background, the dagster CLI as a user runs it, a
throwaway PostgreSQL, synthetic rows and W&B's offline run files.

Installed with the project (``make setup``'s editable install), so ``import
housing_assets_testkit`` works from any working directory. Its paths point into the checkout it
is installed from: it is meant for a development install, not for the Docker image (which
copies ``housing_assets/`` only).
"""

from housing_assets_testkit.cli import execute_job_cli, launch_job_cli, materialize_cli
from housing_assets_testkit.data import make_synthetic_housing
from housing_assets_testkit.models import register_constant_model
from housing_assets_testkit.postgres import throwaway_postgres
from housing_assets_testkit.processes import (
    background_server,
    free_port,
    wait_for,
    warm_code_server,
)
from housing_assets_testkit.project import (
    CONTRACT_ASSETS,
    ML_ASSETS,
    REPO_ROOT,
    default_source,
    find_dataset,
    fresh_process_env,
    fresh_project_env,
    launch_runs_at_once,
)
from housing_assets_testkit.wandb_records import wandb_offline_records

__all__ = [
    "CONTRACT_ASSETS",
    "ML_ASSETS",
    "REPO_ROOT",
    "background_server",
    "default_source",
    "execute_job_cli",
    "find_dataset",
    "free_port",
    "fresh_process_env",
    "fresh_project_env",
    "launch_job_cli",
    "launch_runs_at_once",
    "register_constant_model",
    "make_synthetic_housing",
    "materialize_cli",
    "throwaway_postgres",
    "wait_for",
    "wandb_offline_records",
    "warm_code_server",
]
