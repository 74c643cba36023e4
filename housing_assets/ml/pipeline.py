"""The one pipeline that goes from the 9 raw feature columns to a predicted price.

Every fitted transformer (imputer, ratios, cluster centres, one-hot encoder) lives inside it, so
what serves is exactly what was trained and cross-validated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from housing_assets.ml.features import (
    GEO_COLUMNS,
    ClusterSimilarity,
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
    neighbor_k: int = 10
    random_state: int = 42


def signed_log(X):
    return np.sign(X) * np.log1p(np.abs(X))


def build_preprocessor(spec: FeatureSpec, scale: bool = False) -> ColumnTransformer:
    """Raw feature columns -> model matrix. ``scale`` adds a signed log and standardisation,
    which distance-based and linear models need and trees do not."""
    numeric_steps = [
        ("impute", make_imputer(spec.imputation_strategy, spec.random_state)),
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
                ClusterSimilarity(spec.n_clusters, spec.cluster_gamma, spec.random_state),
                GEO_COLUMNS,
            ),
            ("neighbors", NeighborPriceEncoder(spec.neighbor_k), GEO_COLUMNS),
            (
                "category",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                [CATEGORICAL_FEATURE],
            ),
        ],
        verbose_feature_names_out=False,
    )


def build_model_pipeline(spec: FeatureSpec, regressor, scale: bool = False) -> Pipeline:
    """Preprocessing + a regressor trained on log(price) and answering in dollars."""
    return Pipeline(
        [
            ("preprocess", build_preprocessor(spec, scale=scale)),
            (
                "model",
                TransformedTargetRegressor(regressor=regressor, func=np.log, inverse_func=np.exp),
            ),
        ]
    )


def feature_importances(pipeline: Pipeline) -> pd.DataFrame:
    """How much each model input (after preprocessing) matters to a fitted pipeline, as a share
    in percent, largest first: LightGBM's total split gain, other trees' impurity decrease,
    a linear model's absolute coefficient (on standardised inputs). Empty for k-NN."""
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    model = pipeline.named_steps["model"].regressor_
    if hasattr(model, "booster_"):
        values = model.booster_.feature_importance(importance_type="gain")
    elif hasattr(model, "feature_importances_"):
        values = model.feature_importances_
    elif hasattr(model, "coef_"):
        values = np.abs(np.ravel(model.coef_))
    else:
        return pd.DataFrame({"feature": [], "importance_pct": []})
    values = np.asarray(values, dtype=float)
    share = 100 * values / values.sum() if values.sum() > 0 else values
    table = pd.DataFrame({"feature": names, "importance_pct": share})
    return table.sort_values("importance_pct", ascending=False, ignore_index=True)
