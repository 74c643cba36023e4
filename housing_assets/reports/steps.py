"""One evidence builder per step: its result in, what a person should see out (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from housing_assets.datasets import (
    GeoFeatures,
    HousingSplit,
    ImputedHousing,
    ModelComparison,
    TunedParams,
)
from housing_assets.ml.metrics import METRIC_NAMES, rounded_metric
from housing_assets.ml.schema import NUMERIC_FEATURES, TARGET
from housing_assets.ml.split import (
    SPLIT_COLUMN,
    SPLIT_COLUMNS,
    SPLIT_SCHEME,
    income_category,
    straddling_districts,
)
from housing_assets.reports import plots
from housing_assets.reports.evidence import Evidence, MlflowRecord


def raw_evidence(raw) -> Evidence:
    """``raw``: the raw step's :class:`~housing_assets.steps.raw.RawHousing`."""
    frame = raw.frame
    missing = frame.isna().sum().rename_axis("column").reset_index(name="missing")
    return Evidence(
        kind="raw_housing",
        wandb=False,
        values={
            "rows": len(frame),
            "train_rows": int((frame[SPLIT_COLUMN] == "train").sum()),
            "gate_rows": int((frame[SPLIT_COLUMN] == "gate").sum()),
            "test_rows": int((frame[SPLIT_COLUMN] == "test").sum()),
            "source_url": raw.source.url,
            "sha256": raw.source.sha256,
            "size_bytes": raw.source_bytes,
            "batches": len(raw.lineage) - 1,
            "missing_values": int(missing["missing"].sum()),
        },
        json={
            "ocean_proximity": {
                str(k): int(v) for k, v in frame["ocean_proximity"].value_counts().items()
            }
        },
        tables={"lineage": raw.lineage, "missing_by_column": missing[missing["missing"] > 0]},
        markdown={
            "summary": frame.drop(columns=SPLIT_COLUMNS).describe().T.round(2).to_markdown(),
            "preview": frame.head(5).to_markdown(index=False),
        },
    )


def imputation_evidence(
    imputed: ImputedHousing, raw: pd.DataFrame, config: Mapping[str, Any], tolerance: float
) -> Evidence:
    rmse = imputed.comparison.set_index("strategy")["rmse"]
    best, median = float(rmse[imputed.strategy]), float(rmse.get("median", float("nan")))
    chart = plots.bar_chart(
        rmse.index, rmse, "Masked-reconstruction RMSE", "RMSE (lower is better)", imputed.strategy
    )
    why = (
        f"**{imputed.strategy}** reconstructs {imputed.masked_cells:,} hidden known values of "
        f"{list(imputed.scored_columns)} with RMSE {best:,.1f}, against {median:,.1f} for the "
        f"median ({median / best:,.1f}x worse). It is the fastest strategy within "
        f"{tolerance:.0%} of the lowest RMSE ({rmse.min():,.1f}, {rmse.idxmin()}): the imputer "
        "ships inside the served model. Scored on training rows only, without the target."
    )
    return Evidence(
        kind="imputation",
        config=dict(config),
        values={
            "rows": len(imputed.frame),
            "imputed_cells": int(raw[NUMERIC_FEATURES].isna().sum().sum()),
            "chosen_strategy": imputed.strategy,
            "chosen_rmse": round(best, 1),
            "median_baseline_rmse": round(median, 1),
        },
        summary={"chosen_strategy": imputed.strategy, "chosen_rmse": best},
        markdown={"why": why},
        tables={"comparison": imputed.comparison},
        figures={"comparison_plot": plots.to_png(chart)},
    )


def why_k(k: int, evidence: pd.DataFrame, metric: str, k_grid) -> str:
    if f"cv_{metric}" not in evidence.columns:
        return (
            f"K={k}: the only candidate in the run config (a retrain pins the K its last "
            "tuning run chose), so no cross-validation ran; KMeans' own measures are shown."
        )
    return (
        f"K={k}: the smallest K whose cross-validated {metric} is within one standard error of "
        f"the best over K in {sorted(k_grid)}. The sampled silhouette (shown) would always pick "
        "the smallest K."
    )


def geo_evidence(geo: GeoFeatures, config: Mapping[str, Any], metric: str, k_grid) -> Evidence:
    k, sizes = geo.spec.n_clusters, geo.frame["geo_cluster"].value_counts()
    return Evidence(
        kind="geo_clusters",
        config=dict(config),
        values={
            "chosen_k": k,
            "rows": len(geo.frame),
            "smallest_cluster_rows": int(sizes.min()),
            "largest_cluster_rows": int(sizes.max()),
        },
        summary={"chosen_k": k},
        markdown={"why": why_k(k, geo.k_evidence, metric, k_grid)},
        tables={"k_evidence": geo.k_evidence},
        table_formats={"k_evidence": ",.4f"},
        figures={
            "k_evidence_plot": plots.to_png(plots.k_evidence_chart(geo.k_evidence, metric)),
            "cluster_map": plots.to_png(plots.cluster_map(geo.frame)),
        },
    )


def split_evidence(split: HousingSplit, raw: pd.DataFrame) -> Evidence:
    gate = split.gate if split.gate is not None else split.train.iloc[:0]
    sides = (("overall", raw), ("train", split.train), ("gate", gate), ("test", split.test))
    shares = pd.DataFrame(
        {
            f"{name}_pct": income_category(rows["median_income"]).value_counts(normalize=True)
            for name, rows in sides
        }
    ).sort_index()
    shares.index.name = "income_cat"
    return Evidence(
        kind="train_test_split",
        wandb=False,
        values={
            "train_rows": len(split.train),
            "gate_rows": len(gate),
            "test_rows": len(split.test),
            "test_pct": round(100 * len(split.test) / len(raw), 2),
            "gate_pct": round(100 * len(gate) / len(raw), 2),
            "split_scheme": SPLIT_SCHEME,
            "districts_on_several_sides": len(straddling_districts(raw, raw[SPLIT_COLUMN])),
        },
        markdown={"income_category_shares": shares.mul(100).round(2).to_markdown()},
    )


def comparison_evidence(comparison: ModelComparison, config: Mapping[str, Any]) -> Evidence:
    metric, board = comparison.selection_metric, comparison.leaderboard
    winner = board.iloc[0]
    chart = plots.bar_chart(
        board["family"],
        board[metric],
        f"Cross-validated {metric} by family",
        f"{metric} % (lower is better)",
        comparison.winner,
    )
    shown = board[["family", "params", *METRIC_NAMES, "fit_seconds"]]
    return Evidence(
        kind="model_comparison",
        config=dict(config),
        values={
            "winner": comparison.winner,
            f"winner_cv_{metric}": rounded_metric(metric, winner[metric]),
            "winner_cv_rmse": rounded_metric("rmse", winner["rmse"]),
            "candidates_evaluated": len(comparison.candidates),
        },
        summary={"winner": comparison.winner, f"winner_cv_{metric}": float(winner[metric])},
        json={"winner_params": comparison.winner_params},
        tables={"leaderboard": shown.rename(columns={"fit_seconds": "fit_s"})},
        wandb_tables={"candidates": comparison.candidates},
        figures={"leaderboard_plot": plots.to_png(chart)},
        mlflow=MlflowRecord(
            "model_comparison",
            params={
                "cv_folds": comparison.cv_folds,
                "selection_metric": metric,
                "families": ",".join(config.get("families", board["family"])),
                "winner": comparison.winner,
            },
            metrics={
                f"{row['family']}_{m}": float(row[m])
                for _, row in board.iterrows()
                for m in METRIC_NAMES
            },
            texts={"leaderboard.csv": board.to_csv(index=False)},
        ),
    )


def best_params_yaml(tuned: TunedParams) -> str:
    best = {
        "family": tuned.family,
        "metric": tuned.metric,
        "cv_value": tuned.cv_value,
        "params": tuned.params,
    }
    return yaml.safe_dump(best, sort_keys=False)


def tuning_result_record(tuned: TunedParams) -> MlflowRecord:
    """What the search's own MLflow run keeps of its result."""
    return MlflowRecord(
        "",
        metrics={f"best_cv_{k}": v for k, v in tuned.cv_metrics.items()},
        texts={"best_params.yaml": best_params_yaml(tuned)},
    )


def tuning_evidence(tuned: TunedParams, search, workers: int, storage: str | None) -> Evidence:
    """``search``: the tracking's SearchLog (study name, W&B runs written)."""
    states = tuned.trials["state"].value_counts().to_dict()
    history = plots.optimisation_history(tuned.trials, tuned.metric)
    return Evidence(
        kind="tuned_params",
        wandb=False,  # the search logs its own W&B runs (a summary run and one per trial)
        values={
            "family": tuned.family,
            f"best_cv_{tuned.metric}": rounded_metric(tuned.metric, tuned.cv_value),
            "best_cv_rmse": rounded_metric("rmse", tuned.cv_metrics.get("rmse", float("nan"))),
            "trials": len(tuned.trials),
            "trials_complete": int(states.get("COMPLETE", 0)),
            "trials_pruned": int(states.get("PRUNED", 0)),
            "workers": workers,
            "optuna_study": f"{search.study_name} in {storage}" if storage else "in memory",
            "wandb_group": search.study_name,
            "wandb_trial_runs": search.trial_runs_written,
            "wandb_trial_errors": "; ".join(search.trial_run_errors[:3]) or "none",
            "wandb_run": search.wandb_dir,
        },
        json={"best_params": tuned.params},
        markdown={"best_params_yaml": f"```yaml\n{best_params_yaml(tuned)}```"},
        figures={"history": plots.to_png(history)},
    )


def registration_evidence(registration, split: HousingSplit) -> Evidence:
    """``registration``: the registry's :class:`~housing_assets.io.registry.Registration`."""
    model, fitted, decision = registration.model, registration.fitted, registration.decision
    top = fitted.importances.head(15)
    metrics = pd.DataFrame(
        {
            "metric": METRIC_NAMES,
            "cross_validation": [model.cv_metrics.get(m) for m in METRIC_NAMES],
            "gate_challenger": [decision.challenger_metrics.get(m) for m in METRIC_NAMES],
            "gate_champion": [(decision.champion_metrics or {}).get(m) for m in METRIC_NAMES],
            "test": [model.test_metrics[m] for m in METRIC_NAMES],
        }
    )
    importance = plots.bar_chart(
        top["feature"], top["importance_pct"], "Feature importance (top 15)", "share %"
    )
    scatter = plots.predicted_vs_actual(split.test[TARGET], fitted.test_predictions)
    test = {f"test_{k}": rounded_metric(k, v) for k, v in model.test_metrics.items()}
    test |= {f"test_interval90_{k}": round(v, 2) for k, v in (fitted.test_intervals or {}).items()}
    intervals = {
        f"gate_{name}_diff_{end}": round(getattr(interval, end), 4)
        for name, interval in decision.intervals.items()
        for end in ("point", "low", "high")
    }
    return Evidence(
        kind=f"model-v{model.version}",
        config={"family": model.family, **model.params, "version": model.version},
        values={
            "model_uri": model.model_uri,
            "version": model.version,
            "aliases": ", ".join(model.aliases),
            "promoted": registration.promoted,
            "promotion_reason": registration.reason,
            "gate_passed": decision.promote,
            "gate_blocked_by": ", ".join(decision.blocked_by) or "nothing",
            "gate_rows": decision.rows,
            **intervals,
            "mlflow_run_id": model.run_id,
            **test,
        },
        summary={**test, "promoted": registration.promoted, "gate_passed": decision.promote},
        markdown={
            "description": registration.description,
            "promotion_diff": registration.diff.markdown,
        },
        json={"promotion_gate": json.loads(decision.as_json())},
        tables={
            "test_metrics": metrics,
            "gate_slices": decision.slices,
            "feature_importances": fitted.importances.head(20),
        },
        figures={
            "predicted_vs_actual": plots.to_png(scatter),
            "feature_importance_plot": plots.to_png(importance),
            **{f"promotion_diff_{name}": png for name, png in registration.diff.figures.items()},
        },
    )
