"""Combining the base dataset with accepted landing batches, with per-batch lineage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from housing_assets.ml.schema import RAW_COLUMNS

BASE_BATCH = "base"
BATCH_COLUMN = "batch"


def row_keys(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit key per row over the raw columns: equal rows, equal keys (the same test that
    :func:`combine_batches` uses to drop duplicates)."""
    return pd.util.hash_pandas_object(frame[RAW_COLUMNS], index=False).to_numpy()


def distinct_row_keys(frame: pd.DataFrame) -> np.ndarray:
    """The sorted unique keys of ``frame``'s rows (uint64): a row repeated counts once."""
    keys = np.sort(row_keys(frame).astype(np.uint64, copy=False))
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys


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
