"""geo_features: KMeans geographic clusters as a feature, K chosen by cross-validation."""

from __future__ import annotations

from dataclasses import dataclass

from housing_assets.datasets import GeoFeatures, ImputedHousing
from housing_assets.ml.features import GEO_COLUMNS, ClusterSimilarity, cluster_feature_frame
from housing_assets.ml.geo import K_GRID, select_n_clusters
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import FEATURE_COLUMNS, TARGET
from housing_assets.ml.split import training_rows


@dataclass(frozen=True)
class GeoSettings:
    k_grid: tuple[int, ...] = K_GRID
    cv_folds: int = 3
    metric: str = "wmape"  # the cross-validated error that decides K
    cluster_gamma: float = 1.0  # RBF width of the similarity to the cluster centres
    seed: int = 42  # of the folds, the clusters, the probe model and the model's imputer


def add_geo_clusters(
    imputed: ImputedHousing, settings: GeoSettings, *, threads: int
) -> GeoFeatures:
    """The smallest K whose cross-validated error (a quick model using the clusters) is within
    one standard error of the best, on training rows only; every row gets its cluster and its
    similarity to the centre."""
    frame = imputed.frame
    train = training_rows(frame)

    def spec(k: int) -> FeatureSpec:
        return FeatureSpec(
            imputed.strategy,
            n_clusters=k,
            cluster_gamma=settings.cluster_gamma,
            random_state=settings.seed,
        )

    k, evidence = select_n_clusters(
        train[FEATURE_COLUMNS],
        train[TARGET],
        spec(settings.k_grid[0]),
        settings.k_grid,
        n_folds=settings.cv_folds,
        metric=settings.metric,
        n_jobs=threads,
    )
    similarity = ClusterSimilarity(k, settings.cluster_gamma, random_state=settings.seed)
    similarity.fit(train[GEO_COLUMNS])
    return GeoFeatures(
        frame=frame.join(cluster_feature_frame(frame, similarity)),
        k_evidence=evidence,
        spec=spec(k),
        source=imputed.source,
    )
