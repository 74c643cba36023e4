"""The one pipeline that goes from the 9 raw feature columns to a predicted price.

Every fitted transformer (imputer, ratios, cluster centres, one-hot encoder) lives inside it, so
what serves is exactly what was trained and cross-validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from housing_assets.ml.features import (
    GEO_COLUMNS,
    HOUSING_NEIGHBOR_COLUMNS,
    INCOME_NEIGHBOR_COLUMNS,
    ClusterSimilarity,
    NeighborHousingEncoder,
    NeighborIncomeEncoder,
    NeighborPriceEncoder,
    RatioFeatures,
)
from housing_assets.ml.imputation import make_imputer
from housing_assets.ml.schema import CATEGORICAL_FEATURE, NUMERIC_FEATURES


@dataclass(frozen=True)
class FeatureSpec:
    """What the upstream assets chose on training rows, needed to rebuild the preprocessing."""

    imputation_strategy: str
    n_clusters: int
    cluster_gamma: float = 1.0
    neighbor_ks: tuple[int, ...] = (3, 10, 30, 100)  # neighbourhood sizes of the price lags
    random_state: int = field(kw_only=True)  # of the folds, imputer and clusters


def signed_log(X):
    return np.sign(X) * np.log1p(np.abs(X))


def build_preprocessor(spec: FeatureSpec, scale: bool = False) -> ColumnTransformer:
    """Raw feature columns -> model matrix. ``scale`` adds a signed log and standardisation,
    which distance-based and linear models need and trees do not."""
    numeric_steps = [
        ("impute", make_imputer(spec.imputation_strategy, random_state=spec.random_state)),
        ("ratios", RatioFeatures()),
    ]
    if scale:
        numeric_steps += [
            ("log", FunctionTransformer(signed_log, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
        ]
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), NUMERIC_FEATURES),
            (
                "geo",
                ClusterSimilarity(
                    spec.n_clusters, spec.cluster_gamma, random_state=spec.random_state
                ),
                GEO_COLUMNS,
            ),
            ("neighbors", NeighborPriceEncoder(spec.neighbor_ks), GEO_COLUMNS),
            ("income_neighbors", NeighborIncomeEncoder(), INCOME_NEIGHBOR_COLUMNS),
            ("housing_neighbors", NeighborHousingEncoder(), HOUSING_NEIGHBOR_COLUMNS),
            (
                "category",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                [CATEGORICAL_FEATURE],
            ),
        ],
        verbose_feature_names_out=False,
    )


class LogPriceRegressor(RegressorMixin, BaseEstimator):
    """Fits ``regressor`` on log(price) and answers in dollars, never above the highest training
    price: the source censors prices at a cap (500,001 in Géron's data), so a prediction above
    every price ever seen is wrong by construction. Learned from training rows only."""

    def __init__(self, regressor):
        self.regressor = regressor

    def fit(self, X, y):
        y = np.asarray(y, dtype=float)
        self.regressor_ = clone(self.regressor).fit(X, np.log(y))
        self.max_price_ = float(y.max())
        if hasattr(self.regressor_, "n_features_in_"):
            self.n_features_in_ = self.regressor_.n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return np.minimum(np.exp(self.regressor_.predict(X)), self.max_price_)


class SeedAveragedRegressor(RegressorMixin, BaseEstimator):
    """The mean prediction of ``regressor`` fitted once per seed in ``seeds`` (its
    ``random_state``): boosting on row and column samples varies from seed to seed, and the
    mean of several fits is steadier than any one. A regressor without a ``random_state``, or
    no seeds, is fitted once as it is."""

    def __init__(self, regressor, seeds):
        self.regressor = regressor
        self.seeds = seeds

    def fit(self, X, y):
        if self.seeds and "random_state" in self.regressor.get_params():
            members = [clone(self.regressor).set_params(random_state=s) for s in self.seeds]
        else:
            members = [clone(self.regressor)]
        self.estimators_ = [member.fit(X, y) for member in members]
        self.n_features_in_ = self.estimators_[0].n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return np.mean([member.predict(X) for member in self.estimators_], axis=0)


def build_model_pipeline(spec: FeatureSpec, regressor, scale: bool = False) -> Pipeline:
    """Preprocessing + a regressor trained on log(price) and answering in dollars."""
    return Pipeline(
        [
            ("preprocess", build_preprocessor(spec, scale=scale)),
            ("model", LogPriceRegressor(regressor)),
        ]
    )


def feature_importances(pipeline: Pipeline) -> pd.DataFrame:
    """How much each model input (after preprocessing) matters to a fitted pipeline, as a share
    in percent, largest first: LightGBM's total split gain, other trees' impurity decrease,
    a linear model's absolute coefficient (on standardised inputs). Empty for k-NN."""
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    values = _importance_values(pipeline.named_steps["model"].regressor_)
    if values is None:
        return pd.DataFrame({"feature": [], "importance_pct": []})
    share = 100 * values / values.sum() if values.sum() > 0 else values
    table = pd.DataFrame({"feature": names, "importance_pct": share})
    return table.sort_values("importance_pct", ascending=False, ignore_index=True)


def _importance_values(model) -> np.ndarray | None:
    if isinstance(model, SeedAveragedRegressor):  # the members' mean
        members = [_importance_values(member) for member in model.estimators_]
        return None if members[0] is None else np.mean(members, axis=0)
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    elif hasattr(model, "feature_importances_"):
        values = model.feature_importances_
    elif hasattr(model, "coef_"):
        values = np.abs(np.ravel(model.coef_))
    else:
        return None
    return np.asarray(values, dtype=float)
