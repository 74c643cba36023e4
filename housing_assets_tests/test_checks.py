"""Every asset check on an input that must pass it and on inputs that must fail it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from housing_assets.datasets import GeoFeatures, ImputedHousing, RegisteredModel
from housing_assets.defs import checks
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import NUMERIC_FEATURES
from housing_assets.ml.split import assign_split
from housing_assets.steps import split_hold_out


def _imputed(chosen_rmse: float, frame: pd.DataFrame | None = None) -> ImputedHousing:
    table = pd.DataFrame({"strategy": ["knn", "median"], "rmse": [chosen_rmse, 100.0]})
    frame = frame if frame is not None else pd.DataFrame({c: [1.0, 2.0] for c in NUMERIC_FEATURES})
    return ImputedHousing(frame=frame, comparison=table, strategy="knn")


def test_imputation_rmse_needs_half_the_median_error_and_no_gaps():
    assert checks.imputation_rmse(_imputed(40.0)).passed
    assert not checks.imputation_rmse(_imputed(60.0)).passed  # not twice as good as the median
    gaps = pd.DataFrame({c: [1.0, np.nan] for c in NUMERIC_FEATURES})
    result = checks.imputation_rmse(_imputed(40.0, gaps))
    assert not result.passed and result.metadata["values_left_missing"].value == 8


def test_raw_housing_needs_rows_and_few_gaps(raw_frame):
    assert checks.raw_housing_is_complete_enough(raw_frame).passed
    assert not checks.raw_housing_is_complete_enough(raw_frame.head(999)).passed
    gappy = raw_frame.copy()
    gappy.loc[gappy.index[: int(0.06 * len(gappy))], "households"] = np.nan
    result = checks.raw_housing_is_complete_enough(gappy)
    assert not result.passed and result.metadata["worst_column"].value == "households"


def _with_batch(raw_frame, batch: pd.DataFrame) -> pd.DataFrame:
    base = raw_frame.assign(batch="base")
    return assign_split(pd.concat([base, batch.assign(batch="b1.csv")], ignore_index=True))


def test_batch_drift_warns_on_a_shifted_batch_only(raw_frame):
    like_base = raw_frame.sample(600, random_state=1)
    assert checks.batch_drift(_with_batch(raw_frame, like_base)).passed
    shifted = like_base.assign(median_income=like_base["median_income"] * 3)
    result = checks.batch_drift(_with_batch(raw_frame, shifted))
    assert not result.passed
    assert "b1.csv:median_income" in result.metadata["drifted_features"].value


def _geo(k: int, clusters: list[int]) -> GeoFeatures:
    frame = pd.DataFrame({"geo_cluster": clusters})
    evidence = pd.DataFrame({"k": [3, 5]})
    return GeoFeatures(
        frame=frame, k_evidence=evidence, spec=FeatureSpec("median", n_clusters=k, random_state=0)
    )


def test_geo_clusters_must_be_more_than_two_all_used_and_a_candidate():
    assert checks.geo_clusters_are_usable(_geo(3, [0, 1, 2, 2])).passed
    assert not checks.geo_clusters_are_usable(_geo(3, [0, 1, 1, 1])).passed  # one cluster empty
    assert not checks.geo_clusters_are_usable(_geo(4, [0, 1, 2, 3])).passed  # K not a candidate


@pytest.fixture(scope="module")
def contract_split(raw_frame):
    raw = assign_split(raw_frame.assign(batch="base"))
    geo = GeoFeatures(
        frame=raw.assign(geo_cluster=0, geo_cluster_similarity=1.0),
        k_evidence=pd.DataFrame({"k": [5]}),
        spec=FeatureSpec("median", n_clusters=5, random_state=0),
    )
    return split_hold_out(raw, geo)


def test_the_split_check_catches_a_moved_or_shared_row(contract_split):
    assert checks.split_matches_contract(contract_split).passed
    train, test = contract_split.train, contract_split.test
    moved = dataclasses.replace(
        contract_split, train=train.iloc[1:], test=pd.concat([test, train.iloc[:1]])
    )
    assert not checks.split_matches_contract(moved).passed  # a training row in the test set
    shared = dataclasses.replace(contract_split, train=pd.concat([train, test.iloc[:1]]))
    result = checks.split_matches_contract(shared)
    assert not result.passed and result.metadata["overlapping_rows"].value == 1
    # The gate rows come from the contract's training side only: a test row there fails.
    gate = contract_split.gate
    assert (
        len(gate) > 0
        and checks.split_matches_contract(contract_split)
        .metadata["gate_rows_from_contract_train_side"]
        .value
    )
    test_in_gate = dataclasses.replace(
        contract_split, test=test.iloc[1:], gate=pd.concat([gate, test.iloc[:1]])
    )
    result = checks.split_matches_contract(test_in_gate)
    assert not result.passed
    assert not result.metadata["base_test_rows_match_contract"].value
    assert not result.metadata["gate_rows_from_contract_train_side"].value


def test_batches_skewed_in_income_do_not_block_the_split_check(raw_frame):
    """Batch rows follow their district's side, unstratified: however their incomes fall, the
    check bounds the base rows' gap only (the gap over all rows is reported). A bound on all
    rows blocked every retrain once enough batches had landed."""
    test_districts = assign_split(raw_frame.assign(batch="base")).query("split == 'test'")
    resurveys = test_districts.nlargest(len(test_districts) // 3, "median_income")
    raw = _with_batch(raw_frame, resurveys.drop(columns=["batch", "split", "split_order"]))
    geo = GeoFeatures(
        frame=raw.assign(geo_cluster=0, geo_cluster_similarity=1.0),
        k_evidence=pd.DataFrame({"k": [5]}),
        spec=FeatureSpec("median", n_clusters=5, random_state=0),
    )
    result = checks.split_matches_contract(split_hold_out(raw, geo))
    assert result.metadata["all_rows_income_share_gap_pp"].value > 0.5
    assert result.metadata["max_income_share_gap_pp"].value <= 0.5
    assert result.passed


def _registered(**metrics: float) -> RegisteredModel:
    return RegisteredModel(
        "housing_price_model", "1", "models:/housing_price_model/1", "run", "boosting", {},
        {"rmse": 40_000.0, "mape": 14.0, **metrics}, {}, ["champion"],
    )  # fmt: skip


def test_the_model_must_beat_the_blog_pipeline():
    assert checks.model_beats_blog_pipeline(_registered()).passed
    assert not checks.model_beats_blog_pipeline(_registered(rmse=60_000.0)).passed
    assert not checks.model_beats_blog_pipeline(_registered(mape=25.0)).passed


def test_champion_check_reads_the_resources_registry_and_fails_on_bad_prices(
    registry, contract_split, tmp_path, monkeypatch
):
    """The check loads @champion from the registry the `mlflow` resource names, whatever
    MLflow's process-wide URI says; a champion predicting negative prices fails it."""
    from housing_assets.resources.tracking import MlflowTracking

    client, X = registry
    resource = MlflowTracking(tracking_uri=client.tracking_uri)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", elsewhere)
    model = _registered()

    def check():
        return checks.champion_serves_raw_rows(
            registered_model=model, train_test_split=contract_split, mlflow=resource
        )

    _check_through_the_resource(check, client, X, elsewhere)


def _check_through_the_resource(check, client, X, elsewhere: str) -> None:
    import mlflow
    from sklearn.dummy import DummyRegressor

    from housing_assets.io.integrity import record_model_digest

    mlflow.set_tracking_uri(elsewhere)
    mlflow.set_registry_uri(elsewhere)
    result = check()
    assert result.passed and result.metadata["champion_version"].value == "3"

    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_registry_uri(client.tracking_uri)
    with mlflow.start_run():
        negative = DummyRegressor(strategy="constant", constant=-5.0).fit(X, [0, 0])
        info = mlflow.sklearn.log_model(
            negative,
            name="m",
            registered_model_name="housing_price_model",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    version = str(info.registered_model_version)
    record_model_digest(client, "housing_price_model", version)
    client.set_registered_model_alias("housing_price_model", "champion", version)
    mlflow.set_tracking_uri(elsewhere)
    mlflow.set_registry_uri(elsewhere)
    result = check()
    assert not result.passed and result.metadata["min_prediction_usd"].value == -5

    client.delete_registered_model_alias("housing_price_model", "champion")
    result = check()
    assert not result.passed and "no version has the alias" in result.metadata["problem"].value
