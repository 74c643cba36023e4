"""Print the Docker container context of the code location's runs (DAGSTER_CONTAINER_CONTEXT).

The compose stack's daemon launches each run in a container of its own (dagster-docker's
DockerRunLauncher, deploy/dagster.yaml). The run needs what the code service has: its
environment, its volumes (assets, landing zone, compute logs, the dataset) and its secret files.
The code service's entry point runs this script before it reads any secret, and Dagster's code
server hands the result to every run it describes (``dagster api grpc`` reads
DAGSTER_CONTAINER_CONTEXT), so the launcher creates each run's container with:

- ``volumes_from`` the code service's container (HOUSING_RUN_VOLUMES_FROM, a fixed container
  name): the same volumes and secret files, mounted as they are there;
- the stack's network (HOUSING_RUN_NETWORK);
- the code service's pipeline variables. Only names and file paths travel: the run record keeps
  this context in Dagster's database, so a variable holding a secret itself (rather than a
  ``*_FILE`` path) is left out, with a warning.

Standard library only: it runs before anything else in the container starts.
"""

from __future__ import annotations

import json
import os
import sys

#: Variables of the code service that its runs need (the rest is the image's own environment).
PREFIXES = ("HOUSING_", "MLFLOW_", "DAGSTER_POSTGRES_", "GOOGLE_", "WANDB_", "PGPASSWORD_FILE")
EXTRA = ("STORAGE_EMULATOR_HOST",)
#: Variables that hold a secret itself: never written into the run record.
SECRETS = {
    "DAGSTER_POSTGRES_PASSWORD",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "WANDB_API_KEY",
    "HOUSING_ALERT_WEBHOOK_URL",
    "HOUSING_UI_PASSWORD",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
}
#: This script's own inputs, meaningless inside a run.
OWN = ("HOUSING_RUN_VOLUMES_FROM", "HOUSING_RUN_NETWORK")


def run_environment(environ: dict[str, str]) -> list[str]:
    """``NAME=value`` for each variable of ``environ`` a run needs, secrets left out."""
    chosen = []
    for name in sorted(environ):
        if not (name.startswith(PREFIXES) or name in EXTRA) or name in OWN:
            continue
        if name in SECRETS:
            print(
                f"run_container_context: {name} holds a secret itself; runs do not get it"
                f" (give its file as {name}_FILE instead)",
                file=sys.stderr,
            )
            continue
        chosen.append(f"{name}={environ[name]}")
    return chosen


def container_context(environ: dict[str, str]) -> dict:
    source = environ["HOUSING_RUN_VOLUMES_FROM"]
    return {
        "docker": {
            "env_vars": run_environment(environ),
            "networks": [environ["HOUSING_RUN_NETWORK"]],
            "container_kwargs": {
                "volumes_from": [f"{source}:rw"],
                "labels": {"housing/run-of": source},
            },
        }
    }


if __name__ == "__main__":
    print(json.dumps(container_context(dict(os.environ)), separators=(",", ":")))
