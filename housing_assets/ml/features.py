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

    def __init__(self, n_clusters: int = 10, gamma: float = 1.0, *, random_state: int):
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
    coords = frame[GEO_COLUMNS]  # named as when fitted
    labels = similarity.predict(coords)
    sims = similarity.transform(coords)
    return pd.DataFrame(
        {
            "geo_cluster": labels.astype("int32"),
            "geo_cluster_similarity": sims[np.arange(len(labels)), labels],
        },
        index=frame.index,
    )


def _neighbours(tree, X, k: int, leave_one_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distances to and indices of each row's ``k`` nearest training rows, nearest first. With
    ``leave_one_out`` (the rows are the training rows themselves) a row is never its own
    neighbour: among exact duplicates one neighbour is dropped instead."""
    if not leave_one_out:
        return tree.query(X, k=k)
    dist, idx = tree.query(X, k=k + 1)
    keep = idx != np.arange(len(idx))[:, None]
    keep[keep.all(axis=1), -1] = False
    return dist[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k)


def _as_ks(n_neighbors) -> tuple[int, ...]:
    return tuple(sorted({int(k) for k in np.atleast_1d(n_neighbors)}))


class _NeighborhoodEncoding:
    """``fit_transform`` describes each training row by its neighbourhood without itself, as a
    new row is described; ``transform`` (validation, test, serving) looks only at training rows.
    Subclasses fit a KD-tree in ``fit`` (``_fit_tree``) and implement
    ``_encode(X, leave_one_out)``."""

    _needs_target = False
    _ensure_all_finite: bool | str = True

    def fit_transform(self, X, y=None, **fit_params):
        if self._needs_target and y is None:
            raise ValueError(f"{type(self).__name__} needs the target to fit")
        self.fit(X, y)
        return self._encode(self._validated(X), leave_one_out=True)

    def transform(self, X):
        check_is_fitted(self)
        return self._encode(self._validated(X), leave_one_out=False)

    def _validated(self, X):
        return validate_data(
            self, X, dtype=float, reset=False, ensure_all_finite=self._ensure_all_finite
        )

    def _fit_tree(self, coords: np.ndarray) -> None:
        from sklearn.neighbors import KDTree

        if not np.isfinite(coords).all():
            raise ValueError(f"{type(self).__name__} needs every row's coordinates")
        self.tree_ = KDTree(coords)


class NeighborPriceEncoder(_NeighborhoodEncoding, TransformerMixin, BaseEstimator):
    """What the nearest training districts sell for (spatial lags), at several neighbourhood sizes:
    for each k in ``n_neighbors`` the mean, median and spread of their log prices; with
    ``radius``, also how far each neighbourhood reaches (log distance in degrees to the k-th
    nearest district). Census districts hold similar numbers of people, so a small radius means
    a dense, urban place.

    Fitting rows never see their own price: ``fit_transform`` leaves each row out of its own
    neighbourhood, and ``transform`` (validation, test, serving) looks only at training rows.
    Expects (latitude, longitude) as input and the price as ``y``.
    """

    _needs_target = True

    def __init__(self, n_neighbors=(3, 10, 30, 100), radius: bool = True):
        self.n_neighbors = n_neighbors
        self.radius = radius

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=float, y_numeric=True)
        self._fit_tree(X)
        self.log_price_ = np.log(y)
        return self

    def _encode(self, X, leave_one_out: bool):
        ks = _as_ks(self.n_neighbors)
        dist, idx = _neighbours(self.tree_, X, max(ks), leave_one_out)
        prices = self.log_price_[idx]
        columns = []
        for k in ks:  # neighbours come nearest first: the k nearest are the first k
            columns += [prices[:, :k].mean(axis=1), np.median(prices[:, :k], axis=1)]
            columns.append(prices[:, :k].std(axis=1))
        if self.radius:  # 1e-4 degrees (~10 m): districts that share their coordinates
            columns += [np.log(dist[:, k - 1] + 1e-4) for k in ks]
        return np.column_stack(columns)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        ks = _as_ks(self.n_neighbors)
        names = [f"neighbor{k}_log_price_{stat}" for k in ks for stat in ("mean", "median", "std")]
        return np.array(names + [f"neighbor{k}_radius_log" for k in ks if self.radius])


INCOME_NEIGHBOR_COLUMNS = [*GEO_COLUMNS, "median_income"]


class NeighborIncomeEncoder(_NeighborhoodEncoding, TransformerMixin, BaseEstimator):
    """How a district's income compares with its neighbourhood's, and what the neighbourhood pays
    for its income (the location premium).

    Input: (latitude, longitude, median_income) in that order; the price as ``y``. Output: the
    mean income of the ``income_neighbors`` nearest training districts, the row's income divided
    by it, and for each k in ``premium_neighbors`` the neighbours' mean log(price / income).
    Rows never see their own price (as :class:`NeighborPriceEncoder`); a missing income counts
    as the training median.
    """

    _needs_target = True
    _ensure_all_finite = "allow-nan"

    def __init__(self, income_neighbors: int = 15, premium_neighbors=(10, 30)):
        self.income_neighbors = income_neighbors
        self.premium_neighbors = premium_neighbors

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing income is filled with the training median
        return tags

    def _split(self, X):
        if X.shape[1] != len(INCOME_NEIGHBOR_COLUMNS):
            raise ValueError(
                f"NeighborIncomeEncoder needs the columns {INCOME_NEIGHBOR_COLUMNS} in order; "
                f"got {X.shape[1]} columns"
            )
        income = np.where(np.isnan(X[:, 2]), self.median_income_, X[:, 2])
        return X[:, :2], income

    def fit(self, X, y):
        X, y = validate_data(
            self, X, y, dtype=float, y_numeric=True, ensure_all_finite=self._ensure_all_finite
        )
        self.median_income_ = float(np.nanmedian(X[:, 2])) if X.shape[1] == 3 else np.nan
        coords, income = self._split(X)
        self._fit_tree(coords)
        self.income_ = income
        self.log_premium_ = np.log(y) - np.log(np.clip(income, 1e-3, None))
        return self

    def _encode(self, X, leave_one_out: bool):
        coords, income = self._split(X)
        ks = _as_ks(self.premium_neighbors)
        k_max = max(*ks, self.income_neighbors)
        idx = _neighbours(self.tree_, coords, k_max, leave_one_out)[1]
        neighbour_income = self.income_[idx[:, : self.income_neighbors]].mean(axis=1)
        premiums = [self.log_premium_[idx[:, :k]].mean(axis=1) for k in ks]
        return np.column_stack([neighbour_income, income / neighbour_income, *premiums])

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.array(
            [
                "neighbor_income",
                "income_vs_neighbors",
                *(f"neighbor{k}_price_income_premium" for k in _as_ks(self.premium_neighbors)),
            ]
        )


HOUSING_NEIGHBOR_COLUMNS = [
    *GEO_COLUMNS,
    "housing_median_age",
    "total_rooms",
    "population",
    "households",
]
HOUSING_TRAITS = ["age", "rooms_per_house", "people_per_house", "log_households"]


class NeighborHousingEncoder(_NeighborhoodEncoding, TransformerMixin, BaseEstimator):
    """What the neighbourhood's housing is like, and how the district differs from it.

    For each k in ``n_neighbors``: the mean over the k nearest training districts of four traits
    (median house age, rooms and people per household, log households), and the district's own
    trait minus that mean: a young or spacious district among old, crowded ones is priced
    differently from one like its neighbours. No price is involved.

    Input: ``HOUSING_NEIGHBOR_COLUMNS`` in that order. Training rows leave themselves out of
    their own neighbourhood (as :class:`NeighborPriceEncoder`), so they are described as a new
    district is. A missing trait counts as the training median.
    """

    _ensure_all_finite = "allow-nan"

    def __init__(self, n_neighbors=(10, 30)):
        self.n_neighbors = n_neighbors

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing trait is filled with the training median
        return tags

    def _coords_and_traits(self, X) -> tuple[np.ndarray, np.ndarray]:
        if X.shape[1] != len(HOUSING_NEIGHBOR_COLUMNS):
            raise ValueError(
                f"NeighborHousingEncoder needs the columns {HOUSING_NEIGHBOR_COLUMNS} in order; "
                f"got {X.shape[1]} columns"
            )
        age, rooms, people, households = X[:, 2], X[:, 3], X[:, 4], X[:, 5]
        with np.errstate(divide="ignore", invalid="ignore"):
            traits = np.column_stack(
                [age, rooms / households, people / households, np.log(households)]
            )
        traits[~np.isfinite(traits)] = np.nan
        return X[:, :2], traits

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=float, ensure_all_finite=self._ensure_all_finite)
        coords, traits = self._coords_and_traits(X)
        self._fit_tree(coords)
        self.median_traits_ = np.nan_to_num(np.nanmedian(traits, axis=0))
        self.traits_ = self._filled(traits)
        return self

    def _filled(self, traits: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(traits), self.median_traits_, traits)

    def _encode(self, X, leave_one_out: bool):
        coords, traits = self._coords_and_traits(X)
        traits = self._filled(traits)
        ks = _as_ks(self.n_neighbors)
        idx = _neighbours(self.tree_, coords, max(ks), leave_one_out)[1]
        columns = []
        for k in ks:  # neighbours come nearest first: the k nearest are the first k
            means = self.traits_[idx[:, :k]].mean(axis=1)
            columns += [means, traits - means]
        return np.hstack(columns)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        names = []
        for k in _as_ks(self.n_neighbors):
            names += [f"neighbor{k}_{trait}" for trait in HOUSING_TRAITS]
            names += [f"{trait}_vs_neighbor{k}" for trait in HOUSING_TRAITS]
        return np.array(names)
