"""End to end on the real data, downloaded from a local HTTP server, smoke configuration."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from housing_assets.defs.assets import PIPELINE_ASSETS
from housing_assets.defs.checks import PIPELINE_CHECKS
from housing_assets.defs.smoke import SMOKE_RUN_CONFIG
from housing_assets.ml.metrics import BLOG_PIPELINE_TEST_METRICS
from housing_assets.ml.schema import FEATURE_COLUMNS
from housing_assets.resources import build_resources, resource_values
from housing_assets_testkit import ML_ASSETS

pytestmark = pytest.mark.e2e


def _champion():
    import mlflow

    return mlflow.pyfunc.load_model("models:/housing_price_model@champion")


def test_all_seven_assets_then_bad_source_loses_nothing(
    isolated_env, raw_frame, tmp_path, monkeypatch
):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [*PIPELINE_ASSETS, *PIPELINE_CHECKS],
        resources=build_resources(),
        run_config=SMOKE_RUN_CONFIG,
        instance=instance,
    )
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {a.key.to_user_string() for a in PIPELINE_ASSETS}
    checks = result.get_asset_check_evaluations()
    assert len(checks) == len(PIPELINE_CHECKS)
    assert all(c.passed for c in checks), [
        (c.check_name, c.metadata) for c in checks if not c.passed
    ]

    registered = result.output_for_node("registered_model")
    assert registered.version == "1" and "champion" in registered.aliases
    # even the smoke model beats the blog pipeline
    assert registered.test_metrics["rmse"] < BLOG_PIPELINE_TEST_METRICS["rmse"]

    # The champion predicts on raw rows: a NaN total_bedrooms and an unseen ocean_proximity.
    rows = raw_frame[FEATURE_COLUMNS].sample(8, random_state=1).reset_index(drop=True)
    rows.loc[0, "total_bedrooms"] = np.nan
    rows.loc[1, "ocean_proximity"] = "UNDER THE SEA"
    before = np.asarray(_champion().predict(rows))
    assert before.shape == (8,) and np.all(np.isfinite(before)) and np.all(before > 10_000)

    # Registry metadata the contract promises.
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version_by_alias("housing_price_model", "champion")
    for tag in (
        "algorithm",
        "rmse",
        "mape",
        "wmape",
        "r2",
        "within_10pct",
        "data_sha256",
        "dagster_run_id",
    ):
        assert tag in version.tags, tag
    assert version.tags["data_sha256"].startswith("d4cd501a")
    assert "| rmse |" in version.description and "sha256" in version.description
    info = __import__("mlflow").models.get_model_info("models:/housing_price_model@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert "model_config.yaml" in {a.path for a in client.list_artifacts(version.run_id)}
    assert "feature_importances.csv" in {a.path for a in client.list_artifacts(version.run_id)}

    # W&B (offline): one run per trial, all in the study's group, beside the evidence runs.
    from housing_assets_tests.test_tracking import offline_runs

    runs = offline_runs(Path(isolated_env["HOUSING_DATA_DIR"]))
    study = f"housing-{registered.family}-{result.run_id[:8]}"
    in_group = [r for r in runs if r["group"] == study]
    assert len(in_group) == 1 + SMOKE_RUN_CONFIG["ops"]["tuned_params"]["config"]["n_trials"]
    assert {r["group"] for r in runs} == {study, f"dagster-{result.run_id[:8]}"}

    # UI metadata: the imputation comparison, the chosen strategy and K evidence are recorded.
    imputed = instance.get_latest_materialization_event(AssetKey("imputed_housing"))
    metadata = imputed.asset_materialization.metadata
    assert metadata["chosen_strategy"].value in {"knn", "iterative"}
    assert "data:image/png;base64" in metadata["comparison_plot"].value
    # Each ML asset shows the time of its ML call, a part of its step's time.
    steps = instance.get_run_step_stats(result.run_id)
    step_seconds = {s.step_key: s.end_time - s.start_time for s in steps}
    for key in ML_ASSETS:
        event = instance.get_latest_materialization_event(AssetKey(key))
        compute_s = event.asset_materialization.metadata["compute_s"].value
        assert 0 < compute_s < step_seconds[key], (key, compute_s, step_seconds[key])

    # A malformed source fails with a clear message; data and champion stay as they were.
    raw_before = result.output_for_node("raw_housing")
    bad = tmp_path / "bad.csv"
    raw_frame.drop(columns=["households"]).head(100).to_csv(bad, index=False)
    monkeypatch.setenv("HOUSING_SOURCE_URL", str(bad))
    failed = materialize(
        [*PIPELINE_ASSETS, *PIPELINE_CHECKS],
        resources=build_resources(),
        run_config=SMOKE_RUN_CONFIG,
        instance=instance,
        raise_on_error=False,
    )
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "bad.csv: missing columns ['households']" in str(failure.event_specific_data.error)
    from housing_assets.resources import LocalDatasetIOManager

    stored = resource_values()["io_manager"]
    assert isinstance(stored, LocalDatasetIOManager)
    pd.testing.assert_frame_equal(stored.load(["raw_housing"]), raw_before)
    assert str(client.get_model_version_by_alias("housing_price_model", "champion").version) == "1"
    np.testing.assert_allclose(_champion().predict(rows), before)
