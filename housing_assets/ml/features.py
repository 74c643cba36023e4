"""Feature engineering: Géron's ratio features and KMeans geographic cluster similarity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.utils.validation import check_is_fitted, validate_data

from housing_assets.ml.schema import NUMERIC_FEATURES

GEO_COLUMNS = ["latitude", "longitude"]
RATIO_FEATURES = ["rooms_per_house", "bedrooms_ratio", "people_per_house", "income_per_person"]


class RatioFeatures(TransformerMixin, BaseEstimator):
    """Append Géron's ratios (plus income per person) to the imputed numeric columns.

    Also adds two rotated coordinates, which let axis-aligned trees follow the coast.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a ratio with a missing part is 0, as with 0 / 0
        return tags

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan")
        if X.shape[1] != len(NUMERIC_FEATURES):
            raise ValueError(
                f"RatioFeatures needs the {len(NUMERIC_FEATURES)} numeric columns "
                f"{NUMERIC_FEATURES} in order; got {X.shape[1]} columns"
            )
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, dtype=float, ensure_all_finite="allow-nan", reset=False)
        col = {name: X[:, i] for i, name in enumerate(NUMERIC_FEATURES)}
        with np.errstate(divide="ignore", invalid="ignore"):
            extra = np.column_stack(
                [
                    col["total_rooms"] / col["households"],
                    col["total_bedrooms"] / col["total_rooms"],
                    col["population"] / col["households"],
                    col["median_income"] / (col["population"] / col["households"]),
                    col["latitude"] + col["longitude"],
                    col["latitude"] - col["longitude"],
                ]
            )
        extra[~np.isfinite(extra)] = 0.0
        return np.hstack([X, extra])

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "n_features_in_")
        return np.array([*NUMERIC_FEATURES, *RATIO_FEATURES, "geo_rot_plus", "geo_rot_minus"])


class ClusterSimilarity(TransformerMixin, BaseEstimator):
    """RBF similarity of each row's (latitude, longitude) to K KMeans centres fitted on training rows.

    Expects the two coordinate columns as its input.
    """

    def __init__(self, n_clusters: int = 10, gamma: float = 1.0, random_state: int = 42):
        self.n_clusters = n_clusters
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X, y=None, sample_weight=None):
        X = validate_data(self, X, dtype=float)
        self.kmeans_ = KMeans(self.n_clusters, n_init=4, random_state=self.random_state)
        self.kmeans_.fit(X, sample_weight=sample_weight)
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=float, reset=False)
        return rbf_kernel(X, self.kmeans_.cluster_centers_, gamma=self.gamma)

    def predict(self, X):
        check_is_fitted(self)
        return self.kmeans_.predict(validate_data(self, X, dtype=float, reset=False))

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.array([f"cluster_{i}_similarity" for i in range(self.n_clusters)])


def cluster_feature_frame(frame: pd.DataFrame, similarity: ClusterSimilarity) -> pd.DataFrame:
    """The cluster label and the similarity to the row's own centre, for people to look at."""
    coords = frame[GEO_COLUMNS].to_numpy(dtype=float)
    labels = similarity.predict(coords)
    sims = similarity.transform(coords)
    return pd.DataFrame(
        {
            "geo_cluster": labels.astype("int32"),
            "geo_cluster_similarity": sims[np.arange(len(labels)), labels],
        },
        index=frame.index,
    )


class NeighborPriceEncoder(TransformerMixin, BaseEstimator):
    """Mean log price of the ``n_neighbors`` nearest training districts (a spatial lag feature).

    Fitting rows never see their own price: ``fit_transform`` leaves each row out of its own
    neighbourhood, and ``transform`` (validation, test, serving) looks only at training rows.
    Expects (latitude, longitude) as input and the price as ``y``.
    """

    def __init__(self, n_neighbors: int = 10):
        self.n_neighbors = n_neighbors

    def fit(self, X, y):
        from sklearn.neighbors import KDTree

        X, y = validate_data(self, X, y, dtype=float, y_numeric=True)
        self.tree_ = KDTree(X)
        self.log_price_ = np.log(y)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        if y is None:
            raise ValueError("NeighborPriceEncoder needs the target to fit")
        self.fit(X, y)
        X = validate_data(self, X, dtype=float, reset=False)
        _, idx = self.tree_.query(X, k=self.n_neighbors + 1)
        own = np.arange(len(idx))[:, None]
        # Drop the row itself (or, among exact duplicates, one neighbour) from its neighbourhood.
        keep = idx != own
        keep[keep.all(axis=1), -1] = False
        idx = idx[keep].reshape(len(idx), self.n_neighbors)
        return self._encode(idx)

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=float, reset=False)
        _, idx = self.tree_.query(X, k=self.n_neighbors)
        return self._encode(idx)

    def _encode(self, idx):
        prices = self.log_price_[idx]
        return np.column_stack([prices.mean(axis=1), np.median(prices, axis=1), prices.std(axis=1)])

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.array(
            ["neighbor_log_price_mean", "neighbor_log_price_median", "neighbor_log_price_std"]
        )
