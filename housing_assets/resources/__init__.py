"""Dagster resources and IO managers, and the one place that picks them: a named resource set
per deployment (``HOUSING_DEPLOYMENT``, read by ``housing_assets.settings``).

| set       | assets stored in          | MLflow                 | Optuna studies (workers > 1) |
|-----------|---------------------------|------------------------|------------------------------|
| `local`   | the data folder           | embedded SQLite store  | SQLite in the data folder    |
| `gcs`     | `HOUSING_GCS_BUCKET`      | as configured          | as configured                |
| `compose` | the data volume (or bucket) | the stack's server     | the stack's PostgreSQL       |

Wherever GCS is used (the asset bucket, a ``gs://`` dataset or landing zone) one dagster-gcp
``GCSResource`` (key ``gcs``) serves them all; dagster_gcp is imported only then, so a local
code location does not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import ConfigurableResource

from housing_assets.resources.compute import Compute
from housing_assets.resources.fixed import fixed_io_manager, fixed_resource
from housing_assets.resources.io_managers import (
    DatasetIOManager,
    GCSDatasetIOManager,
    LocalDatasetIOManager,
)
from housing_assets.resources.optuna import OptunaStorage
from housing_assets.resources.source import HousingSource
from housing_assets.resources.tracking import MlflowTracking, Tracking, WandbTracking
from housing_assets.settings import Settings, load


def build_resources(settings: Settings | None = None) -> dict:
    """The resource set of ``settings.deployment`` (the environment's settings by default), as
    ``Definitions`` takes it: endpoints that carry credentials (MLflow, the dataset and landing
    zone, the asset store, the Optuna storage) are fixed by the deployment and cannot be
    changed by a run's config; threads and W&B settings can."""
    values = resource_values(settings)
    where = f"fixed by HOUSING_DEPLOYMENT={(settings or load()).deployment}"
    resources = {
        "io_manager": fixed_io_manager(values["io_manager"], f"Asset storage ({where})"),
        "housing_source": fixed_resource(
            values["housing_source"], f"The dataset and the landing zone ({where})"
        ),
        "mlflow": fixed_resource(values["mlflow"], f"MLflow tracking and registry ({where})"),
        "optuna": fixed_resource(values["optuna"], f"Optuna storage for workers ({where})"),
        "tracking": fixed_resource(
            values["tracking"],
            "Writes each step's evidence to Dagster, MLflow and W&B",
            {"mlflow", "wandb"},
            bind=lambda tracking, ready: Tracking(mlflow=ready.mlflow, wandb=ready.wandb),
        ),
        "wandb": values["wandb"],
        "compute": values["compute"],
    }
    if "gcs" in values:
        resources["gcs"] = values["gcs"]
    return resources


def resource_values(settings: Settings | None = None) -> dict:
    """The resources of ``settings.deployment`` as plain objects (for tools and tests)."""
    settings = settings or load()
    return RESOURCE_SETS[settings.deployment](settings)


def local_resources(settings: Settings) -> dict:
    """Assets as folders under the data folder; everything else as the settings say."""
    io_manager = LocalDatasetIOManager(base_dir=str(settings.data_dir / "assets"))
    return _resources(settings, io_manager, _gcs_if_needed(settings))


def gcs_resources(settings: Settings) -> dict:
    """Assets as objects in the bucket ``HOUSING_GCS_BUCKET``, through dagster-gcp."""
    from housing_assets.io.gcs import gcs_resource

    gcs = gcs_resource(settings.gcp_project)
    io_manager = GCSDatasetIOManager(
        gcs=gcs, bucket=settings.gcs_bucket, prefix=settings.gcs_prefix
    )
    return _resources(settings, io_manager, gcs)


def compose_resources(settings: Settings) -> dict:
    """The Docker stack: the stack's MLflow server and PostgreSQL Optuna storage (both required
    by the settings); assets on the shared data volume, or in the bucket when one is set."""
    return (gcs_resources if settings.gcs_bucket else local_resources)(settings)


RESOURCE_SETS: dict[str, Callable[[Settings], dict]] = {
    "local": local_resources,
    "gcs": gcs_resources,
    "compose": compose_resources,
}


def _gcs_if_needed(settings: Settings) -> ConfigurableResource | None:
    if not any(url.startswith("gs://") for url in (settings.source_url, settings.landing_url)):
        return None
    from housing_assets.io.gcs import gcs_resource

    return gcs_resource(settings.gcp_project)


def _resources(
    settings: Settings, io_manager: DatasetIOManager, gcs: ConfigurableResource | None
) -> dict:
    mlflow = MlflowTracking(
        tracking_uri=settings.mlflow_tracking_uri, artifact_location=settings.mlflow_artifacts
    )
    wandb = WandbTracking(mode=settings.wandb_mode, dir=str(settings.data_dir))
    resources = {
        "io_manager": io_manager,
        "housing_source": HousingSource(
            url=settings.source_url,
            landing_url=settings.landing_url,
            landing_settle_s=settings.landing_settle_s,
            gcs=gcs,
        ),
        "mlflow": mlflow,
        "wandb": wandb,
        "tracking": Tracking(mlflow=mlflow, wandb=wandb),
        "compute": Compute(threads=settings.threads),
        "optuna": OptunaStorage(
            url=settings.optuna_storage, default_dir=str(settings.data_dir / "optuna")
        ),
    }
    if gcs is not None:
        resources["gcs"] = gcs
    return resources


__all__ = [
    "Compute",
    "GCSDatasetIOManager",
    "HousingSource",
    "LocalDatasetIOManager",
    "MlflowTracking",
    "OptunaStorage",
    "RESOURCE_SETS",
    "Tracking",
    "WandbTracking",
    "build_resources",
    "resource_values",
]
