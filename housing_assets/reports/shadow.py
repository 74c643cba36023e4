"""The shadow report: how the shadow version's answers differ from the champion's on the
requests users actually sent, and how those requests differ from the training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_assets.ml.drift import drift_table
from housing_assets.ml.schema import FEATURE_COLUMNS


def shadow_comparison(log: pd.DataFrame) -> pd.DataFrame:
    """One row per (champion version, shadow version): requests, rows, and how far the shadow's
    prices are from the champion's (median and 90th percentile of |change| in %, the share of
    rows moved more than 5 %)."""
    if log.empty:
        return pd.DataFrame(
            columns=["champion_version", "shadow_version", "requests", "rows",
                     "median_abs_change_pct", "p90_abs_change_pct", "moved_over_5pct_share"]
        )  # fmt: skip
    change = (log["shadow_prediction"] / log["champion_prediction"] - 1).abs() * 100
    grouped = log.assign(change=change).groupby(["champion_version", "shadow_version"])
    return grouped.agg(
        requests=("request_sha256", "nunique"),
        rows=("row", "size"),
        median_abs_change_pct=("change", "median"),
        p90_abs_change_pct=("change", lambda c: float(np.percentile(c, 90))),
        moved_over_5pct_share=("change", lambda c: float((c > 5).mean() * 100)),
    ).reset_index()


def shadow_report(log: pd.DataFrame, training_rows: pd.DataFrame) -> tuple[str, dict]:
    """(Markdown, tables): the comparison, and the drift of the logged requests' features
    against ``training_rows`` (PSI per feature; above 0.2 the requests differ from what the
    model was trained on)."""
    comparison = shadow_comparison(log)
    lines = ["# Shadow scoring", "", f"{log['request_sha256'].nunique() if len(log) else 0} "
             f"requests, {len(log)} rows logged.", "", "## Shadow against champion", ""]  # fmt: skip
    lines.append(
        comparison.to_markdown(index=False, floatfmt=".2f") if len(comparison) else "(no rows)"
    )
    tables = {"comparison": comparison}
    if len(log) and set(FEATURE_COLUMNS) <= set(log.columns):
        drift = drift_table(training_rows, log)
        tables["serving_drift"] = drift
        drifted = drift[drift["drifted"]]["feature"].tolist()
        lines += [
            "",
            "## The requests against the training rows",
            "",
            f"Drifted (PSI > 0.2): {', '.join(drifted) or 'none'}.",
            "",
            drift.fillna("").to_markdown(index=False, floatfmt=".3f"),
        ]
    return "\n".join(lines) + "\n", tables
