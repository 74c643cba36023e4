"""Test-then-train: how the serving champion does on a landing batch before anything trains on
it. A batch carries real prices, so the champion's error on its new rows is a fresh, honest
estimate of the error users see (the live error), one point per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from housing_assets.ml.batches import BATCH_COLUMN
from housing_assets.ml.metrics import regression_metrics
from housing_assets.ml.schema import TARGET

LIVE_METRICS = ("wmape", "mape", "rmse", "within_10pct")
COVERAGE = "interval_coverage_pct"  # share of prices inside the served interval
COVERAGE_DROP_PP = 5.0  # coverage this far below the nominal level warns


def live_error_by_batch(
    rows: pd.DataFrame,
    predictions: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per batch of ``rows`` (in order of arrival): its row count and the metrics of
    ``predictions`` (one per row of ``rows``) against its prices; with the served interval's
    ``bounds`` (lower, upper), also the share of prices inside it."""
    scored = pd.DataFrame({"batch": rows[BATCH_COLUMN].to_numpy(), "y": rows[TARGET].to_numpy()})
    scored["prediction"] = np.asarray(predictions, dtype=float)
    if bounds is not None:
        scored["inside"] = (scored["y"] >= bounds[0]) & (scored["y"] <= bounds[1])
    table = []
    for batch, part in scored.groupby("batch", sort=False):
        metrics = regression_metrics(part["y"], part["prediction"])
        row = {"batch": batch, "rows": len(part), **{m: metrics[m] for m in LIVE_METRICS}}
        if bounds is not None:
            row[COVERAGE] = float(part["inside"].mean() * 100)
        table.append(row)
    columns = ["batch", "rows", *LIVE_METRICS, *([COVERAGE] if bounds is not None else [])]
    return pd.DataFrame(table, columns=columns)


@dataclass(frozen=True)
class LiveErrorVerdict:
    """The live wMAPE over every new row against the champion's own test wMAPE."""

    live_wmape: float
    test_wmape: float
    margin_pp: float
    coverage_pct: float | None = None  # of the served interval, on every new row
    nominal_pct: float | None = None  # its level

    @property
    def coverage_low(self) -> bool:
        if self.coverage_pct is None or self.nominal_pct is None:
            return False
        return self.coverage_pct < self.nominal_pct - COVERAGE_DROP_PP

    @property
    def excess_pp(self) -> float:
        return self.live_wmape - self.test_wmape

    @property
    def exceeded(self) -> bool:
        return self.excess_pp > self.margin_pp

    @property
    def passed(self) -> bool:
        return not (self.exceeded or self.coverage_low)

    def describe(self) -> str:
        relation = "exceeds" if self.exceeded else "is within"
        text = (
            f"live wMAPE {self.live_wmape:.2f} % {relation} the champion's test wMAPE "
            f"{self.test_wmape:.2f} % + {self.margin_pp:g} points"
        )
        if self.coverage_pct is not None:
            relation = "more than" if self.coverage_low else "at most"
            text += (
                f"; its {self.nominal_pct:g} % interval held {self.coverage_pct:.1f} % of the "
                f"prices, {relation} {COVERAGE_DROP_PP:g} points below nominal"
            )
        return text


def live_error_verdict(
    rows: pd.DataFrame,
    predictions: np.ndarray,
    test_wmape: float,
    margin_pp: float,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    level: float | None = None,
) -> LiveErrorVerdict:
    live = regression_metrics(rows[TARGET], predictions)["wmape"]
    coverage = None
    if bounds is not None:
        prices = rows[TARGET].to_numpy(dtype=float)
        coverage = float(((prices >= bounds[0]) & (prices <= bounds[1])).mean() * 100)
    return LiveErrorVerdict(
        live_wmape=live,
        test_wmape=test_wmape,
        margin_pp=margin_pp,
        coverage_pct=coverage,
        nominal_pct=None if level is None else level * 100,
    )
