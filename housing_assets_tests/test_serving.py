"""Serving with MLflow's own server (`mlflow models serve`) on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, materialize

from housing_assets.assets import PIPELINE_ASSETS
from housing_assets.ml.schema import FEATURE_COLUMNS
from housing_assets.resources import build_resources
from housing_assets.smoke import SMOKE_RUN_CONFIG
from housing_assets_tests.conftest import free_port

pytestmark = pytest.mark.e2e
MODEL_URI = "models:/housing_price_model@champion"


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def served_champion(isolated_env, tmp_path):
    """A champion trained by the pipeline (smoke config), served by `mlflow models serve`."""
    result = materialize(
        PIPELINE_ASSETS,
        resources=build_resources(),
        run_config=SMOKE_RUN_CONFIG,
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    tracking = f"sqlite:///{Path(isolated_env['HOUSING_DATA_DIR']) / 'mlflow' / 'mlflow.db'}"
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            MODEL_URI,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--env-manager",
            "local",
        ],
        # The server execs `uvicorn` from PATH: the virtualenv's bin must be on it.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
        time.sleep(0.5)
    try:
        yield base, result.output_for_node("train_test_split").test
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def test_server_matches_the_in_process_model_and_rejects_bad_requests(served_champion):
    import mlflow

    base, test = served_champion
    rows = test[FEATURE_COLUMNS].head(10).reset_index(drop=True)
    rows.loc[0, "total_bedrooms"] = np.nan
    rows.loc[1, "ocean_proximity"] = "FLOATING CITY"
    expected = np.asarray(mlflow.pyfunc.load_model(MODEL_URI).predict(rows))

    records = json.loads(rows.to_json(orient="records"))  # NaN -> null
    status, body = post(f"{base}/invocations", {"dataframe_records": records})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)

    split = json.loads(rows.to_json(orient="split", index=False))
    status, body = post(f"{base}/invocations", {"dataframe_split": split})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)

    missing = [{k: v for k, v in r.items() if k != "households"} for r in records[:2]]
    status, body = post(f"{base}/invocations", {"dataframe_records": missing})
    assert 400 <= status < 500
    assert "households" in body["message"]

    wrong_type = [dict(records[2], median_income="rich")]
    status, body = post(f"{base}/invocations", {"dataframe_records": wrong_type})
    assert 400 <= status < 500
    assert "median_income" in body["message"]

    status, body = post(f"{base}/invocations", {"dataframe_records": records[:1]})
    assert status == 200 and len(body["predictions"]) == 1  # still serving
