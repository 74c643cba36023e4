import pandas as pd
from dagster import AssetExecutionContext, asset

from housing_assets.datasets import GeoFeatures, HousingSplit, ImputedHousing
from housing_assets.defs.assets.config import config_for
from housing_assets.reports.steps import geo_evidence, imputation_evidence, split_evidence
from housing_assets.resources import Compute, Tracking
from housing_assets.steps import (
    GeoSettings,
    ImputationSettings,
    add_geo_clusters,
    impute,
    split_hold_out,
)

ImputationConfig = config_for(ImputationSettings)
GeoConfig = config_for(GeoSettings)


@asset(group_name="features", compute_kind="scikit-learn")
def imputed_housing(
    context: AssetExecutionContext,
    config: ImputationConfig,
    raw_housing: pd.DataFrame,
    tracking: Tracking,
    compute: Compute,
) -> ImputedHousing:
    """Every row with numeric gaps filled by the imputation strategy that reconstructs hidden
    values best (masked-reconstruction RMSE on training rows; the target is never an input)."""
    settings = config.to_settings()
    imputed = compute.run(context, impute, raw_housing, settings)
    evidence = imputation_evidence(
        imputed, raw_housing, config.model_dump(), settings.rmse_tolerance
    )
    tracking.publish(context, evidence)
    return imputed


@asset(group_name="features", compute_kind="scikit-learn")
def geo_features(
    context: AssetExecutionContext,
    config: GeoConfig,
    imputed_housing: ImputedHousing,
    tracking: Tracking,
    compute: Compute,
) -> GeoFeatures:
    """KMeans geographic clusters as a feature; K chosen by the cross-validated error of a quick
    model that uses it (one-standard-error rule), on training rows only."""
    settings = config.to_settings()
    geo = compute.run(context, add_geo_clusters, imputed_housing, settings)
    tracking.publish(
        context, geo_evidence(geo, config.model_dump(), settings.metric, settings.k_grid)
    )
    return geo


@asset(group_name="features", compute_kind="scikit-learn")
def train_test_split(
    context: AssetExecutionContext,
    raw_housing: pd.DataFrame,
    geo_features: GeoFeatures,
    tracking: Tracking,
) -> HousingSplit:
    """The contract's hold-out: 20 % of the raw rows, stratified on income category, seed 42.
    raw_housing assigns each row its side once, as it arrives (so a batch row keeps its side
    across retrains); this asset selects the two sides, keeping the raw values (the served
    pipeline imputes by itself) plus the cluster columns."""
    split = split_hold_out(raw_housing, geo_features)
    tracking.publish(context, split_evidence(split, raw_housing))
    return split
