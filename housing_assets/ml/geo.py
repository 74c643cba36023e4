"""Choosing K for the geographic cluster feature by evidence.

Silhouette on coordinates alone always prefers K=2 on this data, which makes the feature
nearly useless. Here K is chosen by what the feature is for: the cross-validated error of a
quick boosting model that uses it (training rows only), with the one-standard-error rule so
that a larger K must earn its place. Inertia and a sampled silhouette are recorded beside it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from housing_assets.ml.cv import Fold, cv_metrics, kfold_splits
from housing_assets.ml.features import GEO_COLUMNS, ClusterSimilarity
from housing_assets.ml.pipeline import FeatureSpec, build_preprocessor

PROBE_MODEL_PARAMS = dict(
    n_estimators=300,
    learning_rate=0.1,
    num_leaves=63,
    colsample_bytree=0.5,
    max_bin=63,  # a probe: fast histograms
    verbose=-1,
)


# Candidate numbers of geographic clusters (the geo_features default).
K_GRID = (5, 10, 20, 30, 45, 60)


@dataclass
class _FoldWithoutClusters:
    fold: Fold  # every model input but the cluster similarities
    coords_train: np.ndarray
    coords_valid: np.ndarray


def _folds_without_clusters(
    X: pd.DataFrame, y: pd.Series, spec: FeatureSpec, n_folds: int
) -> list[_FoldWithoutClusters]:
    """The cross-validation folds of the model's preprocessing, fitted once: only the cluster
    block changes with K, so it is dropped here and added per K (:func:`_with_clusters`)."""
    folds = []
    for train_idx, valid_idx in kfold_splits(X, n_folds, spec.random_state):
        pre = build_preprocessor(spec)
        X_tr, X_va = X.iloc[train_idx], X.iloc[valid_idx]
        matrix_tr = np.asarray(pre.fit_transform(X_tr, y.iloc[train_idx]), dtype=float)
        matrix_va = np.asarray(pre.transform(X_va), dtype=float)
        keep = np.ones(matrix_tr.shape[1], dtype=bool)
        keep[pre.output_indices_["geo"]] = False
        folds.append(
            _FoldWithoutClusters(
                Fold(
                    matrix_tr[:, keep],
                    y.iloc[train_idx].to_numpy(dtype=float),
                    matrix_va[:, keep],
                    y.iloc[valid_idx].to_numpy(dtype=float),
                ),
                X_tr[GEO_COLUMNS].to_numpy(dtype=float),
                X_va[GEO_COLUMNS].to_numpy(dtype=float),
            )
        )
    return folds


def _with_clusters(part: _FoldWithoutClusters, spec: FeatureSpec) -> Fold:
    similarity = ClusterSimilarity(
        spec.n_clusters, spec.cluster_gamma, random_state=spec.random_state
    )
    similarity.fit(part.coords_train)
    fold = part.fold
    return Fold(
        np.hstack([fold.X_train, similarity.transform(part.coords_train)]),
        fold.y_train,
        np.hstack([fold.X_valid, similarity.transform(part.coords_valid)]),
        fold.y_valid,
    )


def _cluster_shape(
    coords: np.ndarray, k: int, sample: np.ndarray, random_state: int
) -> dict[str, float]:
    """What KMeans alone says of K (recorded, not deciding): inertia and a sampled silhouette."""
    kmeans = KMeans(k, n_init=4, random_state=random_state).fit(coords)
    return {
        "inertia": float(kmeans.inertia_),
        "silhouette_sampled": float(
            silhouette_score(coords[sample], kmeans.predict(coords[sample]))
        ),
    }


def select_n_clusters(
    X: pd.DataFrame,
    y: pd.Series,
    base_spec: FeatureSpec,
    k_grid: Sequence[int],
    *,
    n_folds: int,
    metric: str,
    silhouette_sample: int = 3000,
    n_jobs: int,
) -> tuple[int, pd.DataFrame]:
    """Return the chosen K and the evidence table (one row per K). ``base_spec.random_state``
    seeds the folds, the clusters, the probe model and the silhouette sample.

    A single candidate (a K pinned by a retrain) is taken as it is: there is nothing to choose
    between, so no cross-validation runs and its table has no ``cv_`` columns.
    """
    coords = X[GEO_COLUMNS].to_numpy(dtype=float)
    rng = np.random.default_rng(base_spec.random_state)
    sample = rng.choice(len(coords), size=min(silhouette_sample, len(coords)), replace=False)
    candidates = sorted(set(k_grid))
    cross_validate = len(candidates) > 1
    folds = _folds_without_clusters(X, y, base_spec, n_folds) if cross_validate else []
    rows = []
    for k in candidates:
        start = time.perf_counter()
        row: dict[str, float] = {"k": k}
        if cross_validate:
            spec = dataclasses.replace(base_spec, n_clusters=k)
            with_k = [_with_clusters(fold, spec) for fold in folds]
            probe = LGBMRegressor(
                **PROBE_MODEL_PARAMS, n_jobs=n_jobs, random_state=base_spec.random_state
            )
            scores = cv_metrics(probe, with_k)
            row[f"cv_{metric}"] = scores[metric]
            row[f"cv_{metric}_se"] = scores[f"{metric}_std"] / np.sqrt(n_folds)
            row["cv_rmse"] = scores["rmse"]
        row.update(_cluster_shape(coords, k, sample, base_spec.random_state))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    table = pd.DataFrame(rows)
    if cross_validate:
        best = table.loc[table[f"cv_{metric}"].idxmin()]
        threshold = best[f"cv_{metric}"] + best[f"cv_{metric}_se"]
        chosen = int(table.loc[table[f"cv_{metric}"] <= threshold, "k"].min())
    else:
        chosen = candidates[0]
    table["chosen"] = table["k"] == chosen
    return chosen, table
