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


def live_error_by_batch(rows: pd.DataFrame, predictions: np.ndarray) -> pd.DataFrame:
    """One row per batch of ``rows`` (in order of arrival): its row count and the metrics of
    ``predictions`` (one per row of ``rows``) against its prices."""
    scored = pd.DataFrame({"batch": rows[BATCH_COLUMN].to_numpy(), "y": rows[TARGET].to_numpy()})
    scored["prediction"] = np.asarray(predictions, dtype=float)
    table = []
    for batch, part in scored.groupby("batch", sort=False):
        metrics = regression_metrics(part["y"], part["prediction"])
        table.append({"batch": batch, "rows": len(part), **{m: metrics[m] for m in LIVE_METRICS}})
    return pd.DataFrame(table, columns=["batch", "rows", *LIVE_METRICS])


@dataclass(frozen=True)
class LiveErrorVerdict:
    """The live wMAPE over every new row against the champion's own test wMAPE."""

    live_wmape: float
    test_wmape: float
    margin_pp: float

    @property
    def excess_pp(self) -> float:
        return self.live_wmape - self.test_wmape

    @property
    def exceeded(self) -> bool:
        return self.excess_pp > self.margin_pp

    def describe(self) -> str:
        relation = "exceeds" if self.exceeded else "is within"
        return (
            f"live wMAPE {self.live_wmape:.2f} % {relation} the champion's test wMAPE "
            f"{self.test_wmape:.2f} % + {self.margin_pp:g} points"
        )


def live_error_verdict(
    rows: pd.DataFrame, predictions: np.ndarray, test_wmape: float, margin_pp: float
) -> LiveErrorVerdict:
    live = regression_metrics(rows[TARGET], predictions)["wmape"]
    return LiveErrorVerdict(live_wmape=live, test_wmape=test_wmape, margin_pp=margin_pp)
