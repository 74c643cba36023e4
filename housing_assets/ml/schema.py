"""The raw California Housing schema and its validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TARGET = "median_house_value"
CATEGORICAL_FEATURE = "ocean_proximity"
NUMERIC_FEATURES = [
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
]
FEATURE_COLUMNS = [*NUMERIC_FEATURES, CATEGORICAL_FEATURE]
RAW_COLUMNS = [*NUMERIC_FEATURES, TARGET, CATEGORICAL_FEATURE]
OCEAN_CATEGORIES = ["<1H OCEAN", "INLAND", "NEAR OCEAN", "NEAR BAY", "ISLAND"]

# Columns that must never be missing: the target, the split key and the geography.
REQUIRED_NON_NULL = ["longitude", "latitude", "median_income", TARGET, CATEGORICAL_FEATURE]

# Plausible physical ranges (inclusive). California spans roughly 32.5-42 N, 114-124.5 W.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "longitude": (-125.0, -114.0),
    "latitude": (32.0, 42.5),
    "housing_median_age": (0.0, 200.0),
    "total_rooms": (0.0, 1e6),
    "total_bedrooms": (0.0, 1e6),
    "population": (0.0, 1e7),
    "households": (0.0, 1e6),
    "median_income": (0.0, 100.0),
    TARGET: (1.0, 1e8),
}


class DataValidationError(ValueError):
    """Raised when a dataset does not match the raw schema; the message names file and problem."""


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    missing: dict[str, int]
    categories: dict[str, int]


def _as_numbers(column: pd.Series, source: str) -> pd.Series:
    """The column as numbers (missing stays missing); an error naming the column and the first
    row that is not a number. The value itself is never echoed: a reason file or a log must not
    repeat what a file holds."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        raise DataValidationError(
            f"{source}: column '{column.name}' must be numeric; {int(bad.sum())} value(s) are not "
            f"(first at data row {int(np.flatnonzero(bad.to_numpy())[0]) + 1})"
        )
    return values


def coerce_raw(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check columns and types of a raw frame and return it in canonical column order and dtypes."""
    columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in RAW_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in RAW_COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    if problems:
        raise DataValidationError(
            f"{source}: {'; '.join(problems)} (expected exactly {RAW_COLUMNS})"
        )
    frame = frame.set_axis(columns, axis=1)[RAW_COLUMNS].copy()
    for column in [*NUMERIC_FEATURES, TARGET]:
        frame[column] = _as_numbers(frame[column], source).astype("float64")
    frame[CATEGORICAL_FEATURE] = frame[CATEGORICAL_FEATURE].astype("string").astype(object)
    frame.loc[frame[CATEGORICAL_FEATURE].isna(), CATEGORICAL_FEATURE] = None
    return frame.reset_index(drop=True)


def check_values(frame: pd.DataFrame, source: str, columns: list[str] = RAW_COLUMNS) -> None:
    """The value rules on ``columns`` of a coerced frame: required columns complete, numbers
    inside their plausible ranges. Training data and serving requests share these rules."""
    if frame.empty:
        raise DataValidationError(f"{source}: the dataset has no rows")
    for column in [c for c in REQUIRED_NON_NULL if c in columns]:
        n_null = int(frame[column].isna().sum())
        if n_null:
            raise DataValidationError(
                f"{source}: column '{column}' has {n_null} missing value(s); it must be complete"
            )
    for column, (low, high) in VALUE_RANGES.items():
        if column not in columns:
            continue
        values = frame[column]
        out = values.notna() & ((values < low) | (values > high))
        if out.any():
            first = int(np.flatnonzero(out.to_numpy())[0])
            raise DataValidationError(
                f"{source}: column '{column}' has {int(out.sum())} value(s) outside "
                f"[{low:g}, {high:g}] (first at data row {first + 1}: {values.iloc[first]!r})"
            )


def validate_raw(frame: pd.DataFrame, source: str) -> ValidationReport:
    """Validate values of a frame already passed through :func:`coerce_raw`."""
    check_values(frame, source)
    return ValidationReport(
        rows=len(frame),
        missing={c: int(n) for c, n in frame.isna().sum().items()},
        categories={str(k): int(v) for k, v in frame[CATEGORICAL_FEATURE].value_counts().items()},
    )


def validate_features(frame: pd.DataFrame, source: str = "request") -> None:
    """The serving side of the same rules: the 9 feature columns of rows to predict (columns
    MLflow's signature checks; here types, completeness and ranges, as for training rows)."""
    for column in NUMERIC_FEATURES:
        if column not in frame:
            raise DataValidationError(f"{source}: missing column '{column}'")
        frame = frame.assign(**{column: _as_numbers(frame[column], source)})
    if CATEGORICAL_FEATURE not in frame:
        raise DataValidationError(f"{source}: missing column '{CATEGORICAL_FEATURE}'")
    check_values(frame, source, FEATURE_COLUMNS)
