"""The promotion gate's evidence on synthetic models: paired bootstrap intervals, slices and
the decision (housing_assets/ml/gate.py)."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMRegressor

from housing_assets.ml.gate import GateRules, gate_decision, paired_bootstrap, slice_table
from housing_assets.ml.schema import NUMERIC_FEATURES, TARGET
from housing_assets_testkit import make_synthetic_housing


@pytest.fixture(scope="module")
def fitted_pair():
    """Synthetic districts, as noisy as the real ones (wMAPE ~13 %): a training part and a
    gate part (never fitted on)."""
    rows = make_synthetic_housing(5000, seed=11, missing=0)
    noise = np.exp(np.random.default_rng(5).normal(0, 0.15, len(rows)))
    rows[TARGET] = (rows[TARGET] * noise).clip(15_000, 500_001)
    rows["inland"] = (rows["ocean_proximity"] == "INLAND").astype(int)
    return rows.iloc[:3000], rows.iloc[3000:].reset_index(drop=True)


def _predict(train: pd.DataFrame, gate: pd.DataFrame, seeds, n_estimators: int = 300):
    """A boosted model on log price, the mean of one fit per seed (like the registered model),
    predicting the gate rows."""
    features = [*NUMERIC_FEATURES, "inland"]
    log_price = 0.0
    for seed in seeds:
        model = LGBMRegressor(
            n_estimators=n_estimators,
            learning_rate=0.05,
            num_leaves=15,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
        )
        model.fit(train[features], np.log(train[TARGET]))
        log_price = log_price + model.predict(gate[features]) / len(seeds)
    return np.exp(log_price)


def test_refit_noise_passes_the_gate_and_a_real_regression_is_blocked(fitted_pair):
    train, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    champion = _predict(train, gate, seeds=(1, 2, 3))
    rules = GateRules()
    refits = {}
    for seeds in [(4, 5, 6), (7, 8, 9), (10, 11, 12)]:  # the same model refitted: noise
        noise = gate_decision(gate, y, _predict(train, gate, seeds), champion, rules)
        assert noise.promote, noise.reason
        assert noise.blocked_by == []
        for interval in noise.intervals.values():
            assert interval.low <= interval.point <= interval.high
        refits[seeds] = noise.intervals["wmape"]
    # (7, 8, 9) is measurably worse than the champion (its interval excludes zero), but by
    # less than the tolerance: refit noise, not a regression.
    assert 0 < refits[(7, 8, 9)].low < refits[(7, 8, 9)].point < rules.wmape_tolerance_pp

    # A real regression: the same model fitted on a fifth of the rows, with fewer trees.
    worse = _predict(train.iloc[:600], gate, seeds=(1, 2, 3), n_estimators=100)
    blocked = gate_decision(gate, y, worse, champion, rules)
    assert not blocked.promote
    assert {"wmape", "rmse"} <= set(blocked.blocked_by)
    assert blocked.intervals["wmape"].low > rules.wmape_tolerance_pp  # confidently worse
    assert "paired CI" in blocked.reason and "wmape +" in blocked.reason


def test_no_champion_promotes_and_still_reports_the_slices(fitted_pair):
    _, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    decision = gate_decision(gate, y, y * 1.05, None, GateRules())
    assert decision.promote and decision.reason == "no champion yet"
    assert decision.intervals == {} and decision.champion_metrics is None
    assert set(decision.slices["dimension"]) == {"ocean_proximity", "income_quintile", "region"}
    assert decision.slices["champion_wmape"].isna().all()


def test_a_large_slice_that_regresses_blocks_even_when_the_whole_improves(fitted_pair):
    _, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    rng = np.random.default_rng(0)
    champion = y * np.exp(rng.normal(0, 0.15, len(y)))
    inland = (gate["ocean_proximity"] == "INLAND").to_numpy()
    assert inland.sum() >= 200
    # Better everywhere but inland, where it is 5 % too high on top of the champion's error.
    challenger = np.where(inland, champion * 1.05, y + (champion - y) * 0.8)
    rules = GateRules()
    decision = gate_decision(gate, y, challenger, champion, rules)
    assert decision.intervals["wmape"].high < 0  # the whole is better
    assert not decision.promote
    assert decision.blocked_by == ["ocean_proximity=INLAND"]
    line = decision.slices.set_index(["dimension", "slice"]).loc[("ocean_proximity", "INLAND")]
    assert line["regressed"] and line["wmape_diff_pp"] > rules.slice_wmape_bound_pp
    # The same regression in a slice below the row minimum does not count.
    small = gate_decision(gate, y, challenger, champion, GateRules(slice_min_rows=len(y)))
    assert small.promote, small.reason


def test_slices_cover_every_gate_row_in_each_dimension(fitted_pair):
    _, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    table = slice_table(gate, y, y * 1.1, y, GateRules(slice_min_rows=300))
    for dimension, lines in table.groupby("dimension"):
        assert lines["rows"].sum() == len(gate), dimension
    quintiles = table[table["dimension"] == "income_quintile"]
    assert len(quintiles) == 5 and quintiles["rows"].between(395, 405).all()
    assert (table["counted"] == (table["rows"] >= 300)).all()
    assert np.allclose(table["wmape_diff_pp"], table["challenger_wmape"] - 0)


def test_the_decision_as_compact_json_and_markdown(fitted_pair):
    _, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    decision = gate_decision(gate, y, y * 1.01, y * 1.02, GateRules())
    text = decision.as_json()
    assert ", " not in text and ": " not in text  # compact separators
    data = json.loads(text)
    assert data["promote"] is True and data["rows"] == len(gate)
    assert set(data["ci"]) == {"wmape", "rmse"} and data["confidence"] == 0.9
    assert data["ci"]["wmape"]["high"] < 0
    assert len(data["slices"]) == len(decision.slices) and len(text) < 5000
    assert "| slice | rows |" in decision.slices_markdown()


def test_the_paired_bootstrap_is_seeded_vectorised_and_cheap():
    rng = np.random.default_rng(3)
    y = rng.uniform(50_000, 500_000, 3000)
    a = y * np.exp(rng.normal(0, 0.15, len(y)))
    b = a * np.exp(rng.normal(0, 0.02, len(y)))
    kwargs = dict(resamples=1000, confidence=0.9, seed=0)
    start = time.perf_counter()
    first = paired_bootstrap(y, a, b, **kwargs)
    seconds = time.perf_counter() - start
    assert paired_bootstrap(y, a, b, **kwargs) == first  # seeded: the same interval
    assert seconds < 2.0  # ~0.05-0.25 s on a loaded 2-core machine
    same = paired_bootstrap(y, a, a, **kwargs)
    assert same["wmape"].point == same["wmape"].low == same["wmape"].high == 0
    # The point estimate is the difference of the two models' metrics on all rows.
    wmape = lambda p: 100 * np.abs(p - y).sum() / y.sum()  # noqa: E731
    assert first["wmape"].point == pytest.approx(wmape(a) - wmape(b))


def test_the_version_description_fits_the_registrys_column(fitted_pair):
    """MLflow's model_versions.description holds 5,000 characters on PostgreSQL (SQLite does
    not enforce it, so only the stack would fail): the description is built to fit, and cut
    with a note if it ever grows past it."""
    from housing_assets.io.registry import (
        MAX_DESCRIPTION_CHARS,
        gate_markdown,
        model_description,
        within_description_limit,
    )

    _, gate = fitted_pair
    y = gate[TARGET].to_numpy()
    decision = gate_decision(gate, y, y * 1.01, y * 1.02, GateRules(slice_min_rows=1))
    metrics = dict.fromkeys(
        ["rmse", "mae", "r2", "mape", "smape", "wmape", "median_ape"]
        + ["within_5pct", "within_10pct", "within_15pct"],
        12.3456,
    )
    description = model_description(
        "boosting", {f"param_{i}": 0.123456 for i in range(12)}, metrics, metrics,
        "FeatureSpec(imputation_strategy='iterative_forest', n_clusters=5)",
        "https://example.com/" + "x" * 200 + "/housing.tgz", "0" * 64, "a" * 36,
        gate_markdown(decision),
    )  # fmt: skip
    assert len(decision.slices) >= 15  # every slice counted here: the longest table there is
    assert len(description) <= MAX_DESCRIPTION_CHARS, len(description)
    cut = within_description_limit("x" * 6000)
    assert len(cut) == MAX_DESCRIPTION_CHARS and cut.rstrip().endswith("full report)")
    assert within_description_limit(description) == description
