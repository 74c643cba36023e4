"""Prediction intervals by split conformal prediction on the log price, per group.

The residuals come from rows the model was never fitted on (the gate rows), so for a new row
like them the interval ``[ŷ·e^-q, ŷ·e^q]`` holds the true price with probability at least the
level asked (``q`` the conformal quantile of ``|log y - log ŷ|``), whatever the model. Residuals
are kept per ``ocean_proximity`` (Mondrian conformal prediction): the model is surer of some
districts than of others, and the width follows. A group with too few calibration rows (or a
value never seen) uses every row's residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

GROUP_COLUMN = "ocean_proximity"
ALL_ROWS = "*"
MIN_GROUP_ROWS = 200
INTERVAL_LEVEL = 0.9  # the level reported on the test rows and checked on live batches


def conformal_quantile(sorted_residuals: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) * level)``-th smallest of ``n`` residuals (infinite when that is past
    the last: too few rows for the level)."""
    n = len(sorted_residuals)
    k = math.ceil((n + 1) * level)
    return float(sorted_residuals[k - 1]) if k <= n else math.inf


@dataclass(frozen=True)
class ConformalIntervals:
    residuals: dict[str, np.ndarray]  # sorted |log y - log ŷ| per group; ALL_ROWS for all

    def half_widths(self, rows: pd.DataFrame, level: float) -> np.ndarray:
        """Each row's ``q`` at ``level``: its group's, or every row's."""
        if not 0 < level < 1:
            raise ValueError(f"interval: a level between 0 and 1 is needed, got {level!r}")
        groups = (
            rows[GROUP_COLUMN]
            .astype(object)
            .where(rows[GROUP_COLUMN].isin(list(self.residuals)), ALL_ROWS)
        )
        quantiles = {g: conformal_quantile(r, level) for g, r in self.residuals.items()}
        return groups.map(quantiles).to_numpy(dtype=float)

    def bounds(
        self, rows: pd.DataFrame, predictions: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) prices for ``rows`` around ``predictions`` at ``level``."""
        q = self.half_widths(rows, level)
        predictions = np.asarray(predictions, dtype=float)
        return predictions * np.exp(-q), predictions * np.exp(q)

    def summary(self) -> dict[str, int]:
        """Calibration rows per group."""
        return {group: len(r) for group, r in self.residuals.items()}


def fit_conformal(
    rows: pd.DataFrame,
    prices: np.ndarray,
    predictions: np.ndarray,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> ConformalIntervals:
    """Calibrate on ``rows`` (never fitted on) with their true ``prices`` and ``predictions``."""
    residuals = np.abs(np.log(np.asarray(prices, float)) - np.log(np.asarray(predictions, float)))
    groups = rows[GROUP_COLUMN].to_numpy()
    kept = {ALL_ROWS: np.sort(residuals)}
    for group in pd.unique(groups):
        part = residuals[groups == group]
        if len(part) >= min_group_rows:
            kept[str(group)] = np.sort(part)
    return ConformalIntervals(kept)


def interval_report(
    prices: np.ndarray, predictions: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> dict[str, float]:
    """Coverage (% of prices inside) and the median width relative to the prediction (%)."""
    prices = np.asarray(prices, dtype=float)
    inside = (prices >= lower) & (prices <= upper)
    width = (np.asarray(upper) - np.asarray(lower)) / np.asarray(predictions, dtype=float)
    return {
        "coverage_pct": float(inside.mean() * 100),
        "median_relative_width_pct": float(np.median(width) * 100),
    }
