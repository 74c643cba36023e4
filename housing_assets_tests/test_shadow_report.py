"""The shadow report's serving drift: logged requests against the training rows."""

from __future__ import annotations

import pandas as pd

from housing_assets.reports.shadow import shadow_report
from housing_assets_testkit import make_synthetic_housing


def _log(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(
        request_sha256=[f"r{i // 10}" for i in range(len(rows))],
        row=range(len(rows)),
        champion_version="3",
        champion_prediction=200_000.0,
        shadow_version="4",
        shadow_prediction=205_000.0,
    )


def test_requests_unlike_the_training_rows_show_as_serving_drift():
    training = make_synthetic_housing()
    like = _log(training.sample(300, random_state=1))
    markdown, tables = shadow_report(like, training)
    assert not tables["serving_drift"]["drifted"].any()
    assert "Drifted (PSI > 0.2): none." in markdown
    (pair,) = tables["comparison"].itertuples()
    assert (pair.requests, pair.rows) == (30, 300)
    assert round(pair.median_abs_change_pct, 6) == 2.5 and pair.moved_over_5pct_share == 0.0

    richer = like.assign(median_income=like["median_income"] * 3)
    markdown, tables = shadow_report(richer, training)
    drifted = tables["serving_drift"].set_index("feature")["drifted"]
    assert drifted["median_income"] and "Drifted (PSI > 0.2): median_income." in markdown
