"""model_comparison: several algorithm families, each with a cross-validated grid."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from housing_assets.datasets import HousingSplit, ModelComparison
from housing_assets.ml.models import FAMILIES, compare_families


@dataclass(frozen=True)
class ComparisonSettings:
    families: tuple[str, ...] = tuple(FAMILIES)
    cv_folds: int = 3
    selection_metric: str = "wmape"
    max_candidates_per_family: int | None = None  # the first N of each grid: 1 for a smoke run
    seed: int = 42  # of the folds and every regressor fitted


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def compare_models(
    split: HousingSplit, settings: ComparisonSettings, *, threads: int
) -> ModelComparison:
    """The winner is the family whose best grid candidate has the lowest cross-validated
    ``selection_metric`` on training rows (preprocessing refitted inside every fold)."""
    cache = split.fold_cache(settings.cv_folds, settings.seed)
    candidates, leaderboard = compare_families(
        cache,
        list(settings.families),
        settings.selection_metric,
        max_candidates=settings.max_candidates_per_family,
        n_jobs=threads,
        seed=settings.seed,
    )
    winner = leaderboard.iloc[0]

    def stored(table: pd.DataFrame) -> pd.DataFrame:  # Parquet holds text, not dicts
        return table.assign(
            params=table["params"].map(params_text),
            fold_metrics=table["fold_metrics"].map(json.dumps),
        )

    return ModelComparison(
        candidates=stored(candidates),
        leaderboard=stored(leaderboard),
        winner=str(winner["family"]),
        winner_params=dict(winner["params"]),
        selection_metric=settings.selection_metric,
        cv_folds=settings.cv_folds,
        seed=settings.seed,
    )
