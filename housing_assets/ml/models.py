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
    make: Callable[..., Any]  # (**hyper-parameters, seed=, [n_jobs=]) -> unfitted regressor
    grid: dict[str, list]  # the small grid of the comparison
    scale: bool  # needs the scaled (signed log + standardised) preprocessing
    threads_inside: bool  # parallel on its own (n_jobs); otherwise candidates run in parallel
    defaults: dict[str, Any] = field(default_factory=dict)  # what ``make`` uses when not given
    seeded: bool = True  # has a random_state; False: deterministic, ``seed`` is not used

    def build(self, params: dict[str, Any], n_jobs: int, *, seed: int | None):
        """An unfitted regressor with the hyper-parameters ``params`` and ``seed`` as its
        ``random_state`` (a ``random_state`` in ``params`` is replaced by it). ``seed`` may be
        None only for a family that has no seed."""
        if self.seeded and seed is None:
            raise ValueError(f"the {self.name} family needs a seed")
        params = {k: v for k, v in params.items() if k != "random_state"}
        if self.threads_inside:
            return self.make(**params, seed=seed, n_jobs=n_jobs)
        return self.make(**params, seed=seed)

    def seed_params(self, seed: int) -> dict[str, int]:
        """``seed`` as the constructor parameter it becomes (nothing for a seedless family)."""
        return {"random_state": seed} if self.seeded else {}


class SampledKNeighborsRegressor(KNeighborsRegressor):
    """k-NN on at most ``max_fit_rows`` training rows (a random sample beyond that).

    In ~40 dimensions neighbour search is brute force, so prediction costs
    rows x training rows: the cap keeps it linear in the data size. 20,000 rows cover this
    dataset whole; larger data is sampled.
    """

    def __init__(
        self, n_neighbors=5, *, weights="distance", p=2, max_fit_rows=20_000, random_state
    ):
        super().__init__(n_neighbors=n_neighbors, weights=weights, p=p)
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True, y_numeric=True)
        rows = bounded_rows(X.shape[0], self.max_fit_rows, self.random_state)
        return super().fit(X[rows], y[rows])


# Huber loss on log(price): residuals beyond 0.15 (~16 %) count linearly, so a few districts far
# off their neighbourhood's price level do not pull the trees. max_bin 127, half LightGBM's
# default histogram, fits faster at equal error. Extremely randomized trees (one random
# threshold per feature at each split) vary less on these noisy district medians, and need more
# trees than classic ones. reg_lambda sits at the bottom of the search's range (LightGBM's own
# default, 0, is outside its log scale), so the grid's winner is a point of the search space and
# the search's first trial is exactly that winner.
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


def _lightgbm(*, seed: int, n_jobs: int, **params) -> LGBMRegressor:
    return LGBMRegressor(
        **{**LIGHTGBM_DEFAULTS, **params}, n_jobs=n_jobs, random_state=seed, verbose=-1
    )


def _forest(*, seed: int, n_jobs: int, **params) -> RandomForestRegressor:
    return RandomForestRegressor(**{**FOREST_DEFAULTS, **params}, n_jobs=n_jobs, random_state=seed)


def _ridge(*, seed: None | int, **params) -> Ridge:
    return Ridge(**params)  # exact solvers: no random_state to set


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in [
        ModelFamily(
            "linear",
            "Ridge regression on scaled, log-transformed features",
            _ridge,
            {"alpha": [0.1, 1.0, 10.0]},
            True,
            False,
            seeded=False,
        ),
        ModelFamily(
            "tree",
            "A single CART regression tree",
            lambda *, seed, **p: DecisionTreeRegressor(random_state=seed, **p),
            {"max_depth": [8, 14], "min_samples_leaf": [5, 20]},
            False,
            False,
        ),
        ModelFamily(
            "knn",
            "k-nearest neighbours on scaled features",
            lambda *, seed, **p: SampledKNeighborsRegressor(**p, random_state=seed),
            {"n_neighbors": [5, 10, 20]},
            True,
            False,
            {"p": 2},  # Euclidean; the search tries Manhattan too
        ),
        ModelFamily(
            "forest",
            "Random forest (bootstrap half-samples)",
            _forest,
            {"max_features": [0.2, 0.33]},
            False,
            True,
            FOREST_DEFAULTS,
        ),
        ModelFamily(
            "boosting",
            "LightGBM gradient boosting",
            _lightgbm,
            # Huber's loss only: the search also tries squared loss
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


def _evaluate(family: ModelFamily, params: dict, cache: FoldCache, n_jobs: int, seed: int) -> dict:
    start = time.perf_counter()
    regressor = family.build(params, n_jobs, seed=seed)
    fold_metrics = list(iter_fold_metrics(regressor, cache.folds(family.scale)))
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
    seed: int,
    max_candidates: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grid-search each family by cross-validation on the cached folds.

    ``grids`` replaces a family's own grid; ``max_candidates`` keeps the first N candidates of
    each grid (the first is the family's sensible default: 1 makes a quick run); ``seed`` is
    every candidate's ``random_state``.
    Returns (all candidates, the best candidate of each family), both sorted by
    ``selection_metric`` (lower is better) with the overall winner first.
    """
    rows = []
    for name in families:
        family = FAMILIES[name]
        candidates = param_grid((grids or {}).get(name, family.grid))[:max_candidates]
        cache.folds(family.scale)  # build the folds once, before any parallel use
        if family.threads_inside:
            rows += [_evaluate(family, p, cache, n_jobs, seed) for p in candidates]
        else:
            rows += Parallel(n_jobs=n_jobs, prefer="threads")(
                delayed(_evaluate)(family, p, cache, 1, seed) for p in candidates
            )
    candidates = pd.DataFrame(rows).sort_values(selection_metric, ignore_index=True)
    best = candidates.drop_duplicates("family").reset_index(drop=True)
    return candidates, best
