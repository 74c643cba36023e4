import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets.datasets import GeoFeatures, HousingSplit, ImputedHousing
from housing_assets.defs.assets.config import config_for
from housing_assets.defs.assets.timing import timed
from housing_assets.ml.schema import NUMERIC_FEATURES
from housing_assets.ml.split import income_category
from housing_assets.reports import plots
from housing_assets.resources.compute import Compute
from housing_assets.resources.tracking import WandbTracking, evidence_group
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
    wandb: WandbTracking,
    compute: Compute,
) -> ImputedHousing:
    """Every row with numeric gaps filled by the imputation strategy that reconstructs hidden
    values best (masked-reconstruction RMSE on training rows; the target is never an input)."""
    settings = config.to_settings()
    imputed, compute_s = timed(impute, raw_housing, settings, threads=compute.threads)
    rmse = imputed.comparison.set_index("strategy")["rmse"]
    best, median = float(rmse[imputed.strategy]), float(rmse.get("median", float("nan")))
    chart = plots.to_png(
        plots.bar_chart(
            rmse.index,
            rmse,
            "Masked-reconstruction RMSE",
            "RMSE (lower is better)",
            imputed.strategy,
        )
    )
    wandb.log_evidence(
        f"imputation-{context.run_id[:8]}",
        "imputation",
        config.model_dump(),
        tables={"imputation_comparison": imputed.comparison},
        images={"imputation_rmse": chart},
        summary={"chosen_strategy": imputed.strategy, "chosen_rmse": best},
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "rows": len(imputed.frame),
            "imputed_cells": int(raw_housing[NUMERIC_FEATURES].isna().sum().sum()),
            "chosen_strategy": imputed.strategy,
            "chosen_rmse": round(best, 1),
            "median_baseline_rmse": round(median, 1),
            "why": MetadataValue.md(
                f"**{imputed.strategy}** reconstructs {imputed.masked_cells:,} hidden known "
                f"values of {list(imputed.scored_columns)} with RMSE {best:,.1f}, against "
                f"{median:,.1f} for the median ({median / best:,.1f}x worse). It is the fastest "
                f"strategy within {settings.rmse_tolerance:.0%} of the lowest RMSE "
                f"({rmse.min():,.1f}, {rmse.idxmin()}): the imputer ships inside the served "
                "model. Scored on training rows only, without the target."
            ),
            "comparison": plots.markdown_table(imputed.comparison),
            "comparison_plot": plots.png_markdown(chart, "imputation RMSE by strategy"),
            "compute_s": round(compute_s, 2),
        }
    )
    return imputed


def why_k(k: int, evidence: pd.DataFrame, settings: GeoSettings) -> str:
    if f"cv_{settings.metric}" not in evidence.columns:  # as plots.k_evidence_chart reads it
        return (
            f"K={k}: the only candidate in the run config (a retrain pins the K its last "
            "tuning run chose), so no cross-validation ran; KMeans' own measures are shown."
        )
    return (
        f"K={k}: the smallest K whose cross-validated {settings.metric} is within one "
        f"standard error of the best over K in {sorted(settings.k_grid)}. The sampled "
        "silhouette (shown) would always pick the smallest K."
    )


@asset(group_name="features", compute_kind="scikit-learn")
def geo_features(
    context: AssetExecutionContext,
    config: GeoConfig,
    imputed_housing: ImputedHousing,
    wandb: WandbTracking,
    compute: Compute,
) -> GeoFeatures:
    """KMeans geographic clusters as a feature; K chosen by the cross-validated error of a quick
    model that uses it (one-standard-error rule), on training rows only."""
    settings = config.to_settings()
    geo, compute_s = timed(add_geo_clusters, imputed_housing, settings, threads=compute.threads)
    k, sizes = geo.spec.n_clusters, geo.frame["geo_cluster"].value_counts()
    k_plot = plots.to_png(plots.k_evidence_chart(geo.k_evidence, settings.metric))
    map_plot = plots.to_png(plots.cluster_map(geo.frame))
    wandb.log_evidence(
        f"geo-k-{context.run_id[:8]}",
        "geo_clusters",
        config.model_dump(),
        tables={"k_evidence": geo.k_evidence},
        images={"k_evidence": k_plot, "cluster_map": map_plot},
        summary={"chosen_k": k},
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "chosen_k": k,
            "rows": len(geo.frame),
            "why": MetadataValue.md(why_k(k, geo.k_evidence, settings)),
            "k_evidence": plots.markdown_table(geo.k_evidence, floatfmt=",.4f"),
            "k_evidence_plot": plots.png_markdown(k_plot, "evidence for K"),
            "cluster_map": plots.png_markdown(map_plot, "cluster map"),
            "smallest_cluster_rows": int(sizes.min()),
            "largest_cluster_rows": int(sizes.max()),
            "compute_s": round(compute_s, 2),
        }
    )
    return geo


@asset(group_name="features", compute_kind="scikit-learn")
def train_test_split(
    context: AssetExecutionContext, raw_housing: pd.DataFrame, geo_features: GeoFeatures
) -> HousingSplit:
    """The contract's hold-out: 20 % of the raw rows, stratified on income category, seed 42,
    as assigned once in raw_housing. Rows keep their raw values (the served pipeline imputes by
    itself) plus the cluster columns."""
    split = split_hold_out(raw_housing, geo_features)
    shares = pd.DataFrame(
        {
            f"{name}_pct": income_category(rows["median_income"]).value_counts(normalize=True)
            for name, rows in (
                ("overall", raw_housing),
                ("train", split.train),
                ("test", split.test),
            )
        }
    ).sort_index()
    shares.index.name = "income_cat"
    context.add_output_metadata(
        {
            "train_rows": len(split.train),
            "test_rows": len(split.test),
            "test_pct": round(100 * len(split.test) / len(raw_housing), 2),
            "income_category_shares": MetadataValue.md(shares.mul(100).round(2).to_markdown()),
        }
    )
    return split
