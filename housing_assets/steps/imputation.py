"""imputed_housing: compare imputation strategies by masked reconstruction, apply the best."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from housing_assets.datasets import DataSource, ImputedHousing
from housing_assets.ml.imputation import (
    IMPUTATION_STRATEGIES,
    fit_imputer,
    impute_frame,
    masked_reconstruction,
)
from housing_assets.ml.schema import NUMERIC_FEATURES
from housing_assets.ml.split import training_rows


@dataclass(frozen=True)
class ImputationSettings:
    strategies: tuple[str, ...] = IMPUTATION_STRATEGIES
    mask_fraction: float = 0.2  # share of a column's known training values hidden and scored
    max_masked_cells: int = 3000  # at most this many a column (bounds the k-NN strategies' cost)
    rmse_tolerance: float = 0.05  # within this relative RMSE of the best is a tie: fastest wins
    seed: int = 0  # of the hidden cells and every imputer fitted


def impute(raw: pd.DataFrame, settings: ImputationSettings, *, threads: int) -> ImputedHousing:
    """Every row with numeric gaps filled by the strategy that reconstructs hidden known values
    best (masked-reconstruction RMSE on training rows; the target is never an input)."""
    train_numeric = training_rows(raw)[NUMERIC_FEATURES]
    incomplete = [c for c in NUMERIC_FEATURES if raw[c].isna().any()] or ["total_bedrooms"]
    comparison = masked_reconstruction(
        train_numeric,
        settings.strategies,
        incomplete,
        mask_fraction=settings.mask_fraction,
        max_masked=settings.max_masked_cells,
        random_state=settings.seed,
        rmse_tolerance=settings.rmse_tolerance,
        n_jobs=threads,
    )
    imputer = fit_imputer(
        comparison.best_strategy, train_numeric, random_state=settings.seed, n_jobs=threads
    )
    return ImputedHousing(
        frame=impute_frame(raw, NUMERIC_FEATURES, imputer),
        comparison=comparison.table,
        strategy=comparison.best_strategy,
        masked_cells=comparison.masked_cells,
        scored_columns=tuple(incomplete),
        source=DataSource.of_frame(raw),
    )
