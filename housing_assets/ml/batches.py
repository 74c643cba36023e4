"""Combining the base dataset with accepted landing batches, with per-batch lineage."""

from __future__ import annotations

import pandas as pd

from housing_assets.ml.schema import RAW_COLUMNS

BASE_BATCH = "base"
BATCH_COLUMN = "batch"


def combine_batches(
    base: pd.DataFrame, batches: list[tuple[str, pd.DataFrame]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Base rows first (in file order), then each batch in order; exact duplicate rows (over the
    raw columns) are removed, keeping the first occurrence.

    Returns the combined frame (with a ``batch`` column naming each row's origin) and a lineage
    table: rows, duplicates removed and rows added per batch.
    """
    parts = [base.assign(**{BATCH_COLUMN: BASE_BATCH})]
    parts += [frame.assign(**{BATCH_COLUMN: name}) for name, frame in batches]
    combined = pd.concat(parts, ignore_index=True)
    duplicated = combined.duplicated(subset=RAW_COLUMNS, keep="first")
    lineage = (
        pd.DataFrame({BATCH_COLUMN: combined[BATCH_COLUMN], "duplicate": duplicated})
        .groupby(BATCH_COLUMN, sort=False)
        .agg(rows=("duplicate", "size"), duplicates_removed=("duplicate", "sum"))
        .reset_index()
    )
    lineage["rows_added"] = lineage["rows"] - lineage["duplicates_removed"]
    return combined.loc[~duplicated].reset_index(drop=True), lineage
