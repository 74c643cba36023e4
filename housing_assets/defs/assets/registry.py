from dagster import AssetExecutionContext, asset

from housing_assets.datasets import HousingSplit, RegisteredModel, TunedParams
from housing_assets.defs.assets.config import config_for
from housing_assets.io.registry import ModelRegistry, publish_model
from housing_assets.reports.steps import registration_evidence
from housing_assets.resources import Compute, Tracking
from housing_assets.steps import RegistrationSettings
from housing_assets.steps.final_model import fit_challenger

RegistrationConfig = config_for(RegistrationSettings)


@asset(group_name="modeling", compute_kind="mlflow")
def registered_model(
    context: AssetExecutionContext,
    config: RegistrationConfig,
    train_test_split: HousingSplit,
    tuned_params: TunedParams,
    tracking: Tracking,
    compute: Compute,
) -> RegisteredModel:
    """One pipeline from the raw columns to the price, fitted on the training rows, compared
    with the current champion on the same gate rows (never fitted on; paired bootstrap
    intervals and slices), then scored once on the test rows, registered in MLflow, and
    promoted to `champion` when the gate finds it no worse."""
    settings = config.to_settings()
    fitted = compute.run(
        context, fit_challenger, train_test_split, tuned_params, seeds=settings.seeds
    )
    registry = ModelRegistry(tracking.mlflow.client(), tracking.mlflow.registered_model_name)
    with tracking.mlflow.start_run(f"registered_model-{tuned_params.family}"):
        registration = publish_model(
            registry, train_test_split, tuned_params, fitted, settings, context.run.run_id
        )
    tracking.publish(context, registration_evidence(registration, train_test_split))
    return registration.model
