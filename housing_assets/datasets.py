"""The values the assets hand each other (stored by the IO managers, DataFrames as Parquet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from housing_assets.io.redaction import redact_url
from housing_assets.ml.cv import FoldCache
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET


@dataclass(frozen=True)
class DataSource:
    """Provenance that travels with the data: the base dataset's location and sha256."""

    url: str  # credentials redacted
    sha256: str

    @classmethod
    def of(cls, url: str, sha256: str) -> DataSource:
        return cls(redact_url(url), sha256)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> DataSource:
        """The provenance a raw frame carries in ``attrs`` (set by the raw step)."""
        fields = frame.attrs.get("source") or {}
        return cls(fields.get("url", "unknown"), fields.get("sha256", "unknown"))

    def as_dict(self) -> dict[str, str]:
        return {"url": self.url, "sha256": self.sha256}


UNKNOWN_SOURCE = DataSource("unknown", "unknown")


@dataclass
class ImputedHousing:
    frame: pd.DataFrame  # every row; numeric gaps filled by an imputer fitted on training rows
    comparison: pd.DataFrame  # masked-reconstruction RMSE per strategy, best first
    strategy: str
    masked_cells: int = 0  # known values hidden to score the strategies
    scored_columns: tuple[str, ...] = ()  # the columns whose values were hidden
    source: DataSource = UNKNOWN_SOURCE


@dataclass
class GeoFeatures:
    frame: pd.DataFrame  # imputed rows plus geo_cluster and geo_cluster_similarity
    k_evidence: pd.DataFrame  # one row per candidate K
    spec: FeatureSpec  # imputation strategy and K, to rebuild the preprocessing
    source: DataSource = UNKNOWN_SOURCE


@dataclass
class HousingSplit:
    train: pd.DataFrame  # raw columns (NaNs as in the source) + geo cluster columns
    test: pd.DataFrame  # read once per model version, to report
    spec: FeatureSpec
    source: DataSource = UNKNOWN_SOURCE
    # The promotion gate's rows: never fitted on, champion and challenger compared on them
    # (None: stored by a version without a gate split).
    gate: pd.DataFrame | None = None

    def fold_cache(self, n_folds: int, seed: int) -> FoldCache:
        """Cross-validation folds of the training rows, preprocessing fitted inside each fold."""
        return FoldCache(
            self.train[FEATURE_COLUMNS],
            self.train[TARGET],
            self.spec,
            n_folds=n_folds,
            random_state=seed,
        )


@dataclass
class ModelComparison:
    candidates: pd.DataFrame  # every grid candidate with its CV metrics
    leaderboard: pd.DataFrame  # the best candidate of each family, winner first
    winner: str
    winner_params: dict[str, Any]
    selection_metric: str
    cv_folds: int
    seed: int  # of the folds


@dataclass
class TunedParams:
    family: str
    params: dict[str, Any]
    metric: str
    cv_metrics: dict[str, float]
    trials: pd.DataFrame
    baseline_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int = -1  # the Optuna trial number of ``params``
    cv_value: float = float("nan")  # the search's objective for ``params`` (``metric``, CV)
    # The features the search ran on (imputation strategy, K, ...): with ``family`` and
    # ``params``, every choice a retrain keeps. None: stored by a version that did not record it.
    spec: FeatureSpec | None = None


@dataclass
class RegisteredModel:
    name: str
    version: str
    model_uri: str
    run_id: str
    family: str
    params: dict[str, Any]
    test_metrics: dict[str, float]
    cv_metrics: dict[str, float]
    aliases: list[str]
