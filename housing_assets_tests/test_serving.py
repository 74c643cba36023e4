"""Serving over HTTP: `housing-serve` (MLflow's own scoring server) on 127.0.0.1."""

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from housing_assets.defs.assets import PIPELINE_ASSETS
from housing_assets.defs.smoke import SMOKE_RUN_CONFIG
from housing_assets.ml.schema import FEATURE_COLUMNS
from housing_assets.resources import build_resources
from housing_assets_testkit import background_server, free_port

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
    """A champion trained by the pipeline (smoke config), served by `housing-serve` (a front for
    `mlflow models serve`) with nothing but the project's environment: it must find the
    project's own MLflow store by itself."""
    result = materialize(
        PIPELINE_ASSETS,
        resources=build_resources(),
        run_config=SMOKE_RUN_CONFIG,
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success  # registration records the version's digest: the server checks it
    port = free_port()
    command = [str(Path(sys.executable).parent / "housing-serve"), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # as a user runs it
    base = f"http://127.0.0.1:{port}"
    with background_server(command, f"{base}/ping", env=env, log_path=tmp_path / "serve.log"):
        yield base, result.output_for_node("train_test_split").test


@pytest.mark.e2e
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

    # Intervals through MLflow's inference params: the same prices, with bounds around them.
    status, body = post(
        f"{base}/invocations", {"dataframe_records": records, "params": {"interval": 0.9}}
    )
    assert status == 200, body
    table = pd.DataFrame(body["predictions"])
    assert list(table.columns) == ["prediction", "lower", "upper"]
    np.testing.assert_allclose(table["prediction"], expected, rtol=1e-6)
    assert (table["lower"] < table["prediction"]).all() and (
        table["prediction"] < table["upper"]
    ).all()
    narrower = pd.DataFrame(
        post(f"{base}/invocations", {"dataframe_records": records, "params": {"interval": 0.5}})[1][
            "predictions"
        ]
    )
    assert (narrower["upper"] - narrower["lower"] < table["upper"] - table["lower"]).all()
    status, body = post(
        f"{base}/invocations", {"dataframe_records": records, "params": {"interval": 2}}
    )
    assert status == 400 and "between 0 and 1" in body["message"], body

    missing = [{k: v for k, v in r.items() if k != "households"} for r in records[:2]]
    status, body = post(f"{base}/invocations", {"dataframe_records": missing})
    assert 400 <= status < 500
    assert "households" in body["message"]

    wrong_type = [dict(records[2], median_income="rich")]
    status, body = post(f"{base}/invocations", {"dataframe_records": wrong_type})
    assert 400 <= status < 500
    assert "median_income" in body["message"]

    # What training rejects, serving rejects too, naming the column and the rule.
    for change, expected in [
        ({"median_income": None}, "column 'median_income' has 1 missing value(s)"),
        ({"latitude": 95.0}, "column 'latitude' has 1 value(s) outside [32, 42.5]"),
        ({"median_income": 1e9}, "column 'median_income' has 1 value(s) outside [0, 100]"),
    ]:
        status, body = post(f"{base}/invocations", {"dataframe_records": [records[2] | change]})
        assert status == 400 and expected in body["message"], body
    for body in (post(f"{base}/invocations", {"dataframe_records": missing})[1],):
        assert "stack_trace" not in body  # MLflow's own errors lose their traceback
    huge = {"dataframe_records": records[:1] * 60_000}  # ~13 MB: over the 5 MB default
    status, body = post(f"{base}/invocations", huge)
    assert status == 413 and "larger than 5,000,000 bytes" in body["message"]

    status, body = post(f"{base}/invocations", {"dataframe_records": records[:1]})
    assert status == 200 and len(body["predictions"]) == 1  # still serving


def test_housing_serve_names_a_missing_alias_and_its_store(registry, tmp_path, capsys, monkeypatch):
    from housing_assets.cli.serving import main

    uri = registry[0].tracking_uri
    assert main(["--alias", "canary"]) == 2  # refused before any server starts
    err = capsys.readouterr().err
    assert "'canary'" in err and uri in err and "make run" in err

    # A store with no model (mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI).
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOUSING_DATA_DIR", str(tmp_path / "empty"))
    assert main([]) == 2
    assert "'housing_price_model'" in capsys.readouterr().err


def test_housing_serve_follows_the_champion_without_a_restart(registry, tmp_path):
    """The real server on the real registry: a rollback moves `champion` from v3 to v2 and the
    running server answers with v2 within a few polls, never failing a request meanwhile."""
    from housing_assets.cli.rollback import main as rollback

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "housing-serve"), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # as a user runs it
    rows = {"dataframe_records": [{"x": 1.0}]}
    with background_server(
        [*command, "--poll-s", "0.5"], f"{base}/ping", env=env, log_path=tmp_path / "serve.log"
    ):
        status, body, version = post_with_version(f"{base}/invocations", rows)
        assert (status, body["predictions"], version) == (200, [300.0], "3")

        assert rollback(["--reason", "test the server follows"]) == 0
        deadline = time.monotonic() + 30
        while version == "3":
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            status, body, version = post_with_version(f"{base}/invocations", rows)
            assert status == 200, body  # served by one version or the other, never an error
        assert (body["predictions"], version) == ([200.0], "2")

        # A champion whose files are gone is not loaded: the server keeps serving v2.
        client = registry[0]
        broken = client.get_model_version_download_uri("housing_price_model", "1")
        shutil.rmtree(urllib.parse.urlparse(broken).path)
        client.set_registered_model_alias("housing_price_model", "champion", "1")
        log = tmp_path / "serve.log"
        deadline = time.monotonic() + 30
        while not any(f in log.read_text() for f in ("could not refresh", "refused version 1")):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        status, body, version = post_with_version(f"{base}/invocations", rows)
        assert (status, body["predictions"], version) == (200, [200.0], "2")
    assert "moved to version 2 (was 3)" in log.read_text()


def post_with_version(url: str, payload: dict) -> tuple[int, dict, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read()), response.headers["x-model-version"]


def test_housing_serve_waits_for_the_alias_then_serves_it(registry, tmp_path):
    """--wait (the deployment's model service): up before the alias exists, 503 saying so, then
    the version the alias gets at the next poll, without a restart."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "housing-serve"), "--port", str(port)]
    command += ["--alias", "canary", "--wait", "--poll-s", "0.5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with background_server(command, f"{base}/status", env=env, log_path=tmp_path / "serve.log"):
        with urllib.request.urlopen(f"{base}/status", timeout=10) as response:
            status = json.loads(response.read())
        assert (status["state"], status["version"]) == ("waiting for the alias", None)
        assert "'canary'" in status["reason"]
        code, body = post(f"{base}/invocations", {"dataframe_records": [{"x": 1.0}]})
        assert code == 503 and body["error_code"] == "NO_MODEL_VERSION"

        registry[0].set_registered_model_alias("housing_price_model", "canary", "2")
        deadline = time.monotonic() + 30
        while (code := post(f"{base}/invocations", {"dataframe_records": [{"x": 1.0}]})[0]) != 200:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.2)
        assert post_with_version(f"{base}/invocations", {"dataframe_records": [{"x": 1.0}]})[
            1:
        ] == ({"predictions": [200.0]}, "2")


def test_request_rules_are_the_training_rules():
    from housing_assets.cli.serving import request_problem

    row = {
        "longitude": -122.23,
        "latitude": 37.88,
        "housing_median_age": 41,
        "total_rooms": 880,
        "total_bedrooms": None,  # may be missing: the model imputes it
        "population": 322,
        "households": 126,
        "median_income": 8.3252,
        "ocean_proximity": "SOMEWHERE NEW",  # unseen categories are fine
    }
    assert request_problem(json.dumps({"dataframe_records": [row]}).encode()) is None
    split = {"columns": list(row), "data": [list((row | {"households": "many"}).values())]}
    problem = request_problem(json.dumps({"dataframe_split": split}).encode())
    assert problem == "request: column 'households' must be numeric; 1 value(s) are not " + (
        "(first at data row 1)"
    )
    no_geo = {k: v for k, v in row.items() if k != "latitude"}
    assert "missing column 'latitude'" in request_problem(
        json.dumps({"dataframe_records": [no_geo]}).encode()
    )
    assert request_problem(b"not json").startswith("request body is not valid JSON")
    # The same rules whatever the format: a record, a column, a CSV row.
    for body, content_type in [
        ({"instances": [row | {"latitude": 95.0}]}, "application/json"),
        ({"inputs": {k: [v] for k, v in (row | {"latitude": 95.0}).items()}}, "application/json"),
        (",".join(row) + "\n-122.23,95,41,880,,322,126,8.3252,NEAR BAY\n", "text/csv"),
    ]:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        assert "column 'latitude' has 1 value(s) outside [32, 42.5]" in request_problem(
            data, content_type
        )


def test_housing_serve_shadow_logs_both_versions_answers(registry, tmp_path):
    """--shadow challenger: the champion (v3, 300) answers; v2 (200), aliased challenger, scores
    the same rows off the request path; both land in the Parquet request log, which the report
    compares (and checks against the rows it is given as training rows)."""
    from housing_assets.io.shadow import read_request_log
    from housing_assets.reports.shadow import shadow_report

    registry[0].set_registered_model_alias("housing_price_model", "challenger", "2")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_dir = tmp_path / "request_log"
    command = [str(Path(sys.executable).parent / "housing-serve"), "--port", str(port)]
    command += ["--shadow", "challenger", "--request-log", str(log_dir), "--poll-s", "0.5"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    with background_server(command, f"{base}/ping", env=env, log_path=tmp_path / "serve.log"):
        for x in (1.0, 2.0, 3.0):
            status, body, version = post_with_version(
                f"{base}/invocations", {"dataframe_records": [{"x": x}, {"x": x + 10}]}
            )
            assert (status, body["predictions"], version) == (200, [300.0, 300.0], "3")
    # Stopping the server scores what is queued and writes the log.
    logged = read_request_log(log_dir)
    assert len(logged) == 6 and logged["request_sha256"].nunique() == 3
    assert set(logged["champion_version"]) == {"3"} and set(logged["shadow_version"]) == {"2"}
    assert (logged["champion_prediction"] == 300.0).all()
    assert (logged["shadow_prediction"] == 200.0).all()
    assert sorted(logged["x"]) == [1.0, 2.0, 3.0, 11.0, 12.0, 13.0]
    served_log = (tmp_path / "serve.log").read_text()
    assert "shadow: 3 requests scored" in served_log and "shadow: 0 requests dropped" in served_log

    markdown, tables = shadow_report(logged, training_rows=pd.DataFrame())
    (pair,) = tables["comparison"].itertuples()
    assert (pair.requests, pair.rows, pair.moved_over_5pct_share) == (3, 6, 100.0)
    assert pair.median_abs_change_pct == pytest.approx(100 / 3)
    assert "3 requests, 6 rows logged." in markdown
    assert "| 3 | 2 | 3 | 6 | 33.33 |" in " ".join(markdown.split())
