"""The whole graph stored in a bucket on a real local GCS server, MLflow artifacts included."""

from pathlib import Path

import pytest

from housing_assets.io.gcs import list_keys
from housing_assets_testkit import CONTRACT_ASSETS, materialize_cli

pytestmark = pytest.mark.e2e


def test_graph_in_gcs_then_tuned_params_plus_reads_back(
    isolated_env, gcs_bucket, gcs_server, housing_tgz
):
    from housing_assets.io.gcs import storage_client

    # The dataset itself comes from the bucket too.
    storage_client().bucket(gcs_bucket).blob("raw/housing.tgz").upload_from_filename(
        str(housing_tgz)
    )
    env = {
        **isolated_env,
        "HOUSING_GCS_BUCKET": gcs_bucket,
        "HOUSING_GCS_PREFIX": "prod",
        "STORAGE_EMULATOR_HOST": gcs_server,
        "HOUSING_SOURCE_URL": f"gs://{gcs_bucket}/raw/housing.tgz",
        "HOUSING_MLFLOW_ARTIFACTS": f"gs://{gcs_bucket}/mlflow",
    }

    first = materialize_cli("*", env)
    assert first.returncode == 0, first.stderr[-3000:]
    keys = set(list_keys(f"gs://{gcs_bucket}/prod/"))
    for asset in CONTRACT_ASSETS:
        assert f"prod/{asset}/manifest.json" in keys, asset
    parts = {k.split("/", 1)[1].split("/versions/")[0] + "/" + k.rsplit("/", 1)[1] for k in keys}
    assert "raw_housing/data.parquet" in parts
    assert {"train_test_split/train.parquet", "train_test_split/test.parquet"} <= parts
    assert not (Path(isolated_env["HOUSING_DATA_DIR"]) / "assets").exists()  # nothing local
    model_files = [k for k in list_keys(f"gs://{gcs_bucket}/mlflow/") if k.endswith("MLmodel")]
    assert model_files, "the MLflow model was not stored in the bucket"

    second = materialize_cli("tuned_params+", env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'Loaded input "train_test_split" using input manager "io_manager"' in second.stderr
    assert 'Started execution of step "raw_housing"' not in second.stderr
    assert len([k for k in list_keys(f"gs://{gcs_bucket}/mlflow/") if k.endswith("MLmodel")]) == 2

    # The champion, with artifacts in the bucket, serves.
    import mlflow
    import pandas as pd

    store = f"sqlite:///{Path(isolated_env['HOUSING_DATA_DIR']) / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)  # not whatever an earlier test in this process left
    model = mlflow.pyfunc.load_model("models:/housing_price_model@champion")
    assert model.metadata.run_id
    uri = mlflow.get_run(model.metadata.run_id).info.artifact_uri
    assert uri.startswith(f"gs://{gcs_bucket}/mlflow/")
    row = pd.DataFrame(
        [
            {
                "longitude": -122.23,
                "latitude": 37.88,
                "housing_median_age": 41.0,
                "total_rooms": 880.0,
                "total_bedrooms": float("nan"),
                "population": 322.0,
                "households": 126.0,
                "median_income": 8.3252,
                "ocean_proximity": "NEAR BAY",
            }
        ]
    )
    predictions = model.predict(row)
    assert len(predictions) == 1 and 100_000 < predictions[0] < 600_000


def test_missing_bucket_fails_the_run_cleanly(isolated_env, gcs_server):
    env = {
        **isolated_env,
        "HOUSING_GCS_BUCKET": "bucket-that-is-not-there",
        "STORAGE_EMULATOR_HOST": gcs_server,
    }
    run = materialize_cli("raw_housing", env)
    assert run.returncode != 0
    assert "gs://bucket-that-is-not-there: bucket does not exist" in run.stderr
