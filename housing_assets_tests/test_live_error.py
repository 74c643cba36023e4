"""Test-then-train: the serving champion scores a landing batch before anything trains on it.

The check runs in a real Dagster run (ephemeral instance) against a real MLflow store; the
champion is a constant model, so the expected errors are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, asset, materialize

from housing_assets.defs.checks import champion_live_error
from housing_assets.defs.jobs import BATCHES_TAG
from housing_assets.ml.batches import BASE_BATCH, BATCH_COLUMN
from housing_assets.ml.live_error import live_error_by_batch, live_error_verdict
from housing_assets.ml.schema import TARGET
from housing_assets_testkit import register_constant_model

PRICE = 200_000.0  # what the constant champion answers


def _rows(batch: str, prices: list[float]) -> pd.DataFrame:
    frame = pd.DataFrame({TARGET: prices})
    return frame.assign(**{BATCH_COLUMN: batch})


def test_live_error_is_one_row_per_batch_in_order_of_arrival():
    rows = pd.concat([_rows("b2", [100.0, 100.0]), _rows("b1", [200.0])], ignore_index=True)
    table = live_error_by_batch(rows, np.array([110.0, 90.0, 200.0]))
    assert list(table["batch"]) == ["b2", "b1"] and list(table["rows"]) == [2, 1]
    assert table["wmape"].tolist() == pytest.approx([10.0, 0.0])
    verdict = live_error_verdict(rows, np.array([110.0, 90.0, 200.0]), test_wmape=2.0, margin_pp=3)
    assert verdict.live_wmape == pytest.approx(20 / 400 * 100)  # 5 %
    assert not verdict.exceeded and "is within" in verdict.describe()
    assert live_error_verdict(rows, np.array([150.0, 50.0, 200.0]), 2.0, 3).exceeded  # 25 %


@pytest.fixture
def constant_champion(registry):
    """The conftest registry with a fourth version answering PRICE, champion, test wMAPE 10 %."""
    from housing_assets.io.integrity import record_model_digest

    client, X = registry
    run_id = register_constant_model(PRICE, X)
    record_model_digest(client, "housing_price_model", "4")
    for key, value in {"wmape": "10.000", "dagster_run_id": "earlier-run"}.items():
        client.set_model_version_tag("housing_price_model", "4", key, value)
    client.set_model_version_tag("housing_price_model", "4", "previous_champion", "3")
    client.set_registered_model_alias("housing_price_model", "champion", "4")
    return client, run_id


def _run_check(raw: pd.DataFrame, tags: dict, tracking_uri: str, instance):
    from housing_assets.resources.tracking import MlflowTracking

    @asset(name="raw_housing")
    def landed() -> pd.DataFrame:
        return raw

    result = materialize(
        [landed, champion_live_error],
        resources={"mlflow": MlflowTracking(tracking_uri=tracking_uri)},
        tags=tags,
        instance=instance,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return result.run_id, evaluation


def test_the_champion_scores_only_this_runs_batches_and_warns_past_the_margin(
    constant_champion, monkeypatch
):
    from housing_assets.defs.sensors import retune_reasons

    client, champion_run = constant_champion
    base = _rows(BASE_BATCH, [PRICE] * 5)
    close = _rows("batch-1.csv", [PRICE * 1.1] * 4)  # wMAPE 9.1 %: within 10 + 3
    far = _rows("batch-2.csv", [PRICE * 2] * 4)  # wMAPE 50 %
    raw = pd.concat([base, close, far], ignore_index=True)
    raw["longitude"], raw["latitude"] = -120.0, 36.0  # the feature columns the model receives
    for column in ("housing_median_age", "total_rooms", "total_bedrooms", "population"):
        raw[column] = 1.0
    raw["households"], raw["median_income"], raw["ocean_proximity"] = 1.0, 3.0, "INLAND"
    monkeypatch.setenv("HOUSING_LIVE_ERROR_MARGIN_PP", "3")

    with DagsterInstance.ephemeral() as instance:
        _, evaluation = _run_check(raw, {BATCHES_TAG: "batch-1.csv"}, client.tracking_uri, instance)
        assert evaluation.passed
        assert evaluation.metadata["live_wmape"].value == pytest.approx(100 / 11, rel=1e-6)
        assert evaluation.metadata["champion_version"].value == "4"

        run_id, evaluation = _run_check(
            raw, {BATCHES_TAG: "batch-1.csv,batch-2.csv"}, client.tracking_uri, instance
        )
        assert not evaluation.passed and evaluation.metadata["new_rows"].value == 8
        assert "exceeds the champion's test wMAPE 10.00 %" in evaluation.description
        (reason,) = retune_reasons(instance, run_id)
        assert "champion_live_error" in reason

        # A run without batches (a manual run) scores nothing.
        _, evaluation = _run_check(raw, {}, client.tracking_uri, instance)
        assert evaluation.passed and "no new batch" in evaluation.metadata["scored"].value

    # The series sits in the champion's MLflow run, one step per batch (its ordinal).
    history = client.get_metric_history(champion_run, "live_wmape")
    assert sorted((m.step, round(m.value, 2)) for m in history) == [
        (1, 9.09),
        (1, 9.09),
        (2, 50.0),
    ]


def test_a_run_whose_own_version_took_the_alias_is_scored_by_the_one_before(constant_champion):
    """Whatever order the steps ran in, the batch is scored by a model that never saw it."""
    from housing_assets.io.registry import ModelRegistry

    client, _ = constant_champion
    registry = ModelRegistry(client, "housing_price_model")
    assert registry.champion_before_run("another-run") == "4"
    assert registry.champion_before_run("earlier-run") == "3"


def test_a_live_batch_outside_the_served_interval_warns():
    rows = _rows("b1", [100.0] * 10)
    predictions = np.full(10, 100.0)
    inside = (np.full(10, 90.0), np.full(10, 110.0))
    table = live_error_by_batch(rows, predictions, inside)
    assert table["interval_coverage_pct"].tolist() == [100.0]
    verdict = live_error_verdict(rows, predictions, 5.0, 3.0, inside, level=0.9)
    assert verdict.passed and "held 100.0 % of the prices" in verdict.describe()
    # 8 of 10 prices inside a 90 % interval: 10 points below nominal.
    two_out = (np.r_[np.full(8, 90.0), 101.0, 101.0], np.full(10, 110.0))
    verdict = live_error_verdict(rows, predictions, 5.0, 3.0, two_out, level=0.9)
    assert verdict.coverage_pct == 80.0 and verdict.coverage_low and not verdict.passed
    assert not verdict.exceeded  # the error itself is fine
