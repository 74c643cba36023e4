"""publish_model against a real MLflow registry: the gate decides on gate rows only, records
its evidence, and the test rows are scored once, after the decision."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from housing_assets.datasets import GeoFeatures, TunedParams
from housing_assets.io.registry import ModelRegistry, gate_champion, publish_model
from housing_assets.ml.models import FAMILIES
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import TARGET
from housing_assets.ml.split import SPLIT_SCHEME, assign_split
from housing_assets.steps import RegistrationSettings, split_hold_out
from housing_assets.steps.final_model import fit_challenger
from housing_assets_testkit import make_synthetic_housing


@pytest.fixture(scope="module")
def split():
    rows = make_synthetic_housing(3000, seed=21)
    noise = np.exp(np.random.default_rng(2).normal(0, 0.15, len(rows)))
    rows[TARGET] = (rows[TARGET] * noise).clip(15_000, 500_001)
    raw = assign_split(rows)
    spec = FeatureSpec(imputation_strategy="median", n_clusters=3, random_state=42)
    frame = raw.assign(geo_cluster=0, geo_cluster_similarity=1.0)
    return split_hold_out(raw, GeoFeatures(frame=frame, k_evidence=pd.DataFrame(), spec=spec))


def _tuned(seed: int, trees: int = 150) -> TunedParams:
    params = {
        **FAMILIES["boosting"].defaults,
        "n_estimators": trees,
        "num_leaves": 15,
        "random_state": seed,
    }
    return TunedParams(family="boosting", params=params, metric="wmape", cv_metrics={}, trials=None)


def _publish(registry, split, tuned, settings=None):
    fitted = fit_challenger(split, tuned, threads=1, seeds=1)
    with mlflow.start_run():
        return publish_model(
            registry, split, tuned, fitted, settings or RegistrationSettings(), "run-1"
        )


def test_the_gate_decides_on_gate_rows_and_records_its_evidence(registry, split):
    client, _ = registry
    registry = ModelRegistry(client)
    assert len(split.gate) > 200 and len(split.train) > 1500
    assert not set(split.gate.index) & (set(split.train.index) | set(split.test.index))

    # The champion (v3) predates the gate split: it may have been fitted on the gate rows.
    first = _publish(registry, split, _tuned(seed=1))
    assert first.promoted and first.model.version == "4"
    assert "registered under split without a gate" in first.reason
    tags = client.get_model_version("housing_price_model", "4").tags
    assert tags["split_scheme"] == SPLIT_SCHEME and tags["promotion_decision"].startswith(
        "promoted"
    )

    # The same model refitted with another seed: noise, promoted.
    refit = _publish(registry, split, _tuned(seed=2))
    assert refit.promoted and refit.decision.intervals, refit.reason
    version = client.get_model_version("housing_price_model", "5")
    gate = json.loads(version.tags["promotion_gate"])
    assert gate["promote"] is True and gate["rows"] == len(split.gate)
    assert set(gate["ci"]) == {"wmape", "rmse"}
    assert {s[0] for s in gate["slices"]} == {"ocean_proximity", "income_quintile", "region"}
    assert "**Promotion gate**" in version.description and "| slice | rows |" in version.description
    assert "| rmse |" in version.description  # the test metrics, reported after the decision
    assert refit.fitted.test_metrics["rmse"] > 0
    assert float(version.tags["rmse"]) == pytest.approx(refit.fitted.test_metrics["rmse"], 0.01)

    # A real regression is kept out; forcing records that the gate failed.
    worse = _publish(registry, split, _tuned(seed=1, trees=5))
    assert not worse.promoted and not worse.decision.promote
    assert "wmape" in worse.decision.blocked_by
    tags = client.get_model_version("housing_price_model", "6").tags
    assert tags["promotion_decision"].startswith("kept champion")
    assert registry.champion_version() == "5"
    # Promoted or not, the version carries the diff report (Markdown and figures).
    for number in ("5", "6"):
        run_id = client.get_model_version("housing_price_model", number).run_id
        files = {f.path for f in client.list_artifacts(run_id, "promotion_diff")}
        assert "promotion_diff/promotion_diff.md" in files, files
        assert any(f.endswith(".png") for f in files), files
    report = client.download_artifacts(run_id, "promotion_diff/promotion_diff.md")
    text = Path(report).read_text()
    assert "**Decision:** kept the champion" in text and "## Metrics on the" in text
    forced = _publish(
        registry, split, _tuned(seed=1, trees=5), RegistrationSettings(force_promote=True)
    )
    assert forced.promoted and not forced.decision.promote
    assert forced.reason.startswith("forced by configuration")


def test_the_gate_never_reads_the_test_rows(registry, split):
    client, _ = registry
    registry = ModelRegistry(client)
    _publish(registry, split, _tuned(seed=1))  # champion v4, under this split
    fitted = fit_challenger(split, _tuned(seed=3), threads=1, seeds=1)
    settings = RegistrationSettings()
    decision = gate_champion(registry, "4", split, fitted, settings.gate_rules())
    garbage = split.test.assign(**{TARGET: 1.0, "median_income": np.nan})
    blind = gate_champion(
        registry, "4", dataclasses.replace(split, test=garbage), fitted, settings.gate_rules()
    )
    assert blind.reason == decision.reason and blind.promote == decision.promote
    pd.testing.assert_frame_equal(blind.slices, decision.slices)
    with pytest.raises(RuntimeError, match="no gate rows"):
        gate_champion(
            registry, "4", dataclasses.replace(split, gate=None), fitted, settings.gate_rules()
        )
