import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, asset

from housing_assets.datasets import HousingSplit, RegisteredModel, TunedParams
from housing_assets.defs.assets.config import config_for
from housing_assets.io.registry import ModelRegistry
from housing_assets.ml.metrics import METRIC_NAMES, rounded_metric
from housing_assets.ml.schema import TARGET
from housing_assets.reports import plots
from housing_assets.resources.compute import Compute
from housing_assets.resources.tracking import MlflowTracking, WandbTracking, evidence_group
from housing_assets.steps import RegistrationSettings, register

RegistrationConfig = config_for(RegistrationSettings)


@asset(group_name="modeling", compute_kind="mlflow")
def registered_model(
    context: AssetExecutionContext,
    config: RegistrationConfig,
    train_test_split: HousingSplit,
    tuned_params: TunedParams,
    mlflow: MlflowTracking,
    wandb: WandbTracking,
    compute: Compute,
) -> RegisteredModel:
    """One pipeline from the raw columns to the price, fitted on all training rows, scored once
    on the test rows, registered in MLflow and promoted to `champion` when it is at least as good
    as the current champion on the same test rows."""
    registry = ModelRegistry(mlflow.client(), mlflow.registered_model_name)
    with mlflow.start_run(f"registered_model-{tuned_params.family}"):
        outcome = register(
            train_test_split,
            tuned_params,
            config.to_settings(),
            registry,
            context.run_id,
            threads=compute.threads,
        )
    model, fitted = outcome.model, outcome.fitted
    scatter = plots.to_png(
        plots.predicted_vs_actual(train_test_split.test[TARGET], fitted.test_predictions)
    )
    top = fitted.importances.head(15)
    importance_plot = plots.to_png(
        plots.bar_chart(
            top["feature"], top["importance_pct"], "Feature importance (top 15)", "share %"
        )
    )
    test_metrics = {f"test_{k}": v for k, v in model.test_metrics.items()}
    wandb.log_evidence(
        f"model-v{model.version}-{context.run_id[:8]}",
        "registered_model",
        {"family": model.family, **model.params, "version": model.version},
        tables={"feature_importances": fitted.importances},
        images={"predicted_vs_actual": scatter, "feature_importances": importance_plot},
        summary={**test_metrics, "promoted": outcome.promoted},
        group=evidence_group(context.run_id),
    )
    metrics_table = pd.DataFrame(
        {
            "metric": METRIC_NAMES,
            "cross_validation": [model.cv_metrics.get(m) for m in METRIC_NAMES],
            "test": [model.test_metrics[m] for m in METRIC_NAMES],
        }
    )
    context.add_output_metadata(
        {
            "model_uri": model.model_uri,
            "version": model.version,
            "aliases": ", ".join(model.aliases),
            "promoted": outcome.promoted,
            "promotion_reason": outcome.reason,
            "mlflow_run_id": model.run_id,
            **{f"test_{k}": rounded_metric(k, v) for k, v in model.test_metrics.items()},
            "test_metrics": plots.markdown_table(metrics_table),
            "predicted_vs_actual": plots.png_markdown(scatter, "predicted vs actual"),
            "feature_importances": plots.markdown_table(fitted.importances.head(20)),
            "feature_importance_plot": plots.png_markdown(importance_plot, "feature importances"),
            "description": MetadataValue.md(outcome.description),
            "compute_s": round(fitted.seconds, 2),
        }
    )
    return model
