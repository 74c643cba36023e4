"""The design card's commands, verbatim, in the shell the README describes (`make setup`, then
`source .venv/bin/activate` from the repository root): `dagster asset materialize --select '*'`,
then `dagster asset materialize --select tuned_params+`, which reads its upstream inputs back
from storage, and `dagster dev`. Only the project's instance and data folder are temporary
(DAGSTER_HOME and HOUSING_DATA_DIR set before activation, which keeps a DAGSTER_HOME it finds)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from housing_assets_testkit import REPO_ROOT, background_server

pytestmark = pytest.mark.e2e

ACTIVATE = REPO_ROOT / ".venv" / "bin" / "activate"
CARD_COMMANDS = [
    "dagster asset materialize --select '*'",
    "dagster asset materialize --select tuned_params+",
]


def in_the_readme_shell(command: str, env: dict, **options) -> subprocess.CompletedProcess:
    """``command`` exactly as typed, in bash with the project's venv activated."""
    return subprocess.run(
        ["bash", "-c", f"source {ACTIVATE} && {command}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        **options,
    )


@pytest.fixture
def readme_shell_env(isolated_env) -> dict:
    if not ACTIVATE.is_file():
        pytest.fail(f"{ACTIVATE} is missing: run `make setup` first (as the README says)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "VIRTUAL_ENV"))}
    return {**env, **isolated_env}


def test_the_card_commands_work_as_typed(readme_shell_env):
    full = in_the_readme_shell(CARD_COMMANDS[0], readme_shell_env, timeout=1800)
    assert full.returncode == 0, full.stderr[-3000:]
    assert "RUN_SUCCESS" in full.stderr

    retune = in_the_readme_shell(CARD_COMMANDS[1], readme_shell_env, timeout=1800)
    assert retune.returncode == 0, retune.stderr[-3000:]
    log = retune.stderr
    assert 'Started execution of step "tuned_params"' in log
    assert 'Started execution of step "registered_model"' in log
    assert 'Started execution of step "raw_housing"' not in log
    assert 'Loaded input "train_test_split"' in log

    # Both runs are in the project's persistent instance (DAGSTER_HOME), and registered.
    from dagster import DagsterInstance
    from mlflow import MlflowClient

    with DagsterInstance.from_config(readme_shell_env["DAGSTER_HOME"]) as instance:
        assert len(instance.get_runs()) == 2
    store = f"sqlite:///{Path(readme_shell_env['HOUSING_DATA_DIR']).resolve()}/mlflow/mlflow.db"
    client = MlflowClient(store, registry_uri=store)  # not MLflow's process-wide registry URI
    versions = client.search_model_versions("name='housing_price_model'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    parents = client.search_runs(
        [client.get_experiment_by_name("housing_assets").experiment_id],
        filter_string="tags.dagster_job = '__ASSET_JOB'",
    )
    names = sorted(r.info.run_name for r in parents if "mlflow.parentRunId" not in r.data.tags)
    assert names[-1] == "assets: registered_model, tuned_params", names


def test_dagster_dev_as_typed(readme_shell_env, tmp_path):
    """`dagster dev` on its default address, loading this code location from the shell."""
    command = ["bash", "-c", f"source {ACTIVATE} && dagster dev"]
    log = tmp_path / "dev.log"
    with background_server(
        command,
        "http://127.0.0.1:3000/server_info",
        env=readme_shell_env,
        log_path=log,
        timeout_s=300,
    ):
        query = b'{"query": "{ assetNodes { assetKey { path } } }"}'
        request = urllib.request.Request(
            "http://127.0.0.1:3000/graphql",
            data=query,
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 120
        keys: set[str] = set()
        while not keys:  # the code location loads shortly after the server answers
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            with urllib.request.urlopen(request, timeout=30) as response:
                nodes = json.loads(response.read())["data"]["assetNodes"]
            keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
            time.sleep(0 if keys else 2)
        assert {"raw_housing", "tuned_params", "registered_model"} <= keys
