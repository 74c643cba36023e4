"""Algorithm families, their small comparison grids and Optuna search spaces."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from joblib import Parallel, delayed
from lightgbm import LGBMRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.validation import validate_data

from housing_assets.ml.cv import FoldCache, iter_fold_metrics, summarize
from housing_assets.ml.sampling import bounded_rows


@dataclass(frozen=True)
class ModelFamily:
    name: str
    description: str
    make: Callable[..., Any]  # hyper-parameters -> unfitted regressor
    grid: dict[str, list]  # the small grid of the comparison
    scale: bool  # needs the scaled (signed log + standardised) preprocessing
    threads_inside: bool  # parallel on its own (n_jobs); otherwise candidates run in parallel
    defaults: dict[str, Any] = field(default_factory=dict)  # what ``make`` uses when not given

    def build(self, params: dict[str, Any], n_jobs: int):
        return self.make(**params, n_jobs=n_jobs) if self.threads_inside else self.make(**params)


class SampledKNeighborsRegressor(KNeighborsRegressor):
    """k-NN on at most ``max_fit_rows`` training rows (a random sample beyond that).

    In ~40 dimensions neighbour search is brute force, so prediction costs
    rows x training rows: the cap keeps it linear in the data size. 20,000 rows cover this
    dataset whole; larger data is sampled.
    """

    def __init__(
        self, n_neighbors=5, *, weights="distance", p=2, max_fit_rows=20_000, random_state=0
    ):
        super().__init__(n_neighbors=n_neighbors, weights=weights, p=p)
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True, y_numeric=True)
        rows = bounded_rows(X.shape[0], self.max_fit_rows, self.random_state)
        return super().fit(X[rows], y[rows])


# Huber loss on log(price): residuals beyond 0.15 (~16 %) count linearly, so a few districts far
# off their neighbourhood's price level do not pull the trees (CV: MAPE -0.2 pp). max_bin 127,
# half LightGBM's default histogram: 1.3x faster at equal CV error. Extremely randomized trees
# (one random threshold per feature at each split) with 1.5x the trees: less variance on these
# noisy district medians (5-fold CV on training rows, two seeds: wMAPE -0.08 pp, RMSE -0.5 %,
# MAPE -0.12 pp at ~1.4x the fitting time; twice the trees bought only 0.01 pp more;
# docs/benchmark-results.md). reg_lambda sits at the bottom of the search's range (LightGBM's
# own default, 0, is outside its log scale), so the grid's winner is a point of the search
# space and the search's first trial is exactly that winner.
LIGHTGBM_DEFAULTS = dict(
    objective="huber",
    alpha=0.15,
    max_bin=127,
    extra_trees=True,
    n_estimators=900,
    learning_rate=0.05,
    num_leaves=63,
    subsample=0.8,
    subsample_freq=1,
    colsample_bytree=0.5,
    min_child_samples=10,
    reg_lambda=1e-3,
)
FOREST_DEFAULTS = dict(n_estimators=100, max_samples=0.5, min_samples_leaf=2)


def _lightgbm(n_jobs: int, **params) -> LGBMRegressor:
    return LGBMRegressor(
        **{**LIGHTGBM_DEFAULTS, **params}, n_jobs=n_jobs, random_state=42, verbose=-1
    )


def _forest(n_jobs: int, **params) -> RandomForestRegressor:
    return RandomForestRegressor(**{**FOREST_DEFAULTS, **params}, n_jobs=n_jobs, random_state=42)


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in [
        ModelFamily(
            "linear",
            "Ridge regression on scaled, log-transformed features",
            lambda **p: Ridge(**p),
            {"alpha": [0.1, 1.0, 10.0]},
            True,
            False,
        ),
        ModelFamily(
            "tree",
            "A single CART regression tree",
            lambda **p: DecisionTreeRegressor(random_state=42, **p),
            {"max_depth": [8, 14], "min_samples_leaf": [5, 20]},
            False,
            False,
        ),
        ModelFamily(
            "knn",
            "k-nearest neighbours on scaled features",
            lambda **p: SampledKNeighborsRegressor(**p),
            {"n_neighbors": [5, 10, 20]},
            True,
            False,
            {"p": 2},  # Euclidean; the search tries Manhattan too
        ),
        ModelFamily(
            "forest",
            "Random forest (bootstrap half-samples)",
            _forest,
            {"max_features": [0.2, 0.33]},  # 0.6 was never better and cost twice the time
            False,
            True,
            FOREST_DEFAULTS,
        ),
        ModelFamily(
            "boosting",
            "LightGBM gradient boosting",
            _lightgbm,
            # Squared loss lost to Huber by ~0.3 pp CV wMAPE in every comparison since Huber
            # came in (11.80 vs 11.51 at 63 leaves): the search still tries it, the grid no
            # longer pays its six fits (~9 s of the default run).
            {"num_leaves": [63, 31]},
            False,
            True,
            LIGHTGBM_DEFAULTS,
        ),
    ]
}


def param_grid(grid: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def _evaluate(family: ModelFamily, params: dict, cache: FoldCache, n_jobs: int) -> dict:
    start = time.perf_counter()
    fold_metrics = list(iter_fold_metrics(family.build(params, n_jobs), cache.folds(family.scale)))
    return {
        "family": family.name,
        "params": params,
        **summarize(fold_metrics),
        "fit_seconds": time.perf_counter() - start,
        "fold_metrics": fold_metrics,  # fold by fold: lets the search reuse this score
    }


def compare_families(
    cache: FoldCache,
    families: list[str],
    selection_metric: str,
    *,
    grids: dict[str, dict[str, list]] | None = None,
    n_jobs: int,
    max_candidates: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grid-search each family by cross-validation on the cached folds.

    ``grids`` replaces a family's own grid; ``max_candidates`` keeps the first N candidates of
    each grid (the first is the family's sensible default: 1 makes a quick run).
    Returns (all candidates, the best candidate of each family), both sorted by
    ``selection_metric`` (lower is better) with the overall winner first.
    """
    rows = []
    for name in families:
        family = FAMILIES[name]
        candidates = param_grid((grids or {}).get(name, family.grid))[:max_candidates]
        cache.folds(family.scale)  # build the folds once, before any parallel use
        if family.threads_inside:
            rows += [_evaluate(family, p, cache, n_jobs) for p in candidates]
        else:
            rows += Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(_evaluate)(family, p, cache, 1) for p in candidates
            )
    candidates = pd.DataFrame(rows).sort_values(selection_metric, ignore_index=True)
    best = candidates.drop_duplicates("family").reset_index(drop=True)
    return candidates, best
