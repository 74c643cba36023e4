"""The compose stack's MLflow accounts (service `mlflow-users` in docker-compose.yaml).

Run as `admin` (MLFLOW_TRACKING_USERNAME/PASSWORD) at every `docker compose up`; idempotent:

- `pipeline` (the code location and its runs) and `model-reader` (housing-serve) exist, with
  the passwords of their secret files: edit a file and run this again to change one;
- the registered model exists, created by `pipeline` (its creator gets MANAGE: it registers
  versions, sets tags, moves aliases); one created before by another account, and the
  experiment if another account created it, get a MANAGE grant for `pipeline`.

`model-reader` gets no grant: it reads through the server's default_permission (READ), which
lets it neither register a version nor move an alias. (The model exists before the model
server's first poll: MLflow answers an alias lookup on a missing model with 403, not 404.)
"""

from __future__ import annotations

import os
from pathlib import Path

import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException
from mlflow.server.auth.client import AuthServiceClient

SECRETS = Path("/run/secrets")
USERS = {"pipeline": "mlflow_pipeline_password", "model-reader": "mlflow_reader_password"}
EXPERIMENT = os.environ.get("HOUSING_MLFLOW_EXPERIMENT", "housing_assets")
MODEL = os.environ.get("HOUSING_MLFLOW_MODEL", "housing_price_model")


def ensure_user(auth: AuthServiceClient, user: str, password: str) -> str:
    try:
        auth.create_user(user, password)
        return "created"
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    auth.update_user_password(user, password)
    return "exists, password set from its file"


def ensure_manage(auth: AuthServiceClient, user: str, kind: str, resource_id: str) -> str:
    if auth.get_user_permission(user, kind, resource_id).permission == "MANAGE":
        return "MANAGE"
    try:  # a lower grant: replace it
        auth.revoke_user_permission(user, kind, resource_id)
    except RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    auth.grant_user_permission(user, kind, resource_id, "MANAGE")
    return "MANAGE granted"


def main() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    auth, client = AuthServiceClient(uri), MlflowClient(uri)
    passwords = {user: (SECRETS / secret).read_text().strip() for user, secret in USERS.items()}
    for user, password in passwords.items():
        print(f"{user}: {ensure_user(auth, user, password)}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        state = ensure_manage(auth, "pipeline", "experiment", experiment.experiment_id)
        print(f"pipeline on experiment {EXPERIMENT}: {state}")
    if client.search_registered_models(filter_string=f"name = '{MODEL}'"):
        state = ensure_manage(auth, "pipeline", "registered_model", MODEL)
    else:
        response = requests.post(
            f"{uri}/api/2.0/mlflow/registered-models/create",
            json={"name": MODEL},
            auth=("pipeline", passwords["pipeline"]),
            timeout=30,
        )
        response.raise_for_status()
        state = "created by pipeline (MANAGE)"
    print(f"pipeline on model {MODEL}: {state}")


if __name__ == "__main__":
    main()
