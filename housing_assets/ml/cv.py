"""Cross-validation on training rows with the preprocessing fitted inside each fold.

The preprocessing does not depend on the hyper-parameters being compared, so each fold's fitted
matrices are computed once (:class:`FoldCache`) and reused by every candidate: the result is
identical to refitting the whole pipeline per candidate, at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from housing_assets.ml.metrics import METRIC_NAMES, regression_metrics
from housing_assets.ml.pipeline import FeatureSpec, LogPriceRegressor, build_preprocessor


def kfold_splits(
    X: pd.DataFrame, n_folds: int, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, validation) row positions of every cross-validation in this project."""
    return list(KFold(n_folds, shuffle=True, random_state=random_state).split(X))


@dataclass
class Fold:
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray


@dataclass
class FoldCache:
    """Per-fold preprocessed matrices, built lazily for the plain and the scaled preprocessing."""

    X: pd.DataFrame
    y: pd.Series
    spec: FeatureSpec
    n_folds: int
    random_state: int
    _folds: dict[bool, list[Fold]] = field(default_factory=dict, repr=False)

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return kfold_splits(self.X, self.n_folds, self.random_state)

    def folds(self, scale: bool = False) -> list[Fold]:
        if scale not in self._folds:
            built = []
            for train_idx, valid_idx in self.splits():
                pre = build_preprocessor(self.spec, scale=scale)
                X_tr, y_tr = self.X.iloc[train_idx], self.y.iloc[train_idx]
                X_va, y_va = self.X.iloc[valid_idx], self.y.iloc[valid_idx]
                built.append(
                    Fold(
                        np.asarray(pre.fit_transform(X_tr, y_tr), dtype=float),
                        y_tr.to_numpy(dtype=float),
                        np.asarray(pre.transform(X_va), dtype=float),
                        y_va.to_numpy(dtype=float),
                    )
                )
            self._folds[scale] = built
        return self._folds[scale]


def log_target(regressor) -> LogPriceRegressor:
    """Fit on log(price), predict in dollars: the same wrapper the served pipeline uses."""
    return LogPriceRegressor(regressor)


def iter_fold_metrics(regressor, folds: list[Fold]) -> Iterator[dict[str, float]]:
    """Fit on each fold in turn and yield that fold's metrics (lets a caller prune early)."""
    for fold in folds:
        model = log_target(regressor).fit(fold.X_train, fold.y_train)
        yield regression_metrics(fold.y_valid, model.predict(fold.X_valid))


def summarize(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over folds, plus ``<metric>_std`` for the spread."""
    frame = pd.DataFrame(fold_metrics)[METRIC_NAMES]
    out = {name: float(frame[name].mean()) for name in METRIC_NAMES}
    out.update({f"{name}_std": float(frame[name].std(ddof=0)) for name in METRIC_NAMES})
    return out


def cv_metrics(
    regressor,
    folds: list[Fold],
    on_fold: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    results = []
    for i, metrics in enumerate(iter_fold_metrics(regressor, folds)):
        results.append(metrics)
        if on_fold is not None:
            on_fold(i, metrics)
    return summarize(results)
