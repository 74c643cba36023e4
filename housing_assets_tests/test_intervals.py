"""Conformal prediction intervals: coverage on exchangeable synthetic rows, widths that follow
the group, and the served model's two answers (prices, or a table with params)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from housing_assets.io.served_model import PricePredictor
from housing_assets.ml.intervals import (
    ALL_ROWS,
    conformal_quantile,
    fit_conformal,
    interval_report,
)


def _rows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Districts where the model errs by ~5 % near the bay and ~30 % inland (log-normal)."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["NEAR BAY", "INLAND"], size=n)
    predictions = rng.uniform(80_000, 400_000, size=n)
    spread = np.where(group == "NEAR BAY", 0.05, 0.30)
    prices = predictions * np.exp(rng.normal(0, spread))
    return pd.DataFrame({"ocean_proximity": group}), prices, predictions


def test_the_conformal_quantile_is_the_finite_sample_one():
    residuals = np.arange(1, 10, dtype=float)  # n = 9
    assert conformal_quantile(residuals, 0.5) == 5.0  # ceil(10 * 0.5) = 5th
    assert conformal_quantile(residuals, 0.9) == 9.0
    assert conformal_quantile(residuals, 0.95) == np.inf  # ceil(9.5) = 10 > n


def test_intervals_cover_new_rows_at_the_level_and_follow_the_group():
    rows, prices, predictions = _rows(4_000, seed=0)
    intervals = fit_conformal(rows, prices, predictions)
    assert set(intervals.summary()) == {ALL_ROWS, "NEAR BAY", "INLAND"}
    new_rows, new_prices, new_predictions = _rows(20_000, seed=1)
    for level in (0.8, 0.9):
        lower, upper = intervals.bounds(new_rows, new_predictions, level)
        report = interval_report(new_prices, new_predictions, lower, upper)
        assert abs(report["coverage_pct"] - level * 100) < 1.5
    lower, upper = intervals.bounds(new_rows, new_predictions, 0.9)
    width = (upper - lower) / new_predictions
    bay = (new_rows["ocean_proximity"] == "NEAR BAY").to_numpy()
    assert np.median(width[~bay]) > 4 * np.median(width[bay])  # ~30 % vs ~5 % errors


def test_a_small_or_unseen_group_uses_every_rows_residuals():
    rows, prices, predictions = _rows(300, seed=2)
    intervals = fit_conformal(rows, prices, predictions, min_group_rows=200)
    assert set(intervals.summary()) == {ALL_ROWS}  # ~150 rows each: too few
    unseen = pd.DataFrame({"ocean_proximity": ["ISLAND", "NEAR BAY"]})
    widths = intervals.half_widths(unseen, 0.9)
    assert widths[0] == widths[1] == conformal_quantile(intervals.residuals[ALL_ROWS], 0.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        intervals.half_widths(unseen, 90)


class _Doubling:
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["x"].to_numpy() * 2.0


def test_the_served_model_answers_prices_or_a_table_with_params():
    from mlflow.exceptions import MlflowException

    rows, prices, predictions = _rows(1_000, seed=3)
    model = PricePredictor(_Doubling(), fit_conformal(rows, prices, predictions))
    frame = pd.DataFrame({"x": [100_000.0, 50_000.0], "ocean_proximity": ["INLAND", "NEAR BAY"]})
    plain = model.predict(None, frame)
    assert isinstance(plain, np.ndarray) and plain.tolist() == [200_000.0, 100_000.0]
    assert model.predict(None, frame, {"interval": 0.0}).tolist() == plain.tolist()  # default
    table = model.predict(None, frame, {"interval": 0.9})
    assert list(table.columns) == ["prediction", "lower", "upper"]
    assert (table["lower"] < table["prediction"]).all()
    assert (table["prediction"] < table["upper"]).all()
    with pytest.raises(MlflowException, match="between 0 and 1"):
        model.predict(None, frame, {"interval": 1.5})
    with pytest.raises(MlflowException, match="no calibrated intervals"):
        PricePredictor(_Doubling(), None).predict(None, frame, {"interval": 0.9})
