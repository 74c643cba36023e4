"""Regression metrics under the names the whole project uses (percentages on a 0-100 scale)."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = [
    "rmse",
    "mae",
    "r2",
    "mape",
    "smape",
    "wmape",
    "median_ape",
    "within_5pct",
    "within_10pct",
    "within_15pct",
]
# For each metric, whether larger is better (used to rank and to gate promotions).
GREATER_IS_BETTER = {
    name: name in {"r2", "within_5pct", "within_10pct", "within_15pct"} for name in METRIC_NAMES
}

# Reference results on the contract's test split (shared/data/README.md): the pipeline this
# project replaces, and the tuned forest of Hands-On ML (3rd ed.), chapter 2.
BLOG_PIPELINE_TEST_METRICS = {"rmse": 53_277.0, "mape": 20.4, "within_10pct": 36.2}
GERON_TEST_METRICS = {"rmse": 41_424.0}


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """All project metrics for one set of predictions."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two equal, non-empty arrays, got {y_true.shape} and {y_pred.shape}")
    error = y_pred - y_true
    abs_error = np.abs(error)
    ape = abs_error / np.abs(y_true) * 100.0
    denom = np.abs(y_true) + np.abs(y_pred)
    smape = np.where(denom == 0, 0.0, 2.0 * abs_error / np.where(denom == 0, 1, denom)) * 100.0
    ss_res = float(np.sum(error**2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(abs_error.mean()),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
        "mape": float(ape.mean()),
        "smape": float(smape.mean()),
        "wmape": float(abs_error.sum() / np.abs(y_true).sum() * 100.0),
        "median_ape": float(np.median(ape)),
        "within_5pct": float((ape <= 5).mean() * 100.0),
        "within_10pct": float((ape <= 10).mean() * 100.0),
        "within_15pct": float((ape <= 15).mean() * 100.0),
    }


def rounded_metric(name: str, value: float) -> float:
    """``value`` rounded to what a reader needs: dollars whole, r2 to 4 places, % to 2."""
    digits = 0 if name in {"rmse", "mae"} else 4 if name == "r2" else 2
    return round(float(value), digits)


def format_metric(name: str, value: float) -> str:
    if name in {"rmse", "mae"}:
        return f"{value:,.0f}"
    if name == "r2":
        return f"{value:.4f}"
    return f"{value:.2f}"
