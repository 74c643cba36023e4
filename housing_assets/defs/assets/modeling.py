from dataclasses import replace

from dagster import AssetExecutionContext, asset

from housing_assets.datasets import HousingSplit, ModelComparison, TunedParams
from housing_assets.defs.assets.config import config_for
from housing_assets.io.redaction import redact_url
from housing_assets.reports.steps import (
    comparison_evidence,
    tuning_evidence,
    tuning_result_record,
)
from housing_assets.resources import Compute, OptunaStorage, Tracking
from housing_assets.steps import ComparisonSettings, TuningSettings, compare_models, tune_params

ComparisonConfig = config_for(ComparisonSettings)
# Where trials meet is the deployment's (the `optuna` resource): a run config cannot send the
# study, and the credentials in its URL, elsewhere.
TuningConfig = config_for(TuningSettings, exclude=("storage",))


@asset(group_name="modeling", compute_kind="scikit-learn")
def model_comparison(
    context: AssetExecutionContext,
    config: ComparisonConfig,
    train_test_split: HousingSplit,
    tracking: Tracking,
    compute: Compute,
) -> ModelComparison:
    """Several algorithm families, each with a small cross-validated grid on training rows; the
    winner is the family with the lowest cross-validated selection metric (wMAPE by default)."""
    comparison = compute.run(context, compare_models, train_test_split, config.to_settings())
    tracking.publish(context, comparison_evidence(comparison, config.model_dump()))
    return comparison


@asset(group_name="modeling", compute_kind="optuna")
def tuned_params(
    context: AssetExecutionContext,
    config: TuningConfig,
    train_test_split: HousingSplit,
    model_comparison: ModelComparison,
    tracking: Tracking,
    compute: Compute,
    optuna: OptunaStorage,
) -> TunedParams:
    """Bayesian search (Optuna TPE, Hyperband pruning across folds) of the winning family's
    hyper-parameters by cross-validation on training rows; every trial goes to W&B and MLflow."""
    storage = optuna.for_workers(config.n_workers, config.open_to_workers)
    settings = replace(config.to_settings(), storage=storage)
    shown_storage = redact_url(storage) if storage else None
    family = model_comparison.winner
    run_config = {"family": family, **config.model_dump(), "storage": shown_storage}
    with tracking.search(
        context, family, {**run_config, "spec": str(train_test_split.spec)}
    ) as search:
        tuned = compute.run(
            context, tune_params, train_test_split, model_comparison, settings,
            study_name=search.study_name, on_trial=search.on_trial,
        )  # fmt: skip
        search.record(tuning_result_record(tuned), tuned.best_trial, tuned.trials)
    tracking.publish(context, tuning_evidence(tuned, search, config.n_workers, shown_storage))
    return tuned
