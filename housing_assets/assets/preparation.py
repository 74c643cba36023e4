import time

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, asset

from housing_assets import plots
from housing_assets.datasets import GeoFeatures, HousingSplit, ImputedHousing
from housing_assets.ml.features import GEO_COLUMNS, ClusterSimilarity, cluster_feature_frame
from housing_assets.ml.geo import K_GRID, select_n_clusters
from housing_assets.ml.imputation import (
    IMPUTATION_STRATEGIES,
    fit_imputer,
    impute_frame,
    masked_reconstruction,
)
from housing_assets.ml.pipeline import FeatureSpec
from housing_assets.ml.schema import FEATURE_COLUMNS, NUMERIC_FEATURES, TARGET
from housing_assets.ml.split import income_category, split_train_test, train_index
from housing_assets.resources.tracking import WandbTracking, evidence_group


class ImputationConfig(Config):
    strategies: list[str] = list(IMPUTATION_STRATEGIES)
    mask_fraction: float = 0.2
    max_masked_cells: int = 3000
    # A strategy within this relative RMSE of the best counts as a tie; the fastest tie wins.
    rmse_tolerance: float = 0.05
    seed: int = 0


@asset(group_name="features", compute_kind="scikit-learn")
def imputed_housing(
    context: AssetExecutionContext,
    config: ImputationConfig,
    raw_housing: pd.DataFrame,
    wandb: WandbTracking,
) -> ImputedHousing:
    """Every row with numeric gaps filled by the imputation strategy that reconstructs hidden
    values best (masked-reconstruction RMSE on training rows; the target is never an input)."""
    train_numeric = raw_housing.loc[train_index(raw_housing), NUMERIC_FEATURES]
    incomplete = [c for c in NUMERIC_FEATURES if raw_housing[c].isna().any()] or ["total_bedrooms"]
    comparison = masked_reconstruction(
        train_numeric,
        config.strategies,
        incomplete,
        mask_fraction=config.mask_fraction,
        max_masked=config.max_masked_cells,
        random_state=config.seed,
        rmse_tolerance=config.rmse_tolerance,
    )
    imputer = fit_imputer(comparison.best_strategy, train_numeric, config.seed)
    frame = impute_frame(raw_housing, NUMERIC_FEATURES, imputer)
    table = comparison.table
    median_rmse = (
        float(table.loc[table["strategy"] == "median", "rmse"].iloc[0])
        if ("median" in set(table["strategy"]))
        else float("nan")
    )
    best_rmse = float(table.loc[table["chosen"], "rmse"].iloc[0])
    comparison_plot = plots.bar_chart(
        table["strategy"],
        table["rmse"],
        "Masked-reconstruction RMSE",
        "RMSE (lower is better)",
        comparison.best_strategy,
    )
    wandb.log_evidence(
        f"imputation-{context.run_id[:8]}",
        "imputation",
        config.model_dump(),
        tables={"imputation_comparison": table},
        figures={"imputation_rmse": comparison_plot},
        summary={"chosen_strategy": comparison.best_strategy, "chosen_rmse": best_rmse},
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "rows": len(frame),
            "imputed_cells": int(raw_housing[NUMERIC_FEATURES].isna().sum().sum()),
            "chosen_strategy": comparison.best_strategy,
            "chosen_rmse": best_rmse,
            "median_baseline_rmse": median_rmse,
            "why": MetadataValue.md(
                f"**{comparison.best_strategy}** reconstructs {comparison.masked_cells:,} hidden "
                f"known values of {incomplete} with RMSE {best_rmse:,.1f}, against "
                f"{median_rmse:,.1f} for the median ({median_rmse / best_rmse:,.1f}x worse). "
                f"It is the fastest strategy within {config.rmse_tolerance:.0%} of the lowest "
                f"RMSE ({table['rmse'].min():,.1f}, {table.loc[0, 'strategy']}): the imputer "
                "ships inside the served model. Scored on training rows only, without the target."
            ),
            "comparison": plots.markdown_table(table),
            "comparison_plot": plots.figure_to_markdown(
                comparison_plot, "imputation RMSE by strategy"
            ),
        }
    )
    return ImputedHousing(frame=frame, comparison=table, strategy=comparison.best_strategy)


class GeoConfig(Config):
    k_grid: list[int] = list(K_GRID)
    cv_folds: int = 3
    metric: str = "wmape"
    cluster_gamma: float = 1.0
    seed: int = 42


@asset(group_name="features", compute_kind="scikit-learn")
def geo_features(
    context: AssetExecutionContext,
    config: GeoConfig,
    imputed_housing: ImputedHousing,
    wandb: WandbTracking,
) -> GeoFeatures:
    """KMeans geographic clusters as a feature; K chosen by the cross-validated error of a quick
    model that uses it (one-standard-error rule), on training rows only."""
    frame = imputed_housing.frame
    train = frame.loc[train_index(frame)]
    base = FeatureSpec(
        imputed_housing.strategy,
        n_clusters=config.k_grid[0],
        cluster_gamma=config.cluster_gamma,
        random_state=config.seed,
    )
    k, evidence = select_n_clusters(
        train[FEATURE_COLUMNS],
        train[TARGET],
        base,
        config.k_grid,
        n_folds=config.cv_folds,
        metric=config.metric,
    )
    spec = FeatureSpec(
        imputed_housing.strategy,
        n_clusters=k,
        cluster_gamma=config.cluster_gamma,
        random_state=config.seed,
    )
    similarity = ClusterSimilarity(k, config.cluster_gamma, config.seed).fit(train[GEO_COLUMNS])
    enriched = frame.join(cluster_feature_frame(frame, similarity))
    sizes = enriched["geo_cluster"].value_counts()
    k_plot, map_plot = plots.k_evidence_chart(evidence, config.metric), plots.cluster_map(enriched)
    wandb.log_evidence(
        f"geo-k-{context.run_id[:8]}",
        "geo_clusters",
        config.model_dump(),
        tables={"k_evidence": evidence},
        figures={"k_evidence": k_plot, "cluster_map": map_plot},
        summary={"chosen_k": k},
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "chosen_k": k,
            "rows": len(enriched),
            "why": MetadataValue.md(
                f"K={k}: the smallest K whose cross-validated {config.metric} is within one "
                f"standard error of the best over K in {sorted(config.k_grid)}. The sampled "
                "silhouette (shown) would always pick the smallest K."
            ),
            "k_evidence": plots.markdown_table(evidence, floatfmt=",.4f"),
            "k_evidence_plot": plots.figure_to_markdown(k_plot, "evidence for K"),
            "cluster_map": plots.figure_to_markdown(map_plot, "cluster map"),
            "smallest_cluster_rows": int(sizes.min()),
            "largest_cluster_rows": int(sizes.max()),
        }
    )
    return GeoFeatures(frame=enriched, k_evidence=evidence, spec=spec)


@asset(group_name="features", compute_kind="scikit-learn")
def train_test_split(
    context: AssetExecutionContext, raw_housing: pd.DataFrame, geo_features: GeoFeatures
) -> HousingSplit:
    """The contract's hold-out: 20 % of the raw rows, stratified on income category, seed 42.

    Rows keep their raw values (the served pipeline imputes by itself) plus the cluster columns.
    """
    start = time.perf_counter()
    cluster_columns = geo_features.frame[["geo_cluster", "geo_cluster_similarity"]]
    train, test = split_train_test(raw_housing)
    train, test = train.join(cluster_columns), test.join(cluster_columns)
    shares = (
        pd.DataFrame(
            {
                "overall_pct": income_category(raw_housing["median_income"]).value_counts(
                    normalize=True
                ),
                "train_pct": income_category(train["median_income"]).value_counts(normalize=True),
                "test_pct": income_category(test["median_income"]).value_counts(normalize=True),
            }
        )
        .sort_index()
        .mul(100)
    )
    shares.index.name = "income_cat"
    context.add_output_metadata(
        {
            "train_rows": len(train),
            "test_rows": len(test),
            "test_fraction": len(test) / len(raw_housing),
            "income_category_shares": MetadataValue.md(shares.round(2).to_markdown()),
            "seconds": time.perf_counter() - start,
        }
    )
    return HousingSplit(train=train, test=test, spec=geo_features.spec)
