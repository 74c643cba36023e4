import os
import time

import pandas as pd
import yaml
from dagster import AssetExecutionContext, Config, MetadataValue, asset

from housing_assets import plots, settings
from housing_assets.datasets import HousingSplit, ModelComparison, TunedParams
from housing_assets.ml.metrics import METRIC_NAMES
from housing_assets.ml.models import FAMILIES, compare_families
from housing_assets.ml.tuning import STORAGE_ENV, TrialRecord, tune
from housing_assets.redaction import redact_url
from housing_assets.resources.tracking import MlflowTracking, WandbTracking, evidence_group


def _leaderboard_markdown(leaderboard: pd.DataFrame) -> MetadataValue:
    shown = leaderboard[["family", "params", *METRIC_NAMES, "fit_seconds"]].copy()
    shown["params"] = shown["params"].map(lambda p: ", ".join(f"{k}={v}" for k, v in p.items()))
    return plots.markdown_table(shown)


class ComparisonConfig(Config):
    families: list[str] = list(FAMILIES)
    cv_folds: int = 3
    selection_metric: str = "wmape"
    max_candidates_per_family: int | None = None  # e.g. 1 for a smoke run
    seed: int = 42


@asset(group_name="modeling", compute_kind="scikit-learn")
def model_comparison(
    context: AssetExecutionContext,
    config: ComparisonConfig,
    train_test_split: HousingSplit,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
) -> ModelComparison:
    """Several algorithm families, each with a small cross-validated grid on training rows; the
    winner is the family with the lowest cross-validated selection metric (wMAPE by default)."""
    cache = train_test_split.fold_cache(config.cv_folds, config.seed)
    candidates, leaderboard = compare_families(
        cache,
        config.families,
        config.selection_metric,
        max_candidates=config.max_candidates_per_family,
    )
    winner = leaderboard.iloc[0]
    with mlflow.start_run("model_comparison"):
        import mlflow as mlf

        mlf.log_params(
            {
                "cv_folds": config.cv_folds,
                "selection_metric": config.selection_metric,
                "families": ",".join(config.families),
                "winner": winner["family"],
            }
        )
        for _, row in leaderboard.iterrows():
            mlf.log_metrics({f"{row['family']}_{m}": float(row[m]) for m in METRIC_NAMES})
        mlf.log_text(leaderboard.to_csv(index=False), "leaderboard.csv")
    leaderboard_plot = plots.bar_chart(
        leaderboard["family"],
        leaderboard[config.selection_metric],
        f"Cross-validated {config.selection_metric} by family",
        f"{config.selection_metric} % (lower is better)",
        winner["family"],
    )
    wandb.log_evidence(
        f"comparison-{context.run_id[:8]}",
        "model_comparison",
        config.model_dump(),
        tables={"leaderboard": leaderboard, "candidates": candidates},
        figures={"leaderboard": leaderboard_plot},
        summary={
            "winner": winner["family"],
            f"winner_cv_{config.selection_metric}": float(winner[config.selection_metric]),
        },
        group=evidence_group(context.run_id),
    )
    context.add_output_metadata(
        {
            "winner": winner["family"],
            "winner_params": MetadataValue.json(winner["params"]),
            f"winner_cv_{config.selection_metric}": float(winner[config.selection_metric]),
            "winner_cv_rmse": float(winner["rmse"]),
            "candidates_evaluated": len(candidates),
            "leaderboard": _leaderboard_markdown(leaderboard),
            "leaderboard_plot": plots.figure_to_markdown(leaderboard_plot, "family comparison"),
        }
    )
    return ModelComparison(
        candidates=candidates.assign(params=candidates["params"].map(str)),
        leaderboard=leaderboard.assign(params=leaderboard["params"].map(str)),
        winner=str(winner["family"]),
        winner_params=dict(winner["params"]),
        selection_metric=config.selection_metric,
        cv_folds=config.cv_folds,
    )


class TuningConfig(Config):
    n_trials: int = 50
    cv_folds: int = 3
    metric: str = "wmape"
    seed: int = 42
    timeout_s: float | None = None
    # Trial processes sharing one study. More than one needs an Optuna RDB storage: `storage`,
    # else $HOUSING_OPTUNA_STORAGE, else a sqlite file in the data folder (PostgreSQL for workers
    # on other machines). A URL with a password belongs in the environment: in run config write
    # `storage: {env: HOUSING_OPTUNA_STORAGE}` and Dagster records the variable's name only.
    n_workers: int = 1
    storage: str | None = None


@asset(group_name="modeling", compute_kind="optuna")
def tuned_params(
    context: AssetExecutionContext,
    config: TuningConfig,
    train_test_split: HousingSplit,
    model_comparison: ModelComparison,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
) -> TunedParams:
    """Bayesian search (Optuna TPE, Hyperband pruning across folds) of the winning family's
    hyper-parameters by cross-validation on training rows; every trial goes to W&B and MLflow."""
    import mlflow as mlf

    family = model_comparison.winner
    cache = train_test_split.fold_cache(config.cv_folds, config.seed)
    storage = config.storage
    if config.n_workers > 1 and storage is None:
        storage = os.environ.get(STORAGE_ENV)
    if config.n_workers > 1 and storage is None:
        (settings.data_dir() / "optuna").mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{settings.data_dir() / 'optuna' / 'studies.db'}"
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
        result = tune(
            cache,
            family,
            n_trials=config.n_trials,
            metric=config.metric,
            seed=config.seed,
            timeout_s=config.timeout_s,
            start_params=model_comparison.winner_params,
            on_trial=on_trial,
            storage=storage,
            study_name=study_name if storage else None,
            n_workers=config.n_workers,
        )
        tuning_s = time.perf_counter() - tuning_start
        best_yaml = yaml.safe_dump(
            {
                "family": family,
                "metric": config.metric,
                "cv_value": result.best_value,
                "params": result.best_params,
            },
            sort_keys=False,
        )
        mlf.log_text(best_yaml, "best_params.yaml")
        mlf.log_metrics({f"best_cv_{k}": v for k, v in result.best_metrics.items()})
        wandb_run.summary.update({f"best_cv_{k}": v for k, v in result.best_metrics.items()})
        wandb_run.summary["best_trial"] = trial_run_name(result.study.best_trial.number)
        trials_table = result.trials.assign(params=result.trials["params"].map(str))
        wandb_run.log({"trials": _wandb_table(trials_table)})
    # After the search: the summary logging and the wait for the last W&B trial runs (counted as
    # tracking cost, so the share below is an upper bound).
    wait_s = time.perf_counter() - tuning_start - tuning_s
    states = result.trials["state"].value_counts().to_dict()
    context.add_output_metadata(
        {
            "family": family,
            "best_params": MetadataValue.json(result.best_params),
            "best_params_yaml": MetadataValue.md(f"```yaml\n{best_yaml}```"),
            f"best_cv_{config.metric}": result.best_value,
            "best_cv_rmse": result.best_metrics.get("rmse", float("nan")),
            "trials": len(result.trials),
            "trials_complete": int(states.get("COMPLETE", 0)),
            "trials_pruned": int(states.get("PRUNED", 0)),
            "workers": config.n_workers,
            "optuna_study": f"{study_name} in {redact_url(storage)}" if storage else "in memory",
            "wandb_group": study_name,
            "wandb_trial_runs": trial_runs.written,
            "wandb_trial_errors": "; ".join(trial_runs.errors[:3]) or "none",
            "tracking_s": round(tracking_s + wait_s, 2),
            "tracking_pct_of_tuning": round(100 * (tracking_s + wait_s) / tuning_s, 2),
            "history": plots.figure_to_markdown(
                plots.optimisation_history(result.trials, config.metric), "optimisation history"
            ),
            "wandb_run": wandb_run.dir if hasattr(wandb_run, "dir") else "",
        }
    )
    return TunedParams(
        family=family,
        params=result.best_params,
        metric=config.metric,
        cv_metrics=result.best_metrics,
        trials=trials_table,
        baseline_params=model_comparison.winner_params,
    )


def _wandb_table(frame: pd.DataFrame):
    import wandb

    return wandb.Table(dataframe=frame.drop(columns=["metrics"]).astype(str))
