import os
import time
from dataclasses import replace

import pandas as pd
import yaml
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets import settings
from housing_assets.datasets import HousingSplit, ModelComparison, TunedParams
from housing_assets.defs.assets.config import config_for
from housing_assets.defs.assets.timing import timed
from housing_assets.io.redaction import redact_url
from housing_assets.ml.metrics import METRIC_NAMES, rounded_metric
from housing_assets.ml.tuning import STORAGE_ENV, TrialRecord
from housing_assets.reports import plots
from housing_assets.resources.compute import Compute
from housing_assets.resources.tracking import MlflowTracking, WandbTracking, evidence_group
from housing_assets.steps import ComparisonSettings, TuningSettings, compare_models, tune_params

ComparisonConfig = config_for(ComparisonSettings)
TuningConfig = config_for(TuningSettings)


@asset(group_name="modeling", compute_kind="scikit-learn")
def model_comparison(
    context: AssetExecutionContext,
    config: ComparisonConfig,
    train_test_split: HousingSplit,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
    compute: Compute,
) -> ModelComparison:
    """Several algorithm families, each with a small cross-validated grid on training rows; the
    winner is the family with the lowest cross-validated selection metric (wMAPE by default)."""
    comparison, compute_s = timed(
        compare_models, train_test_split, config.to_settings(), threads=compute.threads
    )
    metric, board = comparison.selection_metric, comparison.leaderboard
    winner = board.iloc[0]
    with mlflow.start_run("model_comparison"):
        import mlflow as mlf

        mlf.log_params(
            {
                "cv_folds": comparison.cv_folds,
                "selection_metric": metric,
                "families": ",".join(config.families),
                "winner": comparison.winner,
            }
        )
        for _, row in board.iterrows():
            mlf.log_metrics({f"{row['family']}_{m}": float(row[m]) for m in METRIC_NAMES})
        mlf.log_text(board.to_csv(index=False), "leaderboard.csv")
    chart = plots.to_png(
        plots.bar_chart(
            board["family"],
            board[metric],
            f"Cross-validated {metric} by family",
            f"{metric} % (lower is better)",
            comparison.winner,
        )
    )
    wandb.log_evidence(
        f"comparison-{context.run_id[:8]}",
        "model_comparison",
        config.model_dump(),
        tables={"leaderboard": board, "candidates": comparison.candidates},
        images={"leaderboard": chart},
        summary={"winner": comparison.winner, f"winner_cv_{metric}": float(winner[metric])},
        group=evidence_group(context.run_id),
    )
    shown = board[["family", "params", *METRIC_NAMES, "fit_seconds"]]
    context.add_output_metadata(
        {
            "winner": comparison.winner,
            "winner_params": MetadataValue.json(comparison.winner_params),
            f"winner_cv_{metric}": rounded_metric(metric, winner[metric]),
            "winner_cv_rmse": rounded_metric("rmse", winner["rmse"]),
            "candidates_evaluated": len(comparison.candidates),
            "leaderboard": plots.markdown_table(shown.rename(columns={"fit_seconds": "fit_s"})),
            "leaderboard_plot": plots.png_markdown(chart, "family comparison"),
            "compute_s": round(compute_s, 2),
        }
    )
    return comparison


@asset(group_name="modeling", compute_kind="optuna")
def tuned_params(
    context: AssetExecutionContext,
    config: TuningConfig,
    train_test_split: HousingSplit,
    model_comparison: ModelComparison,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
    compute: Compute,
) -> TunedParams:
    """Bayesian search (Optuna TPE, Hyperband pruning across folds) of the winning family's
    hyper-parameters by cross-validation on training rows; every trial goes to W&B and MLflow."""
    import mlflow as mlf

    family = model_comparison.winner
    storage = config.storage
    if config.n_workers > 1 and storage is None:
        storage = os.environ.get(STORAGE_ENV)
    if config.n_workers > 1 and storage is None:
        (settings.data_dir() / "optuna").mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{settings.data_dir() / 'optuna' / 'studies.db'}"
    tuning = replace(config.to_settings(), storage=storage)
    study_name = f"housing-{family}-{context.run_id[:8]}"
    run_config = {"family": family, **config.model_dump(), "spec": str(train_test_split.spec)}
    run_config["storage"] = redact_url(storage) if storage else None
    tracking_s = 0.0

    def trial_run_name(number: int) -> str:
        return f"{study_name}-trial-{number:03d}"

    with (
        wandb.init(
            name=f"{study_name}-summary", job_type="tuning", config=run_config, group=study_name
        ) as wandb_run,
        wandb.trial_runs(group=study_name, config={"family": family}) as trial_runs,
        mlflow.start_run(f"tuned_params-{family}", tags={"family": family}),
    ):
        mlf.log_params({k: v for k, v in run_config.items() if v is not None})

        def on_trial(trial: TrialRecord) -> None:
            nonlocal tracking_s
            start = time.perf_counter()
            numbers = {f"cv_{k}": v for k, v in trial.metrics.items() if not k.endswith("_std")}
            trial_runs.log(
                trial_run_name(trial.number),
                trial.params,
                {
                    "trial": trial.number,
                    "state": trial.state,
                    "folds_run": trial.folds_run,
                    "seconds": trial.seconds,
                    **numbers,
                },
            )
            with mlflow.start_run(f"trial-{trial.number}", tags={"state": trial.state}):
                mlf.log_params(trial.params)
                mlf.log_metrics({**numbers, "folds_run": trial.folds_run})
            tracking_s += time.perf_counter() - start

        tuning_start = time.perf_counter()
        tuned = tune_params(
            train_test_split,
            model_comparison,
            tuning,
            threads=compute.threads,
            study_name=study_name,
            on_trial=on_trial,
        )
        tuning_s = time.perf_counter() - tuning_start
        best_yaml = yaml.safe_dump(
            {
                "family": family,
                "metric": tuned.metric,
                "cv_value": tuned.cv_value,
                "params": tuned.params,
            },
            sort_keys=False,
        )
        mlf.log_text(best_yaml, "best_params.yaml")
        mlf.log_metrics({f"best_cv_{k}": v for k, v in tuned.cv_metrics.items()})
        wandb_run.summary.update({f"best_cv_{k}": v for k, v in tuned.cv_metrics.items()})
        wandb_run.summary["best_trial"] = trial_run_name(tuned.best_trial)
        wandb_run.log({"trials": _wandb_table(tuned.trials)})
    # After the search: the summary logging and the wait for the last W&B trial runs (counted as
    # tracking cost, so the share below is an upper bound).
    wait_s = time.perf_counter() - tuning_start - tuning_s
    states = tuned.trials["state"].value_counts().to_dict()
    context.add_output_metadata(
        {
            "family": family,
            "best_params": MetadataValue.json(tuned.params),
            "best_params_yaml": MetadataValue.md(f"```yaml\n{best_yaml}```"),
            f"best_cv_{tuned.metric}": rounded_metric(tuned.metric, tuned.cv_value),
            "best_cv_rmse": rounded_metric("rmse", tuned.cv_metrics.get("rmse", float("nan"))),
            "trials": len(tuned.trials),
            "trials_complete": int(states.get("COMPLETE", 0)),
            "trials_pruned": int(states.get("PRUNED", 0)),
            "workers": config.n_workers,
            "optuna_study": f"{study_name} in {redact_url(storage)}" if storage else "in memory",
            "wandb_group": study_name,
            "wandb_trial_runs": trial_runs.written,
            "wandb_trial_errors": "; ".join(trial_runs.errors[:3]) or "none",
            "tuning_s": round(tuning_s, 1),
            "compute_s": round(tuning_s - tracking_s, 2),  # the search without its tracking
            "tracking_s": round(tracking_s + wait_s, 2),
            "tracking_pct_of_tuning": round(100 * (tracking_s + wait_s) / tuning_s, 2),
            "history": plots.figure_to_markdown(
                plots.optimisation_history(tuned.trials, tuned.metric), "optimisation history"
            ),
            "wandb_run": wandb_run.dir if hasattr(wandb_run, "dir") else "",
        }
    )
    return tuned


def _wandb_table(frame: pd.DataFrame):
    import wandb

    return wandb.Table(dataframe=frame.drop(columns=["metrics"]).astype(str))
